//! Flagging services that did not report by their deadline.

use crate::policy::Held;
use rusqlite::{OptionalExtension, params};

use super::reports::{NewAlert, insert_alert};
use super::{acks, silences};
use crate::clock::Millis;
use crate::error::Result;
use crate::policy::Problem;
use crate::rules;
use crate::store::sqlite::schema::current_state;
use crate::store::sqlite::writer::{Applied, Batch};

pub(in crate::store::sqlite) fn mark_overdue(
    due: &[(i64, Millis)],
    b: &mut Batch<'_>,
) -> Result<Applied> {
    let now = b.now;
    let mut applied = Applied::default();
    for &(service_id, rtime) in due {
        /// The service and its current state.
        struct Row {
            server_id: i64,
            name: String,
            overdue: bool,
            has_period: bool,
            state: Option<String>,
            info: Option<String>,
            state_id: Option<i64>,
            rtime: Option<Millis>,
            server: String,
        }
        let row =
            b.tx.read(concat!(
                "SELECT s.server_id, s.name, s.overdue, s.period IS NOT NULL,
                        st.state, st.info, st.id, st.rtime, sv.name FROM services s
                 JOIN servers sv ON sv.id = s.server_id ",
                current_state!(),
                " WHERE s.id = ?1"
            ))?
            .query_row([service_id], |r| {
                Ok(Row {
                    server_id: r.get(0)?,
                    name: r.get(1)?,
                    overdue: r.get(2)?,
                    has_period: r.get(3)?,
                    state: r.get(4)?,
                    info: r.get(5)?,
                    state_id: r.get(6)?,
                    rtime: r.get(7)?,
                    server: r.get(8)?,
                })
            })
            .optional()?;
        // Deleted, or reported again since: not overdue.
        let Some(row) = row.filter(|r| r.rtime == Some(rtime)) else {
            continue;
        };
        let Some(event) = rules::on_overdue(row.overdue, row.has_period) else {
            continue;
        };
        let Row {
            server_id,
            name,
            state,
            info,
            state_id,
            server,
            ..
        } = row;
        b.tx.exec(
            "UPDATE services SET overdue = 1 WHERE id = ?1",
            params![service_id],
        )?;
        if let Some(known) = b
            .caches
            .services
            .get_mut(&server_id)
            .and_then(|m| m.get_mut(&name))
        {
            known.overdue = true;
        }
        acks::on_problem(b, service_id, Some(Problem::Offline))?;
        let info = info.unwrap_or_default();
        let alert = NewAlert {
            server_id: Some(server_id),
            service_id: Some(service_id),
            state_id,
            event: &event,
            state: state.as_deref().map(|s| (s, info.as_str())),
            held: silences::is_silenced(b, &server, Some(&name))?.then_some(Held::Silenced),
        };
        applied.alerts.push(insert_alert(&mut b.tx, &alert, now)?);
    }
    Ok(applied)
}
