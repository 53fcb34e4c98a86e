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
use crate::error::{Error, Result};
use crate::policy::{self, Problem, Silence, UntoldProblem};
use crate::protocol::{HostSilence, HostUnsilence};
use crate::state::State;
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

fn insert(b: &mut Batch<'_>, mut s: Silence) -> Result<Applied> {
    // Loaded before the INSERT, which it would read back.
    unfinished(&b.tx, b.caches)?;
    s.starts = b.now;
    if s.ends <= s.starts {
        return Err(Error::Invalid(
            "Data: a silence should end in the future".into(),
        ));
    }
    b.tx.exec(
        "INSERT INTO silences(server, service, starts, ends, comment, author)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![s.server, s.service, s.starts, s.ends, s.comment, s.author],
    )?;
    s.id = b.tx.last_insert_rowid();
    log::info!(
        "silence {} by {}: {} {} until {}",
        s.id,
        s.author,
        s.server,
        s.service.as_deref().unwrap_or("*"),
        crate::clock::iso8601(s.ends)
    );
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

/// The author of a host's own silences.
fn host_author(name: &str) -> String {
    format!("host:{name}")
}

/// A host silences its own services: its name, escaped, is the pattern.
pub(in crate::store::sqlite) fn host_silence(
    r: &HostSilence,
    ip: &str,
    b: &mut Batch<'_>,
) -> Result<Applied> {
    let server_id = authenticate(&r.server, ip, b)?;
    let silence = Silence {
        id: 0,
        server: policy::glob_escape(&r.server.name),
        service: r.service.clone(),
        starts: b.now,
        ends: b.now + Millis::from(r.duration) * 1000,
        comment: r.comment.clone(),
        author: host_author(&r.server.name),
    };
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
    let author = host_author(&r.server.name);
    let ids: Vec<i64> = unfinished(&b.tx, b.caches)?
        .iter()
        .filter(|s| s.author == author && r.id.is_none_or(|id| id == s.id))
        .map(|s| s.id)
        .collect();
    if let (Some(id), true) = (r.id, ids.is_empty()) {
        // Another host's silence is none of this one's business: not found
        // either way.
        return Err(Error::NotFound(format!(
            "no active silence {id} of this host"
        )));
    }
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
        return Err(Error::NotFound(if exists {
            format!("silence {id} has already ended")
        } else {
            format!("no silence {id}")
        }));
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
    struct Candidate {
        server_id: i64,
        state: Option<String>,
        info: Option<String>,
        state_id: Option<i64>,
    }
    let mut untold = Vec::new();
    let mut candidates = Vec::new();
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
            let state: Option<String> = r.get(4)?;
            let overdue: bool = r.get(7)?;
            let parsed = state
                .as_deref()
                .map(|s| State::parse(s).unwrap_or(State::Unk));
            // A soft problem was never to be told anyway.
            let Some(problem) = Problem::of(parsed, r.get(8)?, overdue) else {
                continue;
            };
            untold.push(UntoldProblem {
                service_id: r.get(0)?,
                server: r.get(2)?,
                service: r.get(3)?,
                problem,
            });
            candidates.push(Candidate {
                server_id: r.get(1)?,
                state,
                info: r.get(5)?,
                state_id: r.get(6)?,
            });
        }
    }
    // An acknowledged problem has its owner: its silence's end is no news.
    let (mut told, mut rows) = (Vec::new(), Vec::new());
    for (u, c) in untold.into_iter().zip(candidates) {
        if !acks::holds(b, u.service_id, Some(u.problem))? {
            told.push(u);
            rows.push(c);
        }
    }
    let others = unfinished(&b.tx, b.caches)?.clone();
    for (u, event) in policy::on_silence_end(&ended, &others, &told, now) {
        let Some(c) = told
            .iter()
            .position(|x| x.service_id == u.service_id)
            .and_then(|i| rows.get(i))
        else {
            continue;
        };
        let info = c.info.clone().unwrap_or_default();
        let alert = NewAlert {
            server_id: Some(c.server_id),
            service_id: Some(u.service_id),
            state_id: c.state_id,
            event: &event,
            state: c.state.as_deref().map(|s| (s, info.as_str())),
            held: None,
        };
        applied.alerts.push(insert_alert(&mut b.tx, &alert, now)?);
    }
    Ok(())
}
