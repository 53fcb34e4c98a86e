//! `overcli`'s engine: the Nagios plugin runner, the monitor's schedule
//! (pure, driven by `now`), the newest-unsent-state buffer, and the loop.

use std::collections::BTreeMap;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::client::Client;
use crate::clock::{Clock, Millis};
use crate::command::{CommandSpec, Exit, KillSwitch};
use crate::config::{MonitorConfig, ServiceConfig};
use crate::error::{Error, Result};
use crate::plugin::{PluginRun, run_plugin, run_plugin_spec};
use crate::protocol::ServiceReport;
use crate::state::State;

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

    /// A run of service `i` ended at `now` after `run_time`.
    pub fn finished(&mut self, i: usize, now: Millis, service: &ServiceConfig, run_time: Duration) {
        let delay = next_run_delay(service.period, service.max_lag, run_time);
        self.next[i] = Some(now + delay.as_millis() as Millis);
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

    /// Applies what [`send_states`] did with what [`Unsent::take`] handed
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

/// What became of the states handed to [`send_states`].
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

/// Sends states in as many requests as [`batches`] cuts them into.
///
/// A 400 refuses a whole request for what may be one bad state, so a
/// refused batch is halved and each half sent again, until the state the
/// server refuses is alone: no other state is dropped with it. A 403 (the
/// key) refuses every batch the same way and is not split. The first other
/// failure stops sending; what was not sent comes back in
/// [`SendReport::failed`].
pub fn send_states(client: &Client, states: Sending) -> SendReport {
    send_with(states, |period, states| client.report(period, states))
}

/// [`send_states`] with the request as a function, for tests.
fn send_with(
    states: Sending,
    mut post: impl FnMut(u32, Vec<ServiceReport>) -> Result<()>,
) -> SendReport {
    let mut report = SendReport::default();
    let mut queue: std::collections::VecDeque<Sending> = batches(states).into();
    while let Some(mut batch) = queue.pop_front() {
        let period = batch.iter().filter_map(|s| s.2.period).min().unwrap_or(60);
        match post(period, batch.iter().map(|s| s.2.clone()).collect()) {
            Ok(()) => report.delivered.extend(batch),
            Err(Error::Refused { status: 400, .. }) if batch.len() > 1 => {
                let second = batch.split_off(batch.len() / 2);
                queue.push_front(second);
                queue.push_front(batch);
            }
            // Only these mean the server will never take them; anything else
            // (a proxy's 404/429, a 5xx) is worth another try.
            Err(Error::Refused {
                status: status @ (400 | 403),
                message,
            }) => report.refused.push((batch, format!("{status}: {message}"))),
            Err(e) => {
                batch.extend(queue.drain(..).flatten());
                report.failed = Some((batch, e.to_string()));
                break;
            }
        }
    }
    report
}

enum Msg {
    Done(usize, PluginRun),
    Sent(SendReport),
    Stop,
}

/// Stops a running [`Monitor`] from another thread (a signal handler, a test).
#[derive(Debug, Clone)]
pub struct MonitorStop(mpsc::Sender<Msg>);

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl MonitorStop {
    /// Asks the monitor to send what it has and return.
    pub fn stop(&self) {
        let _ = self.0.send(Msg::Stop);
    }
}

/// The continuous monitor: runs every service's plugin on its schedule and
/// pushes the results, riding out an unreachable server.
pub struct Monitor {
    config: MonitorConfig,
    client: Client,
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    plugins: KillSwitch,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("services", &self.config.services.len())
            .finish()
    }
}

impl Monitor {
    /// A monitor for `config` reporting through `client`.
    pub fn new(config: MonitorConfig, client: Client, clock: Arc<dyn Clock>) -> Monitor {
        let (tx, rx) = mpsc::channel();
        Monitor {
            config,
            client,
            clock,
            tx,
            rx,
            plugins: KillSwitch::new(),
        }
    }

    /// A handle that stops [`Monitor::run`].
    pub fn stopper(&self) -> MonitorStop {
        MonitorStop(self.tx.clone())
    }

