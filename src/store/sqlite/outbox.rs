//! Reads for the supervisor and the alert outbox.

use rusqlite::{OptionalExtension, params};

use super::Store;
use super::schema::current_state;
use crate::clock::Millis;
use crate::error::Result;

/// An alert as handed to the alert plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    /// Alert id (`OVERC_ALERT_ID`).
    pub id: i64,
    /// Host name, `None` for overc's own alerts.
    pub server: Option<String>,
    /// Service name, if the alert is about one.
    pub service: Option<String>,
    /// e.g. `service:state`, `plugin`, `api`.
    pub channel: String,
    /// e.g. `WARN`, `offline`, `alert`.
    pub event: String,
    /// The alert message.
    pub message: String,
    /// `OK`, `WARN`, `FAIL` or `UNK`.
    pub severity: String,
    /// The service's state when the alert was raised.
    pub state: Option<String>,
    /// The service's info when the alert was raised.
    pub info: Option<String>,
    /// Delivery attempts so far.
    pub attempts: u32,
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

impl Store {
    /// Undelivered alerts due for an attempt at `now` (all of them when
    /// `ignore_schedule`, as at start-up): fresh ones before retries, oldest first.
    pub fn undelivered(
        &self,
        now: Millis,
        ignore_schedule: bool,
        limit: usize,
    ) -> Result<Vec<AlertRecord>> {
        let conn = self.reader();
        let until = if ignore_schedule { Millis::MAX } else { now };
        let mut st = conn.prepare_cached(
            "SELECT a.id, sv.name, se.name, a.channel, a.event, a.message, a.severity, a.state,
                    a.info, a.attempts
             FROM alerts a LEFT JOIN servers sv ON sv.id = a.server_id
             LEFT JOIN services se ON se.id = a.service_id
             WHERE a.delivered = 0 AND a.next_attempt <= ?1 ORDER BY a.attempts, a.id LIMIT ?2",
        )?;
        let rows = st.query_map(params![until, limit as i64], |r| {
            Ok(AlertRecord {
                id: r.get(0)?,
                server: r.get(1)?,
                service: r.get(2)?,
                channel: r.get(3)?,
                event: r.get(4)?,
                message: r.get(5)?,
                severity: r.get(6)?,
                state: r.get(7)?,
                info: r.get(8)?,
                attempts: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// When the next deferred delivery attempt is due, if any.
    pub fn next_delivery_attempt(&self) -> Result<Option<Millis>> {
        let conn = self.reader();
        Ok(conn
            .prepare_cached("SELECT MIN(next_attempt) FROM alerts WHERE delivered = 0")?
            .query_row([], |r| r.get::<_, Option<Millis>>(0))
            .optional()?
            .flatten())
    }

    /// Services with a period that are not flagged overdue, for rebuilding deadlines.
    pub fn service_deadlines(&self) -> Result<Vec<ServiceDeadline>> {
        let conn = self.reader();
        let mut st = conn.prepare_cached(concat!(
            "SELECT s.id, st.rtime, s.period FROM services s ",
            current_state!(),
            " WHERE s.period IS NOT NULL AND st.rtime IS NOT NULL AND s.overdue = 0"
        ))?;
        let rows = st.query_map([], |r| {
            Ok(ServiceDeadline {
                service_id: r.get(0)?,
                rtime: r.get(1)?,
                period: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
