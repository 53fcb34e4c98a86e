//! Hostile input against a running overc-server, concurrently with normal
//! traffic: malformed bodies, 10,000-deep nesting, 50 MiB bodies, wrong
//! Content-Length, header floods and hundreds of idle connections. Prints the
//! normal clients' latency before and during the attack and the server's
//! resident memory, and fails if normal clients suffered or the server died.
//!
//! ```sh
//! cargo run --release --example hostile -- --url http://127.0.0.1:5000 --pid PID [--seconds 10] [--idle 500]
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Opts {
    host: String,
    pid: u32,
    seconds: f64,
    idle: usize,
}

fn parse() -> Result<Opts, lexopt::Error> {
    use lexopt::prelude::*;
    let mut o = Opts {
        host: "127.0.0.1:5000".into(),
        pid: 0,
        seconds: 10.0,
        idle: 500,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("url") => {
                o.host = p
                    .value()?
                    .string()?
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_owned()
            }
            Long("pid") => o.pid = p.value()?.parse()?,
            Long("seconds") => o.seconds = p.value()?.parse()?,
            Long("idle") => o.idle = p.value()?.parse()?,
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(o)
}

fn connect(host: &str) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(host)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    Ok(s)
}

/// Reads one HTTP response; returns its status.
fn answer(r: &mut BufReader<TcpStream>) -> std::io::Result<u16> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::other("closed"));
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut len = 0;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(status)
}

fn post(r: &mut BufReader<TcpStream>, host: &str, path: &str, body: &[u8]) -> std::io::Result<u16> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    r.get_mut().write_all(head.as_bytes())?;
    r.get_mut().write_all(body)?;
    answer(r)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

