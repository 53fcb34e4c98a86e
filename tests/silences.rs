//! SPEC §9 silences and acknowledgements: over real HTTP, with a manual
//! clock and a real alert plugin (`record.sh`), and the real `overcli`; on
//! PostgreSQL too when `OVERC_TEST_POSTGRES` names a cluster.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use overc::config::{AlertPluginConfig, PluginKind};
use serde_json::{Value, json};

use crate::common::{TestServer, agent, report};
use crate::supervision::{plugin, records};

const MIN: i64 = 60_000;
const LOGIN: &str = "Basic YWRtaW46c2VjcmV0"; // admin:secret

struct Scenario {
    t: TestServer,
    out: PathBuf,
    seen: usize,
}

impl Scenario {
    /// A server on a manual clock with the `record.sh` plugin and a page
    /// password (user `admin`), on the backend the run names.
    fn new() -> Scenario {
        let out = tempfile::tempdir().unwrap().keep().join("alerts.log");
        let command = vec![plugin("record.sh"), out.to_str().unwrap().to_owned()];
        let t = TestServer::start_manual_any(move |c| {
            c.alert_plugins.push(AlertPluginConfig {
                name: "log".into(),
                kind: PluginKind::Command(command),
                timeout: Duration::from_secs(30),
                policy: Default::default(),
            });
            c.ui.password = Some("secret".into());
        });
        Scenario { t, out, seen: 0 }
    }

    fn send(&self, server: &str, service: &str, state: &str, period: u32) {
        let mut body = report(
            server,
            "k",
            service,
            state,
            &format!("{service} is {state}"),
        );
        body["period"] = json!(period);
        let (code, v) = self.t.post_json("/api/set/service/status", &body);
        assert_eq!(code, 200, "{v}");
    }

    fn advance(&self, ms: i64) {
        self.t.clock.as_ref().unwrap().advance(ms);
    }

