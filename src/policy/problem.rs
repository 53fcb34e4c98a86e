//! Open problems: what a service in a hard problem or overdue is, its
//! acknowledgement, and the reminders about it.

use std::borrow::Cow;

use crate::clock::Millis;
use crate::rules::{ACK_CHANNEL, Event, REMINDER_CHANNEL};
use crate::state::State;

use super::duration::human_duration;

/// What is wrong with a service that a person should hear about until it
/// is fixed: a hard non-OK state, or no report past its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Problem {
    /// A hard WARN, FAIL or UNK.
    State(State),
    /// Overdue (`plugin/offline`); it wins over the last reported state.
    Offline,
}

impl Problem {
    /// The problem of a service with this state (`None` before its first
    /// report), hardness and overdue flag; `None` when nothing is wrong or
    /// the problem is still soft.
    pub fn of(state: Option<State>, hard: bool, overdue: bool) -> Option<Problem> {
        match state {
            _ if overdue => Some(Problem::Offline),
            Some(s) if hard && s != State::Ok => Some(Problem::State(s)),
            _ => None,
        }
    }

    /// `WARN`, `FAIL`, `UNK` or `offline`: the event of a reminder and the
    /// word after `Still`.
    pub fn name(self) -> &'static str {
        match self {
            Problem::State(s) => s.as_str(),
            Problem::Offline => "offline",
        }
    }

    /// Its severity: the state, FAIL when offline (as `plugin/offline`).
    pub fn severity(self) -> State {
        match self {
            Problem::State(s) => s,
            Problem::Offline => State::Fail,
        }
    }
}

/// An acknowledgement: someone said "I'm on it" about a problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Who acknowledged.
    pub author: String,
    /// What they wrote.
    pub comment: String,
    /// When (unix ms).
    pub ctime: Millis,
    /// The problem acknowledged: the ack lasts while it does.
    pub problem: Problem,
}

impl Ack {
    /// Whether the ack still holds for a service whose problem is now
    /// `current`: until the state changes, even to another problem (an
    /// acknowledged WARN that turns FAIL is news again) or to overdue.
    pub fn holds(&self, current: Option<Problem>) -> bool {
        current == Some(self.problem)
    }
}

/// Whether a service can be acknowledged: only in a hard problem or overdue.
pub fn can_ack(current: Option<Problem>) -> bool {
    current.is_some()
}

/// The event of an acknowledgement: `[service:ack] Acknowledged by <user>:
/// <comment>` (no event: the text shows the channel alone), or
/// `Acknowledged by <user>` when the comment is empty. Its severity is the
/// problem's, so it goes where the problem went.
pub fn ack_event(user: &str, comment: &str, problem: Problem) -> Event {
    let comment = comment.trim();
    Event {
        channel: ACK_CHANNEL,
        event: "",
        message: Cow::Owned(if comment.is_empty() {
            format!("Acknowledged by {user}")
        } else {
            format!("Acknowledged by {user}: {comment}")
        }),
        severity: problem.severity(),
    }
}

/// What the reminder rule needs of one service and one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReminderState {
    /// The open problem.
    pub problem: Problem,
    /// When it began: the hard change or the deadline that passed.
    pub since: Millis,
    /// When this plugin was last told of it by a reminder or a silence's
    /// end; `None` if only the problem itself was told. Stored, so a restart
    /// does not send a burst.
    pub last_reminder: Option<Millis>,
    /// Whether an acknowledgement holds ([`Ack::holds`]).
    pub acked: bool,
    /// Whether an active silence matches the service.
    pub silenced: bool,
}

impl ReminderState {
    /// When the next reminder is due, with the plugin's `repeat` seconds;
    /// `None` when no reminder is to come (no `repeat`, acknowledged or
    /// silenced). A missed interval (the server was down) gives one
    /// reminder, not one per interval.
    pub fn next_due(&self, repeat_s: Option<u64>) -> Option<Millis> {
        let repeat = repeat_s.filter(|_| !self.acked && !self.silenced)?;
        let from = self.last_reminder.unwrap_or(self.since).max(self.since);
        let step = i64::try_from(repeat)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        Some(from.saturating_add(step))
    }

    /// Whether a reminder is due at `now`.
    pub fn is_due(&self, repeat_s: Option<u64>, now: Millis) -> bool {
        self.next_due(repeat_s).is_some_and(|due| now >= due)
    }

    /// The reminder to send at `now`: `[service:reminder/<STATE>] Still
    /// <STATE> for <duration>` (e.g. `Still FAIL for 2h 5m`;
    /// `[service:reminder/offline] Still offline for 4h` when overdue),
    /// severity the problem's.
    pub fn reminder(&self, now: Millis) -> Event {
        reminder_event(self.problem, now.saturating_sub(self.since))
    }
}

