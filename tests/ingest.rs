//! The ingest endpoints over real HTTP: every row of SPEC §1's tables.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::{Value, json};

use crate::common::{TestServer, post_bytes, report};

#[test]
fn ping_registers_and_answers_pong() {
    let t = TestServer::start();
    let (code, v) = t.post("/api/ping", r#"{"server": {"name": "h", "key": "k"}}"#);
    assert_eq!((code, v), (200, json!({"pong": 1})));
    assert_eq!(t.counts().servers, 1);
    let (code, v) = t.post("/api/ping", r#"{"server": {"name": "h", "key": "other"}}"#);
    assert_eq!((code, v), (403, json!({"error": "Invalid server key"})));
}

#[test]
fn status_report_is_stored_and_readable() {
    let t = TestServer::start();
    let (code, v) = t.post_json(
        "/api/set/service/status",
        &report("h", "k", "app", "OK", "fine"),
    );
    assert_eq!((code, v), (200, json!({"ok": 1})));
    let s = t.service("h", "app").unwrap();
    assert_eq!(s["state"]["state"], "OK");
    assert_eq!(s["state"]["info"], "fine");
    assert_eq!(s["period"], 60);
    assert_eq!(s["state"]["timed_out"], false);
}

#[test]
fn alerts_are_stored_with_api_channel() {
    let t = TestServer::start();
    let (code, v) = t.post(
        "/api/set/alerts",
        r#"{"server": {"name": "h", "key": "k"}, "alerts": [{"message": "m1"}, {"message": "m2", "service": "db"}]}"#,
    );
    assert_eq!((code, v), (200, json!({"ok": 1})));
    let (_, list) = t.get("/ui/api/status/alerts/");
    let alerts = list["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["message"], "m2");
    assert_eq!(alerts[0]["service"], "db");
    assert_eq!(alerts[0]["channel"], "api");
    assert_eq!(alerts[0]["event"], "alert");
    assert_eq!(alerts[0]["severity"], "FAIL");
    assert_eq!(alerts[1]["service"], Value::Null);
    // A service named only in an alert exists, without a period, never overdue.
    let db = t.service("h", "db").unwrap();
    assert_eq!(db["period"], Value::Null);
    assert_eq!(db["state"], Value::Null);
}

#[test]
fn bad_requests_name_the_field() {
    let t = TestServer::start();
    let cases: &[(&str, &str, &str)] = &[
        ("/api/ping", "{}", "Data: \"server\" key is missing"),
        (
            "/api/ping",
            r#"{"server": {"name": "h", "key": 5}}"#,
            "Data: \"server.key\" should be a string",
        ),
        (
            "/api/ping",
            r#"{"server": {"key": "k"}}"#,
            "Data: \"server.name\" key is missing",
        ),
        (
            "/api/set/service/status",
            r#"{"server": {"name": "h", "key": "k"}, "services": []}"#,
            "Data: \"period\" key is missing",
        ),
        (
            "/api/set/service/status",
            r#"{"server": {"name": "h", "key": "k"}, "period": 60, "services": {}}"#,
            "Data: \"services\" should be a list",
        ),
        (
            "/api/set/alerts",
            r#"{"server": {"name": "h", "key": "k"}, "alerts": [{"message": 1}]}"#,
            "Data: \"alerts[0].message\" should be a string",
        ),
    ];
    for (path, body, message) in cases {
        let (code, v) = t.post(path, body);
        assert_eq!(code, 400, "{body}");
        assert_eq!(v["error"], *message, "{body}");
    }
    assert_eq!(t.counts().servers, 0, "a refused request registers nothing");
}

#[test]
fn malformed_bodies_get_400_json() {
    let t = TestServer::start();
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_obj = format!(
        "{{\"server\": {}{}}}",
        "{\"a\":".repeat(5_000),
        "}".repeat(5_001)
    );
    let bodies: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"[1, 2, 3]".to_vec(),
        b"\"a string\"".to_vec(),
        b"{\"server\": {\"name\": \"h\", \"key\": \"k\"".to_vec(),
        b"{\"server\": {\"name\": \"\xff\xfe\", \"key\": \"k\"}}".to_vec(),
        deep.into_bytes(),
        deep_obj.into_bytes(),
        Vec::new(),
    ];
    for body in bodies {
        for path in ["/api/ping", "/api/set/service/status", "/api/set/alerts"] {
            let (code, v) = post_bytes(&t.url(), path, &body);
            assert_eq!(
                code,
                400,
                "{path} {:?}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            );
            assert!(v["error"].as_str().unwrap().starts_with("Data:"), "{v}");
        }
    }
    // The server still works afterwards.
    assert_eq!(
        t.post_json("/api/set/service/status", &report("h", "k", "s", "OK", ""))
            .0,
        200
    );
}

#[test]
fn unknown_path_is_404_and_wrong_method_405() {
    let t = TestServer::start();
    let (code, v) = t.post("/api/nope", "{}");
    assert_eq!(code, 404);
    assert!(v["error"].is_string());
    let (code, v) = t.get("/api/ping");
    assert_eq!(code, 405);
    assert!(v["error"].as_str().unwrap().contains("POST"));
    let (code, _) = t.get("/definitely/not/here");
    assert_eq!(code, 404);
    let (code, _) = t.post("/ui/api/status/", "{}");
    assert_eq!(code, 405);
}

#[test]
fn body_over_the_limit_is_413() {
    let t = TestServer::start_with(|c| c.max_body = 4096);
    let info = "x".repeat(5000);
    let (code, v) = t.post_json(
        "/api/set/service/status",
        &report("h", "k", "s", "OK", &info),
    );
    assert_eq!(code, 413);
    assert!(v["error"].as_str().unwrap().contains("4096"));
    assert_eq!(t.counts().servers, 0);

    // Chunked bodies have no Content-Length; the limit still holds.
    let mut sock = TcpStream::connect(t.server().addr()).unwrap();
    let chunk = "y".repeat(3000);
    let req = format!(
        "POST /api/ping HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len()
    );
    sock.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    sock.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn wrong_key_stores_nothing() {
    let t = TestServer::start();
    assert_eq!(
        t.post_json(
            "/api/set/service/status",
            &report("h", "right", "s", "OK", "first")
        )
        .0,
        200
    );
    let before = t.counts();
    let (code, v) = t.post_json(
        "/api/set/service/status",
        &report("h", "wrong", "s", "FAIL", "evil"),
    );
    assert_eq!((code, v), (403, json!({"error": "Invalid server key"})));
    // The right key is known to the writer now: keys near it are still refused.
    for near in ["righ", "rightt", "Right"] {
        let (code, _) = t.post_json(
            "/api/set/service/status",
            &report("h", near, "s", "FAIL", "evil"),
        );
        assert_eq!(code, 403, "key {near:?}");
    }
    let (code, _) = t.post(
        "/api/set/alerts",
        r#"{"server": {"name": "h", "key": "wrong"}, "alerts": [{"message": "evil", "service": "new"}]}"#,
    );
    assert_eq!(code, 403);
    assert_eq!(t.counts(), before);
    assert_eq!(t.service("h", "s").unwrap()["state"]["info"], "first");
    let (code, _) = t.post_json(
        "/api/set/service/status",
        &report("h", "right", "s", "OK", "second"),
    );
    assert_eq!(code, 200);
    // The key is stored hashed, never in plain text.
    let raw = std::fs::read(t.db_path()).unwrap_or_default();
    let wal = std::fs::read(t.db_path().with_extension("db-wal")).unwrap_or_default();
    for bytes in [raw, wal] {
        assert!(
            !bytes.windows(5).any(|w| w == b"right"),
            "plain key found in the database"
        );
    }
}

#[test]
fn validation_rules_apply_end_to_end() {
    let t = TestServer::start();
    let long = "é".repeat(10_000);
    let body = json!({
        "server": {"name": "h", "key": "k", "future": true},
        "period": "30",
        "extra": [1, 2],
        "services": [
            {"name": "lower", "state": "warn"},
            {"name": "err", "state": "ERR", "info": "broken"},
            {"name": "odd", "state": "BULLSHIT", "info": "what"},
            {"name": "long", "state": "OK", "info": long},
            {"name": "dup", "state": "OK", "info": "first"},
            {"name": "dup", "state": "FAIL", "info": "second"},
            {"name": "own", "state": "OK", "period": 5, "unknown": {}},
        ],
    });
    assert_eq!(t.post_json("/api/set/service/status", &body).0, 200);
    let get = |n: &str| t.service("h", n).unwrap();
    assert_eq!(get("lower")["state"]["state"], "WARN");
    assert_eq!(get("lower")["period"], 30);
    assert_eq!(get("err")["state"]["state"], "FAIL");
    assert_eq!(get("odd")["state"]["state"], "UNK");
    assert_eq!(
        get("odd")["state"]["info"],
        "what (sent unsupported state: \"BULLSHIT\")"
    );
    let info = get("long")["state"]["info"].as_str().unwrap().to_owned();
    assert!(
        info.len() <= 16 * 1024 && info.starts_with("éé") && info.contains("cut"),
        "{}",
        info.len()
    );
    assert_eq!(get("long")["state"]["state"], "OK");
    assert_eq!(get("dup")["state"]["state"], "FAIL");
    assert_eq!(get("dup")["state"]["info"], "second");
    assert_eq!(get("own")["period"], 5);
    let dup_id = get("dup")["id"].as_i64().unwrap();
    let (_, states) = t.get(&format!("/ui/api/status/service/{dup_id}/states"));
    assert_eq!(
        states["states"].as_array().unwrap().len(),
        2,
        "both duplicates are history"
    );
}

#[test]
fn limits_on_lists_and_names() {
    let t = TestServer::start();
    let services: Vec<Value> = (0..1000)
        .map(|i| json!({"name": format!("s{i}"), "state": "OK"}))
        .collect();
    let body = json!({"server": {"name": "h", "key": "k"}, "period": 60, "services": services});
    assert_eq!(t.post_json("/api/set/service/status", &body).0, 200);
    assert_eq!(t.counts().services, 1000);
    let services: Vec<Value> = (0..1001)
        .map(|i| json!({"name": format!("s{i}"), "state": "OK"}))
        .collect();
    let body = json!({"server": {"name": "h", "key": "k"}, "period": 60, "services": services});
    assert_eq!(t.post_json("/api/set/service/status", &body).0, 400);
    let (code, v) = t.post_json(
        "/api/ping",
        &json!({"server": {"name": "n".repeat(65), "key": "k"}}),
    );
    assert_eq!(code, 400);
    assert!(v["error"].as_str().unwrap().contains("server.name"));
    let (code, _) = t.post_json(
        "/api/ping",
        &json!({"server": {"name": "h2", "key": "k".repeat(129)}}),
    );
    assert_eq!(code, 400);
    let (code, _) = t.post_json(
        "/api/set/service/status",
        &json!({"server": {"name": "h", "key": "k"}, "period": 0, "services": []}),
    );
    assert_eq!(code, 400);
}

#[test]
fn unicode_names_and_infos_round_trip() {
    let t = TestServer::start();
    let body = json!({
        "server": {"name": "сервер-東京-🖥", "key": "ключ🔑"},
        "period": 60,
        "services": [{"name": "データベース", "state": "WARN", "info": "Ümlaut — \"quoted\" \\ back\nslash 🚀"}],
    });
    assert_eq!(t.post_json("/api/set/service/status", &body).0, 200);
    let s = t.service("сервер-東京-🖥", "データベース").unwrap();
    assert_eq!(s["state"]["info"], "Ümlaut — \"quoted\" \\ back\nslash 🚀");
    let alert = json!({"server": {"name": "сервер-東京-🖥", "key": "ключ🔑"}, "alerts": [{"message": "Пожар 🔥", "service": "データベース"}]});
    assert_eq!(t.post_json("/api/set/alerts", &alert).0, 200);
    let (_, list) = t.get("/ui/api/status/alerts/");
    assert_eq!(list["alerts"][0]["message"], "Пожар 🔥");
    let wrong =
        json!({"server": {"name": "сервер-東京-🖥", "key": "ключ"}, "period": 60, "services": []});
    assert_eq!(t.post_json("/api/set/service/status", &wrong).0, 403);
}

#[test]
fn data_survives_a_restart() {
    let mut t = TestServer::start();
    assert_eq!(
        t.post_json(
            "/api/set/service/status",
            &report("h", "k", "app", "WARN", "before")
        )
        .0,
        200
    );
    t.restart();
    let s = t.service("h", "app").unwrap();
    assert_eq!(s["state"]["state"], "WARN");
    assert_eq!(s["state"]["info"], "before");
    // The registered key still holds after the restart.
    assert_eq!(
        t.post_json(
            "/api/set/service/status",
            &report("h", "wrong", "app", "OK", "")
        )
        .0,
        403
    );
    assert_eq!(
        t.post_json(
            "/api/set/service/status",
            &report("h", "k", "app", "OK", "after")
        )
        .0,
        200
    );
    let (_, alerts) = t.get("/ui/api/status/alerts/");
    assert_eq!(
        alerts["alerts"].as_array().unwrap().len(),
        2,
        "WARN on first report, then WARN -> OK"
    );
}

#[test]
fn many_concurrent_clients_are_all_stored() {
    let t = TestServer::start();
    let url = t.url();
    let threads: Vec<_> = (0..32)
        .map(|c| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent = crate::common::agent();
                for i in 0..25 {
                    let body = report(
                        &format!("host{c}"),
                        "k",
                        "svc",
                        "OK",
                        &format!("report {i}"),
                    );
                    let mut resp = agent
                        .post(format!("{url}/api/set/service/status"))
                        .send(body.to_string().as_bytes())
                        .unwrap();
                    assert_eq!(
                        resp.status().as_u16(),
                        200,
                        "{}",
                        resp.body_mut().read_to_string().unwrap()
                    );
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let counts = t.counts();
    assert_eq!(counts.servers, 32);
    assert_eq!(counts.states, 32 * 25);
    for c in 0..32 {
        assert_eq!(
            t.service(&format!("host{c}"), "svc").unwrap()["state"]["info"],
            "report 24"
        );
    }
    let commits = t.server().app().store().commit_count();
    assert!(commits > 0 && commits <= 32 * 25 + 1, "{commits}");
}

#[test]
fn locked_database_answers_503_and_stores_nothing() {
    let t = TestServer::start_with(|c| c.lock_timeout = std::time::Duration::from_millis(100));
    assert_eq!(
        t.post_json(
            "/api/set/service/status",
            &report("h", "k", "s", "OK", "one")
        )
        .0,
        200
    );
    let before = t.counts();
    let blocker = rusqlite::Connection::open(t.db_path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE; INSERT INTO servers(name, title, key_salt, key_hash, first_seen, last_seen) VALUES ('x','x',x'00',x'00',0,0);").unwrap();
    let (code, v) = t.post_json(
        "/api/set/service/status",
        &report("h", "k", "s", "FAIL", "two"),
    );
    assert_eq!(code, 503);
    let msg = v["error"].as_str().unwrap();
    assert!(
        !msg.contains("SQL") && !msg.contains(".db"),
        "internals leaked: {msg}"
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(t.counts(), before, "nothing half-written");
    assert_eq!(t.service("h", "s").unwrap()["state"]["info"], "one");
    assert_eq!(
        t.post_json(
            "/api/set/service/status",
            &report("h", "k", "s", "FAIL", "three")
        )
        .0,
        200
    );
}

#[test]
fn a_stalled_client_cannot_pin_the_only_worker() {
    let t = TestServer::start_with(|c| {
        c.workers = 1;
        c.client_timeout = std::time::Duration::from_millis(300);
    });
    // Promises 2000 bytes of body and sends 10: the worker reading it must give up.
    let mut stalled = TcpStream::connect(t.server().addr()).unwrap();
    stalled
        .write_all(
            b"POST /api/ping HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n{\"server\":",
        )
        .unwrap();
    // An idle connection that never sends anything holds no worker either.
    let _idle = TcpStream::connect(t.server().addr()).unwrap();
    let (code, _) = t.post("/api/ping", r#"{"server": {"name": "h", "key": "k"}}"#);
    assert_eq!(code, 200);
    let mut answer = String::new();
    let _ = stalled.read_to_string(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
}

/// Regression: the listening socket carries the client timeout (so accepted
/// sockets inherit it), and tiny_http used to stop accepting for good when
/// accept() reported that timeout after a quiet period.
#[test]
fn accepting_continues_after_a_quiet_period() {
    let t = TestServer::start_with(|c| c.client_timeout = std::time::Duration::from_millis(100));
    assert_eq!(
        t.post("/api/ping", r#"{"server": {"name": "h", "key": "k"}}"#)
            .0,
        200
    );
    // The condition under test is time without connections, so time passes here.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        t.post("/api/ping", r#"{"server": {"name": "h", "key": "k"}}"#)
            .0,
        200
    );
}

/// Regression: the fsync thread looked for the WAL next to the configured
/// path, but SQLite puts it next to the file a symlink points to; every write
/// then answered 503.
#[test]
fn a_database_behind_a_symlink_works() {
    let real = tempfile::tempdir().unwrap();
    let links = tempfile::tempdir().unwrap();
    std::fs::File::create(real.path().join("overc.db")).unwrap();
    let db = links.path().join("overc.db");
    std::os::unix::fs::symlink(real.path().join("overc.db"), &db).unwrap();
    let t = TestServer::start_with(|c| c.database = db.clone());
    assert_eq!(
        t.post_json(
            "/api/set/service/status",
            &report("h", "k", "s", "OK", "via link")
        )
        .0,
        200
    );
    assert_eq!(t.service("h", "s").unwrap()["state"]["info"], "via link");
}

/// Regression: only each read had a timeout, so a client sending a byte now
/// and then held a worker for as long as it liked.
#[test]
fn a_dribbling_client_is_cut_off_at_the_client_timeout() {
    let t = TestServer::start_with(|c| {
        c.workers = 1;
        c.client_timeout = std::time::Duration::from_millis(300);
    });
    let addr = t.server().addr();
    let dribbler = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"POST /api/ping HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
            .unwrap();
        // A byte every 50 ms would take 100 s to finish the body; 2 s of it
        // is enough to show the worker is not held.
        for _ in 0..40 {
            if s.write_all(b" ").is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    let started = std::time::Instant::now();
    let (code, _) = t.post("/api/ping", r#"{"server": {"name": "h", "key": "k"}}"#);
    assert_eq!(code, 200);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    dribbler.join().unwrap();
}

/// One HTTP request as bytes, with a body when given.
fn request_bytes(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Reads one HTTP response: its status and body.
fn read_response(r: &mut impl std::io::BufRead) -> (u16, Vec<u8>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut length = 0;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).unwrap();
    (status, body)
}

/// Requests sent back to back on one connection, some answered by the
/// threads that take status reports in batches and some by the workers, get
/// their answers in the order they were sent.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let t = TestServer::start();
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for i in 0..40 {
        let (bytes, code) = match i % 5 {
            0 | 1 => {
                let body = report("h", "k", "s", "OK", &format!("n{i}")).to_string();
                (
                    request_bytes("POST", "/api/set/service/status", body.as_bytes()),
                    200,
                )
            }
            2 => (
                request_bytes("POST", "/api/set/service/status", b"not json"),
                400,
            ),
            3 => {
                let body = report("h", "wrong", "s", "OK", "x").to_string();
                (
                    request_bytes("POST", "/api/set/service/status", body.as_bytes()),
                    403,
                )
            }
            _ => (request_bytes("GET", "/ui/api/status", b""), 200),
        };
        wire.extend(bytes);
        expected.push(code);
    }
    let mut s = TcpStream::connect(t.server().addr()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    s.write_all(&wire).unwrap();
    let mut r = std::io::BufReader::new(s);
    let got: Vec<u16> = expected.iter().map(|_| read_response(&mut r).0).collect();
    assert_eq!(got, expected);
    assert_eq!(t.service("h", "s").unwrap()["state"]["info"], "n36");
}

/// A connection that sends (bad) reports and never reads the answers, with a
/// receive buffer small enough that the server's writes soon cannot go on.
/// Returns once the server has stopped taking its requests.
fn stalled_reader(addr: std::net::SocketAddr, name: &str) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType, ipproto, socket, sockopt};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, Some(ipproto::TCP)).unwrap();
    sockopt::set_socket_recv_buffer_size(&fd, 2048).unwrap();
    rustix::net::connect(&fd, &addr).unwrap();
    let mut s = TcpStream::from(fd);
    s.set_write_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    // Refused reports: answered by the same threads as stored ones, without
    // the tens of thousands of writes it takes to fill the buffers.
    let one = request_bytes("POST", "/api/set/service/status", name.as_bytes());
    for _ in 0..200_000 {
        if let Err(e) = s.write_all(&one) {
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{e}"
            );
            return s;
        }
    }
    panic!("the server kept taking requests whose answers were not read");
}

/// Clients that never read their answers hold at most a worker each: status
/// reports of everyone else are still stored and answered, and the page
/// still loads.
#[test]
fn clients_that_do_not_read_their_answers_hold_up_no_one_else() {
    let t = TestServer::start_with(|c| {
        c.workers = 8;
        // Long enough that nothing here is rescued by a timeout.
        c.client_timeout = std::time::Duration::from_secs(120);
    });
    let addr = t.server().addr();
    // More of them than threads taking requests from the queue.
    let stalled: Vec<TcpStream> = (0..6)
        .map(|i| std::thread::spawn(move || stalled_reader(addr, &format!("greedy{i}"))))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    for i in 0..20 {
        let (code, _) = t.post_json(
            "/api/set/service/status",
            &report("h", "k", "s", "OK", &format!("n{i}")),
        );
        assert_eq!(code, 200);
    }
    assert_eq!(t.service("h", "s").unwrap()["state"]["info"], "n19");
    drop(stalled);
}

/// A report too large for the threads that take reports in batches (its body
/// is not read with its headers) is answered by a worker, the same way.
#[test]
fn a_report_larger_than_what_is_read_ahead_is_stored_too() {
    let t = TestServer::start();
    let services: Vec<Value> = (0..12)
        .map(|i| json!({"name": format!("s{i}"), "state": "OK", "info": "x".repeat(2000)}))
        .collect();
    let body = json!({"server": {"name": "h", "key": "k"}, "period": 60, "services": services});
    assert!(body.to_string().len() > 16 * 1024);
    let (code, _) = t.post_json("/api/set/service/status", &body);
    assert_eq!(code, 200);
    assert_eq!(
        t.service("h", "s11").unwrap()["state"]["info"],
        "x".repeat(2000)
    );
    // The same report with one service's state misspelt: refused alike.
    let mut bad = body.clone();
    bad["services"][3]["state"] = json!(7);
    let (code, v) = t.post_json("/api/set/service/status", &bad);
    assert_eq!(code, 400, "{v}");
}

/// Regression: `host\u200b1` was registered beside `host1` and shown as it.
#[test]
fn names_with_control_or_invisible_characters_are_refused_and_texts_kept() {
    let t = TestServer::start();
    for bad in [
        "host\u{200B}1",
        "host\u{202E}1",
        "host\u{0}1",
        "host\u{85}1",
        "\u{FEFF}host1",
    ] {
        let (code, v) = t.post_json("/api/ping", &json!({"server": {"name": bad, "key": "k"}}));
        assert_eq!(code, 400, "{bad:?}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains("\"server.name\""), "{msg}");
        assert!(msg.contains("control or invisible"), "{msg}");
        let body = json!({"server": {"name": "h", "key": "k"}, "period": 60,
            "services": [{"name": "fine", "state": "OK"}, {"name": bad, "state": "OK"}]});
        let (code, v) = t.post_json("/api/set/service/status", &body);
        assert_eq!(code, 400, "{bad:?}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("\"services[1].name\""),
            "{v}"
        );
        let alert = json!({"server": {"name": "h", "key": "k"},
            "alerts": [{"message": "m", "service": bad}]});
        let (code, v) = t.post_json("/api/set/alerts", &alert);
        assert_eq!(code, 400, "{bad:?}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("\"alerts[0].service\""),
            "{v}"
        );
    }
    assert_eq!(
        t.counts().servers,
        0,
        "nothing of a refused request is stored"
    );
    // In texts they are kept as sent.
    let info = "out\u{0}put \u{200B}\u{1B}[1m";
    let body = report("h", "k", "s", "WARN", info);
    assert_eq!(t.post_json("/api/set/service/status", &body).0, 200);
    assert_eq!(t.service("h", "s").unwrap()["state"]["info"], info);
}

#[test]
fn posted_alerts_take_an_optional_severity() {
    let t = TestServer::start();
    let body = json!({"server": {"name": "h", "key": "k"}, "alerts": [
        {"message": "deploy started", "severity": "OK"},
        {"message": "disk 85%", "service": "disk", "severity": "warn"},
        {"message": "backup failed"},
        {"message": "who knows", "severity": "UNK"},
    ]});
    assert_eq!(
        t.post_json("/api/set/alerts", &body),
        (200, json!({"ok": 1}))
    );
    let (_, list) = t.get("/ui/api/status/alerts/");
    let got: Vec<(&str, &str)> = list["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["message"].as_str().unwrap(),
                a["severity"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("who knows", "UNK"),
            ("backup failed", "FAIL"),
            ("disk 85%", "WARN"),
            ("deploy started", "OK"),
        ]
    );
    // A severity it does not know refuses the whole request.
    let bad = json!({"server": {"name": "h", "key": "k"}, "alerts": [
        {"message": "first", "service": "new"}, {"message": "x", "severity": "CRITICAL"}]});
    let (code, v) = t.post_json("/api/set/alerts", &bad);
    assert_eq!(code, 400);
    assert_eq!(
        v["error"],
        "Data: \"alerts[1].severity\" should be one of \"OK\", \"WARN\", \"FAIL\", \"UNK\""
    );
    let (_, list) = t.get("/ui/api/status/alerts/");
    assert_eq!(list["alerts"].as_array().unwrap().len(), 4);
    assert!(t.service("h", "new").is_none(), "nothing stored");
}
