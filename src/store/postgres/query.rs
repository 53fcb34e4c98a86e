//! Reads on PostgreSQL: the read API's views, and what the supervisor and
//! delivery ask. Each runs on a pooled connection; a read sees every write
//! acknowledged before it, as the writer answers only after COMMIT.

use std::collections::HashMap;

use postgres::Row;

use super::PgStore;
use super::ops::{current_state, untext, untext_opt};
use super::silences::{SILENCE_COLUMNS, silence_row};
use crate::clock::{Millis, iso8601};
use crate::error::Result;
use crate::notification::Notification;
use crate::policy::{self, Ack, Silence};
use crate::state::State;
use crate::store::history::fold_runs;
use crate::store::plan::{
    CurrentState, DAY, MAX_ALERTS, delivery_state, parse_problem, silence_view, since, state_view,
};
use crate::store::views::*;
use crate::store::{AlertFilter, OpenProblem, PendingDelivery, ServiceDeadline, StatusFilter};

fn alert_view(r: &Row) -> AlertView {
    let state: Option<String> = r.get(10);
    let info: Option<String> = untext_opt(r.get(11));
    AlertView {
        id: r.get(0),
        server_id: r.get(1),
        server: r.get(2),
        service_id: r.get(3),
        service: r.get(4),
        ctime: iso8601(r.get(5)),
        channel: r.get(6),
        event: r.get(7),
        message: untext(r.get(8)),
        severity: r.get(9),
        // As OverC 1.0.9: the info of the state it was raised with, null
        // for an alert without one.
        state_info: state.as_ref().map(|_| info.unwrap_or_default()),
        state,
        delivered: r.get(12),
        soft: r.get(14),
        silenced: r.get(15),
        deliveries: Vec::new(),
    }
}

const ALERT_COLUMNS: &str =
    "SELECT a.id, a.server_id, sv.name, a.service_id, se.name, a.ctime, a.channel,
        a.event, a.message, a.severity, a.state, a.info, a.delivered, a.state_id, a.soft,
        a.silenced
    FROM alerts a LEFT JOIN servers sv ON sv.id = a.server_id
    LEFT JOIN services se ON se.id = a.service_id";

/// The alert columns a [`Notification`] is made of.
const NOTIFICATION: &str = "a.id, sv.name, se.name, a.channel, a.event, a.message, a.severity,
    a.state, a.info, a.ctime";

fn notification(r: &Row) -> Notification {
    Notification {
        id: r.get(0),
        server: r.get(1),
        service: r.get(2),
        channel: r.get(3),
        event: r.get(4),
        message: untext(r.get(5)),
        severity: r.get(6),
        state: r.get(7),
        info: untext_opt(r.get(8)),
        ctime: r.get(9),
        attempts: 0,
        members: Vec::new(),
    }
}

