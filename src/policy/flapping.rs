//! Flapping: a service whose state keeps changing is told about once, not
//! once per change.
//!
//! The measure is Nagios's percent state change (`flapping.c`,
//! `check_for_service_flapping`): over the last 21 reports there are at
//! most 20 changes; a change between the reports `x - 1` and `x` (x = 1 for
//! the oldest pair, 20 for the newest) weighs `0.75 + (x - 1) × 0.5 / 19`,
//! so from 0.75 to 1.25, and the percentage is `100 × Σ weights / 20`.
//! Icinga 1 computes the same; Icinga 2 (since 2.8,
//! `lib/icinga/checkable-flapping.cpp`) keeps 20 change bits weighted
//! `0.8 + 0.02 × i` (0.80 to 1.18) and compares with `>`, which SPEC §9 does
//! not follow: we keep Nagios's weights, start at ≥ `flap-high` and stop
//! below `flap-low`.
//!
//! Until a service has 21 reports, the missing older ones count as equal
//! to its first report, as Nagios fills its history with the first state:
//! the changes there are take the newest places.

use std::borrow::Cow;

use crate::rules::{Event, FLAPPING_CHANNEL};
use crate::state::State;

/// Reports looked at: 21, hence at most 20 state changes.
pub const FLAP_WINDOW: usize = 21;

/// The weighted sum of changes, in units of 1/76 of a change, so that
/// thresholds compare exactly: a change at place `x` (1 to 20) weighs
/// `0.75 + (x - 1) / 38 = (57 + 2 (x - 1)) / 76`.
fn weighted_changes_76ths(states: &[State]) -> u32 {
    let window = &states[states.len().saturating_sub(FLAP_WINDOW)..];
    // Place of the newest pair is 20 whatever the length of the window.
    let offset = FLAP_WINDOW - window.len().max(1);
    window
        .windows(2)
        .enumerate()
        .filter(|(_, pair)| pair[0] != pair[1])
        .map(|(i, _)| {
            let x = (offset + i + 1) as u32;
            57 + 2 * (x - 1)
        })
        .sum()
}

/// The weighted percent state change of the last [`FLAP_WINDOW`] states of
/// `states` (oldest first; older ones are ignored), from 0 (no change) to
/// 100 (a change at every report).
pub fn flap_percent(states: &[State]) -> f64 {
    // 100 × (n / 76) / 20 = 5n / 76; both exact in f64, so an exact 30 %
    // is 30.0, not 29.999….
    f64::from(5 * weighted_changes_76ths(states)) / 76.0
}

/// A start or stop of flapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlapChange {
    /// The percentage reached `flap-high`.
    Start,
    /// The percentage fell below `flap-low`.
    Stop,
}

/// The hysteresis: a service that was not flapping starts at
/// `percent >= high`; one that was flapping stops at `percent < low`.
pub fn flap_transition(
    was_flapping: bool,
    percent: f64,
    high: f64,
    low: f64,
) -> Option<FlapChange> {
    match was_flapping {
        false if percent >= high => Some(FlapChange::Start),
        true if percent < low => Some(FlapChange::Stop),
        _ => None,
    }
}

/// The last reports of a service, packed into a `u64` for storage: two bits
/// per state (up to [`FLAP_WINDOW`]) and the count in the top byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlapHistory(u64);

impl FlapHistory {
    /// An empty history.
    pub fn new() -> FlapHistory {
        FlapHistory(0)
    }

    /// The history a stored number holds; a number no [`FlapHistory`] wrote
    /// is read as far as it makes sense (the count is capped at 21).
    pub fn from_u64(bits: u64) -> FlapHistory {
        let len = ((bits >> 56) as usize).min(FLAP_WINDOW) as u64;
        FlapHistory((len << 56) | (bits & ((1 << (2 * len)) - 1)))
    }

    /// The number to store.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// How many states it holds (0 to 21).
    pub fn len(self) -> usize {
        (self.0 >> 56) as usize
    }

    /// Whether it holds no state.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// This history with `state` added as the newest; the oldest falls out
    /// once there are 21.
    pub fn push(self, state: State) -> FlapHistory {
        let len = self.len();
        let keep = len.min(FLAP_WINDOW - 1) as u64;
        let kept = self.0 & ((1 << (2 * keep)) - 1);
        let bits = (kept << 2) | u64::from(state.value());
        FlapHistory(((keep + 1) << 56) | bits)
    }

    /// The states, oldest first.
    pub fn states(self) -> Vec<State> {
        (0..self.len())
            .rev()
            .map(|i| State::ALL[((self.0 >> (2 * i)) & 3) as usize])
            .collect()
    }
}

/// What a report means for flapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Flapping {
    /// The weighted percent state change after the report (0 to 100).
    pub percent: f64,
    /// Whether the service flaps after the report: its state changes are
    /// held back.
    pub flapping: bool,
    /// `service:flapping/start` or `/stop`, to record and notify, once.
    pub event: Option<Event>,
}

