//! Store-only ingest: N threads hand 3-service reports straight to the
//! group-commit writer (no HTTP), to separate storage cost from HTTP cost.
//!
//! ```sh
//! cargo run --release --example store_throughput -- [THREADS] [SECONDS]
//! ```

use overc::store::Storage;
use std::sync::Arc;
use std::time::{Duration, Instant};

use overc::protocol::{ServerId, ServiceReport, StatusReport};
use overc::store::StoreOptions;
use overc::{State, Store, SystemClock};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(64);
    let secs: f64 = std::env::args()
        .nth(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3.0);
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(
        &dir.path().join("overc.db"),
        &StoreOptions::default(),
        Arc::new(SystemClock),
    )?);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let services = ["cpu", "disk", "app"]
                        .iter()
                        .map(|s| ServiceReport {
                            name: (*s).into(),
                            state: State::Ok,
                            info: format!("c{t} n{n}"),
                            period: None,
                            retries: None,
                        })
                        .collect();
                    let report = StatusReport {
                        server: ServerId {
                            name: format!("h{t}-{}", n % 20),
                            key: "k".into(),
                        },
                        period: 300,
                        services,
                        retries: None,
                    };
                    store.report(report, "127.0.0.1").expect("report");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let el = started.elapsed().as_secs_f64();
    println!(
        "threads={threads} reports/s={:.0} commits={}",
        total as f64 / el,
        store.commit_count()
    );
    Ok(())
}
