//! SPEC §3: alert rules, the deadline supervisor on a manual clock, real
//! alert plugin processes, at-least-once delivery and restarts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use overc::config::{AlertPluginConfig, PluginKind};
use serde_json::json;

use crate::common::{TestServer, report};

pub fn plugin(name: &str) -> String {
    format!("{}/tests/plugins/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn alert_plugin(name: &str, command: &[&str], timeout: Duration) -> AlertPluginConfig {
    AlertPluginConfig {
        name: name.into(),
        kind: PluginKind::Command(command.iter().map(|s| s.to_string()).collect()),
        timeout,
        policy: Default::default(),
    }
}

/// The alert records a `record.sh` plugin wrote so far.
pub fn records(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.split("--\n")
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The text part of a record (without the env line).
pub fn text(record: &str) -> String {
    record
        .lines()
        .filter(|l| !l.starts_with("env: "))
        .collect::<Vec<_>>()
        .join("\n")
}

pub struct Scenario {
    pub t: TestServer,
    pub out: PathBuf,
    seen: usize,
}

impl Scenario {
    pub fn new(extra: Vec<AlertPluginConfig>) -> Scenario {
        Scenario::with(extra, |_| {})
    }

    /// A scenario whose server config `adjust` changes.
    pub fn with(
        extra: Vec<AlertPluginConfig>,
        adjust: impl FnOnce(&mut overc::ServerConfig),
    ) -> Scenario {
        let out_dir = tempfile::tempdir().unwrap().keep();
        let out = out_dir.join("alerts.log");
        let record = plugin("record.sh");
        let out_s = out.to_str().unwrap().to_owned();
        let t = TestServer::start_manual_any(move |c| {
            c.alert_plugins.push(alert_plugin(
                "log",
                &[&record, &out_s],
                Duration::from_secs(30),
            ));
            c.alert_plugins.extend(extra);
            adjust(c);
        });
        Scenario { t, out, seen: 0 }
    }

    pub fn send(&self, service: &str, state: &str, info: &str, period: u32) {
        let mut body = report("h", "k", service, state, info);
        body["period"] = json!(period);
        assert_eq!(self.t.post_json("/api/set/service/status", &body).0, 200);
    }

    pub fn advance(&self, ms: i64) {
        self.t.clock.as_ref().unwrap().advance(ms);
    }

    /// Runs the supervisor and delivery now; returns the alerts plugins got since the last call.
    pub fn new_alerts(&mut self) -> Vec<String> {
        self.t.server().app().supervise_now().unwrap();
        let all = records(&self.out);
        let fresh = all[self.seen..].to_vec();
        self.seen = all.len();
        fresh
    }
}

#[test]
fn the_originals_supervisor_scenario() {
    let mut s = Scenario::new(vec![]);
    s.send("a", "OK", "fine", 60);
    assert_eq!(
        s.new_alerts(),
        Vec::<String>::new(),
        "a first OK raises nothing"
    );

    s.send("b", "BULLSHIT", "x", 60);
    let got = s.new_alerts();
    assert_eq!(got.len(), 1);
    assert_eq!(
        text(&got[0]),
        "h b: [service:state/UNK] State changed: \"(?)\" -> \"UNK\"\nCurrent: UNK: x (sent unsupported state: \"BULLSHIT\")"
    );
    assert!(
        got[0].contains("env: service:state/UNK severity=UNK server=h service=b state=UNK id="),
        "{}",
        got[0]
    );

    s.send("a", "WARN", "hot", 60);
    let got = s.new_alerts();
    assert_eq!(got.len(), 1);
    assert_eq!(
        text(&got[0]),
        "h a: [service:state/WARN] State changed: \"OK\" -> \"WARN\"\nCurrent: WARN: hot"
    );
    s.send("a", "WARN", "still hot", 60);
    assert_eq!(s.new_alerts().len(), 0, "WARN -> WARN raises nothing");
    s.send("a", "OK", "cool", 60);
    let got = s.new_alerts();
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("\"WARN\" -> \"OK\""));

    // Period 1, then silence: one offline alert, not repeated.
    s.send("c", "OK", "alive", 1);
    assert_eq!(s.new_alerts().len(), 0);
    s.advance(1000);
    assert_eq!(
        s.new_alerts().len(),
        0,
        "exactly at the deadline is not late"
    );
    s.advance(1);
    let got = s.new_alerts();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        text(&got[0]),
        "h c: [plugin/offline] Monitoring plugin offline\nCurrent: OK: alive"
    );
    assert!(got[0].contains("severity=FAIL"));
    assert_eq!(s.t.service("h", "c").unwrap()["state"]["timed_out"], true);
    s.advance(3_600_000);
    let got = s.new_alerts();
    assert!(
        got.iter().all(|r| !r.contains("h c:")),
        "offline is raised once: {got:?}"
    );
    assert_eq!(got.len(), 2, "a and b missed their 60 s deadlines: {got:?}");

    // Reports again: one online alert, not repeated.
    s.send("c", "OK", "back", 1);
    let got = s.new_alerts();
    assert_eq!(got.len(), 1);
    assert_eq!(
        text(&got[0]),
        "h c: [plugin/online] Monitoring plugin back online\nCurrent: OK: back"
    );
    assert!(got[0].contains("severity=OK"));
    s.send("c", "OK", "back", 1);
    assert_eq!(s.new_alerts().len(), 0);

    // Two posted alerts, with and without a service.
    let body = json!({"server": {"name": "h", "key": "k"}, "alerts": [{"message": "m1"}, {"message": "m2", "service": "a"}]});
    assert_eq!(s.t.post_json("/api/set/alerts", &body).0, 200);
    let got = s.new_alerts();
    assert_eq!(got.len(), 2);
    assert_eq!(text(&got[0]), "h: [api/alert] m1");
    assert_eq!(text(&got[1]), "h a: [api/alert] m2\nCurrent: OK: cool");

    // Everything is marked delivered.
    let (_, alerts) = s.t.get("/ui/api/status/alerts/");
    assert!(
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["delivered"] == true)
    );
}

