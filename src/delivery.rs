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

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::{Clock, Millis};
use crate::command::{self, CommandSpec, Exit};
use crate::config::{AlertPluginConfig, PluginKind};
use crate::error::{Error, Result};
use crate::notification::{Notification, Notifier};
use crate::policy::{self, Grouped, PluginPolicy, Problem, ReminderState, Route};
use crate::rules;
use crate::store::{DeliveryOutcome, PendingDelivery, Storage, lock};
use crate::webhook::WebhookNotifier;

/// First retry delay after a plugin failed; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Millis = 10_000;
/// Longest delay between delivery attempts.
pub const MAX_BACKOFF: Millis = 3_600_000;

/// Deliveries read from storage at a time.
const BATCH: usize = 100;

/// A notifier with the name it is configured under (`[alert:NAME]`) and
/// its routing and reminders.
#[derive(Clone)]
pub struct NamedNotifier {
    /// Its name: deliveries are recorded under it.
    pub name: String,
    /// What takes the notifications.
    pub notifier: Arc<dyn Notifier>,
    /// Which alerts it gets, and its reminders (default: all, none).
    pub policy: PluginPolicy,
}

impl NamedNotifier {
    /// A notifier of an application's own under `name`: every alert, no
    /// reminders (the default policy).
    pub fn new(name: &str, notifier: impl Notifier + 'static) -> NamedNotifier {
        NamedNotifier {
            name: name.to_owned(),
            notifier: Arc::new(notifier),
            policy: PluginPolicy::default(),
        }
    }
}

impl std::fmt::Debug for NamedNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedNotifier")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// An alert plugin command: runs with the alert's text on stdin and its
/// fields in `OVERC_*` variables; exit code 0 means it took the alert.
#[derive(Debug, Clone)]
pub struct CommandNotifier {
    argv: Vec<String>,
    cwd: PathBuf,
    timeout: Duration,
}

impl CommandNotifier {
    /// The command `argv`, run in `cwd`, killed after `timeout`.
    pub fn new(argv: Vec<String>, cwd: &Path, timeout: Duration) -> CommandNotifier {
        CommandNotifier {
            argv,
            cwd: cwd.to_path_buf(),
            timeout,
        }
    }
}

impl Notifier for CommandNotifier {
    fn notify(&self, alert: &Notification) -> std::result::Result<(), String> {
        let spec = CommandSpec {
            argv: self.argv.clone(),
            cwd: self.cwd.clone(),
            env: alert.env(),
            stdin: format!("{}\n", alert.text()).into_bytes(),
            timeout: self.timeout,
            output_cap: 4096,
            kill_switch: None,
        };
        let out = command::run(&spec);
        match out.exit {
            Exit::Code(0) => Ok(()),
            exit => {
                let said = out
                    .stderr
                    .lines()
                    .chain(out.stdout.lines())
                    .find(|l| !l.trim().is_empty());
                Err(match said {
                    Some(line) if matches!(exit, Exit::Code(_)) => {
                        format!("{}: {}", exit.describe(), line.trim())
                    }
                    _ => exit.describe(),
                })
            }
        }
    }
}

/// The notifiers of the `[alert:NAME]` sections: commands (run in `cwd`)
/// and webhooks.
pub fn plugin_notifiers(plugins: &[AlertPluginConfig], cwd: &Path) -> Vec<NamedNotifier> {
    plugins
        .iter()
        .map(|p| NamedNotifier {
            name: p.name.clone(),
            policy: p.policy.clone(),
            notifier: match &p.kind {
                PluginKind::Command(argv) => {
                    Arc::new(CommandNotifier::new(argv.clone(), cwd, p.timeout))
                }
                PluginKind::Webhook(hook) => {
                    Arc::new(WebhookNotifier::new(hook.clone(), p.timeout))
                }
            },
        })
        .collect()
}

/// What one plugin did with one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginOutcome {
    /// The plugin's name (`[alert:NAME]`).
    pub plugin: String,
    /// `None` when it took the alert; otherwise why not.
    pub failure: Option<String>,
}

/// Sends a test alert through every notifier in parallel and returns what
/// each did. Nothing is stored.
pub fn send_test_alert(notifiers: &[NamedNotifier]) -> Vec<PluginOutcome> {
    let alert = Notification {
        server: Some("overc".into()),
        channel: "overc".into(),
        event: "test".into(),
        message: "Test alert: if you read this, the alert plugin works".into(),
        severity: "OK".into(),
        ..Notification::default()
    };
    std::thread::scope(|scope| {
        let runs: Vec<_> = notifiers
            .iter()
            .map(|n| (n.name.clone(), scope.spawn(|| n.notifier.notify(&alert))))
            .collect();
        runs.into_iter()
            .map(|(plugin, run)| PluginOutcome {
                plugin,
                failure: match run.join() {
                    Ok(r) => r.err(),
                    Err(_) => Some("the plugin panicked".into()),
                },
            })
            .collect()
    })
}

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

fn backoff(attempts: u32) -> Millis {
    FIRST_BACKOFF
        .saturating_mul(1 << attempts.min(20))
        .min(MAX_BACKOFF)
}

#[derive(Debug, Default)]
struct Counts {
    delivered: AtomicU64,
    failed: AtomicU64,
    given_up: AtomicU64,
}

enum Msg {
    /// New deliveries may be waiting.
    Notify,
    /// Deliver what is due now and answer.
    Now(mpsc::SyncSender<Result<DeliveryReport>>),
}

/// One plugin's delivery loop.
struct Worker {
    name: String,
    notifier: Arc<dyn Notifier>,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    retention: Millis,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    /// Wakes the router: this worker raised an alert.
    router: mpsc::Sender<RouterMsg>,
    /// In a failure streak: its failure alert is raised.
    failing: bool,
    /// Alerts the plugin took whose delivery could not be recorded yet;
    /// recorded first in the next pass instead of being sent again.
    unrecorded: Vec<i64>,
    /// When the delivery at the head of the queue may be tried again.
    next_try: Option<Millis>,
    /// `group-wait` in seconds (0: every alert alone).
    group_wait: u64,
    /// Its routing and `repeat`.
    policy: PluginPolicy,
    /// Open problems it was reminded of: service → (problem, since, last
    /// reminder). In memory: after a restart a problem gets at most one
    /// reminder early.
    reminded: HashMap<i64, (Problem, Millis, Option<Millis>)>,
    /// When the next reminder is due.
    next_reminder: Option<Millis>,
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
                if self.stop.load(Ordering::Relaxed) {
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

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
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
            while let Ok(m) = rx.try_recv() {
                if let RouterMsg::Now(r) = m {
                    replies.push(r);
                }
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

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), 10_000);
        assert_eq!(backoff(1), 20_000);
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
