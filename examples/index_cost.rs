//! What a per-service history index costs SQLite, apart from everything
//! else overc does: inserts of history rows for random services (as
//! ingest sees them), committed in batches, with and without the index.
//!
//! ```sh
//! cargo run --release --example index_cost
//! ```
//!
//! The difference is almost all WAL traffic: each row lands in another leaf
//! of the index, and each leaf touched is written as a whole WAL frame (two
//! `pwrite`s and a checksum) at every commit that touches it.

use std::time::Instant;

use rusqlite::{Connection, params};

const SERVICES: i64 = 3840;
const ROWS: usize = 90_000;

fn open(path: &std::path::Path, index: bool) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    c.execute_batch(
        "CREATE TABLE states(id INTEGER PRIMARY KEY, service_id INTEGER NOT NULL,
                             rtime INTEGER NOT NULL, state TEXT NOT NULL, info TEXT NOT NULL);",
    )?;
    if index {
        c.execute_batch("CREATE INDEX states_by_service ON states(service_id);")?;
    }
    Ok(c)
}

/// Nanoseconds per row.
fn run(dir: &std::path::Path, index: bool, per_commit: usize) -> rusqlite::Result<f64> {
    let path = dir.join(format!("index-{index}-{per_commit}.db"));
    let mut c = open(&path, index)?;
    let mut x = 88_172_645_463_325_252u64;
    let mut service = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % SERVICES as u64) as i64 + 1
    };
    let t = Instant::now();
    for batch in 0..ROWS / per_commit {
        let tx = c.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO states(service_id, rtime, state, info) VALUES (?1, ?2, 'OK', ?3)",
            )?;
            for _ in 0..per_commit {
                st.execute(params![
                    service(),
                    batch as i64,
                    "load average: 0.12 | load=0.12"
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(t.elapsed().as_nanos() as f64 / ROWS as f64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    println!("{ROWS} history rows for {SERVICES} services, WAL, synchronous=NORMAL");
    for per_commit in [10, 30, 300, 3000] {
        let with = run(dir.path(), true, per_commit)?;
        let without = run(dir.path(), false, per_commit)?;
        println!(
            "{per_commit:>5} rows per commit: {:>6.2} us per row with the index, {:>5.2} without",
            with / 1000.0,
            without / 1000.0
        );
    }
    Ok(())
}
