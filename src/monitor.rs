//! `overcli`'s engine: the Nagios plugin runner, the monitor's schedule
//! (pure, driven by `now`), the newest-unsent-state buffer, and the loop.

use std::collections::BTreeMap;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::client::Client;
use crate::clock::{Clock, Millis};
use crate::command::Exit;
use crate::config::{MonitorConfig, ServiceConfig};
use crate::error::{Error, Result};
use crate::protocol::ServiceReport;
use crate::state::State;

pub use crate::plugin::{PluginRun, run_plugin};

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

/// How a send ended, as the loop needs to know it.
enum SendOutcome {
    Sent,
    Refused(String),
    Failed(String),
}

/// Sends states in requests of at most about 256 KiB of info each, so that
/// many large outputs never exceed the server's body limit.
fn send_states(client: &Client, states: Vec<ServiceReport>) -> SendOutcome {
    let mut chunks: Vec<Vec<ServiceReport>> = vec![Vec::new()];
    let mut size = 0;
    for s in states {
        let len = s.info.len() + s.name.len() + 64;
        if size + len > 256 * 1024 && !chunks.last().is_some_and(Vec::is_empty) {
            chunks.push(Vec::new());
            size = 0;
        }
        size += len;
        if let Some(c) = chunks.last_mut() {
            c.push(s);
        }
    }
    for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
        let period = chunk.iter().filter_map(|s| s.period).min().unwrap_or(60);
        match client.report(period, chunk) {
            Ok(()) => {}
            // Only these mean the server will never take them; anything else
            // (a proxy's 404/429, a 5xx) is worth another try.
            Err(Error::Refused {
                status: status @ (400 | 403),
                message,
            }) => {
                return SendOutcome::Refused(format!("{status}: {message}"));
            }
            Err(e) => return SendOutcome::Failed(e.to_string()),
        }
    }
    SendOutcome::Sent
}

enum Msg {
    Done(usize, PluginRun),
    Sent(Sending, SendOutcome),
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
        }
    }

    /// A handle that stops [`Monitor::run`].
    pub fn stopper(&self) -> MonitorStop {
        MonitorStop(self.tx.clone())
    }

    /// Runs until stopped. Returns an error only for something it cannot
    /// ride out; a server that is away is not one.
    pub fn run(self) -> Result<()> {
        let services = &self.config.services;
        let mut schedule = Schedule::new(services.len(), self.clock.now());
        let mut unsent = Unsent::default();
        let mut stopping = false;
        log::info!(
            "monitoring {} services for {}",
            services.len(),
            self.client.server_id().name
        );
        while !stopping {
            let now = self.clock.now();
            for i in schedule.take_due(now) {
                let s = &services[i];
                let (argv, cwd, timeout, tx) = (
                    s.command.clone(),
                    self.config.base_dir.clone(),
                    s.timeout,
                    self.tx.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("plugin-{}", s.name))
                    .stack_size(256 * 1024)
                    .spawn(move || {
                        let run = run_plugin(&argv, &cwd, timeout);
                        let _ = tx.send(Msg::Done(i, run));
                    })
                    .map_err(|e| {
                        Error::Io(std::io::Error::other(format!(
                            "cannot start a plugin thread: {e}"
                        )))
                    })?;
            }
            // Sending runs beside the loop, so a server that hangs does not
            // stop the checks; one send at a time.
            if let Some(sending) = unsent.take(now) {
                let (client, tx) = (self.client.clone(), self.tx.clone());
                let states = sending.iter().map(|(_, _, r)| r.clone()).collect();
                std::thread::Builder::new()
                    .name("overc-send".into())
                    .spawn(move || {
                        let outcome = send_states(&client, states);
                        let _ = tx.send(Msg::Sent(sending, outcome));
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
                    Msg::Done(i, run) => {
                        let s = &services[i];
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
                    Msg::Sent(sent, outcome) => {
                        let n = sent.len();
                        match outcome {
                            SendOutcome::Sent => {
                                log::debug!("sent {n} states");
                                unsent.sent(&sent);
                            }
                            SendOutcome::Refused(why) => {
                                // The server will never take these; the next ones may differ.
                                log::error!("the server refused {n} states ({why})");
                                unsent.refused(&sent);
                            }
                            SendOutcome::Failed(why) => {
                                let wait = unsent.failed(self.clock.now());
                                log::warn!(
                                    "cannot send {n} states, retrying in {} s: {why}",
                                    wait.as_secs()
                                );
                            }
                        }
                    }
                    Msg::Stop => stopping = true,
                }
                msg = self.rx.try_recv().ok();
            }
        }
        // One last try so a clean stop does not throw away fresh results
        // (unless a send is still under way).
        if let Some(sending) = unsent.take(Millis::MAX) {
            let states = sending.iter().map(|(_, _, r)| r.clone()).collect();
            if let SendOutcome::Failed(why) | SendOutcome::Refused(why) =
                send_states(&self.client, states)
            {
                log::warn!("could not send the last {} states: {why}", sending.len());
            }
        }
        log::info!("monitor stopped");
        Ok(())
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

/// The worst state among check results (OK when there are none).
pub fn worst(results: &[CheckResult]) -> State {
    results
        .iter()
        .map(|r| r.run.state)
        .max()
        .unwrap_or(State::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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

    #[test]
    fn plugin_exit_codes_map_to_states() {
        let sh = |script: &str, ms| {
            run_plugin(
                &["/bin/sh".into(), "-c".into(), script.into()],
                Path::new("/"),
                Duration::from_millis(ms),
            )
        };
        assert_eq!(sh("echo fine; exit 0", 10_000).state, State::Ok);
        assert_eq!(sh("exit 1", 10_000).state, State::Warn);
        assert_eq!(sh("exit 2", 10_000).state, State::Fail);
        assert_eq!(sh("exit 3", 10_000).state, State::Unk);
        assert_eq!(sh("exit 42", 10_000).state, State::Unk);
        let killed = sh("kill -TERM $$", 10_000);
        assert_eq!(
            (killed.state, killed.info.as_str()),
            (State::Unk, "killed by signal 15")
        );
        let slow = sh("sleep 30", 200);
        assert_eq!(slow.state, State::Unk);
        assert!(
            slow.info.starts_with("timed out after 0.2s"),
            "{}",
            slow.info
        );
        let both = sh("echo out; echo err >&2; exit 1", 10_000);
        assert_eq!(both.info, "out\nerr");
        let missing = run_plugin(&["./nope".into()], Path::new("/"), Duration::from_secs(1));
        assert_eq!(missing.state, State::Unk);
        assert!(
            missing.info.contains("cannot start ./nope"),
            "{}",
            missing.info
        );
    }
}
