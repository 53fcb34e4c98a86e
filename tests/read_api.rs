//! The `/ui/api/` read API: shapes, filters, deadlines and history folding.

use serde_json::{Value, json};

use crate::common::{T0, TestServer, report};

fn svc_id(t: &TestServer, server: &str, service: &str) -> i64 {
    t.service(server, service).unwrap()["id"].as_i64().unwrap()
}

#[test]
fn status_shape_and_sorting() {
    let t = TestServer::start_manual_any(|_| {});
    for (srv, svc) in [("zeta", "b"), ("alpha", "z"), ("alpha", "a")] {
        assert_eq!(
            t.post_json("/api/set/service/status", &report(srv, "k", svc, "OK", "i"))
                .0,
            200
        );
    }
    let v = t.status();
    let names: Vec<&str> = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "zeta"]);
    let alpha = &v["servers"][0];
    assert_eq!(alpha["services"][0]["name"], "a");
    assert_eq!(alpha["services"][1]["name"], "z");
    assert_eq!(alpha["ip"], "127.0.0.1");
    assert_eq!(alpha["title"], "alpha");
    for key in ["id", "name", "title", "period", "n_alerts", "state"] {
        assert!(alpha["services"][0].get(key).is_some(), "{key}");
    }
    let state = &alpha["services"][0]["state"];
    assert_eq!(state["rtime"], overc::clock::iso8601(T0));
    assert_eq!(state["seen_ago"], 0);
    for key in ["n_alerts", "last_state_id", "supervisor_lag"] {
        assert!(v["stats"].get(key).is_some(), "{key}");
    }
    assert_eq!(v["stats"]["last_state_id"], 3);

    let alpha_id = alpha["id"].as_i64().unwrap();
    let (code, one) = t.get(&format!("/ui/api/status/server/{alpha_id}"));
    assert_eq!(code, 200);
    assert_eq!(one["servers"].as_array().unwrap().len(), 1);
    assert_eq!(one["servers"][0]["services"].as_array().unwrap().len(), 2);
    let z = svc_id(&t, "alpha", "z");
    let (_, one) = t.get(&format!("/ui/api/status/service/{z}"));
    assert_eq!(one["servers"][0]["name"], "alpha");
    assert_eq!(one["servers"][0]["services"].as_array().unwrap().len(), 1);
    assert_eq!(one["servers"][0]["services"][0]["name"], "z");

    for path in [
        "/ui/api/status/server/999",
        "/ui/api/status/service/999",
        "/ui/api/status/server/abc",
        "/ui/api/status/service/999/states",
        "/ui/api/status/alerts/server/999",
        "/ui/api/status/bogus",
    ] {
        let (code, v) = t.get(path);
        assert_eq!(code, 404, "{path}");
        assert!(v["error"].is_string());
    }
}

#[test]
fn timed_out_follows_the_deadline_with_grace() {
    let t = TestServer::start_manual_any(|c| c.grace = 30);
    let clock = t.clock.clone().unwrap();
    assert_eq!(
        t.post_json("/api/set/service/status", &report("h", "k", "s", "OK", ""))
            .0,
        200
    );
    clock.advance(60_000 + 30_000);
    assert_eq!(
        t.service("h", "s").unwrap()["state"]["timed_out"],
        false,
        "exactly at the deadline"
    );
    clock.advance(1);
    let s = t.service("h", "s").unwrap();
    assert_eq!(s["state"]["timed_out"], true);
    assert_eq!(s["state"]["seen_ago"], 90);
    assert_eq!(
        t.post_json("/api/set/service/status", &report("h", "k", "s", "OK", ""))
            .0,
        200
    );
    assert_eq!(t.service("h", "s").unwrap()["state"]["timed_out"], false);
}

