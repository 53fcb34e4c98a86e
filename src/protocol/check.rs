//! Reading and checking the fields of a request body, with errors that name
//! the field (`services[2].name`).

use std::fmt::Display;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::state::State;

use super::{CUT_MARK, MAX_INFO_BYTES, MAX_ITEMS, MAX_KEY_CHARS, MAX_NAME_CHARS, MAX_PERIOD};

pub(super) fn invalid(msg: String) -> Error {
    Error::Invalid(msg)
}

pub(super) fn missing(path: impl Display) -> Error {
    invalid(format!("Data: \"{path}\" key is missing"))
}

/// Where an entry of a list sits in a request body, for error messages:
/// formatted only when there is an error, not for every entry of every
/// report.
#[derive(Clone, Copy)]
pub(super) struct At<'a> {
    list: &'a str,
    index: usize,
    field: Option<&'a str>,
}

impl<'a> At<'a> {
    pub(super) fn entry(list: &'a str, index: usize) -> At<'a> {
        At {
            list,
            index,
            field: None,
        }
    }

    pub(super) fn field(self, field: &'a str) -> At<'a> {
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

pub(super) fn get<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: impl Display,
) -> Result<&'a Value> {
    match obj.get(key) {
        Some(v) => Ok(v),
        None => Err(missing(path)),
    }
}

pub(super) fn optional<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

pub(super) fn string(v: &Value, path: impl Display) -> Result<&str> {
    v.as_str()
        .ok_or_else(|| invalid(format!("Data: \"{path}\" should be a string")))
}

pub(super) fn name(v: &Value, path: impl Display + Copy) -> Result<String> {
    check_name(string(v, path)?, path)
}

pub(super) fn check_name(s: &str, path: impl Display) -> Result<String> {
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
pub(super) const FORMAT_CHARS: [(char, char); 21] = [
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

pub(super) fn check_key(key: &str) -> Result<String> {
    let n = key.chars().count();
    if n == 0 || n > MAX_KEY_CHARS {
        return Err(invalid(format!(
            "Data: \"server.key\" should be 1 to {MAX_KEY_CHARS} characters long"
        )));
    }
    Ok(key.to_owned())
}

pub(super) fn period(v: &Value, path: impl Display) -> Result<u32> {
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

pub(super) fn check_period(n: i64, path: impl Display) -> Result<u32> {
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
pub(super) fn severity(v: &Value, path: impl Display + Copy) -> Result<State> {
    let bad = || {
        invalid(format!(
            "Data: \"{path}\" should be one of \"OK\", \"WARN\", \"FAIL\", \"UNK\""
        ))
    };
    v.as_str().and_then(State::parse).ok_or_else(bad)
}

pub(super) fn list<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a Vec<Value>> {
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

pub(super) fn object(v: &Value, path: impl Display) -> Result<&Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| invalid(format!("Data: \"{path}\" should be an object")))
}

/// Cuts `text` to at most [`MAX_INFO_BYTES`] at a UTF-8 boundary, marking a cut.
pub fn cut_text(text: String) -> String {
    cut_text_to(text, MAX_INFO_BYTES)
}

pub(super) fn cut_text_to(mut text: String, max: usize) -> String {
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
