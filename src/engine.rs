//! The engine: owns the flow from a report to a notification.
//!
//! Report → storage (durable, events raised by [`crate::rules`] in the same
//! transaction) → deadlines (the supervisor) → delivery (the outbox and its
//! alert plugins). The HTTP server only translates requests into calls of
//! this type, so an application that embeds overc without HTTP gets the same
//! supervision and alerts by calling it directly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::delivery::{
    CommandNotifier, DeliveryReport, NamedNotifier, PluginOutcome, PluginStats, send_test_alert,
};

use crate::clock::Clock;
use crate::config::ServerConfig;
use crate::delivery::{Outbox, plugin_notifiers};
use crate::error::Result;
use crate::notification::Notifier;
use crate::policy::{Ack, Silence};
use crate::protocol::{AlertReport, HostSilence, HostUnsilence, Ping, ServerId, StatusReport};
use crate::store::{Applied, SilenceListView, StatusFilter, StatusPart, StatusView, Storage};
pub use crate::supervisor::SupervisorStats;

use crate::supervisor::Supervisor;

/// What the engine needs beyond its storage: the supervision and delivery
/// settings of a [`ServerConfig`], and the notifiers.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Seconds added to every deadline (`grace`).
    pub grace: u32,
    /// Days an alert is kept; a delivery refused that long is given up.
    pub retention_days: u32,
    /// Who gets the alerts: the alert plugin commands of the config, and
    /// any notifier of the application's own.
    pub notifiers: Vec<NamedNotifier>,
    /// `group-wait`: seconds a server's first alert waits for others to be
    /// sent with it (0: off).
    pub group_wait: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            grace: 0,
            retention_days: 90,
            notifiers: Vec::new(),
            group_wait: 0,
        }
    }
}

impl EngineSettings {
    /// Adds a notifier of the application's own under `name` (as a
    /// `[alert:NAME]` section would be named).
    pub fn notifier(mut self, name: &str, notifier: impl Notifier + 'static) -> Self {
        self.notifiers.push(NamedNotifier::new(name, notifier));
        self
    }
}

impl From<&ServerConfig> for EngineSettings {
    fn from(config: &ServerConfig) -> Self {
        EngineSettings {
            grace: config.grace,
            retention_days: config.retention_days,
            notifiers: plugin_notifiers(&config.alert_plugins, &config.base_dir),
            group_wait: config.policy.group_wait,
        }
    }
}

/// Storage, supervision and delivery of one overc installation.
pub struct Engine {
    store: Arc<dyn Storage>,
    supervisor: Supervisor,
    outbox: Arc<Outbox>,
    clock: Arc<dyn Clock>,
    grace: u32,
    notifiers: Vec<NamedNotifier>,
    /// Service entries of stored status reports, for `/metrics`.
    reported: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store)
            .finish()
    }
}