    /// Runs until stopped. Returns an error only for something it cannot
    /// ride out; a server that is away is not one. Either way its running
    /// plugins are killed (with their process groups) before it returns.
    pub fn run(self) -> Result<()> {
        let mut schedule = Schedule::new(self.config.services.len(), self.clock.now());
        let mut unsent = Unsent::default();
        self.log_plan();
        let result = self.run_until_stopped(&mut schedule, &mut unsent);
        self.stop_plugins(schedule.running(), &mut unsent);
        // One last try so a clean stop does not throw away fresh results
        // (unless a send is still under way).
        if let Some(sending) = unsent.take(Millis::MAX) {
            let report = send_states(&self.client, sending);
            log_refused(&report);
            if let Some((states, why)) = &report.failed {
                log::warn!("could not send the last {} states: {why}", states.len());
            }
        }
        log::info!("monitor stopped");
        result
    }

    /// Says what it runs and where it sends, so a log shows the monitor's
    /// plan at a glance. The program only, not its arguments, which may
    /// hold a password (`check_mysql -p …`); the URL without its password.
    fn log_plan(&self) {
        log::info!(
            "monitoring {} services for {}, sending to {}",
            self.config.services.len(),
            self.client.server_id().name,
            self.client.url()
        );
        for s in &self.config.services {
            log::info!(
                "{}: every {} s, timeout {:?}, runs {}",
                s.name,
                s.period,
                s.timeout,
                s.command.first().map_or("", String::as_str)
            );
        }
    }

    fn run_until_stopped(&self, schedule: &mut Schedule, unsent: &mut Unsent) -> Result<()> {
        loop {
            let now = self.clock.now();
            for i in schedule.take_due(now) {
                self.start_plugin(i)?;
            }
            // Sending runs beside the loop, so a server that hangs does not
            // stop the checks; one send at a time.
            if let Some(sending) = unsent.take(now) {
                let (client, tx) = (self.client.clone(), self.tx.clone());
                std::thread::Builder::new()
                    .name("overc-send".into())
                    .spawn(move || {
                        let _ = tx.send(Msg::Sent(send_states(&client, sending)));
                    })
                    .map_err(|e| {
                        Error::Io(std::io::Error::other(format!(
                            "cannot start the send thread: {e}"
                        )))
                    })?;
            }
            let wake = [schedule.next_due(), unsent.next_attempt()]
                .into_iter()
                .flatten()
                .min();
            let wait = wake
                .map(|t| (t - self.clock.now()).clamp(0, 60_000))
                .unwrap_or(60_000);
            let mut msg = self
                .rx
                .recv_timeout(Duration::from_millis(wait as u64))
                .ok();
            while let Some(m) = msg {
                match m {
                    Msg::Done(i, run) => self.finished(i, run, schedule, unsent),
                    Msg::Sent(report) => self.settle(&report, unsent),
                    Msg::Stop => return Ok(()),
                }
                msg = self.rx.try_recv().ok();
            }
        }
    }

    /// Runs the plugin of service `i` on a thread of its own.
    fn start_plugin(&self, i: usize) -> Result<()> {
        let s = &self.config.services[i];
        let mut spec = CommandSpec::new(s.command.clone(), &self.config.base_dir, s.timeout);
        spec.kill_switch = Some(self.plugins.clone());
        let tx = self.tx.clone();
        std::thread::Builder::new()
            .name(format!("plugin-{}", s.name))
            .stack_size(256 * 1024)
            .spawn(move || {
                let run = run_plugin_spec(&spec);
                let _ = tx.send(Msg::Done(i, run));
            })
            .map(drop)
            .map_err(|e| {
                Error::Io(std::io::Error::other(format!(
                    "cannot start a plugin thread: {e}"
                )))
            })
    }

    fn finished(&self, i: usize, run: PluginRun, schedule: &mut Schedule, unsent: &mut Unsent) {
        let s = &self.config.services[i];
        log::debug!(
            "{}: {} in {:.2}s",
            s.name,
            run.state,
            run.duration.as_secs_f64()
        );
        schedule.finished(i, self.clock.now(), s, run.duration);
        unsent.put(
            i,
            ServiceReport {
                name: s.name.clone(),
                state: run.state,
                info: run.info,
                period: Some(s.period),
            },
        );
    }

