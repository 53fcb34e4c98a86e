//! The writer's domain operations on PostgreSQL. The same decisions as the
//! SQLite backend's (`crate::store::plan`, `crate::rules`,
//! `crate::policy`), with no memory of their own between batches: another
//! server may have written anything since, so each operation reads what it
//! decides on, locking the rows it will change.

use std::borrow::Cow;

use super::writer::Batch;
use super::{acks, silences};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::policy::{FLAP_WINDOW, FlapHistory, Held, Problem, Streak};
use crate::protocol::{AlertReport, ServerId, StatusReport};
use crate::rules::{self, Event};
use crate::secret::constant_time_eq;
use crate::state::State;
use crate::store::plan::{ServiceMemory, key_hash, new_salt, plan_report};
use crate::store::{Applied, DeadlineChange, DeliveryOutcome};

/// `last_seen` is rewritten at most this often per host.
const SEEN_RESOLUTION: Millis = 1000;

/// SQL joining a service `s` to its current state `st` (its newest
/// history record).
macro_rules! current_state {
    () => {
        "LEFT JOIN LATERAL (SELECT id, state, info, rtime FROM states
             WHERE service_id = s.id ORDER BY id DESC LIMIT 1) st ON true"
    };
}
pub(super) use current_state;

/// The character that escapes in stored text (a noncharacter, which text
/// practically never holds, so nearly every text is stored as it is).
const ESCAPE: char = '\u{FFFF}';

/// Text as PostgreSQL can store it: a `text` value cannot hold NUL, which
/// an info or a message may (names may not), so NUL is stored as
/// `ESCAPE 0`, and `ESCAPE` itself as `ESCAPE ESCAPE`; [`untext`] undoes it.
pub(super) fn text(s: &str) -> Cow<'_, str> {
    if !s.contains(['\0', ESCAPE]) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\0' => out.extend([ESCAPE, '0']),
            ESCAPE => out.extend([ESCAPE, ESCAPE]),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Stored text back as it was given (see [`text`]).