    /// Runs the supervisor and delivery; the alert texts the plugin got
    /// since the last call (without the env line).
    fn told(&mut self) -> Vec<String> {
        self.t.server().app().supervise_now().unwrap();
        let all = records(&self.out);
        let fresh = all[self.seen..].to_vec();
        self.seen = all.len();
        fresh
            .iter()
            .map(|r| {
                r.lines()
                    .filter(|l| !l.starts_with("env: "))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect()
    }

    fn silence(&self, server: &str, body: Value) -> (u16, Value) {
        let mut body = body;
        body["server"] = json!({"name": server, "key": "k"});
        self.t.post_json("/api/set/silence", &body)
    }

    fn unsilence(&self, server: &str, id: Option<i64>) -> (u16, Value) {
        let mut body = json!({"server": {"name": server, "key": "k"}});
        if let Some(id) = id {
            body["id"] = json!(id);
        }
        self.t.post_json("/api/set/unsilence", &body)
    }

    /// A page action (logged in, with the action header).
    fn action(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        page(&self.t.url(), method, path, body, true, true)
    }

    fn service(&self, server: &str, service: &str) -> Value {
        self.t.service(server, service).unwrap()
    }

    fn service_id(&self, server: &str, service: &str) -> i64 {
        self.service(server, service)["id"].as_i64().unwrap()
    }

    /// The newest alert about `server`/`service` in the read API.
    fn last_alert(&self, server: &str, service: &str) -> Value {
        let (_, alerts) = self.t.get_auth("/ui/api/status/alerts/");
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["server"] == server && a["service"] == service)
            .cloned()
            .unwrap()
    }

    fn metrics(&self) -> String {
        let (code, text) = self.t.get_auth("/metrics");
        assert_eq!(code, 200);
        text.as_str().unwrap().to_owned()
    }
}

/// A page request with or without the login and the action header.
fn page(
    url: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    login: bool,
    action: bool,
) -> (u16, Value) {
    let uri = format!("{url}{path}");
    let mut req = ureq::http::Request::builder().method(method).uri(uri);
    if login {
        req = req.header("Authorization", LOGIN);
    }
    if action {
        req = req.header("X-Overc-Action", "1");
    }
    req = req.header("Content-Type", "application/json");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut resp = agent().run(req.body(body.into_bytes()).unwrap()).unwrap();
    let code = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn a_host_silences_itself_its_problems_are_recorded_not_told_and_told_once_at_the_end() {
    let mut s = Scenario::new();
    s.send("h", "app", "OK", 3600);
    s.send("other", "app", "OK", 3600);
    s.send("w*", "app", "OK", 3600);
    s.send("wx", "app", "OK", 3600);
    let (code, v) = s.silence("h", json!({"duration": 900, "comment": "kernel update"}));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["ok"], 1);
    assert!(v["id"].as_i64().unwrap() > 0);
    let (code, _) = s.silence("w*", json!({"duration": 900}));
    assert_eq!(code, 200);
    assert_eq!(s.told(), Vec::<String>::new());

    s.send("h", "app", "FAIL", 3600);
    s.send("other", "app", "FAIL", 3600);
    s.send("w*", "app", "FAIL", 3600);
    s.send("wx", "app", "FAIL", 3600);
    let told = s.told();
    assert_eq!(
        told,
        [
            "other app: [service:state/FAIL] State changed: \"OK\" -> \"FAIL\"\nCurrent: FAIL: app is FAIL",
            "wx app: [service:state/FAIL] State changed: \"OK\" -> \"FAIL\"\nCurrent: FAIL: app is FAIL",
        ],
        "a host key silences that host only, its name matched literally"
    );
    let alert = s.last_alert("h", "app");
    assert_eq!(alert["channel"], "service:state");
    assert_eq!(alert["silenced"], true);
    assert_eq!(alert["delivered"], true);
    assert_eq!(alert["deliveries"], json!([]));
    assert_eq!(s.last_alert("other", "app")["silenced"], false);
    assert_eq!(s.service("h", "app")["silenced"], true);
    assert_eq!(s.service("other", "app")["silenced"], false);
    let metrics = s.metrics();
    assert!(
        metrics.contains("overc_service_silenced{server=\"h\",service=\"app\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("overc_service_silenced{server=\"other\",service=\"app\"} 0"));

    // A restart keeps the silence.
    s.t.restart_after(MIN);
    s.send("h", "app", "WARN", 3600);
    assert_eq!(s.told(), Vec::<String>::new());
    assert_eq!(s.last_alert("h", "app")["silenced"], true);

    // Expiry on the clock: the problem still open is told once, as it is now.
    s.advance(14 * MIN - 1);
    assert_eq!(s.told(), Vec::<String>::new(), "not before its end");
    s.advance(1);
    let mut told = s.told();
    told.sort();
    assert_eq!(
        told,
        [
            "h app: [service:state/WARN] Silence ended: still WARN\nCurrent: WARN: app is WARN",
            "w* app: [service:state/FAIL] Silence ended: still FAIL\nCurrent: FAIL: app is FAIL",
        ]
    );
    assert_eq!(s.service("h", "app")["silenced"], false);
    s.advance(MIN);
    assert_eq!(s.told(), Vec::<String>::new(), "told once");
    s.send("h", "app", "OK", 3600);
    assert_eq!(s.told().len(), 1, "after the silence, changes go out again");

    // Listed as ended (not early) for a day, by its host.
    let (_, list) = s.t.get_auth("/ui/api/silences");
    let first = &list["silences"].as_array().unwrap()[1];
    assert_eq!(first["server"], "h");
    assert_eq!(first["author"], "host:h");
    assert_eq!(first["comment"], "kernel update");
    assert_eq!(first["active"], false);
    assert_eq!(first["ended_early"], false);
    assert_eq!(list["silences"][0]["server"], "w\\*");
}

#[test]
fn unsilence_ends_at_once_only_the_hosts_own_and_tells_what_is_still_broken() {
    let mut s = Scenario::new();
    for service in ["disk-root", "web", "flap", "late"] {
        s.send("h", service, "OK", 3600);
    }
    s.send("h", "late", "OK", 60);
    s.send("o", "x", "OK", 3600);
    let whole = s.silence("h", json!({"duration": 3600}));
    let disk = s.silence("h", json!({"duration": 3600, "service": "disk*"}));
    let (whole, disk) = (
        whole.1["id"].as_i64().unwrap(),
        disk.1["id"].as_i64().unwrap(),
    );
    let (code, _) = s.silence("o", json!({"duration": 60}));
    assert_eq!(code, 200);

    s.send("h", "disk-root", "FAIL", 3600);
    s.send("h", "web", "UNK", 3600);
    s.send("h", "flap", "FAIL", 3600);
    s.send("h", "flap", "OK", 3600);
    s.advance(61_000);
    // `late` went overdue, `o`'s silence expired (nothing to tell there).
    assert_eq!(s.told(), Vec::<String>::new());
    assert_eq!(s.last_alert("h", "late")["event"], "offline");
    assert_eq!(s.last_alert("h", "late")["silenced"], true);

    // Another host's silence is not found; bad bodies are 400s.
    let (code, v) = s.unsilence("o", Some(whole));
    assert_eq!(code, 404, "{v}");
    assert_eq!(s.unsilence("h", Some(999_999)).0, 404);
    let (code, v) = s.silence("h", json!({"duration": 604_801}));
    assert_eq!(code, 400);
    assert!(v["error"].as_str().unwrap().contains("duration"), "{v}");
    assert_eq!(s.silence("h", json!({"duration": 0})).0, 400);
    assert_eq!(s.silence("h", json!({"duration": "15m"})).0, 400);
    assert_eq!(s.silence("h", json!({"duration": 9, "service": ""})).0, 400);
    assert_eq!(s.silence("h", json!({})).0, 400);
    let wrong_key = json!({"server": {"name": "h", "key": "nope"}, "duration": 60});
    assert_eq!(s.t.post_json("/api/set/silence", &wrong_key).0, 403);

    // Ending the disk silence: the whole-host one still holds disk-root.
    let (code, v) = s.unsilence("h", Some(disk));
    assert_eq!((code, &v["ended"]), (200, &json!([disk])), "{v}");
    assert_eq!(s.told(), Vec::<String>::new());
    assert_eq!(s.unsilence("h", Some(disk)).0, 404, "already ended");

    // Ending all of them: each open problem once, at once; not the one
    // that recovered.
    let (code, v) = s.unsilence("h", None);
    assert_eq!((code, &v["ended"]), (200, &json!([whole])), "{v}");
    let mut told = s.told();
    told.sort();
    assert_eq!(
        told,
        [
            "h disk-root: [service:state/FAIL] Silence ended: still FAIL\nCurrent: FAIL: disk-root is FAIL",
            "h late: [plugin/offline] Silence ended: monitoring plugin still offline\nCurrent: OK: late is OK",
            "h web: [service:state/UNK] Silence ended: still UNK\nCurrent: UNK: web is UNK",
        ]
    );
    let (code, v) = s.unsilence("h", None);
    assert_eq!((code, &v["ended"]), (200, &json!([])));
    let (_, list) = s.t.get_auth("/ui/api/silences");
    let ended = list["silences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == whole)
        .unwrap()
        .clone();
    assert_eq!(
        (ended["active"].clone(), ended["ended_early"].clone()),
        (json!(false), json!(true))
    );
}

#[test]
fn page_silences_with_patterns_under_the_page_rules() {
    let mut s = Scenario::new();
    for (server, service) in [("web1", "disk1"), ("web1", "disk12"), ("db1", "disk1")] {
        s.send(server, service, "OK", 3600);
    }
    let url = s.t.url();
    let body =
        json!({"server": "web*", "service": "disk?", "duration": 600, "comment": "new disks"});
    assert_eq!(
        page(
            &url,
            "POST",
            "/ui/api/silences",
            Some(body.clone()),
            false,
            true
        )
        .0,
        401
    );
    assert_eq!(
        page(
            &url,
            "POST",
            "/ui/api/silences",
            Some(body.clone()),
            true,
            false
        )
        .0,
        403
    );
    let (code, v) = s.action("POST", "/ui/api/silences", Some(body));
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_i64().unwrap();

    for bad in [
        json!({"server": "web*", "duration": 600}),
        json!({"server": "web*", "duration": 600, "comment": "  "}),
        json!({"server": "", "duration": 600, "comment": "x"}),
        json!({"duration": 600, "comment": "x"}),
        json!({"server": "*", "comment": "x"}),
        json!({"server": "*", "duration": 600, "ends": "2030-01-01T00:00Z", "comment": "x"}),
        json!({"server": "*", "ends": "2020-01-01T00:00Z", "comment": "x"}),
        json!({"server": "*", "ends": "tomorrow", "comment": "x"}),
        json!({"server": "*", "duration": 604_801, "comment": "x"}),
    ] {
        let (code, v) = s.action("POST", "/ui/api/silences", Some(bad.clone()));
        assert_eq!(code, 400, "{bad} -> {v}");
        assert!(v["error"].as_str().unwrap().starts_with("Data: "), "{v}");
    }
    // An end as ISO 8601 with its offset.
    let ends = overc::clock::iso8601(crate::common::T0 + 30 * MIN);
    let (code, v) = s.action(
        "POST",
        "/ui/api/silences",
        Some(json!({"server": "nothing-matches", "ends": ends, "comment": "ISO"})),
    );
    assert_eq!(code, 200, "{v}");

    for (server, service) in [("web1", "disk1"), ("web1", "disk12"), ("db1", "disk1")] {
        s.send(server, service, "FAIL", 3600);
    }
    let told = s.told();
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(told[0].starts_with("web1 disk12: "), "{told:?}");
    assert!(told[1].starts_with("db1 disk1: "), "{told:?}");
    assert_eq!(s.service("web1", "disk1")["silenced"], true);
    assert_eq!(s.service("web1", "disk12")["silenced"], false);

    // The list: read like the rest of the API (login, no action header).
    let (code, list) = page(&url, "GET", "/ui/api/silences", None, true, false);
    assert_eq!(code, 200);
    let mine = list["silences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(mine["server"], "web*");
    assert_eq!(mine["service"], "disk?");
    assert_eq!(mine["comment"], "new disks");
    assert_eq!(mine["author"], "admin");
    assert_eq!(mine["active"], true);
    assert_eq!(mine["starts"], overc::clock::iso8601(crate::common::T0));
    assert_eq!(
        page(&url, "GET", "/ui/api/silences", None, false, false).0,
        401
    );

    // Ending it from the page tells what is still broken, at once.
    let path = format!("/ui/api/silences/{id}");
    assert_eq!(page(&url, "DELETE", &path, None, true, false).0, 403);
    let (code, v) = s.action("DELETE", &path, None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        s.told(),
        [
            "web1 disk1: [service:state/FAIL] Silence ended: still FAIL\nCurrent: FAIL: disk1 is FAIL"
        ]
    );
    let (code, v) = s.action("DELETE", &path, None);
    assert_eq!(code, 404, "{v}");
    assert_eq!(s.action("DELETE", "/ui/api/silences/424242", None).0, 404);
    assert_eq!(s.action("PUT", "/ui/api/silences", None).0, 405);

    // Ended ones stay listed for a day.
    s.advance(24 * 60 * MIN - 1);
    let (_, list) = s.t.get_auth("/ui/api/silences");
    assert!(
        list["silences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == id)
    );
    s.advance(1);
    let (_, list) = s.t.get_auth("/ui/api/silences");
    assert!(
        !list["silences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == id)
    );

    // Without a page password, silences are read-only.
    let ro = TestServer::start();
    let (code, _) = page(
        &ro.url(),
        "POST",
        "/ui/api/silences",
        Some(json!({"server": "*", "duration": 60, "comment": "x"})),
        false,
        true,
    );
    assert_eq!(code, 403);
    assert_eq!(ro.get("/ui/api/silences").1, json!({"silences": []}));
}

#[test]
fn acks_are_told_and_last_until_the_problem_changes() {
    let mut s = Scenario::new();
    s.send("h", "raid", "OK", 3600);
    let id = s.service_id("h", "raid");
    let path = format!("/ui/api/item/service/{id}/ack");
    let (code, v) = s.action("POST", &path, Some(json!({"comment": "on it"})));
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("nothing to acknowledge"),
        "{v}"
    );
    assert_eq!(s.service("h", "raid")["ack"], Value::Null);

    s.send("h", "raid", "FAIL", 3600);
    assert_eq!(s.told().len(), 1);
    assert_eq!(page(&s.t.url(), "POST", &path, None, true, false).0, 403);
    let (code, v) = s.action(
        "POST",
        &path,
        Some(json!({"comment": " on it, disk ordered "})),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        s.told(),
        [
            "h raid: [service:ack] Acknowledged by admin: on it, disk ordered\nCurrent: FAIL: raid is FAIL"
        ]
    );
    let ack = s.service("h", "raid")["ack"].clone();
    assert_eq!(ack["author"], "admin");
    assert_eq!(ack["comment"], "on it, disk ordered");
    assert_eq!(ack["ctime"], overc::clock::iso8601(crate::common::T0));
    let engine = s.t.server().engine().clone();
    let held = engine.ack_of(id).unwrap().unwrap();
    assert_eq!(
        held.problem,
        overc::policy::Problem::State(overc::State::Fail)
    );
    assert!(
        s.metrics()
            .contains("overc_service_acknowledged{server=\"h\",service=\"raid\"} 1")
    );

    // The same problem again: still acknowledged. Worse: news again.
    s.send("h", "raid", "FAIL", 3600);
    assert!(engine.ack_of(id).unwrap().is_some());
    s.send("h", "raid", "WARN", 3600);
    assert_eq!(s.service("h", "raid")["ack"], Value::Null);
    assert!(engine.ack_of(id).unwrap().is_none());
    s.told();

    // Acknowledged, recovers, fails again: not acknowledged any more.
    assert_eq!(s.action("POST", &path, None).0, 200, "no body: no comment");
    assert_eq!(
        s.told(),
        ["h raid: [service:ack] Acknowledged by admin\nCurrent: WARN: raid is WARN"]
    );
    s.send("h", "raid", "OK", 3600);
    s.send("h", "raid", "WARN", 3600);
    assert_eq!(s.service("h", "raid")["ack"], Value::Null);

    // Removed by hand; 404 when there is none.
    assert_eq!(s.action("POST", &path, Some(json!({}))).0, 200);
    assert_eq!(s.action("DELETE", &path, None).0, 200);
    assert_eq!(s.service("h", "raid")["ack"], Value::Null);
    let (code, v) = s.action("DELETE", &path, None);
    assert_eq!(code, 404, "{v}");
    assert_eq!(
        s.action("POST", "/ui/api/item/service/999999/ack", None).0,
        404
    );
    assert_eq!(s.action("PUT", &path, None).0, 405);
    s.told();

    // An overdue service can be acknowledged; reporting again ends it.
    s.send("h", "cron", "OK", 60);
    s.advance(61_000);
    assert_eq!(s.told().len(), 1, "cron went offline");
    let cron = s.service_id("h", "cron");
    let cron_path = format!("/ui/api/item/service/{cron}/ack");
    assert_eq!(s.action("POST", &cron_path, None).0, 200);
    assert_eq!(s.told().len(), 1);
    assert_eq!(
        engine.ack_of(cron).unwrap().unwrap().problem,
        overc::policy::Problem::Offline
    );
    s.send("h", "cron", "OK", 60);
    assert!(engine.ack_of(cron).unwrap().is_none());

    // An acknowledged problem under a silence is not told again at its end.
    s.send("h", "db", "OK", 3600);
    let (_, v) = s.silence("h", json!({"duration": 60, "service": "db"}));
    s.send("h", "db", "FAIL", 3600);
    let db = s.service_id("h", "db");
    assert_eq!(
        s.action("POST", &format!("/ui/api/item/service/{db}/ack"), None)
            .0,
        200
    );
    assert_eq!(s.last_alert("h", "db")["silenced"], true, "the ack too");
    s.told();
    assert_eq!(s.unsilence("h", v["id"].as_i64()).0, 200);
    assert_eq!(s.told(), Vec::<String>::new());

    // Deleting the service deletes its ack.
    assert_eq!(
        s.action("DELETE", &format!("/ui/api/item/service/{db}"), None)
            .0,
        200
    );
    assert!(engine.ack_of(db).unwrap().is_none());
}

#[test]
fn overcli_silences_and_unsilences_its_host() {
    let mut s = Scenario::new();
    s.send("h", "app", "OK", 3600);
    let url = s.t.url();
    let overcli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_overcli"))
            .args(args)
            .env_remove("OVERC_SERVER")
            .env_remove("OVERC_SERVER_ID")
            .output()
            .unwrap()
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let o = overcli(&[
        "-s",
        &url,
        "-i",
        "h:k",
        "silence",
        "15m",
        "--service",
        "a*",
        "kernel update",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let id: i64 = text(&o.stdout).trim().parse().unwrap();
    let (_, list) = s.t.get_auth("/ui/api/silences");
    let made = &list["silences"][0];
    assert_eq!(made["id"], id);
    assert_eq!(
        (made["server"].as_str(), made["service"].as_str()),
        (Some("h"), Some("a*"))
    );
    assert_eq!(made["comment"], "kernel update");
    assert_eq!(
        made["ends"],
        overc::clock::iso8601(crate::common::T0 + 15 * MIN)
    );
    s.send("h", "app", "FAIL", 3600);
    assert_eq!(s.told(), Vec::<String>::new());

    // Durations are checked before anything is sent.
    for bad in ["0", "8d", "1.5h", "soon"] {
        let o = overcli(&["-s", &url, "-i", "h:k", "silence", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(text(&o.stderr).contains("DURATION"), "{}", text(&o.stderr));
    }
    let o = overcli(&["-s", &url, "-i", "h:k", "silence", "--help"]);
    assert!(text(&o.stdout).contains("overcli silence 15m"));

    // From a monitor config's [overc] section; another host's id is refused.
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("monitor.ini");
    std::fs::write(
        &ini,
        format!(
            "[overc]\nserver = {url}\nmy-name = other\nmy-key = k\n\n[service:x]\nperiod = 60\ncommand = true\n"
        ),
    )
    .unwrap();
    let o = overcli(&["-c", ini.to_str().unwrap(), "unsilence", &id.to_string()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("404"), "{}", text(&o.stderr));
    let o = overcli(&["-c", ini.to_str().unwrap(), "silence", "90"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let theirs: i64 = text(&o.stdout).trim().parse().unwrap();

    let o = overcli(&["-s", &url, "-i", "h:k", "unsilence", "x"]);
    assert_eq!(o.status.code(), Some(2));
    let o = overcli(&["-s", &url, "-i", "h:k", "unsilence"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), id.to_string());
    assert_eq!(
        s.told(),
        ["h app: [service:state/FAIL] Silence ended: still FAIL\nCurrent: FAIL: app is FAIL"]
    );
    let (_, list) = s.t.get_auth("/ui/api/silences");
    let still = list["silences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == theirs)
        .unwrap()
        .clone();
    assert_eq!(still["active"], true, "the other host's silence is its own");
}
