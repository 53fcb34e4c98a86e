//! Alert plugins and at-least-once delivery from the outbox.
//!
//! Every alert is stored first (the outbox) and marked delivered only when
//! at least one plugin accepted it. When every plugin failed it is retried
//! with growing backoff; a restart tries all undelivered alerts again.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::{Clock, Millis};
use crate::command::{self, CommandSpec, Exit};
use crate::config::{AlertPluginConfig, Notifier};
use crate::error::Result;
use crate::rules;
use crate::store::{AlertRecord, Store, lock};

/// First retry delay after every plugin failed; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Millis = 10_000;
/// Longest delay between delivery attempts.
pub const MAX_BACKOFF: Millis = 3_600_000;

impl AlertRecord {
    /// The text a plugin gets on stdin, as OverC 1.0.9 wrote it:
    /// `<server> <service>: [<channel>/<event>] <message>` and, when the
    /// service has a state, `Current: <STATE>: <info>`.
    pub fn text(&self) -> String {
        let mut head = String::new();
        if let Some(server) = &self.server {
            head.push_str(server);
            if let Some(service) = &self.service {
                head.push(' ');
                head.push_str(service);
            }
            head.push_str(": ");
        }
        let mut text = format!("{head}[{}/{}] {}", self.channel, self.event, self.message);
        if let Some(state) = &self.state {
            text.push_str(&format!(
                "\nCurrent: {state}: {}",
                self.info.as_deref().unwrap_or("")
            ));
        }
        text
    }

    /// The `OVERC_*` variables a plugin gets.
    pub fn env(&self) -> Vec<(String, String)> {
        let v = |s: &Option<String>| s.clone().unwrap_or_default();
        vec![
            ("OVERC_SERVER".into(), v(&self.server)),
            ("OVERC_SERVICE".into(), v(&self.service)),
            ("OVERC_CHANNEL".into(), self.channel.clone()),
            ("OVERC_EVENT".into(), self.event.clone()),
            ("OVERC_SEVERITY".into(), self.severity.clone()),
            ("OVERC_STATE".into(), v(&self.state)),
            ("OVERC_INFO".into(), v(&self.info)),
            ("OVERC_MESSAGE".into(), self.message.clone()),
            ("OVERC_ALERT_ID".into(), self.id.to_string()),
        ]
    }
}

/// What one plugin did with one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginOutcome {
    /// The plugin's name (`[alert:NAME]`).
    pub plugin: String,
    /// `None` when it took the alert; otherwise why not.
    pub failure: Option<String>,
}

/// Runs every plugin in parallel with the alert on stdin; waits for all.
pub fn run_plugins(
    plugins: &[AlertPluginConfig],
    cwd: &Path,
    alert: &AlertRecord,
) -> Vec<PluginOutcome> {
    let text = alert.text();
    let env = alert.env();
    std::thread::scope(|scope| {
        let handles: Vec<_> = plugins
            .iter()
            .map(|p| {
                let run = || match &p.notifier {
                    Notifier::Command(argv) => command_failure(command::run(&CommandSpec {
                        argv: argv.clone(),
                        cwd: cwd.to_path_buf(),
                        env: env.clone(),
                        stdin: format!("{text}\n").into_bytes(),
                        timeout: p.timeout,
                        output_cap: 4096,
                        kill_switch: None,
                    })),
                    Notifier::Webhook(hook) => crate::webhook::send(hook, p.timeout, alert).err(),
                };
                (p.name.clone(), scope.spawn(run))
            })
            .collect();
        handles
            .into_iter()
            .map(|(plugin, h)| PluginOutcome {
                plugin,
                failure: h
                    .join()
                    .unwrap_or_else(|_| Some("the plugin runner panicked".into())),
            })
            .collect()
    })
}

/// Why a plugin command did not take an alert, if it did not.
fn command_failure(out: command::CommandOutput) -> Option<String> {
    match out.exit {
        Exit::Code(0) => None,
        exit => {
            let said = out
                .stderr
                .lines()
                .chain(out.stdout.lines())
                .find(|l| !l.trim().is_empty());
            Some(match said {
                Some(line) if matches!(exit, Exit::Code(_)) => {
                    format!("{}: {}", exit.describe(), line.trim())
                }
                _ => exit.describe(),
            })
        }
    }
}

