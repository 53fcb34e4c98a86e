//! At-least-once delivery of alerts, per plugin, from the stored outbox.
//!
//! Every alert is stored first. The router gives each new alert one
//! delivery per plugin that [`rules::routes_to`] selects, written to
//! storage; then each plugin's worker thread takes its own deliveries in
//! alert order. A plugin that refuses one is offered it again with growing
//! backoff, before anything later (so it gets its alerts in order), while the
//! other plugins go on; a slow or hung plugin delays only itself. A failure
//! streak raises one `alert-plugin/failed` alert, sent through the others. A
//! restart tries every pending delivery again at once.

mod notifiers;
mod worker;

use worker::{Counts, Msg, Worker};

pub use notifiers::{
    CommandNotifier, NamedNotifier, PluginOutcome, plugin_notifiers, send_test_alert,
};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::{Clock, Millis};
use crate::error::{Error, Result};
use crate::notification::Notification;
use crate::policy::{self, PluginPolicy, Route};
use crate::rules;
use crate::store::{Storage, lock};

/// First retry delay after a plugin failed; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Millis = 10_000;
/// Longest delay between delivery attempts.
pub const MAX_BACKOFF: Millis = 3_600_000;

/// Deliveries read from storage at a time.
const BATCH: usize = 100;

/// Summary of one delivery pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Deliveries (alert to one plugin) that succeeded.
    pub delivered: usize,
    /// Deliveries a plugin refused; retried later.
    pub deferred: usize,
}

impl std::ops::AddAssign for DeliveryReport {
    fn add_assign(&mut self, other: DeliveryReport) {
        self.delivered += other.delivered;
        self.deferred += other.deferred;
    }
}

/// Delivery counters of one plugin since start, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginStats {
    /// The plugin's name.
    pub plugin: String,
    /// Alerts it took.
    pub delivered: u64,
    /// Attempts it refused.
    pub failed: u64,
    /// Alerts given up on (refused for longer than alerts are kept).
    pub given_up: u64,
}

/// How often a leader on shared storage has its workers look for
/// deliveries another server claimed and let go.
const CLAIM_RECHECK: Duration = Duration::from_secs(5);

enum RouterMsg {
    Notify,
    Now(mpsc::SyncSender<Result<DeliveryReport>>),
    /// The workers hold senders too: stopping cannot wait for them to go.
    Stop,
}

struct WorkerHandle {
    name: String,
    tx: mpsc::Sender<Msg>,
    thread: JoinHandle<()>,
    counts: Arc<Counts>,
}

/// Gives new alerts their deliveries and wakes the workers.
struct Router {
    storage: Arc<dyn Storage>,
    plugins: Vec<(String, PluginPolicy)>,
    workers: Vec<mpsc::Sender<Msg>>,
}

impl Router {
    /// The plugins an alert goes to: those whose routing selects it, and
    /// for a recovery also those that were sent the problem it ends.
    fn plugins_for(&self, alert: &Notification) -> Result<Vec<String>> {
        let mut to = Vec::new();
        for (name, policy) in &self.plugins {
            if !rules::routes_to(alert, name) {
                continue;
            }
            let routed = if policy::is_recovery(alert) && policy.route != Route::default() {
                let got_problem = self.storage.got_problem(name, alert.id)?;
                policy::routes_recovery(&policy.route, alert, got_problem)
            } else {
                policy.route.routes(alert)
            };
            if routed {
                to.push(name.clone());
            }
        }
        Ok(to)
    }

    /// Routes every unrouted alert; true when there were any.
    fn route(&self) -> Result<bool> {
        let mut any = false;
        if !self.storage.is_leader() {
            return Ok(false);
        }
        loop {
            let alerts = self.storage.unrouted(500)?;
            if alerts.is_empty() {
                break;
            }
            any = true;
            let mut routes = Vec::with_capacity(alerts.len());
            for a in &alerts {
                log::info!("alert {}: {}", a.id, a.text().replace('\n', " | "));
                if policy::is_recovery(a) && !routes.is_empty() {
                    // Whether a plugin got the problem may be decided in
                    // this very batch: write what is decided first.
                    self.storage.route(std::mem::take(&mut routes))?;
                }
                routes.push((a.id, self.plugins_for(a)?));
            }
            self.storage.route(routes)?;
        }
        if any {
            for w in &self.workers {
                let _ = w.send(Msg::Notify);
            }
        }
        Ok(any)
    }

