//! The deadline heap of overdue detection: which services are due, at a
//! cost that grows with the services due, not with all of them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::clock::Millis;
use crate::idmap::IdMap;

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

    /// After the server did not run for `lost` ms, or its clock jumped that
    /// far: every deadline before `now + lost` moves to `now` + its period
    /// and grace, as at start, so hosts that could not reach the server get
    /// one period to do so. Returns how many moved.
    pub fn resume(&mut self, now: Millis, lost: Millis) -> usize {
        let before = now.saturating_add(lost);
        let moved: Vec<(i64, Millis, Millis)> = self
            .current
            .iter()
            .filter(|(_, (due, _))| *due < before)
            .map(|(&id, &(due, rtime))| (id, rtime, now.saturating_add(due - rtime)))
            .filter(|&(id, _, new)| self.current.get(&id).is_some_and(|&(d, _)| new > d))
            .collect();
        for &(id, rtime, new) in &moved {
            self.set(id, rtime, new);
        }
        moved.len()
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
    fn resuming_moves_the_deadlines_that_passed_or_come_within_the_lost_time() {
        let mut d = Deadlines::new();
        d.set(1, 0, 60_000); // passed while the server did not run
        d.set(2, 50_000, 120_000); // due within the lost time after now
        d.set(3, 90_000, 500_000); // later: untouched
        assert_eq!(d.resume(100_000, 30_000), 2);
        assert_eq!(d.pop_due(159_999), vec![]);
        assert_eq!(d.pop_due(160_001), vec![(1, 0)], "now + its 60 s");
        assert_eq!(d.pop_due(170_001), vec![(2, 50_000)], "now + its 70 s");
        assert_eq!(d.next_deadline(), Some(500_000));
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
