//! The real `overcli` binary against a real server on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::tls::{CA_PEM, TlsEndpoint};
use crate::common::{TestServer, signal, wait_for_line};
use crate::supervision::plugin;

const BIN: &str = env!("CARGO_BIN_EXE_overcli");

fn overcli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("OVERC_SERVER")
        .env_remove("OVERC_SERVER_ID")
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Waits, bounded, until `f` holds; the monitor runs on real time.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ping_and_its_exit_statuses() {
    let t = TestServer::start();
    let url = t.url();
    let o = overcli(&["-s", &url, "-i", "h:k", "ping"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "pong");
    let o = overcli(&["-s", &url, "-i", "h:wrong", "ping"]);
    assert_eq!(code(&o), 3);
    assert!(
        text(&o.stderr).contains("Invalid server key"),
        "{}",
        text(&o.stderr)
    );
    let o = overcli(&["-i", "h:k", "ping"]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr).contains("OVERC_SERVER"),
        "{}",
        text(&o.stderr)
    );
    let o = overcli(&["-s", &url, "ping"]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr).contains("OVERC_SERVER_ID"),
        "{}",
        text(&o.stderr)
    );
    let o = overcli(&["-s", &url, "-i", "no-key", "ping"]);
    assert_eq!(code(&o), 2);
    let o = Command::new(BIN)
        .arg("ping")
        .env("OVERC_SERVER", &url)
        .env("OVERC_SERVER_ID", "h:k")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "environment fallbacks");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = overcli(&[
        "-s",
        &format!("http://127.0.0.1:{port}"),
        "-i",
        "h:k",
        "ping",
    ]);
    assert_eq!(code(&o), 1, "unreachable");
    let o = overcli(&["-s", &url, "-i", "h:k", "frobnicate"]);
    assert_eq!(code(&o), 2);
    let o = overcli(&["--bogus"]);
    assert_eq!(code(&o), 2);
}

