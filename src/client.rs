//! [`Client`]: pushes states and alerts to an overc server over HTTP(S).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, parse_pem};

use crate::basic_auth::split_credentials;
use crate::error::{Error, Result};
use crate::protocol::{
    AlertMessage, AlertReport, HostSilence, HostUnsilence, Ping, ServerId, ServiceReport,
    StatusReport,
};

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
///     ..ServiceReport::default()
/// }])?;
/// # Ok::<(), overc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
    server: ServerId,
    timeout: Duration,
}

/// An agent that answers every status itself and gives up after `timeout`;
/// `roots` replaces the bundled Mozilla roots for HTTPS when given.
fn agent(timeout: Duration, roots: Option<RootCerts>) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("overc/", env!("CARGO_PKG_VERSION")));
    if let Some(roots) = roots {
        config = config.tls_config(TlsConfig::builder().root_certs(roots).build());
    }
    ureq::Agent::new_with_config(config.build())
}

/// The certificates of a PEM file's text, refused when there are none: a
/// CA file that trusts nothing would only fail later, at every handshake.
fn ca_certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>> {
    let mut certs = Vec::new();
    for item in parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => {
                // A certificate is a DER SEQUENCE; anything else in a
                // CERTIFICATE block is not one, whatever its base64 says.
                if cert.der().first() != Some(&0x30) {
                    return Err(Error::Config(format!(
                        "certificate {} is not an X.509 certificate",
                        certs.len() + 1
                    )));
                }
                certs.push(cert);
            }
            // Keys and other blocks are no CA; skipped as curl does.
            Ok(_) => {}
            Err(e) => return Err(Error::Config(format!("not valid PEM: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(Error::Config(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it; convert a DER file with \
             `openssl x509 -inform der -in FILE -out FILE.pem`"
                .into(),
        ));
    }
    Ok(certs)
}

impl Client {
    /// A client for the server at `url`; `user:password@` in the URL becomes
    /// HTTP Basic auth. Every call times out after 30 s.
    ///
    /// # Errors
    /// [`Error::Config`] when the URL is not `http://` or `https://`, or the CA file cannot be read.
    pub fn new(url: &str, server: ServerId) -> Result<Client> {
        Self::with_timeout(url, server, Duration::from_secs(30))
    }

