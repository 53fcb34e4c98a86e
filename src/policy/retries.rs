//! Retries and soft states: a problem must be reported `retries` times in
//! a row before anyone is told.
//!
//! As Nagios counts attempts: every non-OK report in a row counts, whichever
//! non-OK state it is (a service that alternates WARN and FAIL still
//! becomes hard). OK is always hard. Once a problem is hard, a change to
//! another problem state is a hard change at once, and so is the recovery.

use std::borrow::Cow;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::rules::{Event, STATE_CHANNEL};
use crate::state::State;

/// Largest accepted `retries`.
pub const MAX_RETRIES: u8 = 100;

/// What the retries rule keeps of a service between reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streak {
    /// The state last reported.
    pub state: State,
    /// Whether that state is hard (OK always is).
    pub hard: bool,
    /// Reports in a row that were OK (when `state` is OK) or not OK
    /// (otherwise), this one included; saturates.
    pub count: u32,
    /// The last hard state, `None` until the service had one. Hard
    /// notifications name it as the state changed from, since a person was
    /// never told of the soft states between.
    pub hard_state: Option<State>,
}

/// A state change as the retries rule sees it: the event to record, and
/// whether it is soft (recorded marked `soft`, not notified) or hard
/// (notified, unless another rule holds it back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// A `service:state/<STATE>` event.
    pub event: Event,
    /// Soft: recorded, not notified.
    pub soft: bool,
}

/// What a report does under the retries rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retried {
    /// What to keep for the next report.
    pub streak: Streak,
    /// The state change to record, if any. With `retries = 1` it is exactly
    /// the change [`rules::on_report`](crate::rules::on_report) raises, and
    /// never soft.
    pub change: Option<StateChange>,
}

fn change_event(from: Option<State>, to: State) -> Event {
    Event {
        channel: STATE_CHANNEL,
        event: to.as_str(),
        message: Cow::Owned(format!(
            "State changed: \"{}\" -> \"{}\"",
            from.map_or("(?)", State::as_str),
            to.as_str()
        )),
        severity: to,
    }
}

/// Applies a report of `state` to a service whose last report left `before`
/// (`None` before its first report), under `retries` (1 to 100; 0 is taken
/// as 1).
///
/// - A non-OK state is soft until `retries` non-OK reports came in a row,
///   then hard; `retries = 1` means no soft states at all.
/// - A report that changes the state records the change, soft or hard as
///   the new state is. A soft change names the state before
///   (`"WARN" -> "FAIL"`); a hard one names the last hard state
///   (`"OK" -> "FAIL"`), the change a person is told about, who never heard
///   of the soft states between. With no soft states both are the same.
/// - A recovery from a soft problem is recorded soft: it is not notified,
///   since its problem never was.
/// - A report that makes a soft problem hard without changing the state
///   records a hard change from the last hard state (`"OK" -> "WARN"`).
/// - The first report raises a change only when it is not OK, as
///   [`rules::on_report`](crate::rules::on_report) does.
pub fn on_report(before: Option<Streak>, state: State, retries: u8) -> Retried {
    let retries = u32::from(retries.max(1));
    let same_kind = before.is_some_and(|b| (b.state == State::Ok) == (state == State::Ok));
    let count = match before {
        Some(b) if same_kind => b.count.saturating_add(1),
        _ => 1,
    };
    let was_hard_problem = before.is_some_and(|b| b.hard && b.state != State::Ok);
    let hard = state == State::Ok || was_hard_problem || count >= retries;
    let hard_state = if hard {
        Some(state)
    } else {
        before.and_then(|b| b.hard_state)
    };
    let streak = Streak {
        state,
        hard,
        count,
        hard_state,
    };
    let previous = before.map(|b| b.state);
    let changed = match previous {
        None => state != State::Ok,
        Some(p) => p != state,
    };
    let last_hard = before.and_then(|b| b.hard_state);
    let change = if changed {
        // A recovery is hard, but one from a soft problem is not notified.
        let soft = !hard || (state == State::Ok && before.is_some_and(|b| !b.hard));
        Some(StateChange {
            event: change_event(if soft { previous } else { last_hard }, state),
            soft,
        })
    } else if hard && before.is_some_and(|b| !b.hard) {
        Some(StateChange {
            event: change_event(last_hard, state),
            soft: false,
        })
    } else {
        None
    };
    Retried { streak, change }
}

