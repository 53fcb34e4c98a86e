//! Overdue detection driven by deadlines: a thread that sleeps until the
//! next [`Deadlines`] entry (or a report brings one earlier), asks the
//! storage to flag what is due (raising `plugin/offline`), and wakes
//! delivery. It also notices when the server itself did not run.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock::{Clock, Millis};
use crate::deadlines::Deadlines;
use crate::delivery::Outbox;
use crate::error::Result;
use crate::rules;
use crate::store::{DeadlineChange, Storage, lock};

enum Msg {
    /// New entries in the shared `pending` list.
    Changes,
    Tick(mpsc::SyncSender<Result<usize>>),
}

/// Work counters of the supervisor thread, for benchmarks and diagnostics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorStats {
    /// Times the thread woke up and did work.
    pub wakeups: u64,
    /// Deadlines that passed (services flagged overdue or found reported).
    pub fired: u64,
    /// Total time spent working, in microseconds.
    pub busy_us: u64,
    /// Longest single wake-up, in microseconds.
    pub max_busy_us: u64,
}

#[derive(Debug, Default)]
struct Counters {
    wakeups: AtomicU64,
    fired: AtomicU64,
    busy_us: AtomicU64,
    max_busy_us: AtomicU64,
}

/// Deadline changes kept before the thread is woken to take them, whatever
/// their deadlines, so waiting changes use bounded memory (about this many,
/// plus what arrives while the thread waits for the store).
const PENDING_WAKE: usize = 4096;

/// The supervisor thread.
pub struct Supervisor {
    /// Deadline changes not yet taken by the thread. Reports almost always
    /// move deadlines later than the thread's next wake-up, so they wait for
    /// it (or for [`PENDING_WAKE`] of them) instead of waking the thread:
    /// under load that was a wake-up every few requests.
    pending: Arc<Mutex<Vec<DeadlineChange>>>,
    /// When the sleeping thread wakes by itself; `Millis::MIN` while it is
    /// awake (it looks at `pending` before it sleeps again).
    wake_at: Arc<AtomicI64>,
    grace: Millis,
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    next_due: Arc<AtomicI64>,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Supervisor")
    }
}

struct Loop {
    pending: Arc<Mutex<Vec<DeadlineChange>>>,
    wake_at: Arc<AtomicI64>,
    deadlines: Deadlines,
    store: Arc<dyn Storage>,
    outbox: Arc<Outbox>,
    clock: Arc<dyn Clock>,
    grace: Millis,
    next_due: Arc<AtomicI64>,
    counters: Arc<Counters>,
    /// Deadline of the oldest overdue service not flagged because storage failed.
    stuck_since: Option<Millis>,
    /// Wall and monotonic time when the thread last went to sleep, and for
    /// how long it meant to: to notice that it did not run meanwhile.
    slept_at: (Millis, Millis),
    planned: Millis,
}

/// Longest sleep of the supervisor thread: time the process did not run is
/// measured to within it.
const MAX_SLEEP: Millis = 1000;
/// Due services a leader on shared storage reads at a time.
const DUE_BATCH: usize = 1000;
/// Lost time below this is scheduling noise, not a stopped server.
const STALL: Millis = 2000;

/// True when a change due at `due` (before grace) needs a thread that
/// sleeps until `wake_at` to wake earlier. The thread wakes 1 ms after the
/// deadline it sleeps for, so a deadline equal to that one needs nothing.
fn wakes(due: Millis, grace: Millis, wake_at: Millis) -> bool {
    due.saturating_add(grace).saturating_add(1) < wake_at
}

/// The sleeping side of [`Supervisor::changed`]: publishes when the thread
/// will wake by itself, then checks the changes that came meanwhile (their
/// senders may have read the old time). False when it must not sleep.
fn may_sleep_until(
    pending: &Mutex<Vec<DeadlineChange>>,
    wake_at: &AtomicI64,
    grace: Millis,
    at: Millis,
) -> bool {
    wake_at.store(at, Ordering::SeqCst);
    let pending = lock(pending);
    pending.len() < PENDING_WAKE
        && !pending
            .iter()
            .any(|c| c.due.is_some_and(|d| wakes(d, grace, at)))
}

impl Loop {
    fn take_pending(&mut self) {
        let changes = std::mem::take(&mut *lock(&self.pending));
        for c in changes {
            match c.due {
                Some(due) => self.deadlines.set(c.service_id, c.rtime, due + self.grace),
                None => self.deadlines.remove(c.service_id),
            }
        }
    }

