//! `overcli`'s schedule as pure data driven by `now`: when each service
//! runs next, the newest unsent state of each, and how states are cut into
//! requests. The monitor loop (feature `client`) runs plugins and sends.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clock::Millis;
use crate::protocol::ServiceReport;

/// Seconds to wait after a report before running a service again:
/// `period × 0.8 − (max-lag, or 3 × the last run time)`, never negative.
pub fn next_run_delay(period: u32, max_lag: Option<f64>, last_run: Duration) -> Duration {
    let lag = max_lag.unwrap_or(3.0 * last_run.as_secs_f64());
    Duration::from_secs_f64((f64::from(period) * 0.8 - lag).max(0.0))
}

/// When each service runs next. Pure: every method takes `now`.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// `None` while the service is running.
    next: Vec<Option<Millis>>,
}

impl Schedule {
    /// Every one of `services` due at `now`.
    pub fn new(services: usize, now: Millis) -> Schedule {
        Schedule {
            next: vec![Some(now); services],
        }
    }

    /// Services due at `now`; they count as running until [`Schedule::finished`].
    pub fn take_due(&mut self, now: Millis) -> Vec<usize> {
        let mut due = Vec::new();
        for (i, next) in self.next.iter_mut().enumerate() {
            if next.is_some_and(|t| t <= now) {
                *next = None;
                due.push(i);
            }
        }
        due
    }

    /// A run of service `i` (with `period` and `max_lag`, as in its
    /// config) ended at `now` after `run_time`.
    pub fn finished(
        &mut self,
        i: usize,
        now: Millis,
        period: u32,
        max_lag: Option<f64>,
        run_time: Duration,
    ) {
        let delay = next_run_delay(period, max_lag, run_time);
        if let Some(next) = self.next.get_mut(i) {
            *next = Some(now + delay.as_millis() as Millis);
        }
    }

    /// How many services are running.
    pub fn running(&self) -> usize {
        self.next.iter().filter(|n| n.is_none()).count()
    }

    /// The earliest time a service is due (none while all are running).
    pub fn next_due(&self) -> Option<Millis> {
        self.next.iter().flatten().min().copied()
    }
}

/// The newest unsent state of each service, and when to try sending.
///
/// States are taken for sending and stay here until the answer comes: a
/// state reported meanwhile replaces them and is sent next, and a failed send
/// keeps them for the next attempt.
#[derive(Debug, Clone, Default)]
pub struct Unsent {
    /// service → (version, state)
    states: BTreeMap<usize, (u64, ServiceReport)>,
    version: u64,
    in_flight: bool,
    failures: u32,
    retry_at: Millis,
}

/// What [`Unsent::take`] handed out: service, version, state.
pub type Sending = Vec<(usize, u64, ServiceReport)>;

/// Longest wait between attempts to reach an unreachable server.
pub const MAX_RESEND_BACKOFF: Millis = 60_000;

impl Unsent {
    /// Keeps `report` as the newest state of service `i`, replacing an older one.
    pub fn put(&mut self, i: usize, report: ServiceReport) {
        self.version += 1;
        self.states.insert(i, (self.version, report));
    }

    /// The states to send at `now`, unless a send is under way, nothing waits,
    /// or it is backing off.
    pub fn take(&mut self, now: Millis) -> Option<Sending> {
        if self.in_flight || self.states.is_empty() || now < self.retry_at {
            return None;
        }
        self.in_flight = true;
        Some(
            self.states
                .iter()
                .map(|(i, (v, r))| (*i, *v, r.clone()))
                .collect(),
        )
    }

    /// Forgets what was sent, unless a newer state replaced it meanwhile.
    fn forget(&mut self, sent: &Sending) {
        for (i, v, _) in sent {
            if self.states.get(i).is_some_and(|(cur, _)| cur == v) {
                self.states.remove(i);
            }
        }
        self.in_flight = false;
    }

    /// The server took them.
    pub fn sent(&mut self, sent: &Sending) {
        self.forget(sent);
        self.failures = 0;
        self.retry_at = 0;
    }

    /// The server refused them for good (400/403): they are dropped.
    pub fn refused(&mut self, sent: &Sending) {
        self.forget(sent);
    }

    /// The send failed: back off 1 s, 2 s, 4 s, … up to a minute.
    pub fn failed(&mut self, now: Millis) -> Duration {
        let wait = (1000 << self.failures.min(10)).min(MAX_RESEND_BACKOFF);
        self.failures += 1;
        self.retry_at = now + wait;
        self.in_flight = false;
        Duration::from_millis(wait as u64)
    }

    /// Applies what `overcli`'s sender did with what [`Unsent::take`] handed
    /// out: delivered and refused states are forgotten, failed ones kept.
    /// Returns the back-off when some failed.
    pub fn settle(&mut self, report: &SendReport, now: Millis) -> Option<Duration> {
        for (refused, _) in &report.refused {
            self.refused(refused);
        }
        self.forget(&report.delivered);
        match &report.failed {
            Some(_) => Some(self.failed(now)),
            None => {
                self.failures = 0;
                self.retry_at = 0;
                None
            }
        }
    }

    /// When the next send attempt is due, if anything is waiting.
    pub fn next_attempt(&self) -> Option<Millis> {
        (!self.states.is_empty() && !self.in_flight).then_some(self.retry_at)
    }

