//! overc inside an application, without HTTP: the application reports the
//! states of its own jobs to the engine, which stores them, supervises their
//! deadlines and hands alerts to a Rust closure (and to any alert plugin
//! commands), under the same rules as the server.
//!
//!     cargo run --example embed_engine

use std::sync::Arc;
use std::time::Duration;

use overc::engine::{Engine, EngineSettings};
use overc::store::{StatusFilter, StoreOptions};
use overc::{Notification, ServerId, ServiceReport, State, StatusReport, Store, SystemClock};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("overc-engine-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let clock = Arc::new(SystemClock);
    let store = Arc::new(Store::open(
        &dir.join("overc.db"),
        &StoreOptions::default(),
        clock.clone(),
    )?);
    // Every alert reaches this closure; an `Err` would be retried later.
    let settings = EngineSettings::default().notifier("stdout", |n: &Notification| {
        println!("notified: {}", n.text().replace('\n', " | "));
        Ok(())
    });
    let engine = Engine::start(store, settings, clock)?;

    let job = |state: State, info: &str| -> Result<StatusReport, overc::Error> {
        Ok(StatusReport {
            server: ServerId::parse("billing:local")?,
            period: 60,
            services: vec![ServiceReport {
                name: "nightly-invoices".into(),
                state,
                info: info.into(),
                // Due again within 1 s: left alone, it goes overdue.
                period: Some(1),
                ..ServiceReport::default()
            }],
            retries: None,
        })
    };
    engine.report(job(State::Ok, "412 invoices sent")?, "in-process")?;
    engine.report(job(State::Fail, "SMTP refused")?, "in-process")?;
    // The job stops reporting: the supervisor notices within its deadline.
    std::thread::sleep(Duration::from_millis(2500));
    engine.supervise_now()?;

    let status = engine.status(StatusFilter::All)?.ok_or("no status")?;
    for srv in &status.servers {
        for svc in &srv.services {
            let state = svc.state.as_ref().map_or("-", |s| s.state.as_str());
            println!("{} / {}: {state}", srv.name, svc.name);
        }
    }
    engine.stop();
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