pub(super) fn untext(s: String) -> String {
    if !s.contains(ESCAPE) {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, c == ESCAPE) {
            (_, true) => match chars.next() {
                Some('0') => out.push('\0'),
                Some(other) => out.push(other),
                None => out.push(ESCAPE),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

/// [`untext`] of a column that may be NULL.
pub(super) fn untext_opt(s: Option<String>) -> Option<String> {
    s.map(untext)
}

fn parse_state(s: Option<String>) -> Option<State> {
    s.map(|s| State::parse(&s).unwrap_or(State::Unk))
}

/// Registers a new host (trust on first use) or checks its key, and records
/// where it called from. Race-free across servers: a new name is inserted
/// with `ON CONFLICT DO NOTHING`, which waits for another server's insert
/// of the same name to commit; then the stored key decides.
pub(super) fn authenticate(server: &ServerId, ip: &str, b: &mut Batch<'_>) -> Result<i64> {
    const FIND: &str = "SELECT id, key_salt, key_hash, ip, last_seen FROM servers WHERE name = $1";
    let mut row = b.opt(FIND, &[&server.name])?;
    if row.is_none() {
        if !b.opts.registration.allows(ip) {
            log::warn!(
                "refused to register new server {:?} from {ip:?}: {}",
                server.name,
                if b.opts.registration.open {
                    "not in register-from"
                } else {
                    "registration is closed"
                }
            );
            return Err(Error::Forbidden("Unknown server".into()));
        }
        if let Some(id) = insert_server(server, ip, b)? {
            log::info!("registered new server {:?} from {ip}", server.name);
            return Ok(id);
        }
        // Another server registered the name meanwhile: its key decides.
        row = b.opt(FIND, &[&server.name])?;
    }
    let Some(row) = row else {
        return Err(Error::Storage(format!(
            "server {:?} vanished while registering",
            server.name
        )));
    };
    let id: i64 = row.get(0);
    let salt: Vec<u8> = row.get(1);
    let hash: Vec<u8> = row.get(2);
    let last_ip: String = row.get(3);
    let seen: Millis = row.get(4);
    let Ok(salt) = <[u8; 16]>::try_from(salt) else {
        return Err(Error::Storage(format!(
            "corrupt key of server {:?}",
            server.name
        )));
    };
    if !constant_time_eq(&key_hash(&salt, &server.key), &hash) {
        log::warn!(
            "rejected a request for server {:?} from {ip}: invalid key",
            server.name
        );
        return Err(Error::Forbidden("Invalid server key".into()));
    }
    let now = b.now;
    if last_ip != ip || now - seen >= SEEN_RESOLUTION {
        b.exec(
            "UPDATE servers SET ip = $2, last_seen = $3 WHERE id = $1",
            &[&id, &text(ip), &now],
        )?;
    }
    Ok(id)
}

/// Writes a new host with a salted hash of its key; `None` when the name
/// is taken (by a transaction that committed meanwhile).
fn insert_server(server: &ServerId, ip: &str, b: &mut Batch<'_>) -> Result<Option<i64>> {
    let salt = new_salt()?;
    let hash = key_hash(&salt, &server.key);
    let now = b.now;
    let row = b.opt(
        "INSERT INTO servers(name, title, key_salt, key_hash, ip, first_seen, last_seen)
         VALUES ($1, $1, $2, $3, $4, $5, $5) ON CONFLICT (name) DO NOTHING RETURNING id",
        &[&server.name, &&salt[..], &&hash[..], &text(ip), &now],
    )?;
    Ok(row.map(|r| r.get(0)))
}

/// Registers a host an operator adds with its key; `server_id` is `None`
/// when the name is taken.
pub(super) fn add_server(server: &ServerId, b: &mut Batch<'_>) -> Result<Applied> {
    let id = insert_server(server, "", b)?;
    if id.is_some() {
        log::info!("server {:?} added by an operator", server.name);
    }
    Ok(Applied {
        server_id: id,
        ..Applied::default()
    })
}

/// Locks the host's services of these names that exist, in the order of
/// their names, before a report works through them in its own order: the
/// writers (and servers) lock a host's services in one order, so two
/// reports naming them in different orders do not deadlock. Nothing to do
/// for one name.
pub(super) fn lock_services<'n>(
    b: &mut Batch<'_>,
    server_id: i64,
    names: impl Iterator<Item = &'n str>,
) -> Result<()> {
    let mut names: Vec<&str> = names.collect();
    names.sort_unstable();
    names.dedup();
    if names.len() < 2 {
        return Ok(());
    }
    b.exec(
        "SELECT 1 FROM services WHERE server_id = $1 AND name = ANY($2)
         ORDER BY name COLLATE \"C\" FOR NO KEY UPDATE",
        &[&server_id, &names],
    )?;
    Ok(())
}

/// Finds a service or creates it, locked until the batch commits, with the
/// policy's memory of it.
pub(super) fn find_or_create_service(
    b: &mut Batch<'_>,
    server_id: i64,
    name: &str,
    period: Option<u32>,
) -> Result<ServiceMemory> {
    // FOR NO KEY UPDATE: reports of one service take turns, while the
    // alerts of a silence's end, which refer to the service (a KEY SHARE
    // lock), do not wait for them (see `silences.rs`).
    const FIND: &str = "SELECT id, overdue, period, hard, hard_state, streak, flapping
        FROM services WHERE server_id = $1 AND name = $2 FOR NO KEY UPDATE";
    let mut row = b.opt(FIND, &[&server_id, &name])?;
    if row.is_none() {
        let inserted = b.opt(
            "INSERT INTO services(server_id, name, title, period) VALUES ($1, $2, $2, $3)
             ON CONFLICT (server_id, name) DO NOTHING RETURNING id",
            &[&server_id, &name, &period.map(i64::from)],
        )?;
        if let Some(r) = inserted {
            return Ok(ServiceMemory {
                id: r.get(0),
                state: None,
                streak: None,
                overdue: false,
                period,
                flapping: false,
                flaps: FlapHistory::new(),
            });
        }
        row = b.opt(FIND, &[&server_id, &name])?;
    }
    let Some(row) = row else {
        return Err(Error::Storage(format!("service {name:?} vanished")));
    };
    let id: i64 = row.get(0);
    let window = if b.opts.policy.flapping {
        FLAP_WINDOW as i64
    } else {
        1
    };
    // Newest first.
    let states: Vec<State> = b
        .query(
            "SELECT state FROM states WHERE service_id = $1 ORDER BY id DESC LIMIT $2",
            &[&id, &window],
        )?
        .into_iter()
        .map(|r| State::parse(r.get(0)).unwrap_or(State::Unk))
        .collect();
    let state = states.first().copied();
    let flaps = match b.opts.policy.flapping {
        true => states
            .iter()
            .rev()
            .copied()
            .fold(FlapHistory::new(), FlapHistory::push),
        false => FlapHistory::new(),
    };
    let streak = state.map(|state| Streak {
        state,
        hard: row.get(3),
        hard_state: parse_state(row.get(4)),
        count: u32::try_from(row.get::<_, i64>(5)).unwrap_or(1),
    });
    Ok(ServiceMemory {
        id,
        state,
        streak,
        overdue: row.get(1),
        period: row
            .get::<_, Option<i64>>(2)
            .and_then(|p| u32::try_from(p).ok()),
        flapping: row.get(6),
        flaps,
    })
}

/// An event of the alert log about to be written, with what it is about.
pub(super) struct NewAlert<'a> {
    pub(super) server_id: Option<i64>,
    pub(super) service_id: Option<i64>,
    pub(super) state_id: Option<i64>,
    pub(super) event: &'a Event,
    /// The service's state and info when it was raised.
    pub(super) state: Option<(&'a str, &'a str)>,
    /// Why the policy holds it back, if it does: recorded, not notified.
    pub(super) held: Option<Held>,
}

pub(super) fn insert_alert(b: &mut Batch<'_>, a: &NewAlert<'_>) -> Result<i64> {
    // A held alert is done at once: delivery never sees it.
    let held = a.held.is_some();
    let now = b.now;
    let row = b.one(
        "INSERT INTO alerts(server_id, service_id, state_id, ctime, channel, event, message,
                            severity, state, info, soft, silenced, routed, delivered)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) RETURNING id",
        &[
            &a.server_id,
            &a.service_id,
            &a.state_id,
            &now,
            &a.event.channel,
            &a.event.event,
            &text(&a.event.message),
            &a.event.severity.as_str(),
            &a.state.map(|s| s.0),
            &a.state.map(|s| text(s.1)),
            &(a.held == Some(Held::Soft)),
            &(a.held == Some(Held::Silenced)),
            &held,
        ],
    )?;
    Ok(row.get(0))
}

