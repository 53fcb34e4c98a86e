//! The page, its actions and auth, and /metrics, over real HTTP.

use std::time::Duration;

use overc::config::{AlertPluginConfig, PluginKind};
use serde_json::{Value, json};

use crate::common::{TestServer, agent, report};

pub struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut resp = agent()
        .run(b.body(body.as_bytes().to_vec()).unwrap())
        .unwrap();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    Answer {
        status: resp.status().as_u16(),
        headers,
        body: resp.body_mut().read_to_string().unwrap_or_default(),
    }
}

/// `Authorization` for admin:secret.
const LOGIN: (&str, &str) = ("Authorization", "Basic YWRtaW46c2VjcmV0");
const ACTION: (&str, &str) = ("X-Overc-Action", "1");

fn with_login() -> TestServer {
    TestServer::start_manual(|c| {
        c.ui.username = Some("admin".into());
        c.ui.password = Some("secret".into());
    })
}

#[test]
fn a_password_protects_the_page_its_api_and_metrics_but_not_ingest() {
    let t = with_login();
    let url = t.url();
    for path in [
        "/",
        "/ui/app.js",
        "/ui/api/status/",
        "/ui/api/status/alerts/",
        "/metrics",
    ] {
        let a = request("GET", &format!("{url}{path}"), &[], "");
        assert_eq!(a.status, 401, "{path}");
        assert!(
            a.header("WWW-Authenticate")
                .unwrap()
                .starts_with("Basic realm=\"overc\""),
            "{path}"
        );
        let wrong = request(
            "GET",
            &format!("{url}{path}"),
            &[("Authorization", "Basic YWRtaW46c2VjcmVY")],
            "",
        );
        assert_eq!(wrong.status, 401, "{path}");
        let ok = request("GET", &format!("{url}{path}"), &[LOGIN], "");
        assert_eq!(ok.status, 200, "{path}");
    }
    assert_eq!(
        t.post_json("/api/set/service/status", &report("h", "k", "s", "OK", ""))
            .0,
        200,
        "ingest uses server keys only"
    );
    let page = request("GET", &format!("{url}/"), &[LOGIN], "");
    assert!(
        page.header("Content-Type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.body.contains("<script src=\"/ui/app.js\">"));
    let js = request("GET", &format!("{url}/ui/app.js"), &[LOGIN], "");
    assert!(
        js.header("Content-Type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.body.contains("refresh"));
}

/// Field report: a proxy that sent `Authorization: BASIC …` was refused.
/// RFC 7235 §2.1: the scheme is case-insensitive, and one or more spaces
/// separate it from the credentials.
#[test]
fn the_basic_scheme_is_accepted_in_any_case() {
    let t = with_login();
    let url = format!("{}/ui/api/status/", t.url());
    for value in [
        "BASIC YWRtaW46c2VjcmV0",
        "bAsIc YWRtaW46c2VjcmV0",
        "basic YWRtaW46c2VjcmV0",
        "Basic   YWRtaW46c2VjcmV0",
    ] {
        let a = request("GET", &url, &[("Authorization", value)], "");
        assert_eq!(a.status, 200, "{value:?}: {}", a.body);
    }
    for value in [
        "BASIC YWRtaW46c2VjcmVY",
        "Basicx YWRtaW46c2VjcmV0",
        "Bearer YWRtaW46c2VjcmV0",
        "BASIC",
    ] {
        let a = request("GET", &url, &[("Authorization", value)], "");
        assert_eq!(a.status, 401, "{value:?}");
    }
}

/// The page must work when opened as `http://user:pass@host/`: browsers
/// refuse `fetch()` of a URL with credentials in it, and a relative URL
/// resolved against such a page keeps them. So app.js builds every request
/// URL from `location.origin` (which never holds credentials) through one
/// helper. scripts/browser_test.py checks it in Chromium; this catches a
/// new `fetch` that bypasses the helper where no browser is installed.
#[test]
fn app_js_fetches_only_urls_built_from_the_origin() {
    let js = include_str!("../src/server/assets/app.js");
    let code = js.lines().filter(|l| !l.trim_start().starts_with("//"));
    let fetches: Vec<&str> = code
        .flat_map(|l| l.match_indices("fetch(").map(move |(i, _)| &l[i..]))
        .collect();
    assert_eq!(fetches.len(), 1, "one fetch() call, in api(): {fetches:?}");
    assert!(
        fetches[0].starts_with("fetch(sameOrigin("),
        "api() should fetch sameOrigin(path): {}",
        fetches[0]
    );
    assert!(
        js.contains("new URL(path, location.origin)"),
        "sameOrigin() builds on location.origin"
    );
}

/// The page reads the read API as it now is (scripts/browser_test.py checks
/// the rendered pages in Chromium; this catches a page left behind where no
/// browser is installed).
#[test]
fn app_js_follows_the_read_api_shapes() {
    let js = include_str!("../src/server/assets/app.js");
    // History folded with groups=yes; an open group is known by its lowest
    // id, which stays while new reports make the run longer.
    assert!(js.contains("/states?hours=${hours}&groups=yes"));
    assert!(js.contains("open.has(String(s.id))"));
    // A server's n_alerts is about the server itself: the card adds its services'.
    assert!(js.contains("srv.n_alerts + srv.services.reduce((n, svc) => n + svc.n_alerts, 0)"));
    assert!(!js.contains("${srv.n_alerts} alerts"));
    // An alert's state_info is the info string; its state is `state`.
    assert!(js.contains("firstLine(a.state_info)") && js.contains("a.state"));
    assert!(!js.contains("state_info.info") && !js.contains("state_info.state"));
    // The first report reads as such, not as "(?)" -> "WARN".
    assert!(js.contains("First report: ${first[1]}"));
    assert_eq!(
        js.matches("esc(a.message)").count(),
        0,
        "every alert text through alertMessage()"
    );
}

#[test]
fn without_a_password_the_page_is_read_only() {
    let t = TestServer::start();
    assert_eq!(
        t.post_json("/api/set/service/status", &report("h", "k", "s", "OK", ""))
            .0,
        200
    );
    let url = t.url();
    assert_eq!(request("GET", &format!("{url}/"), &[], "").status, 200);
    assert_eq!(
        request("GET", &format!("{url}/ui/api/info"), &[], "").json()["actions"],
        false
    );
    for (method, path) in [
        ("DELETE", "/ui/api/item/server/1"),
        ("DELETE", "/ui/api/item/service/1"),
        ("POST", "/ui/api/item/server/1/title"),
        ("POST", "/ui/api/test-alert"),
    ] {
        let a = request(
            method,
            &format!("{url}{path}"),
            &[ACTION],
            r#"{"title": "x"}"#,
        );
        assert_eq!(a.status, 403, "{path}");
        let msg = a.json()["error"].as_str().unwrap().to_owned();
        assert!(msg.contains("read-only") && msg.contains("[ui]"), "{msg}");
    }
    assert!(t.service("h", "s").is_some());
}

#[test]
fn cross_site_actions_are_refused() {
    let t = with_login();
    assert_eq!(
        t.post_json("/api/set/service/status", &report("h", "k", "s", "OK", ""))
            .0,
        200
    );
    let url = t.url();
    let host = url.trim_start_matches("http://").to_owned();
    let path = format!("{url}/ui/api/item/service/1/title");
    let body = r#"{"title": "renamed"}"#;
    let refused: Vec<Vec<(&str, &str)>> = vec![
        vec![LOGIN],
        vec![LOGIN, ACTION, ("Sec-Fetch-Site", "cross-site")],
        vec![LOGIN, ACTION, ("Sec-Fetch-Site", "same-site")],
        vec![LOGIN, ACTION, ("Origin", "http://evil.example")],
    ];
    for headers in refused {
        let a = request("POST", &path, &headers, body);
        assert_eq!(a.status, 403, "{headers:?}");
    }
    assert_eq!(t.service("h", "s").unwrap()["title"], "s");
    let origin = format!("http://{host}");
    let a = request(
        "POST",
        &path,
        &[
            LOGIN,
            ACTION,
            ("Sec-Fetch-Site", "same-origin"),
            ("Origin", &origin),
        ],
        body,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(t.service("h", "s").unwrap()["title"], "renamed");
}

#[test]
fn rename_and_delete_are_reflected_in_the_api() {
    let t = with_login();
    let url = t.url();
    let mut body = report("h", "k", "s", "OK", "");
    body["services"] =
        json!([{"name": "s", "state": "OK"}, {"name": "gone", "state": "OK", "period": 1}]);
    assert_eq!(t.post_json("/api/set/service/status", &body).0, 200);
    let srv_id = t.status()["servers"][0]["id"].as_i64().unwrap();
    let gone_id = t.service("h", "gone").unwrap()["id"].as_i64().unwrap();

    let a = request(
        "POST",
        &format!("{url}/ui/api/item/server/{srv_id}/title"),
        &[LOGIN, ACTION],
        r#"{"title": "Web server 1"}"#,
    );
    assert_eq!((a.status, a.json()), (200, json!({"ok": 1})));
    assert_eq!(t.status()["servers"][0]["title"], "Web server 1");
    assert_eq!(t.status()["servers"][0]["name"], "h");
    let a = request(
        "POST",
        &format!("{url}/ui/api/item/server/{srv_id}/title"),
        &[LOGIN, ACTION],
        r#"{"title": ""}"#,
    );
    assert_eq!(a.status, 400);
    let a = request(
        "POST",
        &format!("{url}/ui/api/item/server/999/title"),
        &[LOGIN, ACTION],
        r#"{"title": "x"}"#,
    );
    assert_eq!(a.status, 404);

    let a = request(
        "DELETE",
        &format!("{url}/ui/api/item/service/{gone_id}"),
        &[LOGIN, ACTION],
        "",
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(t.service("h", "gone").is_none());
    assert_eq!(
        request(
            "DELETE",
            &format!("{url}/ui/api/item/service/{gone_id}"),
            &[LOGIN, ACTION],
            ""
        )
        .status,
        404
    );
    // A deleted service is no longer supervised: its deadline passes silently.
    t.clock.as_ref().unwrap().advance(5_000);
    t.server().app().supervise_now().unwrap();
    let (_, alerts) = t.get_auth("/ui/api/status/alerts/");
    assert!(
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["event"] != "offline"),
        "{alerts}"
    );

    let a = request(
        "DELETE",
        &format!("{url}/ui/api/item/server/{srv_id}"),
        &[LOGIN, ACTION],
        "",
    );
    assert_eq!(a.status, 200);
    assert_eq!(t.counts().servers, 0);
    assert_eq!(t.counts().services, 0);
    // The name is free again: the next request registers it with a new key.
    assert_eq!(
        t.post_json(
            "/api/ping",
            &json!({"server": {"name": "h", "key": "new-key"}})
        )
        .0,
        200
    );
    assert_eq!(
        t.post_json("/api/ping", &json!({"server": {"name": "h", "key": "k"}}))
            .0,
        403
    );
}

#[test]
fn test_alert_action_runs_the_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.log");
    let out_s = out.to_str().unwrap().to_owned();
    let t = TestServer::start_manual(|c| {
        c.ui.password = Some("secret".into());
        c.alert_plugins.push(AlertPluginConfig {
            name: "log".into(),
            kind: PluginKind::Command(vec![crate::supervision::plugin("record.sh"), out_s]),
            timeout: Duration::from_secs(10),
            policy: Default::default(),
        });
    });
    let a = request(
        "POST",
        &format!("{}/ui/api/test-alert", t.url()),
        &[LOGIN, ACTION],
        "{}",
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.json()["plugins"],
        json!([{"plugin": "log", "ok": true, "failure": null}])
    );
    assert!(crate::supervision::records(&out)[0].starts_with("overc: [overc/test] Test alert"));
}

#[test]
fn metrics_describe_the_known_data() {
    let t = TestServer::start_manual(|_| {});
    let body = json!({"server": {"name": "web\"1", "key": "k"}, "period": 60, "services": [
        {"name": "load", "state": "WARN", "info": "LOAD WARNING | load1=3.5;3;6;0 load5=1.25;;;0 'dup'=1 'dup'=2 bad=x"},
        {"name": "disk", "state": "OK", "info": "DISK OK | /=2643MB;5948;5958;0;5968"},
        {"name": "late", "state": "FAIL", "info": "down", "period": 1},
    ]});
    assert_eq!(t.post_json("/api/set/service/status", &body).0, 200);
    t.clock.as_ref().unwrap().advance(2_000);
    t.server().app().supervise_now().unwrap();
    let (_, _) = t.get("/ui/api/status/");
    let a = request("GET", &format!("{}/metrics", t.url()), &[], "");
    assert_eq!(a.status, 200);
    assert!(
        a.header("Content-Type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let m = a.body;
    let has = |line: &str| assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    has(r#"overc_service_state{server="web\"1",service="load"} 1"#);
    has(r#"overc_service_state{server="web\"1",service="disk"} 0"#);
    has(r#"overc_service_state{server="web\"1",service="late"} 2"#);
    has(r#"overc_service_overdue{server="web\"1",service="late"} 1"#);
    has(r#"overc_service_overdue{server="web\"1",service="load"} 0"#);
    has(&format!(
        r#"overc_service_last_report_timestamp_seconds{{server="web\"1",service="load"}} {}"#,
        crate::common::T0 / 1000
    ));
    has(r#"overc_perfdata{server="web\"1",service="load",label="load1",uom=""} 3.5"#);
    has(r#"overc_perfdata{server="web\"1",service="load",label="load5",uom=""} 1.25"#);
    has(r#"overc_perfdata{server="web\"1",service="load",label="dup",uom=""} 1"#);
    has(r#"overc_perfdata{server="web\"1",service="disk",label="/",uom="MB"} 2643"#);
    assert!(!m.contains(r#"label="dup",uom=""} 2"#), "duplicate series");
    assert!(!m.contains(r#"label="bad""#));
    has("overc_reports_total 3");
    // load WARN, late FAIL (first reports not OK), late offline.
    has("overc_alerts_raised_total 3");
    // No alert plugins: the alerts are recorded, not delivered to anyone.
    has("overc_alerts_delivered_total 0");
    has(r#"overc_http_requests_total{endpoint="/api/set/service/status",code="200"} 1"#);
    has(r#"overc_http_requests_total{endpoint="/ui/api/status",code="200"} 1"#);
    for name in [
        "overc_service_state",
        "overc_perfdata",
        "overc_http_requests_total",
        "overc_alerts_raised_total",
    ] {
        assert!(m.contains(&format!("# TYPE {name} ")), "{name}");
    }
}

/// The page is for an operator on duty: problems first, an overdue service
/// never shown in its last state's colour, the rendering keyed by row
/// (scripts/browser_test.py checks the rendered order in Chromium; this
/// catches a page left behind where no browser is installed).
#[test]
fn app_js_puts_problems_first_and_overdue_apart() {
    let js = include_str!("../src/server/assets/app.js");
    // SPEC §5: FAIL, UNK, WARN, overdue, OK.
    assert!(js.contains("const RANK = { FAIL: 0, UNK: 1, WARN: 2, overdue: 3, OK: 4, none: 5 };"));
    // Overdue is decided before the state is looked at.
    let overdue = js.find("if (st.timed_out) return \"overdue\";").unwrap();
    let state = js
        .find("return st.state in RANK ? st.state : \"UNK\";")
        .unwrap();
    assert!(overdue < state);
    // Rows are kept by key and rebuilt only when their HTML changed.
    assert!(
        js.contains("class Keyed") && js.contains("if (!e || e.html !== it.html) build.push(it);")
    );
    // Filter, switch and sort live in the URL.
    for key in [
        "params.get(\"q\")",
        "params.get(\"problems\")",
        "params.get(\"sort\")",
        "history.replaceState",
    ] {
        assert!(js.contains(key), "{key}");
    }
    let css = include_str!("../src/server/assets/style.css");
    assert!(css.contains(".s-overdue {") && css.contains("dashed"));
}

/// Embedded, no build step, no CDN: the page works on an offline host.
#[test]
fn the_assets_load_nothing_from_elsewhere() {
    for (name, text) in [
        (
            "index.html",
            include_str!("../src/server/assets/index.html"),
        ),
        ("app.js", include_str!("../src/server/assets/app.js")),
        ("style.css", include_str!("../src/server/assets/style.css")),
    ] {
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for needle in ["http://", "https://", "@import", "url(", "//cdn"] {
            assert!(!code.contains(needle), "{name} has {needle:?}");
        }
    }
    let html = include_str!("../src/server/assets/index.html");
    assert!(html.contains("<html lang=\"en\">") && html.contains("name=\"viewport\""));
    assert!(html.contains("class=\"skip\"") && html.contains("href=\"#/silences\""));
}

/// One colour of style.css's light `:root`, as linear RGB.
fn css_colour(css: &str, var: &str) -> [f64; 3] {
    let at = css
        .find(&format!("{var}: #"))
        .unwrap_or_else(|| panic!("{var}"))
        + var.len()
        + 3;
    let hex = &css[at..at + 6];
    let channel = |i: usize| {
        let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    [channel(0), channel(2), channel(4)]
}

fn lab(rgb: [f64; 3]) -> [f64; 3] {
    let [r, g, b] = rgb;
    let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
    let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
    let f = |t: f64| {
        if t > 0.008856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    };
    [
        116.0 * f(y) - 16.0,
        500.0 * (f(x) - f(y)),
        200.0 * (f(y) - f(z)),
    ]
}

fn luminance(rgb: [f64; 3]) -> f64 {
    0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
}

/// The state colours are the Okabe-Ito palette; simulated for protanopia,
/// deuteranopia and tritanopia (Machado, Oliveira & Fernandes 2009,
/// severity 1.0, on linear RGB) every two states stay at least 15 apart
/// (CIE76 ΔE; 2.3 is a just-noticeable difference), and the black text on
/// each has at least the 4.5:1 contrast WCAG AA asks of small text. The
/// state is written as text too; colour only helps.
#[test]
fn state_colours_stay_apart_for_colour_blind_eyes() {
    let css = include_str!("../src/server/assets/style.css");
    let light = &css[css.find(":root {").unwrap()..css.find("@media").unwrap()];
    let dark = &css[css.find("@media (prefers-color-scheme: dark)").unwrap()..];
    let dark = &dark[..dark.find("\n}\n").unwrap()];
    let states = ["--ok", "--warn", "--fail", "--unk"];
    for s in states {
        assert!(
            !dark.contains(&format!("{s}:")),
            "dark mode keeps the checked {s}"
        );
    }
    let matrices: [(&str, [[f64; 3]; 3]); 4] = [
        (
            "normal",
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        ),
        (
            "protanopia",
            [
                [0.152286, 1.052583, -0.204868],
                [0.114503, 0.786281, 0.099216],
                [-0.003882, -0.048116, 1.051998],
            ],
        ),
        (
            "deuteranopia",
            [
                [0.367322, 0.860646, -0.227968],
                [0.280085, 0.672501, 0.047413],
                [-0.011820, 0.042940, 0.968881],
            ],
        ),
        (
            "tritanopia",
            [
                [1.255528, -0.076749, -0.178779],
                [-0.078411, 0.930809, 0.147602],
                [0.004733, 0.691367, 0.303900],
            ],
        ),
    ];
    for (vision, m) in matrices {
        let seen: Vec<[f64; 3]> = states
            .iter()
            .map(|s| {
                let c = css_colour(light, s);
                let sim =
                    |row: [f64; 3]| (row[0] * c[0] + row[1] * c[1] + row[2] * c[2]).clamp(0.0, 1.0);
                lab([sim(m[0]), sim(m[1]), sim(m[2])])
            })
            .collect();
        for i in 0..states.len() {
            for j in i + 1..states.len() {
                let d = seen[i]
                    .iter()
                    .zip(&seen[j])
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
                    .sqrt();
                assert!(
                    d >= 15.0,
                    "{vision}: {} and {} are {d:.1} apart",
                    states[i],
                    states[j]
                );
            }
        }
    }
    assert!(light.contains("--on-state: #000;"));
    for s in states {
        let contrast = (luminance(css_colour(light, s)) + 0.05) / 0.05;
        assert!(contrast >= 4.5, "black on {s}: {contrast:.1}:1");
    }
}
