//! Overdue detection at scale: registers 100,000 services in a real SQLite
//! store, lets every one of them miss its deadline, and prints how late each
//! `plugin/offline` alert was and what each supervisor wake-up cost.
//!
//! ```sh
//! cargo run --release --example supervisor_bench [-- SERVICES]
//! ```

use overc::store::Storage;
use std::sync::Arc;
use std::time::{Duration, Instant};

use overc::engine::{Engine, EngineSettings};
use overc::protocol::{ServerId, ServiceReport, StatusReport};
use overc::store::StoreOptions;
use overc::{Clock, Durability, State, Store, SystemClock};

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let per_host = 1000.min(total);
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("overc.db");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let opts = StoreOptions {
        durability: Durability::Process,
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open(&db, &opts, clock.clone())?);

    let started = Instant::now();
    for host in 0..total.div_ceil(per_host) {
        let services = (0..per_host)
            .map(|i| ServiceReport {
                name: format!("svc{i}"),
                state: State::Ok,
                info: String::new(),
                // Periods of 20..30 s spread the deadlines over ten seconds.
                period: Some(20 + (i % 10) as u32),
                retries: None,
            })
            .collect();
        let report = StatusReport {
            server: ServerId {
                name: format!("host{host}"),
                key: "k".into(),
            },
            period: 20,
            services,
            retries: None,
        };
        store.report(report, "127.0.0.1")?;
    }
    println!(
        "registered {total} services in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let engine = Engine::start(store.clone(), EngineSettings::default(), clock.clone())?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let alerts = store.counts()?.alerts as usize;
        if alerts >= total || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let stats = engine.supervisor_stats();
    engine.stop();
    store.close();

    let conn = rusqlite::Connection::open(&db)?;
    let mut st = conn.prepare(
        "SELECT a.ctime - (st.rtime + s.period * 1000) FROM alerts a JOIN services s ON s.id = a.service_id
         JOIN states st ON st.id = a.state_id
         WHERE a.channel = 'plugin' AND a.event = 'offline'",
    )?;
    let mut delays: Vec<i64> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    delays.sort_unstable();
    println!("offline alerts: {} of {total}", delays.len());
    println!(
        "delay deadline -> alert committed: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        percentile(&delays, 0.5),
        percentile(&delays, 0.9),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or(0)
    );
    println!(
        "supervisor: {} wake-ups, {} deadlines fired, busy {:.1} ms per wake-up on average ({:.1} us per deadline), longest {:.1} ms",
        stats.wakeups,
        stats.fired,
        stats.busy_us as f64 / 1000.0 / stats.wakeups.max(1) as f64,
        stats.busy_us as f64 / stats.fired.max(1) as f64,
        stats.max_busy_us as f64 / 1000.0
    );
    Ok(())
}
