//! SPEC §9: the notification policy at work in a real server: soft states,
//! flapping and routing, with real alert plugins and a manual clock.

use std::time::Duration;

use overc::Clock;
use serde_json::{Value, json};

use crate::common::report;
use crate::supervision::{Scenario, alert_plugin, plugin, records, text};

fn send_with_retries(s: &Scenario, service: &str, state: &str, retries: Option<u8>) {
    let mut body = report("h", "k", service, state, "");
    if let Some(r) = retries {
        body["services"][0]["retries"] = json!(r);
    }
    assert_eq!(s.t.post_json("/api/set/service/status", &body).0, 200);
}

fn service(s: &Scenario, name: &str) -> Value {
    let (_, status) = s.t.get("/ui/api/status/");
    status["servers"][0]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|svc| svc["name"] == name)
        .cloned()
        .unwrap()
}

fn alerts(s: &Scenario) -> Vec<Value> {
    s.t.get("/ui/api/status/alerts/").1["alerts"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn soft_states_are_recorded_and_only_hard_changes_notified() {
    let mut s = Scenario::new(vec![]);
    send_with_retries(&s, "db", "OK", Some(3));
    s.new_alerts();
    send_with_retries(&s, "db", "FAIL", Some(3));
    send_with_retries(&s, "db", "FAIL", Some(3));
    assert_eq!(s.new_alerts(), Vec::<String>::new(), "soft: not notified");
    assert_eq!(service(&s, "db")["soft"], true);
    let recorded = alerts(&s);
    assert_eq!(recorded.len(), 1, "the soft change is recorded");
    assert_eq!(recorded[0]["soft"], true);
    assert_eq!(recorded[0]["message"], "State changed: \"OK\" -> \"FAIL\"");

    send_with_retries(&s, "db", "FAIL", Some(3));
    let got: Vec<String> = s.new_alerts().iter().map(|r| text(r)).collect();
    assert_eq!(
        got,
        vec!["h db: [service:state/FAIL] State changed: \"OK\" -> \"FAIL\"\nCurrent: FAIL: "],
        "the third FAIL in a row is hard"
    );
    assert_eq!(service(&s, "db")["soft"], false);
    assert_eq!(alerts(&s)[0]["soft"], false);

    // A recovery from a hard problem is notified; from a soft one it is not.
    send_with_retries(&s, "db", "OK", Some(3));
    assert_eq!(s.new_alerts().len(), 1);
    send_with_retries(&s, "db", "WARN", Some(3));
    send_with_retries(&s, "db", "OK", Some(3));
    assert_eq!(
        s.new_alerts(),
        Vec::<String>::new(),
        "a soft blip stays quiet"
    );
    assert_eq!(alerts(&s).iter().filter(|a| a["soft"] == true).count(), 3);
}

#[test]
fn the_servers_retries_apply_to_reports_without_their_own() {
    let mut s = Scenario::with(vec![], |c| c.policy.retries = 2);
    s.send("a", "OK", "", 60);
    s.new_alerts();
    s.send("a", "WARN", "", 60);
    assert_eq!(s.new_alerts().len(), 0);
    s.send("a", "WARN", "", 60);
    assert_eq!(s.new_alerts().len(), 1);
    // A report's own retries wins over the server's.
    send_with_retries(&s, "b", "FAIL", Some(1));
    assert_eq!(s.new_alerts().len(), 1);
}

#[test]
fn a_flapping_service_is_told_once_instead_of_every_flap() {
    let mut s = Scenario::with(vec![], |c| c.policy.flapping = true);
    let mut told = Vec::new();
    // OK and FAIL in turn: every report is a change.
    for i in 0..21 {
        s.send("web", if i % 2 == 0 { "OK" } else { "FAIL" }, "", 60);
        told.extend(s.new_alerts().iter().map(|r| text(r)));
    }
    let starts: Vec<&String> = told
        .iter()
        .filter(|t| t.contains("[service:flapping/start]"))
        .collect();
    assert_eq!(starts.len(), 1, "{told:#?}");
    let changes = told
        .iter()
        .filter(|t| t.contains("[service:state/"))
        .count();
    assert!(
        changes < 10,
        "changes held back while it flaps: {changes} of 20 told: {told:#?}"
    );
    assert_eq!(service(&s, "web")["flapping"], true);
    let metrics = crate::page::request("GET", &format!("{}/metrics", s.t.url()), &[], "").body;
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"overc_service_flapping{server="h",service="web"} 1"#),
        "{metrics}"
    );
    // Steady again: it stops flapping, once.
    let mut after = Vec::new();
    for _ in 0..21 {
        s.send("web", "OK", "", 60);
        after.extend(s.new_alerts().iter().map(|r| text(r)));
    }
    assert_eq!(
        after
            .iter()
            .filter(|t| t.contains("[service:flapping/stop] Stopped flapping"))
            .count(),
        1,
        "{after:#?}"
    );
    assert_eq!(service(&s, "web")["flapping"], false);
}

#[test]
fn each_plugin_gets_what_its_routing_selects_and_the_recoveries_of_what_it_got() {
    let dir = tempfile::tempdir().unwrap();
    let pager_out = dir.path().join("pager.log");
    let mut pager = alert_plugin(
        "pager",
        &[&plugin("record.sh"), pager_out.to_str().unwrap()],
        Duration::from_secs(30),
    );
    pager.policy.route = overc::policy::Route::parse(Some("FAIL"), Some("h"), None, None).unwrap();
    let mut s = Scenario::new(vec![pager]);
    s.send("a", "WARN", "", 60);
    s.send("b", "FAIL", "", 60);
    s.new_alerts();
    let pager_got = || -> Vec<String> { records(&pager_out).iter().map(|r| text(r)).collect() };
    assert_eq!(
        pager_got(),
        vec!["h b: [service:state/FAIL] State changed: \"(?)\" -> \"FAIL\"\nCurrent: FAIL: "],
        "only FAIL"
    );
    s.send("a", "OK", "", 60);
    s.send("b", "OK", "", 60);
    let all = s.new_alerts();
    assert_eq!(all.len(), 2, "the log plugin gets both recoveries");
    let got = pager_got();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[1].starts_with("h b: [service:state/OK]"),
        "the pager gets the recovery of what it was sent, not of a's WARN: {got:#?}"
    );
}

