//! Silences (maintenance): what matches an active silence is recorded,
//! marked `silenced`, and not notified; when the silence ends, what is
//! still broken is told once.

use std::borrow::Cow;

use crate::clock::Millis;
use crate::protocol::is_control_or_format;
use crate::rules::{Event, PLUGIN_CHANNEL, STATE_CHANNEL};

use super::problem::Problem;

/// Longest accepted pattern, in characters.
pub const MAX_PATTERN_CHARS: usize = 256;

/// Whether `name` matches the glob `pattern`: `*` stands for any run of
/// characters (none included), `?` for exactly one character, `\` makes
/// the next character literal (`\*`, `\?`, `\\`); anything else matches
/// itself, case-sensitively, as names are compared everywhere.
pub fn glob(pattern: &str, name: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Token {
        Any,
        One,
        Char(char),
    }
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '*' => Token::Any,
            '?' => Token::One,
            '\\' => Token::Char(chars.next().unwrap_or('\\')),
            c => Token::Char(c),
        });
    }
    let name: Vec<char> = name.chars().collect();
    // Iterative matching with one backtrack point (the last `*`): linear
    // in practice, never exponential.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(p) {
            Some(Token::Any) => {
                star = Some((p, n));
                p += 1;
            }
            Some(Token::One) => {
                p += 1;
                n += 1;
            }
            Some(Token::Char(c)) if *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|t| *t == Token::Any)
}

/// A name as a pattern that matches only itself: `*`, `?` and `\` escaped.
/// For a silence a host sets with its own key, which must not reach a host
/// whose name merely matches its name as a pattern.
pub fn glob_escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Checks a server or service pattern as a person typed it: 1 to 256
/// characters, no control or format characters (as names).
///
/// # Errors
/// Why not, for the caller to prefix with the field or key.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let n = pattern.chars().count();
    if n == 0 {
        return Err("should not be empty (use * for all)".into());
    }
    if n > MAX_PATTERN_CHARS {
        return Err(format!(
            "should be at most {MAX_PATTERN_CHARS} characters long"
        ));
    }
    if pattern.chars().any(is_control_or_format) {
        return Err("should not contain control or format characters".into());
    }
    Ok(())
}

/// A silence: from `starts` to `ends`, events about the servers matching
/// `server` (and, when given, their services matching `service`) are
/// recorded, marked `silenced`, and not notified.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Silence {
    /// Its id (`{"ok": 1, "id": N}`).
    pub id: i64,
    /// Server name pattern ([`glob`]).
    pub server: String,
    /// Service name pattern; `None` silences the whole server, its own
    /// events included.
    pub service: Option<String>,
    /// When it starts (unix ms).
    pub starts: Millis,
    /// When it ends (unix ms), excluded.
    pub ends: Millis,
    /// Why, as its author wrote it.
    pub comment: String,
    /// Who set it: a page user, or `host:<name>` for a host's own key.
    pub author: String,
}

impl Silence {
    /// Whether it holds at `now`: `starts <= now < ends`.
    pub fn is_active(&self, now: Millis) -> bool {
        self.starts <= now && now < self.ends
    }

    /// Whether `GET /ui/api/silences` lists it at `now`: active, to start,
    /// or ended within the last 24 hours.
    pub fn is_listed(&self, now: Millis) -> bool {
        self.ends > now.saturating_sub(24 * 3_600_000)
    }

    /// Whether an event about `server` (and `service`, `None` for the
    /// server's own events) falls under its patterns, whatever the time. A
    /// server-level event matches only a silence without a service pattern:
    /// silencing `web1`'s `disk` does not silence `web1` itself.
    pub fn matches(&self, server: &str, service: Option<&str>) -> bool {
        glob(&self.server, server)
            && match (&self.service, service) {
                (None, _) => true,
                (Some(pattern), Some(name)) => glob(pattern, name),
                (Some(_), None) => false,
            }
    }

    /// Whether it silences an event about `server`/`service` at `now`.
    pub fn silences(&self, server: &str, service: Option<&str>, now: Millis) -> bool {
        self.is_active(now) && self.matches(server, service)
    }
}

