//! The ingest ceiling: a tiny_http server with overc's worker-pool layout
//! that reads each body and answers `{"ok":1}` without validating or storing.
//! `scripts/bench-ingest.sh` compares overc-server against it.
//!
//! ```sh
//! cargo run --release --example bare_server -- 127.0.0.1:0 [WORKERS]
//! ```

use std::io::Read;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let workers: usize = std::env::args()
        .nth(2)
        .map(|w| w.parse())
        .transpose()?
        .unwrap_or(32);
    let server = Arc::new(tiny_http::Server::http(&addr)?);
    eprintln!("bare server listening on http://{}", server.server_addr());
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || {
                while let Ok(mut rq) = server.recv() {
                    let mut body = Vec::new();
                    let _ = rq.as_reader().take(1 << 20).read_to_end(&mut body);
                    let mut resp = tiny_http::Response::from_data(&b"{\"ok\":1}"[..]);
                    if let Ok(h) = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"application/json"[..],
                    ) {
                        resp.add_header(h);
                    }
                    let _ = rq.respond(resp);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
