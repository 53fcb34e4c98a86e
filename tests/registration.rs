//! Who may register hosts (`registration`, `register-from`), hosts an
//! operator adds (`POST /ui/api/hosts`), and client addresses behind
//! trusted proxies — over real HTTP.

use serde_json::{Value, json};

use crate::common::{TestServer, agent, report};

/// POSTs JSON with extra headers; the status and the JSON answer.
fn post(t: &TestServer, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
    let mut req = agent()
        .post(format!("{}{path}", t.url()))
        .header("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.send(body.to_string()).unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

const LOGIN: (&str, &str) = ("Authorization", "Basic YWRtaW46c2VjcmV0");
const ACTION: (&str, &str) = ("X-Overc-Action", "1");

fn ping(name: &str, key: &str) -> Value {
    json!({"server": {"name": name, "key": key}})
}

/// The `ip` the read API shows for `name`.
fn ip_of(t: &TestServer, name: &str) -> Option<String> {
    t.status()["servers"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| s["ip"].as_str().unwrap_or("").to_owned())
}

fn closed() -> TestServer {
    TestServer::start_manual_any(|c| {
        c.registration.open = false;
        c.ui.username = Some("admin".into());
        c.ui.password = Some("secret".into());
    })
}

#[test]
fn closed_registration_refuses_new_hosts_and_stores_nothing() {
    let t = closed();
    for (path, body) in [
        ("/api/ping", ping("web1", "k")),
        (
            "/api/set/service/status",
            report("web1", "k", "disk", "FAIL", "x"),
        ),
        (
            "/api/set/alerts",
            json!({"server": {"name": "web1", "key": "k"}, "alerts": [{"message": "m"}]}),
        ),
    ] {
        let (status, answer) = post(&t, path, &[], &body);
        assert_eq!(
            (status, &answer),
            (403, &json!({"error": "Unknown server"})),
            "{path}"
        );
    }
    let counts = t.counts();
    assert_eq!(
        (
            counts.servers,
            counts.services,
            counts.states,
            counts.alerts
        ),
        (0, 0, 0, 0)
    );
}

#[test]
fn an_operator_adds_hosts_that_then_report_with_their_key() {
    let t = closed();
    // A key of the operator's choosing.
    let (status, added) = post(
        &t,
        "/ui/api/hosts",
        &[LOGIN, ACTION],
        &json!({"name": "web1", "key": "chosen"}),
    );
    assert_eq!(status, 200, "{added}");
    assert_eq!(
        (&added["ok"], &added["name"], &added["key"]),
        (&json!(1), &json!("web1"), &json!("chosen"))
    );
    assert!(added["id"].as_i64().unwrap() > 0);
    // A generated one.
    let (status, added) = post(
        &t,
        "/ui/api/hosts",
        &[LOGIN, ACTION],
        &json!({"name": "db1"}),
    );
    assert_eq!(status, 200, "{added}");
    let key = added["key"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 32, "{key}");

    let sent = post(
        &t,
        "/api/set/service/status",
        &[],
        &report("web1", "chosen", "disk", "OK", "fine"),
    );
    assert_eq!(sent.0, 200, "{}", sent.1);
    assert_eq!(post(&t, "/api/ping", &[], &ping("db1", &key)).0, 200);
    let (status, answer) = post(&t, "/api/ping", &[], &ping("db1", "guess"));
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some("Invalid server key"))
    );
    assert_eq!(
        post(&t, "/api/ping", &[], &ping("db2", &key)).0,
        403,
        "still closed"
    );
    assert!(t.service("web1", "disk").is_some());
    assert_eq!(t.counts().servers, 2);

    // A name taken, by an operator or a host, is a conflict and keeps its key.
    let (status, answer) = post(
        &t,
        "/ui/api/hosts",
        &[LOGIN, ACTION],
        &json!({"name": "web1", "key": "other"}),
    );
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("web1"),
        "{answer}"
    );
    assert_eq!(post(&t, "/api/ping", &[], &ping("web1", "chosen")).0, 200);
    assert_eq!(post(&t, "/api/ping", &[], &ping("web1", "other")).0, 403);
}

