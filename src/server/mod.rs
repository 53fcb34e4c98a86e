//! The overc server: the HTTP API on tiny_http, embeddable in any program.
//!
//! Request handling is a plain function ([`App::handle`]) from a [`Request`]
//! to a [`Response`]; the tiny_http loop in `http.rs` only adapts sockets to it.

mod api;
mod auth;
mod http;
mod metrics;
mod ui;

pub use auth::ACTION_HEADER;
pub use metrics::escape_label;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::clock::{Clock, SystemClock};
use crate::config::ServerConfig;
use crate::engine::{DeliveryReport, NamedNotifier};
use crate::engine::{Engine, EngineSettings};
use crate::error::Result;
use crate::notification::Notifier;
use crate::store::{Storage, Store, StoreOptions, lock};

/// An HTTP request as the handler sees it, free of any socket.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// Path with the query string, e.g. `/ui/api/status/?x=1`.
    pub url: &'a str,
    /// Header names and values, in order received.
    pub headers: &'a [(String, String)],
    /// The body, already read and within the size limit.
    pub body: &'a [u8],
    /// The client's address, recorded on the server row.
    pub remote: &'a str,
}

impl Request<'_> {
    /// A header's value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP response from the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers, `Content-Type` included.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response whose body is already JSON text.
    pub fn json_text(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
        }
    }

    /// A JSON response.
    pub fn json(status: u16, value: &Value) -> Response {
        Response::json_text(status, value.to_string().into_bytes())
    }

    /// A JSON response serialized straight from a typed value.
    pub fn json_of<T: serde::Serialize>(status: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response::json_text(status, body),
            Err(e) => {
                log::error!("cannot serialize a response: {e}");
                Response::error(500, "Internal server error")
            }
        }
    }

    /// A JSON `{"error": message}` response.
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, &json!({ "error": message }))
    }

    /// The body parsed as JSON (`Null` when it is not JSON), for tests and tools.
    pub fn body_json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Counters exposed later through `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub http: HttpCounts,
}

/// The ingest endpoints, whose 200s are counted without a lock.
const INGEST: [&str; 3] = ["/api/ping", "/api/set/service/status", "/api/set/alerts"];

/// HTTP requests answered, by endpoint label and status code. Every request
/// counts: the ingest endpoints' 200s are atomics, as 32 workers taking one
/// lock for each request queued behind each other; the rest is a map.
#[derive(Debug, Default)]
pub(crate) struct HttpCounts {
    ingest_ok: [AtomicU64; INGEST.len()],
    other: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl HttpCounts {
    fn add(&self, endpoint: &'static str, status: u16) {
        match INGEST.iter().position(|e| *e == endpoint) {
            Some(i) if status == 200 => {
                self.ingest_ok[i].fetch_add(1, Ordering::Relaxed);
            }
            _ => *lock(&self.other).entry((endpoint, status)).or_insert(0) += 1,
        }
    }

    /// All counts, by endpoint and status.
    pub(crate) fn snapshot(&self) -> BTreeMap<(&'static str, u16), u64> {
        let mut all = lock(&self.other).clone();
        for (endpoint, n) in INGEST.iter().zip(&self.ingest_ok) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                all.insert((endpoint, 200), n);
            }
        }
        all
    }
}

/// The endpoint label of a path for the request counter (bounded set).
fn endpoint_label(path: &str) -> &'static str {
    let p = path.trim_end_matches('/');
    match p {
        "/api/ping" => "/api/ping",
        "/api/set/service/status" => "/api/set/service/status",
        "/api/set/alerts" => "/api/set/alerts",
        "/api/set/silence" => "/api/set/silence",
        "/api/set/unsilence" => "/api/set/unsilence",
        "/metrics" => "/metrics",
        "" | "/ui" => "/",
        _ if p.starts_with("/ui/api/status") => "/ui/api/status",
        _ if p.starts_with("/ui/api/silences") => "/ui/api/silences",
        _ if p.starts_with("/ui/api/") => "/ui/api/actions",
        _ if p.starts_with("/ui/") => "/ui/assets",
        _ => "other",
    }
}

/// The request handler: routes and validates requests, and translates them
/// into calls of the [`Engine`], which stores them and acts on them.
pub struct App {
    engine: Arc<Engine>,
    config: ServerConfig,
    counters: Counters,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("engine", &self.engine).finish()
    }
}

impl App {
    /// A handler over an open store; starts the engine (supervision and
    /// delivery) with the settings of `config`.
    ///
    /// # Errors
    /// When the engine cannot start (see [`Engine::start`]).
    pub fn new(
        config: ServerConfig,
        store: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> Result<App> {
        let engine = Engine::start(store, EngineSettings::from(&config), clock)?;
        Ok(App::with_engine(config, Arc::new(engine)))
    }

    /// A handler over a running engine.
    pub fn with_engine(config: ServerConfig, engine: Arc<Engine>) -> App {
        App {
            engine,
            config,
            counters: Counters::default(),
        }
    }

    /// The engine the handler drives.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Processes every deadline due at the clock's time, then delivers every
    /// alert due, and waits for both (see [`Engine::supervise_now`]).
    ///
    /// # Errors
    /// When storage failed during either step.
    pub fn supervise_now(&self) -> Result<(usize, DeliveryReport)> {
        self.engine.supervise_now()
    }

    /// The storage the engine writes to.
    pub fn store(&self) -> &dyn Storage {
        self.engine.storage()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Answers many POSTs to `/api/set/service/status` at once, as
    /// [`App::handle`] answers each: their reports share the store's wait
    /// for the disk. `answer` gets each request's position and response as
    /// soon as it is known (refusals first, then each report once durable).
    pub fn handle_statuses(
        &self,
        requests: &[Request<'_>],
        mut answer: impl FnMut(usize, Response),
    ) {
        api::statuses(self, requests, |i, response| {
            if let Some(req) = requests.get(i) {
                self.answered(req, "/api/set/service/status", &response);
            }
            answer(i, response);
        });
    }

    /// Counts an answer for `/metrics` and logs it.
    fn answered(&self, req: &Request<'_>, endpoint: &'static str, response: &Response) {
        self.counters.http.add(endpoint, response.status);
        log::debug!(
            "{} {} {} from {} -> {}",
            req.method,
            req.url,
            req.body.len(),
            req.remote,
            response.status
        );
    }

    /// Answers one request. Never panics on client input; a storage problem
    /// is a 503 and an unexpected one a 500 whose details go to the log only.
    pub fn handle(&self, req: &Request<'_>) -> Response {
        let path = req.url.split('?').next().unwrap_or("");
        let page = path == "/" || path == "/metrics" || path.starts_with("/ui/") || path == "/ui";
        let response = if path.starts_with("/api/") {
            api::route(self, req, path)
        } else if !page {
            Response::error(404, "Not found")
        } else if let Some(refused) = auth::require_login(req, &self.config.ui) {
            refused
        } else if path == "/metrics" {
            if req.method != "GET" {
                api::method_not_allowed("GET")
            } else {
                match metrics::render(self) {
                    Ok(text) => Response {
                        status: 200,
                        headers: vec![(
                            "Content-Type".into(),
                            "text/plain; version=0.0.4; charset=utf-8".into(),
                        )],
                        body: text.into_bytes(),
                    },
                    Err(e) => api::error_response(e),
                }
            }
        } else {
            ui::route(self, req, path)
        };
        self.answered(req, endpoint_label(path), &response);
        response
    }
}

/// A running overc server: HTTP workers, the store's writer, and (later) the supervisor.
pub struct Server {
    app: Arc<App>,
    http: http::HttpServer,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr())
            .finish()
    }
}

impl Server {
    /// Opens the database and listens on `config.listen`.
    ///
    /// # Errors
    /// When the database cannot be opened or the address cannot be bound.
    pub fn start(config: ServerConfig) -> Result<Server> {
        Self::start_with_clock(config, Arc::new(SystemClock))
    }

    /// Like [`Server::start`] with an injected clock (tests drive time by hand).
    ///
    /// # Errors
    /// As [`Server::start`].
    pub fn start_with_clock(config: ServerConfig, clock: Arc<dyn Clock>) -> Result<Server> {
        Server::builder(config).clock(clock).start()
    }

    /// A server to start with more than a config: an injected clock,
    /// notifiers of the application's own.
    pub fn builder(config: ServerConfig) -> ServerBuilder {
        ServerBuilder {
            config,
            clock: Arc::new(SystemClock),
            notifiers: Vec::new(),
        }
    }

    fn start_built(b: ServerBuilder) -> Result<Server> {
        let ServerBuilder {
            config,
            clock,
            notifiers,
        } = b;
        let opts = StoreOptions {
            durability: config.durability,
            history_limit: config.history_limit,
            retention_days: config.retention_days,
            lock_timeout: config.lock_timeout,
            policy: config.policy.clone(),
            registration: config.registration.clone(),
            leader_timeout: Duration::from_secs(config.leader_timeout.into()),
            node: config.listen.clone(),
        };
        // Listen first: a busy port must not leave a new database behind.
        let listener = http::bind(&config.listen, config.client_timeout)?;
        let opts = StoreOptions {
            node: listener
                .local_addr()
                .map_or(opts.node.clone(), |a| a.to_string()),
            ..opts
        };
        let store: Arc<dyn Storage> = match &config.postgres {
            #[cfg(feature = "postgres")]
            Some(url) => Arc::new(crate::store::PgStore::open(
                url,
                &opts,
                clock.clone(),
                crate::store::PG_START_WAIT,
            )?),
            #[cfg(not(feature = "postgres"))]
            Some(url) => {
                return Err(crate::Error::Config(format!(
                    "database: {url}: PostgreSQL needs overc built with the feature `postgres`"
                )));
            }
            None => Arc::new(Store::open(&config.database, &opts, clock.clone())?),
        };
        let mut settings = EngineSettings::from(&config);
        settings.notifiers.extend(notifiers);
        let engine = Engine::start(store, settings, clock)?;
        let app = Arc::new(App::with_engine(config, Arc::new(engine)));
        if app.config.ui.password.is_none() {
            log::warn!(
                "no [ui] password is set: the page is read-only and open to anyone who can reach it"
            );
        }
        let http = http::HttpServer::start_here(app.clone(), listener)?;
        log::info!(
            "overc-server listening on http://{} with database {}",
            http.addr(),
            app.store().location()
        );
        Ok(Server { app, http })
    }

    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// The base URL, e.g. `http://127.0.0.1:5000`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The request handler.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// The engine: storage, supervision and delivery, for calls without HTTP.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.app.engine
    }

    /// Stops accepting, finishes in-flight requests, commits, and closes.
    pub fn stop(self) {
        self.http.stop();
        self.app.engine.stop();
        self.app.store().close();
        log::info!("overc-server stopped");
    }
}