#[test]
fn failing_plugins_raise_one_more_alert_each() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Scenario::new(vec![
        alert_plugin("bad", &[&plugin("fail.sh")], Duration::from_secs(30)),
        alert_plugin("ghost", &["./no-such-plugin.sh"], Duration::from_secs(30)),
        alert_plugin("slow", &[&plugin("hang.sh")], Duration::from_millis(500)),
    ]);
    let _ = dir;
    s.send("a", "FAIL", "down", 60);
    let got = s.new_alerts();
    let mut texts: Vec<String> = got.iter().map(|r| text(r)).collect();
    assert_eq!(texts.len(), 4, "{texts:#?}");
    assert!(texts[0].starts_with("h a: [service:state/FAIL]"));
    // The plugins fail in parallel: their alerts come in any order.
    texts[1..].sort();
    assert_eq!(
        texts[1],
        "[alert-plugin/failed] Alert plugin `bad` failed: exit status 1: mail server down"
    );
    assert!(
        texts[2].starts_with(
            "[alert-plugin/failed] Alert plugin `ghost` failed: cannot start ./no-such-plugin.sh: "
        ),
        "{}",
        texts[2]
    );
    assert_eq!(
        texts[3],
        "[alert-plugin/failed] Alert plugin `slow` failed: timed out after 0.5s"
    );
    // The failure alerts failing again in the same plugins raise nothing more.
    assert_eq!(s.new_alerts().len(), 0);
}

