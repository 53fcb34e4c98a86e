//! Running a command the way plugins need it: shell-like argv without a
//! shell, a working directory, stdin, a timeout that kills the command and
//! its children, and capped output.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
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
    /// When set, [`KillSwitch::kill_all`] kills the command (with its
    /// process group) while it runs, and refuses to start it afterwards.
    pub kill_switch: Option<KillSwitch>,
}

/// Kills the commands started with it that are still running, each with its
/// process group, and any started afterwards: a program that stops must not
/// leave its plugins (and their children) running.
#[derive(Debug, Clone, Default)]
pub struct KillSwitch(Arc<Mutex<Running>>);

#[derive(Debug, Default)]
struct Running {
    groups: BTreeSet<u32>,
    thrown: bool,
}

// Only `overcli monitor` (feature `client`) stops its plugins early.
#[cfg_attr(not(feature = "client"), allow(dead_code))]
impl KillSwitch {
    /// A switch with nothing to kill yet.
    pub fn new() -> KillSwitch {
        KillSwitch::default()
    }

    /// Kills every command running under this switch, and from now on every
    /// command started under it as soon as it starts.
    pub fn kill_all(&self) {
        let mut running = self.lock();
        running.thrown = true;
        for pid in &running.groups {
            kill_group(*pid);
        }
    }

    /// True once [`KillSwitch::kill_all`] was called.
    pub fn is_thrown(&self) -> bool {
        self.lock().thrown
    }

    /// Counts the process group `pid` as running; false (and killed) when the
    /// switch was already thrown.
    fn enter(&self, pid: u32) -> bool {
        let mut running = self.lock();
        if running.thrown {
            kill_group(pid);
            return false;
        }
        running.groups.insert(pid);
        true
    }

    fn leave(&self, pid: u32) {
        self.lock().groups.remove(&pid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        // The set stays consistent whatever panicked while holding it.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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
            kill_switch: None,
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

/// How long output is still read after the command exited, for what it
/// wrote just before: a child it left running (a daemon) may hold the pipes
/// open for as long as that child lives, so there is no waiting for the end.
pub const OUTPUT_GRACE: Duration = Duration::from_millis(150);

/// One captured stream: the first `cap` bytes, and whether more came.
struct Capture {
    kept: Vec<u8>,
    cap: usize,
    cut: bool,
}

impl Capture {
    fn new(cap: usize) -> Capture {
        Capture {
            kept: Vec::new(),
            cap,
            cut: false,
        }
    }

    fn push(&mut self, data: &[u8]) {
        // Keep draining past the cap so the command never blocks on a full pipe.
        let room = self.cap.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
        self.cut |= data.len() > room;
    }

    fn into_text(self) -> String {
        let mut text = String::from_utf8_lossy(&self.kept).into_owned();
        if self.cut {
            text.push_str(OUTPUT_CUT_MARK);
        }
        text
    }
}

/// Reads what is there without blocking; false once the stream is done.
fn read_available(r: &mut impl Read, into: &mut Capture, buf: &mut [u8]) -> bool {
    match r.read(buf) {
        Ok(0) => false,
        Ok(n) => {
            into.push(&buf[..n]);
            true
        }
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        ),
    }
}

fn kill_group(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

fn exit_of(status: std::io::Result<ExitStatus>, program: &str) -> Exit {
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            _ => Exit::Code(-1),
        },
        Err(e) => Exit::NotStarted(format!("waiting for {program}: {e}")),
    }
}

/// Waits for a child on a thread of its own (the only thread a run starts),
/// which ends as soon as the child has exited. Its end of a socket pair
/// closes then, which wakes the `poll` of [`Pipes::pump`].
struct Reaper {
    status: mpsc::Receiver<std::io::Result<ExitStatus>>,
    /// Readable (end of file) once the child has been reaped.
    woken: UnixStream,
}

impl Reaper {
    fn start(mut child: Child) -> std::io::Result<Reaper> {
        let (woken, wake) = UnixStream::pair()?;
        let (tx, status) = mpsc::channel();
        std::thread::Builder::new()
            .name("overc-reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = tx.send(child.wait());
                drop(wake);
            })?;
        Ok(Reaper { status, woken })
    }

    /// The exit status, once `woken` said it is there (or after a kill).
    fn status(&self, wait: Duration) -> Option<std::io::Result<ExitStatus>> {
        self.status.recv_timeout(wait).ok()
    }
}

/// The parent's ends of a running command's stdin, stdout and stderr.
struct Pipes {
    stdin: Option<ChildStdin>,
    input: Vec<u8>,
    written: usize,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    out: Capture,
    err: Capture,
}

