//! Overdue detection driven by deadlines.
//!
//! [`Deadlines`] is the pure part: a min-heap of (deadline, service) with
//! lazy deletion, so each wake-up costs in proportion to the services that
//! are due, not to all of them. [`Supervisor`] is the thin shell: a thread
//! that sleeps until the next deadline or the next report, asks the store to
//! flag what is due (raising `plugin/offline`), and wakes the outbox.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::alerts::Outbox;
use crate::clock::{Clock, Millis};
use crate::error::Result;
use crate::idmap::IdMap;
use crate::store::{DeadlineChange, Store, lock};

/// Deadlines of all supervised services.
///
/// A report normally moves a deadline later, which only updates the map: the
/// heap entry keeps the earlier time, and when it comes up the entry is put
/// back with the service's current deadline. So a report costs a map update,
/// and the heap holds about one entry per service.
#[derive(Debug, Default)]
pub struct Deadlines {
    /// (deadline, service), at or before the service's current deadline.
    heap: BinaryHeap<Reverse<(Millis, i64)>>,
    /// service → (deadline, report time).
    current: IdMap<(Millis, Millis)>,
}

impl Deadlines {
    /// An empty set.
    pub fn new() -> Deadlines {
        Deadlines::default()
    }

    /// Sets a service's deadline after a report at `rtime`. An update older
    /// than the one already known (reordered delivery) is ignored.
    pub fn set(&mut self, service_id: i64, rtime: Millis, deadline: Millis) {
        let earlier = match self.current.get(&service_id) {
            Some(&(_, known)) if known > rtime => return,
            Some(&(due, _)) => deadline < due,
            None => true,
        };
        self.current.insert(service_id, (deadline, rtime));
        if earlier {
            // The entry already in the heap (if any) would come up too late.
            self.heap.push(Reverse((deadline, service_id)));
            // Entries of removed services and superseded earlier ones stay
            // until popped; rebuild when they outnumber the live ones so
            // memory stays proportional to the services.
            if self.heap.len() > 2 * self.current.len() + 1024 {
                self.heap = self
                    .current
                    .iter()
                    .map(|(&id, &(d, _))| Reverse((d, id)))
                    .collect();
            }
        }
    }

    /// Stops supervising a service (deleted, or flagged overdue).
    pub fn remove(&mut self, service_id: i64) {
        self.current.remove(&service_id);
    }

    /// Pops heap entries that are stale (service gone) or early (its deadline
    /// moved later: put back with the current one) until the top is live.
    fn settle_top(&mut self) -> Option<(Millis, i64)> {
        while let Some(&Reverse((due, id))) = self.heap.peek() {
            match self.current.get(&id) {
                Some(&(current, _)) if current == due => return Some((due, id)),
                Some(&(current, _)) => {
                    self.heap.pop();
                    if current > due {
                        self.heap.push(Reverse((current, id)));
                    }
                    // current < due: a newer, earlier entry is in the heap.
                }
                None => {
                    self.heap.pop();
                }
            }
        }
        None
    }

    /// The earliest live deadline.
    pub fn next_deadline(&mut self) -> Option<Millis> {
        self.settle_top().map(|(due, _)| due)
    }

    /// Removes and returns `(service, report time)` of every deadline before `now`.
    pub fn pop_due(&mut self, now: Millis) -> Vec<(i64, Millis)> {
        let mut due = Vec::new();
        while let Some((deadline, id)) = self.settle_top() {
            if deadline >= now {
                break;
            }
            self.heap.pop();
            if let Some((_, rtime)) = self.current.remove(&id) {
                due.push((id, rtime));
            }
        }
        due
    }

    /// Number of supervised services.
    pub fn len(&self) -> usize {
        self.current.len()
    }

    /// True when nothing is supervised.
    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }
}

enum Msg {
    /// New entries in the shared `pending` list.
    Changes,
    Remove(Vec<i64>),
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

/// The supervisor thread.
pub struct Supervisor {
    /// Deadline changes not yet taken by the thread; one wake-up takes them
    /// all, so a burst of reports costs one wake-up, not one each.
    pending: Arc<Mutex<Vec<DeadlineChange>>>,
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
    deadlines: Deadlines,
    store: Arc<Store>,
    outbox: Arc<Outbox>,
    clock: Arc<dyn Clock>,
    grace: Millis,
    next_due: Arc<AtomicI64>,
    counters: Arc<Counters>,
    /// Deadline of the oldest overdue service not flagged because storage failed.
    stuck_since: Option<Millis>,
}

impl Loop {
    fn apply(&mut self, msg: Msg) -> Option<mpsc::SyncSender<Result<usize>>> {
        match msg {
            Msg::Changes => None,
            Msg::Remove(ids) => {
                for id in ids {
                    self.deadlines.remove(id);
                }
                None
            }
            Msg::Tick(reply) => Some(reply),
        }
    }

    fn take_pending(&mut self) {
        let changes = std::mem::take(&mut *lock(&self.pending));
        for c in changes {
            match c.due {
                Some(due) => self.deadlines.set(c.service_id, c.rtime, due + self.grace),
                None => self.deadlines.remove(c.service_id),
            }
        }
    }

