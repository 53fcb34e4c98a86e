//! The real `overc-server` binary: flags, config errors, running with no
//! config, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use crate::common::{get, post_bytes, report, signal, wait_for_line};

const BIN: &str = env!("CARGO_BIN_EXE_overc-server");

fn run(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("OVERC_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A started server. A test that fails before `terminate` drops it, and the
/// drop kills the process, so no server outlives a failed test.
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts the binary and waits for the line that says where it listens.
fn spawn(cmd: &mut Command) -> (Running, String) {
    let (child, url, _log) = spawn_logged(cmd);
    (child, url)
}

/// [`spawn`], and the lines the server logs after it listens.
fn spawn_logged(cmd: &mut Command) -> (Running, String, mpsc::Receiver<String>) {
    let mut child = Running(
        cmd.stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            let status = child.wait();
            panic!("server exited before listening: {status:?}");
        }
        if let Some(url) = line.trim().strip_prefix("overc-server listening on ") {
            let url = url.to_owned();
            let (tx, log) = mpsc::channel();
            // Keep draining stderr so the server never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut line = String::new();
                while err.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    let _ = tx.send(std::mem::take(&mut line));
                }
            });
            return (child, url, log);
        }
    }
}

fn terminate(child: &mut Child) -> i32 {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap().code().unwrap_or(-1)
}

#[test]
fn help_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(&["--help"], dir.path());
    assert_eq!(code, 0);
    for flag in ["--config", "--listen", "--database", "-v"] {
        assert!(out.contains(flag), "{flag} missing from help");
    }
    let (code, out, _) = run(&["--version"], dir.path());
    assert_eq!(code, 0);
    assert!(out.starts_with("overc-server 0."), "{out}");
    let (code, _, err) = run(&["--bogus"], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("--bogus"), "{err}");
}

#[test]
fn bad_config_is_refused_naming_file_section_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("server.ini");
    std::fs::write(&cfg, "[overc]\nhistory-limit = lots\n").unwrap();
    let (code, _, err) = run(&["--config", cfg.to_str().unwrap()], dir.path());
    assert_eq!(code, 2);
    assert!(
        err.contains("server.ini") && err.contains("[overc]") && err.contains("history-limit"),
        "{err}"
    );
    let (code, _, err) = run(&["--config", "missing.ini"], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("missing.ini"), "{err}");
}

#[test]
fn runs_without_config_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env_remove("OVERC_CONFIG"),
    );
    let (code, _) = post_bytes(
        &url,
        "/api/set/service/status",
        report("h", "k", "s", "OK", "hi").to_string().as_bytes(),
    );
    assert_eq!(code, 200);
    assert_eq!(terminate(&mut child), 0);
    assert!(
        dir.path().join("overc.db").exists(),
        "default database in the working directory"
    );

    // Started again on the same file, the report is still there.
    let (mut child, url) = spawn(
        Command::new(BIN)
            .args(["-l", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env_remove("OVERC_CONFIG"),
    );
    let (_, status) = get(&url, "/ui/api/status/");
    assert_eq!(status["servers"][0]["services"][0]["state"]["info"], "hi");
    assert_eq!(terminate(&mut child), 0);
}

#[test]
fn config_file_and_environment_choose_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("server.ini");
    std::fs::write(
        &cfg,
        "[overc]\nlisten = 127.0.0.1:0\ndatabase = sqlite:from-file.db\n",
    )
    .unwrap();
    let (mut child, url) = spawn(
        Command::new(BIN)
            .current_dir(dir.path())
            .env("OVERC_CONFIG", &cfg)
            .env("OVERC_DATABASE", "from-env.db"),
    );
    let (code, _) = post_bytes(
        &url,
        "/api/ping",
        br#"{"server": {"name": "h", "key": "k"}}"#,
    );
    assert_eq!(code, 200);
    assert_eq!(terminate(&mut child), 0);
    assert!(dir.path().join("from-env.db").exists());
    assert!(!dir.path().join("from-file.db").exists());

    let (mut child, _) = spawn(
        Command::new(BIN)
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "--database",
                "from-flag.db",
            ])
            .current_dir(dir.path()),
    );
    assert_eq!(terminate(&mut child), 0);
    assert!(dir.path().join("from-flag.db").exists());
}