#[test]
fn a_servers_alerts_within_group_wait_go_as_one_notification() {
    let mut s = Scenario::with(vec![], |c| c.policy.group_wait = 10);
    s.send("a", "OK", "", 60);
    s.send("b", "OK", "", 60);
    s.send("c", "OK", "", 60);
    s.new_alerts();
    s.send("a", "FAIL", "", 60);
    s.advance(2_000);
    s.send("b", "WARN", "", 60);
    assert_eq!(s.new_alerts(), Vec::<String>::new(), "the window is open");
    s.advance(8_000);
    let got = s.new_alerts();
    assert_eq!(got.len(), 1, "{got:#?}");
    let lines: Vec<&str> = got[0].lines().collect();
    assert_eq!(lines[0], "h: 2 alerts: 2 state changes");
    assert_eq!(lines[1], "");
    assert!(
        lines[2].starts_with("h a: [service:state/FAIL]"),
        "{got:#?}"
    );
    assert!(got[0].contains("h b: [service:state/WARN]"), "{got:#?}");
    assert!(
        got[0].contains("env: group/alerts severity=FAIL server=h service= state= id=1,2"),
        "{got:#?}"
    );

    // A single alert in its window goes alone, unchanged.
    s.send("c", "WARN", "", 60);
    s.advance(10_000);
    let got: Vec<String> = s.new_alerts().iter().map(|r| text(r)).collect();
    assert_eq!(
        got,
        vec!["h c: [service:state/WARN] State changed: \"OK\" -> \"WARN\"\nCurrent: WARN: "]
    );

    // Every service overdue at once: "server offline".
    s.advance(61_000);
    assert_eq!(s.new_alerts(), Vec::<String>::new(), "the window is open");
    s.advance(10_000);
    let got = s.new_alerts();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("h: server offline (3 services overdue)\n"),
        "{got:#?}"
    );
}

