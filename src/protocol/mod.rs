//! Wire types of the OverC 1.0.9 protocol and their validation. No I/O.
//!
//! Parsing goes through [`serde_json::Value`] rather than derived
//! deserializers so that every error names the field the way the original
//! server did (`Data: "server.key" should be a string`) and unknown keys are
//! ignored. The one hot body, a status report, is first read without the
//! `Value` tree ([`StatusReport::parse`]); whatever that fast path does not
//! take goes the general way, so both give the same result for every body
//! (a property test holds them to it).

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::policy::retries_from_json;
use crate::state::State;

mod check;
mod fast;
mod silence;

use check::*;
pub use check::{cut_text, is_control_or_format, parse_object};
pub use silence::{HostSilence, HostUnsilence, MAX_COMMENT_CHARS, check_comment};

/// Longest accepted server or service name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest accepted server key, in characters.
pub const MAX_KEY_CHARS: usize = 128;
/// Largest accepted period in seconds (one year).
pub const MAX_PERIOD: u32 = 31_536_000;
/// Most services in one status report, and most alerts in one alert request.
pub const MAX_ITEMS: usize = 1000;
/// Longest `info` or alert message kept, in bytes; longer ones are cut.
pub const MAX_INFO_BYTES: usize = 16 * 1024;
/// Appended to a text that was cut at [`MAX_INFO_BYTES`].
pub const CUT_MARK: &str = "\n[cut: longer than 16 KiB]";

/// The identity a host sends with every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerId {
    /// The host's name, unique per overc server.
    pub name: String,
    /// The host's key, registered on first use.
    pub key: String,
}

/// One service's state inside a [`StatusReport`].
///
/// Build one with `..ServiceReport::default()`, so code keeps compiling as
/// fields are added:
/// `ServiceReport { name: "db".into(), state: State::Ok, ..ServiceReport::default() }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceReport {
    /// Service name, unique per host.
    pub name: String,
    /// The reported state.
    pub state: State,
    /// Free text, usually a plugin's output (may carry Nagios perfdata).
    pub info: String,
    /// Overrides the report's period for this service.
    pub period: Option<u32>,
    /// Non-OK reports in a row before a problem is hard (1 to 100, SPEC §9);
    /// overrides the report's and the server's.
    pub retries: Option<u8>,
}

/// Body of `/api/set/service/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// Who sends it.
    pub server: ServerId,
    /// Seconds until the next report is due, for services without their own.
    pub period: u32,
    /// The states, applied in order.
    pub services: Vec<ServiceReport>,
    /// `retries` for services without their own (SPEC §9).
    pub retries: Option<u8>,
}

/// One message inside an [`AlertReport`].
///
/// Build one with `..AlertMessage::default()` (severity FAIL), so code keeps
/// compiling as fields are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertMessage {
    /// The alert text.
    pub message: String,
    /// The service it concerns, if any (created if new, without a period).
    pub service: Option<String>,
    /// How bad it is: the optional `"severity"` of the wire form, FAIL
    /// when not given (every posted alert was FAIL in OverC 1.0.9).
    pub severity: State,
}

impl Default for AlertMessage {
    fn default() -> AlertMessage {
        AlertMessage {
            message: String::new(),
            service: None,
            severity: State::Fail,
        }
    }
}

/// Body of `/api/set/alerts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertReport {
    /// Who sends it.
    pub server: ServerId,
    /// The alerts, in order.
    pub alerts: Vec<AlertMessage>,
}

/// Body of `/api/ping`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// Who sends it.
    pub server: ServerId,
}

impl ServerId {
    /// Reads the `server` object of a request body.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field that breaks the protocol.
    pub fn from_json(body: &Map<String, Value>) -> Result<ServerId> {
        let server = object(get(body, "server", "server")?, "server")?;
        let name = name(get(server, "name", "server.name")?, "server.name")?;
        let key = check_key(string(get(server, "key", "server.key")?, "server.key")?)?;
        Ok(ServerId { name, key })
    }

