//! Slow and numerous clients over real sockets: a request's head must
//! arrive within `client-timeout` in total, and connections beyond
//! `max-connections` are answered 503 at once instead of getting a thread.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::TestServer;

fn addr(server: &TestServer) -> String {
    server.url().trim_start_matches("http://").to_owned()
}

/// What the server sends until it closes (or `limit` passes).
fn read_all(stream: &mut TcpStream, limit: Duration) -> String {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A GET of the status page on a new connection: its status line.
fn status_line(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /ui/api/status/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    read_all(&mut s, Duration::from_secs(30))
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn a_client_dribbling_its_headers_is_cut_off_after_client_timeout_in_total() {
    let server = TestServer::start_with(|c| c.client_timeout = Duration::from_secs(1));
    let mut conn = TcpStream::connect(addr(&server)).unwrap();
    conn.write_all(b"POST /api/ping HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .unwrap();
    // One byte every 200 ms: each read of the server gets one well within
    // its per-read timeout, for as long as the client wants (here 8 s).
    let mut dribbler = conn.try_clone().unwrap();
    let dribbling = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(8) {
            if dribbler.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let start = Instant::now();
    let answer = read_all(&mut conn, Duration::from_secs(30));
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the connection stayed open {took:?} for a head that never ends"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    drop(conn);
    dribbling.join().unwrap();
    // Normal clients are served as before.
    assert!(status_line(&addr(&server)).contains(" 200 "));
}

#[test]
fn connections_over_max_connections_get_503_and_the_rest_are_served() {
    let server = TestServer::start_with(|c| {
        c.max_connections = 3;
        c.client_timeout = Duration::from_secs(60);
    });
    let addr = addr(&server);
    // Two clients that sent half a head hold two connections.
    let mut holders: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    // Below the limit a normal client is served.
    assert!(status_line(&addr).contains(" 200 "));
    // The third fills it. The accepting thread takes connections in order,
    // so the fourth is counted after the other three.
    let mut third = TcpStream::connect(&addr).unwrap();
    third.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    holders.push(third);
    let mut refused = TcpStream::connect(&addr).unwrap();
    let answer = read_all(&mut refused, Duration::from_secs(30));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(
        answer.contains(r#"{"error": "Too many connections"}"#),
        "{answer}"
    );
    // A connection that ends frees its place (the server notices the
    // close on its own thread, so ask until it has).
    drop(holders.pop());
    let start = Instant::now();
    loop {
        let line = status_line(&addr);
        if line.contains(" 200 ") {
            break;
        }
        assert!(line.contains(" 503 "), "{line}");
        assert!(start.elapsed() < Duration::from_secs(20), "no place freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Regression: a head that took two reads left the socket's timeout
/// shortened to what was left of it, and the same keep-alive connection's
/// next idle wait then ended in a 408 (overcli's monitor backed off).
#[test]
fn a_keep_alive_connection_after_a_slow_head_waits_its_full_idle_time() {
    let server = TestServer::start_with(|c| c.client_timeout = Duration::from_secs(3));
    let mut conn = TcpStream::connect(addr(&server)).unwrap();
    let get = b"GET /ui/api/status/ HTTP/1.1\r\nHost: t\r\n\r\n";
    conn.write_all(&get[..10]).unwrap();
    // More 2 s later, the rest just after: the third read waits with 1 s
    // of the head's 3 left.
    std::thread::sleep(Duration::from_secs(2));
    conn.write_all(&get[10..20]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    conn.write_all(&get[20..]).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
    let first = read_response(&mut reader);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Idle for 2 s (under client-timeout, over what was left of the head).
    std::thread::sleep(Duration::from_secs(2));
    conn.write_all(get).unwrap();
    let second = read_response(&mut reader);
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}

/// One response of a keep-alive connection: its head, then its body by
/// `Content-Length`.
fn read_response(r: &mut impl std::io::BufRead) -> String {
    let mut head = String::new();
    let mut len = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return head;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    head
}
