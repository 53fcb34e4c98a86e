//! Running a command the way plugins need it: shell-like argv without a
//! shell, a working directory, stdin, a timeout that kills the command and
//! its children, and capped output.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Default cap on captured stdout and stderr, each.
pub const OUTPUT_CAP: usize = 64 * 1024;
/// Appended to output that was cut at the cap.
pub const OUTPUT_CUT_MARK: &str = "\n[output cut at 64 KiB]";

/// What to run.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// Program and arguments (already split).
    pub argv: Vec<String>,
    /// Working directory; a relative program path (`./x.sh`) is resolved here.
    pub cwd: PathBuf,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Bytes written to stdin (stdin is empty otherwise).
    pub stdin: Vec<u8>,
    /// Killed, with its process group, after this long.
    pub timeout: Duration,
    /// Bytes kept of stdout and of stderr.
    pub output_cap: usize,
}

impl CommandSpec {
    /// A spec with no stdin, no extra environment and the default output cap.
    pub fn new(argv: Vec<String>, cwd: &Path, timeout: Duration) -> CommandSpec {
        CommandSpec {
            argv,
            cwd: cwd.to_path_buf(),
            env: Vec::new(),
            stdin: Vec::new(),
            timeout,
            output_cap: OUTPUT_CAP,
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this status code.
    Code(i32),
    /// Killed by this signal (not by us).
    Signal(i32),
    /// Ran past its timeout and was killed.
    TimedOut(Duration),
    /// Could not be started; the reason.
    NotStarted(String),
}

impl Exit {
    /// Status code when it exited normally.
    pub fn code(&self) -> Option<i32> {
        match self {
            Exit::Code(c) => Some(*c),
            _ => None,
        }
    }

    /// A short human explanation of a failure (`exit status 1`, `timed out after 5s`).
    pub fn describe(&self) -> String {
        match self {
            Exit::Code(c) => format!("exit status {c}"),
            Exit::Signal(s) => format!("killed by signal {s}"),
            Exit::TimedOut(d) => format!("timed out after {}s", fmt_secs(*d)),
            Exit::NotStarted(why) => why.clone(),
        }
    }
}

fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s:.1}")
    }
}

/// The result of [`run`].
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// How it ended.
    pub exit: Exit,
    /// Standard output, lossily decoded, cut and marked at the cap.
    pub stdout: String,
    /// Standard error, likewise.
    pub stderr: String,
    /// Wall time it ran.
    pub duration: Duration,
}

fn read_capped(mut r: impl Read, cap: usize) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut cut = false;
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            // Keep draining past the cap so the command never blocks on a full pipe.
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                cut |= n > room;
            }
        }
    }
    let mut text = String::from_utf8_lossy(&kept).into_owned();
    if cut {
        text.push_str(OUTPUT_CUT_MARK);
    }
    text
}