pub(super) fn apply_status(r: &StatusReport, ip: &str, b: &mut Batch<'_>) -> Result<Applied> {
    let server_id = authenticate(&r.server, ip, b)?;
    let mut applied = Applied {
        server_id: Some(server_id),
        ..Applied::default()
    };
    lock_services(b, server_id, r.services.iter().map(|s| s.name.as_str()))?;
    // Each record in order: a name given twice sees its first record as
    // the current state, as if each were written alone.
    for s in &r.services {
        let period = s.period.unwrap_or(r.period);
        let row = find_or_create_service(b, server_id, &s.name, Some(period))?;
        let retries = s.retries.or(r.retries).unwrap_or(b.opts.policy.retries);
        let plan = plan_report(&row, s.state, period, retries, &b.opts.policy);
        // Every report moves the due time the leader reads (the
        // deadlines live in the database, SPEC §10).
        let due = rules::deadline(b.now, i64::from(period), 0);
        if plan.write_row {
            let (hard, hard_state, streak) = plan.row_memory();
            b.exec(
                "UPDATE services SET period = $2, overdue = false, hard = $3, hard_state = $4,
                     streak = $5, flapping = $6, due = $7 WHERE id = $1",
                &[
                    &row.id,
                    &i64::from(period),
                    &hard,
                    &hard_state,
                    &i64::from(streak),
                    &plan.flapping,
                    &due,
                ],
            )?;
        } else {
            b.exec(
                "UPDATE services SET due = $2 WHERE id = $1",
                &[&row.id, &due],
            )?;
        }
        let mut events = plan.events;
        // A silence holds every event about what it matches.
        if !events.is_empty() && silences::is_silenced(b, &r.server.name, Some(&s.name))? {
            for (_, held) in &mut events {
                *held = Some(Held::Silenced);
            }
        }
        let state = s.state.as_str();
        let now = b.now;
        let state_id: i64 = b
            .one(
                "INSERT INTO states(service_id, rtime, state, info) VALUES ($1, $2, $3, $4)
                 RETURNING id",
                &[&row.id, &now, &state, &text(&s.info)],
            )?
            .get(0);
        if !events.is_empty() {
            // The problem changed: an ack of the one before goes.
            let current = Problem::of(Some(s.state), plan.streak.hard, false);
            acks::on_problem(b, row.id, current)?;
        }
        for (event, held) in &events {
            let alert = NewAlert {
                server_id: Some(server_id),
                service_id: Some(row.id),
                state_id: Some(state_id),
                event,
                state: Some((state, &s.info)),
                held: *held,
            };
            applied.alerts.push(insert_alert(b, &alert)?);
        }
        applied.deadlines.push(DeadlineChange {
            service_id: row.id,
            rtime: b.now,
            // Grace is the supervisor's to add.
            due: Some(due),
        });
        b.touched.insert(row.id);
    }
    Ok(applied)
}