#[test]
fn a_failing_plugin_is_retried_on_its_own_in_order_with_one_alert_per_streak() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("broken");
    let flaky_out = dir.path().join("flaky.log");
    std::fs::write(&flag, "").unwrap();
    let (flag_s, flaky_s) = (
        flag.to_str().unwrap().to_owned(),
        flaky_out.to_str().unwrap().to_owned(),
    );
    let mut s = Scenario::new(vec![alert_plugin(
        "flaky",
        &[&plugin("flaky.sh"), &flag_s, &flaky_s],
        Duration::from_secs(30),
    )]);
    let post = |s: &Scenario, m: &str| {
        let body = json!({"server": {"name": "h", "key": "k"}, "alerts": [{"message": m}]});
        assert_eq!(s.t.post_json("/api/set/alerts", &body).0, 200);
    };
    post(&s, "first");
    let got: Vec<String> = s.new_alerts().iter().map(|r| text(r)).collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], "h: [api/alert] first", "the working plugin got it");
    assert!(
        got[1].starts_with("[alert-plugin/failed] Alert plugin `flaky` failed: exit status 1"),
        "and the news of the failure: {got:?}"
    );
    let first = s.t.get("/ui/api/status/alerts/").1["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["message"] == "first")
        .cloned()
        .unwrap();
    assert_eq!(first["delivered"], false, "flaky has not taken it: {first}");
    let deliveries = &first["deliveries"];
    assert_eq!(deliveries.as_array().unwrap().len(), 2, "{first}");
    assert_eq!(deliveries[0]["plugin"], "flaky");
    assert_eq!(deliveries[0]["state"], "failing");
    assert_eq!(deliveries[0]["attempts"], 1);
    assert_eq!(
        deliveries[0]["next_try"],
        overc::clock::iso8601(crate::common::T0 + 10_000)
    );
    assert!(
        deliveries[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("exit status 1: flag"),
        "{first}"
    );
    assert_eq!(
        deliveries[1],
        json!({"plugin": "log", "state": "delivered", "attempts": 1, "next_try": null, "error": null})
    );

    // Retries and new alerts while it still fails: no second failure alert,
    // and nothing overtakes the first alert in flaky's queue.
    for i in 0..3 {
        post(&s, &format!("second {i}"));
        s.advance(3_600_000);
        let got: Vec<String> = s.new_alerts().iter().map(|r| text(r)).collect();
        assert_eq!(got, vec![format!("h: [api/alert] second {i}")]);
        assert!(records(&flaky_out).is_empty());
    }

    std::fs::remove_file(&flag).unwrap();
    s.advance(3_600_000);
    assert_eq!(s.new_alerts(), Vec::<String>::new());
    let flaky: Vec<String> = records(&flaky_out).iter().map(|r| text(r)).collect();
    assert_eq!(
        flaky,
        vec![
            "h: [api/alert] first",
            "h: [api/alert] second 0",
            "h: [api/alert] second 1",
            "h: [api/alert] second 2",
        ],
        "in order, without the news of its own failure"
    );
    let (_, alerts) = s.t.get("/ui/api/status/alerts/");
    assert!(
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["delivered"] == true
                && a["deliveries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|d| d["state"] == "delivered")),
        "{alerts}"
    );
}

#[test]
fn when_every_plugin_fails_delivery_is_retried_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("broken");
    let out = dir.path().join("out.log");
    std::fs::write(&flag, "").unwrap();
    let (flag_s, out_s) = (
        flag.to_str().unwrap().to_owned(),
        out.to_str().unwrap().to_owned(),
    );
    let t = TestServer::start_manual_any(|c| {
        c.alert_plugins.push(alert_plugin(
            "flaky",
            &[&plugin("flaky.sh"), &flag_s, &out_s],
            Duration::from_secs(30),
        ));
    });
    let clock = t.clock.clone().unwrap();
    let body = json!({"server": {"name": "h", "key": "k"}, "alerts": [{"message": "important"}]});
    assert_eq!(t.post_json("/api/set/alerts", &body).0, 200);
    let (_, rep) = t.server().app().supervise_now().unwrap();
    assert_eq!(records(&out).len(), 0);
    assert_eq!(rep.delivered, 0);
    let (_, alerts) = t.get("/ui/api/status/alerts/");
    let important = |alerts: &serde_json::Value| {
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["message"] == "important")
            .cloned()
            .unwrap()
    };
    assert_eq!(important(&alerts)["delivered"], false, "{alerts}");

    std::fs::remove_file(&flag).unwrap();
    clock.advance(5_000);
    t.server().app().supervise_now().unwrap();
    assert_eq!(records(&out).len(), 0, "not before the backoff has passed");
    clock.advance(5_001);
    t.server().app().supervise_now().unwrap();
    let got = records(&out);
    let texts: Vec<String> = got.iter().map(|r| text(r)).collect();
    assert_eq!(
        texts,
        vec!["h: [api/alert] important"],
        "not its own failure"
    );
    let (_, alerts) = t.get("/ui/api/status/alerts/");
    assert_eq!(important(&alerts)["delivered"], true, "{alerts}");
    assert!(
        alerts["alerts"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Alert plugin `flaky` failed: exit status 1: flag"),
        "the failure is recorded: {alerts}"
    );
}

#[test]
fn without_plugins_alerts_are_recorded_and_marked_delivered() {
    let t = TestServer::start_manual_any(|_| {});
    assert_eq!(
        t.post_json(
            "/api/set/service/status",
            &report("h", "k", "s", "WARN", "")
        )
        .0,
        200
    );
    let (_, rep) = t.server().app().supervise_now().unwrap();
    let (_, alerts) = t.get("/ui/api/status/alerts/");
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(alerts["alerts"][0]["delivered"], true);
    assert!(rep.delivered <= 1);
}

#[test]
fn deadlines_are_rebuilt_at_start_and_missed_ones_moved_by_a_period() {
    let mut s = Scenario::new(vec![]);
    s.send("a", "OK", "", 60);
    // Down for two minutes, past the deadline.
    s.t.restart_after(120_000);
    assert_eq!(s.new_alerts().len(), 0, "hosts get one period to reconnect");
    s.advance(59_000);
    assert_eq!(s.new_alerts().len(), 0);
    s.advance(1_001);
    let got = s.new_alerts();
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("[plugin/offline]"));
}