    /// Parses `"name:key"` as given to `overcli -i`; the key may contain `:`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field that breaks the protocol (or saying the body is not a JSON object).
    pub fn parse(s: &str) -> Result<ServerId> {
        match s.split_once(':') {
            Some((name, key)) if !name.is_empty() && !key.is_empty() => Ok(ServerId {
                name: name.to_owned(),
                key: key.to_owned(),
            }),
            _ => Err(Error::Config(format!(
                "server id should be NAME:KEY, got {s:?}"
            ))),
        }
    }

    fn to_json(&self) -> Value {
        json!({"name": self.name, "key": self.key})
    }
}

impl Ping {
    /// Validates the body of `/api/ping`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field that breaks the protocol.
    pub fn from_json(body: &Map<String, Value>) -> Result<Ping> {
        Ok(Ping {
            server: ServerId::from_json(body)?,
        })
    }

    /// The wire form.
    pub fn to_json(&self) -> Value {
        json!({"server": self.server.to_json()})
    }
}

impl ServiceReport {
    /// A service's record from its validated fields; a state the protocol
    /// does not know is kept as UNK, with what was sent added to the info.
    fn new(
        name: String,
        sent: &str,
        info: String,
        period: Option<u32>,
        retries: Option<u8>,
    ) -> ServiceReport {
        let (state, suffix) = match State::parse(sent) {
            Some(s) => (s, String::new()),
            None => {
                let shown: String = sent.chars().take(MAX_NAME_CHARS).collect();
                (State::Unk, format!(" (sent unsupported state: {shown:?})"))
            }
        };
        // The suffix survives a cut: the text is shortened to leave room for it.
        let mut info = cut_text_to(info, MAX_INFO_BYTES - suffix.len());
        info.push_str(&suffix);
        ServiceReport {
            name,
            state,
            info,
            period,
            retries,
        }
    }
}

impl StatusReport {
    /// Parses and validates the body of `/api/set/service/status`: the same
    /// as [`parse_object`] then [`StatusReport::from_json`], with the same
    /// errors, but a well-formed report is read straight from the body.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field that breaks the protocol (or saying the body is not a JSON object).
    pub fn parse(body: &[u8]) -> Result<StatusReport> {
        if let Some(report) = std::str::from_utf8(body)
            .ok()
            .and_then(|text| serde_json::from_str::<fast::Report<'_>>(text).ok())
            .and_then(|raw| raw.validate().ok())
        {
            return Ok(report);
        }
        // Anything unusual (or wrong) takes the general path, which names
        // the offending field.
        StatusReport::from_json(&parse_object(body)?)
    }

    /// Validates the body of `/api/set/service/status`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field that breaks the protocol.
    pub fn from_json(body: &Map<String, Value>) -> Result<StatusReport> {
        let server = ServerId::from_json(body)?;
        let period = period(get(body, "period", "period")?, "period")?;
        let items = list(body, "services")?;
        let mut services = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let at = At::entry("services", index);
            let item = object(item, at)?;
            let name = name(get(item, "name", at.field("name"))?, at.field("name"))?;
            let sent = string(get(item, "state", at.field("state"))?, at.field("state"))?;
            let info = match optional(item, "info") {
                Some(v) => string(v, at.field("info"))?.to_owned(),
                None => String::new(),
            };
            let own_period = match optional(item, "period") {
                Some(v) => Some(self::period(v, at.field("period"))?),
                None => None,
            };
            let retries = match optional(item, "retries") {
                Some(v) => Some(retries_from_json(v, &at.field("retries").to_string())?),
                None => None,
            };
            services.push(ServiceReport::new(name, sent, info, own_period, retries));
        }
        let retries = match optional(body, "retries") {
            Some(v) => Some(retries_from_json(v, "retries")?),
            None => None,
        };
        Ok(StatusReport {
            server,
            period,
            services,
            retries,
        })
    }