    /// Routes, then has every worker deliver what is due, until no new alert
    /// (a plugin's failure) was raised meanwhile.
    fn now(&self) -> Result<DeliveryReport> {
        let mut report = DeliveryReport::default();
        for _ in 0..4 {
            self.route()?;
            let answers: Vec<_> = self
                .workers
                .iter()
                .map(|w| {
                    let (reply, answer) = mpsc::sync_channel(1);
                    let _ = w.send(Msg::Now(reply));
                    answer
                })
                .collect();
            for a in answers {
                report += a
                    .recv()
                    .map_err(|_| Error::Storage("a delivery worker has stopped".into()))??;
            }
            if self.storage.unrouted(1)?.is_empty() {
                break;
            }
        }
        Ok(report)
    }

    fn run(self, rx: mpsc::Receiver<RouterMsg>) {
        // Other servers on shared storage raise alerts too, without telling
        // this one: the leader looks for them every second.
        let every = match self.storage.is_shared() {
            true => Duration::from_secs(1),
            false => Duration::from_secs(60),
        };
        let mut was_leader = false;
        let mut nudged = std::time::Instant::now();
        loop {
            let leader = self.storage.is_leader();
            // Deliveries the last leader left pending are ours now; those it
            // still claims are free when its claims end, so look again now
            // and then.
            let nudge = leader
                && self.storage.is_shared()
                && (!was_leader || nudged.elapsed() >= CLAIM_RECHECK);
            if nudge {
                nudged = std::time::Instant::now();
                for w in &self.workers {
                    let _ = w.send(Msg::Notify);
                }
            }
            was_leader = leader;
            let reply = match rx.recv_timeout(every) {
                Ok(RouterMsg::Notify) | Err(mpsc::RecvTimeoutError::Timeout) => None,
                Ok(RouterMsg::Now(reply)) => Some(reply),
                Ok(RouterMsg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut replies: Vec<_> = reply.into_iter().collect();
            // A stop among the messages drained here must not be lost: the
            // router would run on, and `stop` wait for it forever.
            let mut stopping = false;
            while let Ok(m) = rx.try_recv() {
                match m {
                    RouterMsg::Now(r) => replies.push(r),
                    RouterMsg::Notify => {}
                    RouterMsg::Stop => stopping = true,
                }
            }
            if stopping {
                for r in replies {
                    let _ = r.send(Err(Error::Storage("delivery has stopped".into())));
                }
                break;
            }
            if replies.is_empty() {
                if let Err(e) = self.route() {
                    log::error!("alert routing failed: {e}");
                }
                continue;
            }
            let result = self.now();
            for r in replies {
                let _ = r.send(match &result {
                    Ok(rep) => Ok(*rep),
                    Err(e) => Err(Error::Storage(e.to_string())),
                });
            }
        }
    }
}

/// The delivery threads: a router and one worker per plugin.
pub struct Outbox {
    stop: Arc<AtomicBool>,
    router: Mutex<Option<(mpsc::Sender<RouterMsg>, JoinHandle<()>)>>,
    workers: Mutex<Vec<WorkerHandle>>,
    stats: Vec<(String, Arc<Counts>)>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    /// Starts delivering: routes what is unrouted and tries every pending
    /// delivery at once (after a restart that includes what a crash left).
    /// Deliveries refused for `retention_days` are given up; a server's
    /// alerts within `group_wait` seconds of its first go as one.
    ///
    /// # Errors
    /// When a thread cannot be started, or two notifiers share a name.
    pub fn start(
        storage: Arc<dyn Storage>,
        notifiers: Vec<NamedNotifier>,
        retention_days: u32,
        group_wait: u64,
        clock: Arc<dyn Clock>,
    ) -> Result<Outbox> {
        let mut names: Vec<&str> = notifiers.iter().map(|n| n.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::Config(format!(
                "two alert plugins are named `{}`",
                w[0]
            )));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (router_tx, router_rx) = mpsc::channel();
        let mut workers = Vec::new();
        let plugins = notifiers
            .iter()
            .map(|n| (n.name.clone(), n.policy.clone()))
            .collect();
        for n in notifiers {
            let counts = Arc::new(Counts::default());
            let (tx, rx) = mpsc::channel();
            let worker = Worker {
                name: n.name.clone(),
                notifier: n.notifier,
                storage: storage.clone(),
                clock: clock.clone(),
                retention: Millis::from(retention_days) * 86_400_000,
                stop: stop.clone(),
                counts: counts.clone(),
                router: router_tx.clone(),
                failing: false,
                unrecorded: Vec::new(),
                next_try: None,
                group_wait,
                policy: n.policy.clone(),
                reminded: HashMap::new(),
                next_reminder: None,
            };
            let thread = std::thread::Builder::new()
                .name(format!("overc-alert-{}", n.name))
                .spawn(move || worker.run(rx))?;
            workers.push(WorkerHandle {
                name: n.name,
                tx,
                thread,
                counts,
            });
        }
        let router = Router {
            storage,
            plugins,
            workers: workers.iter().map(|w| w.tx.clone()).collect(),
        };
        // Route what waits before the workers' first pass ends.
        if let Err(e) = router.route() {
            log::error!("alert routing failed: {e}");
        }
        let thread = std::thread::Builder::new()
            .name("overc-router".into())
            .spawn(move || router.run(router_rx))?;
        Ok(Outbox {
            stop,
            stats: workers
                .iter()
                .map(|w| (w.name.clone(), w.counts.clone()))
                .collect(),
            router: Mutex::new(Some((router_tx, thread))),
            workers: Mutex::new(workers),
        })
    }

    /// Deliveries made since start, all plugins together.
    pub fn delivered(&self) -> u64 {
        self.stats
            .iter()
            .map(|(_, c)| c.delivered.load(Ordering::Relaxed))
            .sum()
    }

    /// Delivery counters per plugin since start.
    pub fn plugin_stats(&self) -> Vec<PluginStats> {
        self.stats
            .iter()
            .map(|(plugin, c)| PluginStats {
                plugin: plugin.clone(),
                delivered: c.delivered.load(Ordering::Relaxed),
                failed: c.failed.load(Ordering::Relaxed),
                given_up: c.given_up.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// New alerts are stored.
    pub fn notify(&self) {
        if let Some((tx, _)) = lock(&self.router).as_ref() {
            let _ = tx.send(RouterMsg::Notify);
        }
    }

    /// Routes and delivers everything due now, and waits for it.
    ///
    /// # Errors
    /// When storage failed, or delivery has stopped.
    pub fn deliver_now(&self) -> Result<DeliveryReport> {
        let (reply, answer) = mpsc::sync_channel(1);
        if let Some((tx, _)) = lock(&self.router).as_ref() {
            let _ = tx.send(RouterMsg::Now(reply));
        }
        answer
            .recv()
            .map_err(|_| Error::Storage("delivery has stopped".into()))?
    }

    /// Finishes the deliveries at hand and stops; pending ones stay stored
    /// for the next start.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some((tx, thread)) = lock(&self.router).take() {
            let _ = tx.send(RouterMsg::Stop);
            let _ = thread.join();
        }
        for w in lock(&self.workers).drain(..) {
            drop(w.tx);
            let _ = w.thread.join();
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::{Store, StoreOptions};

    /// Regression: a stop that arrived right behind another message was
    /// drained with it and lost; the router ran on, and `stop`, which holds
    /// the sender while it joins the thread, waited forever.
    #[test]
    fn a_stop_queued_behind_a_notify_stops_the_router() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_000_000));
        let store = Store::open_in_memory(&StoreOptions::default(), clock).unwrap();
        let router = Router {
            storage: Arc::new(store),
            plugins: Vec::new(),
            workers: Vec::new(),
        };
        let (tx, rx) = mpsc::channel();
        tx.send(RouterMsg::Notify).unwrap();
        tx.send(RouterMsg::Stop).unwrap();
        let (done, stopped) = mpsc::channel();
        std::thread::spawn(move || {
            router.run(rx);
            let _ = done.send(());
        });
        // The bound only turns the old hang into a failure; the router
        // stops at once.
        let got = stopped.recv_timeout(Duration::from_secs(30));
        drop(tx);
        assert!(got.is_ok(), "the router went on after a stop");
    }
}