impl PgStore {
    pub(super) fn status_each_pg(
        &self,
        filter: StatusFilter,
        grace_s: u32,
        supervisor_lag: f64,
        each: &mut dyn FnMut(StatusPart) -> Result<()>,
    ) -> Result<bool> {
        let now = self.clock.now();
        self.read(|client| {
            // One snapshot for all the queries: a server deleted meanwhile
            // is either there with its services or not at all.
            let mut tx = client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let grace_ms = i64::from(grace_s) * 1000;
            let mut counts: HashMap<(Option<i64>, Option<i64>), i64> = HashMap::new();
            let mut total = 0;
            for r in tx.query(
                "SELECT server_id, service_id, COUNT(*) FROM alerts WHERE ctime >= $1
                 GROUP BY server_id, service_id",
                &[&(now - DAY)],
            )? {
                let n: i64 = r.get(2);
                counts.insert((r.get(0), r.get(1)), n);
                total += n;
            }
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
            let (cond, arg, service) = match filter {
                StatusFilter::All => ("$1::bigint IS NOT NULL", 0, None),
                StatusFilter::Server(id) => ("id = $1", id, None),
                StatusFilter::Service(id) => (
                    "id = (SELECT server_id FROM services WHERE id = $1)",
                    id,
                    Some(id),
                ),
            };
            // Names in byte order, as SQLite sorts them, whatever the
            // database's collation.
            let sql = format!(
                "SELECT id, name, title, ip, first_seen, last_seen FROM servers WHERE {cond}
                 ORDER BY name COLLATE \"C\", id"
            );
            let servers: Vec<ServerView> = tx
                .query(&sql, &[&arg])?
                .iter()
                .map(|r| {
                    let id: i64 = r.get(0);
                    ServerView {
                        id,
                        name: r.get(1),
                        title: untext(r.get(2)),
                        ip: r.get(3),
                        first_seen: iso8601(r.get(4)),
                        last_seen: iso8601(r.get(5)),
                        n_alerts: counts.get(&(Some(id), None)).copied().unwrap_or(0),
                        services: Vec::new(),
                    }
                })
                .collect();
            if filter != StatusFilter::All && servers.is_empty() {
                return Ok(false);
            }
            let last_state_id: Option<i64> = match filter {
                StatusFilter::All => tx.query_one("SELECT max(id) FROM states", &[])?.get(0),
                StatusFilter::Server(id) => tx
                    .query_one(
                        "SELECT max(st.id) FROM states st JOIN services s ON s.id = st.service_id
                         WHERE s.server_id = $1",
                        &[&id],
                    )?
                    .get(0),
                StatusFilter::Service(id) => tx
                    .query_one("SELECT max(id) FROM states WHERE service_id = $1", &[&id])?
                    .get(0),
            };
            // The silences active now and the acks, for each service's
            // marks (few rows; matched in memory).
            let silences: Vec<Silence> = tx
                .query(
                    &format!(
                        "SELECT {SILENCE_COLUMNS} FROM silences
                         WHERE NOT finished AND starts <= $1 AND ends > $1"
                    ),
                    &[&now],
                )?
                .iter()
                .map(silence_row)
                .collect();
            let mut acks: HashMap<i64, AckView> = tx
                .query("SELECT service_id, author, comment, ctime FROM acks", &[])?
                .iter()
                .map(|r| {
                    let view = AckView {
                        author: untext(r.get(1)),
                        comment: untext(r.get(2)),
                        ctime: iso8601(r.get(3)),
                    };
                    (r.get(0), view)
                })
                .collect();
            let leader = tx
                .query_opt(
                    "SELECT node, host, since FROM overc_leader WHERE id = 1",
                    &[],
                )?
                .map(|r| LeaderView {
                    listen: r.get(0),
                    host: r.get(1),
                    since: iso8601(r.get(2)),
                });
            each(StatusPart::Stats(StatsView {
                n_alerts: selected,
                last_state_id: last_state_id.unwrap_or(0),
                supervisor_lag,
                leader,
            }))?;
            let st = tx.prepare(concat!(
                "SELECT s.id, s.name, s.title, s.period, st.state, st.info, st.rtime, s.overdue,
                        s.hard, s.flapping
                 FROM services s ",
                current_state!(),
                " WHERE s.server_id = $1 AND ($2::bigint IS NULL OR s.id = $2)
                 ORDER BY s.name COLLATE \"C\", s.id"
            ))?;
            for mut server in servers {
                for r in tx.query(&st, &[&server.id, &service])? {
                    let id: i64 = r.get(0);
                    let period: Option<i64> = r.get(3);
                    let state: Option<String> = r.get(4);
                    let rtime: Option<Millis> = r.get(6);
                    let overdue: bool = r.get(7);
                    let state = match (state, rtime) {
                        (Some(state), Some(rtime)) => {
                            let info = untext_opt(r.get(5)).unwrap_or_default();
                            let current = CurrentState { state, info, rtime };
                            Some(state_view(current, overdue, period, grace_ms, now))
                        }
                        _ => None,
                    };
                    let name: String = r.get(1);
                    let silenced =
                        policy::silenced_by(&silences, &server.name, Some(&name), now).is_some();
                    server.services.push(ServiceView {
                        id,
                        name,
                        title: untext(r.get(2)),
                        period,
                        n_alerts: counts
                            .get(&(Some(server.id), Some(id)))
                            .copied()
                            .unwrap_or(0),
                        state,
                        soft: !r.get::<_, bool>(8),
                        flapping: r.get(9),
                        silenced,
                        ack: acks.remove(&id),
                    });
                }
                each(StatusPart::Server(server))?;
            }
            tx.commit()?;
            Ok(true)
        })
    }

