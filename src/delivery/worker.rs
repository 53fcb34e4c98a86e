//! One plugin's delivery loop: its deliveries in order, grouping, backoff,
//! failure streaks and reminders.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use super::{BATCH, DeliveryReport, FIRST_BACKOFF, MAX_BACKOFF, RouterMsg};
use crate::clock::{Clock, Millis};
use crate::error::{Error, Result};
use crate::notification::{Notification, Notifier};
use crate::policy::{self, Grouped, PluginPolicy, Problem, ReminderState};
use crate::rules;
use crate::store::{DeliveryOutcome, PendingDelivery, Storage};

fn backoff(attempts: u32) -> Millis {
    FIRST_BACKOFF
        .saturating_mul(1 << attempts.min(20))
        .min(MAX_BACKOFF)
}

#[derive(Debug, Default)]
pub(super) struct Counts {
    pub(super) delivered: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) given_up: AtomicU64,
}

pub(super) enum Msg {
    /// New deliveries may be waiting.
    Notify,
    /// Deliver what is due now and answer.
    Now(mpsc::SyncSender<Result<DeliveryReport>>),
}

/// One plugin's delivery loop.
pub(super) struct Worker {
    pub(super) name: String,
    pub(super) notifier: Arc<dyn Notifier>,
    pub(super) storage: Arc<dyn Storage>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) retention: Millis,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) counts: Arc<Counts>,
    /// Wakes the router: this worker raised an alert.
    pub(super) router: mpsc::Sender<RouterMsg>,
    /// In a failure streak: its failure alert is raised.
    pub(super) failing: bool,
    /// Alerts the plugin took whose delivery could not be recorded yet;
    /// recorded first in the next pass instead of being sent again.
    pub(super) unrecorded: Vec<i64>,
    /// When the delivery at the head of the queue may be tried again.
    pub(super) next_try: Option<Millis>,
    /// `group-wait` in seconds (0: every alert alone).
    pub(super) group_wait: u64,
    /// Its routing and `repeat`.
    pub(super) policy: PluginPolicy,
    /// Open problems it was reminded of: service → (problem, since, last
    /// reminder). In memory: after a restart a problem gets at most one
    /// reminder early.
    pub(super) reminded: HashMap<i64, (Problem, Millis, Option<Millis>)>,
    /// When the next reminder is due.
    pub(super) next_reminder: Option<Millis>,
}

impl Worker {
    fn record(&self, alert_id: i64, outcome: DeliveryOutcome) -> Result<()> {
        self.storage
            .record_delivery(&self.name, alert_id, outcome)
            .map(drop)
    }

    /// The alerts sent with `head` under `group-wait`: those about the
    /// same server raised before its window closes, from `pending` (in
    /// order, the head first). `None` while the window is open.
    fn window(
        &self,
        head: &Notification,
        pending: &[PendingDelivery],
        now: Millis,
        ignore_schedule: bool,
    ) -> Option<Vec<PendingDelivery>> {
        let Some(server) = head.server.as_deref().filter(|_| self.group_wait > 0) else {
            return Some(Vec::new());
        };
        let end = policy::window_end(head.ctime, self.group_wait);
        if now < end && !ignore_schedule {
            return None;
        }
        Some(
            pending
                .iter()
                .filter(|p| {
                    p.notification.server.as_deref() == Some(server) && p.notification.ctime < end
                })
                .cloned()
                .collect(),
        )
    }

    /// Delivers the plugin's pending deliveries in order, up to the first it
    /// refuses (or one not yet due for a retry, unless `ignore_schedule`);
    /// with `group-wait`, a server's alerts of one window go as one.
    fn pass(&mut self, ignore_schedule: bool) -> Result<DeliveryReport> {
        let mut report = DeliveryReport::default();
        // On shared storage only the leader delivers.
        if !self.storage.is_leader() {
            return Ok(report);
        }
        while let Some(&id) = self.unrecorded.first() {
            self.record(id, DeliveryOutcome::Delivered)?;
            self.unrecorded.remove(0);
        }
        self.next_try = None;
        loop {
            let pending = self.storage.pending_deliveries(&self.name, BATCH)?;
            let more = pending.len() == BATCH;
            let mut sent = HashSet::new();
            for (i, p) in pending.iter().enumerate() {
                // A leader deposed in the middle of a pass stops at once:
                // the new one delivers the rest (what this one claimed,
                // when the claims end), and a plugin runs on one server.
                if self.stop.load(Ordering::Relaxed) || !self.storage.is_leader() {
                    return Ok(report);
                }
                if sent.contains(&p.notification.id) {
                    continue;
                }
                let now = self.clock.now();
                if !ignore_schedule && p.next_attempt > now {
                    self.next_try = Some(p.next_attempt);
                    return Ok(report);
                }
                let Some(mut members) =
                    self.window(&p.notification, &pending[i..], now, ignore_schedule)
                else {
                    self.next_try = Some(policy::window_end(p.notification.ctime, self.group_wait));
                    return Ok(report);
                };
                let alert = if members.len() > 1 {
                    let server = p.notification.server.clone().unwrap_or_default();
                    let services = self.storage.services_with_period(&server)?;
                    let notifications = members.iter().map(|m| m.notification.clone()).collect();
                    match policy::group(&server, notifications, services) {
                        Some(Grouped::Group(g)) => Notification::from(g),
                        _ => p.notification.clone(),
                    }
                } else {
                    members = vec![p.clone()];
                    p.notification.clone()
                };
                let ids: Vec<i64> = members.iter().map(|m| m.notification.id).collect();
                sent.extend(ids.iter().copied());
                match self.notifier.notify(&alert) {
                    Ok(()) => {
                        self.counts.delivered.fetch_add(1, Ordering::Relaxed);
                        if std::mem::take(&mut self.failing) {
                            log::info!("alert plugin `{}` works again", self.name);
                        }
                        for &id in &ids {
                            if let Err(e) = self.record(id, DeliveryOutcome::Delivered) {
                                self.unrecorded.extend(ids.iter().filter(|&&i| i >= id));
                                return Err(e);
                            }
                            report.delivered += 1;
                        }
                    }
                    Err(error) if now - alert.ctime >= self.retention => {
                        self.counts.given_up.fetch_add(1, Ordering::Relaxed);
                        log::warn!(
                            "alert {}: gave up on plugin `{}` after {} attempts: {error}",
                            alert.id,
                            self.name,
                            p.notification.attempts + 1
                        );
                        for &id in &ids {
                            self.record(
                                id,
                                DeliveryOutcome::GivenUp {
                                    error: error.clone(),
                                },
                            )?;
                        }
                    }
                    Err(error) => {
                        self.counts.failed.fetch_add(1, Ordering::Relaxed);
                        let retry_at = now + backoff(p.notification.attempts);
                        log::warn!(
                            "alert {}: plugin `{}` failed ({error}); retrying in {} s",
                            alert.id,
                            self.name,
                            (retry_at - now) / 1000
                        );
                        if !self.failing {
                            // One alert per failure streak, not per retry.
                            self.storage
                                .system_alert(rules::on_plugin_failure(&self.name, &error))?;
                            self.failing = true;
                            let _ = self.router.send(RouterMsg::Notify);
                        }
                        for &id in &ids {
                            self.record(
                                id,
                                DeliveryOutcome::Failed {
                                    error: error.clone(),
                                    retry_at,
                                },
                            )?;
                            report.deferred += 1;
                        }
                        self.next_try = Some(retry_at);
                        return Ok(report);
                    }
                }
            }
            if !more {
                return Ok(report);
            }
        }
    }

