//! `overc::Client` against a real server, and its Basic auth header.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;

use overc::{Client, Error, ServerId, ServiceReport, State};

use crate::common::TestServer;
use crate::common::tls::{CA_PEM, TlsEndpoint};

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
                retries: None,
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

/// A server whose certificate a private CA signed: refused with the bundled
/// roots, accepted once the client trusts the CA file.
#[test]
fn a_private_ca_file_makes_the_handshake_work() {
    let endpoint = TlsEndpoint::start();
    let id = ServerId::parse("web1:k").unwrap();
    match Client::new(&endpoint.url, id.clone()).unwrap().ping() {
        Err(e @ Error::Http { .. }) => assert!(e.to_string().contains("UnknownIssuer"), "{e}"),
        other => panic!("expected an unknown issuer, got {other:?}"),
    }
    let client = Client::new(&endpoint.url, id)
        .unwrap()
        .with_ca_file(Path::new(CA_PEM))
        .unwrap();
    client.ping().unwrap();
    assert_eq!(endpoint.requests.recv().unwrap(), "/api/ping");
}

#[test]
fn a_bad_ca_file_is_a_config_error_naming_it() {
    let id = ServerId::parse("web1:k").unwrap();
    let client = || Client::new("https://127.0.0.1:9", id.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    match client().with_ca_file(&missing) {
        Err(Error::Config(m)) => assert!(
            m.starts_with(&format!("{}: cannot read", missing.display())),
            "{m}"
        ),
        other => panic!("expected a config error, got {other:?}"),
    }
    // The server's key where its CA was meant: no certificate in it.
    let key = Path::new(CA_PEM).with_file_name("server.key");
    match client().with_ca_file(&key) {
        Err(Error::Config(m)) => assert!(
            m.starts_with(&format!("{}: no PEM certificate", key.display())),
            "{m}"
        ),
        other => panic!("expected a config error, got {other:?}"),
    }
    match client().with_ca_file(dir.path()) {
        Err(Error::Config(m)) => assert!(m.contains("cannot read"), "{m}"),
        other => panic!("a folder: expected a config error, got {other:?}"),
    }
}