    /// How long the server did not run since the thread went to sleep (it
    /// was stopped, or starved), or how far the wall clock jumped: the longer
    /// of the two, or 0 for less than [`STALL`].
    fn lost_time(&self) -> Millis {
        let (wall, mono) = (self.clock.now(), self.clock.monotonic());
        let passed = mono - self.slept_at.1;
        let jumped = (wall - self.slept_at.0) - passed;
        let overslept = if self.clock.runs_by_itself() {
            passed - self.planned
        } else {
            0
        };
        let lost = jumped.max(overslept);
        if lost >= STALL { lost } else { 0 }
    }

    /// Shared storage (several servers on PostgreSQL): the deadlines live
    /// in the database, and only the leader reads the due ones and flags
    /// them; a deadline moved by any server is there.
    fn fire_shared(&mut self) -> Result<usize> {
        lock(&self.pending).clear();
        if !self.store.is_leader() {
            self.next_due.store(Millis::MAX, Ordering::Relaxed);
            return Ok(0);
        }
        let now = self.clock.now();
        let lost = self.lost_time();
        if lost > 0 {
            let moved = self.store.extend_due(now)?;
            log::warn!(
                "the server did not run for {:.1} s (stopped, suspended, or its clock jumped): \
                 {moved} deadlines extended by their period, as after a restart",
                lost as f64 / 1000.0
            );
        }
        let mut raised = 0;
        loop {
            let due = self.store.due_services(now - self.grace, DUE_BATCH)?;
            let n = due.len();
            self.counters.fired.fetch_add(n as u64, Ordering::Relaxed);
            if n == 0 {
                break;
            }
            let applied = self.store.mark_overdue(due)?;
            raised += applied.alerts.len();
            if n < DUE_BATCH {
                break;
            }
        }
        if raised > 0 {
            self.outbox.notify();
            log::debug!("{raised} services went offline");
        }
        self.end_silences(now);
        // The lag counts from the earliest deadline not processed yet.
        let next = self
            .store
            .next_due()?
            .map_or(Millis::MAX, |d| d + self.grace);
        self.next_due.store(next, Ordering::Relaxed);
        Ok(raised)
    }

    fn fire(&mut self) -> Result<usize> {
        if self.store.is_shared() {
            return self.fire_shared();
        }
        self.take_pending();
        let now = self.clock.now();
        let lost = self.lost_time();
        if lost > 0 {
            let moved = self.deadlines.resume(now, lost);
            log::warn!(
                "the server did not run for {:.1} s (stopped, suspended, or its clock jumped): \
                 {moved} deadlines extended by their period, as after a restart",
                lost as f64 / 1000.0
            );
        }
        let earliest = self.deadlines.next_deadline();
        let due = self.deadlines.pop_due(now);
        self.counters
            .fired
            .fetch_add(due.len() as u64, Ordering::Relaxed);
        let mut raised = 0;
        if !due.is_empty() {
            let n = due.len();
            match self.store.mark_overdue(due.clone()) {
                Ok(applied) => {
                    raised = applied.alerts.len();
                    if raised > 0 {
                        self.outbox.notify();
                    }
                    log::debug!("{n} deadlines passed, {raised} services went offline");
                    self.stuck_since = None;
                }
                Err(e) => {
                    // The lag counts from the oldest deadline still not
                    // processed, so the page shows an outage as it lasts.
                    if let Some(t) = earliest {
                        self.stuck_since = Some(self.stuck_since.map_or(t, |s| s.min(t)));
                    }
                    // Put them back so they are flagged once storage recovers.
                    for (id, rtime) in due {
                        self.deadlines.set(id, rtime, now + 1000);
                    }
                    self.publish();
                    return Err(e);
                }
            }
        }
        self.end_silences(now);
        self.publish();
        Ok(raised)
    }

    /// Silences that expired by `now`: what they held back and is still
    /// open is told (on shared storage, by the leader: whichever server set
    /// them).
    fn end_silences(&self, now: Millis) {
        match self.store.end_silences(now) {
            Ok(a) if !a.alerts.is_empty() => self.outbox.notify(),
            Ok(_) => {}
            Err(e) => log::error!("could not end the silences that expired: {e}"),
        }
    }

    fn publish(&mut self) {
        let next = self.deadlines.next_deadline().unwrap_or(Millis::MAX);
        let oldest = self.stuck_since.map_or(next, |s| s.min(next));
        self.next_due.store(oldest, Ordering::Relaxed);
    }