/// Applies a report to a service's flapping: `history` holds its last
/// reports, this one included as the newest (e.g.
/// [`FlapHistory::push`]`(state).states()`), `was_flapping` whether it
/// flapped before. `high` and `low` are `flap-high` and `flap-low`.
///
/// The start event is `[service:flapping/start] Flapping: 46% state
/// changes` (the percentage rounded), severity the worst state of the
/// window, so whoever would get those states gets it; the stop event is
/// `[service:flapping/stop] Stopped flapping`, severity the current state,
/// and [`routing`](super::routes_recovery) treats it as a recovery.
pub fn on_report(history: &[State], was_flapping: bool, high: f64, low: f64) -> Flapping {
    let percent = flap_percent(history);
    let change = flap_transition(was_flapping, percent, high, low);
    let window = &history[history.len().saturating_sub(FLAP_WINDOW)..];
    let event = change.map(|c| match c {
        FlapChange::Start => Event {
            channel: FLAPPING_CHANNEL,
            event: "start",
            message: Cow::Owned(start_message(percent)),
            severity: window.iter().copied().max().unwrap_or_default(),
        },
        FlapChange::Stop => Event {
            channel: FLAPPING_CHANNEL,
            event: "stop",
            message: Cow::Borrowed("Stopped flapping"),
            severity: window.last().copied().unwrap_or_default(),
        },
    });
    Flapping {
        percent,
        flapping: match change {
            Some(FlapChange::Start) => true,
            Some(FlapChange::Stop) => false,
            None => was_flapping,
        },
        event,
    }
}

