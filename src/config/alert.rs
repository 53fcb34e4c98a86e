//! `[alert:NAME]` sections: a command or a built-in webhook, with its
//! routing and reminders.

use std::time::Duration;

use super::{key_error, parse_num, policy_why, split_command};
use crate::error::{Error, Result};
use crate::policy;

/// One `[alert:NAME]` section: a command run, or a webhook called, for
/// every alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPluginConfig {
    /// The NAME of the section.
    pub name: String,
    /// What takes the alert.
    pub kind: PluginKind,
    /// Killed (or given up) after this long.
    pub timeout: Duration,
    /// Routing (`severities`, `servers`, `services`, `events`) and
    /// reminders (`repeat`); the default routes everything, reminds never.
    pub policy: policy::PluginPolicy,
}

/// What an alert plugin is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginKind {
    /// `command =`: program and arguments, already split with shell-like quoting.
    Command(Vec<String>),
    /// `webhook =`: the built-in HTTP notifier.
    Webhook(WebhookConfig),
}

/// The body a webhook gets (`format =`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// Every alert field as JSON (the default).
    Generic,
    /// A Slack (or Mattermost) incoming webhook: `{"text": …}`.
    Slack,
    /// An ntfy topic URL: JSON publishing with title, priority and tags.
    Ntfy,
    /// Telegram's `sendMessage` (needs `chat-id`).
    Telegram,
}

/// `[alert:NAME] webhook = URL` and its keys.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where the alert is POSTed, `${VAR}`s expanded.
    pub url: String,
    /// The body's shape.
    pub format: WebhookFormat,
    /// Extra request headers (`header = Name: value`), `${VAR}`s expanded.
    pub headers: Vec<(String, String)>,
    /// Telegram's chat (`chat-id`).
    pub chat_id: Option<String>,
}

