//! # overc — push-based service monitoring
//!
//! Hosts run small check commands and push their results as JSON to an
//! overc server; the server notices state changes and services that stop
//! reporting, hands alerts to alert plugins, and shows everything. This
//! crate is the whole of it as a library; the `overc-server` and `overcli`
//! binaries are thin wrappers.
//!
//! ## Features
//!
//! | feature | what it adds | dependencies |
//! |---|---|---|
//! | (none) | the core: wire types and validation ([`StatusReport`]), [`State`], the perfdata parser ([`parse_perfdata`]), the Nagios plugin runner ([`run_plugin`]), the alert [`rules`], the [`deadlines`] heap, the monitor's [`schedule`], [`Notification`] and [`Notifier`], the [`Clock`] | serde, serde_json, log, rustix |
//! | `client` | `Client`, `overcli`'s monitor loop and config | ureq, rust-ini, shlex |
//! | `server` | `Server`, `Engine` (storage, supervision, delivery, without HTTP), the `Storage` trait and its SQLite backend, the webhook notifier | tiny-http-overc, rusqlite (bundled SQLite), sha2, ureq |
//! | `postgres` | `PgStore`: the `Storage` on PostgreSQL, for several servers sharing one database (`database = postgres://…`; implies `server`) | postgres (rust-postgres, which runs tokio inside), tokio-rustls (TLS to PostgreSQL over the rustls ureq builds) |
//!
//! All three are on by default; `default-features = false` keeps the core.
//!
//! ## Validate a report and read plugin output (core)
//!
//! ```
//! use overc::{State, StatusReport, parse_perfdata};
//!
//! let body = br#"{"server": {"name": "a", "key": "k"}, "period": "60",
//!                 "services": [{"name": "db", "state": "err"}]}"#;
//! let report = StatusReport::parse(body)?;
//! assert_eq!(report.services[0].state, State::Fail);
//! let err = StatusReport::parse(br#"{"server": {"name": "a", "key": 1}}"#).unwrap_err();
//! assert_eq!(err.to_string(), r#"Data: "server.key" should be a string"#);
//! assert_eq!(parse_perfdata("load1=0.5;4;8")[0].value, Some(0.5));
//! # Ok::<(), overc::Error>(())
//! ```
//!
//! ## Push a state (`client`)
//!
//! ```no_run
//! # #[cfg(feature = "client")]
//! # fn main() -> Result<(), overc::Error> {
//! use overc::{Client, ServerId, ServiceReport, State};
//!
//! let client = Client::new("http://127.0.0.1:5000", ServerId::parse("web1:secret")?)?;
//! client.report(60, vec![ServiceReport {
//!     name: "nginx".into(),
//!     state: State::Ok,
//!     info: "accepting connections".into(),
//!     ..ServiceReport::default()
//! }])?;
//! client.alert("disk replaced", Some("raid"))?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "client"))]
//! # fn main() {}
//! ```
//!
//! ## Embed the server (`server`)
//!
//! ```
//! # #[cfg(all(feature = "client", feature = "server"))]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use overc::{Client, Server, ServerConfig, ServerId};
//!
//! let dir = std::env::temp_dir().join(format!("overc-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let config = ServerConfig {
//!     listen: "127.0.0.1:0".into(),
//!     database: dir.join("overc.db"),
//!     ..ServerConfig::default()
//! };
//! let server = Server::start(config)?;
//! Client::new(&server.url(), ServerId::parse("web1:secret")?)?.ping()?;
//! server.stop();
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "client", feature = "server")))]
//! # fn main() {}
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

// The core: pure decisions and the plugin runner, on serde and log alone.
pub mod clock;
mod command;
pub mod deadlines;
mod error;
mod idmap;
mod notification;
pub mod perfdata;
mod plugin;
pub mod policy;
pub mod protocol;
pub mod rules;
pub mod schedule;
#[cfg(feature = "server")]
mod secret;
mod state;

// The shells: HTTP client, server, storage, supervision and delivery.
#[cfg(any(feature = "client", feature = "server"))]
mod basic_auth;
#[cfg(feature = "client")]
mod client;
#[cfg(any(feature = "client", feature = "server"))]
pub mod config;
#[cfg(feature = "server")]
mod delivery;
#[cfg(feature = "server")]
pub mod engine;
#[cfg(feature = "client")]
pub mod monitor;
#[cfg(feature = "server")]
pub mod server;
#[cfg(any(feature = "client", feature = "server"))]
mod signals;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
mod supervisor;
#[cfg(feature = "server")]
mod webhook;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use notification::{Notification, Notifier};
pub use perfdata::parse_perfdata;
pub use plugin::{PluginRun, run_plugin};
pub use protocol::{AlertMessage, ServerId, ServiceReport, StatusReport};
pub use state::State;

#[cfg(feature = "client")]
pub use client::Client;
#[cfg(any(feature = "client", feature = "server"))]
pub use config::{Durability, MonitorConfig, ServerConfig};
#[cfg(feature = "server")]
pub use engine::Engine;
#[cfg(feature = "server")]
pub use server::{App, Server, ServerBuilder};
#[cfg(any(feature = "client", feature = "server"))]
pub use signals::StopSignal;
#[cfg(feature = "server")]
pub use store::Store;

// Compiles the README's Rust examples as doctests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "client", feature = "server"))]
pub struct ReadmeDoctests;