/// The first of `silences` that silences an event about `server`/`service`
/// at `now` (for the event's `silenced` mark), if any.
pub fn silenced_by<'a>(
    silences: &'a [Silence],
    server: &str,
    service: Option<&str>,
    now: Millis,
) -> Option<&'a Silence> {
    silences.iter().find(|s| s.silences(server, service, now))
}

/// A service that is still in a hard problem or overdue and whose change
/// into it was silenced: nobody was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntoldProblem {
    /// The caller's id of the service.
    pub service_id: i64,
    /// Its server's name.
    pub server: String,
    /// Its name.
    pub service: String,
    /// What is wrong now.
    pub problem: Problem,
}

/// What to notify when the silence `ended` ends (expired at its `ends`, or
/// removed at `now`): one event for each of `untold` that it matches and
/// that no other of `silences` still silences at `now`. The events use
/// the channels of the problem, so routing and old plugins treat them as
/// the change they stand for, with the current state (the caller adds the
/// `Current:` line as for any alert):
///
/// - a hard problem: `[service:state/<STATE>] Silence ended: still <STATE>`,
///   severity the state;
/// - overdue: `[plugin/offline] Silence ended: monitoring plugin still
///   offline`, severity FAIL.
pub fn on_silence_end<'a>(
    ended: &Silence,
    silences: &[Silence],
    untold: &'a [UntoldProblem],
    now: Millis,
) -> Vec<(&'a UntoldProblem, Event)> {
    untold
        .iter()
        .filter(|u| ended.matches(&u.server, Some(&u.service)))
        .filter(|u| {
            !silences
                .iter()
                .any(|s| s.id != ended.id && s.silences(&u.server, Some(&u.service), now))
        })
        .map(|u| (u, silence_ended_event(u.problem)))
        .collect()
}