fn kill_group(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Runs a command to completion or timeout. Never panics; a command that
/// cannot start is reported as [`Exit::NotStarted`].
pub fn run(spec: &CommandSpec) -> CommandOutput {
    let started = Instant::now();
    let not_started = |why: String| CommandOutput {
        exit: Exit::NotStarted(why),
        stdout: String::new(),
        stderr: String::new(),
        duration: started.elapsed(),
    };
    let Some(program) = spec.argv.first() else {
        return not_started("empty command".into());
    };
    let program_path = Path::new(program);
    let program = if program.contains('/') && program_path.is_relative() {
        spec.cwd.join(program_path)
    } else {
        program_path.to_path_buf()
    };
    let mut cmd = Command::new(&program);
    cmd.args(&spec.argv[1..])
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills its children too.
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return not_started(format!("cannot start {}: {e}", spec.argv[0])),
    };
    let pid = child.id();
    let (out_tx, out_rx) = mpsc::channel();
    if let Some(mut stdin) = child.stdin.take() {
        let data = spec.stdin.clone();
        std::thread::spawn(move || {
            // A command that does not read its stdin is not an error.
            let _ = stdin.write_all(&data);
        });
    }
    for (which, stream) in [
        (
            0,
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
        (
            1,
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
    ] {
        let tx = out_tx.clone();
        let cap = spec.output_cap;
        std::thread::spawn(move || {
            let text = stream.map(|s| read_capped(s, cap)).unwrap_or_default();
            let _ = tx.send((which, text));
        });
    }
    drop(out_tx);
    let (wait_tx, wait_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = wait_tx.send(child.wait());
    });
    let deadline = started + spec.timeout;
    let exit = match wait_rx.recv_timeout(spec.timeout) {
        Ok(Ok(status)) => match (status.code(), status.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            _ => Exit::Code(-1),
        },
        Ok(Err(e)) => Exit::NotStarted(format!("waiting for {}: {e}", spec.argv[0])),
        Err(_) => {
            kill_group(pid);
            let _ = wait_rx.recv_timeout(Duration::from_secs(5));
            Exit::TimedOut(spec.timeout)
        }
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    for _ in 0..2 {
        // A child left running in the background may still hold the pipes:
        // wait for output only until the deadline, then clear the group.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        let got = match out_rx.recv_timeout(left) {
            Ok(got) => got,
            Err(_) => {
                kill_group(pid);
                match out_rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(got) => got,
                    Err(_) => break,
                }
            }
        };
        match got {
            (0, t) => stdout = t,
            (_, t) => stderr = t,
        }
    }
    CommandOutput {
        exit,
        stdout,
        stderr,
        duration: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout_ms: u64) -> CommandOutput {
        let argv = vec!["/bin/sh".into(), "-c".into(), script.into()];
        run(&CommandSpec::new(
            argv,
            Path::new("/"),
            Duration::from_millis(timeout_ms),
        ))
    }

    #[test]
    fn exit_codes_and_output() {
        let out = sh("echo hello; echo oops >&2; exit 3", 10_000);
        assert_eq!(out.exit, Exit::Code(3));
        assert_eq!(out.stdout, "hello\n");
        assert_eq!(out.stderr, "oops\n");
    }

    #[test]
    fn stdin_and_environment_reach_the_command() {
        let mut spec = CommandSpec::new(
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "read line; echo \"$line/$X\"".into(),
            ],
            Path::new("/"),
            Duration::from_secs(10),
        );
        spec.stdin = b"from stdin\n".to_vec();
        spec.env.push(("X".into(), "from env".into()));
        assert_eq!(run(&spec).stdout, "from stdin/from env\n");
    }

    #[test]
    fn a_hanging_command_and_its_children_are_killed() {
        let out = sh("sleep 30 & sleep 30; echo never", 300);
        assert_eq!(out.exit, Exit::TimedOut(Duration::from_millis(300)));
        assert_eq!(out.exit.describe(), "timed out after 0.3s");
        assert!(out.duration < Duration::from_secs(10), "{:?}", out.duration);
    }

    #[test]
    fn death_by_signal_and_missing_program() {
        assert_eq!(sh("kill -9 $$", 10_000).exit, Exit::Signal(9));
        let out = run(&CommandSpec::new(
            vec!["./no-such-plugin".into()],
            Path::new("/"),
            Duration::from_secs(1),
        ));
        match out.exit {
            Exit::NotStarted(why) => assert!(why.contains("./no-such-plugin"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn output_is_capped_and_marked() {
        let mut spec = CommandSpec::new(
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "head -c 200000 /dev/zero | tr '\\0' x".into(),
            ],
            Path::new("/"),
            Duration::from_secs(10),
        );
        spec.output_cap = 1000;
        let out = run(&spec);
        assert_eq!(out.exit, Exit::Code(0));
        assert!(out.stdout.starts_with(&"x".repeat(1000)));
        assert!(out.stdout.ends_with(OUTPUT_CUT_MARK));
    }
}