#[test]
fn service_status_and_alert_are_stored() {
    let t = TestServer::start();
    let url = t.url();
    let o = overcli(&[
        "-s",
        &url,
        "-i",
        "h:k",
        "service-status",
        "30",
        "db",
        "warn",
        "slow queries",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let s = t.service("h", "db").unwrap();
    assert_eq!(s["state"]["state"], "WARN");
    assert_eq!(s["state"]["info"], "slow queries");
    assert_eq!(s["period"], 30);
    let o = overcli(&[
        "-s",
        &url,
        "-i",
        "h:k",
        "alert",
        "--service",
        "db",
        "disk replaced",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let o = overcli(&["-s", &url, "-i", "h:k", "alert", "server-wide"]);
    assert_eq!(code(&o), 0);
    let (_, alerts) = t.get("/ui/api/status/alerts/");
    let msgs: Vec<(&str, &Value)> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["message"].as_str().unwrap(), &a["service"]))
        .collect();
    assert!(
        msgs.contains(&("disk replaced", &Value::from("db"))),
        "{msgs:?}"
    );
    assert!(msgs.contains(&("server-wide", &Value::Null)), "{msgs:?}");

    for bad in [
        vec!["service-status", "soon", "db", "OK"],
        vec!["service-status", "30", "db", "MAYBE"],
        vec!["service-status", "30", "db"],
        vec!["alert"],
    ] {
        let mut args = vec!["-s", url.as_str(), "-i", "h:k"];
        args.extend(bad.iter());
        let o = overcli(&args);
        assert_eq!(code(&o), 2, "{bad:?}: {}", text(&o.stderr));
    }
    let o = overcli(&[
        "-s",
        &url,
        "-i",
        "h:wrong",
        "service-status",
        "30",
        "db",
        "OK",
    ]);
    assert_eq!(code(&o), 3);
}

#[test]
fn a_server_error_is_exit_status_1() {
    let t = TestServer::start_with(|c| c.lock_timeout = Duration::from_millis(100));
    let blocker = rusqlite::Connection::open(t.db_path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE; INSERT INTO servers(name, title, key_salt, key_hash, first_seen, last_seen) VALUES ('x','x',x'00',x'00',0,0);").unwrap();
    let o = overcli(&[
        "-s",
        &t.url(),
        "-i",
        "h:k",
        "service-status",
        "30",
        "db",
        "OK",
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("503"), "{}", text(&o.stderr));
    blocker.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn help_for_every_command_and_version() {
    for cmd in ["ping", "service-status", "alert", "monitor", "check"] {
        let o = overcli(&[cmd, "--help"]);
        assert_eq!(code(&o), 0);
        assert!(text(&o.stdout).starts_with("Usage: overcli"), "{cmd}");
        assert!(text(&o.stdout).contains(cmd), "{cmd}");
    }
    let o = overcli(&["--help"]);
    assert!(text(&o.stdout).contains("service-status PERIOD NAME STATE [INFO]"));
    let o = overcli(&["--version"]);
    assert!(text(&o.stdout).starts_with("overcli 0."));
}

fn write_config(dir: &Path, server: &str, services: &[(&str, u32, &str)]) -> std::path::PathBuf {
    let mut ini = format!("[overc]\nserver = {server}\nmy-name = mon\nmy-key = secret\n");
    for (name, period, command) in services {
        ini.push_str(&format!(
            "\n[service:{name}]\nperiod = {period}\ntimeout = 1\ncommand = {command}\n"
        ));
    }
    let path = dir.join("monitor.ini");
    std::fs::write(&path, ini).unwrap();
    path
}

#[test]
fn check_prints_a_table_and_exits_with_the_worst_code() {
    let dir = tempfile::tempdir().unwrap();
    let exit = plugin("exit.sh");
    let cfg = write_config(
        dir.path(),
        "http://127.0.0.1:9",
        &[
            ("ok", 60, &format!("{exit} 0 'all fine | t=1s'")),
            ("warn", 60, &format!("{exit} 1 'a bit hot'")),
        ],
    );
    let o = overcli(&["check", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.starts_with("SERVICE  STATE  TIME"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok ") && l.contains(" OK ") && l.ends_with("all fine | t=1s")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("warn ") && l.contains("WARN") && l.ends_with("a bit hot")),
        "{out}"
    );
    let cfg = write_config(
        dir.path(),
        "http://127.0.0.1:9",
        &[
            ("ok", 60, &format!("{exit} 0 fine")),
            ("gone", 60, "./not-there.sh"),
        ],
    );
    let o = overcli(&["check", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 3);
    assert!(
        text(&o.stdout).contains("cannot start ./not-there.sh"),
        "{}",
        text(&o.stdout)
    );
    std::fs::write(dir.path().join("bad.ini"), "[service:x]\nperiod = 5\n").unwrap();
    let o = overcli(&["check", dir.path().join("bad.ini").to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr).contains("bad.ini: [service:x] command: missing"),
        "{}",
        text(&o.stderr)
    );
}

/// A monitor config with one `counter.sh` service of period 1; returns the
/// file the plugin counts its runs in, and the config.
fn counter_monitor(dir: &Path, url: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let count_file = dir.join("count");
    let command = format!("{} {}", plugin("counter.sh"), count_file.display());
    let cfg = write_config(dir, url, &[("counter", 1, &command)]);
    (count_file, cfg)
}

/// How many times `counter.sh` ran.
fn runs(count_file: &Path) -> u32 {
    std::fs::read_to_string(count_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn spawn_monitor(cfg: &Path) -> Child {
    Command::new(BIN)
        .args(["monitor", cfg.to_str().unwrap()])
        .env_remove("OVERC_SERVER")
        .env_remove("OVERC_SERVER_ID")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn terminate(child: &mut Child) -> i32 {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap().code().unwrap_or(-1)
}

#[test]
fn monitor_reports_every_kind_of_plugin_outcome() {
    let t = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let exit = plugin("exit.sh");
    let cfg = write_config(
        dir.path(),
        &t.url(),
        &[
            ("ok", 2, &format!("{exit} 0 'OK - fine | load=0.5;1;2;0'")),
            ("warn", 2, &format!("{exit} 1 'WARNING - hmm'")),
            ("fail", 2, &format!("{exit} 2 'CRITICAL - down'")),
            ("unk", 2, &format!("{exit} 3 'UNKNOWN - eh'")),
            ("hang", 2, &plugin("hang.sh")),
            ("signal", 2, &plugin("signal.sh")),
            ("big", 2, &plugin("big.sh")),
            ("missing", 2, "./plugin.d/missing.sh"),
        ],
    );
    let mut child = spawn_monitor(&cfg);
    eventually("all eight services to report", || {
        t.service("mon", "hang")
            .is_some_and(|s| !s["state"].is_null())
            && ["ok", "warn", "fail", "unk", "signal", "big", "missing"]
                .iter()
                .all(|n| t.service("mon", n).is_some_and(|s| !s["state"].is_null()))
    });
    let state = |n: &str| t.service("mon", n).unwrap()["state"].clone();
    assert_eq!(state("ok")["state"], "OK");
    assert_eq!(state("ok")["info"], "OK - fine | load=0.5;1;2;0");
    assert_eq!(state("warn")["state"], "WARN");
    assert_eq!(state("fail")["state"], "FAIL");
    assert_eq!(state("unk")["state"], "UNK");
    assert_eq!(state("hang")["state"], "UNK");
    assert!(
        state("hang")["info"]
            .as_str()
            .unwrap()
            .starts_with("timed out after 1s"),
        "{}",
        state("hang")
    );
    assert_eq!(state("signal")["state"], "UNK");
    assert!(
        state("signal")["info"]
            .as_str()
            .unwrap()
            .starts_with("killed by signal 9"),
        "{}",
        state("signal")
    );
    assert_eq!(state("big")["state"], "OK");
    let big = state("big")["info"].as_str().unwrap().to_owned();
    assert!(
        big.len() <= 16 * 1024 && big.contains("cut"),
        "{}",
        big.len()
    );
    assert_eq!(state("missing")["state"], "UNK");
    assert!(
        state("missing")["info"]
            .as_str()
            .unwrap()
            .contains("cannot start ./plugin.d/missing.sh")
    );
    assert_eq!(t.service("mon", "ok").unwrap()["period"], 2);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the monitor keeps running"
    );
    assert_eq!(terminate(&mut child), 0);
}

#[test]
fn monitor_rides_out_a_server_that_goes_away() {
    let mut t = TestServer::start();
    t.pin_port();
    let dir = tempfile::tempdir().unwrap();
    let (count_file, cfg) = counter_monitor(dir.path(), &t.url());
    let mut child = spawn_monitor(&cfg);
    let count = || runs(&count_file);
    eventually("a first report", || {
        t.service("mon", "counter")
            .is_some_and(|s| !s["state"].is_null())
    });

    t.stop();
    let at_stop = count();
    eventually(
        "the plugin to keep running while the server is away",
        || count() >= at_stop + 3,
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the monitor must not exit while the server is away"
    );
    t.start_again();
    let after = count();
    eventually(
        "the newest state to arrive after the server is back",
        || {
            t.service("mon", "counter")
                .and_then(|s| s["state"]["info"].as_str().map(str::to_owned))
                .and_then(|i| {
                    i.strip_prefix("count ")?
                        .split(' ')
                        .next()?
                        .parse::<u32>()
                        .ok()
                })
                .is_some_and(|n| n >= after)
        },
    );
    assert_eq!(terminate(&mut child), 0);
}

/// Regression: sending ran on the scheduling thread, so a server that
/// accepts connections but never answers stopped all checks for the length
/// of the client timeout.
#[test]
fn monitor_keeps_checking_while_the_server_hangs() {
    // Bound but never accepting: connections complete and then hang.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", hung.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (count_file, cfg) = counter_monitor(dir.path(), &url);
    let mut child = spawn_monitor(&cfg);
    let count = || runs(&count_file);
    // Without the fix the second run came only after the 30 s send timeout.
    let deadline = Instant::now() + Duration::from_secs(15);
    while count() < 5 {
        assert!(
            Instant::now() < deadline,
            "checks stalled at {} runs",
            count()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(terminate(&mut child), 0);
    drop(hung);
}

/// A running `overcli monitor` and the lines it logs. Dropping it kills the
/// process, so a failing test leaves none behind.
struct LoggedMonitor {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl Drop for LoggedMonitor {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `overcli monitor CFG` at the default log level, its stderr read line by line.
fn spawn_monitor_logged(cfg: &Path) -> LoggedMonitor {
    let mut child = Command::new(BIN)
        .args(["monitor", cfg.to_str().unwrap()])
        .env_remove("OVERC_SERVER")
        .env_remove("OVERC_SERVER_ID")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while err.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            let _ = tx.send(std::mem::take(&mut line));
        }
    });
    LoggedMonitor { child, log }
}

/// Regression: SIGHUP killed `overcli monitor` with status 129.
#[test]
fn monitor_logs_sighup_and_keeps_running() {
    let t = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (count_file, cfg) = counter_monitor(dir.path(), &t.url());
    let mut m = spawn_monitor_logged(&cfg);
    eventually("a first report", || {
        t.service("mon", "counter")
            .is_some_and(|s| !s["state"].is_null())
    });
    signal(&m.child, "HUP");
    wait_for_line(&m.log, "SIGHUP");
    let at_signal = runs(&count_file);
    eventually("the plugin to run on after SIGHUP", || {
        runs(&count_file) >= at_signal + 2
    });
    assert!(m.child.try_wait().unwrap().is_none(), "still running");
    assert_eq!(terminate(&mut m.child), 0);
}

/// Processes (not zombies) of process group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            members.push(pid);
        }
    }
    members
}

/// The pid of a live process whose command line contains `marker`.
fn process_with(marker: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(marker)
                .then_some(pid)
        })
}

/// Kills a process group when dropped, so a failing test leaves no plugin behind.
struct GroupGuard(u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .status();
    }
}

/// Regression: SIGTERM ended `overcli monitor` but left its running plugins
/// (and their children) behind.
#[test]
fn monitor_stops_its_running_plugins_on_sigterm() {
    let t = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let marker = format!(
        "overc-test-plugin-{}",
        dir.path().file_name().unwrap().to_string_lossy()
    );
    let cfg = dir.path().join("monitor.ini");
    std::fs::write(
        &cfg,
        format!(
            "[overc]\nserver = {}\nmy-name = mon\nmy-key = secret\n\n\
             [service:slow]\nperiod = 600\ntimeout = 600\n\
             command = sh -c \"sleep 600 & sleep 600\" {marker}\n",
            t.url()
        ),
    )
    .unwrap();
    let mut m = spawn_monitor_logged(&cfg);
    let mut plugin = None;
    eventually("the plugin to start", || {
        plugin = process_with(&marker);
        plugin.is_some()
    });
    // The plugin leads its own process group.
    let group = plugin.unwrap();
    let _guard = GroupGuard(group);
    eventually("both of its sleeps to start", || {
        group_members(group).len() == 3
    });
    assert_eq!(terminate(&mut m.child), 0);
    eventually("the plugin and its children to be gone", || {
        group_members(group).is_empty()
    });
}

/// Regression: `overcli` alone printed "no command given" and no usage.
#[test]
fn no_arguments_prints_the_usage() {
    let o = overcli(&[]);
    assert_eq!(code(&o), 2);
    let err = text(&o.stderr);
    assert!(err.contains("Usage: overcli"), "{err}");
    assert!(
        err.contains("service-status PERIOD NAME STATE [INFO]"),
        "{err}"
    );
}

#[test]
fn a_message_starting_with_a_dash_goes_after_double_dash() {
    let o = overcli(&["--help"]);
    assert!(
        text(&o.stdout).contains("starts with -"),
        "{}",
        text(&o.stdout)
    );
    let t = TestServer::start();
    let url = t.url();
    let o = overcli(&["-s", &url, "-i", "h:k", "alert", "-5 degrees"]);
    assert_eq!(code(&o), 2, "without --, a dash is an option");
    assert!(text(&o.stderr).contains("after --"), "{}", text(&o.stderr));
    let o = overcli(&["-s", &url, "-i", "h:k", "alert", "--", "-5 degrees"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let o = overcli(&[
        "-s",
        &url,
        "-i",
        "h:k",
        "service-status",
        "30",
        "db",
        "OK",
        "--",
        "-1 rows",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(t.service("h", "db").unwrap()["state"]["info"], "-1 rows");
    let (_, alerts) = t.get("/ui/api/status/alerts/");
    assert!(
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["message"] == "-5 degrees"),
        "{alerts}"
    );
}

/// `service-status` takes the states as Nagios names them, and their codes.
#[test]
fn service_status_accepts_nagios_state_names_and_codes() {
    let t = TestServer::start();
    let url = t.url();
    for (given, stored) in [
        ("CRITICAL", "FAIL"),
        ("warning", "WARN"),
        ("Unknown", "UNK"),
        ("ok", "OK"),
        ("err", "FAIL"),
        ("0", "OK"),
        ("1", "WARN"),
        ("2", "FAIL"),
        ("3", "UNK"),
    ] {
        let o = overcli(&["-s", &url, "-i", "h:k", "service-status", "30", "db", given]);
        assert_eq!(code(&o), 0, "{given}: {}", text(&o.stderr));
        assert_eq!(
            t.service("h", "db").unwrap()["state"]["state"],
            stored,
            "{given}"
        );
    }
    for bad in ["4", "CRIT", "-1", ""] {
        let o = overcli(&["-s", &url, "-i", "h:k", "service-status", "30", "db", bad]);
        assert_eq!(code(&o), 2, "{bad:?}");
    }
}

/// Regression: `check` exited 3 when one plugin said UNK and another FAIL;
/// by the Nagios order FAIL (2) is the worse.
#[test]
fn check_exits_with_the_worst_code_in_nagios_order() {
    let dir = tempfile::tempdir().unwrap();
    let exit = plugin("exit.sh");
    let cases: [(&[u32], i32); 5] = [
        (&[0, 1], 1),
        (&[1, 3], 3),
        (&[3, 2], 2),
        (&[2, 3, 1, 0], 2),
        (&[0, 0], 0),
    ];
    for (codes, worst) in cases {
        let services: Vec<(String, u32, String)> = codes
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("s{i}"), 60, format!("{exit} {c} x")))
            .collect();
        let services: Vec<(&str, u32, &str)> = services
            .iter()
            .map(|(n, p, c)| (n.as_str(), *p, c.as_str()))
            .collect();
        let cfg = write_config(dir.path(), "http://127.0.0.1:9", &services);
        let o = overcli(&["check", cfg.to_str().unwrap()]);
        assert_eq!(code(&o), worst, "{codes:?}: {}", text(&o.stdout));
    }
}

/// At the default log level the monitor says what it runs and where it
/// sends, without the password of the URL.
#[test]
fn monitor_says_at_start_what_it_runs_and_where_it_sends() {
    let t = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = t.url();
    let with_password = url.replacen("http://", "http://probe:topsecret@", 1);
    let exit = plugin("exit.sh");
    let cfg = write_config(
        dir.path(),
        &with_password,
        &[
            ("web", 30, &format!("{exit} 0 fine")),
            ("disk", 300, &format!("{exit} 0 roomy")),
        ],
    );
    let mut m = spawn_monitor_logged(&cfg);
    let mut wanted = vec![
        format!("sending to {url}"),
        "web: every 30 s".to_owned(),
        "disk: every 300 s".to_owned(),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !wanted.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = m
            .log
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("still not logged: {wanted:?} ({e})"));
        assert!(!line.contains("topsecret"), "{line}");
        wanted.retain(|w| !line.contains(w.as_str()));
    }
    assert_eq!(terminate(&mut m.child), 0);
}

/// Kills the monitor if a test fails before it stopped it.
struct Stopping(Child);

impl Drop for Stopping {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `--ca-file`, `OVERC_CA_FILE` and the monitor config's `ca-file`: a real
/// handshake with a server of a private CA, and a clear config error (exit
/// 2, naming where the file was given) for a file that is missing or holds
/// no certificate.
#[test]
fn a_private_ca_from_the_flag_the_environment_or_the_monitor_config() {
    let endpoint = TlsEndpoint::start();
    let url = endpoint.url.clone();
    let o = overcli(&["-s", &url, "-i", "h:k", "ping"]);
    assert_eq!(code(&o), 1, "the bundled roots do not know the CA");
    assert!(
        text(&o.stderr).contains("UnknownIssuer"),
        "{}",
        text(&o.stderr)
    );
    let o = overcli(&["-s", &url, "-i", "h:k", "--ca-file", CA_PEM, "ping"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "pong");
    let o = Command::new(BIN)
        .args(["-s", &url, "-i", "h:k", "ping"])
        .env("OVERC_CA_FILE", CA_PEM)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let o = overcli(&["-s", &url, "-i", "h:k", "--ca-file", missing, "ping"]);
    assert_eq!(code(&o), 2);
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!("--ca-file: {missing}: cannot read")),
        "{err}"
    );
    let key = Path::new(CA_PEM).with_file_name("server.key");
    let o = Command::new(BIN)
        .args(["-s", &url, "-i", "h:k", "ping"])
        .env("OVERC_CA_FILE", &key)
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    let err = text(&o.stderr);
    assert!(
        err.contains("environment OVERC_CA_FILE: ") && err.contains("no PEM certificate"),
        "{err}"
    );

    // The monitor config's key, relative to the config's folder.
    let exit = plugin("exit.sh");
    let cfg = write_config(dir.path(), &url, &[("ok", 60, &format!("{exit} 0 fine"))]);
    let with_key = |ca: &str| {
        let ini = std::fs::read_to_string(&cfg).unwrap();
        let ini = ini.replacen("[overc]\n", &format!("[overc]\nca-file = {ca}\n"), 1);
        std::fs::write(&cfg, ini).unwrap();
    };
    with_key("missing.pem");
    let o = overcli(&["monitor", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    let err = text(&o.stderr);
    assert!(
        err.contains("monitor.ini: [overc] ca-file: ") && err.contains("missing.pem: cannot read"),
        "{err}"
    );
    std::fs::copy(CA_PEM, dir.path().join("ca.pem")).unwrap();
    let cfg = write_config(dir.path(), &url, &[("ok", 60, &format!("{exit} 0 fine"))]);
    with_key("ca.pem");
    let mut monitor = Stopping(spawn_monitor(&cfg));
    // Bounds a broken monitor; a working one reports at once.
    let deadline = Duration::from_secs(30);
    loop {
        let path = endpoint
            .requests
            .recv_timeout(deadline)
            .expect("the monitor reports over TLS");
        if path == "/api/set/service/status" {
            break;
        }
    }
    assert_eq!(terminate(&mut monitor.0), 0);
}
