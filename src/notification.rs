//! What reaches a person: a [`Notification`] and the [`Notifier`]s that take it.
//!
//! Alert plugin commands are one kind of notifier (the server runs them with
//! the text on stdin and the fields in `OVERC_*` variables); an application
//! that embeds overc can add its own, a Rust callback under the same rules:
//! delivered at least once, in order, retried with backoff while it fails.

/// One notification as a notifier gets it: an event of the alert log with
/// the names of what it is about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notification {
    /// The alert's id (`OVERC_ALERT_ID`).
    pub id: i64,
    /// Host name, `None` for overc's own alerts.
    pub server: Option<String>,
    /// Service name, if the alert is about one.
    pub service: Option<String>,
    /// e.g. `service:state`, `plugin`, `api`.
    pub channel: String,
    /// e.g. `WARN`, `offline`, `alert`.
    pub event: String,
    /// The alert message.
    pub message: String,
    /// `OK`, `WARN`, `FAIL` or `UNK`.
    pub severity: String,
    /// The service's state when the alert was raised.
    pub state: Option<String>,
    /// The service's info when the alert was raised.
    pub info: Option<String>,
    /// When the alert was raised (unix milliseconds).
    pub ctime: i64,
    /// Earlier attempts to deliver it to this notifier, all failed.
    pub attempts: u32,
    /// For a group of alerts about one server (`group-wait`, SPEC §9): the
    /// alerts, oldest first; this notification is then their summary
    /// (channel `group`). Empty for a single alert.
    pub members: Vec<Notification>,
}

impl Notification {
    /// The text a plugin gets on stdin, as OverC 1.0.9 wrote it:
    /// `<server> <service>: [<channel>/<event>] <message>` and, when the
    /// service has a state, `Current: <STATE>: <info>`. An alert without an
    /// event (an acknowledgement) shows `[<channel>]`.
    pub fn text(&self) -> String {
        if let Some(group) = self.group() {
            return group.text();
        }
        let mut head = String::new();
        if let Some(server) = &self.server {
            head.push_str(server);
            if let Some(service) = &self.service {
                head.push(' ');
                head.push_str(service);
            }
            head.push_str(": ");
        }
        // An acknowledgement has a channel and no event: `[service:ack]`.
        let mut text = if self.event.is_empty() {
            format!("{head}[{}] {}", self.channel, self.message)
        } else {
            format!("{head}[{}/{}] {}", self.channel, self.event, self.message)
        };
        if let Some(state) = &self.state {
            text.push_str(&format!(
                "\nCurrent: {state}: {}",
                self.info.as_deref().unwrap_or("")
            ));
        }
        text
    }

    /// The group this notification sums up, if it is one.
    fn group(&self) -> Option<crate::policy::Group> {
        (!self.members.is_empty()).then(|| crate::policy::Group {
            head: Notification {
                members: Vec::new(),
                ..self.clone()
            },
            members: self.members.clone(),
        })
    }

    /// The `OVERC_*` variables a plugin gets (for a group also `OVERC_COUNT`,
    /// and the members' ids in `OVERC_ALERT_ID`).
    pub fn env(&self) -> Vec<(String, String)> {
        if let Some(group) = self.group() {
            return group.env();
        }
        let v = |s: &Option<String>| s.clone().unwrap_or_default();
        vec![
            ("OVERC_SERVER".into(), v(&self.server)),
            ("OVERC_SERVICE".into(), v(&self.service)),
            ("OVERC_CHANNEL".into(), self.channel.clone()),
            ("OVERC_EVENT".into(), self.event.clone()),
            ("OVERC_SEVERITY".into(), self.severity.clone()),
            ("OVERC_STATE".into(), v(&self.state)),
            ("OVERC_INFO".into(), v(&self.info)),
            ("OVERC_MESSAGE".into(), self.message.clone()),
            ("OVERC_ALERT_ID".into(), self.id.to_string()),
        ]
    }
}

/// Something that takes notifications: an alert plugin command, a webhook,
/// or an application's own callback.
///
/// Each notifier gets its notifications one at a time, in order, from a
/// thread of its own: a slow one delays only itself. A notification it
/// refuses (`Err`) is offered again later (10 s, doubling up to 1 h) before
/// any later one, until it is taken or is older than `retention-days`.
pub trait Notifier: Send + Sync {
    /// Delivers one notification.
    ///
    /// # Errors
    /// Why it could not be delivered (logged, and shown on the page); it is
    /// retried with backoff.
    fn notify(&self, notification: &Notification) -> Result<(), String>;
}

impl<F> Notifier for F
where
    F: Fn(&Notification) -> Result<(), String> + Send + Sync,
{
    fn notify(&self, notification: &Notification) -> Result<(), String> {
        self(notification)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Notification {
        Notification {
            id: 7,
            server: Some("h".into()),
            service: Some("app".into()),
            channel: "service:state".into(),
            event: "UNK".into(),
            message: "State changed: \"(?)\" -> \"UNK\"".into(),
            severity: "UNK".into(),
            state: Some("UNK".into()),
            info: Some("x".into()),
            ..Notification::default()
        }
    }

    #[test]
    fn text_has_the_originals_two_lines() {
        assert_eq!(
            alert().text(),
            "h app: [service:state/UNK] State changed: \"(?)\" -> \"UNK\"\nCurrent: UNK: x"
        );
        let server_level = Notification {
            service: None,
            state: None,
            channel: "api".into(),
            event: "alert".into(),
            message: "m".into(),
            ..alert()
        };
        assert_eq!(server_level.text(), "h: [api/alert] m");
        let own = Notification {
            server: None,
            service: None,
            state: None,
            channel: "alert-plugin".into(),
            event: "failed".into(),
            message: "x".into(),
            ..alert()
        };
        assert_eq!(own.text(), "[alert-plugin/failed] x");
        let ack = Notification {
            channel: "service:ack".into(),
            event: String::new(),
            message: "Acknowledged by ann: on it".into(),
            ..alert()
        };
        assert_eq!(
            ack.text(),
            "h app: [service:ack] Acknowledged by ann: on it\nCurrent: UNK: x"
        );
    }

    #[test]
    fn a_closure_is_a_notifier() {
        let seen = std::sync::Mutex::new(Vec::new());
        let n = |a: &Notification| {
            seen.lock().unwrap().push(a.id);
            Ok(())
        };
        n.notify(&alert()).unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![7]);
    }
}
