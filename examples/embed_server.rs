//! Runs an overc server inside your own program, reports to it, reads the
//! state back through the store, and stops it.
//!
//! ```sh
//! cargo run --example embed_server
//! ```

use overc::{Client, Server, ServerConfig, ServerId, ServiceReport, State};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("overc-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        database: dir.join("overc.db"),
        ..ServerConfig::default()
    };
    let server = Server::start(config)?;
    println!("embedded overc server on {}", server.url());

    let client = Client::new(&server.url(), ServerId::parse("embedded:key")?)?;
    client.report(
        30,
        vec![ServiceReport {
            name: "self".into(),
            state: State::Warn,
            info: "just started".into(),
            period: None,
            retries: None,
        }],
    )?;
    let status = server.engine().status(overc::store::StatusFilter::All)?;
    for srv in status.iter().flat_map(|s| &s.servers) {
        for svc in &srv.services {
            let state = svc.state.as_ref().map(|s| s.state.as_str()).unwrap_or("-");
            println!("{} / {}: {state}", srv.name, svc.name);
        }
    }
    server.stop();
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
