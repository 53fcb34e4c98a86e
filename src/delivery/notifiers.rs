//! The notifiers: alert plugin commands, webhooks and an application's own
//! callbacks, under the names deliveries are recorded by.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::command::{self, CommandSpec, Exit};
use crate::config::{AlertPluginConfig, PluginKind};
use crate::notification::{Notification, Notifier};
use crate::policy::PluginPolicy;
use crate::webhook::WebhookNotifier;

/// A notifier with the name it is configured under (`[alert:NAME]`) and
/// its routing and reminders.
#[derive(Clone)]
pub struct NamedNotifier {
    /// Its name: deliveries are recorded under it.
    pub name: String,
    /// What takes the notifications.
    pub notifier: Arc<dyn Notifier>,
    /// Which alerts it gets, and its reminders (default: all, none).
    pub policy: PluginPolicy,
}

impl NamedNotifier {
    /// A notifier of an application's own under `name`: every alert, no
    /// reminders (the default policy).
    pub fn new(name: &str, notifier: impl Notifier + 'static) -> NamedNotifier {
        NamedNotifier {
            name: name.to_owned(),
            notifier: Arc::new(notifier),
            policy: PluginPolicy::default(),
        }
    }
}

impl std::fmt::Debug for NamedNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedNotifier")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// An alert plugin command: runs with the alert's text on stdin and its
/// fields in `OVERC_*` variables; exit code 0 means it took the alert.
#[derive(Debug, Clone)]
pub struct CommandNotifier {
    argv: Vec<String>,
    cwd: PathBuf,
    timeout: Duration,
}

impl CommandNotifier {
    /// The command `argv`, run in `cwd`, killed after `timeout`.
    pub fn new(argv: Vec<String>, cwd: &Path, timeout: Duration) -> CommandNotifier {
        CommandNotifier {
            argv,
            cwd: cwd.to_path_buf(),
            timeout,
        }
    }
}

impl Notifier for CommandNotifier {
    fn notify(&self, alert: &Notification) -> std::result::Result<(), String> {
        let spec = CommandSpec {
            argv: self.argv.clone(),
            cwd: self.cwd.clone(),
            env: alert.env(),
            stdin: format!("{}\n", alert.text()).into_bytes(),
            timeout: self.timeout,
            output_cap: 4096,
            kill_switch: None,
        };
        let out = command::run(&spec);
        match out.exit {
            Exit::Code(0) => Ok(()),
            exit => {
                let said = out
                    .stderr
                    .lines()
                    .chain(out.stdout.lines())
                    .find(|l| !l.trim().is_empty());
                Err(match said {
                    Some(line) if matches!(exit, Exit::Code(_)) => {
                        format!("{}: {}", exit.describe(), line.trim())
                    }
                    _ => exit.describe(),
                })
            }
        }
    }
}

/// The notifiers of the `[alert:NAME]` sections: commands (run in `cwd`)
/// and webhooks.
pub fn plugin_notifiers(plugins: &[AlertPluginConfig], cwd: &Path) -> Vec<NamedNotifier> {
    plugins
        .iter()
        .map(|p| NamedNotifier {
            name: p.name.clone(),
            policy: p.policy.clone(),
            notifier: match &p.kind {
                PluginKind::Command(argv) => {
                    Arc::new(CommandNotifier::new(argv.clone(), cwd, p.timeout))
                }
                PluginKind::Webhook(hook) => {
                    Arc::new(WebhookNotifier::new(hook.clone(), p.timeout))
                }
            },
        })
        .collect()
}

/// What one plugin did with one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginOutcome {
    /// The plugin's name (`[alert:NAME]`).
    pub plugin: String,
    /// `None` when it took the alert; otherwise why not.
    pub failure: Option<String>,
}

/// Sends a test alert through every notifier in parallel and returns what
/// each did. Nothing is stored.
pub fn send_test_alert(notifiers: &[NamedNotifier]) -> Vec<PluginOutcome> {
    let alert = Notification {
        server: Some("overc".into()),
        channel: "overc".into(),
        event: "test".into(),
        message: "Test alert: if you read this, the alert plugin works".into(),
        severity: "OK".into(),
        ..Notification::default()
    };
    std::thread::scope(|scope| {
        let runs: Vec<_> = notifiers
            .iter()
            .map(|n| (n.name.clone(), scope.spawn(|| n.notifier.notify(&alert))))
            .collect();
        runs.into_iter()
            .map(|(plugin, run)| PluginOutcome {
                plugin,
                failure: match run.join() {
                    Ok(r) => r.err(),
                    Err(_) => Some("the plugin panicked".into()),
                },
            })
            .collect()
    })
}
