//! Reads behind the `/ui/api/` JSON API, in the original's shapes.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Row, params};

use super::Store;
use super::ops::silences::{SILENCE_COLUMNS, silence_row};
use super::schema::current_state;
use crate::clock::{Millis, iso8601};
use crate::error::Result;
use crate::policy::{self, Ack};
use crate::store::history::fold_runs;
use crate::store::plan::{
    CurrentState, DAY, MAX_ALERTS, delivery_state, parse_problem, silence_view, since, state_view,
};
use crate::store::views::*;
use crate::store::{AlertFilter, StatusFilter};

fn alert_view(r: &Row<'_>) -> rusqlite::Result<AlertView> {
    let state: Option<String> = r.get(10)?;
    let info: Option<String> = r.get(11)?;
    Ok(AlertView {
        id: r.get(0)?,
        server_id: r.get(1)?,
        server: r.get(2)?,
        service_id: r.get(3)?,
        service: r.get(4)?,
        ctime: iso8601(r.get(5)?),
        channel: r.get(6)?,
        event: r.get(7)?,
        message: r.get(8)?,
        severity: r.get(9)?,
        // As OverC 1.0.9: the info of the state it was raised with, null
        // for an alert without one.
        state_info: state.as_ref().map(|_| info.unwrap_or_default()),
        state,
        delivered: r.get(12)?,
        soft: r.get(14)?,
        silenced: r.get(15)?,
        deliveries: Vec::new(),
    })
}

/// A delivery row as the read API shows it.
fn delivery_view(r: &Row<'_>) -> rusqlite::Result<(i64, DeliveryView)> {
    let state: i64 = r.get(2)?;
    let attempts: u32 = r.get(3)?;
    let next: Millis = r.get(4)?;
    let state = delivery_state(state, attempts);
    Ok((
        r.get(0)?,
        DeliveryView {
            plugin: r.get(1)?,
            state,
            attempts,
            next_try: (state == "failing").then(|| iso8601(next)),
            error: r.get(5)?,
        },
    ))
}

const ALERT_COLUMNS: &str =
    "SELECT a.id, a.server_id, sv.name, a.service_id, se.name, a.ctime, a.channel,
        a.event, a.message, a.severity, a.state, a.info, a.delivered, a.state_id, a.soft,
        a.silenced
    FROM alerts a LEFT JOIN servers sv ON sv.id = a.server_id
    LEFT JOIN services se ON se.id = a.service_id";

