//! Wire types of the OverC 1.0.9 protocol and their validation. No I/O.
//!
//! Parsing goes through [`serde_json::Value`] rather than derived
//! deserializers so that every error names the field the way the original
//! server did (`Data: "server.key" should be a string`) and unknown keys are
//! ignored. The one hot body, a status report, is first read without the
//! `Value` tree ([`StatusReport::parse`]); whatever that fast path does not
//! take goes the general way, so both give the same result for every body
//! (a property test holds them to it).

use std::fmt::Display;

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::policy::retries_from_json;
use crate::state::State;

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

fn invalid(msg: String) -> Error {
    Error::Invalid(msg)
}

fn missing(path: impl Display) -> Error {
    invalid(format!("Data: \"{path}\" key is missing"))
}

/// Where an entry of a list sits in a request body, for error messages:
/// formatted only when there is an error, not for every entry of every
/// report.
#[derive(Clone, Copy)]
struct At<'a> {
    list: &'a str,
    index: usize,
    field: Option<&'a str>,
}

impl<'a> At<'a> {
    fn entry(list: &'a str, index: usize) -> At<'a> {
        At {
            list,
            index,
            field: None,
        }
    }

    fn field(self, field: &'a str) -> At<'a> {
        At {
            field: Some(field),
            ..self
        }
    }
}

impl Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.list, self.index)?;
        if let Some(field) = self.field {
            write!(f, ".{field}")?;
        }
        Ok(())
    }
}

/// Parses a request body into a JSON object, with the protocol's messages.
///
/// # Errors
/// [`Error::Invalid`] when the body is not UTF-8 JSON text holding an object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>> {
    let text = std::str::from_utf8(body)
        .map_err(|_| invalid("Data: request body is not valid UTF-8".into()))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid("Data: request body should be a JSON object".into())),
        Err(e) => Err(invalid(format!(
            "Data: request body is not valid JSON: {e}"
        ))),
    }
}

fn get<'a>(obj: &'a Map<String, Value>, key: &str, path: impl Display) -> Result<&'a Value> {
    match obj.get(key) {
        Some(v) => Ok(v),
        None => Err(missing(path)),
    }
}

fn optional<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn string(v: &Value, path: impl Display) -> Result<&str> {
    v.as_str()
        .ok_or_else(|| invalid(format!("Data: \"{path}\" should be a string")))
}

fn name(v: &Value, path: impl Display + Copy) -> Result<String> {
    check_name(string(v, path)?, path)
}

fn check_name(s: &str, path: impl Display) -> Result<String> {
    let n = s.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(invalid(format!(
            "Data: \"{path}\" should be 1 to {MAX_NAME_CHARS} characters long"
        )));
    }
    if let Some(c) = s.chars().find(|&c| is_control_or_format(c)) {
        return Err(invalid(format!(
            "Data: \"{path}\" should not contain control or invisible formatting characters (found U+{:04X})",
            u32::from(c)
        )));
    }
    Ok(s.to_owned())
}

/// Unicode's format characters (general category Cf, Unicode 15.1): they
/// print as nothing or reorder the text around them, so `host\u{200B}1`
/// would show as `host1` and `\u{202E}` can make a name read backwards.
/// Inclusive ranges, in order.
const FORMAT_CHARS: [(char, char); 21] = [
    ('\u{00AD}', '\u{00AD}'),   // soft hyphen
    ('\u{0600}', '\u{0605}'),   // Arabic number signs
    ('\u{061C}', '\u{061C}'),   // Arabic letter mark
    ('\u{06DD}', '\u{06DD}'),   // Arabic end of ayah
    ('\u{070F}', '\u{070F}'),   // Syriac abbreviation mark
    ('\u{0890}', '\u{0891}'),   // Arabic pound and piastre marks above
    ('\u{08E2}', '\u{08E2}'),   // Arabic disputed end of ayah
    ('\u{180E}', '\u{180E}'),   // Mongolian vowel separator
    ('\u{200B}', '\u{200F}'),   // zero-width space, ZWNJ, ZWJ, LRM, RLM
    ('\u{202A}', '\u{202E}'),   // bidi embeddings and overrides
    ('\u{2060}', '\u{2064}'),   // word joiner, invisible operators
    ('\u{2066}', '\u{206F}'),   // bidi isolates, deprecated format characters
    ('\u{FEFF}', '\u{FEFF}'),   // zero-width no-break space (BOM)
    ('\u{FFF9}', '\u{FFFB}'),   // interlinear annotation
    ('\u{110BD}', '\u{110BD}'), // Kaithi number sign
    ('\u{110CD}', '\u{110CD}'), // Kaithi number sign above
    ('\u{13430}', '\u{1343F}'), // Egyptian hieroglyph format controls
    ('\u{1BCA0}', '\u{1BCA3}'), // shorthand format controls
    ('\u{1D173}', '\u{1D17A}'), // musical symbol format controls
    ('\u{E0001}', '\u{E0001}'), // language tag
    ('\u{E0020}', '\u{E007F}'), // tag characters
];