pub(super) fn apply_alerts(r: &AlertReport, ip: &str, b: &mut Batch<'_>) -> Result<Applied> {
    let server_id = authenticate(&r.server, ip, b)?;
    let mut applied = Applied {
        server_id: Some(server_id),
        ..Applied::default()
    };
    lock_services(
        b,
        server_id,
        r.alerts.iter().filter_map(|a| a.service.as_deref()),
    )?;
    for a in &r.alerts {
        let (service_id, current) = match &a.service {
            Some(name) => {
                let row = find_or_create_service(b, server_id, name, None)?;
                let current = b
                    .opt(
                        "SELECT state, info FROM states WHERE service_id = $1
                         ORDER BY id DESC LIMIT 1",
                        &[&row.id],
                    )?
                    .map(|r| (r.get::<_, String>(0), untext(r.get::<_, String>(1))));
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
        applied.alerts.push(insert_alert(b, &alert)?);
    }
    Ok(applied)
}

/// Flags services overdue unless they reported after the given time.
pub(super) fn mark_overdue(due: &[(i64, Millis)], b: &mut Batch<'_>) -> Result<Applied> {
    let mut applied = Applied::default();
    for &(service_id, rtime) in due {
        let row = b.opt(
            concat!(
                "SELECT s.server_id, s.overdue, s.period IS NOT NULL,
                        st.state, st.info, st.id, st.rtime, sv.name, s.name FROM services s
                 JOIN servers sv ON sv.id = s.server_id ",
                current_state!(),
                " WHERE s.id = $1 FOR NO KEY UPDATE OF s"
            ),
            &[&service_id],
        )?;
        // Deleted, or reported again since: not overdue.
        let Some(row) = row.filter(|r| r.get::<_, Option<Millis>>(6) == Some(rtime)) else {
            continue;
        };
        let Some(event) = rules::on_overdue(row.get(1), row.get(2)) else {
            continue;
        };
        b.exec(
            "UPDATE services SET overdue = true WHERE id = $1",
            &[&service_id],
        )?;
        acks::on_problem(b, service_id, Some(Problem::Offline))?;
        let state: Option<String> = row.get(3);
        let info: String = untext_opt(row.get(4)).unwrap_or_default();
        let (server, name): (String, String) = (row.get(7), row.get(8));
        let alert = NewAlert {
            server_id: Some(row.get(0)),
            service_id: Some(service_id),
            state_id: row.get(5),
            event: &event,
            state: state.as_deref().map(|s| (s, info.as_str())),
            held: silences::is_silenced(b, &server, Some(&name))?.then_some(Held::Silenced),
        };
        applied.alerts.push(insert_alert(b, &alert)?);
    }
    Ok(applied)
}

/// Deletes a server; its services, their history and alerts go with it
/// (foreign keys cascade).
pub(super) fn delete_server(b: &mut Batch<'_>, id: i64) -> Result<Applied> {
    let services: Vec<i64> = b
        .query("SELECT id FROM services WHERE server_id = $1", &[&id])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let Some(row) = b.opt("DELETE FROM servers WHERE id = $1 RETURNING name", &[&id])? else {
        return Err(Error::NotFound("no such server".into()));
    };
    let name: String = row.get(0);
    log::info!("deleted server {name:?} with {} services", services.len());
    Ok(Applied {
        server_id: Some(id),
        removed_services: services,
        ..Applied::default()
    })
}

/// Deletes a service with its history and alerts.
pub(super) fn delete_service(b: &mut Batch<'_>, id: i64) -> Result<Applied> {
    if b.exec("DELETE FROM services WHERE id = $1", &[&id])? == 0 {
        return Err(Error::NotFound("no such service".into()));
    }
    Ok(Applied {
        removed_services: vec![id],
        ..Applied::default()
    })
}

/// Sets the display title of a server (`service = false`) or service.
pub(super) fn rename(b: &mut Batch<'_>, service: bool, id: i64, title: &str) -> Result<Applied> {
    let sql = if service {
        "UPDATE services SET title = $2 WHERE id = $1"
    } else {
        "UPDATE servers SET title = $2 WHERE id = $1"
    };
    if b.exec(sql, &[&id, &text(title)])? == 0 {
        return Err(Error::NotFound(format!(
            "no such {}",
            if service { "service" } else { "server" }
        )));
    }
    Ok(Applied::default())
}

/// Writes the deliveries of alerts and marks the alerts routed.
pub(super) fn route(b: &mut Batch<'_>, routes: &[(i64, Vec<String>)]) -> Result<Applied> {
    for (alert_id, plugins) in routes {
        for plugin in plugins {
            // An alert deleted meanwhile gets none.
            b.exec(
                "INSERT INTO deliveries(plugin, alert_id) SELECT $1, id FROM alerts WHERE id = $2
                 ON CONFLICT DO NOTHING",
                &[plugin, alert_id],
            )?;
        }
        b.exec(
            "UPDATE alerts SET routed = true, delivered = $2 WHERE id = $1",
            &[alert_id, &plugins.is_empty()],
        )?;
    }
    Ok(Applied::default())
}

/// Records what one plugin did with one alert.
pub(super) fn delivery(
    b: &mut Batch<'_>,
    plugin: &str,
    alert_id: i64,
    outcome: &DeliveryOutcome,
) -> Result<Applied> {
    let (state, error, retry_at): (i16, Option<&str>, Option<Millis>) = match outcome {
        DeliveryOutcome::Delivered => (1, None, None),
        DeliveryOutcome::GivenUp { error } => (2, Some(error.as_str()), None),
        DeliveryOutcome::Failed { error, retry_at } => (0, Some(error.as_str()), Some(*retry_at)),
    };
    b.exec(
        "UPDATE deliveries SET state = $3, attempts = attempts + 1, error = $4,
             next_attempt = COALESCE($5, next_attempt), claimed_by = NULL
         WHERE plugin = $1 AND alert_id = $2",
        &[&plugin, &alert_id, &state, &error.map(text), &retry_at],
    )?;
    if state != 0 {
        b.exec(
            "UPDATE alerts SET delivered = true WHERE id = $1 AND NOT EXISTS
                 (SELECT 1 FROM deliveries WHERE alert_id = $1 AND state = 0)",
            &[&alert_id],
        )?;
    }
    Ok(Applied::default())
}

/// An alert of overc itself (no server), e.g. a failing alert plugin.
pub(super) fn system_alert(b: &mut Batch<'_>, event: &Event) -> Result<Applied> {
    let alert = NewAlert {
        server_id: None,
        service_id: None,
        state_id: None,
        event,
        state: None,
        held: None,
    };
    Ok(Applied {
        alerts: vec![insert_alert(b, &alert)?],
        ..Applied::default()
    })
}

/// Keeps a service's newest `limit` history records (the newest always).
pub(super) fn prune_history(b: &mut Batch<'_>, service_id: i64, limit: u32) -> Result<u64> {
    b.exec(
        "DELETE FROM states WHERE service_id = $1 AND id <= (
             SELECT id FROM states WHERE service_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
        &[&service_id, &i64::from(limit.max(1))],
    )
}

/// The retention rules: history per service, alerts past `retention-days`.
pub(super) fn prune_all(b: &mut Batch<'_>) -> Result<Applied> {
    let mut pruned = 0;
    let ids: Vec<i64> = b
        .query("SELECT id FROM services", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let limit = b.opts.history_limit;
    for id in ids {
        pruned += prune_history(b, id, limit)?;
    }
    let days = b.opts.retention_days;
    let cutoff = b.now - i64::from(days) * 86_400_000;
    // An alert no plugin took within the whole retention period is given up
    // too (its deliveries cascade).
    let abandoned = b.exec(
        "DELETE FROM alerts WHERE ctime < $1 AND NOT delivered",
        &[&cutoff],
    )?;
    if abandoned > 0 {
        log::warn!("gave up {abandoned} alerts that no alert plugin took in {days} days");
    }
    pruned += abandoned;
    pruned += b.exec(
        "DELETE FROM alerts WHERE ctime < $1 AND delivered",
        &[&cutoff],
    )?;
    Ok(Applied {
        pruned,
        ..Applied::default()
    })
}

/// Moves the due times that passed before `now` to `now` + period (see
/// `Storage::extend_due`); how many moved.
pub(super) fn extend_due(b: &mut Batch<'_>, now: Millis) -> Result<u64> {
    b.exec(
        "UPDATE services SET due = $1 + period * 1000
         WHERE NOT overdue AND due IS NOT NULL AND due < $1",
        &[&now],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_comes_back_as_given_nul_included() {
        for s in [
            "",
            "plain",
            "a\0b",
            "\0",
            "\u{FFFF}",
            "\u{FFFF}0",
            "x\u{FFFF}\0\u{FFFF}\u{FFFF}y",
        ] {
            let stored = text(s);
            assert!(!stored.contains('\0'), "{s:?}");
            assert_eq!(untext(stored.into_owned()), s);
        }
        assert!(matches!(text("plain"), Cow::Borrowed(_)));
    }
}