    /// Like [`Client::new`] with a timeout for each whole call.
    ///
    /// # Errors
    /// As [`Client::new`].
    pub fn with_timeout(url: &str, server: ServerId, timeout: Duration) -> Result<Client> {
        let url = url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::Config(format!(
                "server URL should start with http:// or https://, got {url:?}"
            )));
        }
        let (base, authorization) = split_credentials(url);
        Ok(Client {
            agent: agent(timeout, None),
            base: base.trim_end_matches('/').to_owned(),
            authorization,
            server,
            timeout,
        })
    }

    /// Trusts the CA certificates of a PEM file for HTTPS instead of the
    /// bundled Mozilla roots: for a server whose certificate a private CA
    /// signed. Only these CAs are trusted afterwards, as with curl's `--cacert`.
    ///
    /// ```no_run
    /// use overc::{Client, ServerId};
    ///
    /// let client = Client::new("https://mon.example.com", ServerId::parse("web1:secret")?)?
    ///     .with_ca_file("/etc/overc/ca.pem".as_ref())?;
    /// client.ping()?;
    /// # Ok::<(), overc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the file, when it cannot be read or holds no
    /// PEM certificate.
    pub fn with_ca_file(self, path: &Path) -> Result<Client> {
        let named = |why: String| Error::Config(format!("{}: {why}", path.display()));
        let pem = std::fs::read(path).map_err(|e| named(format!("cannot read: {e}")))?;
        self.with_ca_pem(&pem).map_err(|e| match e {
            Error::Config(why) => named(why),
            other => other,
        })
    }

    /// The pure twin of [`Client::with_ca_file`]: the CA certificates as PEM text.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `pem` holds no valid PEM certificate.
    pub fn with_ca_pem(self, pem: &[u8]) -> Result<Client> {
        let roots = RootCerts::new_with_certs(&ca_certificates(pem)?);
        Ok(Client {
            agent: agent(self.timeout, Some(roots)),
            ..self
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
    ///
    /// # Errors
    /// [`Error::Refused`] when the server answers with an error (403: another key), [`Error::Http`] when it cannot be reached.
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
    ///
    /// # Errors
    /// As [`Client::ping`]; a 400 names the field the server refused.
    pub fn report(&self, period: u32, services: Vec<ServiceReport>) -> Result<()> {
        let report = StatusReport {
            server: self.server.clone(),
            period,
            services,
            retries: None,
        };
        self.post("/api/set/service/status", &report.to_json())
            .map(|_| ())
    }

    /// Sends alerts.
    ///
    /// # Errors
    /// As [`Client::ping`].
    pub fn alerts(&self, alerts: Vec<AlertMessage>) -> Result<()> {
        let report = AlertReport {
            server: self.server.clone(),
            alerts,
        };
        self.post("/api/set/alerts", &report.to_json()).map(|_| ())
    }

    /// Sends one alert, optionally about a service.
    ///
    /// # Errors
    /// As [`Client::ping`].
    pub fn alert(&self, message: &str, service: Option<&str>) -> Result<()> {
        self.alerts(vec![AlertMessage {
            message: message.to_owned(),
            service: service.map(str::to_owned),
            ..AlertMessage::default()
        }])
    }

    /// Silences this host's services (those matching `service`, a pattern
    /// with `*` and `?`; all when `None`) for `seconds` (1 to 604800), with
    /// a comment; returns the silence's id. Problems that start meanwhile
    /// are recorded but not notified; those still open when it ends are
    /// notified then.
    ///
    /// ```no_run
    /// use overc::{Client, ServerId};
    ///
    /// let client = Client::new("http://127.0.0.1:5000", ServerId::parse("web1:secret")?)?;
    /// let id = client.silence(15 * 60, None, "kernel update")?;
    /// // … reboot, and once back:
    /// client.unsilence(Some(id))?;
    /// # Ok::<(), overc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Client::ping`]; a 400 names the field the server refused.
    pub fn silence(&self, seconds: u32, service: Option<&str>, comment: &str) -> Result<i64> {
        let request = HostSilence {
            server: self.server.clone(),
            service: service.map(str::to_owned),
            duration: seconds,
            comment: comment.to_owned(),
        };
        let answer = self.post("/api/set/silence", &request.to_json())?;
        answer
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| Error::Refused {
                status: 200,
                message: "the answer carries no silence id".into(),
            })
    }

    /// Ends one of this host's silences, or all of them (`None`); returns
    /// the ids of those ended.
    ///
    /// # Errors
    /// As [`Client::ping`]; [`Error::Refused`] with 404 when `id` is not an
    /// active silence of this host.
    pub fn unsilence(&self, id: Option<i64>) -> Result<Vec<i64>> {
        let request = HostUnsilence {
            server: self.server.clone(),
            id,
        };
        let answer = self.post("/api/set/unsilence", &request.to_json())?;
        Ok(answer
            .get("ended")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default())
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
            .map_err(|e| Error::Http {
                url: url.clone(),
                source: Box::new(e),
            })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(1024 * 1024)
            .read_to_string()
            .map_err(|e| Error::Http {
                url: url.clone(),
                source: Box::new(e),
            })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let e = ca_certificates(b"").unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let key =
            b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        let e = ca_certificates(key).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = ca_certificates(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid PEM"), "{e}");
        let e =
            ca_certificates(b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n")
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("certificate 1 is not an X.509 certificate"),
            "{e}"
        );
    }

    #[test]
    fn every_certificate_of_a_bundle_is_trusted() {
        let ca = include_bytes!("../tests/tls/ca.pem");
        let server = include_bytes!("../tests/tls/server.pem");
        assert_eq!(ca_certificates(ca).unwrap().len(), 1);
        let bundle = [&ca[..], &server[..]].concat();
        assert_eq!(ca_certificates(&bundle).unwrap().len(), 2);
    }
}
