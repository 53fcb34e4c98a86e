//! Reads for the supervisor and the alert outbox.

use rusqlite::{OptionalExtension, params};

use super::Store;
use super::schema::current_state;
use crate::clock::Millis;
use crate::error::Result;
use crate::store::{AlertRecord, ServiceDeadline};

impl Store {
    /// Undelivered alerts due for an attempt at `now` (all of them when
    /// `ignore_schedule`, as at start-up): fresh ones before retries, oldest first.
    pub(crate) fn undelivered(
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
    pub(crate) fn next_delivery_attempt(&self) -> Result<Option<Millis>> {
        let conn = self.reader();
        Ok(conn
            .prepare_cached("SELECT MIN(next_attempt) FROM alerts WHERE delivered = 0")?
            .query_row([], |r| r.get::<_, Option<Millis>>(0))
            .optional()?
            .flatten())
    }

    /// Services with a period that are not flagged overdue, for rebuilding deadlines.
    pub(crate) fn service_deadlines(&self) -> Result<Vec<ServiceDeadline>> {
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
