//! # overc — push-based service monitoring
//!
//! Hosts run small check commands and push their results as JSON to one
//! overc server; the server notices state changes and services that stop
//! reporting, and shows everything. This crate is the whole of it as a
//! library: the wire protocol and its validation, the SQLite store, the
//! HTTP server, and the client. The `overc-server` binary is a thin wrapper.
//!
//! ## Push a state
//!
//! ```no_run
//! use overc::{Client, ServerId, ServiceReport, State};
//!
//! let client = Client::new("http://127.0.0.1:5000", ServerId::parse("web1:secret")?)?;
//! client.report(60, vec![ServiceReport {
//!     name: "nginx".into(),
//!     state: State::Ok,
//!     info: "accepting connections".into(),
//!     period: None,
//! }])?;
//! client.alert("disk replaced", Some("raid"))?;
//! # Ok::<(), overc::Error>(())
//! ```
//!
//! ## Embed the server
//!
//! ```
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
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Validate a report without a server
//!
//! ```
//! use overc::protocol::StatusReport;
//!
//! let body = br#"{"server": {"name": "a", "key": "k"}, "period": "60",
//!                 "services": [{"name": "db", "state": "err"}]}"#;
//! let report = StatusReport::parse(body)?;
//! assert_eq!(report.services[0].state, overc::State::Fail);
//! let err = StatusReport::parse(br#"{"server": {"name": "a", "key": 1}}"#).unwrap_err();
//! assert_eq!(err.to_string(), r#"Data: "server.key" should be a string"#);
//! # Ok::<(), overc::Error>(())
//! ```

pub mod alerts;
mod basic_auth;
mod client;
pub mod clock;
pub mod command;
pub mod config;
mod error;
mod idmap;
pub mod monitor;
pub mod perfdata;
pub mod protocol;
pub mod rules;
mod secret;
pub mod server;
mod state;
pub mod store;
pub mod supervisor;

pub use client::Client;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Durability, MonitorConfig, ServerConfig};
pub use error::{Error, Result};
pub use protocol::{AlertMessage, ServerId, ServiceReport};
pub use server::{App, Server};
pub use state::State;
pub use store::Store;

// Compiles the README's Rust examples as doctests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