impl Engine {
    /// Starts delivery (first of every delivery still pending) and
    /// supervision (deadlines rebuilt from the store) over an open store.
    ///
    /// # Errors
    /// When the store cannot be read or a thread cannot be started.
    pub fn start(
        store: Arc<dyn Storage>,
        settings: EngineSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Engine> {
        let outbox = Arc::new(Outbox::start(
            store.clone(),
            settings.notifiers.clone(),
            settings.retention_days,
            settings.group_wait,
            clock.clone(),
        )?);
        let supervisor =
            Supervisor::start(store.clone(), outbox.clone(), settings.grace, clock.clone())?;
        Ok(Engine {
            store,
            supervisor,
            outbox,
            clock,
            grace: settings.grace,
            notifiers: settings.notifiers,
            reported: AtomicU64::new(0),
        })
    }

    /// The storage behind the engine, for reads.
    pub fn storage(&self) -> &dyn Storage {
        &*self.store
    }

    /// The clock the engine runs on.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Registers or checks a host and records its address; durable on return.
    ///
    /// # Errors
    /// [`crate::Error::Forbidden`] for a wrong key, a storage error when
    /// the commit failed (nothing stored).
    pub fn ping(&self, ping: Ping, ip: &str) -> Result<()> {
        self.store.ping(ping, ip).map(drop)
    }

    /// Registers a host with its key, as an operator does (also when
    /// registration is closed); returns its id, or `None` when the name is
    /// taken.
    ///
    /// # Errors
    /// A storage error when the commit failed.
    pub fn add_server(&self, server: ServerId) -> Result<Option<i64>> {
        Ok(self.store.add_server(server)?.server_id)
    }

    /// Stores a status report, moves the deadlines of its services and hands
    /// the events it raised to delivery; durable on return.
    ///
    /// # Errors
    /// As [`Engine::ping`].
    pub fn report(&self, report: StatusReport, ip: &str) -> Result<()> {
        let mut result = Ok(());
        self.report_each(vec![(report, ip.to_owned())], |_, r| result = r);
        result
    }

    /// Stores many reports at once (they share the wait for the disk) and
    /// calls `each` with the position and outcome of each as soon as it is
    /// durable, in the order given.
    pub fn report_each(
        &self,
        reports: Vec<(StatusReport, String)>,
        mut each: impl FnMut(usize, Result<()>),
    ) {
        let sizes: Vec<u64> = reports
            .iter()
            .map(|(r, _)| r.services.len() as u64)
            .collect();
        self.store.report_each(reports, &mut |i, result| {
            each(
                i,
                result.map(|applied| {
                    let n = sizes.get(i).copied().unwrap_or(0);
                    self.reported.fetch_add(n, Ordering::Relaxed);
                    self.applied(applied);
                }),
            )
        });
    }

    /// Stores alerts posted by a host (channel `api`) and hands them to
    /// delivery; durable on return.
    ///
    /// # Errors
    /// As [`Engine::ping`].
    pub fn post_alerts(&self, report: AlertReport, ip: &str) -> Result<()> {
        let applied = self.store.post_alerts(report, ip)?;
        self.applied(applied);
        Ok(())
    }

    /// Deletes a server with its services, their history and alerts, and
    /// stops supervising them.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] when there is no such server.
    pub fn delete_server(&self, id: i64) -> Result<()> {
        let applied = self.store.delete_server(id)?;
        self.applied(applied);
        Ok(())
    }

    /// Deletes a service with its history and alerts.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] when there is no such service.
    pub fn delete_service(&self, id: i64) -> Result<()> {
        let applied = self.store.delete_service(id)?;
        self.applied(applied);
        Ok(())
    }

    /// Sets the display title of a server.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] when there is no such server.
    pub fn rename_server(&self, id: i64, title: &str) -> Result<()> {
        self.store.rename_server(id, title).map(drop)
    }

    /// Sets the display title of a service.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] when there is no such service.
    pub fn rename_service(&self, id: i64, title: &str) -> Result<()> {
        self.store.rename_service(id, title).map(drop)
    }

    /// Sets a silence from the page: from now to `silence.ends`, for the
    /// servers matching the pattern `silence.server` (and their services
    /// matching `silence.service`); returns its id. Events it matches are
    /// recorded, marked `silenced` and not notified (SPEC §9).
    ///
    /// # Errors
    /// [`crate::Error::Invalid`] when it would end by now.
    pub fn silence(&self, silence: Silence) -> Result<i64> {
        let applied = self.store.add_silence(silence)?;
        let id = applied.silence_id.unwrap_or(0);
        self.applied(applied);
        Ok(id)
    }

    /// A host silences its own services with its key; returns the id.
    ///
    /// # Errors
    /// As [`Engine::ping`].
    pub fn host_silence(&self, request: HostSilence, ip: &str) -> Result<i64> {
        let applied = self.store.host_silence(request, ip)?;
        let id = applied.silence_id.unwrap_or(0);
        self.applied(applied);
        Ok(id)
    }

    /// A host ends one of its silences, or all; returns the ids ended.
    /// Each problem a silence held back that is still open is notified
    /// once ([`crate::policy::on_silence_end`]).
    ///
    /// # Errors
    /// As [`Engine::ping`]; [`crate::Error::NotFound`] when the id is not
    /// an active silence of this host.
    pub fn host_unsilence(&self, request: HostUnsilence, ip: &str) -> Result<Vec<i64>> {
        let mut applied = self.store.host_unsilence(request, ip)?;
        let ended = std::mem::take(&mut applied.ended_silences);
        self.applied(applied);
        Ok(ended)
    }

    /// Ends a silence now (what it held back and is still open is told).
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] when there is no such silence or it ended.
    pub fn end_silence(&self, id: i64) -> Result<()> {
        let applied = self.store.end_silence(id)?;
        self.applied(applied);
        Ok(())
    }