    pub(super) fn states_pg(
        &self,
        service_id: i64,
        hours: f64,
        fold: Option<&[(i64, i64)]>,
    ) -> Result<Option<HistoryView>> {
        let now = self.clock.now();
        self.read(|client| {
            let Some(name) = client.query_opt("SELECT name FROM services WHERE id = $1", &[&service_id])?
            else {
                return Ok(None);
            };
            let name: String = name.get(0);
            let since = since(now, hours);
            let mut alerts: HashMap<i64, Vec<AlertView>> = HashMap::new();
            let sql = format!(
                "{ALERT_COLUMNS} WHERE a.service_id = $1 AND a.ctime >= $2 AND a.state_id IS NOT NULL
                 ORDER BY a.id DESC"
            );
            for r in client.query(&sql, &[&service_id, &since])? {
                let state_id: i64 = r.get(13);
                alerts.entry(state_id).or_default().push(alert_view(&r));
            }
            let states: Vec<RecordView> = client
                .query(
                    "SELECT id, rtime, state, info FROM states WHERE service_id = $1 AND rtime >= $2
                     ORDER BY id DESC",
                    &[&service_id, &since],
                )?
                .iter()
                .map(|r| {
                    let id: i64 = r.get(0);
                    let info: String = untext(r.get(3));
                    RecordView {
                        id,
                        rtime: iso8601(r.get(1)),
                        state: r.get(2),
                        perfdata: perfdata_views(&info),
                        info,
                        alerts: alerts.remove(&id).unwrap_or_default(),
                        service: name.clone(),
                        service_id,
                    }
                })
                .collect();
            let states = match fold {
                Some(expand) => fold_runs(states, expand),
                None => states.into_iter().map(HistoryEntry::Record).collect(),
            };
            Ok(Some(HistoryView { states }))
        })
    }

    pub(super) fn alert_list_pg(
        &self,
        filter: AlertFilter,
        hours: f64,
    ) -> Result<Option<AlertListView>> {
        let now = self.clock.now();
        self.read(|client| {
            let (cond, arg) = match filter {
                AlertFilter::All => ("$1::bigint IS NOT NULL", 0),
                AlertFilter::Server(id) => {
                    if client
                        .query_opt("SELECT 1 FROM servers WHERE id = $1", &[&id])?
                        .is_none()
                    {
                        return Ok(None);
                    }
                    ("a.server_id = $1", id)
                }
                AlertFilter::Service(id) => {
                    if client
                        .query_opt("SELECT 1 FROM services WHERE id = $1", &[&id])?
                        .is_none()
                    {
                        return Ok(None);
                    }
                    ("a.service_id = $1", id)
                }
            };
            let since = since(now, hours);
            let sql = format!(
                "{ALERT_COLUMNS} WHERE {cond} AND a.ctime >= $2 ORDER BY a.id DESC LIMIT $3"
            );
            let mut list: Vec<AlertView> = client
                .query(&sql, &[&arg, &since, &MAX_ALERTS])?
                .iter()
                .map(alert_view)
                .collect();
            if let (Some(last), Some(first)) =
                (list.last().map(|a| a.id), list.first().map(|a| a.id))
            {
                let index: HashMap<i64, usize> =
                    list.iter().enumerate().map(|(i, a)| (a.id, i)).collect();
                for r in client.query(
                    "SELECT alert_id, plugin, state, attempts, next_attempt, error FROM deliveries
                     WHERE alert_id BETWEEN $1 AND $2 ORDER BY alert_id, plugin COLLATE \"C\"",
                    &[&last, &first],
                )? {
                    let alert_id: i64 = r.get(0);
                    let attempts = u32::try_from(r.get::<_, i32>(3)).unwrap_or(0);
                    let state = delivery_state(i64::from(r.get::<_, i16>(2)), attempts);
                    let next: Millis = r.get(4);
                    if let Some(&i) = index.get(&alert_id) {
                        list[i].deliveries.push(DeliveryView {
                            plugin: r.get(1),
                            state,
                            attempts,
                            next_try: (state == "failing").then(|| iso8601(next)),
                            error: untext_opt(r.get(5)),
                        });
                    }
                }
            }
            Ok(Some(AlertListView { alerts: list }))
        })
    }