/// A character a name may not hold: a control character (C0, DEL, C1) or
/// a Unicode format character (category Cf: zero-width space and joiners,
/// bidi embeddings, overrides and isolates, the BOM, the soft hyphen, tags…),
/// which would make two names look the same or a name look like another.
pub fn is_control_or_format(c: char) -> bool {
    if c.is_control() {
        return true;
    }
    // No format character lies below the soft hyphen: a name in ASCII costs
    // one comparison per character.
    if c < '\u{00AD}' {
        return false;
    }
    FORMAT_CHARS
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

fn check_key(key: &str) -> Result<String> {
    let n = key.chars().count();
    if n == 0 || n > MAX_KEY_CHARS {
        return Err(invalid(format!(
            "Data: \"server.key\" should be 1 to {MAX_KEY_CHARS} characters long"
        )));
    }
    Ok(key.to_owned())
}

fn period(v: &Value, path: impl Display) -> Result<u32> {
    let n = match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                .map(|f| f as i64)
        }),
        // The original accepted numeric strings such as "60".
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let n = n.ok_or_else(|| invalid(format!("Data: \"{path}\" should be an integer")))?;
    check_period(n, path)
}

fn check_period(n: i64, path: impl Display) -> Result<u32> {
    if !(1..=i64::from(MAX_PERIOD)).contains(&n) {
        return Err(invalid(format!(
            "Data: \"{path}\" should be between 1 and {MAX_PERIOD}"
        )));
    }
    Ok(n as u32)
}

/// A posted alert's severity: one of the four state names (as a report's
/// state is matched: any case, `ERR` for `FAIL`); unlike a reported state, a
/// name it does not know is refused rather than taken as UNK.
fn severity(v: &Value, path: impl Display + Copy) -> Result<State> {
    let bad = || {
        invalid(format!(
            "Data: \"{path}\" should be one of \"OK\", \"WARN\", \"FAIL\", \"UNK\""
        ))
    };
    v.as_str().and_then(State::parse).ok_or_else(bad)
}

fn list<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a Vec<Value>> {
    let v = get(obj, key, key)?;
    let items = v
        .as_array()
        .ok_or_else(|| invalid(format!("Data: \"{key}\" should be a list")))?;
    if items.len() > MAX_ITEMS {
        return Err(invalid(format!(
            "Data: \"{key}\" should have at most {MAX_ITEMS} entries"
        )));
    }
    Ok(items)
}

fn object(v: &Value, path: impl Display) -> Result<&Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| invalid(format!("Data: \"{path}\" should be an object")))
}

/// Cuts `text` to at most [`MAX_INFO_BYTES`] at a UTF-8 boundary, marking a cut.
pub fn cut_text(text: String) -> String {
    cut_text_to(text, MAX_INFO_BYTES)
}

fn cut_text_to(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub(CUT_MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(CUT_MARK);
    text
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

/// Longest accepted comment of a silence or an acknowledgement, in characters.
pub const MAX_COMMENT_CHARS: usize = 1000;

/// Body of `/api/set/silence`: a host silences its own services (SPEC §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSilence {
    /// Who sends it: the silence holds for this host only.
    pub server: ServerId,
    /// A pattern of its services (`*`, `?`); `None`: the whole host.
    pub service: Option<String>,
    /// Seconds it lasts, 1 to 604800 (one week).
    pub duration: u32,
    /// Why (may be empty).
    pub comment: String,
}

/// Body of `/api/set/unsilence`: a host ends one of its silences, or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostUnsilence {
    /// Who sends it.
    pub server: ServerId,
    /// The silence to end; `None`: every silence of the host.
    pub id: Option<i64>,
}