    fn settle(&self, report: &SendReport, unsent: &mut Unsent) {
        log_refused(report);
        log::debug!("sent {} states", report.delivered.len());
        if let Some(wait) = unsent.settle(report, self.clock.now()) {
            if let Some((states, why)) = &report.failed {
                log::warn!(
                    "cannot send {} states, retrying in {} s: {why}",
                    states.len(),
                    wait.as_secs()
                );
            }
        }
    }

    /// Kills the `running` plugins (with their process groups) and waits a
    /// little for their threads to see it, so none outlives the monitor.
    /// What they report then (killed) is not news for the server.
    fn stop_plugins(&self, mut running: usize, unsent: &mut Unsent) {
        self.plugins.kill_all();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while running > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Msg::Done(..)) => running -= 1,
                Ok(Msg::Sent(report)) => self.settle(&report, unsent),
                Ok(Msg::Stop) => {}
                Err(_) => {
                    log::warn!("{running} plugins did not end when killed");
                    break;
                }
            }
        }
    }
}

fn log_refused(report: &SendReport) {
    for (states, why) in &report.refused {
        // The server will never take these; the next ones may differ.
        let names: Vec<&str> = states.iter().take(5).map(|s| s.2.name.as_str()).collect();
        log::error!(
            "the server refused {} states ({}{}): {why}",
            states.len(),
            names.join(", "),
            if states.len() > names.len() {
                ", …"
            } else {
                ""
            }
        );
    }
}

/// One line of `overcli check`.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// Service name.
    pub service: String,
    /// What the plugin said.
    pub run: PluginRun,
}

/// Runs every service's plugin once, concurrently, in config order.
pub fn check_all(config: &MonitorConfig) -> Vec<CheckResult> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = config
            .services
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    scope.spawn(|| run_plugin(&s.command, &config.base_dir, s.timeout)),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(service, h)| CheckResult {
                service,
                run: h.join().unwrap_or_else(|_| PluginRun {
                    state: State::Unk,
                    info: "the plugin runner panicked".into(),
                    exit: Exit::NotStarted("panic".into()),
                    duration: Duration::ZERO,
                }),
            })
            .collect()
    })
}

/// `overcli check`'s table: service, state, run time, first line of output.
pub fn check_table(results: &[CheckResult]) -> String {
    let width = results
        .iter()
        .map(|r| r.service.chars().count())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut out = format!("{:<width$}  STATE  TIME     OUTPUT\n", "SERVICE");
    for r in results {
        let first = r.run.info.lines().next().unwrap_or("");
        out.push_str(&format!(
            "{:<width$}  {:<5}  {:>6.2}s  {}\n",
            r.service,
            r.run.state.as_str(),
            r.run.duration.as_secs_f64(),
            first
        ));
    }
    out
}