    /// `GET /ui/api/silences`: the active silences and those ended in the
    /// last 24 hours, newest first.
    pub(super) fn silences_pg(&self) -> Result<SilenceListView> {
        let now = self.clock.now();
        self.read(|client| {
            let sql = format!(
                "SELECT {SILENCE_COLUMNS}, ended_early FROM silences WHERE ends > $1
                 ORDER BY id DESC"
            );
            let silences = client
                .query(&sql, &[&(now - DAY)])?
                .iter()
                .map(|r| silence_view(silence_row(r), r.get(7), now))
                .collect();
            Ok(SilenceListView { silences })
        })
    }

    /// Whether a silence whose end is not processed yet ended by `now`
    /// (set by any server).
    pub(super) fn silence_end_due(&self, now: Millis) -> Result<bool> {
        self.read(|client| {
            Ok(client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM silences WHERE NOT finished AND ends <= $1)",
                    &[&now],
                )?
                .get(0))
        })
    }

    /// The acknowledgement of a service, if it has one (the store deletes
    /// an ack as soon as the problem it acknowledged changes).
    pub(super) fn ack_of_pg(&self, service_id: i64) -> Result<Option<Ack>> {
        self.read(|client| {
            Ok(client
                .query_opt(
                    "SELECT author, comment, ctime, problem FROM acks WHERE service_id = $1",
                    &[&service_id],
                )?
                .map(|r| Ack {
                    author: untext(r.get(0)),
                    comment: untext(r.get(1)),
                    ctime: r.get(2),
                    problem: parse_problem(r.get(3)),
                }))
        })
    }

    pub(super) fn counts_pg(&self) -> Result<TableCounts> {
        self.read(|client| {
            let r = client.query_one(
                "SELECT (SELECT COUNT(*) FROM servers), (SELECT COUNT(*) FROM services),
                        (SELECT COUNT(*) FROM states), (SELECT COUNT(*) FROM alerts)",
                &[],
            )?;
            Ok(TableCounts {
                servers: r.get(0),
                services: r.get(1),
                states: r.get(2),
                alerts: r.get(3),
            })
        })
    }

    pub(super) fn unrouted_pg(&self, limit: usize) -> Result<Vec<Notification>> {
        self.read(|client| {
            let sql = format!(
                "SELECT {NOTIFICATION} FROM alerts a LEFT JOIN servers sv ON sv.id = a.server_id
                 LEFT JOIN services se ON se.id = a.service_id
                 WHERE NOT a.routed ORDER BY a.id LIMIT $1"
            );
            Ok(client
                .query(&sql, &[&(limit as i64)])?
                .iter()
                .map(notification)
                .collect())
        })
    }

    pub(super) fn got_problem_pg(&self, plugin: &str, recovery: i64) -> Result<bool> {
        self.read(|client| {
            Ok(client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM deliveries WHERE plugin = $1 AND alert_id = (
                         SELECT p.id FROM alerts p JOIN alerts r ON r.id = $2
                         WHERE p.service_id = r.service_id AND p.id < r.id AND p.severity <> 'OK'
                         ORDER BY p.id DESC LIMIT 1))",
                    &[&plugin, &recovery],
                )?
                .get(0))
        })
    }

    pub(super) fn open_problems_pg(&self) -> Result<Vec<OpenProblem>> {
        let now = self.clock.now();
        self.read(|client| {
            let silences: Vec<Silence> = client
                .query(
                    &format!(
                        "SELECT {SILENCE_COLUMNS} FROM silences
                         WHERE NOT finished AND starts <= $1 AND ends > $1"
                    ),
                    &[&now],
                )?
                .iter()
                .map(silence_row)
                .collect();
            let rows = client.query(
                concat!(
                    "SELECT s.id, sv.name, s.name, st.state, st.info, s.overdue,
                        (SELECT MAX(a.ctime) FROM alerts a WHERE a.service_id = s.id AND NOT a.soft
                         AND CASE WHEN s.overdue THEN a.channel = 'plugin' AND a.event = 'offline'
                                  ELSE a.channel = 'service:state' END),
                        EXISTS (SELECT 1 FROM acks k WHERE k.service_id = s.id)
                     FROM services s JOIN servers sv ON sv.id = s.server_id ",
                    current_state!(),
                    " WHERE s.overdue OR (st.state IS NOT NULL AND st.state <> 'OK' AND s.hard)"
                ),
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| {
                    let server: String = r.get(1);
                    let service: String = r.get(2);
                    let silenced =
                        policy::silenced_by(&silences, &server, Some(&service), now).is_some();
                    OpenProblem {
                        service_id: r.get(0),
                        server,
                        service,
                        state: r
                            .get::<_, Option<String>>(3)
                            .map(|s| State::parse(&s).unwrap_or(State::Unk)),
                        info: untext_opt(r.get(4)).unwrap_or_default(),
                        overdue: r.get(5),
                        since: r.get::<_, Option<Millis>>(6).unwrap_or(0),
                        acked: r.get(7),
                        silenced,
                    }
                })
                .collect())
        })
    }

    pub(super) fn services_with_period_pg(&self, server: &str) -> Result<usize> {
        self.read(|client| {
            let n: i64 = client
                .query_one(
                    "SELECT COUNT(*) FROM services s JOIN servers sv ON sv.id = s.server_id
                     WHERE sv.name = $1 AND s.period IS NOT NULL",
                    &[&server],
                )?
                .get(0);
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    /// A plugin's pending deliveries, in alert order, claimed for this
    /// server until the lease ends: rows another server claims (and holds
    /// locked meanwhile) are skipped, not waited for.
    pub(super) fn pending_deliveries_pg(
        &self,
        plugin: &str,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>> {
        let now = self.clock.now();
        let until = now + self.claim_lease;
        self.read(|client| {
            let mut tx = client.transaction()?;
            let claimed: Vec<i64> = tx
                .query(
                    "WITH free AS (
                         SELECT plugin, alert_id FROM deliveries
                         WHERE plugin = $1 AND state = 0
                           AND (claimed_by IS NULL OR claimed_by = $3 OR claimed_until < $4)
                         ORDER BY alert_id LIMIT $2 FOR UPDATE SKIP LOCKED)
                     UPDATE deliveries d SET claimed_by = $3, claimed_until = $5
                     FROM free WHERE d.plugin = free.plugin AND d.alert_id = free.alert_id
                     RETURNING d.alert_id",
                    &[&plugin, &(limit as i64), &self.claimant, &now, &until],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let sql = format!(
                "SELECT {NOTIFICATION}, d.attempts, d.next_attempt
                 FROM deliveries d JOIN alerts a ON a.id = d.alert_id
                 LEFT JOIN servers sv ON sv.id = a.server_id
                 LEFT JOIN services se ON se.id = a.service_id
                 WHERE d.plugin = $1 AND d.alert_id = ANY($2) ORDER BY d.alert_id"
            );
            let pending = tx
                .query(&sql, &[&plugin, &claimed])?
                .iter()
                .map(|r| {
                    let mut notification = notification(r);
                    notification.attempts = u32::try_from(r.get::<_, i32>(10)).unwrap_or(0);
                    PendingDelivery {
                        notification,
                        next_attempt: r.get(11),
                    }
                })
                .collect();
            tx.commit()?;
            Ok(pending)
        })
    }

    pub(super) fn service_deadlines_pg(&self) -> Result<Vec<ServiceDeadline>> {
        self.read(|client| {
            let rows = client.query(
                concat!(
                    "SELECT s.id, st.rtime, s.period FROM services s ",
                    current_state!(),
                    " WHERE s.period IS NOT NULL AND st.rtime IS NOT NULL AND NOT s.overdue"
                ),
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| ServiceDeadline {
                    service_id: r.get(0),
                    rtime: r.get(1),
                    period: r.get(2),
                })
                .collect())
        })
    }

    pub(super) fn due_services_pg(
        &self,
        before: Millis,
        limit: usize,
    ) -> Result<Vec<(i64, Millis)>> {
        self.read(|client| {
            let rows = client.query(
                "SELECT s.id, st.rtime FROM services s
                 JOIN LATERAL (SELECT rtime FROM states WHERE service_id = s.id
                               ORDER BY id DESC LIMIT 1) st ON true
                 WHERE NOT s.overdue AND s.due IS NOT NULL AND s.due < $1
                 ORDER BY s.due LIMIT $2",
                &[&before, &(limit as i64)],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }
}
