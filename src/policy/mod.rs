//! The notification policy (SPEC §9): which of the alert log's events reach
//! a person, and when. Fewer, better notifications.
//!
//! Pure decisions, like [`rules`](crate::rules): plain data and the time
//! (`now`, unix ms) in, decisions out; no threads, no storage, no clock of
//! its own. The engine keeps what they need (a service's [`Streak`] and
//! [`FlapHistory`], the [`Silence`]s, [`Ack`]s and reminder times), asks,
//! records and delivers.
//!
//! | rule | what to call |
//! |---|---|
//! | retries, soft states | [`on_report`], [`retries_from_json`] |
//! | flapping | [`FlapHistory`], [`on_flap_report`] |
//! | held back or notified | [`held`] |
//! | grouping | [`window_end`], [`group`] |
//! | silences | [`Silence`], [`glob`], [`on_silence_end`], [`parse_silence_duration`] |
//! | acknowledgements | [`Ack`], [`ack_event`] |
//! | reminders | [`ReminderState`], [`parse_repeat`], [`human_duration`] |
//! | routing | [`Route`], [`routes`], [`routes_recovery`] |
//!
//! Every rule is off by default ([`PolicyConfig::default`],
//! [`PluginPolicy::default`]): OverC 1.0.9 plugins see what they always saw.
//!
//! ```
//! use overc::State;
//! use overc::policy::{self, FlapHistory, PolicyConfig};
//!
//! let config = PolicyConfig { retries: 3, flapping: true, ..PolicyConfig::default() };
//! let (mut streak, mut history, mut flapping) = (None, FlapHistory::new(), false);
//! let mut told = Vec::new();
//! for state in [State::Ok, State::Fail, State::Fail, State::Fail] {
//!     let r = policy::on_report(streak, state, config.retries);
//!     history = history.push(state);
//!     let f = policy::on_flap_report(&history.states(), flapping, config.flap_high, config.flap_low);
//!     if let Some(change) = r.change {
//!         if policy::held(change.event.channel, change.soft, f.flapping, false).is_none() {
//!             told.push(change.event.message.into_owned());
//!         }
//!     }
//!     (streak, flapping) = (Some(r.streak), f.flapping);
//! }
//! assert_eq!(told, [r#"State changed: "OK" -> "FAIL""#]);
//! ```

mod duration;
mod flapping;
mod grouping;
mod problem;
mod retries;
mod routing;
mod silence;

pub use duration::{
    MAX_REPEAT_SECONDS, MAX_SILENCE_SECONDS, check_silence_seconds, human_duration, parse_duration,
    parse_repeat, parse_silence_duration,
};
pub use flapping::{
    FLAP_WINDOW, FlapChange, FlapHistory, Flapping, flap_percent, flap_transition,
    on_report as on_flap_report, start_message as flap_start_message,
};
pub use grouping::{Group, Grouped, group, summary, window_end, worst_severity};
pub use problem::{Ack, Problem, ReminderState, ack_event, can_ack, reminder_event};
pub use retries::{
    MAX_RETRIES, Retried, StateChange, Streak, check_retries, on_report, retries_from_json,
};
pub use routing::{
    EventKind, Route, is_recovery, parse_events, parse_patterns, parse_severities, routes,
    routes_recovery,
};
pub use silence::{
    MAX_PATTERN_CHARS, Silence, UntoldProblem, check_pattern, glob, glob_escape, on_silence_end,
    silence_ended_event, silenced_by,
};

use crate::error::{Error, Result};
use crate::rules::STATE_CHANNEL;

/// The server-wide policy keys of `[overc]` (and `OVERC_<KEY>`). The
/// default turns every rule off.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// `retries`: reports in a row before a problem is hard, for services
    /// whose report names none (1 to 100; default 1: no soft states).
    pub retries: u8,
    /// `flapping = on`: hold back the state changes of flapping services
    /// and tell their start and stop instead (default off).
    pub flapping: bool,
    /// `flap-high`: the weighted percent state change at which a service
    /// starts flapping (default 30).
    pub flap_high: f64,
    /// `flap-low`: the one below which it stops (default 25).
    pub flap_low: f64,
    /// `group-wait`: seconds a server's first notification waits for others
    /// to be sent with it (default 0: off).
    pub group_wait: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            retries: 1,
            flapping: false,
            flap_high: 30.0,
            flap_low: 25.0,
            group_wait: 0,
        }
    }
}