    /// The wire form.
    pub fn to_json(&self) -> Value {
        let services: Vec<Value> = self
            .services
            .iter()
            .map(|s| {
                let mut v = json!({"name": s.name, "state": s.state.as_str(), "info": s.info});
                if let Some(p) = s.period {
                    v["period"] = json!(p);
                }
                if let Some(r) = s.retries {
                    v["retries"] = json!(r);
                }
                v
            })
            .collect();
        let mut v =
            json!({"server": self.server.to_json(), "period": self.period, "services": services});
        if let Some(r) = self.retries {
            v["retries"] = json!(r);
        }
        v
    }
}

impl AlertReport {
    /// Validates the body of `/api/set/alerts`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field that breaks the protocol.
    pub fn from_json(body: &Map<String, Value>) -> Result<AlertReport> {
        let server = ServerId::from_json(body)?;
        let items = list(body, "alerts")?;
        let mut alerts = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let at = At::entry("alerts", index);
            let item = object(item, at)?;
            let message = string(
                get(item, "message", at.field("message"))?,
                at.field("message"),
            )?;
            let service = match optional(item, "service") {
                Some(v) => Some(name(v, at.field("service"))?),
                None => None,
            };
            let severity = match optional(item, "severity") {
                Some(v) => severity(v, at.field("severity"))?,
                None => State::Fail,
            };
            alerts.push(AlertMessage {
                message: cut_text(message.to_owned()),
                service,
                severity,
            });
        }
        Ok(AlertReport { server, alerts })
    }

    /// The wire form.
    pub fn to_json(&self) -> Value {
        let alerts: Vec<Value> = self
            .alerts
            .iter()
            .map(|a| {
                let mut v = json!({"message": a.message});
                if let Some(s) = &a.service {
                    v["service"] = json!(s);
                }
                // Only when it is not the default: OverC 1.0.9 refused
                // alerts with keys it did not know.
                if a.severity != State::Fail {
                    v["severity"] = json!(a.severity.as_str());
                }
                v
            })
            .collect();
        json!({"server": self.server.to_json(), "alerts": alerts})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn status(v: Value) -> Result<StatusReport> {
        StatusReport::from_json(&obj(v))
    }

    fn err(r: Result<impl std::fmt::Debug>) -> String {
        match r {
            Err(Error::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    const SRV: &str = r#"{"name": "a", "key": "k"}"#;

    fn srv() -> Value {
        serde_json::from_str(SRV).unwrap()
    }

    #[test]
    fn server_fields_are_named_in_errors() {
        assert_eq!(
            err(Ping::from_json(&obj(json!({})))),
            "Data: \"server\" key is missing"
        );
        assert_eq!(
            err(Ping::from_json(&obj(json!({"server": 1})))),
            "Data: \"server\" should be an object"
        );
        assert_eq!(
            err(Ping::from_json(&obj(json!({"server": {"name": "a"}})))),
            "Data: \"server.key\" key is missing"
        );
        assert_eq!(
            err(Ping::from_json(&obj(
                json!({"server": {"name": "a", "key": 1}})
            ))),
            "Data: \"server.key\" should be a string"
        );
        assert_eq!(
            err(Ping::from_json(&obj(
                json!({"server": {"name": 5, "key": "k"}})
            ))),
            "Data: \"server.name\" should be a string"
        );
    }

    #[test]
    fn name_and_key_lengths() {
        let long = "é".repeat(65);
        assert!(
            err(Ping::from_json(&obj(
                json!({"server": {"name": long, "key": "k"}})
            )))
            .contains("1 to 64")
        );
        let ok64 = "é".repeat(64);
        assert!(Ping::from_json(&obj(json!({"server": {"name": ok64, "key": "k"}}))).is_ok());
        assert!(
            err(Ping::from_json(&obj(
                json!({"server": {"name": "", "key": "k"}})
            )))
            .contains("1 to 64")
        );
        assert!(
            err(Ping::from_json(&obj(
                json!({"server": {"name": "a", "key": ""}})
            )))
            .contains("1 to 128")
        );
        let key = "k".repeat(129);
        assert!(
            err(Ping::from_json(&obj(
                json!({"server": {"name": "a", "key": key}})
            )))
            .contains("1 to 128")
        );
        assert!(
            err(Ping::from_json(&obj(
                json!({"server": {"name": "a\nb", "key": "k"}})
            )))
            .contains("control")
        );
    }

    #[test]
    fn period_rules() {
        let r = status(json!({"server": srv(), "period": "60", "services": []})).unwrap();
        assert_eq!(r.period, 60);
        assert_eq!(
            err(status(json!({"server": srv(), "services": []}))),
            "Data: \"period\" key is missing"
        );
        assert!(
            err(status(
                json!({"server": srv(), "period": 0, "services": []})
            ))
            .contains("between 1 and")
        );
        assert!(
            err(status(
                json!({"server": srv(), "period": 31_536_001, "services": []})
            ))
            .contains("between")
        );
        assert!(status(json!({"server": srv(), "period": 31_536_000, "services": []})).is_ok());
        assert!(
            err(status(
                json!({"server": srv(), "period": "x", "services": []})
            ))
            .contains("integer")
        );
        assert!(
            err(status(
                json!({"server": srv(), "period": 1.5, "services": []})
            ))
            .contains("integer")
        );
        assert!(
            err(status(
                json!({"server": srv(), "period": true, "services": []})
            ))
            .contains("integer")
        );
    }

    #[test]
    fn services_list_rules() {
        assert_eq!(
            err(status(
                json!({"server": srv(), "period": 60, "services": {}})
            )),
            "Data: \"services\" should be a list"
        );
        assert_eq!(
            err(status(json!({"server": srv(), "period": 60}))),
            "Data: \"services\" key is missing"
        );
        let many: Vec<Value> = (0..1001)
            .map(|i| json!({"name": format!("s{i}"), "state": "OK"}))
            .collect();
        assert!(
            err(status(
                json!({"server": srv(), "period": 60, "services": many})
            ))
            .contains("at most 1000")
        );
        let enough: Vec<Value> = (0..1000)
            .map(|i| json!({"name": format!("s{i}"), "state": "OK"}))
            .collect();
        assert_eq!(
            status(json!({"server": srv(), "period": 60, "services": enough}))
                .unwrap()
                .services
                .len(),
            1000
        );
        assert_eq!(
            err(status(
                json!({"server": srv(), "period": 60, "services": [{"state": "OK"}]})
            )),
            "Data: \"services[0].name\" key is missing"
        );
        assert_eq!(
            err(status(
                json!({"server": srv(), "period": 60, "services": [{"name": "a", "state": 1}]})
            )),
            "Data: \"services[0].state\" should be a string"
        );
        assert_eq!(
            err(status(
                json!({"server": srv(), "period": 60, "services": [{"name": "a", "state": "OK", "info": 3}]})
            )),
            "Data: \"services[0].info\" should be a string"
        );
        assert!(err(status(json!({"server": srv(), "period": 60, "services": [{"name": "a", "state": "OK", "period": -1}]}))).contains("services[0].period"));
    }

    #[test]
    fn states_are_normalised() {
        let r = status(json!({"server": srv(), "period": 60, "services": [
            {"name": "a", "state": "ok"}, {"name": "b", "state": "Err", "info": "x"},
            {"name": "c", "state": "BULLSHIT", "info": "hi"}, {"name": "d", "state": "warn", "period": "5"}
        ]}))
        .unwrap();
        assert_eq!(r.services[0].state, State::Ok);
        assert_eq!(r.services[0].info, "");
        assert_eq!(r.services[1].state, State::Fail);
        assert_eq!(r.services[2].state, State::Unk);
        assert_eq!(
            r.services[2].info,
            "hi (sent unsupported state: \"BULLSHIT\")"
        );
        assert_eq!(r.services[3].period, Some(5));
    }

    #[test]
    fn unsupported_state_suffix_survives_a_long_info() {
        let info = "x".repeat(20_000);
        let r = status(json!({"server": srv(), "period": 60, "services": [{"name": "a", "state": "NOPE", "info": info}]})).unwrap();
        let got = &r.services[0].info;
        assert!(got.len() <= MAX_INFO_BYTES, "{}", got.len());
        assert!(got.ends_with(" (sent unsupported state: \"NOPE\")"));
        assert!(got.contains(CUT_MARK));
    }

    #[test]
    fn long_info_is_cut_at_char_boundary_and_marked() {
        let info = "ü".repeat(20_000);
        let r = status(json!({"server": srv(), "period": 60, "services": [{"name": "a", "state": "OK", "info": info}]})).unwrap();
        let got = &r.services[0].info;
        assert!(got.len() <= MAX_INFO_BYTES);
        assert!(got.ends_with(CUT_MARK));
        assert_eq!(r.services[0].state, State::Ok);
    }

    #[test]
    fn unknown_keys_are_ignored_and_duplicates_kept_in_order() {
        let r = status(
            json!({"server": {"name": "a", "key": "k", "x": 1}, "period": 60, "future": [1],
            "services": [{"name": "s", "state": "OK", "new": {}}, {"name": "s", "state": "FAIL"}]}),
        )
        .unwrap();
        assert_eq!(r.services.len(), 2);
        assert_eq!(r.services[1].state, State::Fail);
    }

    #[test]
    fn alerts_rules() {
        let r = AlertReport::from_json(&obj(json!({"server": srv(), "alerts": [
            {"message": "m1"}, {"message": "m2", "service": "db"}]})))
        .unwrap();
        assert_eq!(r.alerts[1].service.as_deref(), Some("db"));
        assert_eq!(
            err(AlertReport::from_json(&obj(
                json!({"server": srv(), "alerts": [{"service": "x"}]})
            ))),
            "Data: \"alerts[0].message\" key is missing"
        );
        assert_eq!(
            err(AlertReport::from_json(&obj(
                json!({"server": srv(), "alerts": "x"})
            ))),
            "Data: \"alerts\" should be a list"
        );
    }

    #[test]
    fn posted_alerts_have_an_optional_severity() {
        let r = AlertReport::from_json(&obj(json!({"server": srv(), "alerts": [
            {"message": "m"}, {"message": "deploy", "severity": "OK"},
            {"message": "w", "severity": "warn"}, {"message": "u", "severity": "UNK"},
            {"message": "f", "severity": "FAIL"}, {"message": "n", "severity": null}]})))
        .unwrap();
        let got: Vec<State> = r.alerts.iter().map(|a| a.severity).collect();
        assert_eq!(
            got,
            [
                State::Fail,
                State::Ok,
                State::Warn,
                State::Unk,
                State::Fail,
                State::Fail
            ]
        );
        for bad in [json!("CRITICAL"), json!(""), json!(2), json!({})] {
            assert_eq!(
                err(AlertReport::from_json(&obj(
                    json!({"server": srv(), "alerts": [
                    {"message": "ok"}, {"message": "m", "severity": bad}]})
                ))),
                "Data: \"alerts[1].severity\" should be one of \"OK\", \"WARN\", \"FAIL\", \"UNK\"",
                "{bad}"
            );
        }
    }

    /// Regression: names with zero-width or bidi characters were taken, so
    /// `host\u{200B}1` showed as a second `host1`.
    #[test]
    fn names_with_control_or_format_characters_are_refused() {
        for c in [
            '\0',
            '\t',
            '\u{1B}',
            '\u{7F}',
            '\u{85}',
            '\u{9F}',
            '\u{AD}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{202A}',
            '\u{202E}',
            '\u{2066}',
            '\u{2069}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{061C}',
            '\u{180E}',
            '\u{E0001}',
            '\u{E0041}',
        ] {
            assert!(is_control_or_format(c), "U+{:04X}", u32::from(c));
            let bad = format!("host{c}1");
            let ping = err(Ping::from_json(&obj(
                json!({"server": {"name": bad, "key": "k"}}),
            )));
            assert!(
                ping.starts_with("Data: \"server.name\" should not contain control"),
                "{ping}"
            );
            let body = json!({"server": srv(), "period": 60,
                "services": [{"name": "ok"}, {"name": bad, "state": "OK"}]});
            // Both ways in: the general path and the fast one.
            let mut body = body;
            body["services"][0]["state"] = json!("OK");
            for got in [
                status(body.clone()),
                StatusReport::parse(body.to_string().as_bytes()),
            ] {
                let msg = err(got);
                assert!(
                    msg.starts_with("Data: \"services[1].name\" should not contain control"),
                    "{msg}"
                );
            }
            let alert = json!({"server": srv(), "alerts": [{"message": "m", "service": bad}]});
            assert!(err(AlertReport::from_json(&obj(alert))).contains("\"alerts[0].service\""));
        }
        assert!(
            FORMAT_CHARS
                .windows(2)
                .all(|w| w[0].0 <= w[0].1 && w[0].1 < w[1].0),
            "the table must be sorted and without overlaps for the binary search"
        );
        for c in [
            'a', 'é', ' ', '-', '\u{A0}', '\u{AC}', '\u{AE}', '\u{2010}', '\u{2065}', '\u{FFFD}',
            '日', '😀',
        ] {
            assert!(!is_control_or_format(c), "U+{:04X}", u32::from(c));
        }
        assert!(
            Ping::from_json(&obj(json!({"server": {"name": "höst 日本", "key": "k"}}))).is_ok()
        );
        // Texts keep them: only names must be told apart at a glance.
        let r = status(json!({"server": srv(), "period": 60, "services": [
            {"name": "s", "state": "OK", "info": "a\u{0}b\u{200B}c\u{1B}[0m"}]}))
        .unwrap();
        assert_eq!(r.services[0].info, "a\u{0}b\u{200B}c\u{1B}[0m");
        let a = AlertReport::from_json(&obj(
            json!({"server": srv(), "alerts": [{"message": "x\u{0}\u{202E}y"}]}),
        ))
        .unwrap();
        assert_eq!(a.alerts[0].message, "x\u{0}\u{202E}y");
    }

    #[test]
    fn bodies_that_are_not_objects() {
        assert!(err(parse_object(b"[1,2]")).contains("JSON object"));
        assert!(err(parse_object(b"{nope")).contains("not valid JSON"));
        assert!(err(parse_object(b"\xff\xfe")).contains("UTF-8"));
        let deep = "[".repeat(10_000);
        assert!(err(parse_object(deep.as_bytes())).contains("not valid JSON"));
    }

    #[test]
    fn round_trips_through_wire_form() {
        let r = StatusReport {
            server: ServerId {
                name: "h".into(),
                key: "k".into(),
            },
            period: 30,
            services: vec![ServiceReport {
                name: "s".into(),
                state: State::Warn,
                info: "i".into(),
                period: Some(9),
                retries: None,
            }],
            retries: None,
        };
        assert_eq!(status(r.to_json()).unwrap(), r);
        let a = AlertReport {
            server: ServerId {
                name: "h".into(),
                key: "k".into(),
            },
            alerts: vec![
                AlertMessage {
                    message: "m".into(),
                    ..AlertMessage::default()
                },
                AlertMessage {
                    message: "deploy started".into(),
                    service: Some("app".into()),
                    severity: State::Ok,
                },
            ],
        };
        assert_eq!(AlertReport::from_json(&obj(a.to_json())).unwrap(), a);
        assert!(
            a.to_json()["alerts"][0].get("severity").is_none(),
            "the default is not sent: OverC 1.0.9 refuses keys it does not know"
        );
    }

    #[test]
    fn server_id_parse() {
        let id = ServerId::parse("host:key:with:colons").unwrap();
        assert_eq!(id.key, "key:with:colons");
        assert!(ServerId::parse("nokey").is_err());
    }
}
