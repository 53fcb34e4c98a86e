//! Benchmarks of the hot library paths: `cargo bench`.

// bencher's macros generate undocumented public items.
#![allow(missing_docs)]

use std::sync::Arc;

use bencher::{Bencher, benchmark_group, benchmark_main};
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

fn validate_report(b: &mut Bencher) {
    b.bytes = REPORT.len() as u64;
    b.iter(|| {
        let body = parse_object(REPORT).unwrap();
        StatusReport::from_json(&body).unwrap()
    });
}

fn store_report_in_memory(b: &mut Bencher) {
    let store = Store::open_in_memory(&StoreOptions::default(), Arc::new(SystemClock)).unwrap();
    let report = StatusReport::from_json(&parse_object(REPORT).unwrap()).unwrap();
    b.iter(|| store.report(report.clone(), "127.0.0.1").unwrap());
}

/// One supervisor step at 100,000 services: 100 deadlines are due.
fn deadlines_pop_100_of_100k(b: &mut Bencher) {
    use overc::supervisor::Deadlines;
    let mut d = Deadlines::new();
    for id in 0..100_000 {
        d.set(id, 0, 1_000_000 + id);
    }
    let mut now = 1_000_000;
    b.iter(|| {
        now += 100;
        let due = d.pop_due(now);
        // Those services report again, a period later.
        for &(id, _) in &due {
            d.set(id, now, now + 100_000);
        }
        due.len()
    });
}

benchmark_group!(
    benches,
    validate_report,
    store_report_in_memory,
    deadlines_pop_100_of_100k
);
benchmark_main!(benches);
