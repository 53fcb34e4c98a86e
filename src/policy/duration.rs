//! Durations as people type them (`90`, `15m`, `2h`, `1d`, `1h30m`) and
//! as notifications show them (`2h 5m`).

use crate::clock::Millis;
use crate::error::{Error, Result};

/// Longest silence: one week, in seconds.
pub const MAX_SILENCE_SECONDS: u32 = 604_800;
/// Longest reminder interval: one year, in seconds.
pub const MAX_REPEAT_SECONDS: u64 = 31_536_000;

const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Parses a duration into seconds: a bare whole number is seconds (`90`);
/// otherwise one or more whole numbers each followed by `s`, `m`, `h` or
/// `d` (`15m`, `2h`, `1d`, `1h30m`, `2h 5m`). Fractions (`1.5h`), signs,
/// other units and values past `u64` seconds are refused. `0` is
/// syntactically fine; the callers ([`parse_silence_duration`],
/// [`parse_repeat`]) set the limits.
///
/// # Errors
/// [`Error::Config`] naming `key` and what was wrong.
pub fn parse_duration(key: &str, text: &str) -> Result<u64> {
    let bad = |why: &str| {
        Error::Config(format!(
            "{key}: {text:?} is not a duration{why}: use seconds or whole numbers with s, m, h or d (90, 15m, 2h, 1d, 1h30m)"
        ))
    };
    let too_long = || Error::Config(format!("{key}: {text:?} is too long a duration"));
    let t = text.trim();
    if t.is_empty() {
        return Err(bad(""));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<u64>().map_err(|_| too_long());
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad(match rest.chars().next() {
                Some('.') | Some(',') => " (no fractions)",
                Some('-') | Some('+') => " (no signs)",
                _ => "",
            }));
        }
        let (number, after) = rest.split_at(digits);
        let unit = after.chars().next();
        let Some(&(_, factor)) = UNITS.iter().find(|(u, _)| Some(*u) == unit) else {
            return Err(bad(match unit {
                Some('.') | Some(',') => " (no fractions)",
                None => " (a unit is missing after the last number)",
                _ => "",
            }));
        };
        let n: u64 = number.parse().map_err(|_| too_long())?;
        total = n
            .checked_mul(factor)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(too_long)?;
        rest = after[1..].trim_start();
    }
    Ok(total)
}

/// Parses the duration of a silence (`overcli silence DURATION`): as
/// [`parse_duration`], from 1 second to one week (604800 s).
///
/// # Errors
/// [`Error::Config`] naming `key`, for bad syntax or a value out of range.
pub fn parse_silence_duration(key: &str, text: &str) -> Result<u32> {
    let s = parse_duration(key, text)?;
    check_silence_seconds(s).map_err(|why| Error::Config(format!("{key}: {text:?} {why}")))
}

/// Checks the seconds of a silence, as `"duration"` of `/api/set/silence`
/// carries them: the range is 1 to 604800 (one week).
///
/// # Errors
/// Why not, for the caller to prefix with where the value came from:
/// `should be between 1 s and 7d (604800 s)`.
pub fn check_silence_seconds(seconds: u64) -> std::result::Result<u32, String> {
    if (1..=u64::from(MAX_SILENCE_SECONDS)).contains(&seconds) {
        Ok(seconds as u32)
    } else {
        Err(format!(
            "should be between 1 s and 7d ({MAX_SILENCE_SECONDS} s)"
        ))
    }
}

/// Parses `repeat =` of an `[alert:NAME]` section, the interval between
/// reminders: as [`parse_duration`], from 1 second to one year. Leaving the
/// key out means no reminders; `0` is refused rather than read as "off".
///
/// # Errors
/// [`Error::Config`] naming `key`, for bad syntax or a value out of range.
pub fn parse_repeat(key: &str, text: &str) -> Result<u64> {
    let s = parse_duration(key, text)?;
    if (1..=MAX_REPEAT_SECONDS).contains(&s) {
        Ok(s)
    } else {
        Err(Error::Config(format!(
            "{key}: {text:?} should be between 1 s and 365d (leave {key} out for no reminders)"
        )))
    }
}