/// The event [`on_silence_end`] raises for a service still in `problem`.
pub fn silence_ended_event(problem: Problem) -> Event {
    match problem {
        Problem::State(state) => Event {
            channel: STATE_CHANNEL,
            event: state.as_str(),
            message: Cow::Owned(format!("Silence ended: still {state}")),
            severity: state,
        },
        Problem::Offline => Event {
            channel: PLUGIN_CHANNEL,
            event: "offline",
            message: Cow::Borrowed("Silence ended: monitoring plugin still offline"),
            severity: problem.severity(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::State;

    #[test]
    fn glob_stars_and_question_marks() {
        assert!(glob("web*", "web1"));
        assert!(glob("web*", "web"));
        assert!(!glob("web*", "db1"));
        assert!(glob("db?", "db1"));
        assert!(!glob("db?", "db"));
        assert!(!glob("db?", "db12"));
        assert!(glob("*", ""));
        assert!(glob("*", "anything at all"));
        assert!(glob("*-prod-*", "eu-prod-web"));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob("a*b*c", "aXbYbZ"));
        assert!(glob("??", "éü"), "? is one character, not one byte");
        assert!(!glob("Web*", "web1"), "case-sensitive");
        assert!(!glob("", "web1"));
        assert!(glob("", ""));
        assert!(glob("web1", "web1"));
        assert!(!glob("web1", "web10"));
        // Never exponential: many stars against a long non-match.
        let long = "a".repeat(2_000);
        assert!(!glob(&format!("{}b", "*a".repeat(50)), &long));
    }

    #[test]
    fn escaped_names_match_only_themselves() {
        assert!(glob(r"web\*", "web*"));
        assert!(!glob(r"web\*", "web1"));
        assert!(glob(r"a\\b", r"a\b"));
        assert!(glob("a\\", "a\\"), "a trailing backslash is itself");
        for name in ["web*", "db?", r"x\y", "plain", "*"] {
            let p = glob_escape(name);
            assert!(glob(&p, name), "{p}");
        }
        assert!(!glob(&glob_escape("web*"), "web1"));
        assert!(!glob(&glob_escape("?"), "x"));
    }

    #[test]
    fn patterns_are_checked_like_names() {
        assert!(check_pattern("web*").is_ok());
        assert_eq!(
            check_pattern(""),
            Err("should not be empty (use * for all)".into())
        );
        assert!(check_pattern(&"*".repeat(257)).is_err());
        assert!(check_pattern(&"*".repeat(256)).is_ok());
        assert!(check_pattern("web\u{200b}1").is_err());
        assert!(check_pattern("web\n").is_err());
    }

    fn silence(server: &str, service: Option<&str>) -> Silence {
        Silence {
            id: 1,
            server: server.into(),
            service: service.map(Into::into),
            starts: 1_000,
            ends: 2_000,
            comment: "kernel update".into(),
            author: "host:web1".into(),
        }
    }

    #[test]
    fn a_silence_holds_from_its_start_to_before_its_end() {
        let s = silence("web1", None);
        assert!(!s.is_active(999));
        assert!(s.is_active(1_000));
        assert!(s.is_active(1_999));
        assert!(!s.is_active(2_000));
        assert!(s.is_listed(2_000 + 24 * 3_600_000 - 1));
        assert!(!s.is_listed(2_000 + 24 * 3_600_000));
        assert!(s.is_listed(0), "one to come is listed");
    }

    #[test]
    fn server_level_events_match_only_silences_without_a_service() {
        let whole = silence("web*", None);
        assert!(whole.matches("web1", None));
        assert!(whole.matches("web1", Some("disk")));
        assert!(!whole.matches("db1", Some("disk")));
        let disk = silence("web*", Some("disk*"));
        assert!(disk.matches("web1", Some("disk")));
        assert!(disk.matches("web1", Some("disk-root")));
        assert!(!disk.matches("web1", Some("nginx")));
        assert!(
            !disk.matches("web1", None),
            "the server's own events are not the disk's"
        );
        assert!(disk.silences("web2", Some("disk"), 1_500));
        assert!(!disk.silences("web2", Some("disk"), 2_500));
        let list = [silence("db*", None), whole.clone()];
        assert_eq!(silenced_by(&list, "web1", None, 1_500), Some(&list[1]));
        assert_eq!(silenced_by(&list, "web1", None, 500), None);
        assert_eq!(silenced_by(&[], "web1", None, 1_500), None);
    }

    #[test]
    fn when_a_silence_ends_what_is_still_broken_is_told_once() {
        let ended = silence("web1", None);
        let untold = [
            UntoldProblem {
                service_id: 10,
                server: "web1".into(),
                service: "disk".into(),
                problem: Problem::State(State::Fail),
            },
            UntoldProblem {
                service_id: 11,
                server: "web1".into(),
                service: "nginx".into(),
                problem: Problem::Offline,
            },
            UntoldProblem {
                service_id: 12,
                server: "db1".into(),
                service: "pg".into(),
                problem: Problem::State(State::Warn),
            },
            UntoldProblem {
                service_id: 13,
                server: "web1".into(),
                service: "backup".into(),
                problem: Problem::State(State::Unk),
            },
        ];
        // Another silence still holds web1's backup.
        let other = Silence {
            id: 2,
            service: Some("backup".into()),
            ends: 9_000,
            ..silence("web1", None)
        };
        let told: Vec<String> = on_silence_end(&ended, &[ended.clone(), other], &untold, 2_000)
            .into_iter()
            .map(|(u, e)| {
                format!(
                    "{} [{}/{}] {} ({})",
                    u.service_id, e.channel, e.event, e.message, e.severity
                )
            })
            .collect();
        assert_eq!(
            told,
            [
                "10 [service:state/FAIL] Silence ended: still FAIL (FAIL)",
                "11 [plugin/offline] Silence ended: monitoring plugin still offline (FAIL)",
            ]
        );
        // Removed early (still active by its times), no other silence: all
        // three of web1's.
        assert_eq!(
            on_silence_end(&ended, std::slice::from_ref(&ended), &untold, 1_500).len(),
            3
        );
    }
}
