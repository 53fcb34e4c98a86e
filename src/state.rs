//! Service states, their severity order and the Nagios exit-code mapping.

use std::fmt;

/// The state of a service, ordered by severity: `Ok < Warn < Fail < Unk`.
/// The default is `Unk`: nothing is known of a service until it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum State {
    /// Everything is fine.
    Ok,
    /// Something needs attention soon.
    Warn,
    /// Critical: something is broken.
    Fail,
    /// The check could not tell.
    #[default]
    Unk,
}

impl State {
    /// All states in severity order.
    pub const ALL: [State; 4] = [State::Ok, State::Warn, State::Fail, State::Unk];

    /// The upper-case wire name (`OK`, `WARN`, `FAIL`, `UNK`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warn => "WARN",
            State::Fail => "FAIL",
            State::Unk => "UNK",
        }
    }

    /// Parses a wire name case-insensitively; `ERR` is an alias of `FAIL`.
    /// Returns `None` for anything else.
    pub fn parse(s: &str) -> Option<State> {
        let s = s.trim();
        for (name, state) in [
            ("OK", State::Ok),
            ("WARN", State::Warn),
            ("FAIL", State::Fail),
            ("ERR", State::Fail),
            ("UNK", State::Unk),
        ] {
            if s.eq_ignore_ascii_case(name) {
                return Some(state);
            }
        }
        None
    }

    /// Parses a state as a person may type it: a wire name (see
    /// [`State::parse`]), a Nagios name (`CRITICAL`, `WARNING`, `UNKNOWN`),
    /// case-insensitively, or a Nagios exit code `0` to `3`. For command
    /// lines; the server keeps to [`State::parse`].
    pub fn parse_nagios(s: &str) -> Option<State> {
        let s = s.trim();
        for (name, state) in [
            ("CRITICAL", State::Fail),
            ("WARNING", State::Warn),
            ("UNKNOWN", State::Unk),
        ] {
            if s.eq_ignore_ascii_case(name) {
                return Some(state);
            }
        }
        match s {
            "0" | "1" | "2" | "3" => s.parse().ok().map(|c| State::from_exit_code(Some(c))),
            _ => State::parse(s),
        }
    }

    /// Maps a Nagios plugin exit code: 0 OK, 1 WARN, 2 FAIL, anything else UNK.
    pub fn from_exit_code(code: Option<i32>) -> State {
        match code {
            Some(0) => State::Ok,
            Some(1) => State::Warn,
            Some(2) => State::Fail,
            _ => State::Unk,
        }
    }

    /// The Nagios exit code of this state (0..=3).
    pub fn exit_code(self) -> i32 {
        self as i32
    }

    /// Rank in the Nagios order of badness, used to pick the worst of
    /// several plugin results: OK < WARN < UNK < FAIL. A plugin that could
    /// not tell is less bad than one that saw a failure; this differs from
    /// the `Ord` of `State`, where UNK comes last.
    pub fn nagios_rank(self) -> u8 {
        match self {
            State::Ok => 0,
            State::Warn => 1,
            State::Unk => 2,
            State::Fail => 3,
        }
    }

    /// Numeric value used by metrics: 0 OK, 1 WARN, 2 FAIL, 3 UNK.
    pub fn value(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_with_err_alias() {
        assert_eq!(State::parse("ok"), Some(State::Ok));
        assert_eq!(State::parse("Warn"), Some(State::Warn));
        assert_eq!(State::parse("err"), Some(State::Fail));
        assert_eq!(State::parse("FAIL"), Some(State::Fail));
        assert_eq!(State::parse("unk"), Some(State::Unk));
        assert_eq!(State::parse("BULLSHIT"), None);
        assert_eq!(State::parse(""), None);
    }

    #[test]
    fn nagios_names_and_codes_for_people() {
        assert_eq!(State::parse_nagios("critical"), Some(State::Fail));
        assert_eq!(State::parse_nagios("WARNING"), Some(State::Warn));
        assert_eq!(State::parse_nagios("Unknown"), Some(State::Unk));
        assert_eq!(State::parse_nagios("err"), Some(State::Fail));
        assert_eq!(State::parse_nagios("ok"), Some(State::Ok));
        for (code, state) in ["0", "1", "2", "3"].iter().zip(State::ALL) {
            assert_eq!(State::parse_nagios(code), Some(state));
        }
        for bad in ["4", "-1", "CRIT", "03", ""] {
            assert_eq!(State::parse_nagios(bad), None, "{bad}");
        }
        assert_eq!(State::parse("CRITICAL"), None, "not on the wire");
    }

    #[test]
    fn severity_order_and_exit_codes() {
        assert!(State::Ok < State::Warn && State::Warn < State::Fail && State::Fail < State::Unk);
        assert_eq!(State::from_exit_code(Some(0)), State::Ok);
        assert_eq!(State::from_exit_code(Some(1)), State::Warn);
        assert_eq!(State::from_exit_code(Some(2)), State::Fail);
        assert_eq!(State::from_exit_code(Some(3)), State::Unk);
        assert_eq!(State::from_exit_code(Some(42)), State::Unk);
        assert_eq!(State::from_exit_code(None), State::Unk);
    }
}