#[test]
fn supervisor_lag_shows_unprocessed_deadlines() {
    let s = Scenario::new(vec![]);
    s.send("a", "OK", "", 60);
    s.t.server().app().supervise_now().unwrap();
    assert_eq!(s.t.status()["stats"]["supervisor_lag"], 0.0);
    // The supervisor thread sleeps on real time; the manual clock runs ahead of it.
    s.advance(65_000);
    assert_eq!(s.t.status()["stats"]["supervisor_lag"], 5.0);
    s.t.server().app().supervise_now().unwrap();
    assert_eq!(s.t.status()["stats"]["supervisor_lag"], 0.0);
}

#[test]
fn grace_delays_the_offline_alert() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("a.log");
    let out_s = out.to_str().unwrap().to_owned();
    let t = TestServer::start_manual_any(|c| {
        c.grace = 10;
        c.alert_plugins.push(alert_plugin(
            "log",
            &[&plugin("record.sh"), &out_s],
            Duration::from_secs(30),
        ));
    });
    let clock = t.clock.clone().unwrap();
    let mut body = report("h", "k", "s", "OK", "");
    body["period"] = json!(5);
    assert_eq!(t.post_json("/api/set/service/status", &body).0, 200);
    clock.advance(15_000);
    t.server().app().supervise_now().unwrap();
    assert_eq!(records(&out).len(), 0);
    clock.advance(1);
    t.server().app().supervise_now().unwrap();
    assert_eq!(records(&out).len(), 1);
}