#[test]
fn history_is_newest_first_and_folds_runs() {
    let t = TestServer::start_manual_any(|_| {});
    let clock = t.clock.clone().unwrap();
    for state in ["OK", "OK", "OK", "OK", "WARN", "WARN", "OK"] {
        assert_eq!(
            t.post_json(
                "/api/set/service/status",
                &report("h", "k", "s", state, state)
            )
            .0,
            200
        );
        clock.advance(1000);
    }
    let id = svc_id(&t, "h", "s");
    let (code, v) = t.get(&format!("/ui/api/status/service/{id}/states?hours=24"));
    assert_eq!(code, 200);
    let states = v["states"].as_array().unwrap();
    assert_eq!(states.len(), 7);
    assert_eq!(states[0]["state"], "OK");
    assert_eq!(states[0]["service"], "s");
    assert_eq!(states[0]["service_id"], id);
    assert_eq!(
        states[0]["alerts"][0]["message"],
        "State changed: \"WARN\" -> \"OK\""
    );
    assert!(states[0]["id"].as_i64() > states[1]["id"].as_i64());

    // OK(alert), WARN, WARN(alert), then a run of four OKs without alerts:
    // as OverC 1.0.9, its newest and oldest stay, the two between fold.
    let ids: Vec<i64> = states.iter().map(|s| s["id"].as_i64().unwrap()).collect();
    for groups in ["1", "yes", "true"] {
        let (_, v) = t.get(&format!(
            "/ui/api/status/service/{id}/states?groups={groups}"
        ));
        let grouped = v["states"].as_array().unwrap();
        assert_eq!(grouped.len(), 6, "{v:#}");
        for (i, at) in [(0, 0), (1, 1), (2, 2), (3, 3), (5, 6)] {
            assert_eq!(grouped[i]["id"], ids[at], "{v:#}");
            assert!(grouped[i].get("group").is_none(), "{v:#}");
        }
        assert_eq!(
            grouped[4],
            json!({"id": ids[5], "state": "OK", "group": format!("{}-{}", ids[5], ids[4]),
                   "group_count": 2}),
            "{v:#}"
        );
    }
    // That range expanded: every record again.
    let (_, v) = t.get(&format!(
        "/ui/api/status/service/{id}/states?groups=yes&expand={}-{}",
        ids[5], ids[4]
    ));
    assert_eq!(v["states"].as_array().unwrap().len(), 7, "{v:#}");
    assert!(
        v["states"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s.get("group").is_none())
    );
    let (code, _) = t.get(&format!(
        "/ui/api/status/service/{id}/states?groups=yes&expand=x"
    ));
    assert_eq!(code, 400);
    // Fractions of an hour, as the original took them.
    clock.advance(3_600_000 - 3500);
    let (code, v) = t.get(&format!("/ui/api/status/service/{id}/states?hours=1"));
    assert_eq!(code, 200);
    assert_eq!(v["states"].as_array().unwrap().len(), 3, "{v:#}");
    let (code, v) = t.get(&format!("/ui/api/status/service/{id}/states?hours=0.5"));
    assert_eq!(code, 200);
    assert_eq!(v["states"], json!([]));

    // Older than the window is left out.
    clock.advance(2 * 3_600_000);
    let (_, v) = t.get(&format!("/ui/api/status/service/{id}/states?hours=1"));
    assert_eq!(v["states"], json!([]));
    for bad in ["-3", "-0.5", "NaN", "0", "abc"] {
        let (code, v) = t.get(&format!("/ui/api/status/service/{id}/states?hours={bad}"));
        assert_eq!(code, 400, "{bad}");
        assert!(v["error"].as_str().unwrap().contains("\"hours\""), "{v}");
        let (code, _) = t.get(&format!("/ui/api/status/alerts/?hours={bad}"));
        assert_eq!(code, 400, "{bad}");
    }
}

#[test]
fn alert_lists_filter_and_count_the_last_day() {
    let t = TestServer::start_manual_any(|_| {});
    let clock = t.clock.clone().unwrap();
    let post_alert = |server: &str, service: Option<&str>, msg: &str| {
        let mut a = json!({"message": msg});
        if let Some(s) = service {
            a["service"] = json!(s);
        }
        let body = json!({"server": {"name": server, "key": "k"}, "alerts": [a]});
        assert_eq!(t.post_json("/api/set/alerts", &body).0, 200);
    };
    post_alert("a", Some("x"), "old");
    clock.advance(25 * 3_600_000);
    post_alert("a", Some("x"), "ax");
    post_alert("a", None, "a-server");
    post_alert("b", Some("y"), "by");

    let (_, all) = t.get("/ui/api/status/alerts/");
    let msgs: Vec<&str> = all["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["message"].as_str().unwrap())
        .collect();
    assert_eq!(msgs, ["by", "a-server", "ax"]);
    let first = &all["alerts"][0];
    for key in [
        "id",
        "server",
        "server_id",
        "service",
        "service_id",
        "ctime",
        "channel",
        "event",
        "message",
        "severity",
        "state_info",
    ] {
        assert!(first.get(key).is_some(), "{key}");
    }
    let (_, all48) = t.get("/ui/api/status/alerts/?hours=48");
    assert_eq!(all48["alerts"].as_array().unwrap().len(), 4);

    let v = t.status();
    let a = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "a")
        .unwrap()
        .clone();
    assert_eq!(a["n_alerts"], 1, "about the server itself, as the original");
    assert_eq!(
        a["services"][0]["n_alerts"], 1,
        "the 25 h old alert is not counted"
    );
    assert_eq!(v["stats"]["n_alerts"], 3);

    let a_id = a["id"].as_i64().unwrap();
    let (_, by_server) = t.get(&format!("/ui/api/status/alerts/server/{a_id}"));
    assert_eq!(by_server["alerts"].as_array().unwrap().len(), 2);
    let x_id = svc_id(&t, "a", "x");
    let (_, by_service) = t.get(&format!("/ui/api/status/alerts/service/{x_id}"));
    let list = by_service["alerts"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["message"], "ax");
    assert_eq!(
        list[0]["state_info"],
        Value::Null,
        "x never reported a state"
    );
}

