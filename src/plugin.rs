//! Running a Nagios plugin and turning its exit and output into a state.

use std::path::Path;
use std::time::Duration;

use crate::command::{self, CommandSpec, Exit};
use crate::state::State;

/// The result of running one Nagios plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginRun {
    /// Exit code mapped to a state (0 OK, 1 WARN, 2 FAIL, else UNK).
    pub state: State,
    /// What to report as `info`: stdout, then stderr, or why it failed.
    pub info: String,
    /// How it ended.
    pub exit: Exit,
    /// How long it ran.
    pub duration: Duration,
}

/// Runs a plugin: no shell, `cwd` as working directory, killed with its
/// children at `timeout`. Never fails: problems become `UNK` with the reason.
pub fn run_plugin(argv: &[String], cwd: &Path, timeout: Duration) -> PluginRun {
    run_plugin_spec(&CommandSpec::new(argv.to_vec(), cwd, timeout))
}

/// [`run_plugin`] with every knob of [`CommandSpec`] (a kill switch, stdin…).
pub(crate) fn run_plugin_spec(spec: &CommandSpec) -> PluginRun {
    let out = command::run(spec);
    let mut info = out.stdout.trim_end().to_owned();
    let stderr = out.stderr.trim_end();
    if !stderr.is_empty() {
        if !info.is_empty() {
            info.push('\n');
        }
        info.push_str(stderr);
    }
    let state = match &out.exit {
        Exit::Code(c) => State::from_exit_code(Some(*c)),
        _ => State::Unk,
    };
    match &out.exit {
        Exit::Code(_) => {}
        other => {
            let why = other.describe();
            info = if info.is_empty() {
                why
            } else {
                format!("{why}\n{info}")
            };
        }
    }
    PluginRun {
        state,
        info: crate::protocol::cut_text(info),
        exit: out.exit,
        duration: out.duration,
    }
}
