//! Status reports and posted alerts: history records, new services, and the
//! alerts their state changes raise.

use rusqlite::{OptionalExtension, params};

use super::auth::authenticate;
use super::{acks, silences};
use crate::clock::Millis;
use crate::error::Result;
use crate::policy::{FLAP_WINDOW, FlapHistory, Held, Problem, Streak};
use crate::protocol::{AlertReport, StatusReport};
use crate::rules::{self, Event};
use crate::state::State;
use crate::store::plan::plan_report;
use crate::store::sqlite::redo::Tx;
use crate::store::sqlite::schema::current_state;
use crate::store::sqlite::writer::{Applied, Batch, DeadlineChange, KnownService};

/// Finds a service (in the cache or the database) or creates it.
pub(in crate::store::sqlite) fn find_or_create_service(
    b: &mut Batch<'_>,
    server_id: i64,
    name: &str,
    period: Option<u32>,
) -> Result<KnownService> {
    if let Some(known) = b.caches.services.get(&server_id).and_then(|m| m.get(name)) {
        return Ok(known.clone());
    }
    let parse = |s: Option<String>| s.map(|s| State::parse(&s).unwrap_or(State::Unk));
    let row =
        b.tx.read(concat!(
            "SELECT s.id, st.state, s.overdue, s.period, s.hard, s.hard_state, s.streak,
                    s.flapping FROM services s ",
            current_state!(),
            " WHERE s.server_id = ?1 AND s.name = ?2"
        ))?
        .query_row(params![server_id, name], |r| {
            let state = parse(r.get(1)?);
            Ok(KnownService {
                id: r.get(0)?,
                state,
                streak: state
                    .map(|state| {
                        Ok::<_, rusqlite::Error>(Streak {
                            state,
                            hard: r.get(4)?,
                            hard_state: parse(r.get(5)?),
                            count: r.get(6)?,
                        })
                    })
                    .transpose()?,
                overdue: r.get(2)?,
                period: r.get(3)?,
                flapping: r.get(7)?,
                flaps: FlapHistory::new(),
            })
        })
        .optional()?;
    let mut known = match row {
        Some(row) => row,
        None => {
            b.tx.exec(
                "INSERT INTO services(server_id, name, title, period) VALUES (?1, ?2, ?2, ?3)",
                params![server_id, name, period],
            )?;
            KnownService {
                id: b.tx.last_insert_rowid(),
                state: None,
                streak: None,
                overdue: false,
                period,
                flapping: false,
                flaps: FlapHistory::new(),
            }
        }
    };
    if b.policy.flapping && known.state.is_some() {
        // The flap window is the newest history, oldest first.
        let mut states: Vec<State> =
            b.tx.read("SELECT state FROM states WHERE service_id = ?1 ORDER BY id DESC LIMIT ?2")?
                .query_map(params![known.id, FLAP_WINDOW as i64], |r| {
                    r.get::<_, String>(0)
                })?
                .map(|s| s.map(|s| State::parse(&s).unwrap_or(State::Unk)))
                .collect::<Result<_, _>>()?;
        states.reverse();
        known.flaps = states
            .into_iter()
            .fold(FlapHistory::new(), FlapHistory::push);
    }
    b.caches
        .services
        .entry(server_id)
        .or_default()
        .insert(name.to_owned(), known.clone());
    Ok(known)
}

/// An event of the alert log about to be written, with what it is about.
pub(in crate::store::sqlite) struct NewAlert<'a> {
    pub server_id: Option<i64>,
    pub service_id: Option<i64>,
    pub state_id: Option<i64>,
    pub event: &'a Event,
    /// The service's state and info when it was raised.
    pub state: Option<(&'a str, &'a str)>,
    /// Why the policy holds it back, if it does: recorded, not notified.
    pub held: Option<Held>,
}