/// Checks a `"retries"` value of a status report (top level or a service
/// entry): an integer from 1 to 100, also as a numeric string, as
/// `"period"` is read.
///
/// # Errors
/// [`Error::Invalid`] with the protocol's wording, naming `path`:
/// `Data: "services[0].retries" should be an integer between 1 and 100`.
pub fn retries_from_json(value: &Value, path: &str) -> Result<u8> {
    let n = match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    n.and_then(|n| check_retries(n).ok()).ok_or_else(|| {
        Error::Invalid(format!(
            "Data: \"{path}\" should be an integer between 1 and {MAX_RETRIES}"
        ))
    })
}

/// Checks a `retries` number from a config file or a flag: 1 to 100.
///
/// # Errors
/// Why not: `should be between 1 and 100`, for the caller to prefix with
/// the key.
pub fn check_retries(n: i64) -> std::result::Result<u8, String> {
    if (1..=i64::from(MAX_RETRIES)).contains(&n) {
        Ok(n as u8)
    } else {
        Err(format!("should be between 1 and {MAX_RETRIES}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Known, on_report as rules_on_report};
    use serde_json::json;

    /// Reports `states` in order; returns each change as `text (soft|hard)`.
    fn run(retries: u8, states: &[State]) -> (Vec<String>, Option<Streak>) {
        let mut streak = None;
        let mut out = Vec::new();
        for &s in states {
            let r = on_report(streak, s, retries);
            if let Some(c) = r.change {
                out.push(format!(
                    "{}/{} {} ({})",
                    c.event.channel,
                    c.event.event,
                    c.event.message,
                    if c.soft { "soft" } else { "hard" }
                ));
            }
            streak = Some(r.streak);
        }
        (out, streak)
    }

    use State::{Fail, Ok as OK, Unk, Warn};

    #[test]
    fn retries_one_means_no_soft_states_and_the_rules_changes() {
        let seq = [OK, Warn, Warn, Fail, OK, Unk, Unk, OK];
        let (changes, _) = run(1, &seq);
        assert!(changes.iter().all(|c| c.ends_with("(hard)")), "{changes:?}");
        // Exactly the changes rules::on_report raises, in the same order.
        let mut prev = None;
        let mut expected = Vec::new();
        for &s in &seq {
            for e in rules_on_report(
                Known {
                    state: prev,
                    overdue: false,
                },
                s,
            ) {
                expected.push(format!("{}/{} {} (hard)", e.channel, e.event, e.message));
            }
            prev = Some(s);
        }
        assert_eq!(changes, expected);
        let (first, _) = run(1, &[Unk]);
        assert_eq!(
            first,
            [r#"service:state/UNK State changed: "(?)" -> "UNK" (hard)"#]
        );
        assert!(run(1, &[OK]).0.is_empty(), "a first OK raises nothing");
    }

    #[test]
    fn a_problem_is_soft_until_reported_retries_times() {
        let (changes, streak) = run(3, &[OK, Fail, Fail, Fail, Fail]);
        assert_eq!(
            changes,
            [
                r#"service:state/FAIL State changed: "OK" -> "FAIL" (soft)"#,
                r#"service:state/FAIL State changed: "OK" -> "FAIL" (hard)"#,
            ]
        );
        let s = streak.unwrap();
        assert!(s.hard);
        assert_eq!((s.count, s.hard_state), (4, Some(Fail)));
    }

    #[test]
    fn the_hard_change_names_the_last_hard_state() {
        // WARN then FAIL while soft: the third problem report is hard; a
        // person is told OK -> FAIL, having never heard of the WARN.
        let (changes, _) = run(3, &[OK, Warn, Fail, Fail]);
        assert_eq!(
            changes,
            [
                r#"service:state/WARN State changed: "OK" -> "WARN" (soft)"#,
                r#"service:state/FAIL State changed: "WARN" -> "FAIL" (soft)"#,
                r#"service:state/FAIL State changed: "OK" -> "FAIL" (hard)"#,
            ]
        );
        // Hard on a report that changes the state: one event, hard, from
        // the last hard state.
        let (changes, _) = run(2, &[OK, Warn, Fail]);
        assert_eq!(
            changes[1],
            r#"service:state/FAIL State changed: "OK" -> "FAIL" (hard)"#
        );
        // A first report that is a problem: hard from "(?)".
        let (changes, _) = run(2, &[Unk, Unk]);
        assert_eq!(
            changes,
            [
                r#"service:state/UNK State changed: "(?)" -> "UNK" (soft)"#,
                r#"service:state/UNK State changed: "(?)" -> "UNK" (hard)"#,
            ]
        );
    }

    #[test]
    fn a_recovery_from_a_soft_problem_is_recorded_not_notified() {
        let (changes, streak) = run(3, &[OK, Fail, Fail, OK]);
        assert_eq!(
            changes.last().unwrap(),
            r#"service:state/OK State changed: "FAIL" -> "OK" (soft)"#
        );
        let s = streak.unwrap();
        assert!(s.hard && s.state == OK && s.count == 1);
        // The next problem starts counting afresh.
        let (changes, _) = run(3, &[OK, Fail, Fail, OK, Fail, Fail]);
        assert!(changes.iter().all(|c| c.ends_with("(soft)")), "{changes:?}");
    }

    #[test]
    fn changes_between_and_out_of_hard_problems_are_hard() {
        let (changes, _) = run(2, &[OK, Warn, Warn, Fail, Unk, OK]);
        assert_eq!(
            &changes[2..],
            [
                r#"service:state/FAIL State changed: "WARN" -> "FAIL" (hard)"#,
                r#"service:state/UNK State changed: "FAIL" -> "UNK" (hard)"#,
                r#"service:state/OK State changed: "UNK" -> "OK" (hard)"#,
            ]
        );
        // Staying in a hard problem raises nothing more.
        let (changes, _) = run(2, &[OK, Fail, Fail, Fail, Fail]);
        assert_eq!(changes.len(), 2);
    }

    #[test]
    fn the_count_saturates_and_lowering_retries_hardens_at_once() {
        let before = Streak {
            state: Fail,
            hard: false,
            count: u32::MAX,
            hard_state: Some(OK),
        };
        let r = on_report(Some(before), Fail, 100);
        assert_eq!(r.streak.count, u32::MAX);
        assert!(r.streak.hard);
        let soft = Streak { count: 2, ..before };
        assert!(!on_report(Some(soft), Fail, 5).streak.hard);
        assert!(on_report(Some(soft), Fail, 3).streak.hard);
        assert!(on_report(None, Fail, 0).streak.hard, "0 is taken as 1");
    }

    #[test]
    fn retries_values_are_integers_from_1_to_100() {
        let ok = |v: Value| retries_from_json(&v, "retries");
        assert_eq!(ok(json!(1)).unwrap(), 1);
        assert_eq!(ok(json!(100)).unwrap(), 100);
        assert_eq!(ok(json!("3")).unwrap(), 3);
        assert_eq!(ok(json!(3.0)).unwrap(), 3);
        for bad in [
            json!(0),
            json!(101),
            json!(-1),
            json!(2.5),
            json!("x"),
            json!(null),
            json!(true),
            json!(1e300),
        ] {
            assert_eq!(
                ok(bad.clone()).unwrap_err().to_string(),
                "Data: \"retries\" should be an integer between 1 and 100",
                "{bad}"
            );
        }
        assert_eq!(check_retries(100), Ok(100));
        assert_eq!(check_retries(0), Err("should be between 1 and 100".into()));
    }
}
