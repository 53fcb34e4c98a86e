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
