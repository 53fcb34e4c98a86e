//! Grouping: the alerts about one server raised within `group-wait` of its
//! first one reach a plugin as one notification.
//!
//! Routing comes first: the caller groups, per plugin, the alerts routed to
//! that plugin. overc's own alerts (no server) are not grouped.

use crate::clock::Millis;
use crate::notification::Notification;
use crate::rules::{CATEGORIES, GROUP_CHANNEL, PLUGIN_CHANNEL, category};
use crate::state::State;

/// When the window opened by a server's first alert at `first` closes,
/// with `group-wait` seconds: the group is sent then, and holds the
/// alerts raised before it (`first <= ctime < end`). With `group-wait = 0`
/// the window closes at once and every alert goes alone.
pub fn window_end(first: Millis, group_wait_s: u64) -> Millis {
    let wait = i64::try_from(group_wait_s)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000);
    first.saturating_add(wait)
}

/// Several alerts about one server sent as one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The group as one alert: its server, channel `group`, event `alerts`
    /// (or `offline` when all the server's services went overdue), the
    /// summary line as message, the worst severity, the first member's id
    /// and time, no service and no state.
    pub head: Notification,
    /// The alerts, in the order given (oldest first).
    pub members: Vec<Notification>,
}

impl Group {
    /// The members' ids, comma-separated: `OVERC_ALERT_ID`.
    pub fn ids(&self) -> String {
        let ids: Vec<String> = self.members.iter().map(|m| m.id.to_string()).collect();
        ids.join(",")
    }

    /// The text a plugin gets on stdin: the summary line, an empty line,
    /// then each member's [`Notification::text`], one after the other.
    pub fn text(&self) -> String {
        let mut text = self.head.message.clone();
        text.push('\n');
        for m in &self.members {
            text.push('\n');
            text.push_str(&m.text());
        }
        text
    }

    /// The `OVERC_*` variables: those of [`head`](Group::head)
    /// (`OVERC_CHANNEL=group`, `OVERC_SEVERITY` the worst, `OVERC_MESSAGE`
    /// the summary line, `OVERC_SERVICE`, `OVERC_STATE` and `OVERC_INFO`
    /// empty), with `OVERC_ALERT_ID` the members' ids comma-separated and
    /// `OVERC_COUNT` their number.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.head.env();
        for (k, v) in &mut env {
            if k == "OVERC_ALERT_ID" {
                *v = self.ids();
            }
        }
        env.push(("OVERC_COUNT".into(), self.members.len().to_string()));
        env
    }
}

impl From<Group> for Notification {
    /// The group as one notification whose [`Notification::text`] and
    /// [`Notification::env`] are the group's.
    fn from(group: Group) -> Notification {
        Notification {
            members: group.members,
            ..group.head
        }
    }
}

/// What a window of alerts is sent as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouped {
    /// One alert: sent alone, exactly as without grouping.
    Single(Notification),
    /// Two or more.
    Group(Group),
}

/// The worst of the alerts' severities by [`State`]'s order, the one of the
/// worst-of roll-ups (SPEC §2: OK < WARN < FAIL < UNK); a severity that is
/// not a state name is skipped. UNK for none.
pub fn worst_severity(alerts: &[Notification]) -> State {
    alerts
        .iter()
        .filter_map(|a| State::parse(&a.severity))
        .max()
        .unwrap_or_default()
}

