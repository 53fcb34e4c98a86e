//! Test harness: a real server on 127.0.0.1 port 0 over a temporary SQLite
//! file, or (`*_any`, with `OVERC_TEST_POSTGRES`) a fresh PostgreSQL database.

#![allow(dead_code)] // not every test module uses every helper

pub mod backend;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use overc::{Clock, ManualClock, Server, ServerConfig};
use serde_json::Value;

pub struct TestServer {
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub config: ServerConfig,
    pub clock: Option<ManualClock>,
    /// The PostgreSQL database it runs on, dropped after the server stops.
    pub pg: Option<backend::PgDb>,
}

/// Mid-November 2026, a fixed start for manual clocks.
pub const T0: i64 = 1_795_000_000_000;

pub fn config_in(dir: &Path) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".into(),
        database: dir.join("overc.db"),
        base_dir: dir.to_path_buf(),
        ..ServerConfig::default()
    }
}

/// [`config_in`] on the backend the run names: a fresh PostgreSQL database
/// when `OVERC_TEST_POSTGRES` is set (keep the guard until the server
/// stopped), else the SQLite file in `dir`.
pub fn config_any(dir: &Path) -> (ServerConfig, Option<backend::PgDb>) {
    let mut config = config_in(dir);
    let pg = backend::PgDb::create();
    if let Some(pg) = &pg {
        pg.use_in(&mut config);
    }
    (config, pg)
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(|_| {})
    }

    pub fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(dir.path());
        adjust(&mut config);
        let server = Server::start(config.clone()).unwrap();
        TestServer {
            server: Some(server),
            dir,
            config,
            clock: None,
            pg: None,
        }
    }

    /// [`TestServer::start_manual`] on the backend the run names (see
    /// [`config_any`]).
    pub fn start_manual_any(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let (mut config, pg) = config_any(dir.path());
        adjust(&mut config);
        let clock = ManualClock::new(T0);
        let server =
            Server::start_with_clock(config.clone(), Arc::new(clock.clone()) as Arc<dyn Clock>)
                .unwrap();
        TestServer {
            server: Some(server),
            dir,
            config,
            clock: Some(clock),
            pg,
        }
    }

    /// A server whose time only moves when the test says so.
    pub fn start_manual(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(dir.path());
        adjust(&mut config);
        let clock = ManualClock::new(T0);
        let server =
            Server::start_with_clock(config.clone(), Arc::new(clock.clone()) as Arc<dyn Clock>)
                .unwrap();
        TestServer {
            server: Some(server),
            dir,
            config,
            clock: Some(clock),
            pg: None,
        }
    }

    /// A test server around a server started by the test itself.
    pub fn wrap(server: Server, dir: tempfile::TempDir) -> TestServer {
        TestServer {
            config: config_in(dir.path()),
            server: Some(server),
            dir,
            clock: None,
            pg: None,
        }
    }

    /// [`TestServer::wrap`] for a server on the database of `pg`.
    pub fn wrap_any(
        server: Server,
        dir: tempfile::TempDir,
        config: ServerConfig,
        pg: Option<backend::PgDb>,
    ) -> TestServer {
        TestServer {
            config,
            server: Some(server),
            dir,
            clock: None,
            pg,
        }
    }

    pub fn url(&self) -> String {
        self.server.as_ref().unwrap().url()
    }

    pub fn db_path(&self) -> PathBuf {
        self.config.database.clone()
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    /// Stops the server and starts a new one on the same database file.
    pub fn restart(&mut self) {
        self.restart_after(0);
    }

    /// Keeps the port the server got, so it comes back on the same address.
    pub fn pin_port(&mut self) {
        self.config.listen = self.server().addr().to_string();
    }

    /// Stops the server (until [`TestServer::start_again`]).
    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }

    /// Starts again after [`TestServer::stop`], on the same config and file.
    pub fn start_again(&mut self) {
        self.server = Some(Server::start(self.config.clone()).unwrap());
    }

    /// Stops the server, lets `down_ms` pass on the manual clock, starts again.
    pub fn restart_after(&mut self, down_ms: i64) {
        self.server.take().unwrap().stop();
        if down_ms > 0 {
            self.clock
                .as_ref()
                .expect("a manual clock")
                .advance(down_ms);
        }
        let server = match &self.clock {
            Some(c) => {
                Server::start_with_clock(self.config.clone(), Arc::new(c.clone()) as Arc<dyn Clock>)
            }
            None => Server::start(self.config.clone()),
        };
        self.server = Some(server.unwrap());
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        post_bytes(&self.url(), path, body.as_bytes())
    }

    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post(path, &body.to_string())
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        get(&self.url(), path)
    }

    /// GET with the page login of the tests (admin:secret).
    pub fn get_auth(&self, path: &str) -> (u16, Value) {
        let mut resp = agent()
            .get(format!("{}{path}", self.url()))
            .header("Authorization", "Basic YWRtaW46c2VjcmV0")
            .call()
            .unwrap();
        let code = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn status(&self) -> Value {
        if self.config.ui.password.is_some() {
            let (code, v) = self.get_auth("/ui/api/status/");
            assert_eq!(code, 200, "{v}");
            return v;
        }
        let (code, v) = self.get("/ui/api/status/");
        assert_eq!(code, 200, "{v}");
        v
    }

    /// The current state object of `server`/`service` from the read API.
    pub fn service(&self, server: &str, service: &str) -> Option<Value> {
        let status = self.status();
        let srv = status["servers"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == server)?
            .clone();
        srv["services"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == service)
            .cloned()
    }

    pub fn counts(&self) -> overc::store::TableCounts {
        self.server().app().store().counts().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

pub fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    ureq::Agent::new_with_config(config)
}

fn answer(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut resp = resp.unwrap();
    let code = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn post_bytes(url: &str, path: &str, body: &[u8]) -> (u16, Value) {
    answer(
        agent()
            .post(format!("{url}{path}"))
            .header("Content-Type", "application/json")
            .send(body),
    )
}

pub fn get(url: &str, path: &str) -> (u16, Value) {
    answer(agent().get(format!("{url}{path}")).call())
}

/// A status report body for `server` with one service.
pub fn report(server: &str, key: &str, service: &str, state: &str, info: &str) -> Value {
    serde_json::json!({
        "server": {"name": server, "key": key},
        "period": 60,
        "services": [{"name": service, "state": state, "info": info}],
    })
}

/// Waits for a logged line containing `text`; fails when the process ends first.
pub fn wait_for_line(log: &mpsc::Receiver<String>, text: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match log.recv_timeout(left) {
            Ok(line) if line.contains(text) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {text:?} logged ({e}): did the process end?"),
        }
    }
}

/// Sends `signal` (`HUP`, `TERM`…) to `child`.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}
