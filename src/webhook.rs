//! The built-in webhook notifier (`[alert:NAME] webhook = URL`): POSTs each
//! alert as JSON built by serde_json, so no byte of a name, info or message
//! can break the body, with headers from the config (tokens through
//! `${VAR}`), in the shape of a preset: generic, Slack, ntfy or Telegram.

use std::borrow::Cow;
use std::io::Read;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{WebhookConfig, WebhookFormat, ntfy_topic};
use crate::notification::{Notification, Notifier};

/// Most bytes of an alert's text sent to ntfy and Telegram: both refuse
/// (or turn into an attachment) a message over 4,096 (bytes, or UTF-16
/// units, never more than the UTF-8 bytes), and an info may be 16 KiB.
const SHORT_TEXT: usize = 4000;

/// Most bytes of an error answer read for the failure reason.
const ANSWER_READ: u64 = 4096;

/// The URL and the JSON body `hook` sends for `alert`.
pub(crate) fn request(hook: &WebhookConfig, alert: &Notification) -> (String, Value) {
    let text = alert.text();
    match hook.format {
        WebhookFormat::Generic => (
            hook.url.clone(),
            json!({
                "alert_id": alert.id,
                "server": alert.server,
                "service": alert.service,
                "channel": alert.channel,
                "event": alert.event,
                "severity": alert.severity,
                "state": alert.state,
                "info": alert.info,
                "message": alert.message,
                "text": text,
            }),
        ),
        WebhookFormat::Slack => (hook.url.clone(), json!({ "text": slack_escape(&text) })),
        WebhookFormat::Telegram => (
            hook.url.clone(),
            json!({
                "chat_id": hook.chat_id,
                "text": cut(&text, SHORT_TEXT),
                "disable_web_page_preview": true,
            }),
        ),
        WebhookFormat::Ntfy => {
            // The config refuses an ntfy URL without a topic.
            let (root, topic) = ntfy_topic(&hook.url).unwrap_or((&hook.url, ""));
            let (priority, tag) = match alert.severity.as_str() {
                "OK" => (2, "white_check_mark"),
                "WARN" => (3, "warning"),
                "FAIL" => (4, "rotating_light"),
                _ => (4, "grey_question"),
            };
            (
                root.to_owned(),
                json!({
                    "topic": topic,
                    "title": title(alert),
                    "message": cut(&text, SHORT_TEXT),
                    "priority": priority,
                    "tags": [tag],
                }),
            )
        }
    }
}

/// `<server> <service>: <SEVERITY> <channel>/<event>`, a notification's title.
fn title(alert: &Notification) -> String {
    let who = match (&alert.server, &alert.service) {
        (Some(server), Some(service)) => format!("{server} {service}"),
        (Some(server), None) => server.clone(),
        (None, _) => "overc".into(),
    };
    format!(
        "{who}: {} {}/{}",
        alert.severity, alert.channel, alert.event
    )
}

