//! Storage: the interface the engine writes and reads through
//! ([`Storage`]), the typed views it returns, the SQLite backend
//! ([`Store`]) and, with the feature `postgres`, the PostgreSQL one
//! (`PgStore`).
//!
//! A backend applies each write durably before it returns, raising the
//! events of [`crate::rules`] in the same transaction as their cause, and
//! answers reads with [`Serialize`](serde::Serialize) views that the read
//! API writes out as they are.

mod copy;
mod history;
mod plan;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;
mod views;

pub use copy::{CopyProgress, CopySummary, TerminalProgress, copy_database};
#[cfg(feature = "postgres")]
pub use postgres::{PgStore, START_WAIT as PG_START_WAIT};
pub use sqlite::*;
pub use views::*;

use crate::clock::Millis;
use crate::error::Result;
use crate::notification::Notification;
use crate::policy::{Ack, Silence};
use crate::protocol::{AlertReport, HostSilence, HostUnsilence, Ping, ServerId, StatusReport};
use crate::rules::Event;
use crate::state::State;

/// What a committed operation changed, for the layers downstream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The host the request came from, if any.
    pub server_id: Option<i64>,
    /// Services whose deadline moved.
    pub deadlines: Vec<DeadlineChange>,
    /// Alerts written to the outbox, by id.
    pub alerts: Vec<i64>,
    /// Rows removed by pruning.
    pub pruned: u64,
    /// Services deleted (to stop supervising them).
    pub removed_services: Vec<i64>,
    /// The silence the operation set, by id.
    pub silence_id: Option<i64>,
    /// Silences the operation ended, by id.
    pub ended_silences: Vec<i64>,
}

/// A service's new deadline after a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlineChange {
    /// The service.
    pub service_id: i64,
    /// Time of the report.
    pub rtime: Millis,
    /// Report time + period (grace is added by the supervisor); `None` when the
    /// service has no period, or was deleted: no longer supervised.
    pub due: Option<Millis>,
}

/// A delivery of an alert to one plugin that has not happened yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelivery {
    /// The alert, with this plugin's failed attempts so far.
    pub notification: Notification,
    /// When it may be tried again (0: at once).
    pub next_attempt: Millis,
}

/// A service in a hard problem or overdue, for reminders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenProblem {
    /// The service.
    pub service_id: i64,
    /// Its server's name.
    pub server: String,
    /// Its name.
    pub service: String,
    /// Its current state and info.
    pub state: Option<State>,
    /// The info of its current state.
    pub info: String,
    /// Whether it is flagged overdue.
    pub overdue: bool,
    /// When the problem began: its last notified state change, or the
    /// offline alert when overdue.
    pub since: Millis,
    /// Whether an acknowledgement holds it.
    pub acked: bool,
    /// Whether an active silence matches it.
    pub silenced: bool,
}

/// What a plugin did with an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// It took it.
    Delivered,
    /// It refused it: try again at `retry_at`.
    Failed {
        /// Why, as the plugin said.
        error: String,
        /// When to try again.
        retry_at: Millis,
    },
    /// It refused it for longer than alerts are kept: no more attempts.
    GivenUp {
        /// Why, as the plugin last said.
        error: String,
    },
}

/// What the supervisor needs to rebuild a service's deadline at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceDeadline {
    /// The service.
    pub service_id: i64,
    /// Time of its last report.
    pub rtime: Millis,
    /// Its period in seconds.
    pub period: i64,
}

