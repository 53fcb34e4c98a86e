//! `overc::Client` against a real server, and its Basic auth header.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use overc::{Client, Error, ServerId, ServiceReport, State};

use crate::common::TestServer;

#[test]
fn client_pings_reports_and_alerts() {
    let t = TestServer::start();
    let client = Client::new(&t.url(), ServerId::parse("web1:s3cret").unwrap()).unwrap();
    client.ping().unwrap();
    client
        .report(
            30,
            vec![ServiceReport {
                name: "nginx".into(),
                state: State::Warn,
                info: "slow".into(),
                period: Some(10),
            }],
        )
        .unwrap();
    client.alert("disk replaced", Some("raid")).unwrap();
    let s = t.service("web1", "nginx").unwrap();
    assert_eq!(s["state"]["state"], "WARN");
    assert_eq!(s["period"], 10);
    assert!(t.service("web1", "raid").is_some());

    let intruder = Client::new(&t.url(), ServerId::parse("web1:guess").unwrap()).unwrap();
    match intruder.ping() {
        Err(Error::Refused {
            status: 403,
            message,
        }) => assert_eq!(message, "Invalid server key"),
        other => panic!("expected 403, got {other:?}"),
    }
}

#[test]
fn client_reports_unreachable_server_as_transport_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::new(
        &format!("http://127.0.0.1:{port}"),
        ServerId::parse("a:b").unwrap(),
    )
    .unwrap();
    let err = client.ping().unwrap_err();
    assert!(matches!(err, Error::Http { .. }), "{err:?}");
    assert!(err.to_string().starts_with("transport: "), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the ureq error is kept"
    );
    assert!(matches!(
        Client::new("ftp://x", ServerId::parse("a:b").unwrap()),
        Err(Error::Config(_))
    ));
}

#[test]
fn credentials_in_the_url_become_basic_auth() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let catcher = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(sock.try_clone().unwrap());
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            headers.push(line.trim().to_owned());
        }
        let mut sock = sock;
        sock.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"pong\": 1}",
        )
        .unwrap();
        headers
    });
    let client = Client::new(
        &format!("http://admin:p%40ss@127.0.0.1:{port}/"),
        ServerId::parse("a:b").unwrap(),
    )
    .unwrap();
    client.ping().unwrap();
    let headers = catcher.join().unwrap();
    assert!(headers[0].starts_with("POST /api/ping "), "{headers:?}");
    // base64("admin:p@ss")
    assert!(
        headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("authorization: Basic YWRtaW46cEBzcw==")),
        "{headers:?}"
    );
}
