//! The ingest ceiling: a tiny_http server with overc-server's thread layout
//! that reads each body and answers `{"ok":1}` without validating or storing.
//! `scripts/bench-ingest.sh` compares overc-server against it.
//!
//! ```sh
//! cargo run --release --example bare_server -- 127.0.0.1:0 [WORKERS] [intake|pool]
//! ```
//!
//! `intake` (the default) is overc-server's layout: 4 threads take up to 16
//! requests at a time from tiny_http's queue and answer those whose body is
//! in memory with writes that cannot block; the rest goes to `WORKERS`
//! threads. `pool` is the layout overc-server had before: `WORKERS` threads
//! each taking one request at a time.

use std::io::Read;
use std::sync::{Arc, Mutex, mpsc};

const INTAKE_THREADS: usize = 4;
const BATCH: usize = 16;

fn answer() -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut resp = tiny_http::Response::from_data(b"{\"ok\":1}".to_vec());
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]) {
        resp.add_header(h);
    }
    resp
}

/// Reads the body and answers, blocking: a worker's job.
fn serve(mut rq: tiny_http::Request) {
    let mut body = Vec::new();
    let _ = rq.as_reader().take(1 << 20).read_to_end(&mut body);
    let _ = rq.respond(answer());
}

enum Slow {
    Serve(tiny_http::Request),
    Finish(tiny_http::Unsent),
}

/// A worker: serves what the intake threads hand over.
fn work(jobs: &Mutex<mpsc::Receiver<Slow>>) {
    loop {
        let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        match job {
            Ok(Slow::Serve(rq)) => serve(rq),
            Ok(Slow::Finish(rest)) => {
                let _ = rest.finish();
            }
            Err(_) => break,
        }
    }
}

/// An intake thread: takes up to `BATCH` requests at a time and answers
/// those whose body is in memory, as far as that cannot block.
fn take_requests(server: &tiny_http::Server, slow: &mpsc::Sender<Slow>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Ok(first) = server.recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match server.try_recv() {
                Ok(Some(rq)) => batch.push(rq),
                _ => break,
            }
        }
        for mut rq in batch.drain(..) {
            if !rq.body_ready() {
                let _ = slow.send(Slow::Serve(rq));
                continue;
            }
            let mut body = Vec::new();
            let _ = rq.as_reader().read_to_end(&mut body);
            if let Err(rest) = rq.respond_now(answer()) {
                let _ = slow.send(Slow::Finish(rest));
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let workers: usize = args.next().map(|w| w.parse()).transpose()?.unwrap_or(32);
    let intake = match args.next().as_deref() {
        None | Some("intake") => true,
        Some("pool") => false,
        Some(other) => return Err(format!("unknown layout {other}; use intake or pool").into()),
    };
    let server = Arc::new(tiny_http::Server::http(&addr)?);
    eprintln!("bare server listening on http://{}", server.server_addr());
    let mut threads = Vec::new();
    if !intake {
        for _ in 0..workers {
            let server = server.clone();
            threads.push(std::thread::spawn(move || {
                while let Ok(rq) = server.recv() {
                    serve(rq);
                }
            }));
        }
    } else {
        let (slow, jobs) = mpsc::channel::<Slow>();
        let jobs = Arc::new(Mutex::new(jobs));
        // Named as overc-server's are, so scripts/ingest-cost.sh can tell
        // the intake threads' CPU from the connection threads'.
        for _ in 0..workers {
            let jobs = jobs.clone();
            let spawn = std::thread::Builder::new().name("bare-worker".into());
            threads.push(spawn.spawn(move || work(&jobs))?);
        }
        for _ in 0..INTAKE_THREADS {
            let (server, slow) = (server.clone(), slow.clone());
            let spawn = std::thread::Builder::new().name("bare-intake".into());
            threads.push(spawn.spawn(move || take_requests(&server, &slow))?);
        }
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
