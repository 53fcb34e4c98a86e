//! [`Client`]: pushes states and alerts to an overc server over HTTP(S).

use std::time::Duration;

use serde_json::Value;

use crate::basic_auth::split_credentials;
use crate::error::{Error, Result};
use crate::protocol::{AlertMessage, AlertReport, Ping, ServerId, ServiceReport, StatusReport};

/// A connection to an overc server on behalf of one host.
///
/// ```no_run
/// use overc::{Client, ServerId, ServiceReport, State};
///
/// let id = ServerId::parse("web1.example.com:secret")?;
/// let client = Client::new("http://127.0.0.1:5000", id)?;
/// client.report(60, vec![ServiceReport {
///     name: "app".into(),
///     state: State::Ok,
///     info: "up 3 days".into(),
///     period: None,
/// }])?;
/// # Ok::<(), overc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
    server: ServerId,
}

impl Client {
    /// A client for the server at `url`; `user:password@` in the URL becomes
    /// HTTP Basic auth. Every call times out after 30 s.
    pub fn new(url: &str, server: ServerId) -> Result<Client> {
        Self::with_timeout(url, server, Duration::from_secs(30))
    }

    /// Like [`Client::new`] with a timeout for each whole call.
    pub fn with_timeout(url: &str, server: ServerId, timeout: Duration) -> Result<Client> {
        let url = url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::Config(format!(
                "server URL should start with http:// or https://, got {url:?}"
            )));
        }
        let (base, authorization) = split_credentials(url);
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("overc/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Client {
            agent: ureq::Agent::new_with_config(config),
            base: base.trim_end_matches('/').to_owned(),
            authorization,
            server,
        })
    }

    /// The server's URL without the `user:password@` it may have been given
    /// with: safe to log.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The host this client speaks for.
    pub fn server_id(&self) -> &ServerId {
        &self.server
    }

    /// Checks the server is there and the key is accepted (registers on first use).
    pub fn ping(&self) -> Result<()> {
        self.post(
            "/api/ping",
            &Ping {
                server: self.server.clone(),
            }
            .to_json(),
        )
        .map(|_| ())
    }

    /// Sends service states; `period` is the default for services without one.
    pub fn report(&self, period: u32, services: Vec<ServiceReport>) -> Result<()> {
        let report = StatusReport {
            server: self.server.clone(),
            period,
            services,
        };
        self.post("/api/set/service/status", &report.to_json())
            .map(|_| ())
    }

    /// Sends alerts.
    pub fn alerts(&self, alerts: Vec<AlertMessage>) -> Result<()> {
        let report = AlertReport {
            server: self.server.clone(),
            alerts,
        };
        self.post("/api/set/alerts", &report.to_json()).map(|_| ())
    }

    /// Sends one alert, optionally about a service.
    pub fn alert(&self, message: &str, service: Option<&str>) -> Result<()> {
        self.alerts(vec![AlertMessage {
            message: message.to_owned(),
            service: service.map(str::to_owned),
        }])
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json");
        if let Some(auth) = &self.authorization {
            req = req.header("Authorization", auth);
        }
        let mut resp = req
            .send(body.to_string().as_bytes())
            .map_err(|e| Error::Transport(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(1024 * 1024)
            .read_to_string()
            .map_err(|e| Error::Transport(format!("{url}: reading the answer: {e}")))?;
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status == 200 {
            return Ok(json);
        }
        let message = json
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(Error::Refused { status, message })
    }
}
