//! Silences (SPEC §9) on PostgreSQL: setting and ending them, whether an
//! event is silenced, and what a silence's end tells.
//!
//! Any server sets and ends silences, so nothing is kept between batches:
//! a batch reads the unfinished silences when it first has an event to
//! decide on, and keeps them until it commits. An end must see every alert
//! that was decided silenced by the silence it ends, or a problem would
//! never be told; so the batches that decide hold [`SILENCE_LOCK`] shared
//! until they commit, and an end takes it exclusively: it waits for those
//! batches and then reads their alerts, and a batch that reads after an
//! end no longer finds that silence unfinished. Ends take turns, so each
//! sees what the ones before it finished, and exactly one processes a
//! silence's end.

use postgres::Row;

use super::ops::{NewAlert, current_state, insert_alert, text, untext, untext_opt};
use super::writer::Batch;
use crate::clock::Millis;
use crate::error::Result;
use crate::policy::{self, Silence};
use crate::protocol::{HostSilence, HostUnsilence};
use crate::store::Applied;
use crate::store::plan::{self, SilencedService, parse_problem};

/// The advisory lock (a 64-bit key of our own) between the batches that
/// decide whether an event is silenced (shared) and the ends of silences
/// (exclusive), held until the transaction ends.
pub(super) const SILENCE_LOCK: i64 = 0x6f76_6572_635f_7369; // "overc_si"

/// The columns [`silence_row`] reads.
pub(super) const SILENCE_COLUMNS: &str = "id, server, service, starts, ends, comment, author";

pub(super) fn silence_row(r: &Row) -> Silence {
    Silence {
        id: r.get(0),
        server: untext(r.get(1)),
        service: untext_opt(r.get(2)),
        starts: r.get(3),
        ends: r.get(4),
        comment: untext(r.get(5)),
        author: untext(r.get(6)),
    }
}

/// The unfinished silences, read at the first use in the batch (after
/// taking [`SILENCE_LOCK`] shared, so that no end is under way).
fn unfinished<'b>(b: &'b mut Batch<'_>) -> Result<&'b mut Vec<Silence>> {
    if b.silences.is_none() {
        b.exec("SELECT pg_advisory_xact_lock_shared($1)", &[&SILENCE_LOCK])?;
        let list = read_unfinished(b)?;
        b.silences = Some(list);
    }
    Ok(b.silences.get_or_insert_with(Vec::new))
}

fn read_unfinished(b: &mut Batch<'_>) -> Result<Vec<Silence>> {
    let sql = format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE NOT finished ORDER BY id");
    Ok(b.query(&sql, &[])?.iter().map(silence_row).collect())
}

/// Whether an event about `server` (and `service`) raised now is silenced.
pub(super) fn is_silenced(b: &mut Batch<'_>, server: &str, service: Option<&str>) -> Result<bool> {
    let now = b.now;
    Ok(policy::silenced_by(unfinished(b)?, server, service, now).is_some())
}

fn insert(b: &mut Batch<'_>, s: Silence) -> Result<Applied> {
    let mut s = plan::starting_silence(s, b.now)?;
    let row = b.one(
        "INSERT INTO silences(server, service, starts, ends, comment, author)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        &[
            &text(&s.server),
            &s.service.as_deref().map(text),
            &s.starts,
            &s.ends,
            &text(&s.comment),
            &text(&s.author),
        ],
    )?;
    s.id = row.get(0);
    plan::log_silence(&s);
    let id = s.id;
    // Not read yet: the first read finds it.
    if let Some(list) = &mut b.silences {
        list.push(s);
    }
    Ok(Applied {
        silence_id: Some(id),
        ..Applied::default()
    })
}

/// A silence set from the page (its `starts` is now).
pub(super) fn add(b: &mut Batch<'_>, s: &Silence) -> Result<Applied> {
    insert(b, s.clone())
}

/// A host silences its own services: its name, escaped, is the pattern.
pub(super) fn host_silence(r: &HostSilence, ip: &str, b: &mut Batch<'_>) -> Result<Applied> {
    let server_id = super::ops::authenticate(&r.server, ip, b)?;
    let silence = plan::host_silence(r, b.now);
    Ok(Applied {
        server_id: Some(server_id),
        ..insert(b, silence)?
    })
}

/// Takes the turn of ends ([`SILENCE_LOCK`] exclusively).
fn lock_for_end(b: &mut Batch<'_>) -> Result<()> {
    b.exec("SELECT pg_advisory_xact_lock($1)", &[&SILENCE_LOCK])?;
    Ok(())
}

