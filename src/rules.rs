//! Which events a report, a passed deadline or a posted alert raises.
//!
//! Pure functions of what was known before and of the clock: no storage, no
//! threads. The storage backends call them where the data changes (so an
//! event is written in the same transaction as its cause) and the
//! supervisor calls the deadline rules. The notification policy decides
//! later which of these events reach a person; these rules only say what
//! happened, with the channels, events, texts and severities of OverC 1.0.9.

use std::borrow::Cow;

use crate::clock::Millis;
use crate::notification::Notification;
use crate::state::State;

/// Channel of state changes (`service:state/<STATE>`).
pub const STATE_CHANNEL: &str = "service:state";
/// Channel of `plugin/offline` and `plugin/online`.
pub const PLUGIN_CHANNEL: &str = "plugin";
/// Channel and event of a message posted to `/api/set/alerts`.
pub const API_ALERT: (&str, &str) = ("api", "alert");
/// Channel and event of the alert raised when an alert plugin fails.
pub const PLUGIN_FAILED: (&str, &str) = ("alert-plugin", "failed");
/// Channel of the notification policy's flapping events
/// (`service:flapping/start`, `service:flapping/stop`).
pub const FLAPPING_CHANNEL: &str = "service:flapping";
/// Channel of an acknowledgement (`[service:ack] Acknowledged by …`). Its
/// event is empty, so the text shows `[service:ack]` alone.
pub const ACK_CHANNEL: &str = "service:ack";
/// Channel of reminders (`service:reminder/<STATE>`, `service:reminder/offline`).
pub const REMINDER_CHANNEL: &str = "service:reminder";
/// Channel of a grouped notification: event `alerts`, or `offline` when
/// all of a server's services went overdue together.
pub const GROUP_CHANNEL: &str = "group";

/// What a grouped notification's summary line calls one kind of alert,
/// e.g. `3 offline, 2 state changes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Category {
    /// The name after a count of one: `state change`.
    pub one: &'static str,
    /// The name after any other count: `state changes`.
    pub many: &'static str,
}

/// The categories in the order a summary line lists them. Which alert falls
/// in which one is [`category`]'s table.
pub const CATEGORIES: [Category; 10] = [
    category_named("offline", "offline"),
    category_named("state change", "state changes"),
    category_named("back online", "back online"),
    category_named("flapping", "flapping"),
    category_named("stopped flapping", "stopped flapping"),
    category_named("acknowledgement", "acknowledgements"),
    category_named("reminder", "reminders"),
    category_named("API alert", "API alerts"),
    category_named("alert plugin failure", "alert plugin failures"),
    category_named("other", "other"),
];

const fn category_named(one: &'static str, many: &'static str) -> Category {
    Category { one, many }
}

/// The index in [`CATEGORIES`] of an alert's channel and event:
///
/// | channel/event | category |
/// |---|---|
/// | `plugin/offline` | offline |
/// | `service:state/<STATE>` | state change(s) |
/// | `plugin/online` | back online |
/// | `service:flapping/start` | flapping |
/// | `service:flapping/stop` | stopped flapping |
/// | `service:ack` | acknowledgement(s) |
/// | `service:reminder/<STATE>` | reminder(s) |
/// | `api/alert` | API alert(s) |
/// | `alert-plugin/failed` | alert plugin failure(s) |
/// | anything else | other |
pub fn category(channel: &str, event: &str) -> usize {
    match (channel, event) {
        (PLUGIN_CHANNEL, "offline") => 0,
        (STATE_CHANNEL, _) => 1,
        (PLUGIN_CHANNEL, "online") => 2,
        (FLAPPING_CHANNEL, "start") => 3,
        (FLAPPING_CHANNEL, "stop") => 4,
        (ACK_CHANNEL, _) => 5,
        (REMINDER_CHANNEL, _) => 6,
        c if c == API_ALERT => 7,
        c if c == PLUGIN_FAILED => 8,
        _ => 9,
    }
}

/// An event of the alert log, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// e.g. `service:state`, `plugin`, `api`.
    pub channel: &'static str,
    /// e.g. `WARN`, `offline`, `alert`.
    pub event: &'static str,
    /// The text after `[channel/event]`.
    pub message: Cow<'static, str>,
    /// How bad it is; the worst-of roll-ups and routing use it.
    pub severity: State,
}