impl Store {
    /// [`Storage::status`](crate::store::Storage::status) one part at a time: the stats first, then each
    /// server with its services, in order. Only one server's views exist at a
    /// time, so a caller writing them out as they come needs little memory
    /// for any number of services. Returns false (having called `each` for
    /// nothing) when the filtered server or service does not exist.
    ///
    /// `each` runs while the store's read connection is held: it must not
    /// read from this store itself.
    pub(crate) fn status_each(
        &self,
        filter: StatusFilter,
        grace_s: u32,
        supervisor_lag: f64,
        mut each: impl FnMut(StatusPart) -> Result<()>,
    ) -> Result<bool> {
        let now = self.now();
        let reader = self.reader();
        // One snapshot for all the queries: a server deleted meanwhile is
        // either there with its services or not at all.
        let conn = reader.unchecked_transaction()?;
        let grace_ms = i64::from(grace_s) * 1000;
        let since = now - DAY;
        let (server_sql, service) = match filter {
            StatusFilter::All => ("WHERE ?1 = ?1", None),
            StatusFilter::Server(_) => ("WHERE id = ?1", None),
            StatusFilter::Service(id) => (
                "WHERE id = (SELECT server_id FROM services WHERE id = ?1)",
                Some(id),
            ),
        };
        let arg = match filter {
            StatusFilter::All => 0,
            StatusFilter::Server(id) | StatusFilter::Service(id) => id,
        };
        let mut counts: HashMap<(Option<i64>, Option<i64>), i64> = HashMap::new();
        let mut total = 0;
        {
            let mut st = conn.prepare_cached(
                "SELECT server_id, service_id, COUNT(*) FROM alerts WHERE ctime >= ?1
                 GROUP BY server_id, service_id",
            )?;
            let rows =
                st.query_map([since], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?)))?;
            for row in rows {
                let (srv, svc, n) = row?;
                counts.insert((srv, svc), n);
                total += n;
            }
        }
        // The selection's alerts: a server's with its services', or one
        // service's.
        let selected = match filter {
            StatusFilter::All => total,
            StatusFilter::Server(id) => counts
                .iter()
                .filter(|((srv, _), _)| *srv == Some(id))
                .map(|(_, n)| n)
                .sum(),
            StatusFilter::Service(id) => counts
                .iter()
                .filter(|((_, svc), _)| *svc == Some(id))
                .map(|(_, n)| n)
                .sum(),
        };
        let mut servers = Vec::new();
        {
            let sql = format!(
                "SELECT id, name, title, ip, first_seen, last_seen FROM servers {server_sql} ORDER BY name, id"
            );
            let mut st = conn.prepare_cached(&sql)?;
            let mut rows = st.query([arg])?;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                servers.push(ServerView {
                    id,
                    name: r.get(1)?,
                    title: r.get(2)?,
                    ip: r.get(3)?,
                    first_seen: iso8601(r.get(4)?),
                    last_seen: iso8601(r.get(5)?),
                    // About the server itself, as in OverC 1.0.9: its
                    // services' alerts are counted on each service.
                    n_alerts: counts.get(&(Some(id), None)).copied().unwrap_or(0),
                    services: Vec::new(),
                });
            }
        }
        if filter != StatusFilter::All && servers.is_empty() {
            return Ok(false);
        }
        // The newest record of the selection.
        let last_state_id: Option<i64> = match filter {
            StatusFilter::All => conn
                .prepare_cached("SELECT max(id) FROM states")?
                .query_row([], |r| r.get(0))?,
            StatusFilter::Server(id) => conn
                .prepare_cached(
                    "SELECT max((SELECT max(id) FROM states WHERE service_id = s.id))
                     FROM services s WHERE s.server_id = ?1",
                )?
                .query_row([id], |r| r.get(0))?,
            StatusFilter::Service(id) => conn
                .prepare_cached("SELECT max(id) FROM states WHERE service_id = ?1")?
                .query_row([id], |r| r.get(0))?,
        };
        // The silences active now and the acks, for each service's marks
        // (few rows; matched in memory).
        let silences = conn
            .prepare_cached(&format!(
                "SELECT {SILENCE_COLUMNS} FROM silences WHERE finished = 0 AND starts <= ?1 AND ends > ?1"
            ))?
            .query_map([now], silence_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut acks: HashMap<i64, AckView> = HashMap::new();
        {
            let mut st =
                conn.prepare_cached("SELECT service_id, author, comment, ctime FROM acks")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                acks.insert(
                    r.get(0)?,
                    AckView {
                        author: r.get(1)?,
                        comment: r.get(2)?,
                        ctime: iso8601(r.get(3)?),
                    },
                );
            }
        }
        each(StatusPart::Stats(StatsView {
            n_alerts: selected,
            last_state_id: last_state_id.unwrap_or(0),
            supervisor_lag,
            leader: None,
        }))?;
        let mut st = conn.prepare_cached(concat!(
            "SELECT s.id, s.name, s.title, s.period, st.state, st.info, st.rtime, s.overdue,
                    s.hard, s.flapping
             FROM services s ",
            current_state!(),
            " WHERE s.server_id = ?1 AND (?2 IS NULL OR s.id = ?2) ORDER BY s.name, s.id"
        ))?;
        for mut server in servers {
            let mut rows = st.query(params![server.id, service])?;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                let period: Option<i64> = r.get(3)?;
                let state: Option<String> = r.get(4)?;
                let rtime: Option<Millis> = r.get(6)?;
                let overdue: bool = r.get(7)?;
                let state = match (state, rtime) {
                    (Some(state), Some(rtime)) => {
                        let info = r.get::<_, Option<String>>(5)?.unwrap_or_default();
                        let current = CurrentState { state, info, rtime };
                        Some(state_view(current, overdue, period, grace_ms, now))
                    }
                    _ => None,
                };
                let name: String = r.get(1)?;
                let silenced =
                    policy::silenced_by(&silences, &server.name, Some(&name), now).is_some();
                server.services.push(ServiceView {
                    id,
                    name,
                    title: r.get(2)?,
                    period,
                    n_alerts: counts
                        .get(&(Some(server.id), Some(id)))
                        .copied()
                        .unwrap_or(0),
                    state,
                    soft: !r.get::<_, bool>(8)?,
                    flapping: r.get(9)?,
                    silenced,
                    ack: acks.remove(&id),
                });
            }
            each(StatusPart::Server(server))?;
        }
        Ok(true)
    }

    /// `GET /ui/api/status/service/<id>/states`: the history of the last
    /// `hours`, newest first. With `fold` (`groups=yes`), runs are folded as
    /// OverC 1.0.9 folded them: each run's first and last records stay, the
    /// two or more between become one group row, except where one of the
    /// given id ranges (`expand=A-B`) overlaps them. `None` when the service
    /// does not exist.
    pub(crate) fn states(
        &self,
        service_id: i64,
        hours: f64,
        fold: Option<&[(i64, i64)]>,
    ) -> Result<Option<HistoryView>> {
        let now = self.now();
        let conn = self.reader();
        let name: Option<String> = conn
            .prepare_cached("SELECT name FROM services WHERE id = ?1")?
            .query_row([service_id], |r| r.get(0))
            .optional()?;
        let Some(name) = name else { return Ok(None) };
        let since = since(now, hours);
        let mut alerts: HashMap<i64, Vec<AlertView>> = HashMap::new();
        {
            let sql = format!(
                "{ALERT_COLUMNS} WHERE a.service_id = ?1 AND a.ctime >= ?2 AND a.state_id IS NOT NULL
                 ORDER BY a.id DESC"
            );
            let mut st = conn.prepare_cached(&sql)?;
            let mut rows = st.query(params![service_id, since])?;
            while let Some(r) = rows.next()? {
                let state_id: i64 = r.get(13)?;
                alerts.entry(state_id).or_default().push(alert_view(r)?);
            }
        }
        let mut states = Vec::new();
        {
            let mut st = conn.prepare_cached(
                "SELECT id, rtime, state, info FROM states WHERE service_id = ?1 AND rtime >= ?2
                 ORDER BY id DESC",
            )?;
            let mut rows = st.query(params![service_id, since])?;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                let info: String = r.get(3)?;
                states.push(RecordView {
                    id,
                    rtime: iso8601(r.get(1)?),
                    state: r.get(2)?,
                    perfdata: perfdata_views(&info),
                    info,
                    alerts: alerts.remove(&id).unwrap_or_default(),
                    service: name.clone(),
                    service_id,
                });
            }
        }
        let states = match fold {
            Some(expand) => fold_runs(states, expand),
            None => states.into_iter().map(HistoryEntry::Record).collect(),
        };
        Ok(Some(HistoryView { states }))
    }

    /// `GET /ui/api/status/alerts/…`: alerts of the last `hours`, newest first.
    /// `None` when the filtered server or service does not exist.
    pub(crate) fn alert_list(
        &self,
        filter: AlertFilter,
        hours: f64,
    ) -> Result<Option<AlertListView>> {
        let now = self.now();
        let conn = self.reader();
        let exists = |sql: &str, id: i64| -> Result<bool> {
            Ok(conn
                .prepare_cached(sql)?
                .query_row([id], |_| Ok(()))
                .optional()?
                .is_some())
        };
        let (cond, arg) = match filter {
            AlertFilter::All => ("?1 = ?1", 0),
            AlertFilter::Server(id) => {
                if !exists("SELECT 1 FROM servers WHERE id = ?1", id)? {
                    return Ok(None);
                }
                ("a.server_id = ?1", id)
            }
            AlertFilter::Service(id) => {
                if !exists("SELECT 1 FROM services WHERE id = ?1", id)? {
                    return Ok(None);
                }
                ("a.service_id = ?1", id)
            }
        };
        let since = since(now, hours);
        let sql =
            format!("{ALERT_COLUMNS} WHERE {cond} AND a.ctime >= ?2 ORDER BY a.id DESC LIMIT ?3");
        let mut st = conn.prepare_cached(&sql)?;
        let mut list = st
            .query_map(params![arg, since, MAX_ALERTS], alert_view)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        // Newest first: the ids span [last, first].
        if let (Some(last), Some(first)) = (list.last().map(|a| a.id), list.first().map(|a| a.id)) {
            let index: HashMap<i64, usize> =
                list.iter().enumerate().map(|(i, a)| (a.id, i)).collect();
            let mut st = conn.prepare_cached(
                "SELECT alert_id, plugin, state, attempts, next_attempt, error FROM deliveries
                 WHERE alert_id BETWEEN ?1 AND ?2 ORDER BY alert_id, plugin",
            )?;
            for row in st.query_map(params![last, first], delivery_view)? {
                let (alert_id, d) = row?;
                if let Some(&i) = index.get(&alert_id) {
                    list[i].deliveries.push(d);
                }
            }
        }
        Ok(Some(AlertListView { alerts: list }))
    }

    /// `GET /ui/api/silences`: the active silences and those ended in the
    /// last 24 hours, newest first.
    pub(crate) fn silences(&self) -> Result<SilenceListView> {
        let now = self.now();
        let conn = self.reader();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {SILENCE_COLUMNS}, ended_early FROM silences WHERE ends > ?1 ORDER BY id DESC"
        ))?;
        let mut rows = st.query([now - DAY])?;
        let mut silences = Vec::new();
        while let Some(r) = rows.next()? {
            silences.push(silence_view(silence_row(r)?, r.get(7)?, now));
        }
        Ok(SilenceListView { silences })
    }

    /// The acknowledgement of a service, if it has one (the store deletes
    /// an ack as soon as the problem it acknowledged changes).
    pub(crate) fn ack_of(&self, service_id: i64) -> Result<Option<Ack>> {
        let conn = self.reader();
        let ack = conn
            .prepare_cached(
                "SELECT author, comment, ctime, problem FROM acks WHERE service_id = ?1",
            )?
            .query_row([service_id], |r| {
                Ok(Ack {
                    author: r.get(0)?,
                    comment: r.get(1)?,
                    ctime: r.get(2)?,
                    problem: parse_problem(&r.get::<_, String>(3)?),
                })
            })
            .optional()?;
        Ok(ack)
    }

    /// Count of rows in each table, for tests and diagnostics.
    pub(crate) fn counts(&self) -> Result<TableCounts> {
        let conn = self.reader();
        let count = |t: &str| -> Result<i64> {
            Ok(conn.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))?)
        };
        Ok(TableCounts {
            servers: count("servers")?,
            services: count("services")?,
            states: count("states")?,
            alerts: count("alerts")?,
        })
    }
}