/// Slack reads `&`, `<` and `>` as markup (links, mentions): escaped as
/// its documentation asks, the text arrives as written.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `text` cut to at most `max` bytes at a character boundary, marked with `…`.
fn cut(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

/// A `[alert:NAME] webhook = URL` section as a [`Notifier`].
#[derive(Debug, Clone)]
pub struct WebhookNotifier {
    hook: WebhookConfig,
    timeout: Duration,
}

impl WebhookNotifier {
    /// The webhook `hook`, giving up on each alert after `timeout`.
    pub fn new(hook: WebhookConfig, timeout: Duration) -> WebhookNotifier {
        WebhookNotifier { hook, timeout }
    }
}

impl Notifier for WebhookNotifier {
    fn notify(&self, alert: &Notification) -> Result<(), String> {
        send(&self.hook, self.timeout, alert)
    }
}

/// POSTs `alert` to the webhook, giving up after `timeout` in all.
///
/// # Errors
/// Why the webhook did not take the alert: it could not be reached or timed
/// out, or answered other than 2xx (the status and the first line of its
/// answer). The reason never holds the URL, which may carry a token.
pub fn send(hook: &WebhookConfig, timeout: Duration, alert: &Notification) -> Result<(), String> {
    let (url, body) = request(hook, alert);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        // A redirected POST may arrive as a GET without the alert, and its
        // 200 would count as delivered: a 3xx is a failure to fix the URL.
        .max_redirects(0)
        .user_agent(concat!("overc/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut req = agent.post(&url);
    if !hook
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("Content-Type"))
    {
        req = req.header("Content-Type", "application/json");
    }
    for (k, v) in &hook.headers {
        req = req.header(k, v);
    }
    let mut answer = match req.send(body.to_string()) {
        Ok(answer) => answer,
        Err(ureq::Error::Timeout(_)) => {
            return Err(format!(
                "webhook: no answer within {} s",
                timeout.as_secs_f64()
            ));
        }
        Err(e) => return Err(format!("webhook: {e}")),
    };
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    let mut said = Vec::new();
    // What the receiver said only explains the status: a failed read of it
    // leaves the status alone.
    let _ = answer
        .body_mut()
        .as_reader()
        .take(ANSWER_READ)
        .read_to_end(&mut said);
    let said = String::from_utf8_lossy(&said);
    let line = said
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| {
            cut(l, 200)
                .chars()
                .filter(|c| !c.is_control())
                .collect::<String>()
        });
    Err(match line {
        Some(line) => format!("webhook: HTTP {}: {line}", status.as_u16()),
        None => format!("webhook: HTTP {}", status.as_u16()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AlertPluginConfig, PluginKind, ServerConfig};
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::path::Path;
    use std::sync::mpsc;

    fn alert() -> Notification {
        Notification {
            id: 42,
            server: Some("web1".into()),
            service: Some("disk".into()),
            channel: "service:state".into(),
            event: "FAIL".into(),
            message: "State changed: \"OK\" -> \"FAIL\"".into(),
            severity: "FAIL".into(),
            state: Some("FAIL".into()),
            // What broke the shell plugin's sed: CR, ESC, BEL, NUL, quotes.
            info: Some("DISK <CRITICAL> & \"full\"\r\x1b[31m\x07\0 | /=99%".into()),
            ..Notification::default()
        }
    }

    /// One request as a receiver got it.
    #[derive(Debug)]
    struct Got {
        request_line: String,
        headers: Vec<(String, String)>,
        body: Value,
    }

    impl Got {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    fn read_request(stream: &TcpStream) -> Option<Got> {
        let mut r = BufReader::new(stream);
        let mut request_line = String::new();
        r.read_line(&mut request_line).ok()?;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':')?;
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))?
            .1
            .parse()
            .ok()?;
        let mut body = vec![0; len];
        r.read_exact(&mut body).ok()?;
        Some(Got {
            request_line: request_line.trim_end().to_owned(),
            headers,
            body: serde_json::from_slice(&body).ok()?,
        })
    }

    /// A receiver on 127.0.0.1 port 0 that answers one request with
    /// `status` and `answer`, and hands over what it got.
    fn receiver(status: u16, answer: &'static str) -> (String, mpsc::Receiver<Got>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            if let Some(got) = read_request(&stream) {
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = tx.send(got);
            }
        });
        (url, rx)
    }

    fn parsed(text: &str) -> WebhookConfig {
        hook_with_env(text, |_| None)
    }

    fn hook_with_env(text: &str, env: impl Fn(&str) -> Option<String>) -> WebhookConfig {
        let cfg = ServerConfig::from_ini_str(text, "server.ini", Path::new("."), env).unwrap();
        match cfg.alert_plugins.into_iter().next() {
            Some(AlertPluginConfig {
                kind: PluginKind::Webhook(hook),
                ..
            }) => hook,
            other => panic!("not a webhook: {other:?}"),
        }
    }

    const SECOND: Duration = Duration::from_secs(10);

    #[test]
    fn generic_sends_every_field_as_json() {
        let (url, got) = receiver(200, "");
        let hook = parsed(&format!("[alert:hook]\nwebhook = {url}/hook\n"));
        send(&hook, SECOND, &alert()).unwrap();
        let got = got.recv().unwrap();
        assert_eq!(got.request_line, "POST /hook HTTP/1.1");
        assert_eq!(got.header("Content-Type"), Some("application/json"));
        let a = alert();
        assert_eq!(
            got.body,
            json!({
                "alert_id": 42, "server": "web1", "service": "disk",
                "channel": "service:state", "event": "FAIL", "severity": "FAIL",
                "state": "FAIL", "info": a.info, "message": a.message, "text": a.text(),
            })
        );
    }

    #[test]
    fn slack_gets_the_text_with_its_markup_escaped() {
        let (url, got) = receiver(200, "ok");
        let hook = parsed(&format!(
            "[alert:slack]\nwebhook = {url}/services/T0/B0/x\nformat = slack\n"
        ));
        send(&hook, SECOND, &alert()).unwrap();
        let got = got.recv().unwrap();
        assert_eq!(got.request_line, "POST /services/T0/B0/x HTTP/1.1");
        let text = got.body["text"].as_str().unwrap();
        assert!(
            text.starts_with("web1 disk: [service:state/FAIL] State changed")
                && text.contains("DISK &lt;CRITICAL&gt; &amp; \"full\"\r\x1b[31m\x07\0 | /=99%"),
            "{text:?}"
        );
        assert_eq!(got.body.as_object().unwrap().len(), 1);
    }

    #[test]
    fn ntfy_publishes_json_to_the_root_with_the_topic() {
        let (url, got) = receiver(200, "{}");
        let hook = parsed(&format!(
            "[alert:phone]\nwebhook = {url}/ntfy/overc-alerts\nformat = ntfy\n"
        ));
        send(&hook, SECOND, &alert()).unwrap();
        let got = got.recv().unwrap();
        assert_eq!(got.request_line, "POST /ntfy/ HTTP/1.1");
        assert_eq!(got.body["topic"], "overc-alerts");
        assert_eq!(got.body["title"], "web1 disk: FAIL service:state/FAIL");
        assert_eq!(got.body["priority"], 4);
        assert_eq!(got.body["tags"], json!(["rotating_light"]));
        assert_eq!(got.body["message"], alert().text());
    }

    #[test]
    fn telegram_gets_the_chat_and_a_text_within_its_limit() {
        let (url, got) = receiver(200, r#"{"ok":true}"#);
        let hook = hook_with_env(
            &format!(
                "[alert:tg]\nwebhook = {url}/bot${{TG_TOKEN}}/sendMessage\nformat = telegram\nchat-id = -100123\n"
            ),
            |k| (k == "TG_TOKEN").then(|| "123:abc".to_owned()),
        );
        let long = Notification {
            info: Some("é".repeat(10_000)),
            ..alert()
        };
        send(&hook, SECOND, &long).unwrap();
        let got = got.recv().unwrap();
        assert_eq!(got.request_line, "POST /bot123:abc/sendMessage HTTP/1.1");
        assert_eq!(got.body["chat_id"], "-100123");
        let text = got.body["text"].as_str().unwrap();
        assert!(text.len() <= 4000 && text.ends_with('…'), "{}", text.len());
        assert!(text.starts_with("web1 disk: [service:state/FAIL]"));
    }

    #[test]
    fn headers_come_from_the_config_and_the_environment() {
        let (url, got) = receiver(204, "");
        let hook = hook_with_env(
            &format!(
                "[alert:hook]\nwebhook = {url}/\nheader = Authorization: Bearer ${{HOOK_TOKEN}}\nheader = X-Team: ops\n"
            ),
            |k| (k == "HOOK_TOKEN").then(|| "s3cret".to_owned()),
        );
        assert!(!format!("{hook:?}").contains("s3cret"));
        send(&hook, SECOND, &alert()).unwrap();
        let got = got.recv().unwrap();
        assert_eq!(got.header("Authorization"), Some("Bearer s3cret"));
        assert_eq!(got.header("X-Team"), Some("ops"));
    }

    #[test]
    fn a_500_is_a_failure_with_the_status_and_the_first_line() {
        let (url, _got) = receiver(500, "\n  database is down\nat line 3\n");
        let hook = parsed(&format!("[alert:hook]\nwebhook = {url}/\n"));
        let e = send(&hook, SECOND, &alert()).unwrap_err();
        assert_eq!(e, "webhook: HTTP 500: database is down");
        let (url, _got) = receiver(301, "");
        let hook = parsed(&format!("[alert:hook]\nwebhook = {url}/\n"));
        assert_eq!(
            send(&hook, SECOND, &alert()).unwrap_err(),
            "webhook: HTTP 301",
            "a redirect is not followed"
        );
        let (url, _got) = receiver(404, "");
        let hook = parsed(&format!("[alert:hook]\nwebhook = {url}/\n"));
        assert_eq!(
            send(&hook, SECOND, &alert()).unwrap_err(),
            "webhook: HTTP 404"
        );
    }

    #[test]
    fn a_receiver_that_never_answers_is_given_up_at_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (done, wait) = mpsc::channel::<()>();
        // Takes the connection and keeps it open, silent, until the test ends.
        let silent = std::thread::spawn(move || {
            let conn = listener.accept().unwrap();
            let _ = wait.recv();
            drop(conn);
        });
        let hook = parsed(&format!("[alert:hook]\nwebhook = {url}\n"));
        let e = send(&hook, Duration::from_millis(200), &alert()).unwrap_err();
        assert_eq!(e, "webhook: no answer within 0.2 s");
        done.send(()).unwrap();
        silent.join().unwrap();
    }

    #[test]
    fn an_unreachable_webhook_is_a_failure() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let hook = parsed(&format!(
            "[alert:hook]\nwebhook = http://127.0.0.1:{port}/\n"
        ));
        let e = send(&hook, SECOND, &alert()).unwrap_err();
        assert!(e.starts_with("webhook: "), "{e}");
    }

    #[test]
    fn cut_keeps_characters_whole() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcdef", 5), "ab…");
        assert_eq!(cut("éééé", 6), "é…");
    }
}