impl Pipes {
    fn take(child: &mut Child, spec: &CommandSpec) -> Pipes {
        let nonblocking = |fd: &dyn AsFd| {
            // Blocking only costs a late answer: `poll` says when it is ready.
            let _ = rustix::io::ioctl_fionbio(fd.as_fd(), true);
        };
        let stdin = child.stdin.take().filter(|_| !spec.stdin.is_empty());
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        stdin.iter().for_each(|p| nonblocking(p));
        stdout.iter().for_each(|p| nonblocking(p));
        stderr.iter().for_each(|p| nonblocking(p));
        Pipes {
            stdin,
            input: spec.stdin.clone(),
            written: 0,
            stdout,
            stderr,
            out: Capture::new(spec.output_cap),
            err: Capture::new(spec.output_cap),
        }
    }

    /// Feeds stdin and reads stdout and stderr on this thread until the
    /// command exited and its pipes closed, or `OUTPUT_GRACE` after its exit,
    /// or its timeout (then its process group is killed).
    fn pump(&mut self, reaper: &Reaper, pid: u32, spec: &CommandSpec, started: Instant) -> Exit {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let ready = PollFlags::IN | PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL;
        let mut buf = vec![0u8; 16 * 1024];
        let mut exit = None;
        let mut stop_at = started + spec.timeout;
        loop {
            if exit.is_some() && self.stdout.is_none() && self.stderr.is_none() {
                break;
            }
            let now = Instant::now();
            if now >= stop_at {
                if exit.is_some() {
                    // Whatever of its process group still holds the pipes
                    // was left behind by a command that is done.
                    kill_group(pid);
                    break;
                }
                kill_group(pid);
                let _ = reaper.status(Duration::from_secs(5));
                exit = Some(Exit::TimedOut(spec.timeout));
                stop_at = Instant::now() + OUTPUT_GRACE;
                continue;
            }
            let mut fds = Vec::with_capacity(4);
            let mut slots = [None; 4];
            if exit.is_none() {
                slots[0] = Some(fds.len());
                fds.push(PollFd::new(&reaper.woken, PollFlags::IN));
            }
            if let Some(p) = &self.stdout {
                slots[1] = Some(fds.len());
                fds.push(PollFd::new(p, PollFlags::IN));
            }
            if let Some(p) = &self.stderr {
                slots[2] = Some(fds.len());
                fds.push(PollFd::new(p, PollFlags::IN));
            }
            if let Some(p) = &self.stdin {
                slots[3] = Some(fds.len());
                fds.push(PollFd::new(p, PollFlags::OUT));
            }
            let wait = Timespec::try_from(stop_at - now).unwrap_or(Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            });
            if let Err(e) = poll(&mut fds, Some(&wait)) {
                if e != rustix::io::Errno::INTR {
                    log::warn!("poll on the pipes of {}: {e}", spec.argv[0]);
                    // Not a busy loop if poll keeps failing.
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            let events: Vec<PollFlags> = slots
                .iter()
                .map(|s| s.map_or(PollFlags::empty(), |i| fds[i].revents()))
                .collect();
            drop(fds);
            if events[0].intersects(ready) {
                exit = Some(match reaper.status(Duration::from_secs(1)) {
                    Some(status) => exit_of(status, &spec.argv[0]),
                    None => Exit::NotStarted(format!("waiting for {}: no status", spec.argv[0])),
                });
                // Nobody is left to read the rest of stdin.
                self.stdin = None;
                stop_at = Instant::now() + OUTPUT_GRACE;
            }
            if events[1].intersects(ready) {
                if let Some(p) = &mut self.stdout {
                    if !read_available(p, &mut self.out, &mut buf) {
                        self.stdout = None;
                    }
                }
            }
            if events[2].intersects(ready) {
                if let Some(p) = &mut self.stderr {
                    if !read_available(p, &mut self.err, &mut buf) {
                        self.stderr = None;
                    }
                }
            }
            if events[3].intersects(PollFlags::OUT | ready) {
                self.feed_stdin();
            }
        }
        exit.unwrap_or_else(|| Exit::NotStarted(format!("waiting for {}", spec.argv[0])))
    }

    fn feed_stdin(&mut self) {
        let Some(p) = &mut self.stdin else { return };
        match p.write(&self.input[self.written..]) {
            Ok(n) => self.written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
            // A command that does not read its stdin is not an error.
            Err(_) => self.written = self.input.len(),
        }
        if self.written >= self.input.len() {
            // Closed, so that the command sees the end of its input.
            self.stdin = None;
        }
    }
}

/// What stands for a NUL byte in arguments and environment values.
pub const NUL_REPLACEMENT: char = char::REPLACEMENT_CHARACTER;

/// `text` with each NUL replaced by [`NUL_REPLACEMENT`] (U+FFFD): the OS
/// takes arguments and environment values as C strings, so `Command` refuses
/// to start a process when one holds a NUL. An alert's info or message may
/// hold one (any client can send it, a plugin can print it), and it must not
/// make the alert undeliverable. Stdin is bytes and gets the text unchanged.
pub fn without_nul(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', &NUL_REPLACEMENT.to_string()))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Runs a command to completion or timeout. Never panics; a command that
/// cannot start is reported as [`Exit::NotStarted`]. A NUL in an argument or
/// an environment variable is passed as U+FFFD (see [`without_nul`]).
///
/// Everything happens on the calling thread but the wait for the exit
/// status, on a thread that ends with the command. Output is read until the
/// command exited and closed its pipes, or [`OUTPUT_GRACE`] after its exit
/// when something it left running (a daemon) keeps them open.
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
    if spec.kill_switch.as_ref().is_some_and(KillSwitch::is_thrown) {
        return not_started("not started: stopping".into());
    }
    let program_path = Path::new(program);
    let program = if program.contains('/') && program_path.is_relative() {
        spec.cwd.join(program_path)
    } else {
        program_path.to_path_buf()
    };
    let mut cmd = Command::new(&program);
    cmd.args(spec.argv[1..].iter().map(|a| without_nul(a).into_owned()))
        .current_dir(&spec.cwd)
        .envs(
            spec.env
                .iter()
                .map(|(k, v)| (without_nul(k).into_owned(), without_nul(v).into_owned())),
        )
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
    // Thrown between the check above and here, the switch kills it now.
    let switch = spec.kill_switch.as_ref().filter(|k| k.enter(pid));
    let mut pipes = Pipes::take(&mut child, spec);
    let reaper = match Reaper::start(child) {
        Ok(r) => r,
        Err(e) => {
            // The child is dropped unreaped; better than one we cannot time out.
            kill_group(pid);
            if let Some(switch) = switch {
                switch.leave(pid);
            }
            return not_started(format!("cannot wait for {}: {e}", spec.argv[0]));
        }
    };
    let exit = pipes.pump(&reaper, pid, spec, started);
    if let Some(switch) = switch {
        switch.leave(pid);
    }
    CommandOutput {
        exit,
        stdout: pipes.out.into_text(),
        stderr: pipes.err.into_text(),
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

    /// Regression: an info with a NUL made `Command` refuse `OVERC_INFO`,
    /// so every plugin failed to start and the alert was retried for 90
    /// days, never delivered.
    #[test]
    fn a_nul_in_the_environment_or_arguments_still_runs_the_plugin() {
        let mut spec = CommandSpec::new(
            vec![
                "/bin/sh".into(),
                "-c".into(),
                r#"printf '%s|%s|%s|' "$OVERC_INFO" "$OVERC_MESSAGE" "$0"; cat"#.into(),
                "arg\0zero".into(),
            ],
            Path::new("/"),
            Duration::from_secs(10),
        );
        spec.env.push(("OVERC_INFO".into(), "disk\0full".into()));
        spec.env.push(("OVERC_MESSAGE".into(), "\0".into()));
        spec.stdin = b"stdin \0 kept\n".to_vec();
        let out = run(&spec);
        assert_eq!(out.exit, Exit::Code(0), "{out:?}");
        assert_eq!(
            out.stdout, "disk\u{FFFD}full|\u{FFFD}|arg\u{FFFD}zero|stdin \0 kept\n",
            "the environment and arguments with U+FFFD, stdin as it was"
        );
        assert_eq!(without_nul("plain"), "plain");
        assert!(matches!(
            without_nul("plain"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn stdin_larger_than_a_pipe_is_fed_whole_or_dropped_at_exit() {
        let spec = |script: &str| {
            let mut spec = CommandSpec::new(
                vec!["/bin/sh".into(), "-c".into(), script.into()],
                Path::new("/"),
                Duration::from_secs(20),
            );
            spec.stdin = vec![b'x'; 1 << 20];
            spec
        };
        assert_eq!(run(&spec("wc -c")).stdout.trim(), "1048576");
        let ignored = run(&spec("exit 0"));
        assert_eq!(
            ignored.exit,
            Exit::Code(0),
            "a command that does not read its stdin"
        );
        assert!(ignored.duration < Duration::from_secs(10));
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

    /// Kills, when dropped, the daemons whose pid files it was given (even
    /// when a test fails), so no test leaves a process behind.
    struct Daemons(Vec<std::path::PathBuf>);

    impl Drop for Daemons {
        fn drop(&mut self) {
            for file in &self.0 {
                // The daemon writes its pid file a moment after the plugin exits.
                let deadline = Instant::now() + Duration::from_secs(10);
                let pid = loop {
                    let pid = std::fs::read_to_string(file)
                        .ok()
                        .and_then(|s| s.trim().parse::<i32>().ok());
                    if pid.is_some() || Instant::now() > deadline {
                        break pid;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                if let Some(pid) = pid.and_then(rustix::process::Pid::from_raw) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
    }

    fn threads_of_this_process() -> usize {
        std::fs::read_dir("/proc/self/task").unwrap().count()
    }

    /// Regression: a plugin that leaves a daemon behind (`setsid … &`) which
    /// keeps its stdout open made `run` wait the whole timeout for an exit-0
    /// plugin, and left its two reader threads blocked until the daemon died.
    ///
    /// The threads are counted in a process of their own (this test binary
    /// run again for `daemon_probe` alone): the other tests start threads too.
    #[test]
    fn a_daemonizing_plugin_returns_promptly_and_leaves_no_thread() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "command::tests::daemon_probe",
                "--test-threads=1",
                "--nocapture",
            ])
            .env("OVERC_DAEMON_PROBE", "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "the probe did not run: {text}");
    }

    /// The body of the test above; does nothing unless run by it.
    #[test]
    fn daemon_probe() {
        if std::env::var_os("OVERC_DAEMON_PROBE").is_none() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut daemons = Daemons(Vec::new());
        let before = threads_of_this_process();
        for i in 0..5 {
            let pid_file = dir.path().join(format!("daemon-{i}.pid"));
            daemons.0.push(pid_file.clone());
            let script =
                "setsid sh -c 'echo $$ > \"$0\"; exec sleep 120' \"$1\" & echo started; exit 0";
            let out = run(&CommandSpec::new(
                vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    script.into(),
                    "sh".into(),
                    pid_file.display().to_string(),
                ],
                Path::new("/"),
                Duration::from_secs(20),
            ));
            assert_eq!(out.exit, Exit::Code(0), "run {i}");
            assert_eq!(out.stdout, "started\n", "run {i}");
            // Far below the timeout, which it used to take.
            assert!(out.duration < Duration::from_secs(10), "run {i}: {out:?}");
        }
        // The daemons still hold the pipes; no thread may still wait on them.
        // The thread that reaped the plugin may be a moment from its end.
        let deadline = Instant::now() + Duration::from_secs(10);
        while threads_of_this_process() > before {
            assert!(
                Instant::now() < deadline,
                "threads grew from {before} to {} over 5 runs",
                threads_of_this_process()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A child left in the plugin's own process group that keeps the pipes
    /// open does not hold the result up either, and does not outlive it.
    #[test]
    fn a_background_child_holding_the_pipes_is_cleared() {
        let out = sh("sleep 120 & echo $!; exit 1", 20_000);
        assert_eq!(out.exit, Exit::Code(1));
        assert!(out.duration < Duration::from_secs(10), "{out:?}");
        let pid = out.stdout.trim();
        let deadline = Instant::now() + Duration::from_secs(10);
        // Gone, or a zombie until its new parent reaps it.
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.contains(") Z "))
        {
            assert!(Instant::now() < deadline, "sleep {pid} still runs");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_kill_switch_kills_running_commands_and_refuses_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let started = dir.path().join("started");
        let switch = KillSwitch::new();
        let mut spec = CommandSpec::new(
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "sleep 600 & touch \"$0\"; sleep 600".into(),
                started.display().to_string(),
            ],
            Path::new("/"),
            Duration::from_secs(600),
        );
        spec.kill_switch = Some(switch.clone());
        // Thrown on the way out too, so a failing test leaves nothing running.
        struct ThrowOnDrop(KillSwitch);
        impl Drop for ThrowOnDrop {
            fn drop(&mut self) {
                self.0.kill_all();
            }
        }
        let _throw = ThrowOnDrop(switch.clone());
        let running = {
            let spec = spec.clone();
            std::thread::spawn(move || run(&spec))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !started.exists() {
            assert!(Instant::now() < deadline, "the command did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        switch.kill_all();
        let out = running.join().unwrap();
        assert_eq!(out.exit, Exit::Signal(9));
        assert!(out.duration < Duration::from_secs(60), "{out:?}");
        assert!(matches!(run(&spec).exit, Exit::NotStarted(_)));
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