/// Normal clients: keep-alive status reports until `stop`; latencies in µs.
fn normal(host: String, id: usize, stop: Arc<AtomicBool>, bad: Arc<AtomicU64>) -> Vec<u64> {
    let mut lat = Vec::new();
    let mut conn = connect(&host).map(BufReader::new).ok();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let body = format!(
            r#"{{"server": {{"name": "normal-{id}", "key": "k"}}, "period": 60, "services": [{{"name": "s", "state": "OK", "info": "n{n}"}}]}}"#
        );
        n += 1;
        let Some(c) = conn.as_mut() else {
            bad.fetch_add(1, Ordering::Relaxed);
            conn = connect(&host).map(BufReader::new).ok();
            continue;
        };
        let t = Instant::now();
        match post(c, &host, "/api/set/service/status", body.as_bytes()) {
            Ok(200) => lat.push(t.elapsed().as_micros() as u64),
            _ => {
                bad.fetch_add(1, Ordering::Relaxed);
                conn = connect(&host).map(BufReader::new).ok();
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    lat
}

fn run_normal(o: &Opts, secs: f64, bad: &Arc<AtomicU64>) -> Vec<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (h, s, b) = (o.host.clone(), stop.clone(), bad.clone());
            std::thread::spawn(move || normal(h, i, s, b))
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap_or_default())
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = Arc::new(parse()?);
    let bad_normal = Arc::new(AtomicU64::new(0));
    let rss_before = rss_kib(o.pid);
    let mut base = run_normal(&o, 2.0, &bad_normal);
    println!(
        "baseline: {} normal reports, p50 {:.2} ms, p99 {:.2} ms, rss {} MiB",
        base.len(),
        pct(&mut base, 0.5),
        pct(&mut base, 0.99),
        rss_before / 1024
    );

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Mutex::new(std::collections::BTreeMap::<String, u64>::new()));
    let count = {
        let counts = counts.clone();
        move |k: String| {
            *counts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(k)
                .or_insert(0) += 1
        }
    };
    let mut attackers = Vec::new();
    // Malformed bodies on a keep-alive connection.
    {
        let (o, stop, count) = (o.clone(), stop.clone(), count.clone());
        attackers.push(std::thread::spawn(move || {
            let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
            let bodies: Vec<(&str, Vec<u8>)> = vec![
                ("not-json", b"hello, world".to_vec()),
                ("truncated", br#"{"server": {"name": "x", "key": "#.to_vec()),
                (
                    "invalid-utf8",
                    b"{\"server\": {\"name\": \"\xff\xfe\", \"key\": \"k\"}}".to_vec(),
                ),
                ("deep-nesting", deep.into_bytes()),
                (
                    "wrong-types",
                    br#"{"server": {"name": 1, "key": []}, "period": {}, "services": 7}"#.to_vec(),
                ),
            ];
            let mut conn = connect(&o.host).map(BufReader::new).ok();
            while !stop.load(Ordering::Relaxed) {
                for (what, body) in &bodies {
                    let Some(c) = conn.as_mut() else {
                        conn = connect(&o.host).map(BufReader::new).ok();
                        continue;
                    };
                    match post(c, &o.host, "/api/set/service/status", body) {
                        Ok(code) => count(format!("{what} -> {code}")),
                        Err(_) => {
                            count(format!("{what} -> connection error"));
                            conn = connect(&o.host).map(BufReader::new).ok();
                        }
                    }
                }
            }
        }));
    }
    // 50 MiB bodies: the answer must come from the header alone.
    {
        let (o, stop, count) = (o.clone(), stop.clone(), count.clone());
        attackers.push(std::thread::spawn(move || {
            let chunk = Arc::new(vec![b'x'; 1 << 20]);
            while !stop.load(Ordering::Relaxed) {
                let Ok(s) = connect(&o.host) else { continue };
                let mut r = BufReader::new(s.try_clone().expect("clone"));
                let head = format!(
                    "POST /api/ping HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                    50 << 20
                );
                let mut w = s;
                if w.write_all(head.as_bytes()).is_err() {
                    continue;
                }
                let chunk = chunk.clone();
                let sender = std::thread::spawn(move || {
                    for _ in 0..50 {
                        if w.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                });
                match answer(&mut r) {
                    Ok(code) => count(format!("50 MiB body -> {code}")),
                    Err(_) => count("50 MiB body -> connection error".into()),
                }
                let _ = sender.join();
                std::thread::sleep(Duration::from_millis(200));
            }
        }));
    }
    // A Content-Length larger than the body, then silence.
    for _ in 0..2 {
        let (o, stop, count) = (o.clone(), stop.clone(), count.clone());
        attackers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok(s) = connect(&o.host) else { continue };
                let mut r = BufReader::new(s);
                let _ = r.get_mut().write_all(b"POST /api/ping HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"server\":");
                match answer(&mut r) {
                    Ok(code) => count(format!("short body -> {code}")),
                    Err(_) => count("short body -> closed".into()),
                }
            }
        }));
    }
    // Header floods: a 1 MiB header line, and 10,000 headers.
    {
        let (o, stop, count) = (o.clone(), stop.clone(), count.clone());
        attackers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for (what, head) in [
                    (
                        "1 MiB header line",
                        format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20)),
                    ),
                    (
                        "10,000 headers",
                        format!("GET / HTTP/1.1\r\n{}\r\n", "X-H: v\r\n".repeat(10_000)),
                    ),
                ] {
                    let Ok(s) = connect(&o.host) else { continue };
                    let mut r = BufReader::new(s);
                    let _ = r.get_mut().write_all(head.as_bytes());
                    match answer(&mut r) {
                        Ok(code) => count(format!("{what} -> {code}")),
                        Err(_) => count(format!("{what} -> closed")),
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
    }
    // Idle connections held open (half a request line each).
    let mut idle = Vec::new();
    for _ in 0..o.idle {
        if let Ok(mut s) = connect(&o.host) {
            let _ = s.write_all(b"POST /api/pi");
            idle.push(s);
        }
    }
    count(format!("idle connections opened: {}", idle.len()));
    let rss_max = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, rss_max, pid) = (stop.clone(), rss_max.clone(), o.pid);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                rss_max.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut during = run_normal(&o, o.seconds, &bad_normal);
    stop.store(true, Ordering::Relaxed);
    drop(idle);
    for a in attackers {
        let _ = a.join();
    }
    let _ = sampler.join();
    for (k, v) in counts.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        println!("  {k}: {v}");
    }
    let (p50, p99) = (pct(&mut during, 0.5), pct(&mut during, 0.99));
    let rss_peak = rss_max.load(Ordering::Relaxed) / 1024;
    println!(
        "under attack: {} normal reports, p50 {p50:.2} ms, p99 {p99:.2} ms, non-200 or failed {}",
        during.len(),
        bad_normal.load(Ordering::Relaxed)
    );
    println!(
        "server rss: before {} MiB, peak during attack {rss_peak} MiB, after {} MiB",
        rss_before / 1024,
        rss_kib(o.pid) / 1024
    );
    let alive = connect(&o.host).map(BufReader::new).and_then(|mut c| {
        post(
            &mut c,
            &o.host,
            "/api/ping",
            br#"{"server": {"name": "after", "key": "k"}}"#,
        )
    });
    println!("server answers afterwards: {alive:?}");
    let mut failed = false;
    if bad_normal.load(Ordering::Relaxed) > 0 || during.is_empty() {
        println!("FAIL: normal clients got errors");
        failed = true;
    }
    if p99 > 100.0 {
        println!("FAIL: normal p99 {p99:.2} ms under attack");
        failed = true;
    }
    if rss_peak > 100 {
        println!("FAIL: memory grew to {rss_peak} MiB");
        failed = true;
    }
    if !matches!(alive, Ok(200)) {
        println!("FAIL: the server no longer answers");
        failed = true;
    }
    if failed {
        std::process::exit(1);
    }
    println!("hostile: ok");
    Ok(())
}
