//! Bodies of `/api/set/silence` and `/api/set/unsilence` (SPEC §9).

use serde_json::{Map, Value, json};

use super::ServerId;
use super::check::*;
use crate::error::Result;

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
/// [`Error::Invalid`](crate::Error::Invalid) naming the field `path`.
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
    /// [`Error::Invalid`](crate::Error::Invalid) naming the field that breaks the protocol.
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
    /// [`Error::Invalid`](crate::Error::Invalid) naming the field that breaks the protocol.
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