pub(in crate::store::sqlite) fn insert_alert(
    tx: &mut Tx<'_>,
    a: &NewAlert<'_>,
    now: Millis,
) -> Result<i64> {
    // A held alert is done at once: delivery never sees it.
    let held = a.held.is_some();
    tx.exec(
        "INSERT INTO alerts(server_id, service_id, state_id, ctime, channel, event, message,
                            severity, state, info, soft, silenced, routed, delivered)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
        params![
            a.server_id,
            a.service_id,
            a.state_id,
            now,
            a.event.channel,
            a.event.event,
            &*a.event.message,
            a.event.severity.as_str(),
            a.state.map(|s| s.0),
            a.state.map(|s| s.1),
            a.held == Some(Held::Soft),
            a.held == Some(Held::Silenced),
            held,
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// History rows written by one statement at most. A report's records go in
/// as one multi-row INSERT rather than one statement each: the statement
/// cache, binding and halting are paid once per report.
pub(in crate::store::sqlite) const HISTORY_CHUNK: usize = 8;

/// `INSERT_HISTORY[n - 1]` inserts `n` history records. `OR FAIL`: a NOT
/// NULL violation would stop the statement where it is rather than undo its
/// earlier rows, so SQLite keeps no statement journal for it; the batch is
/// rolled back on any error anyway.
#[rustfmt::skip]
pub(in crate::store::sqlite) const INSERT_HISTORY: [&str; HISTORY_CHUNK] = [
        "INSERT OR FAIL INTO states(service_id, rtime, state, info) VALUES (?, ?, ?, ?)",
        "INSERT OR FAIL INTO states(service_id, rtime, state, info) VALUES (?, ?, ?, ?), (?, ?, ?, ?)",
        "INSERT OR FAIL INTO states(service_id, rtime, state, info) VALUES (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?)",
        "INSERT OR FAIL INTO states(service_id, rtime, state, info) VALUES (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?)",
        "INSERT OR FAIL INTO states(service_id, rtime, state, info) VALUES (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?)",
        "INSERT OR FAIL INTO states(service_id, rtime, state, info) VALUES (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?)",
        "INSERT OR FAIL INTO states(service_id, rtime, state, info) VALUES (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?)",
        "INSERT OR FAIL INTO states(service_id, rtime, state, info) VALUES (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?)",
];

/// One service's report as it is about to be written.
struct Pending {
    row: KnownService,
    period: u32,
    state: &'static str,
    /// The events it raises, each with why it is held back, if it is.
    events: Vec<(Event, Option<Held>)>,
    /// Whether its new state is hard.
    hard: bool,
}

pub(in crate::store::sqlite) fn apply_status(
    r: &StatusReport,
    ip: &str,
    b: &mut Batch<'_>,
) -> Result<Applied> {
    let server_id = authenticate(&r.server, ip, b)?;
    let mut applied = Applied {
        server_id: Some(server_id),
        ..Applied::default()
    };
    // First what each record changes, in order: a name given twice sees
    // its first record as the current state, as if each were written alone.
    let mut pending = Vec::with_capacity(r.services.len());
    for s in &r.services {
        let period = s.period.unwrap_or(r.period);
        let row = find_or_create_service(b, server_id, &s.name, Some(period))?;
        let retries = s.retries.or(r.retries).unwrap_or(b.policy.retries);
        let plan = plan_report(&row, s.state, period, retries, b.policy);
        if plan.write_row {
            let (hard, hard_state, streak) = plan.row_memory();
            b.tx.exec(
                "UPDATE services SET period = ?2, overdue = 0, hard = ?3, hard_state = ?4,
                     streak = ?5, flapping = ?6 WHERE id = ?1",
                params![row.id, period, hard, hard_state, streak, plan.flapping],
            )?;
        }
        if let Some(known) = b
            .caches
            .services
            .get_mut(&server_id)
            .and_then(|m| m.get_mut(&s.name))
        {
            known.state = Some(s.state);
            known.streak = Some(plan.streak);
            known.overdue = false;
            known.period = Some(period);
            known.flapping = plan.flapping;
            known.flaps = plan.flaps;
        }
        let mut events = plan.events;
        // A silence holds every event about what it matches.
        if !events.is_empty() && silences::is_silenced(b, &r.server.name, Some(&s.name))? {
            for (_, held) in &mut events {
                *held = Some(Held::Silenced);
            }
        }
        pending.push(Pending {
            row,
            period,
            state: s.state.as_str(),
            events,
            hard: plan.streak.hard,
        });
    }
    // Then the history records, a chunk per statement. Without an id given,
    // SQLite numbers the rows of one INSERT one after the other, each the
    // largest id plus one, so the last id tells each record's.
    let mut state_ids = Vec::with_capacity(pending.len());
    for (chunk, reports) in pending
        .chunks(HISTORY_CHUNK)
        .zip(r.services.chunks(HISTORY_CHUNK))
    {
        let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(4 * chunk.len());
        for (p, s) in chunk.iter().zip(reports) {
            values.extend_from_slice(&[&p.row.id, &b.now, &p.state, &s.info]);
        }
        b.tx.exec(INSERT_HISTORY[chunk.len() - 1], &values)?;
        let last = b.tx.last_insert_rowid();
        state_ids.extend((0..chunk.len() as i64).rev().map(|back| last - back));
    }
    for ((p, s), state_id) in pending.iter().zip(&r.services).zip(state_ids) {
        let (row, state) = (&p.row, p.state);
        if !p.events.is_empty() {
            // The problem changed: an ack of the one before goes.
            acks::on_problem(b, row.id, Problem::of(Some(s.state), p.hard, false))?;
        }
        for (event, held) in &p.events {
            let alert = NewAlert {
                server_id: Some(server_id),
                service_id: Some(row.id),
                state_id: Some(state_id),
                event,
                state: Some((state, &s.info)),
                held: *held,
            };
            applied.alerts.push(insert_alert(&mut b.tx, &alert, b.now)?);
        }
        applied.deadlines.push(DeadlineChange {
            service_id: row.id,
            rtime: b.now,
            // Grace is the supervisor's to add.
            due: Some(rules::deadline(b.now, i64::from(p.period), 0)),
        });
        b.touched.insert(row.id);
    }
    Ok(applied)
}

pub(in crate::store::sqlite) fn apply_alerts(
    r: &AlertReport,
    ip: &str,
    b: &mut Batch<'_>,
) -> Result<Applied> {
    let server_id = authenticate(&r.server, ip, b)?;
    let mut applied = Applied {
        server_id: Some(server_id),
        ..Applied::default()
    };
    for a in &r.alerts {
        let (service_id, current) = match &a.service {
            Some(name) => {
                let row = find_or_create_service(b, server_id, name, None)?;
                let current: Option<(String, String)> =
                    b.tx.read(concat!(
                        "SELECT st.state, st.info FROM services s ",
                        current_state!(),
                        " WHERE s.id = ?1 AND st.id IS NOT NULL"
                    ))?
                    .query_row([row.id], |r| {
                        Ok((
                            r.get(0)?,
                            r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        ))
                    })
                    .optional()?;
                (Some(row.id), current)
            }
            None => (None, None),
        };
        let event = rules::on_api_alert(&a.message, a.severity);
        let alert = NewAlert {
            server_id: Some(server_id),
            service_id,
            state_id: None,
            event: &event,
            state: current.as_ref().map(|(s, i)| (s.as_str(), i.as_str())),
            held: silences::is_silenced(b, &r.server.name, a.service.as_deref())?
                .then_some(Held::Silenced),
        };
        applied.alerts.push(insert_alert(&mut b.tx, &alert, b.now)?);
    }
    Ok(applied)
}
