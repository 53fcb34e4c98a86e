//! Silences (SPEC §9): setting and ending them, whether an event is
//! silenced, and what a silence's end tells.
//!
//! The silences not yet finished (active, or ended and not yet processed)
//! live in the writer's cache, loaded on first use: deciding whether an
//! alert is silenced costs no query.

use rusqlite::{OptionalExtension, params};

use super::acks;
use super::auth::authenticate;
use super::reports::{NewAlert, insert_alert};
use crate::clock::Millis;
use crate::error::Result;
use crate::policy::{self, Silence};
use crate::protocol::{HostSilence, HostUnsilence};
use crate::store::plan::{self, SilencedService};
use crate::store::sqlite::redo::Tx;
use crate::store::sqlite::schema::current_state;
use crate::store::sqlite::writer::{Applied, Batch, Caches};

/// The columns [`silence_row`] reads.
pub(in crate::store::sqlite) const SILENCE_COLUMNS: &str =
    "id, server, service, starts, ends, comment, author";

pub(in crate::store::sqlite) fn silence_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Silence> {
    Ok(Silence {
        id: r.get(0)?,
        server: r.get(1)?,
        service: r.get(2)?,
        starts: r.get(3)?,
        ends: r.get(4)?,
        comment: r.get(5)?,
        author: r.get(6)?,
    })
}