#[test]
fn a_plugin_with_repeat_is_reminded_of_a_problem_nobody_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let pager_out = dir.path().join("pager.log");
    let mut pager = alert_plugin(
        "pager",
        &[&plugin("record.sh"), pager_out.to_str().unwrap()],
        Duration::from_secs(30),
    );
    pager.policy.repeat = Some(3600);
    let mut s = Scenario::new(vec![pager]);
    let pager_got = || -> Vec<String> { records(&pager_out).iter().map(|r| text(r)).collect() };
    s.send("db", "FAIL", "disk full", 86_400);
    s.new_alerts();
    assert_eq!(pager_got().len(), 1);
    s.advance(3_599_000);
    s.send("db", "FAIL", "disk full", 86_400);
    s.new_alerts();
    assert_eq!(pager_got().len(), 1, "not before the hour");
    s.advance(1_000);
    let all = s.new_alerts();
    assert!(all.is_empty(), "the log plugin has no repeat: {all:?}");
    assert_eq!(
        pager_got()[1],
        "h db: [service:reminder/FAIL] Still FAIL for 1h\nCurrent: FAIL: disk full"
    );
    s.advance(3_600_000);
    s.new_alerts();
    assert_eq!(pager_got().len(), 3, "every hour");
    assert!(
        pager_got()[2].contains("Still FAIL for 2h"),
        "{:?}",
        pager_got()
    );
    // Fixed: no more reminders.
    s.send("db", "OK", "", 86_400);
    s.new_alerts();
    s.advance(7_200_000);
    s.new_alerts();
    let got = pager_got();
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(got[3].contains("[service:state/OK]"), "{got:#?}");
}

#[test]
fn an_acknowledged_or_silenced_problem_is_not_reminded() {
    let dir = tempfile::tempdir().unwrap();
    let pager_out = dir.path().join("pager.log");
    let mut pager = alert_plugin(
        "pager",
        &[&plugin("record.sh"), pager_out.to_str().unwrap()],
        Duration::from_secs(30),
    );
    pager.policy.repeat = Some(600);
    let mut s = Scenario::new(vec![pager]);
    let reminders = || {
        records(&pager_out)
            .iter()
            .filter(|r| r.contains("[service:reminder/"))
            .count()
    };
    s.send("db", "FAIL", "down", 86_400);
    s.send("web", "WARN", "slow", 86_400);
    s.new_alerts();
    let db = service(&s, "db")["id"].as_i64().unwrap();
    let engine = s.t.server().engine().clone();
    engine.ack(db, "ann", "on it").unwrap();
    s.new_alerts();
    let now = s.t.clock.as_ref().unwrap().now();
    engine
        .silence(overc::policy::Silence {
            id: 0,
            server: "h".into(),
            service: Some("web".into()),
            starts: now,
            ends: now + 3 * 3_600_000,
            comment: "maintenance".into(),
            author: "bob".into(),
        })
        .unwrap();
    s.advance(3_600_000);
    s.new_alerts();
    assert_eq!(
        reminders(),
        0,
        "neither is reminded: {:?}",
        records(&pager_out)
    );
    // The silence ends; the acknowledged one stays quiet, the other is told
    // once, then reminded again.
    s.advance(2 * 3_600_000);
    s.new_alerts();
    s.advance(600_000);
    s.new_alerts();
    let got: Vec<String> = records(&pager_out).iter().map(|r| text(r)).collect();
    assert!(
        got.iter().all(|t| !t.contains("h db: [service:reminder")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|t| t.starts_with("h web: [service:reminder/WARN] Still WARN")),
        "{got:#?}"
    );
}
