//! Bounded storage: history-limit per service and retention-days for alerts,
//! driven by a manual clock.

use serde_json::json;

use crate::common::{TestServer, report};

fn states_of(t: &TestServer, service_id: i64) -> Vec<String> {
    let (_, v) = t.get(&format!(
        "/ui/api/status/service/{service_id}/states?hours=8784"
    ));
    v["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["info"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn history_keeps_the_newest_records_per_service() {
    let t = TestServer::start_manual_any(|c| c.history_limit = 10);
    for i in 0..57 {
        assert_eq!(
            t.post_json(
                "/api/set/service/status",
                &report("h", "k", "a", "OK", &format!("a{i}"))
            )
            .0,
            200
        );
        assert_eq!(
            t.post_json(
                "/api/set/service/status",
                &report("h", "k", "b", "OK", &format!("b{i}"))
            )
            .0,
            200
        );
    }
    let a = t.service("h", "a").unwrap()["id"].as_i64().unwrap();
    // Pruning in the writer is amortised: never more than a tenth over the limit.
    assert!(states_of(&t, a).len() <= 20, "{}", states_of(&t, a).len());
    t.server().app().store().prune().unwrap();
    let kept = states_of(&t, a);
    assert_eq!(
        kept,
        (47..57).rev().map(|i| format!("a{i}")).collect::<Vec<_>>()
    );
    let b = t.service("h", "b").unwrap()["id"].as_i64().unwrap();
    assert_eq!(states_of(&t, b).len(), 10);
    assert_eq!(t.counts().states, 20);
}

#[test]
fn delivered_alerts_older_than_retention_are_pruned_in_the_background() {
    let t = TestServer::start_manual_any(|c| c.retention_days = 90);
    let clock = t.clock.clone().unwrap();
    let alert = |m: &str| json!({"server": {"name": "h", "key": "k"}, "alerts": [{"message": m}]});
    assert_eq!(t.post_json("/api/set/alerts", &alert("old")).0, 200);
    t.server().app().supervise_now().unwrap();
    clock.advance(89 * 86_400_000);
    assert_eq!(t.post_json("/api/set/alerts", &alert("recent")).0, 200);
    t.server().app().supervise_now().unwrap();
    clock.advance(2 * 86_400_000);
    // The writer runs its maintenance after a commit once it is due; the
    // second request is served after the maintenance of the first finished.
    assert_eq!(
        t.post_json("/api/ping", &json!({"server": {"name": "h", "key": "k"}}))
            .0,
        200
    );
    assert_eq!(
        t.post_json("/api/ping", &json!({"server": {"name": "h", "key": "k"}}))
            .0,
        200
    );
    let (_, list) = t.get("/ui/api/status/alerts/?hours=8784");
    let msgs: Vec<&str> = list["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["message"].as_str().unwrap())
        .collect();
    assert_eq!(msgs, ["recent"]);
}

#[test]
fn undelivered_alerts_are_retried_within_retention_and_given_up_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("down");
    std::fs::write(&flag, "").unwrap();
    let out = dir.path().join("out");
    let (flag_s, out_s) = (
        flag.to_str().unwrap().to_owned(),
        out.to_str().unwrap().to_owned(),
    );
    let t = TestServer::start_manual_any(|c| {
        c.retention_days = 1;
        c.alert_plugins.push(overc::config::AlertPluginConfig {
            name: "flaky".into(),
            kind: overc::config::PluginKind::Command(vec![
                crate::supervision::plugin("flaky.sh"),
                flag_s,
                out_s,
            ]),
            timeout: std::time::Duration::from_secs(10),
            policy: Default::default(),
        });
    });
    let body = json!({"server": {"name": "h", "key": "k"}, "alerts": [{"message": "must arrive"}]});
    assert_eq!(t.post_json("/api/set/alerts", &body).0, 200);
    t.server().app().supervise_now().unwrap();
    t.clock.as_ref().unwrap().advance(12 * 3_600_000);
    t.server().app().store().prune().unwrap();
    let (_, list) = t.get("/ui/api/status/alerts/?hours=8784");
    assert!(
        list["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["message"] == "must arrive" && a["delivered"] == false),
        "kept while within retention-days"
    );
    t.clock.as_ref().unwrap().advance(2 * 86_400_000);
    t.server().app().store().prune().unwrap();
    let (_, list) = t.get("/ui/api/status/alerts/?hours=8784");
    assert!(
        list["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["message"] != "must arrive"),
        "{list}"
    );
}
