//! A tiny HTTPS endpoint on 127.0.0.1 port 0 with a certificate of the test
//! CA (tests/tls, made by tests/tls/make.sh): it answers every request with
//! `{"pong": 1}`, enough for `Client` and `overcli`, and tells the test the
//! path of each request it answered.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The CA that signed the endpoint's certificate.
pub const CA_PEM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/ca.pem");

pub struct TlsEndpoint {
    pub url: String,
    /// The path of every request answered, in order.
    pub requests: Receiver<String>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TlsEndpoint {
    pub fn start() -> TlsEndpoint {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls");
        let certs = CertificateDer::pem_file_iter(format!("{dir}/server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(format!("{dir}/server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let (tx, requests) = channel();
        let thread = std::thread::spawn(move || {
            for tcp in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = tcp else { continue };
                // A client that refuses the certificate ends its connection
                // with an alert: nothing to answer, wait for the next one.
                let _ = answer(config.clone(), tcp, &tx);
            }
        });
        TlsEndpoint {
            url,
            requests,
            stop,
            thread: Some(thread),
        }
    }
}

fn answer(
    config: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    requests: &Sender<String>,
) -> std::io::Result<()> {
    // Bounds a stalled client, not a wait for something to happen.
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    let mut length = 0;
    let mut path = None;
    loop {
        let mut line = String::new();
        if tls.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if path.is_none() {
            path = line.split(' ').nth(1).map(str::to_owned);
        } else if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    tls.read_exact(&mut body)?;
    let _ = requests.send(path.unwrap_or_default());
    let answer = r#"{"pong": 1}"#;
    let tls = tls.get_mut();
    write!(
        tls,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    tls.flush()?;
    tls.conn.send_close_notify();
    tls.flush()
}

impl Drop for TlsEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("https://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
