//! What a write decides, apart from the database it is written to: key
//! hashes, a service's policy memory and what a report does to it, and the
//! small rules the read views follow. Every backend calls these, so the
//! backends differ in their SQL only.

use sha2::{Digest, Sha256};

use crate::clock::{Millis, iso8601};
use crate::policy::{self, FlapHistory, Held, PolicyConfig, Streak};
use crate::rules::{self, Event};
use crate::state::State;
use crate::store::views::{StateView, perfdata_views};

/// A day in milliseconds: the read API counts the alerts of the last one.
pub(crate) const DAY: Millis = 86_400_000;
/// Most alerts one listing returns.
pub(crate) const MAX_ALERTS: i64 = 5000;

/// The salted SHA-256 of a host's key, as stored.
pub(crate) fn key_hash(salt: &[u8; 16], key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(key.as_bytes());
    h.finalize().into()
}

/// A new random key salt.
pub(crate) fn new_salt() -> crate::error::Result<[u8; 16]> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| crate::error::Error::Storage(format!("no randomness for a key salt: {e}")))?;
    Ok(salt)
}

/// What a backend knows of a service when a report comes: its current
/// state and the notification policy's memory of it.
#[derive(Clone)]
pub(crate) struct ServiceMemory {
    pub(crate) id: i64,
    /// The current state (of the newest history record).
    pub(crate) state: Option<State>,
    /// The retries rule's memory (`None` before the first report).
    pub(crate) streak: Option<Streak>,
    /// Whether it flaps, and its last states (loaded only with `flapping = on`).
    pub(crate) flapping: bool,
    pub(crate) flaps: FlapHistory,
    pub(crate) overdue: bool,
    pub(crate) period: Option<u32>,
}

/// What one service's report changes.
pub(crate) struct ReportPlan {
    /// The retries rule's memory after it.
    pub(crate) streak: Streak,
    /// Whether it flaps after it.
    pub(crate) flapping: bool,
    /// The flap window after it.
    pub(crate) flaps: FlapHistory,
    /// Whether the service row changes (period, policy memory or overdue
    /// flag); its current state is the history record about to be written.
    pub(crate) write_row: bool,
    /// The events it raises, each with why it is held back, if it is.
    pub(crate) events: Vec<(Event, Option<Held>)>,
}

impl ReportPlan {
    /// The columns `hard`, `hard_state` and `streak` of the service row.
    pub(crate) fn row_memory(&self) -> (bool, Option<&'static str>, u32) {
        let s = self.streak;
        (
            s.hard,
            s.hard_state.map(State::as_str),
            if s.hard { 1 } else { s.count },
        )
    }
}

/// Applies the retries and flapping rules of `policy` to a report of
/// `state` (with `period`, `retries`) for the service `row`.
pub(crate) fn plan_report(
    row: &ServiceMemory,
    state: State,
    period: u32,
    retries: u8,
    policy: &PolicyConfig,
) -> ReportPlan {
    let retried = policy::on_report(row.streak, state, retries);
    let (flaps, flap) = if policy.flapping {
        let flaps = row.flaps.push(state);
        let f = policy::on_flap_report(
            &flaps.states(),
            row.flapping,
            policy.flap_high,
            policy.flap_low,
        );
        (flaps, Some(f))
    } else {
        (row.flaps, None)
    };
    let flapping = flap.as_ref().is_some_and(|f| f.flapping);
    let streak = retried.streak;
    let remembered =
        |k: &Option<Streak>| k.map(|k| (k.hard, k.hard_state, if k.hard { 1 } else { k.count }));
    let write_row = row.overdue
        || row.period != Some(period)
        || remembered(&row.streak) != remembered(&Some(streak))
        || row.flapping != flapping;
    let mut events = Vec::new();
    if let Some(change) = retried.change {
        let held = policy::held(change.event.channel, change.soft, flapping, false);
        events.push((change.event, held));
    }
    if row.overdue {
        events.push((rules::on_return(), None));
    }
    if let Some(event) = flap.and_then(|f| f.event) {
        events.push((event, None));
    }
    ReportPlan {
        streak,
        flapping,
        flaps,
        write_row,
        events,
    }
}

/// A service's current state as the read API shows it.
pub(crate) struct CurrentState {
    pub(crate) state: String,
    pub(crate) info: String,
    pub(crate) rtime: Millis,
}

/// The view of a service's current state: overdue when flagged or past
/// its deadline plus grace.
pub(crate) fn state_view(
    current: CurrentState,
    overdue: bool,
    period: Option<i64>,
    grace_ms: Millis,
    now: Millis,
) -> StateView {
    let t = current.rtime;
    StateView {
        rtime: iso8601(t),
        timed_out: rules::is_overdue(overdue, period, Some(t), grace_ms, now),
        seen_ago: (now - t).max(0) / 1000,
        state: current.state,
        perfdata: perfdata_views(&current.info),
        info: current.info,
    }
}

/// How the read API names a delivery's state (stored as 0 pending, 1
/// delivered, 2 given up).
pub(crate) fn delivery_state(state: i64, attempts: u32) -> &'static str {
    match state {
        1 => "delivered",
        2 => "given-up",
        _ if attempts == 0 => "pending",
        _ => "failing",
    }
}

/// The start of a look-back of `hours` (fractions allowed) from `now`.
pub(crate) fn since(now: Millis, hours: f64) -> Millis {
    now.saturating_sub((hours * 3_600_000.0) as Millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_depends_on_salt() {
        assert_ne!(key_hash(&[0; 16], "k"), key_hash(&[1; 16], "k"));
        assert_eq!(key_hash(&[0; 16], "k"), key_hash(&[0; 16], "k"));
    }
}