/// The reminder of a problem that has lasted `lasted` milliseconds.
pub fn reminder_event(problem: Problem, lasted: Millis) -> Event {
    Event {
        channel: REMINDER_CHANNEL,
        event: problem.name(),
        message: Cow::Owned(format!(
            "Still {} for {}",
            problem.name(),
            human_duration(lasted)
        )),
        severity: problem.severity(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Notification;

    const H: Millis = 3_600_000;

    #[test]
    fn only_hard_problems_and_overdue_services_are_problems() {
        assert_eq!(
            Problem::of(Some(State::Fail), true, false),
            Some(Problem::State(State::Fail))
        );
        assert_eq!(Problem::of(Some(State::Fail), false, false), None, "soft");
        assert_eq!(Problem::of(Some(State::Ok), true, false), None);
        assert_eq!(
            Problem::of(Some(State::Ok), true, true),
            Some(Problem::Offline)
        );
        assert_eq!(
            Problem::of(Some(State::Warn), false, true),
            Some(Problem::Offline)
        );
        assert_eq!(Problem::of(None, true, false), None);
        assert_eq!(Problem::Offline.severity(), State::Fail);
        assert!(!can_ack(None));
        assert!(can_ack(Some(Problem::Offline)));
    }

    #[test]
    fn the_ack_text_as_the_spec_writes_it() {
        let e = ack_event("ann", " on it, disk ordered ", Problem::State(State::Fail));
        let n = Notification {
            server: Some("web1".into()),
            service: Some("raid".into()),
            channel: e.channel.into(),
            event: e.event.into(),
            message: e.message.into_owned(),
            severity: e.severity.as_str().into(),
            ..Notification::default()
        };
        assert_eq!(
            n.text(),
            "web1 raid: [service:ack] Acknowledged by ann: on it, disk ordered"
        );
        assert_eq!(n.severity, "FAIL");
        assert_eq!(
            &*ack_event("bob", "", Problem::Offline).message,
            "Acknowledged by bob"
        );
    }

    #[test]
    fn an_ack_holds_until_the_state_changes() {
        let ack = Ack {
            author: "ann".into(),
            comment: "on it".into(),
            ctime: 0,
            problem: Problem::State(State::Warn),
        };
        assert!(ack.holds(Some(Problem::State(State::Warn))));
        assert!(
            !ack.holds(Some(Problem::State(State::Fail))),
            "worse is news"
        );
        assert!(!ack.holds(Some(Problem::Offline)));
        assert!(!ack.holds(None), "recovered: a new failure is news again");
    }

    fn fail_since(since: Millis) -> ReminderState {
        ReminderState {
            problem: Problem::State(State::Fail),
            since,
            last_reminder: None,
            acked: false,
            silenced: false,
        }
    }

    #[test]
    fn reminders_come_every_interval_while_the_problem_lasts() {
        let r = fail_since(0);
        let repeat = Some(4 * 3_600);
        assert_eq!(r.next_due(repeat), Some(4 * H));
        assert!(!r.is_due(repeat, 4 * H - 1));
        assert!(r.is_due(repeat, 4 * H));
        let e = r.reminder(4 * H + 5 * 60_000);
        assert_eq!(
            (e.channel, e.event, &*e.message, e.severity),
            (
                "service:reminder",
                "FAIL",
                "Still FAIL for 4h 5m",
                State::Fail
            )
        );
        let sent = ReminderState {
            last_reminder: Some(4 * H),
            ..r
        };
        assert_eq!(sent.next_due(repeat), Some(8 * H));
        assert!(!sent.is_due(repeat, 5 * H), "no reminder right after one");
        // A server down for a day sends one reminder, then keeps the pace.
        assert!(sent.is_due(repeat, 30 * H));
        let offline = ReminderState {
            problem: Problem::Offline,
            ..r
        };
        assert_eq!(&*offline.reminder(2 * H).message, "Still offline for 2h");
        assert_eq!(offline.reminder(2 * H).event, "offline");
    }

    #[test]
    fn no_reminder_without_repeat_or_when_acked_or_silenced() {
        let r = fail_since(0);
        assert_eq!(r.next_due(None), None);
        let acked = ReminderState { acked: true, ..r };
        assert!(!acked.is_due(Some(60), 10 * H));
        let silenced = ReminderState {
            silenced: true,
            ..r
        };
        assert!(!silenced.is_due(Some(60), 10 * H));
        // A reminder time from before the problem (an old one) counts from
        // the problem's start.
        let stale = ReminderState {
            last_reminder: Some(-10 * H),
            ..fail_since(H)
        };
        assert_eq!(stale.next_due(Some(60)), Some(H + 60_000));
        assert_eq!(fail_since(0).next_due(Some(u64::MAX)), Some(Millis::MAX));
    }
}
