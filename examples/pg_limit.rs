//! PostgreSQL's own limit for overc's ingest writes, beside which the
//! figures of overc on PostgreSQL are read (scripts/bench-postgres.sh).
//!
//! N client threads each hand a report of 3 services to a writer and wait
//! for its commit, as N keep-alive HTTP clients do. Each of W writer
//! threads (one connection each, as one overc-server has one writer) takes
//! what arrived while it was busy, up to 512 reports, into one transaction
//! and answers after COMMIT: the group commit of overc's PostgreSQL backend.
//! It writes the rows overc writes for a report whose states did not change,
//! with the same statements, columns, indexes and foreign key: per service
//! one history row (`INSERT INTO states … RETURNING id`) and the service's
//! due time (`UPDATE services SET due`). It skips what overc reads and
//! checks first (the host's key, the service row `FOR UPDATE`, its newest
//! state), so this is an upper bound for overc on the same PostgreSQL.
//! Client `i` writes through writer `i mod W`, for hosts of its own in turn
//! (as examples/loadgen's connections do). Prints reports/s, rows/s,
//! commits/s and the latency of a report.
//!
//! ```sh
//! cargo run --release --example pg_limit -- --url postgres://USER:PASS@HOST/DB \
//!     [--connections 16] [--duration 10] [--warmup 2] [--writers 1] [--servers-per-connection 20]
//! ```
//! It makes its own tables (`pg_limit_services`, `pg_limit_states`) in DB,
//! dropping them first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postgres::{Client, NoTls};

/// Reports committed in one transaction at most (overc's `MAX_BATCH`).
const MAX_BATCH: usize = 512;
/// Services per report, as examples/loadgen sends.
const SERVICES: usize = 3;

struct Opts {
    url: String,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    writers: usize,
    servers: usize,
}

fn parse() -> Result<Opts, lexopt::Error> {
    use lexopt::prelude::*;
    let mut o = Opts {
        url: String::new(),
        connections: 16,
        duration: Duration::from_secs(10),
        warmup: Duration::ZERO,
        writers: 1,
        servers: 20,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("url") => o.url = p.value()?.string()?,
            Long("connections") | Short('c') => o.connections = p.value()?.parse()?,
            Long("duration") | Short('d') => {
                o.duration = Duration::from_secs_f64(p.value()?.parse()?)
            }
            Long("warmup") => o.warmup = Duration::from_secs_f64(p.value()?.parse()?),
            Long("writers") => o.writers = p.value()?.parse::<usize>()?.max(1),
            Long("servers-per-connection") => o.servers = p.value()?.parse::<usize>()?.max(1),
            _ => return Err(arg.unexpected()),
        }
    }
    if o.url.is_empty() {
        return Err("--url postgres://… is required".into());
    }
    Ok(o)
}

/// One report: its services' ids and its info text.
struct Job {
    services: [i64; SERVICES],
    info: String,
    reply: mpsc::SyncSender<()>,
}

fn millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The columns, indexes and foreign key of overc's `services` and `states`
/// that these writes touch (src/store/postgres/schema.rs).
const SCHEMA: &str = "
    DROP TABLE IF EXISTS pg_limit_states;
    DROP TABLE IF EXISTS pg_limit_services;
    CREATE TABLE pg_limit_services(
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL,
        period BIGINT,
        overdue BOOLEAN NOT NULL DEFAULT false,
        due BIGINT
    );
    CREATE INDEX pg_limit_services_due ON pg_limit_services(due)
        WHERE NOT overdue AND due IS NOT NULL;
    CREATE TABLE pg_limit_states(
        id BIGSERIAL PRIMARY KEY,
        service_id BIGINT NOT NULL REFERENCES pg_limit_services(id) ON DELETE CASCADE,
        rtime BIGINT NOT NULL,
        state TEXT NOT NULL,
        info TEXT NOT NULL
    );
    CREATE INDEX pg_limit_states_by_service ON pg_limit_states(service_id, id);";