fn is_offline(a: &Notification) -> bool {
    a.channel == PLUGIN_CHANNEL && a.event == "offline"
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The summary line of `alerts` about `server`, which has `services`
/// services that can go overdue:
///
/// - `<server>: server offline (<N> services overdue)` when the alerts
///   include an offline event for each of them (and there is at least one);
/// - else `<server>: <N> alerts: <k> offline, <m> state changes, …`, one
///   count per category of [`rules::category`](crate::rules::category), in
///   the order of [`CATEGORIES`], those with none left out.
pub fn summary(server: &str, alerts: &[Notification], services: usize) -> String {
    let offline = alerts.iter().filter(|a| is_offline(a)).count();
    if services > 0 && offline >= services {
        return format!(
            "{server}: server offline ({} overdue)",
            plural(offline, "service", "services")
        );
    }
    let mut counts = [0usize; CATEGORIES.len()];
    for a in alerts {
        counts[category(&a.channel, &a.event)] += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .zip(CATEGORIES)
        .filter(|(n, _)| **n > 0)
        .map(|(n, c)| plural(*n, c.one, c.many))
        .collect();
    format!(
        "{server}: {}: {}",
        plural(alerts.len(), "alert", "alerts"),
        parts.join(", ")
    )
}

/// Builds what the alerts about `server` raised in one window are sent as,
/// `services` being how many of its services can go overdue (for the
/// "server offline" summary). `None` for no alerts; a single alert is
/// returned unchanged.
pub fn group(server: &str, mut alerts: Vec<Notification>, services: usize) -> Option<Grouped> {
    match alerts.len() {
        0 => None,
        1 => alerts.pop().map(Grouped::Single),
        _ => {
            let offline = alerts.iter().filter(|a| is_offline(a)).count();
            let all_offline = services > 0 && offline >= services;
            let head = Notification {
                id: alerts[0].id,
                server: Some(server.to_owned()),
                service: None,
                channel: GROUP_CHANNEL.into(),
                event: if all_offline { "offline" } else { "alerts" }.into(),
                message: summary(server, &alerts, services),
                severity: worst_severity(&alerts).as_str().into(),
                ctime: alerts[0].ctime,
                ..Notification::default()
            };
            Some(Grouped::Group(Group {
                head,
                members: alerts,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: i64, service: &str, channel: &str, event: &str, severity: &str) -> Notification {
        Notification {
            id,
            server: Some("web1".into()),
            service: Some(service.into()),
            channel: channel.into(),
            event: event.into(),
            message: match (channel, event) {
                ("plugin", "offline") => "Monitoring plugin offline".into(),
                _ => format!("State changed: \"OK\" -> \"{event}\""),
            },
            severity: severity.into(),
            state: Some("OK".into()),
            info: Some("fine".into()),
            ctime: 1_000 + id,
            ..Notification::default()
        }
    }

    fn offline(id: i64, service: &str) -> Notification {
        alert(id, service, "plugin", "offline", "FAIL")
    }

    fn change(id: i64, service: &str, state: &str) -> Notification {
        alert(id, service, "service:state", state, state)
    }

    fn grouped(alerts: Vec<Notification>, services: usize) -> Group {
        match group("web1", alerts, services) {
            Some(Grouped::Group(g)) => g,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_window_is_group_wait_from_the_first_alert() {
        assert_eq!(window_end(1_000, 10), 11_000);
        assert_eq!(window_end(1_000, 0), 1_000);
        assert_eq!(window_end(1_000, u64::MAX), Millis::MAX);
    }

    #[test]
    fn a_single_alert_is_sent_unchanged() {
        let a = change(7, "disk", "FAIL");
        assert_eq!(group("web1", vec![a.clone()], 3), Some(Grouped::Single(a)));
        assert_eq!(group("web1", vec![], 3), None);
    }

    #[test]
    fn the_summary_counts_each_category() {
        let g = grouped(
            vec![
                change(1, "disk", "WARN"),
                offline(2, "nginx"),
                change(3, "load", "FAIL"),
                offline(4, "php"),
                offline(5, "redis"),
            ],
            6,
        );
        assert_eq!(g.head.message, "web1: 5 alerts: 3 offline, 2 state changes");
        assert_eq!(g.head.channel, "group");
        assert_eq!(g.head.event, "alerts");
        let g = grouped(
            vec![
                change(1, "disk", "WARN"),
                alert(2, "nginx", "plugin", "online", "OK"),
                alert(3, "x", "api", "alert", "FAIL"),
                alert(4, "x", "service:flapping", "start", "FAIL"),
                alert(5, "x", "service:ack", "", "FAIL"),
                alert(6, "x", "service:reminder", "FAIL", "FAIL"),
                alert(7, "x", "service:reminder", "offline", "FAIL"),
                alert(8, "x", "service:flapping", "stop", "OK"),
                alert(9, "x", "what", "ever", "OK"),
            ],
            6,
        );
        assert_eq!(
            g.head.message,
            "web1: 9 alerts: 1 state change, 1 back online, 1 flapping, 1 stopped flapping, \
             1 acknowledgement, 2 reminders, 1 API alert, 1 other"
        );
    }

    #[test]
    fn text_is_the_summary_an_empty_line_and_each_member() {
        let g = grouped(vec![change(1, "disk", "WARN"), offline(2, "nginx")], 5);
        assert_eq!(
            g.text(),
            "web1: 2 alerts: 1 offline, 1 state change\n\
             \n\
             web1 disk: [service:state/WARN] State changed: \"OK\" -> \"WARN\"\n\
             Current: OK: fine\n\
             web1 nginx: [plugin/offline] Monitoring plugin offline\n\
             Current: OK: fine"
        );
    }

    #[test]
    fn a_server_whose_services_all_went_overdue_is_one_server_offline() {
        let g = grouped(vec![offline(1, "a"), offline(2, "b"), offline(3, "c")], 3);
        assert_eq!(g.head.message, "web1: server offline (3 services overdue)");
        assert_eq!(g.head.event, "offline");
        assert!(
            g.text().starts_with(
                "web1: server offline (3 services overdue)\n\nweb1 a: [plugin/offline]"
            )
        );
        // One service still reporting: an ordinary group.
        let g = grouped(vec![offline(1, "a"), offline(2, "b")], 3);
        assert_eq!(g.head.message, "web1: 2 alerts: 2 offline");
        // Services unknown (0): never "server offline".
        let g = grouped(vec![offline(1, "a"), offline(2, "b")], 0);
        assert_eq!(g.head.message, "web1: 2 alerts: 2 offline");
        // The one service of a server, with another alert.
        let g = grouped(vec![offline(1, "a"), change(2, "b", "OK")], 1);
        assert_eq!(g.head.message, "web1: server offline (1 service overdue)");
    }

    #[test]
    fn the_environment_has_the_worst_severity_the_count_and_the_ids() {
        let g = grouped(
            vec![
                change(11, "a", "WARN"),
                change(12, "b", "FAIL"),
                change(13, "c", "OK"),
            ],
            9,
        );
        let env: std::collections::HashMap<_, _> = g.env().into_iter().collect();
        assert_eq!(env["OVERC_SEVERITY"], "FAIL");
        assert_eq!(env["OVERC_COUNT"], "3");
        assert_eq!(env["OVERC_ALERT_ID"], "11,12,13");
        assert_eq!(env["OVERC_SERVER"], "web1");
        assert_eq!(env["OVERC_CHANNEL"], "group");
        assert_eq!(env["OVERC_EVENT"], "alerts");
        assert_eq!(env["OVERC_MESSAGE"], "web1: 3 alerts: 3 state changes");
        assert_eq!(env["OVERC_SERVICE"], "");
        assert_eq!(env["OVERC_STATE"], "");
        assert_eq!(g.env().len(), 10);
        assert_eq!((g.head.id, g.head.ctime), (11, 1_011));
        // UNK is the worst in State's order (SPEC §2), above FAIL.
        let g = grouped(vec![change(1, "a", "FAIL"), change(2, "b", "UNK")], 9);
        assert_eq!(g.head.severity, "UNK");
        assert_eq!(worst_severity(&[]), State::Unk);
        let odd = Notification {
            severity: "??".into(),
            ..change(1, "a", "WARN")
        };
        assert_eq!(worst_severity(&[odd, change(2, "b", "OK")]), State::Ok);
    }
}