    /// Sends the reminders due (`repeat`) of the open problems its routing
    /// selects, unless acknowledged or silenced.
    fn remind(&mut self) -> Result<usize> {
        let Some(repeat) = self.policy.repeat else {
            return Ok(0);
        };
        if !self.storage.is_leader() {
            return Ok(0);
        }
        let now = self.clock.now();
        let mut sent = 0;
        let mut open = HashSet::new();
        self.next_reminder = None;
        for p in self.storage.open_problems()? {
            let Some(problem) = Problem::of(p.state, true, p.overdue) else {
                continue;
            };
            open.insert(p.service_id);
            let known = self
                .reminded
                .entry(p.service_id)
                .or_insert((problem, p.since, None));
            if (known.0, known.1) != (problem, p.since) {
                *known = (problem, p.since, None);
            }
            let state = ReminderState {
                problem,
                since: p.since,
                last_reminder: known.2,
                acked: p.acked,
                silenced: p.silenced,
            };
            if state.is_due(Some(repeat), now) {
                let event = state.reminder(now);
                let reminder = Notification {
                    server: Some(p.server.clone()),
                    service: Some(p.service.clone()),
                    channel: event.channel.into(),
                    event: event.event.into(),
                    message: event.message.into_owned(),
                    severity: event.severity.as_str().into(),
                    state: p.state.map(|s| s.as_str().into()),
                    info: Some(p.info.clone()),
                    ctime: now,
                    ..Notification::default()
                };
                if self.policy.route.routes(&reminder) {
                    match self.notifier.notify(&reminder) {
                        Ok(()) => sent += 1,
                        Err(e) => {
                            log::warn!("reminder through plugin `{}` failed: {e}", self.name);
                            continue;
                        }
                    }
                }
                known.2 = Some(now);
            }
            let next = ReminderState {
                last_reminder: known.2,
                ..state
            }
            .next_due(Some(repeat));
            self.next_reminder = match (self.next_reminder, next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        self.reminded.retain(|id, _| open.contains(id));
        Ok(sent)
    }

    pub(super) fn run(mut self, rx: mpsc::Receiver<Msg>) {
        // Passes that failed on storage in a row; they back off so that a
        // broken disk does not turn into a storm of plugin runs.
        let mut failures = 0u32;
        let mut first = true;
        loop {
            let next = match (self.next_try, self.next_reminder) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut wait = match next {
                Some(at) => Duration::from_millis((at - self.clock.now()).clamp(0, 60_000) as u64),
                None => Duration::from_secs(60),
            };
            if failures > 0 {
                wait = wait.max(Duration::from_millis(500 << failures.min(7)));
            }
            let mut replies = Vec::new();
            if !first {
                match rx.recv_timeout(wait) {
                    Ok(Msg::Notify) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Ok(Msg::Now(reply)) => replies.push(reply),
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
                // Collapse a burst of notifications into one pass.
                while let Ok(m) = rx.try_recv() {
                    if let Msg::Now(r) = m {
                        replies.push(r);
                    }
                }
            }
            let result = self
                .pass(std::mem::take(&mut first))
                .and_then(|report| self.remind().map(|_| report));
            match &result {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    log::error!("delivery to plugin `{}` failed: {e}", self.name);
                }
            }
            for r in replies {
                let _ = r.send(match &result {
                    Ok(rep) => Ok(*rep),
                    Err(e) => Err(Error::Storage(e.to_string())),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), 10_000);
        assert_eq!(backoff(1), 20_000);
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
