//! Pushes one service state and one alert to an overc server with `overc::Client`.
//!
//! ```sh
//! cargo run --example report -- http://127.0.0.1:5000 web1:secret
//! ```

use overc::{Client, ServerId, ServiceReport, State};

fn main() -> Result<(), overc::Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:5000".into());
    let id = ServerId::parse(
        &args
            .next()
            .unwrap_or_else(|| "example-host:example-key".into()),
    )?;
    let client = Client::new(&url, id)?;
    client.report(
        60,
        vec![ServiceReport {
            name: "example".into(),
            state: State::Ok,
            info: "all good | load=0.42;1;2;0".into(),
            period: None,
            retries: None,
        }],
    )?;
    client.alert("the example ran", Some("example"))?;
    println!("reported to {url}");
    Ok(())
}