/// A host ends one of its own silences, or all of them.
pub(super) fn host_unsilence(r: &HostUnsilence, ip: &str, b: &mut Batch<'_>) -> Result<Applied> {
    let server_id = super::ops::authenticate(&r.server, ip, b)?;
    lock_for_end(b)?;
    let sql = format!(
        "SELECT {SILENCE_COLUMNS} FROM silences WHERE NOT finished AND author = $1 ORDER BY id"
    );
    let author = text(&plan::host_author(&r.server.name)).into_owned();
    let own: Vec<Silence> = b.query(&sql, &[&author])?.iter().map(silence_row).collect();
    let ids = plan::host_unsilenced(&own, r)?;
    let mut applied = Applied {
        server_id: Some(server_id),
        ..Applied::default()
    };
    for s in own.into_iter().filter(|s| ids.contains(&s.id)) {
        end(b, s, &mut applied)?;
    }
    Ok(applied)
}

/// Ends a silence now (the page's DELETE).
pub(super) fn end_one(b: &mut Batch<'_>, id: i64) -> Result<Applied> {
    lock_for_end(b)?;
    let sql = format!("SELECT {SILENCE_COLUMNS}, finished FROM silences WHERE id = $1");
    let Some(row) = b.opt(&sql, &[&id])? else {
        return Err(plan::not_ending(id, false));
    };
    if row.get::<_, bool>(7) {
        return Err(plan::not_ending(id, true));
    }
    let mut applied = Applied::default();
    end(b, silence_row(&row), &mut applied)?;
    Ok(applied)
}

/// Processes the end of every silence that ended by `now` (the leader's
/// supervisor calls this, through
/// [`Storage::end_silences`](crate::store::Storage::end_silences)).
pub(super) fn end_due(b: &mut Batch<'_>, now: Millis) -> Result<Applied> {
    lock_for_end(b)?;
    let sql = format!(
        "SELECT {SILENCE_COLUMNS} FROM silences WHERE NOT finished AND ends <= $1 ORDER BY id"
    );
    let due: Vec<Silence> = b.query(&sql, &[&now])?.iter().map(silence_row).collect();
    let mut applied = Applied::default();
    for s in due {
        end(b, s, &mut applied)?;
    }
    Ok(applied)
}

/// Ends the unfinished silence `ended` (early when it has not expired
/// yet) and tells, once, each problem it held back that nothing holds back
/// now. The caller holds [`SILENCE_LOCK`] exclusively.
fn end(b: &mut Batch<'_>, mut ended: Silence, applied: &mut Applied) -> Result<()> {
    let now = b.now;
    let id = ended.id;
    if ended.ends > now {
        ended.ends = now;
        b.exec(
            "UPDATE silences SET ends = $2, ended_early = true, finished = true WHERE id = $1",
            &[&id, &now],
        )?;
    } else {
        b.exec("UPDATE silences SET finished = true WHERE id = $1", &[&id])?;
    }
    log::info!("silence {id} ended");
    applied.ended_silences.push(id);
    // Read again under the lock: what other servers ended is finished.
    let others = read_unfinished(b)?;
    b.silences = Some(others.clone());
    // Services in a problem whose newest change (state or offline/online)
    // since the silence started was silenced: nobody was told of it.
    let held: Vec<SilencedService> = b
        .query(
            concat!(
                "SELECT s.id, s.server_id, sv.name, s.name, st.state, st.info, st.id, s.overdue,
                        s.hard, k.problem
                 FROM services s JOIN servers sv ON sv.id = s.server_id ",
                current_state!(),
                " LEFT JOIN acks k ON k.service_id = s.id
                 WHERE s.id IN (SELECT service_id FROM alerts WHERE silenced AND ctime >= $1)
                   AND (SELECT a.silenced FROM alerts a WHERE a.service_id = s.id
                          AND a.channel IN ('service:state', 'plugin') AND a.ctime >= $1
                        ORDER BY a.id DESC LIMIT 1)
                 ORDER BY s.id"
            ),
            &[&ended.starts],
        )?
        .iter()
        .map(|r| SilencedService {
            service_id: r.get(0),
            server_id: r.get(1),
            server: r.get(2),
            service: r.get(3),
            state: r.get(4),
            info: untext_opt(r.get(5)),
            state_id: r.get(6),
            overdue: r.get(7),
            hard: r.get(8),
            acked: r.get::<_, Option<String>>(9).map(|p| parse_problem(&p)),
        })
        .collect();
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
        applied.alerts.push(insert_alert(b, &alert)?);
    }
    Ok(())
}
