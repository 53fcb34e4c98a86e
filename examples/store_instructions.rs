//! A fixed, single-threaded store workload whose instruction count does not
//! depend on the machine's speed: 20,000 three-service reports (by default)
//! in batches of ten, over 1,280 hosts, to a file store with its defaults.
//! Run it under callgrind to compare the writer's work between builds:
//!
//! ```sh
//! cargo build --release --example store_instructions
//! valgrind --tool=callgrind --separate-threads=yes \
//!     target/release/examples/store_instructions [REPORTS]
//! grep summary callgrind.out.*-02    # the writer thread
//! ```

use overc::store::Storage;
use std::sync::Arc;

use overc::protocol::{ServerId, ServiceReport, StatusReport};
use overc::store::StoreOptions;
use overc::{State, Store, SystemClock};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let dir = tempfile::tempdir()?;
    let store = Store::open(
        &dir.path().join("overc.db"),
        &StoreOptions::default(),
        Arc::new(SystemClock),
    )?;
    let mut sent = 0u64;
    while sent < n {
        let batch: Vec<(StatusReport, String)> = (sent..sent + 10)
            .map(|m| {
                let services = ["cpu", "disk", "app"]
                    .iter()
                    .map(|s| ServiceReport {
                        name: (*s).into(),
                        // Now and then a state change, so alerts are written too.
                        state: if m % 97 == 0 { State::Warn } else { State::Ok },
                        info: format!("load {m} ok"),
                        period: None,
                        retries: None,
                    })
                    .collect();
                let report = StatusReport {
                    server: ServerId {
                        name: format!("h-{}", m % 1280),
                        key: "k".into(),
                    },
                    period: 300,
                    services,
                    retries: None,
                };
                (report, "127.0.0.1".to_owned())
            })
            .collect();
        for result in store.report_many(batch) {
            result?;
        }
        sent += 10;
    }
    println!("reports={sent} commits={}", store.commit_count());
    Ok(())
}