    fn fire(&mut self) -> Result<usize> {
        self.take_pending();
        let now = self.clock.now();
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
        self.publish();
        Ok(raised)
    }

    fn publish(&mut self) {
        let next = self.deadlines.next_deadline().unwrap_or(Millis::MAX);
        let oldest = self.stuck_since.map_or(next, |s| s.min(next));
        self.next_due.store(oldest, Ordering::Relaxed);
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            let wait = match self.deadlines.next_deadline() {
                // Wake just after the deadline: a service is overdue once it has passed.
                Some(at) => (at + 1 - self.clock.now()).clamp(0, 60_000),
                None => 60_000,
            };
            let mut replies = Vec::new();
            let msg = rx.recv_timeout(Duration::from_millis(wait as u64));
            let started = Instant::now();
            match msg {
                Ok(msg) => replies.extend(self.apply(msg)),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            while let Ok(msg) = rx.try_recv() {
                replies.extend(self.apply(msg));
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
        store: Arc<Store>,
        outbox: Arc<Outbox>,
        grace_s: u32,
        clock: Arc<dyn Clock>,
    ) -> Result<Supervisor> {
        let grace = Millis::from(grace_s) * 1000;
        let now = clock.now();
        let mut deadlines = Deadlines::new();
        for s in store.service_deadlines()? {
            let mut due = s.rtime + s.period * 1000 + grace;
            if due < now {
                due = now + s.period * 1000 + grace;
            }
            deadlines.set(s.service_id, s.rtime, due);
        }
        log::info!("supervising {} services", deadlines.len());
        let next_due = Arc::new(AtomicI64::new(Millis::MAX));
        let counters = Arc::new(Counters::default());
        let pending = Arc::new(Mutex::new(Vec::new()));
        let mut lp = Loop {
            pending: pending.clone(),
            counters: counters.clone(),
            deadlines,
            store,
            outbox,
            clock: clock.clone(),
            grace,
            next_due: next_due.clone(),
            stuck_since: None,
        };
        lp.publish();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("overc-supervisor".into())
            .spawn(move || lp.run(rx))?;
        Ok(Supervisor {
            pending,
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
        let mut pending = lock(&self.pending);
        let wake = pending.is_empty();
        pending.extend(changes);
        drop(pending);
        if wake {
            self.send(Msg::Changes);
        }
    }

    /// Services deleted: stop supervising them.
    pub fn removed(&self, service_ids: Vec<i64>) {
        self.send(Msg::Remove(service_ids));
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

    #[test]
    fn pops_only_what_is_due_in_deadline_order() {
        let mut d = Deadlines::new();
        d.set(1, 0, 3000);
        d.set(2, 0, 1000);
        d.set(3, 0, 2000);
        assert_eq!(d.next_deadline(), Some(1000));
        assert_eq!(
            d.pop_due(1000),
            vec![],
            "exactly at the deadline is not late"
        );
        assert_eq!(d.pop_due(2001), vec![(2, 0), (3, 0)]);
        assert_eq!(d.len(), 1);
        assert_eq!(d.next_deadline(), Some(3000));
    }

    #[test]
    fn a_new_report_replaces_the_old_deadline() {
        let mut d = Deadlines::new();
        d.set(1, 0, 1000);
        d.set(1, 500, 5000);
        assert_eq!(d.pop_due(2000), vec![]);
        assert_eq!(d.next_deadline(), Some(5000));
        // A stale update arriving late is ignored.
        d.set(1, 100, 1500);
        assert_eq!(d.pop_due(2000), vec![]);
        d.remove(1);
        assert_eq!(d.next_deadline(), None);
        assert!(d.is_empty());
    }

    #[test]
    fn a_shorter_period_brings_the_deadline_forward() {
        let mut d = Deadlines::new();
        d.set(1, 0, 60_000);
        d.set(1, 1000, 6_000);
        assert_eq!(d.next_deadline(), Some(6_000));
        assert_eq!(d.pop_due(6_001), vec![(1, 1000)]);
        // The superseded later entry does not fire again.
        assert_eq!(d.pop_due(120_000), vec![]);
        assert!(d.is_empty());
    }

    #[test]
    fn regular_reports_keep_about_one_heap_entry_per_service() {
        let mut d = Deadlines::new();
        for i in 0..1000 {
            for id in 0..50 {
                d.set(id, i * 1000, i * 1000 + 5000);
            }
            assert_eq!(d.pop_due(i * 1000), vec![]);
        }
        assert!(d.heap.len() <= 50, "{}", d.heap.len());
        assert_eq!(d.next_deadline(), Some(999_000 + 5000));
        let due = d.pop_due(1_000_000 + 5000);
        assert_eq!(due.len(), 50);
        assert!(due.iter().all(|&(_, rtime)| rtime == 999_000));
    }

    #[test]
    fn replaced_entries_do_not_pile_up() {
        let mut d = Deadlines::new();
        for i in 0..100_000 {
            d.set(i % 10, i, i + 60_000);
        }
        assert_eq!(d.len(), 10);
        assert!(d.heap.len() <= 2 * 10 + 1025, "{}", d.heap.len());
    }
}