/// Sends a test alert through every configured plugin (`overc-server
/// test-alert`) and returns what each did. Nothing is stored.
pub fn send_test_alert(config: &crate::config::ServerConfig) -> Vec<PluginOutcome> {
    let alert = AlertRecord {
        id: 0,
        server: Some("overc".into()),
        service: None,
        channel: "overc".into(),
        event: "test".into(),
        message: "Test alert: if you read this, the alert plugin works".into(),
        severity: "OK".into(),
        state: None,
        info: None,
        attempts: 0,
    };
    run_plugins(&config.alert_plugins, &config.base_dir, &alert)
}

/// Summary of one delivery pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Alerts at least one plugin took (or recorded, without plugins).
    pub delivered: usize,
    /// Alerts every plugin refused; retried later.
    pub deferred: usize,
}

fn backoff(attempts: u32) -> Millis {
    FIRST_BACKOFF
        .saturating_mul(1 << attempts.min(20))
        .min(MAX_BACKOFF)
}

struct Delivery {
    /// Set by [`Outbox::stop`]: finish the alert at hand, leave the rest.
    stop: Arc<AtomicBool>,
    /// Alerts a plugin took whose "delivered" mark could not be written yet;
    /// marked first in the next pass instead of being sent again.
    unmarked: Vec<i64>,
    delivered: Arc<AtomicU64>,
    store: Arc<Store>,
    plugins: Vec<AlertPluginConfig>,
    cwd: std::path::PathBuf,
    clock: Arc<dyn Clock>,
}

impl Delivery {
    /// Delivers every alert that is due; alerts raised during the pass
    /// (plugin failures) are delivered in the same pass.
    fn pass(&mut self, ignore_schedule: bool) -> Result<DeliveryReport> {
        let mut report = DeliveryReport::default();
        if !self.unmarked.is_empty() {
            self.store.mark_delivered(self.unmarked.clone())?;
            self.unmarked.clear();
        }
        let mut seen = std::collections::HashSet::new();
        loop {
            let now = self.clock.now();
            let batch: Vec<AlertRecord> = self
                .store
                .undelivered(now, ignore_schedule, 500)?
                .into_iter()
                .filter(|a| seen.insert(a.id))
                .collect();
            if batch.is_empty() || self.stop.load(Ordering::Relaxed) {
                self.delivered
                    .fetch_add(report.delivered as u64, Ordering::Relaxed);
                return Ok(report);
            }
            if self.plugins.is_empty() {
                // Nothing to run: record them delivered in one commit.
                for a in &batch {
                    log::info!("alert {}: {}", a.id, a.text().replace('\n', " | "));
                }
                report.delivered += batch.len();
                self.store
                    .mark_delivered(batch.iter().map(|a| a.id).collect())?;
                continue;
            }
            for alert in batch {
                if self.stop.load(Ordering::Relaxed) {
                    // The rest stays in the outbox for the next start.
                    break;
                }
                self.deliver(&alert, &mut report)?;
            }
        }
    }

    fn deliver(&mut self, alert: &AlertRecord, report: &mut DeliveryReport) -> Result<()> {
        log::info!("alert {}: {}", alert.id, alert.text().replace('\n', " | "));
        let outcomes = run_plugins(&self.plugins, &self.cwd, alert);
        let is_failure_alert =
            (alert.channel.as_str(), alert.event.as_str()) == rules::PLUGIN_FAILED;
        // Report a failing plugin once per alert, not on every retry, and
        // never for the failure alerts themselves (that would never end).
        if alert.attempts == 0 && !is_failure_alert {
            for o in outcomes.iter().filter(|o| o.failure.is_some()) {
                let event = rules::on_plugin_failure(
                    &o.plugin,
                    o.failure.as_deref().unwrap_or("unknown reason"),
                );
                log::warn!("{} (alert {})", event.message, alert.id);
                self.store.system_alert(event)?;
            }
        }
        if outcomes.iter().any(|o| o.failure.is_none()) {
            if let Err(e) = self.store.mark_delivered(vec![alert.id]) {
                self.unmarked.push(alert.id);
                return Err(e);
            }
            report.delivered += 1;
        } else {
            let at = self.clock.now() + backoff(alert.attempts);
            log::warn!(
                "alert {}: every plugin failed; retrying in {} s",
                alert.id,
                (at - self.clock.now()) / 1000
            );
            self.store.defer_delivery(alert.id, at)?;
            report.deferred += 1;
        }
        Ok(())
    }
}

enum Msg {
    Notify,
    Now(mpsc::SyncSender<Result<DeliveryReport>>),
}