impl PolicyConfig {
    /// Checks the values together.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key: `retries` outside 1 to 100,
    /// `flap-high`/`flap-low` outside 0 to 100 or `flap-low` above
    /// `flap-high`, `group-wait` over one hour.
    pub fn validate(&self) -> Result<()> {
        check_retries(i64::from(self.retries))
            .map_err(|why| Error::Config(format!("retries: {why}")))?;
        for (key, v) in [("flap-high", self.flap_high), ("flap-low", self.flap_low)] {
            if !(0.0..=100.0).contains(&v) {
                return Err(Error::Config(format!(
                    "{key}: should be a percentage from 0 to 100"
                )));
            }
        }
        if self.flap_low > self.flap_high {
            return Err(Error::Config(format!(
                "flap-low ({}) should not be above flap-high ({})",
                self.flap_low, self.flap_high
            )));
        }
        if self.group_wait > MAX_GROUP_WAIT {
            return Err(Error::Config(format!(
                "group-wait: should be at most {MAX_GROUP_WAIT} seconds"
            )));
        }
        Ok(())
    }
}

/// Longest `group-wait`: one hour. Notifications held longer stop being news.
pub const MAX_GROUP_WAIT: u64 = 3_600;

/// The policy keys of one `[alert:NAME]` section. The default routes every
/// alert and sends no reminder.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PluginPolicy {
    /// `severities`, `servers`, `services`, `events`.
    pub route: Route,
    /// `repeat`: seconds between reminders ([`parse_repeat`]); `None`: none.
    pub repeat: Option<u64>,
}

/// Why an event recorded in the alert log is not notified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// An active silence matches it (the event is marked `silenced`).
    Silenced,
    /// A soft state change, or a recovery from a soft problem (marked `soft`).
    Soft,
    /// A state change of a service that flaps (after this report).
    Flapping,
}

/// Whether an event on `channel` is held back, and why: `soft` is the
/// retries rule's mark, `flapping` whether the service flaps after the
/// report that raised it, `silenced` whether an active silence matches it.
/// A silence holds every event about what it matches; soft and flapping
/// hold only state changes (`service:state`): offline, back online, the
/// flapping start and stop themselves and API alerts still go. `None`:
/// notify.
pub fn held(channel: &str, soft: bool, flapping: bool, silenced: bool) -> Option<Held> {
    let state_change = channel == STATE_CHANNEL;
    if silenced {
        Some(Held::Silenced)
    } else if state_change && soft {
        Some(Held::Soft)
    } else if state_change && flapping {
        Some(Held::Flapping)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_off_by_default() {
        let c = PolicyConfig::default();
        assert_eq!(c.retries, 1);
        assert!(!c.flapping);
        assert_eq!((c.flap_high, c.flap_low), (30.0, 25.0));
        assert_eq!(c.group_wait, 0);
        c.validate().unwrap();
        let p = PluginPolicy::default();
        assert_eq!(p.route, Route::default());
        assert_eq!(p.repeat, None);
    }

    #[test]
    fn config_values_are_checked_together() {
        let bad = |c: PolicyConfig| c.validate().unwrap_err().to_string();
        let d = PolicyConfig::default;
        assert_eq!(
            bad(PolicyConfig { retries: 0, ..d() }),
            "config: retries: should be between 1 and 100"
        );
        assert!(
            bad(PolicyConfig {
                retries: 101,
                ..d()
            })
            .contains("retries")
        );
        assert_eq!(
            bad(PolicyConfig {
                flap_low: 40.0,
                ..d()
            }),
            "config: flap-low (40) should not be above flap-high (30)"
        );
        assert!(
            bad(PolicyConfig {
                flap_high: 101.0,
                ..d()
            })
            .starts_with("config: flap-high")
        );
        assert!(
            bad(PolicyConfig {
                flap_low: -1.0,
                ..d()
            })
            .starts_with("config: flap-low")
        );
        assert!(
            bad(PolicyConfig {
                flap_high: f64::NAN,
                ..d()
            })
            .contains("flap-high")
        );
        assert!(
            bad(PolicyConfig {
                group_wait: 3_601,
                ..d()
            })
            .contains("group-wait")
        );
        PolicyConfig {
            flap_low: 30.0,
            group_wait: 3_600,
            retries: 100,
            ..d()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn what_holds_an_event_back() {
        assert_eq!(held("service:state", false, false, false), None);
        assert_eq!(held("service:state", true, false, false), Some(Held::Soft));
        assert_eq!(
            held("service:state", false, true, false),
            Some(Held::Flapping)
        );
        assert_eq!(
            held("service:state", true, true, true),
            Some(Held::Silenced)
        );
        assert_eq!(
            held("plugin", false, true, false),
            None,
            "offline still goes"
        );
        assert_eq!(held("service:flapping", false, true, false), None);
        assert_eq!(held("api", false, false, true), Some(Held::Silenced));
    }
}