/// What was known of a service before a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Known {
    /// Its current state; `None` before its first report.
    pub state: Option<State>,
    /// Whether it is flagged overdue.
    pub overdue: bool,
}

/// The events a report of `state` raises for a service in `before`, in the
/// order they are recorded: a state change (the first report only when it
/// is not OK), then `plugin/online` when the service was overdue.
pub fn on_report(before: Known, state: State) -> impl Iterator<Item = Event> {
    let changed = match before.state {
        None => state != State::Ok,
        Some(prev) => prev != state,
    };
    let change = changed.then(|| Event {
        channel: STATE_CHANNEL,
        event: state.as_str(),
        message: Cow::Owned(format!(
            "State changed: \"{}\" -> \"{}\"",
            before.state.map_or("(?)", State::as_str),
            state.as_str()
        )),
        severity: state,
    });
    let online = before.overdue.then(on_return);
    change.into_iter().chain(online)
}

/// The event of an overdue service that reports again (`plugin/online`).
pub fn on_return() -> Event {
    Event {
        channel: PLUGIN_CHANNEL,
        event: "online",
        message: Cow::Borrowed("Monitoring plugin back online"),
        severity: State::Ok,
    }
}

/// The event of a service whose deadline passed without a report. Raised
/// once: `None` when it is already flagged overdue or has no period.
pub fn on_overdue(already_overdue: bool, has_period: bool) -> Option<Event> {
    (!already_overdue && has_period).then_some(Event {
        channel: PLUGIN_CHANNEL,
        event: "offline",
        message: Cow::Borrowed("Monitoring plugin offline"),
        severity: State::Fail,
    })
}

/// The event of a message posted to `/api/set/alerts`, with the severity
/// it was posted with (FAIL when none was given).
pub fn on_api_alert(message: &str, severity: State) -> Event {
    Event {
        channel: API_ALERT.0,
        event: API_ALERT.1,
        message: Cow::Owned(message.to_owned()),
        severity,
    }
}

/// The event of an alert plugin that failed (sent through the others).
pub fn on_plugin_failure(plugin: &str, reason: &str) -> Event {
    Event {
        channel: PLUGIN_FAILED.0,
        event: PLUGIN_FAILED.1,
        message: Cow::Owned(format!("Alert plugin `{plugin}` failed: {reason}")),
        severity: State::Fail,
    }
}

/// The alert plugin an `alert-plugin/failed` event is about, read back from
/// the message [`on_plugin_failure`] wrote.
pub fn failed_plugin(notification: &Notification) -> Option<&str> {
    if (notification.channel.as_str(), notification.event.as_str()) != PLUGIN_FAILED {
        return None;
    }
    let rest = notification.message.strip_prefix("Alert plugin `")?;
    rest.find("` failed").map(|end| &rest[..end])
}

/// Whether a notification goes to the plugin named `plugin`: every plugin
/// gets every alert, except the news of its own failure (it would not take
/// it, and sending it there could only fail again).
pub fn routes_to(notification: &Notification, plugin: &str) -> bool {
    failed_plugin(notification) != Some(plugin)
}

/// When a service reported at `rtime` with `period_s` becomes overdue:
/// report time + period + grace.
pub fn deadline(rtime: Millis, period_s: i64, grace: Millis) -> Millis {
    rtime
        .saturating_add(period_s.saturating_mul(1000))
        .saturating_add(grace)
}

/// A deadline as rebuilt when the server starts or finds that it did not
/// run for a while: one that passed meanwhile moves to `now` + period +
/// grace, so hosts get one period to reach the server again.
pub fn resumed_deadline(rtime: Millis, period_s: i64, grace: Millis, now: Millis) -> Millis {
    let due = deadline(rtime, period_s, grace);
    if due < now {
        deadline(now, period_s, grace)
    } else {
        due
    }
}

