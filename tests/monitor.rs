//! The monitor as a library (`overc::monitor`) against a real server on 127.0.0.1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use overc::monitor::Monitor;
use overc::{Client, MonitorConfig, ServerId, SystemClock};

use crate::common::TestServer;

/// Waits, bounded, until `f` holds; the monitor runs on real time.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Services the read API lists for host `mon`.
fn services_of_mon(t: &TestServer) -> usize {
    t.status()["servers"]
        .as_array()
        .and_then(|servers| servers.iter().find(|s| s["name"] == "mon"))
        .and_then(|s| s["services"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Regression: after an outage the monitor sent every waiting state in one
/// request; above the server's 1,000 services per report that is a 400, and
/// the monitor dropped them all.
#[test]
fn monitor_delivers_more_than_a_thousand_states_after_an_outage() {
    const SERVICES: usize = 1100;
    let mut t = TestServer::start();
    t.pin_port();
    let url = t.url();
    t.stop();
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    std::fs::create_dir(&runs).unwrap();
    // Each plugin leaves a file: the test sees when all of them have run.
    let mut ini = String::new();
    for i in 0..SERVICES {
        ini.push_str(&format!(
            "[service:s{i}]\nperiod = 3600\ntimeout = 30\ncommand = touch runs/{i}\n"
        ));
    }
    let config = MonitorConfig::from_ini_str(&ini, "monitor.ini", dir.path()).unwrap();
    let client = Client::new(&url, ServerId::parse("mon:secret").unwrap()).unwrap();
    let monitor = Monitor::new(config, client, Arc::new(SystemClock));
    let stop = monitor.stopper();
    let running = std::thread::spawn(move || monitor.run());

    eventually("every plugin to run while the server is away", || {
        std::fs::read_dir(&runs).map(|d| d.count()).unwrap_or(0) == SERVICES
    });
    t.start_again();
    eventually("all states to arrive once the server is back", || {
        services_of_mon(&t) == SERVICES
    });
    stop.stop();
    running.join().unwrap().unwrap();
}

/// One state the server refuses (a name over 64 characters) costs only that
/// state, among more than fit in one request.
#[test]
fn send_states_drops_only_the_state_the_server_refuses() {
    let t = TestServer::start();
    let client = Client::new(&t.url(), ServerId::parse("mon:secret").unwrap()).unwrap();
    let bad = "x".repeat(65);
    let states: overc::schedule::Sending = (0..2500)
        .map(|i| {
            let name = if i == 1234 {
                bad.clone()
            } else {
                format!("s{i}")
            };
            let report = overc::ServiceReport {
                name,
                state: overc::State::Ok,
                info: String::new(),
                period: Some(60),
                retries: None,
            };
            (i, 1, report)
        })
        .collect();
    let report = overc::monitor::send_states(&client, states);
    assert!(report.failed.is_none(), "{:?}", report.failed);
    assert_eq!(report.refused.len(), 1);
    let (refused, why) = &report.refused[0];
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].2.name, bad);
    assert!(why.starts_with("400: "), "{why}");
    assert_eq!(report.delivered.len(), 2499);
    assert_eq!(services_of_mon(&t), 2499);
}

/// `retries` of a `[service:NAME]` section goes with every state it sends:
/// the server keeps a failing check soft until that many FAILs in a row.
#[test]
fn monitor_sends_each_services_retries() {
    let t = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let ini = "[service:flaky]\nperiod = 3600\nretries = 5\ncommand = sh -c 'echo down; exit 2'\n";
    let config = MonitorConfig::from_ini_str(ini, "monitor.ini", dir.path()).unwrap();
    assert_eq!(config.services[0].retries, Some(5));
    let client = Client::new(&t.url(), ServerId::parse("mon:secret").unwrap()).unwrap();
    let monitor = Monitor::new(config, client, Arc::new(SystemClock));
    let stop = monitor.stopper();
    let running = std::thread::spawn(move || monitor.run());
    eventually("the state to arrive", || services_of_mon(&t) == 1);
    stop.stop();
    running.join().unwrap().unwrap();
    let service = &t.status()["servers"][0]["services"][0];
    assert_eq!(service["state"]["state"], "FAIL");
    assert_eq!(service["soft"], true, "one FAIL of five: {service}");
}