#[test]
fn undelivered_alerts_are_delivered_after_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("plugin-broken");
    let out = dir.path().join("alerts.log");
    std::fs::write(&flag, "").unwrap();
    let cfg = dir.path().join("server.ini");
    std::fs::write(
        &cfg,
        format!(
            "[overc]\nlisten = 127.0.0.1:0\ndatabase = overc.db\n[alert:flaky]\ncommand = {} {} {}\n",
            crate::supervision::plugin("flaky.sh"),
            flag.display(),
            out.display()
        ),
    )
    .unwrap();
    let (mut child, url) = spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .current_dir(dir.path()),
    );
    let (code, _) = post_bytes(
        &url,
        "/api/set/service/status",
        report("h", "k", "db", "FAIL", "disk gone")
            .to_string()
            .as_bytes(),
    );
    assert_eq!(code, 200);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(crate::supervision::records(&out).is_empty());

    std::fs::remove_file(&flag).unwrap();
    let (mut child, _) = spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .current_dir(dir.path()),
    );
    // Delivery happens in the background right after start; wait for it, bounded.
    let mut delivered = false;
    for _ in 0..200 {
        if crate::supervision::records(&out)
            .iter()
            .any(|r| r.starts_with("h db: [service:state/FAIL]"))
        {
            delivered = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(terminate(&mut child), 0);
    assert!(
        delivered,
        "the alert from before the crash was not delivered: {:?}",
        crate::supervision::records(&out)
    );
}

#[test]
fn test_alert_runs_every_plugin_and_reports_each() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alerts.log");
    let cfg = dir.path().join("server.ini");
    let record = crate::supervision::plugin("record.sh");
    std::fs::write(
        &cfg,
        format!("[alert:log]\ncommand = {record} {}\n", out.display()),
    )
    .unwrap();
    let (code, stdout, _) = run(
        &["test-alert", "--config", cfg.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(stdout.trim(), "log: ok");
    let got = crate::supervision::records(&out);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("overc: [overc/test] Test alert"),
        "{}",
        got[0]
    );

    std::fs::write(
        &cfg,
        format!(
            "[alert:log]\ncommand = {record} {}\n[alert:bad]\ncommand = {}\n",
            out.display(),
            crate::supervision::plugin("fail.sh")
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = run(
        &["test-alert", "--config", cfg.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(stdout.contains("log: ok"), "{stdout}");
    assert!(
        stdout.contains("bad: FAILED: exit status 1: mail server down"),
        "{stdout}"
    );
    assert!(stderr.contains("1 of 2"), "{stderr}");

    let (code, _, stderr) = run(&["test-alert"], dir.path());
    assert_eq!(code, 2);
    assert!(stderr.contains("--config"), "{stderr}");
}

/// Started under a low soft limit on open files (a shell's usual 1,024,
/// here 256), the server raises it to the hard limit, or 65,536 if that is
/// lower: each client connection holds one.
#[test]
fn raises_the_open_files_limit_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _url) = spawn(
        Command::new("sh")
            .args([
                "-c",
                "ulimit -Sn 256 && exec \"$0\" --listen 127.0.0.1:0",
                BIN,
            ])
            .current_dir(dir.path())
            .env_remove("OVERC_CONFIG"),
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    assert_eq!(terminate(&mut child), 0);
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    let wanted = hard
        .parse::<u64>()
        .map_or(overc::server::OPEN_FILES_WANTED, |h| {
            h.min(overc::server::OPEN_FILES_WANTED)
        });
    assert_eq!(soft, wanted.max(256).to_string(), "{line}");
}

/// Regression: SIGHUP (a closed terminal, a habit of `kill -HUP` to reload)
/// killed the server with status 129.
#[test]
fn sighup_is_logged_and_the_server_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url, log) = spawn_logged(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env_remove("OVERC_CONFIG")
            .env_remove("RUST_LOG"),
    );
    signal(&child, "HUP");
    wait_for_line(&log, "SIGHUP");
    let (code, _) = post_bytes(
        &url,
        "/api/ping",
        br#"{"server": {"name": "h", "key": "k"}}"#,
    );
    assert_eq!(code, 200, "still answering after SIGHUP");
    assert_eq!(terminate(&mut child), 0);
}

/// Regression: `database = mysql://…` (the original OverC's default) was
/// taken for a file name and failed with "file not found" (exit 1).
#[test]
fn a_database_url_other_than_sqlite_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("server.ini");
    std::fs::write(
        &cfg,
        "[overc]\nlisten = 127.0.0.1:0\ndatabase = mysql://overc:hunter2@localhost/overc\n",
    )
    .unwrap();
    let (code, _, err) = run(&["--config", cfg.to_str().unwrap()], dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("server.ini") && err.contains("[overc] database") && err.contains("mysql"),
        "{err}"
    );
    assert!(
        err.contains("sqlite:PATH"),
        "names what is supported: {err}"
    );
    assert!(
        !err.contains("hunter2"),
        "no password in the message: {err}"
    );

    let (code, _, err) = run(
        &[
            "--listen",
            "127.0.0.1:0",
            "--database",
            "postgres://overc:hunter2@127.0.0.1:1/overc?sslmode=verify",
        ],
        dir.path(),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--database") && err.contains("use disable, prefer, require, verify-ca"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "no password in the message: {err}"
    );

    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_remove("OVERC_CONFIG")
        .env("OVERC_DATABASE", "redis://cache/0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("OVERC_DATABASE") && err.contains("redis"),
        "{err}"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "nothing but server.ini: {files:?}");
}

/// A hard link reaches the same database under another name (and its
/// redo log by name would be another file): the second server is refused.
#[test]
fn a_second_server_on_a_hard_link_to_the_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, url) = spawn(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--database", "overc.db"])
            .current_dir(dir.path())
            .env_remove("OVERC_CONFIG"),
    );
    let (code, _) = post_bytes(
        &url,
        "/api/set/service/status",
        report("h", "k", "s", "OK", "hi").to_string().as_bytes(),
    );
    assert_eq!(code, 200);
    std::fs::hard_link(dir.path().join("overc.db"), dir.path().join("other.db")).unwrap();
    // Read until it exits; a second server that starts listening has failed
    // the test (and is killed by `Running`'s drop).
    let mut second = Running(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--database", "other.db"])
            .current_dir(dir.path())
            .env_remove("OVERC_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut err = String::new();
    for line in BufReader::new(second.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        assert!(
            !line.contains("listening on"),
            "two servers on one database"
        );
        err.push_str(&line);
    }
    let code = second.wait().unwrap().code();
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("other.db is in use by another overc-server") && err.contains("hard link"),
        "{err}"
    );
    assert!(
        !dir.path().join("other.db-redo").exists(),
        "refused before anything was written"
    );
    assert_eq!(terminate(&mut first), 0);
}

/// Regression: a busy port left a new `overc.db` and `overc.db-redo` behind
/// and said `config: cannot listen …: Address already in use (os error 98)`.
#[test]
fn a_busy_port_is_refused_before_any_database_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = run(&["--listen", &addr, "--database", "overc.db"], dir.path());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("cannot listen on {addr}: address in use")),
        "{err}"
    );
    assert!(!err.contains("config:"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing created: {left:?}");
}
