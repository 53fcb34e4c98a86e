//! Routing: which alerts an alert plugin gets, from the keys of its
//! `[alert:NAME]` section.
//!
//! Routing comes first: each plugin groups, silences and reminds over the
//! alerts routed to it.

use crate::error::{Error, Result};
use crate::notification::Notification;
use crate::rules::{
    ACK_CHANNEL, API_ALERT, FLAPPING_CHANNEL, PLUGIN_CHANNEL, PLUGIN_FAILED, REMINDER_CHANNEL,
    STATE_CHANNEL,
};
use crate::state::State;

use super::silence::{check_pattern, glob};

/// A kind of alert, as `events =` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `service:state/<STATE>`.
    State,
    /// `plugin/offline`.
    Offline,
    /// `plugin/online`.
    Online,
    /// `api/alert`.
    Api,
    /// `service:flapping/start` and `/stop`.
    Flapping,
    /// `service:ack`.
    Ack,
    /// `service:reminder/<STATE>`.
    Reminder,
    /// `alert-plugin/failed`: an alert plugin failed.
    Plugin,
}

impl EventKind {
    /// All kinds, in the order the docs list them.
    pub const ALL: [EventKind; 8] = [
        EventKind::State,
        EventKind::Offline,
        EventKind::Online,
        EventKind::Api,
        EventKind::Flapping,
        EventKind::Ack,
        EventKind::Reminder,
        EventKind::Plugin,
    ];

    /// The name in `events =`: `state`, `offline`, `online`, `api`,
    /// `flapping`, `ack`, `reminder`, `plugin`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::State => "state",
            EventKind::Offline => "offline",
            EventKind::Online => "online",
            EventKind::Api => "api",
            EventKind::Flapping => "flapping",
            EventKind::Ack => "ack",
            EventKind::Reminder => "reminder",
            EventKind::Plugin => "plugin",
        }
    }

    /// The kind named `name` (case-insensitive).
    pub fn parse(name: &str) -> Option<EventKind> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// The kind of an alert's channel and event; `None` for one overc does
    /// not raise, which only a plugin without `events =` gets.
    pub fn of(channel: &str, event: &str) -> Option<EventKind> {
        Some(match (channel, event) {
            (STATE_CHANNEL, _) => EventKind::State,
            (PLUGIN_CHANNEL, "offline") => EventKind::Offline,
            (PLUGIN_CHANNEL, "online") => EventKind::Online,
            (FLAPPING_CHANNEL, _) => EventKind::Flapping,
            (ACK_CHANNEL, _) => EventKind::Ack,
            (REMINDER_CHANNEL, _) => EventKind::Reminder,
            c if c == API_ALERT => EventKind::Api,
            c if c == PLUGIN_FAILED => EventKind::Plugin,
            _ => return None,
        })
    }
}

/// Which alerts a plugin gets. Each `None` means all (the key left out);
/// the default routes everything, as OverC 1.0.9 did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    /// `severities = WARN, FAIL, UNK`: the alert's severity is one of them.
    pub severities: Option<Vec<State>>,
    /// `servers = web*, db?`: the alert's server matches one pattern.
    pub servers: Option<Vec<String>>,
    /// `services = nginx, disk*`: the alert's service matches one pattern;
    /// an alert about a server itself (no service) does not.
    pub services: Option<Vec<String>>,
    /// `events = state, offline, …`: the alert is of one of these kinds.
    pub events: Option<Vec<EventKind>>,
}

