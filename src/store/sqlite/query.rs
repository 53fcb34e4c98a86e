//! Reads behind the `/ui/api/` JSON API, in the original's shapes.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Row, params};

use super::Store;
use super::schema::current_state;
use crate::clock::{Millis, iso8601};
use crate::error::Result;
use crate::rules;
use crate::store::views::*;
use crate::store::{AlertFilter, StatusFilter};

const DAY: Millis = 86_400_000;
/// Most alerts one listing returns.
const MAX_ALERTS: i64 = 5000;

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
        state_info: state.map(|state| StateInfo {
            state,
            info: info.unwrap_or_default(),
        }),
        delivered: r.get(12)?,
    })
}

const ALERT_COLUMNS: &str =
    "SELECT a.id, a.server_id, sv.name, a.service_id, se.name, a.ctime, a.channel,
        a.event, a.message, a.severity, a.state, a.info, a.delivered, a.state_id
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
        let mut server_alerts: HashMap<i64, i64> = HashMap::new();
        for ((srv, _), n) in &counts {
            if let Some(srv) = srv {
                *server_alerts.entry(*srv).or_default() += n;
            }
        }
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
                    n_alerts: server_alerts.get(&id).copied().unwrap_or(0),
                    services: Vec::new(),
                });
            }
        }
        if filter != StatusFilter::All && servers.is_empty() {
            return Ok(false);
        }
        let last_state_id: Option<i64> = conn
            .prepare_cached("SELECT MAX(id) FROM states")?
            .query_row([], |r| r.get(0))?;
        each(StatusPart::Stats(StatsView {
            n_alerts: total,
            last_state_id: last_state_id.unwrap_or(0),
            supervisor_lag,
        }))?;
        let mut st = conn.prepare_cached(concat!(
            "SELECT s.id, s.name, s.title, s.period, st.state, st.info, st.rtime, s.overdue
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
                    (Some(state), Some(t)) => {
                        let info = r.get::<_, Option<String>>(5)?.unwrap_or_default();
                        Some(StateView {
                            rtime: iso8601(t),
                            timed_out: rules::is_overdue(overdue, period, rtime, grace_ms, now),
                            seen_ago: (now - t).max(0) / 1000,
                            state,
                            perfdata: perfdata_views(&info),
                            info,
                        })
                    }
                    _ => None,
                };
                server.services.push(ServiceView {
                    id,
                    name: r.get(1)?,
                    title: r.get(2)?,
                    period,
                    n_alerts: counts
                        .get(&(Some(server.id), Some(id)))
                        .copied()
                        .unwrap_or(0),
                    state,
                });
            }
            each(StatusPart::Server(server))?;
        }
        Ok(true)
    }

    /// `GET /ui/api/status/service/<id>/states`: history newest first, with
    /// runs of three or more same-state records without alerts folded when
    /// `groups` is set. `None` when the service does not exist.
    pub(crate) fn states(
        &self,
        service_id: i64,
        hours: u32,
        groups: bool,
    ) -> Result<Option<HistoryView>> {
        let now = self.now();
        let conn = self.reader();
        let name: Option<String> = conn
            .prepare_cached("SELECT name FROM services WHERE id = ?1")?
            .query_row([service_id], |r| r.get(0))
            .optional()?;
        let Some(name) = name else { return Ok(None) };
        let since = now - i64::from(hours) * 3_600_000;
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
        let states = if groups {
            fold_runs(states)
        } else {
            states.into_iter().map(HistoryEntry::Record).collect()
        };
        Ok(Some(HistoryView { states }))
    }

    /// `GET /ui/api/status/alerts/…`: alerts of the last `hours`, newest first.
    /// `None` when the filtered server or service does not exist.
    pub(crate) fn alert_list(
        &self,
        filter: AlertFilter,
        hours: u32,
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
        let since = now - i64::from(hours) * 3_600_000;
        let sql =
            format!("{ALERT_COLUMNS} WHERE {cond} AND a.ctime >= ?2 ORDER BY a.id DESC LIMIT ?3");
        let mut st = conn.prepare_cached(&sql)?;
        let list = st
            .query_map(params![arg, since, MAX_ALERTS], alert_view)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Some(AlertListView { alerts: list }))
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

/// Folds runs of three or more same-state records without alerts.
fn fold_runs(states: Vec<RecordView>) -> Vec<HistoryEntry> {
    let foldable = |r: &RecordView| r.alerts.is_empty();
    let mut out = Vec::new();
    let mut records = states.into_iter().peekable();
    while let Some(first) = records.next() {
        let mut run = vec![first];
        while foldable(&run[0])
            && records
                .peek()
                .is_some_and(|next| foldable(next) && next.state == run[0].state)
        {
            run.extend(records.next());
        }
        if run.len() >= 3 {
            let (newest, oldest) = (&run[0], &run[run.len() - 1]);
            out.push(HistoryEntry::Group(GroupView {
                id: newest.id,
                state: newest.state.clone(),
                group: format!("{}-{}", newest.id, oldest.id),
                group_count: run.len(),
            }));
        } else {
            out.extend(run.into_iter().map(HistoryEntry::Record));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(id: i64, state: &str, alerts: usize) -> RecordView {
        let alert = AlertView {
            id: 1,
            server_id: None,
            server: None,
            service_id: None,
            service: None,
            ctime: String::new(),
            channel: String::new(),
            event: String::new(),
            message: String::new(),
            severity: String::new(),
            state_info: None,
            delivered: false,
        };
        RecordView {
            id,
            rtime: String::new(),
            state: state.into(),
            perfdata: Vec::new(),
            info: String::new(),
            alerts: vec![alert; alerts],
            service: "svc".into(),
            service_id: 1,
        }
    }

    #[test]
    fn folds_runs_of_three_or_more_without_alerts() {
        let got = serde_json::to_value(fold_runs(vec![
            st(9, "OK", 0),
            st(8, "OK", 0),
            st(7, "OK", 0),
            st(6, "WARN", 1),
            st(5, "WARN", 0),
            st(4, "WARN", 0),
            st(3, "OK", 0),
            st(2, "OK", 0),
        ]))
        .unwrap();
        assert_eq!(got.as_array().unwrap().len(), 6);
        assert_eq!(got[0]["group"], "9-7");
        assert_eq!(got[0]["group_count"], 3);
        assert_eq!(got[1]["id"], 6);
        assert!(got[2].get("group").is_none());
        assert!(got[4].get("group").is_none());
    }
}