/// The status is written out server by server (`Store::status_each`); it
/// must be byte for byte the whole view (`Store::status`) serialized.
#[test]
fn streamed_status_equals_the_whole_view() {
    use overc::store::StatusFilter;
    let t = TestServer::start_manual_any(|_| {});
    for (srv, svc, info) in [
        ("web", "http", "OK - 0.2 s | time=0.2s;1;2;0 size=512B"),
        ("web", "disk", "WARN - 91% | used=91%;90;95"),
        ("db", "pg", "FAIL - down"),
        ("db", "плюс", "OK"),
    ] {
        let body = report(srv, "k", svc, "OK", info);
        assert_eq!(t.post_json("/api/set/service/status", &body).0, 200);
    }
    let store = t.server().app().store();
    let pg = svc_id(&t, "db", "pg");
    let web = t.service("web", "http").unwrap();
    let web_server = t.status()["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(web["state"]["perfdata"].as_array().unwrap().len(), 2);
    for (path, filter) in [
        ("/ui/api/status/".to_owned(), StatusFilter::All),
        (
            format!("/ui/api/status/server/{web_server}"),
            StatusFilter::Server(web_server),
        ),
        (
            format!("/ui/api/status/service/{pg}"),
            StatusFilter::Service(pg),
        ),
    ] {
        let streamed = t.server().app().handle(&overc::server::Request {
            method: "GET",
            url: &path,
            headers: &[],
            body: &[],
            remote: "127.0.0.1",
        });
        assert_eq!(streamed.status, 200, "{path}");
        let whole = store.status(filter, 0, 0.0).unwrap().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&streamed.body),
            serde_json::to_string(&whole).unwrap(),
            "{path}"
        );
    }
    assert!(
        store
            .status(StatusFilter::Server(999), 0, 0.0)
            .unwrap()
            .is_none()
    );
    assert_eq!(t.get("/ui/api/status/server/999").0, 404);
}

#[test]
fn a_report_of_many_services_links_each_record_to_its_alerts() {
    let t = TestServer::start_manual_any(|_| {});
    // More services than one INSERT takes, and a name given twice: each
    // record must still get its own id, and each alert the id of its record.
    let mut services: Vec<Value> = (0..11)
        .map(|i| {
            let state = if i % 4 == 1 { "WARN" } else { "OK" };
            json!({"name": format!("s{i}"), "state": state, "info": format!("first {i}")})
        })
        .collect();
    services.push(json!({"name": "s9", "state": "FAIL", "info": "again"}));
    let body = json!({"server": {"name": "h", "key": "k"}, "period": 60, "services": services});
    assert_eq!(t.post_json("/api/set/service/status", &body).0, 200);
    for i in 0..11 {
        let id = svc_id(&t, "h", &format!("s{i}"));
        let (_, v) = t.get(&format!("/ui/api/status/service/{id}/states?hours=1"));
        let states = v["states"].as_array().unwrap();
        let (first, alert) = if i == 9 {
            assert_eq!(states.len(), 2, "{v:#}");
            assert_eq!(states[0]["info"], "again");
            assert_eq!(
                states[0]["alerts"][0]["message"],
                "State changed: \"WARN\" -> \"FAIL\""
            );
            (&states[1], Some("WARN"))
        } else {
            assert_eq!(states.len(), 1, "s{i}: {v:#}");
            (&states[0], (i % 4 == 1).then_some("WARN"))
        };
        assert_eq!(first["info"], format!("first {i}"));
        match alert {
            Some(state) => assert_eq!(
                first["alerts"][0]["message"],
                format!("State changed: \"(?)\" -> \"{state}\""),
                "s{i}: {v:#}"
            ),
            None => assert_eq!(
                first["alerts"].as_array().map_or(0, Vec::len),
                0,
                "s{i}: {v:#}"
            ),
        }
    }
    assert_eq!(t.service("h", "s9").unwrap()["state"]["state"], "FAIL");
}