/// One writer: group commit on its own connection until its clients are gone.
fn write(url: &str, jobs: mpsc::Receiver<Job>, commits: &AtomicU64) -> Result<(), postgres::Error> {
    let mut client = Client::connect(url, NoTls)?;
    let insert = client.prepare(
        "INSERT INTO pg_limit_states(service_id, rtime, state, info) VALUES ($1, $2, $3, $4)
         RETURNING id",
    )?;
    let update = client.prepare("UPDATE pg_limit_services SET due = $2 WHERE id = $1")?;
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let now = millis();
        let mut tx = client.transaction()?;
        for job in &batch {
            for id in job.services {
                tx.execute(&update, &[&id, &(now + 300_000)])?;
                tx.query_one(&insert, &[&id, &now, &"OK", &job.info])?;
            }
        }
        tx.commit()?;
        commits.fetch_add(1, Ordering::Relaxed);
        for job in batch {
            let _ = job.reply.send(());
        }
    }
    Ok(())
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = Arc::new(parse()?);
    let mut setup = Client::connect(&o.url, NoTls)?;
    setup.batch_execute(SCHEMA)?;
    setup.execute(
        "INSERT INTO pg_limit_services(name, period, due)
         SELECT 'h' || i, 300, 0 FROM generate_series(1, $1::bigint) i",
        &[&((o.connections * o.servers * SERVICES) as i64)],
    )?;
    let first_id: i64 = setup
        .query_one("SELECT min(id) FROM pg_limit_services", &[])?
        .get(0);

    let commits = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..o.writers {
        let (tx, rx) = mpsc::channel::<Job>();
        senders.push(tx);
        let (o, commits) = (o.clone(), commits.clone());
        writers.push(std::thread::spawn(move || write(&o.url, rx, &commits)));
    }
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let start = Instant::now();
    let measured_from = start + o.warmup;
    let end = measured_from + o.duration;
    let commits_at_start = Arc::new(AtomicU64::new(u64::MAX));
    let clients: Vec<_> = (0..o.connections)
        .map(|t| {
            let jobs = senders[t % senders.len()].clone();
            let (o, latencies, commits, at_start) = (
                o.clone(),
                latencies.clone(),
                commits.clone(),
                commits_at_start.clone(),
            );
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                let mut seq = 0usize;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    if t0 >= measured_from {
                        let _ = at_start.compare_exchange(
                            u64::MAX,
                            commits.load(Ordering::Relaxed),
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                    // This client's hosts in turn, as loadgen does.
                    let host = t * o.servers + seq % o.servers;
                    let base = first_id + (host * SERVICES) as i64;
                    let (reply, answer) = mpsc::sync_channel(1);
                    let job = Job {
                        services: [base, base + 1, base + 2],
                        info: format!("c{t} n{seq}"),
                        reply,
                    };
                    seq += 1;
                    if jobs.send(job).is_err() || answer.recv().is_err() {
                        break;
                    }
                    if t0 >= measured_from {
                        mine.push(t0.elapsed().as_micros() as u64);
                    }
                }
                latencies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(mine);
            })
        })
        .collect();
    drop(senders);
    for c in clients {
        let _ = c.join();
    }
    let elapsed = start.elapsed().saturating_sub(o.warmup).as_secs_f64();
    for w in writers {
        w.join().map_err(|_| "a writer panicked")??;
    }
    let at_start = commits_at_start.load(Ordering::Relaxed);
    let commits = commits
        .load(Ordering::Relaxed)
        .saturating_sub(if at_start == u64::MAX { 0 } else { at_start });
    let mut l = latencies.lock().unwrap_or_else(|e| e.into_inner());
    l.sort_unstable();
    let n = l.len() as f64;
    println!(
        "connections={} writers={} reports={} reports/s={:.0} rows/s={:.0} commits/s={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        o.connections,
        o.writers,
        l.len(),
        n / elapsed,
        n * (2 * SERVICES) as f64 / elapsed,
        commits as f64 / elapsed,
        pct(&l, 0.5),
        pct(&l, 0.99),
        l.last().copied().unwrap_or(0) as f64 / 1000.0,
    );
    Ok(())
}
