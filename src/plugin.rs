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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_exit_codes_map_to_states() {
        let sh = |script: &str, ms| {
            run_plugin(
                &["/bin/sh".into(), "-c".into(), script.into()],
                Path::new("/"),
                Duration::from_millis(ms),
            )
        };
        assert_eq!(sh("echo fine; exit 0", 10_000).state, State::Ok);
        assert_eq!(sh("exit 1", 10_000).state, State::Warn);
        assert_eq!(sh("exit 2", 10_000).state, State::Fail);
        assert_eq!(sh("exit 3", 10_000).state, State::Unk);
        assert_eq!(sh("exit 42", 10_000).state, State::Unk);
        let killed = sh("kill -TERM $$", 10_000);
        assert_eq!(
            (killed.state, killed.info.as_str()),
            (State::Unk, "killed by signal 15")
        );
        let slow = sh("sleep 30", 200);
        assert_eq!(slow.state, State::Unk);
        assert!(
            slow.info.starts_with("timed out after 0.2s"),
            "{}",
            slow.info
        );
        let both = sh("echo out; echo err >&2; exit 1", 10_000);
        assert_eq!(both.info, "out\nerr");
        let missing = run_plugin(&["./nope".into()], Path::new("/"), Duration::from_secs(1));
        assert_eq!(missing.state, State::Unk);
        assert!(
            missing.info.contains("cannot start ./nope"),
            "{}",
            missing.info
        );
    }
}
