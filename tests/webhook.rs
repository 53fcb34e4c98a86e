//! The built-in webhook notifier wired into delivery: a real server, a real
//! alert, a receiver on 127.0.0.1 port 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use overc::ServerConfig;
use overc::config::{AlertPluginConfig, PluginKind};
use serde_json::{Value, json};

use crate::common::{TestServer, report};
use crate::supervision::{plugin, records};

/// A receiver that answers the requests it gets with `statuses` in turn
/// (200 once they are used up) and hands over each JSON body.
fn receiver(statuses: Vec<u16>) -> (String, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut statuses = statuses.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut r = BufReader::new(&stream);
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            let status = statuses.next().unwrap_or(200);
            let answer = if status == 200 {
                ""
            } else {
                "receiver is down"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            if tx
                .send(serde_json::from_slice(&body).unwrap_or(Value::Null))
                .is_err()
            {
                return;
            }
        }
    });
    (url, rx)
}

fn webhook(name: &str, url: &str) -> AlertPluginConfig {
    let text = format!("[alert:{name}]\nwebhook = {url}\ntimeout = 10\n");
    let cfg = ServerConfig::from_ini_str(&text, "server.ini", Path::new("."), |_| None).unwrap();
    cfg.alert_plugins.into_iter().next().unwrap()
}

#[test]
fn a_state_change_reaches_the_webhook_as_json_whatever_its_bytes() {
    let (url, got) = receiver(vec![]);
    let t = TestServer::start_manual(|c| c.alert_plugins.push(webhook("hook", &url)));
    let info = "DISK CRITICAL\r\n\u{1b}[31m\u{7} \"quoted\" \\ | /=99%";
    let mut body = report("web1", "k", "disk", "FAIL", info);
    body["period"] = json!(60);
    assert_eq!(t.post_json("/api/set/service/status", &body).0, 200);
    t.server().app().supervise_now().unwrap();
    let hook = got.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(hook["server"], "web1");
    assert_eq!(hook["service"], "disk");
    assert_eq!(hook["channel"], "service:state");
    assert_eq!(hook["event"], "FAIL");
    assert_eq!(hook["severity"], "FAIL");
    assert_eq!(hook["state"], "FAIL");
    assert_eq!(hook["info"], info);
    assert!(hook["alert_id"].as_i64().unwrap() > 0);
    assert_eq!(
        hook["text"],
        format!(
            "web1 disk: [service:state/FAIL] State changed: \"(?)\" -> \"FAIL\"\nCurrent: FAIL: {info}"
        )
    );
}

#[test]
fn a_webhook_answering_500_is_a_failing_plugin_with_its_answer() {
    let (url, got) = receiver(vec![500]);
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("alerts.log");
    let log_s = log.to_str().unwrap().to_owned();
    let t = TestServer::start_manual(|c| {
        c.alert_plugins.push(webhook("hook", &url));
        c.alert_plugins.push(AlertPluginConfig {
            name: "log".into(),
            kind: PluginKind::Command(vec![plugin("record.sh"), log_s]),
            timeout: Duration::from_secs(10),
            policy: Default::default(),
        });
    });
    let body = json!({"server": {"name": "h", "key": "k"}, "alerts": [{"message": "deploy"}]});
    assert_eq!(t.post_json("/api/set/alerts", &body).0, 200);
    t.server().app().supervise_now().unwrap();
    assert_eq!(
        got.recv_timeout(Duration::from_secs(30)).unwrap()["message"],
        "deploy"
    );
    let failure = records(&log)
        .into_iter()
        .find(|r| r.contains("Alert plugin `hook` failed"))
        .expect("a failure alert through the other plugin");
    assert!(
        failure.contains("webhook: HTTP 500: receiver is down"),
        "{failure}"
    );
}
