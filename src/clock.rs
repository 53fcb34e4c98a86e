//! Time as a parameter: the [`Clock`] trait, the system clock and a manual
//! clock for tests, plus ISO 8601 rendering of unix milliseconds.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch, UTC.
pub type Millis = i64;

/// A source of the current time. Rules take `now` from it so tests can
/// drive time by hand instead of sleeping.
pub trait Clock: Send + Sync + 'static {
    /// The current time in unix milliseconds.
    fn now(&self) -> Millis;

    /// Milliseconds from an arbitrary start that never jump: for the system
    /// clock, the monotonic clock, which a step of the wall clock does not
    /// move and a suspended machine does not advance. The difference between
    /// how far [`Clock::now`] and this moved is a jump of the wall clock.
    fn monotonic(&self) -> Millis {
        self.now()
    }

    /// Whether time passes by itself (the system clock), so that a thread
    /// waking much later than it asked to means the process was not running
    /// (stopped, or starved). False for a clock that tests move by hand.
    fn runs_by_itself(&self) -> bool {
        false
    }
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0)
    }

    fn monotonic(&self) -> Millis {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_millis() as Millis
    }

    fn runs_by_itself(&self) -> bool {
        true
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<ManualTime>);

#[derive(Debug, Default)]
struct ManualTime {
    now: AtomicI64,
    /// How far the wall clock jumped in all (moved without monotonic time).
    jumped: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `now` (unix milliseconds).
    pub fn new(now: Millis) -> Self {
        let clock = ManualClock::default();
        clock.0.now.store(now, Ordering::SeqCst);
        clock
    }

    /// Moves the clock forward by `ms` milliseconds, as time passing does.
    pub fn advance(&self, ms: Millis) {
        self.0.now.fetch_add(ms, Ordering::SeqCst);
    }

    /// Moves the wall clock by `ms` milliseconds without time passing, as a
    /// step of the system clock (or a suspended machine waking) does.
    pub fn jump(&self, ms: Millis) {
        self.0.jumped.fetch_add(ms, Ordering::SeqCst);
        self.0.now.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `now`.
    pub fn set(&self, now: Millis) {
        self.0.now.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.now.load(Ordering::SeqCst)
    }

    fn monotonic(&self) -> Millis {
        self.now() - self.0.jumped.load(Ordering::SeqCst)
    }
}

/// Renders unix milliseconds as ISO 8601 UTC, e.g. `2026-11-24T18:03:05.120Z`.
pub fn iso8601(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Reads an ISO 8601 date and time with its offset, as a person or a
/// script writes a silence's end: `2026-11-24T18:03Z`,
/// `2026-11-24T18:03:05.120Z`, `2026-11-24 18:03:05+01:00` (`T` or a space;
/// seconds and their fraction optional; `Z`, `±HH:MM` or `±HHMM`). A time
/// without an offset is refused rather than guessed at. `None` when it is
/// not one.
pub fn parse_iso8601(text: &str) -> Option<Millis> {
    let t = text.trim();
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, rest) = (t.get(..10)?, t.get(10..)?);
    let sep = rest.chars().next()?;
    if !matches!(sep, 'T' | 't' | ' ') || date.as_bytes()[4] != b'-' || date.as_bytes()[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(&date[..4])?, num(&date[5..7])?, num(&date[8..10])?);
    let rest = &rest[1..];
    // The offset starts at the first Z, + or - after the time.
    let at = rest.find(['Z', 'z', '+', '-'])?;
    let (time, zone) = rest.split_at(at);
    let mut parts = time.split(':');
    let (h, mi) = (num(parts.next()?)?, num(parts.next()?)?);
    let (s, ms) = match parts.next() {
        Some(sec) => {
            let (whole, frac) = sec.split_once(['.', ',']).unwrap_or((sec, ""));
            let mut digits: String = frac.chars().take(3).collect();
            if !frac.is_empty() && num(frac).is_none() {
                return None;
            }
            while digits.len() < 3 {
                digits.push('0');
            }
            (num(whole)?, num(&digits)?)
        }
        None => (0, 0),
    };
    if parts.next().is_some() {
        return None;
    }
    let offset_min = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let z = zone[1..].replace(':', "");
            if z.len() != 4 {
                return None;
            }
            let (oh, om) = (num(&z[..2])?, num(&z[2..])?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 60 + om)
        }
    };
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if d < 1 || d > days_in_month || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(y, m as u32, d as u32);
    let secs = days * 86_400 + h * 3_600 + mi * 60 + s - offset_min * 60;
    Some(secs * 1000 + ms)
}

// Howard Hinnant's civil-to-days algorithm, the inverse of the one below.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// Howard Hinnant's days-to-civil algorithm; avoids a date crate for one function.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_known_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(1_795_543_385_120), "2026-11-24T18:03:05.120Z");
    }

    #[test]
    fn iso8601_is_read_back_with_its_offset() {
        for ms in [0, 951_782_400_000, 1_795_543_385_120, -86_400_000] {
            assert_eq!(parse_iso8601(&iso8601(ms)), Some(ms), "{ms}");
        }
        let t = 1_795_543_380_000; // 2026-11-24T18:03:00Z
        assert_eq!(parse_iso8601("2026-11-24T18:03Z"), Some(t));
        assert_eq!(parse_iso8601("2026-11-24 18:03:00+00:00"), Some(t));
        assert_eq!(parse_iso8601("2026-11-24T19:03:00+01:00"), Some(t));
        assert_eq!(parse_iso8601("2026-11-24T16:33-0130"), Some(t));
        assert_eq!(parse_iso8601("2026-11-24T18:03:00.5Z"), Some(t + 500));
        assert_eq!(
            parse_iso8601("2028-02-29T00:00Z").map(iso8601).as_deref(),
            Some("2028-02-29T00:00:00.000Z")
        );
        for bad in [
            "2026-11-24T18:03:00",
            "2026-11-24",
            "2026-02-29T00:00Z",
            "2026-13-01T00:00Z",
            "2026-11-24T24:00Z",
            "2026-11-24T18:03:00+1",
            "2026/11/24T18:03Z",
            "tomorrow",
            "",
            "2026-11-24T18:03:0xZ",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1000);
        let c2 = c.clone();
        c.advance(500);
        assert_eq!(c2.now(), 1500);
        c.set(7);
        assert_eq!(c2.now(), 7);
        assert_eq!(c.monotonic(), 7);
        c.jump(1000);
        assert_eq!(
            (c.now(), c.monotonic()),
            (1007, 7),
            "a jump is not time passing"
        );
        c.advance(3);
        assert_eq!((c.now(), c.monotonic()), (1010, 10));
    }
}