/// Header values and URLs hold tokens: shown as their names only.
impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("format", &self.format)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// One `[alert:NAME]` section: `command =` or `webhook =` with their keys.
pub(super) fn alert_plugin(
    source: &str,
    s: &str,
    props: &ini::Properties,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<AlertPluginConfig> {
    let name = &s["alert:".len()..];
    if name.is_empty() {
        return Err(Error::Config(format!("{source}: [{s}] needs a name")));
    }
    let mut command = None;
    let mut url = None;
    let mut format = None;
    let mut headers = Vec::new();
    let mut chat_id = None;
    let mut timeout = Duration::from_secs(30);
    let mut route = [None; 4];
    let mut repeat = None;
    let expand =
        |k: &str, v: &str| expand_env(v.trim(), env).map_err(|why| key_error(source, s, k, &why));
    for (k, v) in props.iter() {
        match k {
            "command" => {
                command = Some(
                    split_command(v)
                        .ok_or_else(|| key_error(source, s, k, "empty or badly quoted command"))?,
                )
            }
            "webhook" => {
                url =
                    Some(webhook_url(&expand(k, v)?).map_err(|why| key_error(source, s, k, &why))?)
            }
            "format" => {
                format = Some(match v.trim().to_ascii_lowercase().as_str() {
                    "generic" => WebhookFormat::Generic,
                    "slack" => WebhookFormat::Slack,
                    "ntfy" => WebhookFormat::Ntfy,
                    "telegram" => WebhookFormat::Telegram,
                    _ => {
                        return Err(key_error(
                            source,
                            s,
                            k,
                            "should be generic, slack, ntfy or telegram",
                        ));
                    }
                })
            }
            "header" => {
                let header = header(&expand(k, v)?).map_err(|why| key_error(source, s, k, &why))?;
                headers.push(header);
            }
            "chat-id" => chat_id = Some(expand(k, v)?).filter(|c| !c.is_empty()),
            "severities" => route[0] = Some(v),
            "servers" => route[1] = Some(v),
            "services" => route[2] = Some(v),
            "events" => route[3] = Some(v),
            "repeat" => {
                repeat = Some(
                    policy::parse_repeat(k, v)
                        .map_err(|e| key_error(source, s, k, &policy_why(e)))?,
                )
            }
            "timeout" => {
                let secs: f64 = parse_num(v, source, s, k)?;
                if !(secs > 0.0 && secs <= 86_400.0) {
                    return Err(key_error(source, s, k, "should be 1 to 86400 seconds"));
                }
                timeout = Duration::from_secs_f64(secs);
            }
            _ => return Err(key_error(source, s, k, "unknown key")),
        }
    }
    let notifier = match (command, url) {
        (Some(_), Some(_)) => {
            return Err(key_error(
                source,
                s,
                "webhook",
                "set either command or webhook, not both",
            ));
        }
        (Some(argv), None) => {
            if let Some(k) = [
                ("format", format.is_some()),
                ("header", !headers.is_empty()),
                ("chat-id", chat_id.is_some()),
            ]
            .iter()
            .find_map(|(k, set)| set.then_some(*k))
            {
                return Err(key_error(source, s, k, "is for webhook = URL only"));
            }
            PluginKind::Command(argv)
        }
        (None, Some(url)) => {
            let format = format.unwrap_or(WebhookFormat::Generic);
            if format == WebhookFormat::Telegram && chat_id.is_none() {
                return Err(key_error(
                    source,
                    s,
                    "chat-id",
                    "missing (format = telegram needs it)",
                ));
            }
            if format == WebhookFormat::Ntfy && ntfy_topic(&url).is_none() {
                return Err(key_error(
                    source,
                    s,
                    "webhook",
                    "format = ntfy needs the topic's URL, such as https://ntfy.sh/TOPIC",
                ));
            }
            PluginKind::Webhook(WebhookConfig {
                url,
                format,
                headers,
                chat_id,
            })
        }
        (None, None) => {
            return Err(key_error(
                source,
                s,
                "command",
                "missing (or set webhook = URL)",
            ));
        }
    };
    let route = policy::Route::parse(route[0], route[1], route[2], route[3])
        .map_err(|e| Error::Config(format!("{source}: [{s}] {}", policy_why(e))))?;
    Ok(AlertPluginConfig {
        name: name.to_owned(),
        kind: notifier,
        timeout,
        policy: policy::PluginPolicy { route, repeat },
    })
}

/// Replaces each `${NAME}` with the variable's value, so that tokens can
/// stay out of the file; `$${` writes `${`.
///
/// # Errors
/// A variable that is not set, or a `${` without its `}`.
pub(crate) fn expand_env(
    v: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let tail = &rest[at + 2..];
        let end = tail.find('}').ok_or("a ${ without its }")?;
        let name = &tail[..end];
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("${{{name}}} is not a variable name"));
        }
        let value = env(name)
            .ok_or_else(|| format!("${{{name}}}: the environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks a webhook's URL: `http://` or `https://` with a host.
pub(super) fn webhook_url(url: &str) -> std::result::Result<String, String> {
    let bad = || "should be an http:// or https:// URL".to_owned();
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err(bad());
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    Ok(url.to_owned())
}

/// An ntfy topic URL split for JSON publishing, which goes to the server's
/// root with the topic in the body: `https://ntfy.sh/alerts` →
/// (`https://ntfy.sh/`, `alerts`).
pub(crate) fn ntfy_topic(url: &str) -> Option<(&str, &str)> {
    let host_at = url.find("://")? + 3;
    let path_at = host_at + url[host_at..].find('/')?;
    if url[path_at..].contains(['?', '#']) {
        return None;
    }
    let trimmed = url.trim_end_matches('/');
    let slash = trimmed.rfind('/').filter(|&at| at >= path_at)?;
    let topic = &trimmed[slash + 1..];
    (!topic.is_empty()).then_some((&url[..=slash], topic))
}

/// Reads `Name: value`; the name a token, the value printable ASCII (a
/// line break would end the header early, other bytes HTTP libraries refuse).
pub(super) fn header(v: &str) -> std::result::Result<(String, String), String> {
    let (name, value) = v
        .split_once(':')
        .ok_or("should be Name: value, such as Authorization: Bearer ${TOKEN}")?;
    let name = name.trim();
    let value = value.trim();
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("{name:?} is not a header name"));
    }
    if !value.chars().all(|c| c == '\t' || (' '..='~').contains(&c)) {
        return Err(format!(
            "the value of {name} should be printable ASCII (no line breaks)"
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}
