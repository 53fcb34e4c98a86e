//! Reads for the supervisor and for delivery.

use rusqlite::params;

use super::Store;
use super::ops::silences::{SILENCE_COLUMNS, silence_row};
use super::schema::current_state;
use crate::clock::Millis;
use crate::error::Result;
use crate::notification::Notification;
use crate::policy;
use crate::state::State;
use crate::store::{OpenProblem, PendingDelivery, ServiceDeadline};

/// The alert columns a [`Notification`] is made of, from `alerts a` joined
/// to its server `sv` and service `se`.
const NOTIFICATION: &str = "a.id, sv.name, se.name, a.channel, a.event, a.message, a.severity,
    a.state, a.info, a.ctime";

fn notification(r: &rusqlite::Row<'_>) -> rusqlite::Result<Notification> {
    Ok(Notification {
        id: r.get(0)?,
        server: r.get(1)?,
        service: r.get(2)?,
        channel: r.get(3)?,
        event: r.get(4)?,
        message: r.get(5)?,
        severity: r.get(6)?,
        state: r.get(7)?,
        info: r.get(8)?,
        ctime: r.get(9)?,
        attempts: 0,
        members: Vec::new(),
    })
}

impl Store {
    /// Alerts not yet routed to the plugins, oldest first.
    pub(crate) fn unrouted(&self, limit: usize) -> Result<Vec<Notification>> {
        let conn = self.reader();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {NOTIFICATION} FROM alerts a LEFT JOIN servers sv ON sv.id = a.server_id
             LEFT JOIN services se ON se.id = a.service_id
             WHERE a.routed = 0 ORDER BY a.id LIMIT ?1"
        ))?;
        let rows = st.query_map(params![limit as i64], notification)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Whether `plugin` has a delivery of the last non-OK alert of the
    /// service alert `recovery` is about, raised before it.
    pub(crate) fn got_problem(&self, plugin: &str, recovery: i64) -> Result<bool> {
        let conn = self.reader();
        let got = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM deliveries WHERE plugin = ?1 AND alert_id = (
                     SELECT p.id FROM alerts p JOIN alerts r ON r.id = ?2
                     WHERE p.service_id = r.service_id AND p.id < r.id AND p.severity != 'OK'
                     ORDER BY p.id DESC LIMIT 1))",
            )?
            .query_row(params![plugin, recovery], |r| r.get(0))?;
        Ok(got)
    }

    /// Services in a hard problem or overdue, with when it began.
    pub(crate) fn open_problems(&self) -> Result<Vec<OpenProblem>> {
        let now = self.now();
        let conn = self.reader();
        let silences = conn
            .prepare_cached(&format!(
                "SELECT {SILENCE_COLUMNS} FROM silences WHERE finished = 0 AND starts <= ?1 AND ends > ?1"
            ))?
            .query_map([now], silence_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut st = conn.prepare_cached(concat!(
            "SELECT s.id, sv.name, s.name, st.state, st.info, s.overdue,
                    (SELECT MAX(a.ctime) FROM alerts a WHERE a.service_id = s.id AND a.soft = 0
                     AND CASE WHEN s.overdue THEN a.channel = 'plugin' AND a.event = 'offline'
                              ELSE a.channel = 'service:state' END),
                    EXISTS (SELECT 1 FROM acks k WHERE k.service_id = s.id)
             FROM services s JOIN servers sv ON sv.id = s.server_id ",
            current_state!(),
            " WHERE s.overdue = 1 OR (st.state IS NOT NULL AND st.state != 'OK' AND s.hard = 1)"
        ))?;
        let rows = st.query_map([], |r| {
            let server: String = r.get(1)?;
            let service: String = r.get(2)?;
            let silenced = policy::silenced_by(&silences, &server, Some(&service), now).is_some();
            Ok(OpenProblem {
                service_id: r.get(0)?,
                server,
                service,
                state: r
                    .get::<_, Option<String>>(3)?
                    .map(|s| State::parse(&s).unwrap_or(State::Unk)),
                info: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                overdue: r.get(5)?,
                since: r.get::<_, Option<Millis>>(6)?.unwrap_or(0),
                acked: r.get(7)?,
                silenced,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Services of a server (by name) that have a period.
    pub(crate) fn services_with_period(&self, server: &str) -> Result<usize> {
        let conn = self.reader();
        let n: i64 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM services s JOIN servers sv ON sv.id = s.server_id
                 WHERE sv.name = ?1 AND s.period IS NOT NULL",
            )?
            .query_row([server], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// A plugin's pending deliveries, in alert order.
    pub(crate) fn pending_deliveries(
        &self,
        plugin: &str,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>> {
        let conn = self.reader();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {NOTIFICATION}, d.attempts, d.next_attempt
             FROM deliveries d JOIN alerts a ON a.id = d.alert_id
             LEFT JOIN servers sv ON sv.id = a.server_id
             LEFT JOIN services se ON se.id = a.service_id
             WHERE d.plugin = ?1 AND d.state = 0 ORDER BY d.alert_id LIMIT ?2"
        ))?;
        let rows = st.query_map(params![plugin, limit as i64], |r| {
            let mut notification = notification(r)?;
            notification.attempts = r.get(10)?;
            Ok(PendingDelivery {
                notification,
                next_attempt: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
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