/// The unfinished silences, from the cache (filled on first use).
fn unfinished<'c>(tx: &Tx<'_>, caches: &'c mut Caches) -> Result<&'c mut Vec<Silence>> {
    if caches.silences.is_none() {
        let list = tx
            .read(&format!(
                "SELECT {SILENCE_COLUMNS} FROM silences WHERE finished = 0 ORDER BY id"
            ))?
            .query_map([], silence_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        caches.silences = Some(list);
    }
    Ok(caches.silences.get_or_insert_with(Vec::new))
}

/// Whether an event about `server` (and `service`) raised now is silenced.
pub(in crate::store::sqlite) fn is_silenced(
    b: &mut Batch<'_>,
    server: &str,
    service: Option<&str>,
) -> Result<bool> {
    let now = b.now;
    let list = unfinished(&b.tx, b.caches)?;
    Ok(policy::silenced_by(list, server, service, now).is_some())
}

fn insert(b: &mut Batch<'_>, s: Silence) -> Result<Applied> {
    // Loaded before the INSERT, which it would read back.
    unfinished(&b.tx, b.caches)?;
    let mut s = plan::starting_silence(s, b.now)?;
    b.tx.exec(
        "INSERT INTO silences(server, service, starts, ends, comment, author)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![s.server, s.service, s.starts, s.ends, s.comment, s.author],
    )?;
    s.id = b.tx.last_insert_rowid();
    plan::log_silence(&s);
    let id = s.id;
    unfinished(&b.tx, b.caches)?.push(s);
    Ok(Applied {
        silence_id: Some(id),
        ..Applied::default()
    })
}

/// A silence set from the page (its `starts` is now).
pub(in crate::store::sqlite) fn add(b: &mut Batch<'_>, s: &Silence) -> Result<Applied> {
    insert(b, s.clone())
}

/// A host silences its own services: its name, escaped, is the pattern.
pub(in crate::store::sqlite) fn host_silence(
    r: &HostSilence,
    ip: &str,
    b: &mut Batch<'_>,
) -> Result<Applied> {
    let server_id = authenticate(&r.server, ip, b)?;
    let silence = plan::host_silence(r, b.now);
    Ok(Applied {
        server_id: Some(server_id),
        ..insert(b, silence)?
    })
}

/// A host ends one of its own silences, or all of them.
pub(in crate::store::sqlite) fn host_unsilence(
    r: &HostUnsilence,
    ip: &str,
    b: &mut Batch<'_>,
) -> Result<Applied> {
    let server_id = authenticate(&r.server, ip, b)?;
    let ids = plan::host_unsilenced(unfinished(&b.tx, b.caches)?, r)?;
    let mut applied = Applied {
        server_id: Some(server_id),
        ..Applied::default()
    };
    for id in ids {
        end(b, id, &mut applied)?;
    }
    Ok(applied)
}

/// Ends a silence now (the page's DELETE).
pub(in crate::store::sqlite) fn end_one(b: &mut Batch<'_>, id: i64) -> Result<Applied> {
    if !unfinished(&b.tx, b.caches)?.iter().any(|s| s.id == id) {
        let exists =
            b.tx.read("SELECT 1 FROM silences WHERE id = ?1")?
                .query_row([id], |_| Ok(()))
                .optional()?
                .is_some();
        return Err(plan::not_ending(id, exists));
    }
    let mut applied = Applied::default();
    end(b, id, &mut applied)?;
    Ok(applied)
}

/// Processes the end of every silence that ended by `now` (the supervisor
/// calls this at least once a second, through
/// [`Storage::end_silences`](crate::store::Storage::end_silences)).
pub(in crate::store::sqlite) fn end_due(b: &mut Batch<'_>, now: Millis) -> Result<Applied> {
    let due: Vec<i64> = unfinished(&b.tx, b.caches)?
        .iter()
        .filter(|s| s.ends <= now)
        .map(|s| s.id)
        .collect();
    let mut applied = Applied::default();
    for id in due {
        end(b, id, &mut applied)?;
    }
    Ok(applied)
}

/// Ends the unfinished silence `id` (early when it has not expired yet)
/// and tells, once, each problem it held back that nothing holds back now.
fn end(b: &mut Batch<'_>, id: i64, applied: &mut Applied) -> Result<()> {
    let now = b.now;
    let list = unfinished(&b.tx, b.caches)?;
    let Some(at) = list.iter().position(|s| s.id == id) else {
        return Ok(());
    };
    let mut ended = list.remove(at);
    if ended.ends > now {
        ended.ends = now;
        b.tx.exec(
            "UPDATE silences SET ends = ?2, ended_early = 1, finished = 1 WHERE id = ?1",
            params![id, now],
        )?;
    } else {
        b.tx.exec(
            "UPDATE silences SET finished = 1 WHERE id = ?1",
            params![id],
        )?;
    }
    log::info!("silence {id} ended");
    applied.ended_silences.push(id);
    // Services in a problem whose newest change (state or offline/online)
    // since the silence started was silenced: nobody was told of it.
    let mut held = Vec::new();
    {
        let mut st = b.tx.read(concat!(
            "SELECT s.id, s.server_id, sv.name, s.name, st.state, st.info, st.id, s.overdue, s.hard
             FROM services s JOIN servers sv ON sv.id = s.server_id ",
            current_state!(),
            " WHERE s.id IN (SELECT service_id FROM alerts WHERE silenced = 1 AND ctime >= ?1)
               AND (SELECT a.silenced FROM alerts a WHERE a.service_id = s.id
                      AND a.channel IN ('service:state', 'plugin') AND a.ctime >= ?1
                    ORDER BY a.id DESC LIMIT 1) = 1
             ORDER BY s.id"
        ))?;
        let mut rows = st.query([ended.starts])?;
        while let Some(r) = rows.next()? {
            held.push(SilencedService {
                service_id: r.get(0)?,
                server_id: r.get(1)?,
                server: r.get(2)?,
                service: r.get(3)?,
                state: r.get(4)?,
                info: r.get(5)?,
                state_id: r.get(6)?,
                overdue: r.get(7)?,
                hard: r.get(8)?,
                acked: None,
            });
        }
    }
    for h in &mut held {
        h.acked = acks::acked(b, h.service_id)?;
    }
    let others = unfinished(&b.tx, b.caches)?.clone();
    for (h, event) in plan::told_at_silence_end(&ended, &others, &held, now) {
        let info = h.info.clone().unwrap_or_default();
        let alert = NewAlert {
            server_id: Some(h.server_id),
            service_id: Some(h.service_id),
            state_id: h.state_id,
            event: &event,
            state: h.state.as_deref().map(|s| (s, info.as_str())),
            held: None,
        };
        applied.alerts.push(insert_alert(&mut b.tx, &alert, now)?);
    }
    Ok(())
}