/// A write of the [`Storage`] interface, as a backend's writer applies it
/// in a transaction of its own. The write methods of [`Storage`] hand these
/// to [`Storage::write`]; a backend applies each in its own SQL.
#[derive(Debug)]
#[non_exhaustive]
pub enum WriteOp {
    /// Registers or checks a host, records its address.
    Ping(Ping, String),
    /// A status report, from the address given.
    Status(StatusReport, String),
    /// Alerts posted by a host, from the address given.
    Alerts(AlertReport, String),
    /// Registers a host an operator adds, with its key.
    AddServer(ServerId),
    /// Runs the retention rules now (tests and maintenance).
    Prune,
    /// Flags services overdue (if they did not report since `rtime`) and
    /// raises `plugin/offline` for each.
    MarkOverdue(Vec<(i64, Millis)>),
    /// Writes the deliveries of alerts to the plugins that get them.
    Route(Vec<(i64, Vec<String>)>),
    /// What a plugin did with an alert.
    Delivery {
        /// The plugin's name.
        plugin: String,
        /// The alert's id.
        alert_id: i64,
        /// What became of it.
        outcome: DeliveryOutcome,
    },
    /// Deletes a server with its services, history and alerts.
    DeleteServer(i64),
    /// Deletes a service with its history and alerts.
    DeleteService(i64),
    /// Sets the display title of a server (`service = false`) or service.
    Rename {
        /// A service's title, not a server's.
        service: bool,
        /// The server's or service's id.
        id: i64,
        /// The new title.
        title: String,
    },
    /// An alert of overc itself (no server), e.g. a failing alert plugin.
    SystemAlert(Event),
    /// A silence from the page (it starts now).
    AddSilence(Silence),
    /// A host silences itself, from the address given.
    HostSilence(HostSilence, String),
    /// A host ends its silences, from the address given.
    HostUnsilence(HostUnsilence, String),
    /// Ends a silence now (the page).
    EndSilence(i64),
    /// Processes the end of the silences that ended by then.
    EndSilences(Millis),
    /// Acknowledges a service's problem.
    Ack {
        /// The service's id.
        service_id: i64,
        /// Who acknowledged it.
        author: String,
        /// Why.
        comment: String,
    },
    /// Removes a service's acknowledgement.
    Unack(i64),
}

