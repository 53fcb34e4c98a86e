//! Benchmarks of the hot library paths: `cargo bench` (divan; one
//! benchmark: `cargo bench -- store_batch_of_100`).

// divan's attribute generates undocumented items.
#![allow(missing_docs)]

use overc::store::Storage;
use std::sync::Arc;

use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};
use overc::protocol::{StatusReport, parse_object};
use overc::store::StoreOptions;
use overc::{Store, SystemClock};

const REPORT: &[u8] = br#"{"server": {"name": "web1.example.com", "key": "0123456789abcdef"},
    "period": 60,
    "services": [
        {"name": "nginx", "state": "OK", "info": "HTTP OK: HTTP/1.1 200 OK - 612 bytes in 0.001 second response time |time=0.000815s;;;0.000000 size=612B;;;0"},
        {"name": "disk", "state": "warn", "info": "DISK WARNING - free space: / 3018 MB (18%); | /=13102MB;12822;14424;0;16027"},
        {"name": "load", "state": "OK", "info": "OK - load average: 0.12, 0.08, 0.05|load1=0.120;5.000;10.000;0;"}
    ]}"#;

fn main() {
    divan::main();
}

/// What the server does with a status report's body.
#[divan::bench]
fn validate_report(b: Bencher) {
    b.counter(BytesCount::of_slice(REPORT))
        .bench(|| StatusReport::parse(black_box(REPORT)).unwrap());
}

/// The general path, through a `serde_json::Value` (taken by bodies that
/// are not plain, and by every error).
#[divan::bench]
fn validate_report_general(b: Bencher) {
    b.counter(BytesCount::of_slice(REPORT)).bench(|| {
        let body = parse_object(black_box(REPORT)).unwrap();
        StatusReport::from_json(&body).unwrap()
    });
}

/// One report, one commit, to an in-memory store.
#[divan::bench]
fn store_report_in_memory(b: Bencher) {
    let store = Store::open_in_memory(&StoreOptions::default(), Arc::new(SystemClock)).unwrap();
    let report = StatusReport::from_json(&parse_object(REPORT).unwrap()).unwrap();
    b.with_inputs(|| report.clone())
        .bench_local_values(|r| store.report(r, "127.0.0.1").unwrap());
}

/// Applying a batch of 100 three-service reports to a real SQLite file
/// (durability = disk): they share commits through the group-commit writer.
#[divan::bench]
fn store_batch_of_100(b: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("bench.db"),
        &StoreOptions::default(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let report = StatusReport::from_json(&parse_object(REPORT).unwrap()).unwrap();
    // Register the 1,000 hosts first, so that what is timed is ingest for
    // known services, not registration.
    for first in (0..1000).step_by(100) {
        let batch: Vec<(StatusReport, String)> = (first..first + 100)
            .map(|i| {
                let mut r = report.clone();
                r.server.name = format!("web{i}");
                (r, "127.0.0.1".to_owned())
            })
            .collect();
        assert!(store.report_many(batch).into_iter().all(|r| r.is_ok()));
    }
    let mut n = 0u64;
    b.counter(ItemsCount::new(100u32))
        .with_inputs(|| {
            n += 100;
            (0..100)
                .map(|i| {
                    let mut r = report.clone();
                    r.server.name = format!("web{}", (n + i) % 1000);
                    (r, "127.0.0.1".to_owned())
                })
                .collect::<Vec<(StatusReport, String)>>()
        })
        .bench_local_values(|batch| {
            let results = store.report_many(batch);
            assert!(results.iter().all(|r| r.is_ok()));
        });
}

/// Parsing a plugin's output with long text and two perfdata blocks.
#[divan::bench]
fn perfdata_parse(b: Bencher) {
    let out = "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n\
               / 15272 MB (77%);\n/boot 68 MB (69%); | /boot=68MB;88;93;0;98\n\
               'home dir'=69357MB;253404;253409;0;253414 load=0.5;@1:3;~:5;0; t=U";
    b.counter(BytesCount::of_str(out))
        .bench(|| overc::perfdata::parse_output(black_box(out)));
}

/// One supervisor step at 100,000 services: 100 deadlines are due.
#[divan::bench]
fn deadlines_pop_100_of_100k(b: Bencher) {
    use overc::deadlines::Deadlines;
    let mut d = Deadlines::new();
    for id in 0..100_000 {
        d.set(id, 0, 1_000_000 + id);
    }
    let mut now = 1_000_000;
    b.bench_local(|| {
        now += 100;
        let due = d.pop_due(now);
        // Those services report again, a period later.
        for &(id, _) in &due {
            d.set(id, now, now + 100_000);
        }
        due.len()
    });
}