/// The delivery thread: wakes on new alerts and on retry times.
pub struct Outbox {
    stop: Arc<AtomicBool>,
    delivered: Arc<AtomicU64>,
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

impl Outbox {
    /// Starts delivering; first tries every undelivered alert (after a restart
    /// that includes those a crash left behind).
    pub fn start(
        store: Arc<Store>,
        plugins: Vec<AlertPluginConfig>,
        cwd: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Outbox> {
        let delivered = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut delivery = Delivery {
            stop: stop.clone(),
            unmarked: Vec::new(),
            delivered: delivered.clone(),
            store,
            plugins,
            cwd: cwd.to_path_buf(),
            clock,
        };
        let (tx, rx) = mpsc::channel::<Msg>();
        let thread = std::thread::Builder::new()
            .name("overc-outbox".into())
            .spawn(move || {
                // Consecutive passes that failed on storage; they back off so a
                // broken disk does not turn into a storm of plugin runs.
                let mut failures = 0u32;
                if let Err(e) = delivery.pass(true) {
                    log::error!("alert delivery failed: {e}");
                    failures = 1;
                }
                loop {
                    let mut wait = match delivery.store.next_delivery_attempt() {
                        Ok(Some(at)) => Duration::from_millis(
                            (at - delivery.clock.now()).clamp(0, 60_000) as u64,
                        ),
                        _ => Duration::from_secs(60),
                    };
                    if failures > 0 {
                        wait = wait.max(Duration::from_millis(500 << failures.min(7)));
                    }
                    let reply = match rx.recv_timeout(wait) {
                        Ok(Msg::Notify) => None,
                        Ok(Msg::Now(reply)) => Some(reply),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    };
                    // Collapse a burst of notifications into one pass.
                    let mut replies: Vec<_> = reply.into_iter().collect();
                    while let Ok(m) = rx.try_recv() {
                        if let Msg::Now(r) = m {
                            replies.push(r);
                        }
                    }
                    let result = delivery.pass(false);
                    match &result {
                        Ok(_) => failures = 0,
                        Err(e) => {
                            failures += 1;
                            log::error!("alert delivery failed: {e}");
                        }
                    }
                    for r in replies {
                        let _ = r.send(match &result {
                            Ok(rep) => Ok(*rep),
                            Err(e) => Err(crate::Error::Storage(e.to_string())),
                        });
                    }
                }
            })?;
        Ok(Outbox {
            stop,
            delivered,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Alerts delivered since start (a Prometheus counter).
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// New alerts are in the outbox.
    pub fn notify(&self) {
        if let Some(tx) = lock(&self.tx).as_ref() {
            let _ = tx.send(Msg::Notify);
        }
    }

    /// Runs a delivery pass now and waits for it (tests, and `test-alert`).
    pub fn deliver_now(&self) -> Result<DeliveryReport> {
        let (reply, answer) = mpsc::sync_channel(1);
        if let Some(tx) = lock(&self.tx).as_ref() {
            let _ = tx.send(Msg::Now(reply));
        }
        answer
            .recv()
            .map_err(|_| crate::Error::Storage("the outbox has stopped".into()))?
    }

    /// Finishes the alert at hand and stops; undelivered alerts stay in the
    /// outbox for the next start.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        lock(&self.tx).take();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> AlertRecord {
        AlertRecord {
            id: 7,
            server: Some("h".into()),
            service: Some("app".into()),
            channel: "service:state".into(),
            event: "UNK".into(),
            message: "State changed: \"(?)\" -> \"UNK\"".into(),
            severity: "UNK".into(),
            state: Some("UNK".into()),
            info: Some("x".into()),
            attempts: 0,
        }
    }

    #[test]
    fn text_has_the_originals_two_lines() {
        assert_eq!(
            alert().text(),
            "h app: [service:state/UNK] State changed: \"(?)\" -> \"UNK\"\nCurrent: UNK: x"
        );
        let server_level = AlertRecord {
            service: None,
            state: None,
            channel: "api".into(),
            event: "alert".into(),
            message: "m".into(),
            ..alert()
        };
        assert_eq!(server_level.text(), "h: [api/alert] m");
        let own = AlertRecord {
            server: None,
            service: None,
            state: None,
            channel: "alert-plugin".into(),
            event: "failed".into(),
            message: "x".into(),
            ..alert()
        };
        assert_eq!(own.text(), "[alert-plugin/failed] x");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), 10_000);
        assert_eq!(backoff(1), 20_000);
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