#[test]
fn adding_a_host_checks_its_name_and_key_and_the_action_rules() {
    let t = closed();
    for (body, want) in [
        (json!({}), "Data: \"name\" should be a string"),
        (json!({"name": 5}), "Data: \"name\" should be a string"),
        (
            json!({"name": ""}),
            "Data: \"name\" should be 1 to 64 characters long",
        ),
        (
            json!({"name": "x".repeat(65)}),
            "Data: \"name\" should be 1 to 64 characters long",
        ),
        (
            json!({"name": "web\u{7}1"}),
            "Data: \"name\" should not contain control or invisible formatting characters (found U+0007)",
        ),
        (
            json!({"name": "web1", "key": 7}),
            "Data: \"key\" should be a string",
        ),
        (
            json!({"name": "web1", "key": ""}),
            "Data: \"key\" should be 1 to 128 characters long",
        ),
    ] {
        let (status, answer) = post(&t, "/ui/api/hosts", &[LOGIN, ACTION], &body);
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some(want)),
            "{body}"
        );
    }
    let (status, _) = post(&t, "/ui/api/hosts", &[LOGIN, ACTION], &json!("web1"));
    assert_eq!(status, 400);
    // The page's rules for actions: login, the action header, same site.
    assert_eq!(
        post(&t, "/ui/api/hosts", &[ACTION], &json!({"name": "a"})).0,
        401
    );
    assert_eq!(
        post(&t, "/ui/api/hosts", &[LOGIN], &json!({"name": "a"})).0,
        403
    );
    let cross = [LOGIN, ACTION, ("Sec-Fetch-Site", "cross-site")];
    assert_eq!(
        post(&t, "/ui/api/hosts", &cross, &json!({"name": "a"})).0,
        403
    );
    let a = agent()
        .get(format!("{}/ui/api/hosts", t.url()))
        .header(LOGIN.0, LOGIN.1)
        .call()
        .unwrap();
    assert_eq!(a.status().as_u16(), 405);
    assert_eq!(t.counts().servers, 0);
    // Without a password the page is read-only: no hosts added either.
    let open = TestServer::start_manual_any(|_| {});
    assert_eq!(
        post(&open, "/ui/api/hosts", &[ACTION], &json!({"name": "a"})).0,
        403
    );
}

#[test]
fn register_from_limits_new_names_not_known_hosts() {
    let mut t = TestServer::start_manual_any(|_| {});
    assert_eq!(post(&t, "/api/ping", &[], &ping("old", "k")).0, 200);
    t.config.registration.from = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
    t.restart();
    // The test connects from 127.0.0.1, outside.
    let (status, answer) = post(&t, "/api/ping", &[], &ping("new", "k"));
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some("Unknown server"))
    );
    let sent = post(
        &t,
        "/api/set/service/status",
        &[],
        &report("old", "k", "cpu", "OK", ""),
    );
    assert_eq!(sent.0, 200, "a known host keeps reporting: {}", sent.1);
    t.config
        .registration
        .from
        .push("127.0.0.0/8".parse().unwrap());
    t.restart();
    assert_eq!(post(&t, "/api/ping", &[], &ping("new", "k")).0, 200);
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_client_is_recorded() {
    let t =
        TestServer::start_manual_any(|c| c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]);
    let xff = |ip: &'static str| [("X-Forwarded-For", ip)];
    assert_eq!(
        post(
            &t,
            "/api/ping",
            &xff("6.6.6.6, 198.51.100.7"),
            &ping("web1", "k")
        )
        .0,
        200
    );
    assert_eq!(ip_of(&t, "web1").as_deref(), Some("198.51.100.7"));
    // A status report, answered by the intake threads.
    let sent = post(
        &t,
        "/api/set/service/status",
        &xff("2001:db8::8"),
        &report("web1", "k", "cpu", "OK", ""),
    );
    assert_eq!(sent.0, 200);
    assert_eq!(ip_of(&t, "web1").as_deref(), Some("2001:db8::8"));
    // No header: the proxy itself.
    assert_eq!(post(&t, "/api/ping", &[], &ping("web1", "k")).0, 200);
    assert_eq!(ip_of(&t, "web1").as_deref(), Some("127.0.0.1"));
}

#[test]
fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let t = TestServer::start_manual_any(|c| {
        c.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        c.registration.from = vec!["198.51.100.0/24".parse().unwrap()];
    });
    let claim = [("X-Forwarded-For", "198.51.100.7")];
    assert_eq!(post(&t, "/api/ping", &claim, &ping("web1", "k")).0, 403);
    assert_eq!(
        post(
            &t,
            "/api/set/service/status",
            &claim,
            &report("web1", "k", "a", "OK", "")
        )
        .0,
        403
    );
    assert_eq!(t.counts().servers, 0);
}

#[test]
fn register_from_applies_to_the_client_behind_a_trusted_proxy() {
    let t = TestServer::start_manual_any(|c| {
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        c.registration.from = vec!["198.51.100.0/24".parse().unwrap()];
    });
    let from = |ip: &'static str| [("X-Forwarded-For", ip)];
    assert_eq!(
        post(&t, "/api/ping", &from("203.0.113.1"), &ping("a", "k")).0,
        403
    );
    assert_eq!(
        post(&t, "/api/ping", &[], &ping("a", "k")).0,
        403,
        "the proxy itself is outside"
    );
    assert_eq!(
        post(&t, "/api/ping", &from("198.51.100.7"), &ping("a", "k")).0,
        200
    );
    assert_eq!(ip_of(&t, "a").as_deref(), Some("198.51.100.7"));
    // Known now: it reports from anywhere.
    assert_eq!(
        post(&t, "/api/ping", &from("203.0.113.1"), &ping("a", "k")).0,
        200
    );
}