    fn may_sleep_until(&self, at: Millis) -> bool {
        may_sleep_until(&self.pending, &self.wake_at, self.grace, at)
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            let now = self.clock.now();
            let wait = match self.deadlines.next_deadline() {
                // Wake just after the deadline: a service is overdue once it has passed.
                Some(at) => (at + 1 - now).clamp(0, MAX_SLEEP),
                None => MAX_SLEEP,
            };
            self.slept_at = (now, self.clock.monotonic());
            self.planned = wait;
            let mut replies = Vec::new();
            let msg = if self.may_sleep_until(now + wait) {
                rx.recv_timeout(Duration::from_millis(wait as u64))
            } else {
                Ok(Msg::Changes)
            };
            self.wake_at.store(Millis::MIN, Ordering::SeqCst);
            let started = Instant::now();
            match msg {
                Ok(Msg::Tick(reply)) => replies.push(reply),
                Ok(Msg::Changes) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            while let Ok(msg) = rx.try_recv() {
                if let Msg::Tick(reply) = msg {
                    replies.push(reply);
                }
            }
            let result = self.fire();
            let busy = started.elapsed().as_micros() as u64;
            let c = &self.counters;
            c.wakeups.fetch_add(1, Ordering::Relaxed);
            c.busy_us.fetch_add(busy, Ordering::Relaxed);
            c.max_busy_us.fetch_max(busy, Ordering::Relaxed);
            if let Err(e) = &result {
                log::error!("supervisor could not flag overdue services: {e}");
            }
            for r in replies {
                let _ = r.send(match &result {
                    Ok(n) => Ok(*n),
                    Err(e) => Err(crate::Error::Storage(e.to_string())),
                });
            }
        }
    }
}

impl Supervisor {
    /// Rebuilds the deadlines from the store and starts the thread. A deadline
    /// that passed while the server was down moves to now + period, so hosts
    /// get one period to reconnect.
    pub fn start(
        store: Arc<dyn Storage>,
        outbox: Arc<Outbox>,
        grace_s: u32,
        clock: Arc<dyn Clock>,
    ) -> Result<Supervisor> {
        let grace = Millis::from(grace_s) * 1000;
        let now = clock.now();
        let mut deadlines = Deadlines::new();
        // Shared storage keeps the deadlines itself (see `fire_shared`).
        let own = match store.is_shared() {
            true => Vec::new(),
            false => store.service_deadlines()?,
        };
        for s in own {
            let due = rules::resumed_deadline(s.rtime, s.period, grace, now);
            deadlines.set(s.service_id, s.rtime, due);
        }
        log::info!("supervising {} services", deadlines.len());
        let next_due = Arc::new(AtomicI64::new(Millis::MAX));
        let counters = Arc::new(Counters::default());
        let pending = Arc::new(Mutex::new(Vec::new()));
        let wake_at = Arc::new(AtomicI64::new(Millis::MIN));
        let mut lp = Loop {
            pending: pending.clone(),
            wake_at: wake_at.clone(),
            counters: counters.clone(),
            deadlines,
            store,
            outbox,
            clock: clock.clone(),
            grace,
            next_due: next_due.clone(),
            stuck_since: None,
            slept_at: (now, clock.monotonic()),
            planned: 0,
        };
        lp.publish();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("overc-supervisor".into())
            .spawn(move || lp.run(rx))?;
        Ok(Supervisor {
            pending,
            wake_at,
            grace,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            next_due,
            clock,
            counters,
        })
    }

    /// Work counters since start.
    pub fn stats(&self) -> SupervisorStats {
        let c = &self.counters;
        SupervisorStats {
            wakeups: c.wakeups.load(Ordering::Relaxed),
            fired: c.fired.load(Ordering::Relaxed),
            busy_us: c.busy_us.load(Ordering::Relaxed),
            max_busy_us: c.max_busy_us.load(Ordering::Relaxed),
        }
    }

    fn send(&self, msg: Msg) {
        if let Some(tx) = lock(&self.tx).as_ref() {
            let _ = tx.send(msg);
        }
    }

    /// Services reported: move their deadlines.
    pub fn changed(&self, changes: Vec<DeadlineChange>) {
        if changes.is_empty() {
            return;
        }
        let earliest = changes.iter().filter_map(|c| c.due).min();
        let mut pending = lock(&self.pending);
        let before = pending.len();
        pending.extend(changes);
        let crowded = before < PENDING_WAKE && pending.len() >= PENDING_WAKE;
        drop(pending);
        // Read after the changes are in: a thread going to sleep meanwhile
        // either saw them or published its time before this reads it.
        let wake_at = self.wake_at.load(Ordering::SeqCst);
        if crowded || earliest.is_some_and(|d| wakes(d, self.grace, wake_at)) {
            self.send(Msg::Changes);
        }
    }