/// Whether a service counts as overdue at `now`: flagged, or past its
/// deadline though the supervisor has not flagged it yet.
pub fn is_overdue(
    flagged: bool,
    period_s: Option<i64>,
    rtime: Option<Millis>,
    grace: Millis,
    now: Millis,
) -> bool {
    flagged
        || match (period_s, rtime) {
            (Some(p), Some(t)) => now > deadline(t, p, grace),
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_is_not_sent_the_news_of_its_own_failure() {
        let e = on_plugin_failure("mail `x`", "exit code 1: no route");
        let n = Notification {
            channel: e.channel.into(),
            event: e.event.into(),
            message: e.message.into_owned(),
            ..Notification::default()
        };
        assert_eq!(failed_plugin(&n), Some("mail `x`"));
        assert!(!routes_to(&n, "mail `x`"));
        assert!(routes_to(&n, "log"));
        let posted = Notification {
            channel: API_ALERT.0.into(),
            event: API_ALERT.1.into(),
            message: "Alert plugin `log` failed: it did".into(),
            ..Notification::default()
        };
        assert_eq!(failed_plugin(&posted), None, "only overc's own event");
        assert!(routes_to(&posted, "log"));
    }

    fn texts(events: impl Iterator<Item = Event>) -> Vec<String> {
        events
            .map(|e| format!("[{}/{}] {} ({})", e.channel, e.event, e.message, e.severity))
            .collect()
    }

    #[test]
    fn a_first_report_raises_a_change_only_when_not_ok() {
        assert!(texts(on_report(Known::default(), State::Ok)).is_empty());
        assert_eq!(
            texts(on_report(Known::default(), State::Unk)),
            [r#"[service:state/UNK] State changed: "(?)" -> "UNK" (UNK)"#]
        );
    }

    #[test]
    fn a_change_names_both_states_and_has_the_new_severity() {
        let before = Known {
            state: Some(State::Ok),
            overdue: false,
        };
        assert_eq!(
            texts(on_report(before, State::Warn)),
            [r#"[service:state/WARN] State changed: "OK" -> "WARN" (WARN)"#]
        );
        assert!(texts(on_report(before, State::Ok)).is_empty());
    }

    #[test]
    fn an_overdue_service_that_reports_is_back_online_after_its_change() {
        let before = Known {
            state: Some(State::Ok),
            overdue: true,
        };
        assert_eq!(
            texts(on_report(before, State::Ok)),
            ["[plugin/online] Monitoring plugin back online (OK)"]
        );
        assert_eq!(
            texts(on_report(before, State::Fail)),
            [
                r#"[service:state/FAIL] State changed: "OK" -> "FAIL" (FAIL)"#,
                "[plugin/online] Monitoring plugin back online (OK)"
            ]
        );
    }

    #[test]
    fn offline_is_raised_once_and_only_for_services_with_a_period() {
        let e = on_overdue(false, true).unwrap();
        assert_eq!(
            (e.channel, e.event, &*e.message, e.severity),
            (
                "plugin",
                "offline",
                "Monitoring plugin offline",
                State::Fail
            )
        );
        assert_eq!(on_overdue(true, true), None);
        assert_eq!(on_overdue(false, false), None);
    }

    #[test]
    fn posted_alerts_keep_their_severity_and_plugin_failures_are_fail() {
        let e = on_api_alert("disk replaced", State::Fail);
        assert_eq!(
            (e.channel, e.event, &*e.message),
            ("api", "alert", "disk replaced")
        );
        assert_eq!(e.severity, State::Fail);
        assert_eq!(
            on_api_alert("deploy started", State::Ok).severity,
            State::Ok
        );
        let e = on_plugin_failure("mail", "exit code 1");
        assert_eq!(&*e.message, "Alert plugin `mail` failed: exit code 1");
        assert_eq!((e.channel, e.event), PLUGIN_FAILED);
    }

    #[test]
    fn deadlines_add_period_and_grace_and_resume_after_a_gap() {
        assert_eq!(deadline(1_000, 60, 5_000), 66_000);
        // Not yet passed: unchanged.
        assert_eq!(resumed_deadline(1_000, 60, 0, 30_000), 61_000);
        // Passed while the server did not run: one period from now.
        assert_eq!(resumed_deadline(1_000, 60, 0, 500_000), 560_000);
        assert!(!is_overdue(false, Some(60), Some(1_000), 0, 61_000));
        assert!(is_overdue(false, Some(60), Some(1_000), 0, 61_001));
        assert!(is_overdue(true, None, None, 0, 0));
        assert!(!is_overdue(false, None, Some(0), 0, i64::MAX));
        assert_eq!(deadline(i64::MAX - 1, 60, 0), i64::MAX);
    }
}