/// Regression: stopping the server waited for every pending alert to go
/// through the plugins; now it finishes the alert at hand and leaves the rest
/// in the outbox, delivered after the next start.
#[test]
fn stopping_leaves_pending_alerts_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alerts.log");
    let out_s = out.to_str().unwrap().to_owned();
    let mut t = TestServer::start_manual_any(|c| {
        c.alert_plugins.push(alert_plugin(
            "slow",
            &[&plugin("slow-record.sh"), &out_s],
            Duration::from_secs(30),
        ));
    });
    let alerts: Vec<_> = (0..6)
        .map(|i| json!({"message": format!("m{i}")}))
        .collect();
    let body = json!({"server": {"name": "h", "key": "k"}, "alerts": alerts});
    assert_eq!(t.post_json("/api/set/alerts", &body).0, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while records(&out).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no alert delivered");
        std::thread::sleep(Duration::from_millis(20));
    }
    t.stop();
    let delivered = records(&out).len();
    assert!(
        delivered < 6,
        "the stop waited for every alert ({delivered})"
    );
    t.start_again();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while records(&out)
        .iter()
        .filter(|r| r.contains("[api/alert]"))
        .count()
        < 6
    {
        assert!(
            std::time::Instant::now() < deadline,
            "pending alerts not delivered after restart: {:?}",
            records(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A deleted service stays deleted even when a report of it was still
/// waiting for the supervisor (reports with later deadlines do not wake it).
/// A wall clock that jumps (NTP stepping it, a suspended VM waking) does not
/// make every host overdue: deadlines move as after a restart.
#[test]
fn a_clock_jump_extends_deadlines_instead_of_blaming_the_hosts() {
    let mut s = Scenario::new(vec![]);
    s.send("a", "OK", "", 60);
    s.send("b", "OK", "", 600);
    s.new_alerts();
    s.t.clock.as_ref().unwrap().jump(3_600_000);
    assert_eq!(s.new_alerts(), Vec::<String>::new(), "nobody is blamed");
    // A host that really stays silent is overdue one period later.
    s.advance(60_001);
    let got = s.new_alerts();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("h a: [plugin/offline]"), "{got:?}");
}

#[test]
fn a_deleted_service_is_not_brought_back_by_a_waiting_report() {
    let mut s = Scenario::new(vec![]);
    s.send("a", "OK", "", 60);
    s.send("b", "OK", "", 60);
    s.new_alerts();
    let engine = s.t.server().engine().clone();
    let fired = engine.supervisor_stats().fired;
    // Waits in the supervisor's list: its deadline is not earlier.
    s.send("a", "OK", "again", 60);
    let a = s.t.service("h", "a").unwrap()["id"].as_i64().unwrap();
    engine.delete_service(a).unwrap();
    s.advance(61_000);
    let got = s.new_alerts();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("[plugin/offline]") && got[0].contains("b"),
        "{got:?}"
    );
    assert_eq!(
        engine.supervisor_stats().fired - fired,
        1,
        "only b's deadline"
    );
}

/// Regression: a NUL in an info made every plugin fail to start (`Command`
/// refuses it in `OVERC_INFO`), so the alert was retried for 90 days and
/// never delivered. The environment gets U+FFFD for it, stdin the text as is.
#[test]
fn a_nul_in_info_or_message_is_still_delivered() {
    let env_out = tempfile::tempdir().unwrap().keep().join("env.log");
    let env_s = env_out.to_str().unwrap().to_owned();
    let script = r#"printf '%s|%s|%s\n' "$OVERC_INFO" "$OVERC_MESSAGE" "$OVERC_SEVERITY" >> "$0""#;
    let mut s = Scenario::new(vec![alert_plugin(
        "env",
        &["/bin/sh", "-c", script, &env_s],
        Duration::from_secs(30),
    )]);
    s.send("disk", "FAIL", "disk\u{0}full", 60);
    let body = json!({"server": {"name": "h", "key": "k"},
        "alerts": [{"message": "deploy\u{0}started", "severity": "OK"}]});
    assert_eq!(s.t.post_json("/api/set/alerts", &body).0, 200);
    let got = s.new_alerts();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].contains("Current: FAIL: disk\u{0}full"),
        "{:?}",
        got[0]
    );
    assert!(got[1].contains("deploy\u{0}started"), "{:?}", got[1]);
    assert!(got[1].contains("severity=OK"), "{:?}", got[1]);
    let env = std::fs::read_to_string(&env_out).unwrap();
    assert_eq!(
        env,
        "disk\u{FFFD}full|State changed: \"(?)\" -> \"FAIL\"|FAIL\n\
         |deploy\u{FFFD}started|OK\n"
    );
    let (_, alerts) = s.t.get("/ui/api/status/alerts/");
    for a in alerts["alerts"].as_array().unwrap() {
        assert_eq!(a["delivered"], true, "{a}");
    }
}