/// Checks the comment of a silence or an acknowledgement: at most
/// [`MAX_COMMENT_CHARS`] characters, no control or format characters.
/// Returns it trimmed.
///
/// # Errors
/// [`Error::Invalid`] naming the field `path`.
pub fn check_comment(text: &str, path: &str) -> Result<String> {
    let text = text.trim();
    if text.chars().count() > MAX_COMMENT_CHARS {
        return Err(invalid(format!(
            "Data: \"{path}\" should be at most {MAX_COMMENT_CHARS} characters long"
        )));
    }
    if let Some(c) = text.chars().find(|&c| is_control_or_format(c)) {
        return Err(invalid(format!(
            "Data: \"{path}\" should not contain control or invisible formatting characters (found U+{:04X})",
            u32::from(c)
        )));
    }
    Ok(text.to_owned())
}

impl HostSilence {
    /// Validates the body of `/api/set/silence`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field that breaks the protocol.
    pub fn from_json(body: &Map<String, Value>) -> Result<HostSilence> {
        let server = ServerId::from_json(body)?;
        let service = match optional(body, "service") {
            Some(v) => {
                let p = string(v, "service")?;
                crate::policy::check_pattern(p)
                    .map_err(|why| invalid(format!("Data: \"service\" {why}")))?;
                Some(p.to_owned())
            }
            None => None,
        };
        let bad = || {
            invalid(format!(
                "Data: \"duration\" should be a whole number of seconds between 1 and {}",
                crate::policy::MAX_SILENCE_SECONDS
            ))
        };
        let seconds = get(body, "duration", "duration")?
            .as_u64()
            .ok_or_else(bad)?;
        let duration = crate::policy::check_silence_seconds(seconds).map_err(|_| bad())?;
        let comment = match optional(body, "comment") {
            Some(v) => check_comment(string(v, "comment")?, "comment")?,
            None => String::new(),
        };
        Ok(HostSilence {
            server,
            service,
            duration,
            comment,
        })
    }

    /// The wire form.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"server": self.server.to_json(), "duration": self.duration});
        if let Some(s) = &self.service {
            v["service"] = json!(s);
        }
        if !self.comment.is_empty() {
            v["comment"] = json!(self.comment);
        }
        v
    }
}

impl HostUnsilence {
    /// Validates the body of `/api/set/unsilence`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field that breaks the protocol.
    pub fn from_json(body: &Map<String, Value>) -> Result<HostUnsilence> {
        let server = ServerId::from_json(body)?;
        let id = match optional(body, "id") {
            Some(v) => Some(
                v.as_i64()
                    .ok_or_else(|| invalid("Data: \"id\" should be an integer".into()))?,
            ),
            None => None,
        };
        Ok(HostUnsilence { server, id })
    }

    /// The wire form.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"server": self.server.to_json()});
        if let Some(id) = self.id {
            v["id"] = json!(id);
        }
        v
    }
}

/// The common case of a status report, read without building a
/// [`Value`] tree first (whose maps and strings cost more than the rest of
/// validating it). It takes only plain objects with each known key once and
/// the period as a JSON integer; for anything else [`StatusReport::parse`]
/// falls back to the general path, so both always agree.
mod fast {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

    use super::{MAX_ITEMS, Result, invalid};
    use super::{ServerId, ServiceReport, StatusReport, check_key, check_name, check_period};