/// Builds a [`Server`]: see [`Server::builder`].
pub struct ServerBuilder {
    config: ServerConfig,
    clock: Arc<dyn Clock>,
    notifiers: Vec<NamedNotifier>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .field("notifiers", &self.notifiers)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// The clock the server runs on (tests drive a [`crate::ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Adds a notifier beside the config's alert plugins, under `name`:
    /// it gets every alert under the same rules (at least once, in order,
    /// retried while it fails).
    pub fn notifier(mut self, name: &str, notifier: impl Notifier + 'static) -> Self {
        self.notifiers.push(NamedNotifier::new(name, notifier));
        self
    }

    /// Opens the database and listens on the config's address.
    ///
    /// # Errors
    /// As [`Server::start`].
    pub fn start(self) -> Result<Server> {
        Server::start_built(self)
    }
}

/// The soft limit on open files [`raise_open_files_limit`] aims for. Not the
/// hard limit itself: alert plugins inherit the limit, and some programs
/// close every possible descriptor at start, which takes long when the hard
/// limit is 2^20 or more, as in some containers.
pub const OPEN_FILES_WANTED: u64 = 65_536;

/// Raises this process's soft limit on open files towards its hard limit,
/// to at most [`OPEN_FILES_WANTED`], and returns the limit then in force.
///
/// Every client connection holds a socket (and tiny_http a thread), and the
/// usual soft limit of 1,024 refuses connections long before memory does;
/// the hard limit is what the administrator allows. For the server binary:
/// a program that embeds the server decides this for itself.
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let wanted = limit
        .maximum
        .map_or(OPEN_FILES_WANTED, |m| m.min(OPEN_FILES_WANTED));
    if limit.current.is_some_and(|c| c < wanted) {
        let raised = Rlimit {
            current: Some(wanted),
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            log::warn!("cannot raise the open files limit: {e}");
        }
    }
    getrlimit(Resource::Nofile).current
}