    /// Services deleted: stop supervising them.
    pub fn removed(&self, service_ids: Vec<i64>) {
        // Behind any report of theirs still waiting, so that none of those
        // puts a deleted service back.
        self.changed(
            service_ids
                .into_iter()
                .map(|service_id| DeadlineChange {
                    service_id,
                    rtime: Millis::MAX,
                    due: None,
                })
                .collect(),
        );
    }

    /// Processes everything due at the clock's current time and waits for it;
    /// returns how many services went offline. Tests with a manual clock call
    /// this instead of sleeping.
    pub fn tick(&self) -> Result<usize> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Msg::Tick(reply));
        answer
            .recv()
            .map_err(|_| crate::Error::Storage("the supervisor has stopped".into()))?
    }

    /// Seconds the oldest unprocessed deadline is overdue (0 when keeping up).
    pub fn lag(&self) -> f64 {
        let next = self.next_due.load(Ordering::Relaxed);
        let now = self.clock.now();
        if next == Millis::MAX || next >= now {
            0.0
        } else {
            (now - next) as f64 / 1000.0
        }
    }

    /// Stops the thread.
    pub fn stop(&self) {
        lock(&self.tx).take();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Supervisor` whose thread is a channel the test reads, sleeping
    /// (as far as senders can tell) until `wake_at`.
    fn shell(wake_at: Millis) -> (Supervisor, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel();
        let sup = Supervisor {
            pending: Arc::new(Mutex::new(Vec::new())),
            wake_at: Arc::new(AtomicI64::new(wake_at)),
            grace: 1000,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(None),
            next_due: Arc::new(AtomicI64::new(Millis::MAX)),
            clock: Arc::new(crate::clock::ManualClock::new(0)),
            counters: Arc::new(Counters::default()),
        };
        (sup, rx)
    }

    fn change(service_id: i64, due: Option<Millis>) -> DeadlineChange {
        DeadlineChange {
            service_id,
            rtime: 0,
            due,
        }
    }

    fn woken(rx: &mpsc::Receiver<Msg>) -> usize {
        rx.try_iter().count()
    }

    #[test]
    fn only_a_deadline_before_the_next_wake_up_wakes_the_supervisor() {
        // Sleeping until 61,001: the deadline 60,000 + 1,000 grace it waits for.
        let (sup, rx) = shell(61_001);
        sup.changed(vec![change(1, Some(60_000)), change(2, Some(90_000))]);
        sup.changed(vec![change(3, None)]);
        assert_eq!(woken(&rx), 0, "later or equal deadlines wait for it");
        sup.changed(vec![change(4, Some(59_999))]);
        assert_eq!(woken(&rx), 1, "an earlier deadline wakes it");
        assert_eq!(lock(&sup.pending).len(), 4, "and every change is kept");
        // While it is awake nothing wakes it: it looks before sleeping.
        sup.wake_at.store(Millis::MIN, Ordering::SeqCst);
        sup.changed(vec![change(5, Some(0))]);
        assert_eq!(woken(&rx), 0);
    }

    #[test]
    fn many_waiting_changes_wake_the_supervisor_once() {
        let (sup, rx) = shell(61_001);
        let far: Vec<_> = (0..PENDING_WAKE as i64 - 1)
            .map(|id| change(id, Some(600_000)))
            .collect();
        sup.changed(far);
        assert_eq!(woken(&rx), 0);
        sup.changed(vec![change(-1, Some(600_000)), change(-2, Some(600_000))]);
        assert_eq!(woken(&rx), 1, "the change that fills the list wakes it");
        sup.changed(vec![change(-3, Some(600_000))]);
        assert_eq!(woken(&rx), 0, "once");
    }

    #[test]
    fn the_thread_does_not_sleep_past_a_change_it_was_not_woken_for() {
        let pending = Mutex::new(vec![change(1, Some(90_000))]);
        let wake_at = AtomicI64::new(Millis::MIN);
        assert!(may_sleep_until(&pending, &wake_at, 1000, 91_001));
        assert_eq!(wake_at.load(Ordering::SeqCst), 91_001, "published");
        // A sender that read the old wake-up time (the thread was awake) and
        // left an earlier deadline behind.
        lock(&pending).push(change(2, Some(30_000)));
        assert!(!may_sleep_until(&pending, &wake_at, 1000, 91_001));
        assert!(may_sleep_until(&pending, &wake_at, 1000, 31_001));
        let full = vec![change(3, Some(900_000)); PENDING_WAKE];
        let pending = Mutex::new(full);
        assert!(!may_sleep_until(&pending, &wake_at, 1000, 91_001));
    }
}