    /// A string borrowed from the body unless it had escapes.
    pub(super) struct Str<'a>(Cow<'a, str>);

    impl<'de> Deserialize<'de> for Str<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Str<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E>(self, s: &'de str) -> std::result::Result<Str<'de>, E> {
                    Ok(Str(Cow::Borrowed(s)))
                }
                fn visit_str<E>(self, s: &str) -> std::result::Result<Str<'de>, E> {
                    Ok(Str(Cow::Owned(s.to_owned())))
                }
                fn visit_string<E>(self, s: String) -> std::result::Result<Str<'de>, E> {
                    Ok(Str(Cow::Owned(s)))
                }
            }
            d.deserialize_str(V)
        }
    }

    /// Reads a JSON object (never a list, which derived structs would also
    /// take) key by key: `field` reads the value of a key it knows and says
    /// so; other values are read and dropped.
    fn object<'de, A: MapAccess<'de>>(
        map: &mut A,
        mut field: impl FnMut(&str, &mut A) -> std::result::Result<bool, A::Error>,
    ) -> std::result::Result<(), A::Error> {
        while let Some(key) = map.next_key::<Str<'de>>()? {
            if !field(&key.0, map)? {
                // Read as the general path reads it (not skipped), so that
                // what it refuses here (a lone surrogate, a number out of
                // range) is refused here too.
                map.next_value::<serde_json::Value>()?;
            }
        }
        Ok(())
    }

    fn need<T, E: de::Error>(v: Option<T>) -> std::result::Result<T, E> {
        v.ok_or_else(|| E::custom("a key is missing"))
    }

    /// Sets `slot` from the next value, refusing a second one.
    fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
        map: &mut A,
        slot: &mut Option<T>,
    ) -> std::result::Result<bool, A::Error> {
        if slot.is_some() {
            return Err(de::Error::custom("a key is given twice"));
        }
        *slot = Some(map.next_value()?);
        Ok(true)
    }

    pub(super) struct Server<'a> {
        name: Str<'a>,
        key: Str<'a>,
    }

    pub(super) struct Service<'a> {
        name: Str<'a>,
        state: Str<'a>,
        info: Option<Str<'a>>,
        period: Option<u64>,
        retries: Option<u64>,
    }

    pub(super) struct Report<'a> {
        server: Server<'a>,
        period: u64,
        services: Vec<Service<'a>>,
        retries: Option<u64>,
    }

    macro_rules! object_visitor {
        ($ty:ident, $what:literal, |$map:ident| $body:block) => {
            impl<'de> Deserialize<'de> for $ty<'de> {
                fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                    struct V;
                    impl<'de> Visitor<'de> for V {
                        type Value = $ty<'de>;
                        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                            f.write_str($what)
                        }
                        fn visit_map<A: MapAccess<'de>>(
                            self,
                            mut $map: A,
                        ) -> std::result::Result<$ty<'de>, A::Error> {
                            $body
                        }
                    }
                    d.deserialize_map(V)
                }
            }
        };
    }

    object_visitor!(Server, "a server object", |map| {
        let (mut name, mut key) = (None, None);
        object(&mut map, |k, map| match k {
            "name" => once(map, &mut name),
            "key" => once(map, &mut key),
            _ => Ok(false),
        })?;
        Ok(Server {
            name: need(name)?,
            key: need(key)?,
        })
    });

    object_visitor!(Service, "a service object", |map| {
        let (mut name, mut state, mut info, mut period, mut retries) =
            (None, None, None, None, None);
        object(&mut map, |k, map| match k {
            "name" => once(map, &mut name),
            "state" => once(map, &mut state),
            "info" => once(map, &mut info),
            "period" => once(map, &mut period),
            "retries" => once(map, &mut retries),
            _ => Ok(false),
        })?;
        Ok(Service {
            name: need(name)?,
            state: need(state)?,
            info: info.flatten(),
            period: period.flatten(),
            retries: retries.flatten(),
        })
    });

    object_visitor!(Report, "a status report object", |map| {
        let (mut server, mut period, mut services, mut retries) = (None, None, None, None);
        object(&mut map, |k, map| match k {
            "server" => once(map, &mut server),
            "period" => once(map, &mut period),
            "services" => once(map, &mut services),
            "retries" => once(map, &mut retries),
            _ => Ok(false),
        })?;
        Ok(Report {
            server: need(server)?,
            period: need(period)?,
            services: need(services)?,
            retries: retries.flatten(),
        })
    });

    impl Report<'_> {
        /// The same checks as [`StatusReport::from_json`]; its errors are
        /// not shown (the general path names the field), so they carry no
        /// path.
        pub(super) fn validate(self) -> Result<StatusReport> {
            let period = |p: u64| check_period(i64::try_from(p).unwrap_or(i64::MAX), "");
            let retries = |r: Option<u64>| -> Result<Option<u8>> {
                r.map(|r| {
                    crate::policy::check_retries(i64::try_from(r).unwrap_or(i64::MAX))
                        .map_err(|_| invalid(String::new()))
                })
                .transpose()
            };
            if self.services.len() > MAX_ITEMS {
                return Err(invalid(String::new()));
            }
            let server = ServerId {
                name: check_name(&self.server.name.0, "")?,
                key: check_key(&self.server.key.0)?,
            };
            let report_period = period(self.period)?;
            let mut services = Vec::with_capacity(self.services.len());
            for s in self.services {
                let own = match s.period {
                    Some(p) => Some(period(p)?),
                    None => None,
                };
                let info = s.info.map(|i| i.0.into_owned()).unwrap_or_default();
                services.push(ServiceReport::new(
                    check_name(&s.name.0, "")?,
                    &s.state.0,
                    info,
                    own,
                    retries(s.retries)?,
                ));
            }
            Ok(StatusReport {
                server,
                period: report_period,
                services,
                retries: retries(self.retries)?,
            })
        }
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