    /// The active silences and those ended in the last 24 hours.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn silences(&self) -> Result<SilenceListView> {
        self.store.silences()
    }

    /// Acknowledges the problem of a service as `author`, and notifies it
    /// (`[service:ack] Acknowledged by <author>: <comment>`).
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] when there is no such service,
    /// [`crate::Error::Conflict`] when it is not in a problem.
    pub fn ack(&self, service_id: i64, author: &str, comment: &str) -> Result<()> {
        let applied = self.store.ack(service_id, author, comment)?;
        self.applied(applied);
        Ok(())
    }

    /// Removes the acknowledgement of a service.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] when it has none.
    pub fn unack(&self, service_id: i64) -> Result<()> {
        self.store.unack(service_id).map(drop)
    }

    /// The acknowledgement of a service, while it holds.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn ack_of(&self, service_id: i64) -> Result<Option<Ack>> {
        self.store.ack_of(service_id)
    }

    /// Passes what a write changed downstream: deadlines to the supervisor,
    /// new alerts to delivery.
    fn applied(&self, applied: Applied) {
        if !applied.alerts.is_empty() {
            self.outbox.notify();
        }
        if !applied.removed_services.is_empty() {
            self.supervisor.removed(applied.removed_services);
        }
        self.supervisor.changed(applied.deadlines);
    }

    /// Servers with their services and current states (`/ui/api/status/`);
    /// `None` when the filtered server or service does not exist.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn status(&self, filter: StatusFilter) -> Result<Option<StatusView>> {
        self.store.status(filter, self.grace, self.lag())
    }

    /// [`Engine::status`] one part at a time (stats, then each server), so a
    /// caller writing them out needs little memory for any number of
    /// services. False when the filtered server or service does not exist.
    ///
    /// # Errors
    /// When the store cannot be read, or `each` failed.
    pub fn status_each(
        &self,
        filter: StatusFilter,
        each: impl FnMut(StatusPart) -> Result<()>,
    ) -> Result<bool> {
        self.store
            .status_each(filter, self.grace, self.lag(), &mut { each })
    }

    /// Processes every deadline due at the clock's time, then delivers every
    /// alert due, and waits for both; returns how many services went offline
    /// and what delivery did. Tests with a manual clock use this instead of
    /// sleeping.
    ///
    /// # Errors
    /// When storage failed during either step.
    pub fn supervise_now(&self) -> Result<(usize, DeliveryReport)> {
        let offline = self.supervisor.tick()?;
        let delivered = self.outbox.deliver_now()?;
        Ok((offline, delivered))
    }

    /// Seconds the oldest unprocessed deadline is overdue (0 when keeping up).
    pub fn lag(&self) -> f64 {
        self.supervisor.lag()
    }

    /// Service entries of status reports stored since start.
    pub fn services_reported(&self) -> u64 {
        self.reported.load(Ordering::Relaxed)
    }

    /// Alerts delivered since start.
    pub fn alerts_delivered(&self) -> u64 {
        self.outbox.delivered()
    }

    /// Delivery counters per plugin since start.
    pub fn plugin_stats(&self) -> Vec<PluginStats> {
        self.outbox.plugin_stats()
    }

    /// Sends a test alert through every notifier and returns what each did.
    /// Nothing is stored.
    pub fn send_test_alert(&self) -> Vec<PluginOutcome> {
        send_test_alert(&self.notifiers)
    }

    /// The supervisor's work counters since start.
    pub fn supervisor_stats(&self) -> SupervisorStats {
        self.supervisor.stats()
    }

    /// Stops supervision and delivery (after their current pass); alerts not
    /// yet delivered stay stored for the next start. The store stays open.
    pub fn stop(&self) {
        self.supervisor.stop();
        self.outbox.stop();
    }
}