/// `Flapping: 46% state changes`, the percentage rounded to a whole number.
pub fn start_message(percent: f64) -> String {
    format!("Flapping: {}% state changes", percent.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::{Fail, Ok as OK, Unk, Warn};

    /// States t1..t21 with a change at each place in `changes` (t2..t21),
    /// alternating OK and FAIL.
    fn with_changes_at(changes: &[usize]) -> Vec<State> {
        let mut s = vec![OK];
        for t in 2..=21 {
            let prev = s[t - 2];
            s.push(if changes.contains(&t) {
                if prev == OK { Fail } else { OK }
            } else {
                prev
            });
        }
        s
    }

    /// The worked example of the Nagios Core documentation, "Flap
    /// Detection", section "Service Flap Detection"
    /// (https://assets.nagios.com/downloads/nagioscore/docs/nagioscore/3/en/flapping.html;
    /// the same text in Naemon's and Shinken's manuals): 21 service checks
    /// with 7 state changes, at t3, t4, t5, t9, t12, t16 and t19. Unweighted
    /// that is 7 / 20 = 35 %; the document says the weighted value "will be
    /// slightly less than 35%" and then assumes 31 % to show the
    /// thresholds. Nagios's own weights give 33.36 %.
    #[test]
    fn the_nagios_documentation_example() {
        let states = with_changes_at(&[3, 4, 5, 9, 12, 16, 19]);
        assert_eq!(states.len(), 21);
        let changes = states.windows(2).filter(|w| w[0] != w[1]).count();
        assert_eq!(changes, 7);
        assert_eq!(100.0 * changes as f64 / 20.0, 35.0, "unweighted");
        let p = flap_percent(&states);
        // Σ (0.75 + (x - 1)/38) for x = 2, 3, 4, 8, 11, 15, 18 = 5.25 + 54/38.
        let expected = 100.0 * (5.25 + 54.0 / 38.0) / 20.0;
        assert!((p - expected).abs() < 1e-9, "{p}");
        assert!((p - 33.355).abs() < 0.001, "{p}");
        assert!(p < 35.0, "slightly less than 35%, as the document says");
        assert_eq!(start_message(p), "Flapping: 33% state changes");
        // The document's thresholds walk-through, with its assumed 31 %:
        // not flapping and 31 ≥ high starts; flapping and 31 < low stops.
        assert_eq!(
            flap_transition(false, 31.0, 30.0, 25.0),
            Some(FlapChange::Start)
        );
        assert_eq!(
            flap_transition(true, 31.0, 40.0, 35.0),
            Some(FlapChange::Stop)
        );
        assert_eq!(flap_transition(true, 31.0, 30.0, 25.0), None);
    }

    #[test]
    fn weights_run_from_three_quarters_to_five_quarters() {
        // Only the oldest pair changed: 0.75 / 20.
        assert_eq!(flap_percent(&with_changes_at(&[2])), 3.75);
        // Only the newest: 1.25 / 20.
        assert_eq!(flap_percent(&with_changes_at(&[21])), 6.25);
        // Every report a change: 100 %.
        assert_eq!(
            flap_percent(&with_changes_at(&(2..=21).collect::<Vec<_>>())),
            100.0
        );
        assert_eq!(flap_percent(&[Warn; 21]), 0.0);
        assert_eq!(flap_percent(&[]), 0.0);
        assert_eq!(flap_percent(&[Fail]), 0.0);
        // A change between any two states counts, not only to and from OK.
        assert_eq!(
            flap_percent(&[Warn, Fail, Unk]),
            flap_percent(&[OK, Fail, OK])
        );
    }

    #[test]
    fn only_the_last_21_reports_count() {
        // A change between the 1st and 2nd of 22 reports is outside.
        let mut states = vec![Fail];
        states.extend([OK; 21]);
        assert_eq!(flap_percent(&states), 0.0);
        states[1] = Fail; // now between the 2nd and 3rd: the oldest place.
        assert_eq!(flap_percent(&states), 3.75);
    }

    #[test]
    fn a_short_history_puts_its_changes_in_the_newest_places() {
        assert_eq!(flap_percent(&[OK, Fail]), 6.25);
        // Three reports: the two newest places, 1.2237 and 1.25.
        let p = flap_percent(&[OK, Fail, OK]);
        assert!((p - 100.0 * (1.25 + 0.75 + 18.0 / 38.0) / 20.0).abs() < 1e-9);
    }

    #[test]
    fn flap_high_and_low_are_inclusive_and_exclusive_boundaries() {
        // Changes at places 1, 2, 3, 18, 19, 20 (t2, t3, t4, t19, t20, t21):
        // 6 × 0.75 + (0+1+2+17+18+19)/38 = 4.5 + 1.5 = 6 → exactly 30 %.
        let thirty = with_changes_at(&[2, 3, 4, 19, 20, 21]);
        assert_eq!(flap_percent(&thirty), 30.0);
        assert!(
            on_report(&thirty, false, 30.0, 25.0).flapping,
            "≥ high starts"
        );
        assert!(!on_report(&thirty, false, 30.5, 25.0).flapping);
        // Exactly 25 % is a weighted sum of 380/76: six changes with
        // Σ(x - 1) = 19, e.g. places 1, 2, 3, 4, 5, 10.
        let twenty_five = with_changes_at(&[2, 3, 4, 5, 6, 11]);
        assert_eq!(flap_percent(&twenty_five), 25.0);
        assert!(
            on_report(&twenty_five, true, 30.0, 25.0).flapping,
            "25 is not below 25"
        );
        assert!(!on_report(&twenty_five, true, 30.0, 25.01).flapping);
        // Between low and high: stays as it was.
        let between = with_changes_at(&[3, 4, 19, 20, 21]);
        let p = flap_percent(&between);
        assert!(p > 25.0 && p < 30.0, "{p}");
        assert!(!on_report(&between, false, 30.0, 25.0).flapping);
        assert!(on_report(&between, true, 30.0, 25.0).flapping);
        assert_eq!(on_report(&between, true, 30.0, 25.0).event, None);
    }

    #[test]
    fn start_and_stop_are_told_once_with_the_spec_texts() {
        let mut history = FlapHistory::new();
        let mut flapping = false;
        let mut told = Vec::new();
        // OK/FAIL alternating, then OK for a long while. The 7th report
        // makes 6 changes in the 6 newest places: 35.5 %, the first ≥ 30
        // (after 6 reports: 29.9 %).
        let reports = (0..12)
            .map(|i| if i % 2 == 0 { OK } else { Fail })
            .chain(std::iter::repeat_n(OK, 30));
        for state in reports {
            history = history.push(state);
            let f = on_report(&history.states(), flapping, 30.0, 25.0);
            if let Some(e) = f.event {
                told.push(format!(
                    "[{}/{}] {} ({})",
                    e.channel, e.event, e.message, e.severity
                ));
            }
            flapping = f.flapping;
        }
        assert_eq!(
            told,
            [
                "[service:flapping/start] Flapping: 36% state changes (FAIL)",
                "[service:flapping/stop] Stopped flapping (OK)",
            ]
        );
        assert!(!flapping);
    }

    #[test]
    fn a_history_packs_into_a_number_and_keeps_21_states() {
        let mut h = FlapHistory::new();
        assert!(h.is_empty());
        for i in 0..30 {
            h = h.push(State::ALL[i % 4]);
        }
        assert_eq!(h.len(), 21);
        let expected: Vec<State> = (9..30).map(|i| State::ALL[i % 4]).collect();
        assert_eq!(h.states(), expected);
        assert_eq!(FlapHistory::from_u64(h.as_u64()), h);
        assert!(h.as_u64() < 1 << 63, "fits a signed 64-bit column");
        let junk = FlapHistory::from_u64(u64::MAX);
        assert_eq!(junk.len(), 21);
        assert_eq!(junk.states(), vec![Unk; 21]);
        assert_eq!(FlapHistory::from_u64(0), FlapHistory::new());
    }
}
