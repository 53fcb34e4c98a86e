//! Acknowledgements (SPEC §9) on PostgreSQL: recorded and notified, and
//! deleted as soon as the problem they acknowledge changes
//! ([`Ack::holds`](crate::policy::Ack::holds)).
//!
//! An ack and the reports and deadlines that change a service's problem
//! lock the service row first, so they apply one after the other whichever
//! servers take them.

use super::ops::{NewAlert, current_state, insert_alert, text, untext_opt};
use super::silences;
use super::writer::Batch;
use crate::error::{Error, Result};
use crate::policy::{self, Held, Problem};
use crate::state::State;
use crate::store::Applied;

/// The problem of service `id` (locked by the caller) is now `current`:
/// its ack goes unless it still holds. Called where an event changed the
/// service's problem (a report that raised one, an overdue flag).
pub(super) fn on_problem(b: &mut Batch<'_>, id: i64, current: Option<Problem>) -> Result<()> {
    let gone = b.exec(
        "DELETE FROM acks WHERE service_id = $1 AND problem IS DISTINCT FROM $2",
        &[&id, &current.map(Problem::name)],
    )?;
    if gone > 0 {
        log::debug!("the acknowledgement of service {id} ended: its problem changed");
    }
    Ok(())
}

/// Acknowledges the problem of service `id` and raises `[service:ack]`.
pub(super) fn ack(b: &mut Batch<'_>, id: i64, author: &str, comment: &str) -> Result<Applied> {
    let row = b.opt(
        concat!(
            "SELECT s.server_id, sv.name, s.name, s.overdue, st.state, st.info, st.id, s.hard
             FROM services s JOIN servers sv ON sv.id = s.server_id ",
            current_state!(),
            " WHERE s.id = $1 FOR NO KEY UPDATE OF s"
        ),
        &[&id],
    )?;
    let Some(row) = row else {
        return Err(Error::NotFound("no such service".into()));
    };
    let (server_id, server, name): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
    let state_text: Option<String> = row.get(4);
    let info = untext_opt(row.get(5)).unwrap_or_default();
    let state_id: Option<i64> = row.get(6);
    let state = state_text
        .as_deref()
        .map(|s| State::parse(s).unwrap_or(State::Unk));
    // A soft problem is not told yet: there is nothing to acknowledge.
    let current = Problem::of(state, row.get(7), row.get(3));
    let Some(problem) = current.filter(|_| policy::can_ack(current)) else {
        return Err(Error::Conflict(format!(
            "{server} {name} is not in a problem (WARN, FAIL, UNK or overdue): there is nothing to acknowledge"
        )));
    };
    let now = b.now;
    b.exec(
        "INSERT INTO acks(service_id, author, comment, ctime, problem)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (service_id) DO UPDATE SET author = EXCLUDED.author,
             comment = EXCLUDED.comment, ctime = EXCLUDED.ctime, problem = EXCLUDED.problem",
        &[&id, &text(author), &text(comment), &now, &problem.name()],
    )?;
    log::info!(
        "{server} {name}: {} acknowledged by {author}",
        problem.name()
    );
    let event = policy::ack_event(author, comment, problem);
    let silenced = silences::is_silenced(b, &server, Some(&name))?;
    let alert = NewAlert {
        server_id: Some(server_id),
        service_id: Some(id),
        state_id,
        event: &event,
        state: state_text.as_deref().map(|s| (s, info.as_str())),
        held: silenced.then_some(Held::Silenced),
    };
    Ok(Applied {
        alerts: vec![insert_alert(b, &alert)?],
        ..Applied::default()
    })
}

/// Removes the ack of service `id`.
pub(super) fn unack(b: &mut Batch<'_>, id: i64) -> Result<Applied> {
    if b.exec("DELETE FROM acks WHERE service_id = $1", &[&id])? == 0 {
        return Err(Error::NotFound("no acknowledgement of this service".into()));
    }
    Ok(Applied::default())
}