    /// Number of services with an unsent state.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// True when everything was sent.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

/// Most bytes of states (names and info) put in one request, so that many
/// large outputs stay well under the server's body limit (1 MiB by default).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Cuts states into requests the server accepts: at most
/// [`MAX_ITEMS`](crate::protocol::MAX_ITEMS) states (SPEC §1) and about
/// [`MAX_BATCH_BYTES`] each, in order. Pure.
pub fn batches(states: Sending) -> Vec<Sending> {
    let mut out: Vec<Sending> = Vec::new();
    let mut size = 0;
    for s in states {
        let len = s.2.info.len() + s.2.name.len() + 64;
        let full = out.last().is_none_or(|b| {
            !b.is_empty() && (b.len() >= crate::protocol::MAX_ITEMS || size + len > MAX_BATCH_BYTES)
        });
        if full {
            out.push(Vec::new());
            size = 0;
        }
        size += len;
        if let Some(b) = out.last_mut() {
            b.push(s);
        }
    }
    out
}

/// What became of the states handed to the sender.
#[derive(Debug, Clone, Default)]
pub struct SendReport {
    /// Taken by the server.
    pub delivered: Sending,
    /// Refused for good (400/403), each group with the server's answer.
    pub refused: Vec<(Sending, String)>,
    /// Not sent because the server could not be reached or failed (5xx, a
    /// proxy's 404…), with the reason: worth another try later.
    pub failed: Option<(Sending, String)>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::state::State;

    #[test]
    fn delay_is_80_percent_of_period_minus_lag() {
        assert_eq!(
            next_run_delay(10, Some(3.0), Duration::from_secs(9)),
            Duration::from_secs(5)
        );
        assert_eq!(
            next_run_delay(10, None, Duration::from_millis(500)),
            Duration::from_millis(6500)
        );
        assert_eq!(
            next_run_delay(5, None, Duration::from_secs(2)),
            Duration::ZERO,
            "never negative"
        );
    }

    #[test]
    fn schedule_runs_due_services_once_until_they_finish() {
        let mut s = Schedule::new(2, 1000);
        assert_eq!(s.take_due(1000), vec![0, 1]);
        assert_eq!(
            s.take_due(5000),
            Vec::<usize>::new(),
            "running services are not due again"
        );
        assert_eq!(s.next_due(), None);
        s.finished(0, 2000, 10, Some(2.0), Duration::from_secs(1));
        assert_eq!(s.next_due(), Some(8000));
        assert_eq!(s.take_due(7999), Vec::<usize>::new());
        assert_eq!(s.take_due(8000), vec![0]);
        s.finished(1, 3000, 60, None, Duration::from_millis(100));
        assert_eq!(s.next_due(), Some(3000 + 47_700));
    }

    #[test]
    fn unsent_keeps_the_newest_state_and_backs_off() {
        let r = |info: &str| ServiceReport {
            name: "a".into(),
            state: State::Ok,
            info: info.into(),
            period: Some(5),
            retries: None,
        };
        let mut u = Unsent::default();
        assert!(u.take(0).is_none());
        u.put(0, r("old"));
        u.put(0, r("new"));
        u.put(1, r("other"));
        let sending = u.take(0).unwrap();
        assert_eq!(sending.len(), 2);
        assert_eq!(sending[0].2.info, "new");
        assert!(u.take(0).is_none(), "one send at a time");
        assert_eq!(u.next_attempt(), None);
        assert_eq!(u.failed(0), Duration::from_secs(1));
        assert!(u.take(999).is_none(), "backing off");
        let sending = u.take(1000).unwrap();
        // A state reported while the send is under way is not lost by its success.
        u.put(1, r("newer"));
        u.sent(&sending);
        assert_eq!(u.len(), 1);
        assert_eq!(u.take(1000).unwrap()[0].2.info, "newer");
        assert_eq!(u.failed(1000), Duration::from_secs(1));
        for _ in 0..20 {
            let s = u.take(Millis::MAX).unwrap();
            let _ = s;
            u.failed(0);
        }
        assert_eq!(u.next_attempt(), Some(MAX_RESEND_BACKOFF));
        let s = u.take(Millis::MAX).unwrap();
        u.refused(&s);
        assert!(u.is_empty());
        assert_eq!(u.next_attempt(), None);
    }

    /// `n` OK states with `info_len` bytes of info each (for the sender's tests too).
    pub(crate) fn states(n: usize, info_len: usize) -> Sending {
        (0..n)
            .map(|i| {
                let report = ServiceReport {
                    name: format!("s{i}"),
                    state: State::Ok,
                    info: "x".repeat(info_len),
                    period: Some(60),
                    retries: None,
                };
                (i, 1, report)
            })
            .collect()
    }

    fn sizes(batches: &[Sending]) -> Vec<usize> {
        batches.iter().map(Vec::len).collect()
    }

    #[test]
    fn batches_are_cut_by_count_and_by_size_in_order() {
        assert_eq!(sizes(&batches(Vec::new())), Vec::<usize>::new());
        assert_eq!(sizes(&batches(states(1000, 0))), vec![1000]);
        let cut = batches(states(2500, 0));
        assert_eq!(sizes(&cut), vec![1000, 1000, 500]);
        let order: Vec<usize> = cut.iter().flatten().map(|s| s.0).collect();
        assert_eq!(order, (0..2500).collect::<Vec<_>>());
        // 16 KiB outputs: 15 of them (with names and overhead) fill 256 KiB.
        let big = batches(states(40, 16 * 1024));
        assert!(big.iter().all(|b| b.len() <= 15), "{:?}", sizes(&big));
        assert_eq!(sizes(&big).iter().sum::<usize>(), 40);
        // A single state larger than a batch still goes, alone.
        assert_eq!(sizes(&batches(states(2, 300 * 1024))), vec![1, 1]);
    }
}
