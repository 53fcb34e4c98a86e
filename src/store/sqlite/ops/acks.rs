//! Acknowledgements (SPEC §9): recorded and notified, and deleted as soon
//! as the problem they acknowledge changes ([`Ack::holds`](crate::policy::Ack::holds)).
//!
//! The writer keeps which services are acknowledged, and in which problem,
//! in its cache (loaded on first use), so that a report checks an ack only
//! when it raised an event, without a query.

use rusqlite::{OptionalExtension, params};

use super::reports::{NewAlert, insert_alert};
use super::silences;
use crate::error::{Error, Result};
use crate::idmap::IdMap;
use crate::policy::{self, Problem};
use crate::state::State;
use crate::store::plan::parse_problem;
use crate::store::sqlite::redo::Tx;
use crate::store::sqlite::schema::current_state;
use crate::store::sqlite::writer::{Applied, Batch, Caches};

fn loaded<'c>(tx: &Tx<'_>, caches: &'c mut Caches) -> Result<&'c mut IdMap<Problem>> {
    if caches.acks.is_none() {
        let mut map = IdMap::default();
        let mut st = tx.read("SELECT service_id, problem FROM acks")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            map.insert(r.get(0)?, parse_problem(&r.get::<_, String>(1)?));
        }
        caches.acks = Some(map);
    }
    Ok(caches.acks.get_or_insert_with(IdMap::default))
}

/// The problem service `id` is acknowledged in, if it is.
pub(in crate::store::sqlite) fn acked(b: &mut Batch<'_>, id: i64) -> Result<Option<Problem>> {
    Ok(loaded(&b.tx, b.caches)?.get(&id).copied())
}

/// The problem of service `id` is now `current`: its ack goes unless it
/// still holds. Called where an event changed the service's problem (a
/// report that raised one, an overdue flag).
pub(in crate::store::sqlite) fn on_problem(
    b: &mut Batch<'_>,
    id: i64,
    current: Option<Problem>,
) -> Result<()> {
    let acked = loaded(&b.tx, b.caches)?.get(&id).copied();
    if let Some(problem) = acked {
        if Some(problem) != current {
            b.tx.exec("DELETE FROM acks WHERE service_id = ?1", params![id])?;
            loaded(&b.tx, b.caches)?.remove(&id);
            log::debug!("the acknowledgement of service {id} ended: its problem changed");
        }
    }
    Ok(())
}

/// Forgets the acks of deleted services (their rows are deleted by the caller).
pub(in crate::store::sqlite) fn forget(caches: &mut Caches, ids: &[i64]) {
    if let Some(map) = &mut caches.acks {
        for id in ids {
            map.remove(id);
        }
    }
}

/// Acknowledges the problem of service `id` and raises `[service:ack]`.
pub(in crate::store::sqlite) fn ack(
    b: &mut Batch<'_>,
    id: i64,
    author: &str,
    comment: &str,
) -> Result<Applied> {
    struct Row {
        server_id: i64,
        server: String,
        name: String,
        overdue: bool,
        state: Option<String>,
        info: Option<String>,
        state_id: Option<i64>,
        hard: bool,
    }
    let row =
        b.tx.read(concat!(
            "SELECT s.server_id, sv.name, s.name, s.overdue, st.state, st.info, st.id, s.hard
             FROM services s JOIN servers sv ON sv.id = s.server_id ",
            current_state!(),
            " WHERE s.id = ?1"
        ))?
        .query_row([id], |r| {
            Ok(Row {
                server_id: r.get(0)?,
                server: r.get(1)?,
                name: r.get(2)?,
                overdue: r.get(3)?,
                state: r.get(4)?,
                info: r.get(5)?,
                state_id: r.get(6)?,
                hard: r.get(7)?,
            })
        })
        .optional()?;
    let Some(row) = row else {
        return Err(Error::NotFound("no such service".into()));
    };
    let state = row
        .state
        .as_deref()
        .map(|s| State::parse(s).unwrap_or(State::Unk));
    // A soft problem is not told yet: there is nothing to acknowledge.
    let current = Problem::of(state, row.hard, row.overdue);
    let Some(problem) = current.filter(|_| policy::can_ack(current)) else {
        return Err(Error::Conflict(format!(
            "{} {} is not in a problem (WARN, FAIL, UNK or overdue): there is nothing to acknowledge",
            row.server, row.name
        )));
    };
    b.tx.exec(
        "INSERT OR REPLACE INTO acks(service_id, author, comment, ctime, problem)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, author, comment, b.now, problem.name()],
    )?;
    loaded(&b.tx, b.caches)?.insert(id, problem);
    log::info!(
        "{} {}: {} acknowledged by {author}",
        row.server,
        row.name,
        problem.name()
    );
    let event = policy::ack_event(author, comment, problem);
    let silenced = silences::is_silenced(b, &row.server, Some(&row.name))?;
    let info = row.info.unwrap_or_default();
    let alert = NewAlert {
        server_id: Some(row.server_id),
        service_id: Some(id),
        state_id: row.state_id,
        event: &event,
        state: row.state.as_deref().map(|s| (s, info.as_str())),
        held: silenced.then_some(crate::policy::Held::Silenced),
    };
    let now = b.now;
    Ok(Applied {
        alerts: vec![insert_alert(&mut b.tx, &alert, now)?],
        ..Applied::default()
    })
}

/// Removes the ack of service `id`.
pub(in crate::store::sqlite) fn unack(b: &mut Batch<'_>, id: i64) -> Result<Applied> {
    if b.tx
        .exec("DELETE FROM acks WHERE service_id = ?1", params![id])?
        == 0
    {
        return Err(Error::NotFound("no acknowledgement of this service".into()));
    }
    loaded(&b.tx, b.caches)?.remove(&id);
    Ok(Applied::default())
}