/// The worst state among check results by the Nagios order (OK < WARN <
/// UNK < FAIL, see [`State::nagios_rank`]); OK when there are none.
pub fn worst(results: &[CheckResult]) -> State {
    results
        .iter()
        .map(|r| r.run.state)
        .max_by_key(|s| s.nagios_rank())
        .unwrap_or(State::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(period: u32, max_lag: Option<f64>) -> ServiceConfig {
        ServiceConfig {
            name: "s".into(),
            period,
            max_lag,
            timeout: Duration::from_secs(5),
            command: vec!["true".into()],
        }
    }

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
        s.finished(0, 2000, &svc(10, Some(2.0)), Duration::from_secs(1));
        assert_eq!(s.next_due(), Some(8000));
        assert_eq!(s.take_due(7999), Vec::<usize>::new());
        assert_eq!(s.take_due(8000), vec![0]);
        s.finished(1, 3000, &svc(60, None), Duration::from_millis(100));
        assert_eq!(s.next_due(), Some(3000 + 47_700));
    }

    #[test]
    fn unsent_keeps_the_newest_state_and_backs_off() {
        let r = |info: &str| ServiceReport {
            name: "a".into(),
            state: State::Ok,
            info: info.into(),
            period: Some(5),
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

    fn states(n: usize, info_len: usize) -> Sending {
        (0..n)
            .map(|i| {
                let report = ServiceReport {
                    name: format!("s{i}"),
                    state: State::Ok,
                    info: "x".repeat(info_len),
                    period: Some(60),
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

    /// A fake server: refuses (400) a request holding a state named in
    /// `bad`, fails (503) once `down_after` requests were answered, and
    /// records the size of every request.
    fn fake_server<'a>(
        bad: &'a [&'a str],
        down_after: usize,
        requests: &'a mut Vec<usize>,
    ) -> impl FnMut(u32, Vec<ServiceReport>) -> Result<()> + 'a {
        move |_period, states| {
            assert!(states.len() <= crate::protocol::MAX_ITEMS);
            requests.push(states.len());
            if requests.len() > down_after {
                return Err(Error::Refused {
                    status: 503,
                    message: "down".into(),
                });
            }
            match states.iter().find(|s| bad.contains(&s.name.as_str())) {
                Some(s) => Err(Error::Refused {
                    status: 400,
                    message: format!("bad {}", s.name),
                }),
                None => Ok(()),
            }
        }
    }

    #[test]
    fn a_refused_state_is_dropped_alone() {
        let mut requests = Vec::new();
        let report = send_with(
            states(2500, 0),
            fake_server(&["s1234", "s7"], usize::MAX, &mut requests),
        );
        let refused: Vec<(Vec<&str>, &str)> = report
            .refused
            .iter()
            .map(|(s, why)| (s.iter().map(|s| s.2.name.as_str()).collect(), why.as_str()))
            .collect();
        assert_eq!(
            refused,
            vec![
                (vec!["s7"], "400: bad s7"),
                (vec!["s1234"], "400: bad s1234")
            ]
        );
        assert_eq!(report.delivered.len(), 2498);
        assert!(report.failed.is_none());
        // Halving costs about 2 × log2(1000) requests per bad state.
        assert!(requests.len() <= 3 + 2 * 2 * 10, "{}", requests.len());
    }

    #[test]
    fn a_failure_keeps_what_was_not_delivered() {
        let mut u = Unsent::default();
        for (i, _, r) in states(2500, 0) {
            u.put(i, r);
        }
        let taken = u.take(0).unwrap();
        let mut requests = Vec::new();
        let report = send_with(taken, fake_server(&[], 1, &mut requests));
        assert_eq!(requests, vec![1000, 1000]);
        assert_eq!(report.delivered.len(), 1000);
        let (failed, why) = report.failed.clone().unwrap();
        assert_eq!(failed.len(), 1500);
        assert!(why.contains("503"), "{why}");
        assert_eq!(u.settle(&report, 0), Some(Duration::from_secs(1)));
        assert_eq!(u.len(), 1500, "the delivered ones are forgotten");
        let taken = u.take(1000).unwrap();
        let report = send_with(taken, fake_server(&["s2000"], usize::MAX, &mut Vec::new()));
        assert_eq!(u.settle(&report, 1000), None);
        assert!(u.is_empty());
        assert_eq!(u.next_attempt(), None);
    }

    #[test]
    fn the_worst_check_result_goes_by_the_nagios_order() {
        let results = |states: &[State]| -> Vec<CheckResult> {
            states
                .iter()
                .map(|s| CheckResult {
                    service: "s".into(),
                    run: PluginRun {
                        state: *s,
                        info: String::new(),
                        exit: Exit::Code(s.exit_code()),
                        duration: Duration::ZERO,
                    },
                })
                .collect()
        };
        use State::*;
        assert_eq!(worst(&results(&[])), Ok);
        assert_eq!(worst(&results(&[Ok, Warn])), Warn);
        assert_eq!(worst(&results(&[Warn, Unk])), Unk);
        assert_eq!(worst(&results(&[Unk, Fail])), Fail);
        assert_eq!(worst(&results(&[Fail, Unk, Warn])), Fail);
    }
}