/// Shows a length of time as people read it: the largest unit and the
/// next one when it is not zero, e.g. `2h 5m`, `3d`, `1m 30s`, `45s`.
/// Under a second, or negative, shows `0s`.
pub fn human_duration(ms: Millis) -> String {
    let secs = (ms.max(0) / 1000) as u64;
    let Some(first) = UNITS.iter().position(|&(_, f)| secs >= f) else {
        return "0s".into();
    };
    let (unit, factor) = UNITS[first];
    let mut text = format!("{}{unit}", secs / factor);
    if let Some(&(next, next_factor)) = UNITS.get(first + 1) {
        let n = secs % factor / next_factor;
        if n > 0 {
            text.push_str(&format!(" {n}{next}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> std::result::Result<u64, String> {
        parse_duration("d", text).map_err(|e| e.to_string())
    }

    #[test]
    fn durations_as_the_spec_writes_them() {
        assert_eq!(secs("90"), Ok(90));
        assert_eq!(secs("15m"), Ok(900));
        assert_eq!(secs("2h"), Ok(7_200));
        assert_eq!(secs("1d"), Ok(86_400));
        assert_eq!(secs("30m"), Ok(1_800));
        assert_eq!(secs("4h"), Ok(14_400));
        assert_eq!(secs("45s"), Ok(45));
        assert_eq!(secs(" 1h30m "), Ok(5_400));
        assert_eq!(secs("2h 5m"), Ok(7_500), "what human_duration writes");
        assert_eq!(secs("0"), Ok(0), "syntax only; the limits are the caller's");
    }

    #[test]
    fn bad_durations_say_what_to_write() {
        let e = secs("1.5h").unwrap_err();
        assert_eq!(
            e,
            "config: d: \"1.5h\" is not a duration (no fractions): use seconds or whole numbers with s, m, h or d (90, 15m, 2h, 1d, 1h30m)"
        );
        assert!(secs("-5").unwrap_err().contains("(no signs)"));
        assert!(secs("+5m").unwrap_err().contains("(no signs)"));
        assert!(secs("5x").unwrap_err().contains("is not a duration:"));
        assert!(
            secs("5M").unwrap_err().contains("is not a duration"),
            "units are lower-case"
        );
        assert!(secs("1h30").unwrap_err().contains("a unit is missing"));
        assert!(secs("").is_err());
        assert!(secs("h").is_err());
        assert!(secs("1 h").is_err(), "a unit follows its number");
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let e = secs("99999999999999999999").unwrap_err();
        assert_eq!(
            e,
            "config: d: \"99999999999999999999\" is too long a duration"
        );
        assert!(
            secs("999999999999999999d")
                .unwrap_err()
                .contains("too long")
        );
        assert!(
            secs("18446744073709551615s1s")
                .unwrap_err()
                .contains("too long")
        );
        assert_eq!(secs("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn silences_last_one_second_to_one_week() {
        let p = |t| parse_silence_duration("DURATION", t).map_err(|e| e.to_string());
        assert_eq!(p("1"), Ok(1));
        assert_eq!(p("7d"), Ok(604_800));
        assert_eq!(p("604800"), Ok(604_800));
        assert_eq!(
            p("0"),
            Err("config: DURATION: \"0\" should be between 1 s and 7d (604800 s)".into())
        );
        assert!(p("604801").is_err());
        assert!(p("8d").is_err());
        assert!(p("99999999999999999999").unwrap_err().contains("too long"));
        assert_eq!(check_silence_seconds(604_800), Ok(604_800));
        assert!(check_silence_seconds(0).is_err());
    }

    #[test]
    fn repeat_needs_a_positive_interval() {
        assert_eq!(parse_repeat("repeat", "4h").unwrap(), 14_400);
        assert_eq!(parse_repeat("repeat", "30m").unwrap(), 1_800);
        let e = parse_repeat("repeat", "0").unwrap_err().to_string();
        assert!(e.contains("leave repeat out for no reminders"), "{e}");
        assert!(parse_repeat("repeat", "366d").is_err());
        assert!(parse_repeat("repeat", "365d").is_ok());
    }

    #[test]
    fn human_durations_show_two_units_at_most() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(999), "0s");
        assert_eq!(human_duration(-5_000), "0s");
        assert_eq!(human_duration(45_000), "45s");
        assert_eq!(human_duration(90_000), "1m 30s");
        assert_eq!(human_duration(7_500_000), "2h 5m");
        assert_eq!(
            human_duration(7_230_000),
            "2h",
            "seconds under hours are dropped"
        );
        assert_eq!(human_duration(3 * 86_400_000 + 4 * 3_600_000), "3d 4h");
        assert_eq!(human_duration(86_400_000 + 60_000), "1d");
        assert!(human_duration(i64::MAX).ends_with('h'));
    }
}
