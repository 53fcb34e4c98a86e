//! `overcli`'s monitor loop: runs the plugins on the [`Schedule`], keeps
//! their newest states in [`Unsent`] and sends them with the [`Client`].

use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::client::Client;
use crate::clock::{Clock, Millis};
use crate::command::{CommandSpec, Exit, KillSwitch};
use crate::config::MonitorConfig;
use crate::error::{Error, Result};
use crate::plugin::{PluginRun, run_plugin, run_plugin_spec};
use crate::protocol::ServiceReport;
use crate::schedule::{Schedule, SendReport, Sending, Unsent, batches};
use crate::state::State;

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
    ///
    /// # Errors
    /// When a plugin cannot be started for a reason that would not pass (a thread cannot be spawned); an unreachable server is retried, not an error.
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
        schedule.finished(i, self.clock.now(), s.period, s.max_lag, run.duration);
        unsent.put(
            i,
            ServiceReport {
                name: s.name.clone(),
                state: run.state,
                info: run.info,
                period: Some(s.period),
                retries: s.retries,
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
    use crate::schedule::tests::states;

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