/// The items of a list value: separated by commas, and by spaces too for
/// words (states, kinds) but not for patterns (names may hold spaces).
fn items(text: &str, spaces_separate: bool) -> Vec<String> {
    text.split(|c: char| c == ',' || (spaces_separate && c.is_whitespace()))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn empty(key: &str) -> Error {
    Error::Config(format!("{key}: empty; leave {key} out for all"))
}

impl Route {
    /// Parses the four keys of an `[alert:NAME]` section, each `None` when
    /// left out.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key and the value that is wrong, e.g.
    /// `severities: "CRIT" is not a state (OK, WARN, FAIL, UNK)`.
    pub fn parse(
        severities: Option<&str>,
        servers: Option<&str>,
        services: Option<&str>,
        events: Option<&str>,
    ) -> Result<Route> {
        Ok(Route {
            severities: severities.map(parse_severities).transpose()?,
            servers: servers.map(|t| parse_patterns("servers", t)).transpose()?,
            services: services
                .map(|t| parse_patterns("services", t))
                .transpose()?,
            events: events.map(parse_events).transpose()?,
        })
    }

    /// Whether the plugin gets `alert`:
    ///
    /// - its severity is one of `severities`;
    /// - its server matches one of `servers` and its service one of
    ///   `services` (an alert about the server itself matches no service
    ///   pattern). overc's own alerts (no server: an alert plugin failed)
    ///   are about no host, so the patterns do not apply to them;
    /// - its kind is one of `events`.
    ///
    /// A plugin is never sent the news of its own failure either:
    /// [`rules::routes_to`](crate::rules::routes_to).
    pub fn routes(&self, alert: &Notification) -> bool {
        let severity = match &self.severities {
            None => true,
            Some(list) => State::parse(&alert.severity).is_some_and(|s| list.contains(&s)),
        };
        severity && self.routes_whatever_severity(alert)
    }

    fn routes_whatever_severity(&self, alert: &Notification) -> bool {
        let any = |patterns: &Option<Vec<String>>, name: Option<&str>| match (patterns, name) {
            (None, _) => true,
            (Some(p), Some(name)) => p.iter().any(|p| glob(p, name)),
            (Some(_), None) => false,
        };
        let names = alert.server.is_none()
            || (any(&self.servers, alert.server.as_deref())
                && any(&self.services, alert.service.as_deref()));
        let kind = match &self.events {
            None => true,
            Some(list) => {
                EventKind::of(&alert.channel, &alert.event).is_some_and(|k| list.contains(&k))
            }
        };
        names && kind
    }
}

/// Whether `route` sends `alert` to its plugin: [`Route::routes`].
pub fn routes(route: &Route, alert: &Notification) -> bool {
    route.routes(alert)
}

/// Whether an alert ends a problem: a change to OK (`service:state/OK`),
/// `plugin/online`, or `service:flapping/stop`. A change from one problem
/// state to another (FAIL to WARN) is not one; it is routed by its own
/// severity.
pub fn is_recovery(alert: &Notification) -> bool {
    matches!(
        (alert.channel.as_str(), alert.event.as_str()),
        (STATE_CHANNEL, "OK") | (PLUGIN_CHANNEL, "online") | (FLAPPING_CHANNEL, "stop")
    )
}

/// Routing with the recovery rule: a recovery goes to every plugin that was
/// sent the problem it ends (`got_problem`: this plugin was sent an alert
/// of the problem the recovery ends), whatever its severities; its other
/// keys still apply. Anything else is [`Route::routes`].
pub fn routes_recovery(route: &Route, alert: &Notification, got_problem: bool) -> bool {
    route.routes(alert)
        || (got_problem && is_recovery(alert) && route.routes_whatever_severity(alert))
}

/// Parses `severities = WARN, FAIL, UNK`: state names, any case (`ERR` for
/// FAIL), separated by commas or spaces.
///
/// # Errors
/// [`Error::Config`] naming the key and the word that is not a state, or
/// saying the list is empty.
pub fn parse_severities(text: &str) -> Result<Vec<State>> {
    let words = items(text, true);
    if words.is_empty() {
        return Err(empty("severities"));
    }
    words
        .iter()
        .map(|w| {
            State::parse(w).ok_or_else(|| {
                Error::Config(format!(
                    "severities: {w:?} is not a state (OK, WARN, FAIL, UNK)"
                ))
            })
        })
        .collect()
}

/// Parses `servers = web*, db?` or `services = …` (named `key` in errors):
/// glob patterns ([`glob`](super::glob)) separated by commas, spaces
/// around them trimmed.
///
/// # Errors
/// [`Error::Config`] naming the key, for an empty list or a pattern with
/// control characters.
pub fn parse_patterns(key: &str, text: &str) -> Result<Vec<String>> {
    let patterns = items(text, false);
    if patterns.is_empty() {
        return Err(empty(key));
    }
    for p in &patterns {
        check_pattern(p).map_err(|why| Error::Config(format!("{key}: {p:?} {why}")))?;
    }
    Ok(patterns)
}

/// Parses `events = state, offline, online, api, flapping, ack, reminder,
/// plugin`: any of these names, separated by commas or spaces.
///
/// # Errors
/// [`Error::Config`] naming the word that is not a kind, with the list of
/// kinds, or saying the list is empty.
pub fn parse_events(text: &str) -> Result<Vec<EventKind>> {
    let words = items(text, true);
    if words.is_empty() {
        return Err(empty("events"));
    }
    words
        .iter()
        .map(|w| {
            EventKind::parse(w).ok_or_else(|| {
                let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                Error::Config(format!(
                    "events: {w:?} is not an event kind ({})",
                    all.join(", ")
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(
        server: Option<&str>,
        service: Option<&str>,
        channel: &str,
        event: &str,
        severity: &str,
    ) -> Notification {
        Notification {
            server: server.map(Into::into),
            service: service.map(Into::into),
            channel: channel.into(),
            event: event.into(),
            severity: severity.into(),
            ..Notification::default()
        }
    }

    fn state(server: &str, service: &str, to: &str) -> Notification {
        alert(Some(server), Some(service), "service:state", to, to)
    }

    fn err(r: Result<Route>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn the_default_routes_everything() {
        let r = Route::default();
        assert!(r.routes(&state("web1", "disk", "OK")));
        assert!(routes(
            &r,
            &alert(None, None, "alert-plugin", "failed", "FAIL")
        ));
        assert!(r.routes(&alert(Some("a"), None, "what", "ever", "??")));
        assert_eq!(Route::parse(None, None, None, None).unwrap(), r);
    }

    #[test]
    fn parses_the_keys_as_the_spec_writes_them() {
        let r = Route::parse(
            Some("WARN, FAIL, UNK"),
            Some("web*, db?"),
            Some("nginx , disk*"),
            Some("state, offline, online, api, flapping, ack, reminder, plugin"),
        )
        .unwrap();
        assert_eq!(
            r.severities,
            Some(vec![State::Warn, State::Fail, State::Unk])
        );
        assert_eq!(r.servers, Some(vec!["web*".into(), "db?".into()]));
        assert_eq!(r.services, Some(vec!["nginx".into(), "disk*".into()]));
        assert_eq!(r.events, Some(EventKind::ALL.to_vec()));
        // Spaces alone separate states and kinds; case does not matter.
        assert_eq!(
            parse_severities("fail unk").unwrap(),
            vec![State::Fail, State::Unk]
        );
        assert_eq!(parse_severities("err").unwrap(), vec![State::Fail]);
        assert_eq!(
            parse_events("STATE offline").unwrap(),
            vec![EventKind::State, EventKind::Offline]
        );
        // A pattern may hold a space: only commas separate patterns.
        assert_eq!(
            parse_patterns("services", "disk /var").unwrap(),
            vec!["disk /var".to_owned()]
        );
    }

    #[test]
    fn bad_keys_say_which_and_what() {
        assert_eq!(
            err(Route::parse(Some("WARN, CRIT"), None, None, None)),
            "config: severities: \"CRIT\" is not a state (OK, WARN, FAIL, UNK)"
        );
        assert_eq!(
            err(Route::parse(None, None, None, Some("state, recovery"))),
            "config: events: \"recovery\" is not an event kind (state, offline, online, api, flapping, ack, reminder, plugin)"
        );
        assert_eq!(
            err(Route::parse(None, Some(" , "), None, None)),
            "config: servers: empty; leave servers out for all"
        );
        assert_eq!(
            err(Route::parse(Some(""), None, None, None)),
            "config: severities: empty; leave severities out for all"
        );
        assert!(err(Route::parse(None, None, Some(""), None)).contains("services: empty"));
        assert!(err(Route::parse(None, None, None, Some(","))).contains("events: empty"));
        assert!(err(Route::parse(None, None, Some("a\u{7}b"), None)).contains("control"));
    }

    #[test]
    fn each_key_filters() {
        let pager = Route::parse(Some("FAIL, UNK"), Some("web*, db?"), None, None).unwrap();
        assert!(pager.routes(&state("web1", "disk", "FAIL")));
        assert!(!pager.routes(&state("web1", "disk", "WARN")));
        assert!(pager.routes(&state("db1", "pg", "UNK")));
        assert!(!pager.routes(&state("db12", "pg", "UNK")));
        assert!(!pager.routes(&state("mail", "pg", "FAIL")));
        let bad = Notification {
            severity: "??".into(),
            ..state("web1", "disk", "FAIL")
        };
        assert!(
            !pager.routes(&bad),
            "an unknown severity is none of the list"
        );

        let disks = Route::parse(None, None, Some("disk*"), Some("state, reminder")).unwrap();
        assert!(disks.routes(&state("any", "disk-root", "WARN")));
        assert!(!disks.routes(&state("any", "nginx", "WARN")));
        assert!(disks.routes(&alert(
            Some("a"),
            Some("disk"),
            "service:reminder",
            "FAIL",
            "FAIL"
        )));
        assert!(!disks.routes(&alert(Some("a"), Some("disk"), "plugin", "offline", "FAIL")));
        // An alert about the server itself has no service to match.
        assert!(!disks.routes(&alert(Some("a"), None, "service:state", "FAIL", "FAIL")));
        let api = Route::parse(None, None, None, Some("api")).unwrap();
        assert!(api.routes(&alert(Some("a"), None, "api", "alert", "FAIL")));
        assert!(
            !api.routes(&alert(Some("a"), None, "what", "ever", "FAIL")),
            "unknown kinds"
        );
    }

    #[test]
    fn overc_own_alerts_ignore_the_name_patterns() {
        let r = Route::parse(Some("FAIL"), Some("web*"), Some("disk"), Some("plugin")).unwrap();
        let failed = alert(None, None, "alert-plugin", "failed", "FAIL");
        assert!(r.routes(&failed));
        let r = Route::parse(Some("FAIL"), Some("web*"), None, Some("state")).unwrap();
        assert!(!r.routes(&failed), "events still apply");
    }

    #[test]
    fn kinds_of_every_channel() {
        let kind = |c, e| EventKind::of(c, e);
        assert_eq!(kind("service:state", "WARN"), Some(EventKind::State));
        assert_eq!(kind("plugin", "offline"), Some(EventKind::Offline));
        assert_eq!(kind("plugin", "online"), Some(EventKind::Online));
        assert_eq!(kind("api", "alert"), Some(EventKind::Api));
        assert_eq!(kind("service:flapping", "stop"), Some(EventKind::Flapping));
        assert_eq!(kind("service:ack", ""), Some(EventKind::Ack));
        assert_eq!(
            kind("service:reminder", "offline"),
            Some(EventKind::Reminder)
        );
        assert_eq!(kind("alert-plugin", "failed"), Some(EventKind::Plugin));
        assert_eq!(kind("plugin", "other"), None);
    }

    #[test]
    fn a_recovery_goes_to_whoever_got_the_problem() {
        let pager = Route::parse(
            Some("FAIL, UNK"),
            Some("web*"),
            None,
            Some("state, online, flapping"),
        )
        .unwrap();
        let ok = state("web1", "disk", "OK");
        assert!(is_recovery(&ok));
        assert!(!pager.routes(&ok));
        assert!(routes_recovery(&pager, &ok, true));
        assert!(
            !routes_recovery(&pager, &ok, false),
            "it never heard of the problem"
        );
        let online = alert(Some("web1"), Some("disk"), "plugin", "online", "OK");
        assert!(routes_recovery(&pager, &online, true));
        let stop = alert(Some("web1"), Some("disk"), "service:flapping", "stop", "OK");
        assert!(routes_recovery(&pager, &stop, true));
        // The other keys still hold.
        assert!(!routes_recovery(&pager, &state("db1", "disk", "OK"), true));
        let no_online = Route::parse(Some("FAIL"), None, None, Some("state, offline")).unwrap();
        assert!(!routes_recovery(&no_online, &online, true));
        // FAIL -> WARN ends no problem: its own severity decides.
        let warn = state("web1", "disk", "WARN");
        assert!(!is_recovery(&warn));
        assert!(!routes_recovery(&pager, &warn, true));
        // Anything routed anyway stays routed.
        assert!(routes_recovery(
            &pager,
            &state("web1", "disk", "FAIL"),
            false
        ));
    }
}