/// As OverC 1.0.9: a server's `n_alerts` counts the alerts about the server
/// itself, and the stats are those of the selection.
#[test]
fn status_counts_are_those_of_the_server_itself_and_of_the_selection() {
    let t = TestServer::start_manual_any(|_| {});
    let send = |server: &str, service: &str, state: &str| {
        let body = report(server, "k", service, state, "");
        assert_eq!(t.post_json("/api/set/service/status", &body).0, 200);
    };
    let alert = |server: &str, service: Option<&str>| {
        let mut a = json!({"message": "m"});
        if let Some(s) = service {
            a["service"] = json!(s);
        }
        let body = json!({"server": {"name": server, "key": "k"}, "alerts": [a]});
        assert_eq!(t.post_json("/api/set/alerts", &body).0, 200);
    };
    send("a", "x", "WARN"); // state 1, an alert about a/x
    send("a", "y", "OK"); // state 2
    send("b", "z", "FAIL"); // state 3, an alert about b/z
    send("a", "x", "OK"); // state 4, an alert about a/x
    alert("a", None);
    alert("a", None);
    alert("b", None);
    send("b", "z", "FAIL"); // state 5
    let all = t.status();
    let server = |v: &Value, name: &str| {
        v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    let (a, b) = (server(&all, "a"), server(&all, "b"));
    assert_eq!(a["n_alerts"], 2, "{a:#}");
    assert_eq!(b["n_alerts"], 1, "{b:#}");
    assert_eq!(a["services"][0]["n_alerts"], 2);
    assert_eq!(a["services"][1]["n_alerts"], 0);
    assert_eq!(all["stats"]["n_alerts"], 6);
    assert_eq!(all["stats"]["last_state_id"], 5);

    let (_, one) = t.get(&format!("/ui/api/status/server/{}", a["id"]));
    assert_eq!(one["stats"]["n_alerts"], 4, "a's alerts with its services'");
    assert_eq!(one["stats"]["last_state_id"], 4);
    assert_eq!(one["servers"][0]["n_alerts"], 2);
    let x = svc_id(&t, "a", "x");
    let (_, one) = t.get(&format!("/ui/api/status/service/{x}"));
    assert_eq!(one["stats"]["n_alerts"], 2);
    assert_eq!(one["stats"]["last_state_id"], 4);
    let y = svc_id(&t, "a", "y");
    let (_, one) = t.get(&format!("/ui/api/status/service/{y}"));
    assert_eq!(one["stats"]["n_alerts"], 0);
    assert_eq!(one["stats"]["last_state_id"], 2);
    // A service known only from an alert has no record yet.
    alert("b", Some("new"));
    let new = svc_id(&t, "b", "new");
    let (_, one) = t.get(&format!("/ui/api/status/service/{new}"));
    assert_eq!(one["stats"]["n_alerts"], 1);
    assert_eq!(one["stats"]["last_state_id"], 0);
}

/// As OverC 1.0.9: an alert's `state_info` is the info of the state it was
/// raised with, or null; the state itself is under `state`.
#[test]
fn alerts_state_info_is_the_info_string() {
    let t = TestServer::start_manual_any(|_| {});
    let body = report("h", "k", "disk", "WARN", "DISK WARNING - 91% used");
    assert_eq!(t.post_json("/api/set/service/status", &body).0, 200);
    let body = json!({"server": {"name": "h", "key": "k"},
        "alerts": [{"message": "about disk", "service": "disk"}, {"message": "about h"}]});
    assert_eq!(t.post_json("/api/set/alerts", &body).0, 200);
    let (_, list) = t.get("/ui/api/status/alerts/");
    let alerts = list["alerts"].as_array().unwrap();
    let got: Vec<(&Value, &Value, &Value)> = alerts
        .iter()
        .map(|a| (&a["message"], &a["state_info"], &a["state"]))
        .collect();
    assert_eq!(
        got,
        [
            (&json!("about h"), &Value::Null, &Value::Null),
            (
                &json!("about disk"),
                &json!("DISK WARNING - 91% used"),
                &json!("WARN")
            ),
            (
                &json!("State changed: \"(?)\" -> \"WARN\""),
                &json!("DISK WARNING - 91% used"),
                &json!("WARN")
            ),
        ]
    );
    // The history's alerts have the same shape.
    let id = svc_id(&t, "h", "disk");
    let (_, v) = t.get(&format!("/ui/api/status/service/{id}/states"));
    assert_eq!(
        v["states"][0]["alerts"][0]["state_info"],
        "DISK WARNING - 91% used"
    );
    // Fractions of an hour.
    let (code, v) = t.get("/ui/api/status/alerts/?hours=0.5");
    assert_eq!(code, 200);
    assert_eq!(v["alerts"].as_array().unwrap().len(), 3);
}
