//! Load generator for overc's ingest: N keep-alive connections POST 3-service
//! status reports for many distinct servers for a bounded time, then print
//! throughput, latency and the answers by status code. Optionally logs every
//! acknowledged report (`SERVER<TAB>INFO`, the info being unique per report).
//!
//! ```sh
//! cargo run --release --example loadgen -- --url http://127.0.0.1:5000 \
//!     --connections 64 --duration 10 [--servers-per-connection 20] [--services 3]
//!     [--pause-ms 0] [--ack-log FILE] [--prefix load]
//! ```
//!
//! `--url` given several times (or as a comma-separated list) spreads the
//! connections over the servers, connection `i` to URL `i mod n`, as a load
//! balancer would; a connection that fails (its server died) is made again
//! to the next URL.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Opts {
    hosts: Vec<String>,
    connections: usize,
    duration: Duration,
    servers: usize,
    ack_log: Option<String>,
    prefix: String,
    services: usize,
    pause: Duration,
}

fn parse() -> Result<Opts, lexopt::Error> {
    use lexopt::prelude::*;
    let mut o = Opts {
        hosts: Vec::new(),
        connections: 16,
        duration: Duration::from_secs(10),
        servers: 20,
        ack_log: None,
        prefix: "load".into(),
        services: 3,
        pause: Duration::ZERO,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("url") => {
                let urls: String = p.value()?.string()?;
                for url in urls.split(',').filter(|u| !u.is_empty()) {
                    let host = url.trim_start_matches("http://").trim_end_matches('/');
                    o.hosts.push(host.to_owned());
                }
            }
            Long("connections") | Short('c') => o.connections = p.value()?.parse()?,
            Long("duration") | Short('d') => {
                o.duration = Duration::from_secs_f64(p.value()?.parse()?)
            }
            Long("servers-per-connection") => o.servers = p.value()?.parse()?,
            Long("ack-log") => o.ack_log = Some(p.value()?.string()?),
            Long("prefix") => o.prefix = p.value()?.string()?,
            Long("services") => o.services = p.value()?.parse()?,
            Long("pause-ms") => o.pause = Duration::from_millis(p.value()?.parse()?),
            _ => return Err(arg.unexpected()),
        }
    }
    if o.hosts.is_empty() {
        o.hosts.push("127.0.0.1:5000".into());
    }
    Ok(o)
}

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u64>,
    non200: u64,
    errors: u64,
    acks: Vec<String>,
    /// Answers by status code.
    codes: std::collections::BTreeMap<u16, u64>,
}

/// One request on a keep-alive connection; returns the status code.
fn post(conn: &mut BufReader<TcpStream>, host: &str, body: &str) -> std::io::Result<u16> {
    let head = format!(
        "POST /api/set/service/status HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let s = conn.get_mut();
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    read_answer(conn)
}

/// Reads one response; returns its status code.
fn read_answer(conn: &mut BufReader<TcpStream>) -> std::io::Result<u16> {
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body)?;
    Ok(status)
}

fn connect(host: &str) -> std::io::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect(host)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(BufReader::new(s))
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = Arc::new(parse()?);
    let all = Arc::new(Mutex::new(Stats::default()));
    // Connections are opened and warmed up with one request before the clock
    // starts, so connection set-up is not part of the figures.
    let barrier = Arc::new(std::sync::Barrier::new(o.connections + 1));
    let threads: Vec<_> = (0..o.connections)
        .map(|t| {
            let (o, all, barrier) = (o.clone(), all.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut st = Stats::default();
                // Which of the URLs this connection talks to.
                let mut at = t % o.hosts.len();
                let mut conn = connect(&o.hosts[at]).ok();
                if let Some(c) = conn.as_mut() {
                    let warm = format!(r#"{{"server": {{"name": "{}-{t}-warm", "key": "k{t}"}}}}"#, o.prefix);
                    let _ = c.get_mut().write_all(format!("POST /api/ping HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n{warm}", o.hosts[at], warm.len()).as_bytes());
                    let _ = read_answer(c);
                }
                barrier.wait();
                let deadline = Instant::now() + o.duration;
                let mut seq = 0u64;
                while Instant::now() < deadline {
                    let server = format!("{}-{t}-{}", o.prefix, seq as usize % o.servers);
                    let info = format!("c{t} n{seq}");
                    let mut services = String::new();
                    for i in 0..o.services {
                        let (name, state, extra) = match i {
                            0 => ("cpu".to_owned(), "OK", " | load=0.5;1;2;0"),
                            1 => ("disk".to_owned(), "OK", ""),
                            2 => ("app".to_owned(), "WARN", ""),
                            n => (format!("svc{n}"), "OK", ""),
                        };
                        if i > 0 {
                            services.push_str(", ");
                        }
                        services.push_str(&format!(r#"{{"name": "{name}", "state": "{state}", "info": "{info}{extra}"}}"#));
                    }
                    let body = format!(
                        r#"{{"server": {{"name": "{server}", "key": "k{t}"}}, "period": 300, "services": [{services}]}}"#
                    );
                    seq += 1;
                    if !o.pause.is_zero() {
                        std::thread::sleep(o.pause);
                    }
                    let Some(c) = conn.as_mut() else {
                        st.errors += 1;
                        std::thread::sleep(Duration::from_millis(50));
                        at = (at + 1) % o.hosts.len();
                        conn = connect(&o.hosts[at]).ok();
                        continue;
                    };
                    let t0 = Instant::now();
                    let answer = post(c, &o.hosts[at], &body);
                    if let Ok(code) = answer {
                        *st.codes.entry(code).or_default() += 1;
                    }
                    match answer {
                        Ok(200) => {
                            st.latencies_us.push(t0.elapsed().as_micros() as u64);
                            if o.ack_log.is_some() {
                                st.acks.push(format!("{server}\t{info}"));
                            }
                        }
                        Ok(_) => {
                            st.latencies_us.push(t0.elapsed().as_micros() as u64);
                            st.non200 += 1;
                        }
                        Err(_) => {
                            st.errors += 1;
                            // Its server may be gone: the next one, as a
                            // load balancer would.
                            at = (at + 1) % o.hosts.len();
                            conn = connect(&o.hosts[at]).ok();
                        }
                    }
                }
                let mut all = all.lock().unwrap_or_else(|e| e.into_inner());
                all.latencies_us.extend(st.latencies_us);
                all.non200 += st.non200;
                all.errors += st.errors;
                all.acks.extend(st.acks);
                for (code, n) in st.codes {
                    *all.codes.entry(code).or_default() += n;
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for t in threads {
        let _ = t.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut st = all.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = &o.ack_log {
        let mut w = BufWriter::new(std::fs::File::create(path)?);
        for a in &st.acks {
            writeln!(w, "{a}")?;
        }
    }
    st.latencies_us.sort_unstable();
    let n = st.latencies_us.len() as f64;
    let codes: Vec<String> = st.codes.iter().map(|(c, n)| format!("{c}:{n}")).collect();
    println!(
        "connections={} requests={} req/s={:.0} reports/s={:.0} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} non200={} errors={} codes={}",
        o.connections,
        st.latencies_us.len(),
        n / elapsed,
        o.services as f64 * (n - st.non200 as f64) / elapsed,
        pct(&st.latencies_us, 0.5),
        pct(&st.latencies_us, 0.9),
        pct(&st.latencies_us, 0.99),
        st.latencies_us.last().copied().unwrap_or(0) as f64 / 1000.0,
        st.non200,
        st.errors,
        codes.join(",")
    );
    Ok(())
}
