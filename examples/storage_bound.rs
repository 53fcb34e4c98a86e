//! Bounded storage: stores REPORTS single-service reports spread over 100
//! services with history-limit 1000 and checks that the database file stays
//! within history-limit × services × record size plus slack, and its redo
//! log within one lap (32 MiB) plus slack.
//!
//! ```sh
//! cargo run --release --example storage_bound [-- REPORTS]    # default 1,000,000
//! ```

use overc::store::Storage;
use std::sync::Arc;
use std::time::Instant;

use overc::protocol::{ServerId, ServiceReport, StatusReport};
use overc::store::StoreOptions;
use overc::{Durability, State, Store, SystemClock};

const SERVICES: u64 = 100;
const HISTORY_LIMIT: u32 = 1000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reports: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("overc.db");
    let opts = StoreOptions {
        durability: Durability::Process,
        history_limit: HISTORY_LIMIT,
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open(&db, &opts, Arc::new(SystemClock))?);
    let threads = 16;
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || -> overc::Result<()> {
                let mut i = t;
                while i < reports {
                    let s = i % SERVICES;
                    let report = StatusReport {
                        server: ServerId {
                            name: format!("host{}", s / 10),
                            key: "k".into(),
                        },
                        period: 60,
                        services: vec![ServiceReport {
                            name: format!("svc{}", s % 10),
                            // Steady state: no alerts, whose retention is a separate rule.
                            state: State::Ok,
                            info: format!("report {i} | value={}.5;10;20;0;100", i % 100),
                            period: None,
                            retries: None,
                        }],
                        retries: None,
                    };
                    store.report(report, "127.0.0.1")?;
                    i += threads;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "a writer thread panicked")??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // What the hourly maintenance does: prune to the limit, give pages back.
    store.prune()?;
    let counts = store.counts()?;
    store.close();
    let conn = rusqlite::Connection::open(&db)?;
    conn.execute_batch("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")?;
    let avg_row: f64 = conn.query_row(
        "SELECT AVG(LENGTH(info) + LENGTH(state) + 24) FROM states",
        [],
        |r| r.get(0),
    )?;
    drop(conn);
    let file = std::fs::metadata(&db)?.len();
    // The redo log beside it never shrinks, so its size is its high-water
    // mark: a 32 MiB lap, the 1 MiB it grows by, and the group that crosses.
    let redo = std::fs::metadata(dir.path().join("overc.db-redo"))?.len();
    let redo_bound: u64 = 34 << 20;
    let rows = u64::from(HISTORY_LIMIT) * SERVICES;
    // A row costs its payload plus B-tree cell and index overhead: allow 3x,
    // and 1 MiB for the schema, servers, services and alerts.
    let bound = (rows as f64 * avg_row * 3.0) as u64 + (1 << 20);
    println!(
        "{reports} reports in {elapsed:.1} s ({:.0}/s); history rows kept {} (limit {rows}); alerts {}",
        reports as f64 / elapsed,
        counts.states,
        counts.alerts
    );
    println!(
        "database file {:.1} MiB; bound {:.1} MiB (history-limit {HISTORY_LIMIT} x {SERVICES} services x {avg_row:.0} B x 3 + 1 MiB)",
        file as f64 / 1048576.0,
        bound as f64 / 1048576.0
    );
    println!(
        "redo log {:.1} MiB; bound {:.1} MiB",
        redo as f64 / 1048576.0,
        redo_bound as f64 / 1048576.0
    );
    if counts.states as u64 > rows || file > bound || redo > redo_bound {
        println!("FAIL: storage is not bounded");
        std::process::exit(1);
    }
    println!("storage_bound: ok");
    Ok(())
}