/// The storage interface of the engine: domain operations in, typed views
/// out. Every write is durable when it returns `Ok`; a write refused
/// ([`crate::Error::Forbidden`], [`crate::Error::NotFound`]) changed nothing.
///
/// # Errors
/// Every method can fail with a storage error ([`crate::Error::is_storage`]):
/// the HTTP layer answers those with 503 and the client retries.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Where the data lives, for log lines (a path, or a URL without password).
    fn location(&self) -> String;

    /// Applies one write in a transaction of its own and returns what it
    /// changed once that is durable. The write methods below are this.
    ///
    /// # Errors
    /// As the write method that names the operation says.
    fn write(&self, op: WriteOp) -> Result<Applied>;

    /// Registers or checks the host, records its address.
    fn ping(&self, ping: Ping, ip: &str) -> Result<Applied> {
        self.write(WriteOp::Ping(ping, ip.to_owned()))
    }

    /// Stores many status reports (they share the wait for the disk) and
    /// calls `each` with the position and outcome of each report once it is
    /// durable, in the order given.
    fn report_each(
        &self,
        reports: Vec<(StatusReport, String)>,
        each: &mut dyn FnMut(usize, Result<Applied>),
    );

    /// Stores one status report.
    fn report(&self, report: StatusReport, ip: &str) -> Result<Applied> {
        let mut out = Err(crate::Error::Storage("the report was not stored".into()));
        self.report_each(vec![(report, ip.to_owned())], &mut |_, r| out = r);
        out
    }

    /// Stores alerts posted by a host (channel `api`).
    fn post_alerts(&self, report: AlertReport, ip: &str) -> Result<Applied> {
        self.write(WriteOp::Alerts(report, ip.to_owned()))
    }

    /// Registers a host with its key, as an operator does (also when
    /// registration is closed); `server_id` is `None` when the name is taken.
    fn add_server(&self, server: ServerId) -> Result<Applied> {
        self.write(WriteOp::AddServer(server))
    }

    /// Flags services overdue unless they reported after the given report
    /// time, raising one `plugin/offline` event each.
    fn mark_overdue(&self, due: Vec<(i64, Millis)>) -> Result<Applied> {
        self.write(WriteOp::MarkOverdue(due))
    }

    /// Records an event of overc itself (not about any host).
    fn system_alert(&self, event: Event) -> Result<Applied> {
        self.write(WriteOp::SystemAlert(event))
    }

    /// Deletes a server with its services, their history and alerts.
    fn delete_server(&self, id: i64) -> Result<Applied> {
        self.write(WriteOp::DeleteServer(id))
    }

    /// Deletes a service with its history and alerts.
    fn delete_service(&self, id: i64) -> Result<Applied> {
        self.write(WriteOp::DeleteService(id))
    }

    /// Sets the display title of a server.
    fn rename_server(&self, id: i64, title: &str) -> Result<Applied> {
        let title = title.to_owned();
        self.write(WriteOp::Rename {
            service: false,
            id,
            title,
        })
    }

    /// Sets the display title of a service.
    fn rename_service(&self, id: i64, title: &str) -> Result<Applied> {
        let title = title.to_owned();
        self.write(WriteOp::Rename {
            service: true,
            id,
            title,
        })
    }

    /// Applies the retention rules (history limit, alert age) now.
    fn prune(&self) -> Result<Applied> {
        self.write(WriteOp::Prune)
    }

    /// Alerts not yet routed to the plugins, oldest first.
    fn unrouted(&self, limit: usize) -> Result<Vec<Notification>>;

    /// Writes the deliveries of alerts, each to the plugins named beside it
    /// (none: the alert is done), and marks the alerts routed.
    fn route(&self, routes: Vec<(i64, Vec<String>)>) -> Result<Applied> {
        self.write(WriteOp::Route(routes))
    }

    /// Whether `plugin` was sent the last problem (a non-OK alert) of the
    /// service that alert `recovery` is about, before it: a recovery goes
    /// to whoever got the problem it ends.
    fn got_problem(&self, plugin: &str, recovery: i64) -> Result<bool>;

    /// How many services of the server named `server` have a period (can go
    /// overdue): a group of alerts about it says "server offline" when all
    /// of them did.
    fn services_with_period(&self, server: &str) -> Result<usize>;

    /// Services in a hard problem or overdue, for reminders.
    fn open_problems(&self) -> Result<Vec<OpenProblem>>;

    /// A plugin's pending deliveries, in alert order.
    fn pending_deliveries(&self, plugin: &str, limit: usize) -> Result<Vec<PendingDelivery>>;

    /// Records what a plugin did with an alert.
    fn record_delivery(
        &self,
        plugin: &str,
        alert_id: i64,
        outcome: DeliveryOutcome,
    ) -> Result<Applied> {
        let plugin = plugin.to_owned();
        self.write(WriteOp::Delivery {
            plugin,
            alert_id,
            outcome,
        })
    }

    /// Services with a period that are not flagged overdue, for rebuilding
    /// deadlines at start.
    fn service_deadlines(&self) -> Result<Vec<ServiceDeadline>>;

    /// Servers with their services and current states, one part at a time:
    /// the stats first, then each server with its services. False (having
    /// called `each` for nothing) when the filtered server or service does
    /// not exist. `each` must not call back into the storage.
    fn status_each(
        &self,
        filter: StatusFilter,
        grace_s: u32,
        supervisor_lag: f64,
        each: &mut dyn FnMut(StatusPart) -> Result<()>,
    ) -> Result<bool>;

    /// [`Storage::status_each`] collected into one view; `None` when the
    /// filtered server or service does not exist.
    fn status(
        &self,
        filter: StatusFilter,
        grace_s: u32,
        supervisor_lag: f64,
    ) -> Result<Option<StatusView>> {
        let mut stats = None;
        let mut servers = Vec::new();
        self.status_each(filter, grace_s, supervisor_lag, &mut |part| {
            match part {
                StatusPart::Stats(s) => stats = Some(s),
                StatusPart::Server(s) => servers.push(s),
            }
            Ok(())
        })?;
        Ok(stats.map(|stats| StatusView { stats, servers }))
    }

    /// A service's state history over the last `hours`, newest first; `None`
    /// when there is no such service. With `fold` (`groups=yes`), runs are
    /// folded as OverC 1.0.9 folded them, except where one of the given id
    /// ranges (`expand=A-B`) overlaps them.
    fn states(
        &self,
        service_id: i64,
        hours: f64,
        fold: Option<&[(i64, i64)]>,
    ) -> Result<Option<HistoryView>>;

    /// Alerts of the last `hours`, newest first; `None` when the filtered
    /// server or service does not exist.
    fn alert_list(&self, filter: AlertFilter, hours: f64) -> Result<Option<AlertListView>>;

    /// Sets a silence (a page user's): from now to `silence.ends`, for the
    /// servers matching `silence.server` (and their services matching
    /// `silence.service`); its `id` and `starts` are ignored. The new id is
    /// in [`Applied::silence_id`].
    ///
    /// # Errors
    /// [`crate::Error::Invalid`] when it would end by now.
    fn add_silence(&self, silence: Silence) -> Result<Applied> {
        self.write(WriteOp::AddSilence(silence))
    }

    /// A host silences its own services (its key checked as for a report);
    /// the new id is in [`Applied::silence_id`].
    fn host_silence(&self, request: HostSilence, ip: &str) -> Result<Applied> {
        self.write(WriteOp::HostSilence(request, ip.to_owned()))
    }

    /// A host ends one of its silences (by id), or all of them; those
    /// ended are in [`Applied::ended_silences`].
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] when the id is not an active silence of
    /// this host.
    fn host_unsilence(&self, request: HostUnsilence, ip: &str) -> Result<Applied> {
        self.write(WriteOp::HostUnsilence(request, ip.to_owned()))
    }

    /// Ends a silence now, and notifies once each problem it held back
    /// that is still open ([`crate::policy::on_silence_end`]).
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] when there is no such silence, or it
    /// has ended.
    fn end_silence(&self, id: i64) -> Result<Applied> {
        self.write(WriteOp::EndSilence(id))
    }

    /// Processes the end of every silence that expired by `now`, as
    /// [`Storage::end_silence`] does for one; cheap when none did (the
    /// supervisor calls it at least once a second).
    fn end_silences(&self, now: Millis) -> Result<Applied>;

    /// The active silences and those ended in the last 24 hours, newest first.
    fn silences(&self) -> Result<SilenceListView>;

    /// Acknowledges the problem of a service (a hard WARN, FAIL or UNK, or
    /// overdue) and raises `[service:ack]`. The ack lasts until the
    /// service's problem changes ([`crate::policy::Ack::holds`]): the
    /// store deletes it when a report or a deadline changes it.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] when there is no such service,
    /// [`crate::Error::Conflict`] when it is not in a problem.
    fn ack(&self, service_id: i64, author: &str, comment: &str) -> Result<Applied> {
        let (author, comment) = (author.to_owned(), comment.to_owned());
        self.write(WriteOp::Ack {
            service_id,
            author,
            comment,
        })
    }

    /// Removes the acknowledgement of a service.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] when it has none.
    fn unack(&self, service_id: i64) -> Result<Applied> {
        self.write(WriteOp::Unack(service_id))
    }

    /// The acknowledgement of a service that holds now, if any (for the
    /// reminder rule: an acknowledged problem is not reminded of).
    fn ack_of(&self, service_id: i64) -> Result<Option<Ack>>;

    /// Row counts of the main tables, for `/metrics` and tests.
    fn counts(&self) -> Result<TableCounts>;

    /// Alerts written since the storage was opened (a Prometheus counter).
    fn alerts_raised(&self) -> u64;

    /// How many write batches were committed (group commit shares one among
    /// many requests, so this grows slower than the request count).
    fn commit_count(&self) -> u64;

    /// Stops writing after the operations already handed over are durable.
    fn close(&self);

    /// Whether other overc servers share this storage (PostgreSQL): they
    /// write alerts and move deadlines too, so the leader polls for them
    /// rather than waiting to be told.
    fn is_shared(&self) -> bool {
        false
    }

    /// Whether this server is the one that runs overdue detection, the
    /// notification policy and delivery now. A storage of its own always is.
    fn is_leader(&self) -> bool {
        true
    }

    /// Services with a period, not flagged overdue, whose deadline (last
    /// report + period) is before `before`, with the time of that report:
    /// the deadlines other servers moved, from an index of due times.
    /// Empty for a storage of its own, whose supervisor holds them all.
    fn due_services(&self, before: Millis, limit: usize) -> Result<Vec<(i64, Millis)>> {
        let _ = (before, limit);
        Ok(Vec::new())
    }

    /// The earliest due time in the index of [`Storage::due_services`]
    /// (before grace), for the supervisor's lag; `None` when empty or for
    /// a storage of its own.
    fn next_due(&self) -> Result<Option<Millis>> {
        Ok(None)
    }

    /// Moves every due time before `now` in the index of
    /// [`Storage::due_services`] to `now` + the service's period, as after a
    /// restart: the server did not run (or its clock jumped), and hosts get
    /// one period to report. Returns how many moved.
    fn extend_due(&self, now: Millis) -> Result<u64> {
        let _ = now;
        Ok(0)
    }
}

/// Which servers `/ui/api/status/` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Every server.
    All,
    /// One server by id.
    Server(i64),
    /// One service (inside its server) by id.
    Service(i64),
}

/// Which alerts `/ui/api/status/alerts/` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFilter {
    /// All alerts.
    All,
    /// Alerts of one server (including its services').
    Server(i64),
    /// Alerts of one service.
    Service(i64),
}
