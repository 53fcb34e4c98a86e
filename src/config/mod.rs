//! Configuration: INI file + `OVERC_<KEY>` environment + flags → one typed,
//! validated config. Every error names the file, section and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ini::{Ini, ParseOption};

use crate::error::{Error, Result};
use crate::policy;

mod alert;
mod database;
mod monitor;
mod net;

use alert::alert_plugin;
#[cfg(feature = "server")]
pub(crate) use alert::ntfy_topic;
pub use alert::{AlertPluginConfig, PluginKind, WebhookConfig, WebhookFormat};
pub use database::{Database, PostgresUrl, SslMode, parse_database};
pub use monitor::{MonitorConfig, ServiceConfig};
use net::parse_cidrs;
pub use net::{Cidr, Registration};

/// How hard a 200 promises that a report survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Survives a power cut: the write is fsynced (in the redo log) before
    /// a 200 (the default).
    Disk,
    /// Survives a process crash only: the write is in the redo log, not
    /// yet synced, before a 200.
    Process,
}

/// The web page's login; the page is read-only without a password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UiConfig {
    /// HTTP Basic user name.
    pub username: Option<String>,
    /// HTTP Basic password; actions are allowed only when set.
    pub password: Option<String>,
}

/// Everything `overc-server` needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Address to listen on, e.g. `127.0.0.1:5000`.
    pub listen: String,
    /// SQLite database file (unused when `postgres` is set).
    pub database: PathBuf,
    /// A PostgreSQL database (`database = postgres://…`, feature
    /// `postgres`): when set, the data lives there and `database` is unused.
    pub postgres: Option<PostgresUrl>,
    /// `leader-timeout`: seconds within which another server takes over
    /// when the leader dies or loses PostgreSQL (PostgreSQL only).
    pub leader_timeout: u32,
    /// Commit durability.
    pub durability: Durability,
    /// Log filter (`WARN`, `info`, `overc=debug`); `RUST_LOG` wins when set.
    pub loglevel: Option<String>,
    /// Seconds added to every deadline before a service counts as overdue.
    pub grace: u32,
    /// History records kept per service.
    pub history_limit: u32,
    /// Days alerts are kept.
    pub retention_days: u32,
    /// Largest accepted request body in bytes.
    pub max_body: usize,
    /// Threads answering the requests that may wait on a client: the page,
    /// pings, alerts, large bodies, answers a client is slow to take. Status
    /// reports are answered by four intake threads of their own.
    pub workers: usize,
    /// How long a connection may idle or stall mid-request before it is
    /// dropped; also the most a request's head (request line and headers)
    /// may take in total.
    pub client_timeout: Duration,
    /// Connections served at once; one more is answered 503 and closed at
    /// once, without a thread.
    pub max_connections: usize,
    /// The notification policy's server-wide keys (`retries`, `flapping`,
    /// `flap-high`, `flap-low`, `group-wait`); all off by default.
    pub policy: policy::PolicyConfig,
    /// How long a write waits for a database lock before answering 503.
    pub lock_timeout: Duration,
    /// Who may register new server names.
    pub registration: Registration,
    /// `trusted-proxies`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<Cidr>,
    /// The web page's login.
    pub ui: UiConfig,
    /// Alert plugins, in file order.
    pub alert_plugins: Vec<AlertPluginConfig>,
    /// Folder commands run in: the config file's folder (or the working directory).
    pub base_dir: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:5000".into(),
            database: PathBuf::from("overc.db"),
            postgres: None,
            leader_timeout: 10,
            durability: Durability::Disk,
            loglevel: None,
            grace: 0,
            history_limit: 1000,
            retention_days: 90,
            max_body: 1024 * 1024,
            workers: 32,
            lock_timeout: Duration::from_secs(5),
            client_timeout: Duration::from_secs(10),
            registration: Registration::default(),
            trusted_proxies: Vec::new(),
            max_connections: 1024,
            policy: policy::PolicyConfig::default(),
            ui: UiConfig::default(),
            alert_plugins: Vec::new(),
            base_dir: PathBuf::from("."),
        }
    }
}

/// Keys of the `[overc]` section, also accepted as `OVERC_<KEY>` variables.
pub const SERVER_KEYS: &[&str] = &[
    "listen",
    "database",
    "durability",
    "loglevel",
    "grace",
    "history-limit",
    "retention-days",
    "max-body",
    "workers",
    "lock-timeout",
    "client-timeout",
    "registration",
    "register-from",
    "trusted-proxies",
    "max-connections",
    "retries",
    "flapping",
    "flap-high",
    "flap-low",
    "group-wait",
    "leader-timeout",
];

/// Reads INI text without touching quotes or backslashes, so that commands
/// keep their shell-like quoting for [`split_command`]. Comments are taken
/// out first by [`strip_comments`]: rust-ini's own inline comments ignore
/// quotes.
pub(crate) fn parse_ini(text: &str, source: &str) -> Result<Ini> {
    let opt = ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        ..ParseOption::default()
    };
    Ini::load_from_str_opt(&strip_comments(text), opt)
        .map_err(|e| Error::Config(format!("{source}: {e}")))
}

/// Takes comments out of INI text, line by line: a line whose first
/// non-blank character is `;` or `#` is a comment, and so is the rest of a
/// line from a `;` or `#` that follows whitespace outside quotes (`'…'`,
/// `"…"` and backslash escapes, as [`split_command`] reads them), or that
/// directly follows a section's `]`. A line whose quotes do not close is
/// read as if it had none: the apostrophe in `it's` is no quote.
pub(crate) fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        out.push_str(strip_line(body));
        out.push_str(&line[body.len()..]);
    }
    out
}

fn strip_line(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with([';', '#']) {
        return "";
    }
    if trimmed.starts_with('[') {
        if let Some(end) = line.find(']') {
            if line[end + 1..].trim_start().starts_with([';', '#']) {
                return &line[..=end];
            }
        }
    }
    let cut = match comment_at(line, true) {
        Scan::Comment(at) => Some(at),
        Scan::NoComment => None,
        Scan::OpenQuote => match comment_at(line, false) {
            Scan::Comment(at) => Some(at),
            _ => None,
        },
    };
    match cut {
        Some(at) => line[..at].trim_end(),
        None => line,
    }
}

enum Scan {
    Comment(usize),
    NoComment,
    OpenQuote,
}

/// Where a comment starts in `line`, minding quotes and escapes if `quotes`.
fn comment_at(line: &str, quotes: bool) -> Scan {
    let mut quote = None;
    let mut after_blank = false;
    let mut chars = line.char_indices();
    while let Some((at, c)) = chars.next() {
        match quote {
            Some('\'') => {
                if c == '\'' {
                    quote = None;
                }
            }
            Some(_) => match c {
                '\\' => {
                    chars.next();
                }
                '"' => quote = None,
                _ => {}
            },
            None => match c {
                ';' | '#' if after_blank => return Scan::Comment(at),
                '\\' if quotes => {
                    chars.next();
                }
                '\'' | '"' if quotes => quote = Some(c),
                _ => {}
            },
        }
        after_blank = quote.is_none() && (c == ' ' || c == '\t');
    }
    if quote.is_some() {
        Scan::OpenQuote
    } else {
        Scan::NoComment
    }
}

/// Reads a file to a string with an error that names it.
pub(crate) fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("{}: cannot read: {e}", path.display())))
}

/// The folder of a config file, for running its commands.
pub(crate) fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Splits a command line with shell-like quoting (no shell is involved).
pub fn split_command(line: &str) -> Option<Vec<String>> {
    let words = shlex::split(line)?;
    if words.is_empty() { None } else { Some(words) }
}

pub(crate) fn key_error(source: &str, section: &str, key: &str, why: &str) -> Error {
    Error::Config(format!("{source}: [{section}] {key}: {why}"))
}

pub(crate) fn parse_num<T: std::str::FromStr>(
    v: &str,
    source: &str,
    section: &str,
    key: &str,
) -> Result<T> {
    v.trim()
        .parse::<T>()
        .map_err(|_| key_error(source, section, key, &format!("not a valid number: {v:?}")))
}

/// The text of a policy error without its kind's prefix (`config: `).
pub(super) fn policy_why(e: Error) -> String {
    match e {
        Error::Config(m) | Error::Invalid(m) => m,
        other => other.to_string(),
    }
}

impl ServerConfig {
    /// Reads a config file, then applies `OVERC_<KEY>` from the process environment.
    ///
    /// # Errors
    /// [`Error::Config`] naming the file, section and key of what is wrong, or that the file cannot be read.
    pub fn from_file(path: &Path) -> Result<ServerConfig> {
        let text = read_file(path)?;
        Self::from_ini_str(&text, &path.display().to_string(), &folder_of(path), |k| {
            std::env::var(k).ok()
        })
    }

    /// Defaults with `OVERC_<KEY>` from the process environment applied.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable that is wrong.
    pub fn from_env() -> Result<ServerConfig> {
        Self::from_ini_str("", "environment", Path::new("."), |k| std::env::var(k).ok())
    }

    /// The pure twin of [`ServerConfig::from_file`]: `source` names the file in
    /// errors, `base_dir` is where plugin commands run, `env` looks variables up.
    ///
    /// # Errors
    /// [`Error::Config`] naming `source`, the section and the key of what is wrong.
    pub fn from_ini_str(
        text: &str,
        source: &str,
        base_dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ServerConfig> {
        let ini = parse_ini(text, source)?;
        let mut cfg = ServerConfig {
            base_dir: base_dir.to_path_buf(),
            ..ServerConfig::default()
        };
        let mut overc: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (section, props) in ini.iter() {
            let section = section.unwrap_or("");
            match section {
                "" => {
                    if let Some((k, _)) = props.iter().next() {
                        return Err(Error::Config(format!(
                            "{source}: key {k:?} is outside of any section; put it under [overc]"
                        )));
                    }
                }
                "overc" => {
                    for (k, v) in props.iter() {
                        if !SERVER_KEYS.contains(&k) {
                            return Err(key_error(source, "overc", k, "unknown key"));
                        }
                        overc.insert(k.to_owned(), (v.to_owned(), source.to_owned()));
                    }
                }
                "ui" => {
                    for (k, v) in props.iter() {
                        let v = Some(v.to_owned()).filter(|v| !v.is_empty());
                        match k {
                            "username" => cfg.ui.username = v,
                            "password" => cfg.ui.password = v,
                            _ => return Err(key_error(source, "ui", k, "unknown key")),
                        }
                    }
                }
                s if s.starts_with("alert:") => {
                    cfg.alert_plugins
                        .push(alert_plugin(source, s, props, &env)?);
                }
                other => {
                    return Err(Error::Config(format!(
                        "{source}: unknown section [{other}] (expected [overc], [ui] or [alert:NAME])"
                    )));
                }
            }
        }
        for key in SERVER_KEYS {
            let var = format!("OVERC_{}", key.to_uppercase().replace('-', "_"));
            if let Some(v) = env(&var) {
                overc.insert((*key).to_owned(), (v, format!("environment {var}")));
            }
        }
        for (key, (value, from)) in &overc {
            cfg.set(key, value, from)?;
        }
        cfg.policy
            .validate()
            .map_err(|e| Error::Config(format!("{source}: [overc] {}", policy_why(e))))?;
        Ok(cfg)
    }

    fn set(&mut self, key: &str, v: &str, source: &str) -> Result<()> {
        let s = "overc";
        match key {
            "listen" => {
                if v.trim().is_empty() {
                    return Err(key_error(source, s, key, "empty address"));
                }
                self.listen = v.trim().to_owned();
            }
            "database" => {
                let db = parse_database(v).map_err(|why| key_error(source, s, key, &why))?;
                self.set_database(db);
            }
            "durability" => {
                self.durability = match v.trim().to_ascii_lowercase().as_str() {
                    "disk" => Durability::Disk,
                    "process" => Durability::Process,
                    _ => return Err(key_error(source, s, key, "should be disk or process")),
                }
            }
            "loglevel" => self.loglevel = Some(v.trim().to_owned()).filter(|v| !v.is_empty()),
            "grace" => self.grace = parse_num(v, source, s, key)?,
            "leader-timeout" => {
                self.leader_timeout = parse_num(v, source, s, key)?;
                if !(2..=3600).contains(&self.leader_timeout) {
                    return Err(key_error(source, s, key, "should be 2 to 3600 seconds"));
                }
            }
            "history-limit" => {
                self.history_limit = parse_num(v, source, s, key)?;
                if self.history_limit == 0 {
                    return Err(key_error(source, s, key, "should be at least 1"));
                }
            }
            "retention-days" => {
                self.retention_days = parse_num(v, source, s, key)?;
                if self.retention_days == 0 {
                    return Err(key_error(source, s, key, "should be at least 1"));
                }
            }
            "max-body" => {
                self.max_body = parse_num(v, source, s, key)?;
                if self.max_body < 1024 {
                    return Err(key_error(source, s, key, "should be at least 1024 bytes"));
                }
            }
            "workers" => {
                self.workers = parse_num(v, source, s, key)?;
                if !(1..=1024).contains(&self.workers) {
                    return Err(key_error(source, s, key, "should be 1 to 1024"));
                }
            }
            "lock-timeout" => {
                let secs: f64 = parse_num(v, source, s, key)?;
                if !(0.001..=600.0).contains(&secs) {
                    return Err(key_error(source, s, key, "should be 0.001 to 600 seconds"));
                }
                self.lock_timeout = Duration::from_secs_f64(secs);
            }
            "client-timeout" => {
                let secs: f64 = parse_num(v, source, s, key)?;
                if !(0.001..=3600.0).contains(&secs) {
                    return Err(key_error(source, s, key, "should be 0.001 to 3600 seconds"));
                }
                self.client_timeout = Duration::from_secs_f64(secs);
            }
            "registration" => {
                self.registration.open = match v.trim().to_ascii_lowercase().as_str() {
                    "open" => true,
                    "closed" => false,
                    _ => return Err(key_error(source, s, key, "should be open or closed")),
                }
            }
            "register-from" => {
                self.registration.from =
                    parse_cidrs(v).map_err(|why| key_error(source, s, key, &why))?;
            }
            "trusted-proxies" => {
                self.trusted_proxies =
                    parse_cidrs(v).map_err(|why| key_error(source, s, key, &why))?;
            }
            "max-connections" => {
                self.max_connections = parse_num(v, source, s, key)?;
                if !(1..=1_000_000).contains(&self.max_connections) {
                    return Err(key_error(source, s, key, "should be 1 to 1000000"));
                }
            }
            "retries" => {
                let n: i64 = parse_num(v, source, s, key)?;
                self.policy.retries =
                    policy::check_retries(n).map_err(|why| key_error(source, s, key, &why))?;
            }
            "flapping" => {
                self.policy.flapping = match v.trim().to_ascii_lowercase().as_str() {
                    "on" | "yes" | "true" | "1" => true,
                    "off" | "no" | "false" | "0" => false,
                    _ => return Err(key_error(source, s, key, "should be on or off")),
                }
            }
            "flap-high" | "flap-low" => {
                let pct: f64 = parse_num(v, source, s, key)?;
                if !(0.0..=100.0).contains(&pct) {
                    return Err(key_error(
                        source,
                        s,
                        key,
                        "should be a percentage from 0 to 100",
                    ));
                }
                if key == "flap-high" {
                    self.policy.flap_high = pct;
                } else {
                    self.policy.flap_low = pct;
                }
            }
            "group-wait" => {
                self.policy.group_wait = policy::parse_duration(key, v)
                    .map_err(|e| key_error(source, s, key, &policy_why(e)))?;
                if self.policy.group_wait > policy::MAX_GROUP_WAIT {
                    return Err(key_error(source, s, key, "should be at most 3600 seconds"));
                }
            }
            _ => return Err(key_error(source, s, key, "unknown key")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::alert::ntfy_topic;
    use super::*;
    use std::net::IpAddr;

    fn parse(text: &str) -> Result<ServerConfig> {
        ServerConfig::from_ini_str(text, "server.ini", Path::new("/etc/overc"), |_| None)
    }

    #[test]
    fn spec_example_parses() {
        let cfg = parse(
            "[overc]\nlisten = 0.0.0.0:5000\ndatabase = sqlite:/var/lib/overc/overc.db ; also sqlite:PATH\n\
             durability = process\nloglevel = WARN\ngrace = 5\nhistory-limit = 10\nretention-days = 9\nmax-body = 2048\n\
             [ui]\nusername = admin\npassword = secret\n\
             [alert:log]\ncommand = ./alert.d/log.sh \"/var/log/overc alerts.log\"\ntimeout = 3\n",
        )
        .unwrap();
        assert_eq!(cfg.listen, "0.0.0.0:5000");
        assert_eq!(cfg.database, PathBuf::from("/var/lib/overc/overc.db"));
        assert_eq!(cfg.durability, Durability::Process);
        assert_eq!(cfg.grace, 5);
        assert_eq!(cfg.history_limit, 10);
        assert_eq!(cfg.max_body, 2048);
        assert_eq!(cfg.ui.password.as_deref(), Some("secret"));
        assert_eq!(
            cfg.alert_plugins[0].kind,
            PluginKind::Command(vec![
                "./alert.d/log.sh".into(),
                "/var/log/overc alerts.log".into()
            ])
        );
        assert_eq!(cfg.alert_plugins[0].timeout, Duration::from_secs(3));
        assert_eq!(cfg.base_dir, PathBuf::from("/etc/overc"));
    }

    #[test]
    fn empty_config_gives_defaults() {
        assert_eq!(
            parse("").unwrap(),
            ServerConfig {
                base_dir: "/etc/overc".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn errors_name_file_section_and_key() {
        let e = parse("[overc]\ngrace = soon\n").unwrap_err().to_string();
        assert!(
            e.contains("server.ini") && e.contains("[overc]") && e.contains("grace"),
            "{e}"
        );
        let e = parse("[overc]\nlisten_addr = x\n").unwrap_err().to_string();
        assert!(
            e.contains("listen_addr") && e.contains("unknown key"),
            "{e}"
        );
        let e = parse("[overc]\ndurability = maybe\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("durability"), "{e}");
        let e = parse("[alert:x]\ntimeout = 3\n").unwrap_err().to_string();
        assert!(e.contains("[alert:x] command: missing"), "{e}");
        let e = parse("[alert:x]\ncommand = \"unclosed\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[alert:x] command"), "{e}");
        let e = parse("[bogus]\na = 1\n").unwrap_err().to_string();
        assert!(e.contains("unknown section [bogus]"), "{e}");
    }

    #[test]
    fn monitor_config_as_in_the_spec() {
        let cfg = MonitorConfig::from_ini_str(
            "[overc]\nserver = http://user:password@mon.example.com:5000/\nmy-name = a.example.com\nmy-key = 1234\n\n\
             [service:app]\nperiod = 5\nmax-lag = 3 ; optional\ntimeout = 5\ncommand = ./plugin.d/app.sh \"httpd\"\n\
             [service:disk]\nperiod = 60\ncommand = check_disk -w 10%\n",
            "monitor.ini",
            Path::new("/etc/overc"),
        )
        .unwrap();
        assert_eq!(
            cfg.server.as_deref(),
            Some("http://user:password@mon.example.com:5000/")
        );
        assert_eq!(cfg.name.as_deref(), Some("a.example.com"));
        assert_eq!(cfg.key.as_deref(), Some("1234"));
        assert_eq!(cfg.ca_file, None);
        assert_eq!(cfg.services[0].command, vec!["./plugin.d/app.sh", "httpd"]);
        assert_eq!(cfg.services[0].max_lag, Some(3.0));
        assert_eq!(
            cfg.services[1].timeout,
            Duration::from_secs(60),
            "timeout defaults to the period"
        );
    }

    #[test]
    fn monitor_ca_file_is_taken_from_the_config_folder() {
        let parse = |line: &str| {
            MonitorConfig::from_ini_str(
                &format!("[overc]\n{line}\n[service:a]\nperiod = 5\ncommand = x\n"),
                "m.ini",
                Path::new("/etc/overc"),
            )
            .unwrap()
            .ca_file
        };
        assert_eq!(
            parse("ca-file = ca.pem"),
            Some(PathBuf::from("/etc/overc/ca.pem"))
        );
        assert_eq!(
            parse("ca-file = /usr/local/share/ca/mon.pem"),
            Some(PathBuf::from("/usr/local/share/ca/mon.pem"))
        );
        assert_eq!(parse("ca-file ="), None);
    }

    #[test]
    fn monitor_config_errors_name_file_section_and_key() {
        let parse = |t: &str| {
            MonitorConfig::from_ini_str(t, "m.ini", Path::new("."))
                .unwrap_err()
                .to_string()
        };
        let e = parse("[service:a]\ncommand = x\n");
        assert!(e.contains("m.ini: [service:a] period: missing"), "{e}");
        let e = parse("[service:a]\nperiod = soon\ncommand = x\n");
        assert!(e.contains("[service:a] period"), "{e}");
        let e = parse("[service:a]\nperiod = 5\n");
        assert!(e.contains("[service:a] command: missing"), "{e}");
        let e = parse("[services:a]\nperiod = 5\n");
        assert!(e.contains("unknown section [services:a]"), "{e}");
        let e = parse("[overc]\nmy_name = x\n[service:a]\nperiod = 5\ncommand = x\n");
        assert!(e.contains("[overc] my_name: unknown key"), "{e}");
        let e = parse("[overc]\nserver = x\n");
        assert!(e.contains("no [service:NAME]"), "{e}");
    }

    /// Regression: `;` and `#` inside quotes started a comment, so a quoted
    /// argument with either was cut and the command refused as badly quoted.
    #[test]
    fn comments_start_only_outside_quotes_in_server_configs() {
        // Not after whitespace: part of the value (and no number here).
        let e = parse("[overc]\ngrace = 5;x\n").unwrap_err().to_string();
        assert!(e.contains("grace") && e.contains("5;x"), "{e}");
        let cfg = parse(
            "[overc] ; the server\n  ; an indented comment\n\t# another\n\
             database = a.db # the file\n\
             [ui]\nusername = admin\t; tab before\npassword = se#cr;et ; trailing\n\
             [alert:log]\ncommand = ./log.sh \"ticket #12 ; see wiki\" 'a # b' \"say \\\"hi ; there\\\"\" ; a comment\n",
        )
        .unwrap();
        assert_eq!(cfg.database, PathBuf::from("a.db"));
        assert_eq!(cfg.ui.username.as_deref(), Some("admin"));
        assert_eq!(cfg.ui.password.as_deref(), Some("se#cr;et"));
        assert_eq!(
            cfg.alert_plugins[0].kind,
            PluginKind::Command(
                [
                    "./log.sh",
                    "ticket #12 ; see wiki",
                    "a # b",
                    "say \"hi ; there\""
                ]
                .map(String::from)
                .to_vec()
            )
        );
        // A lone apostrophe is no quote: the comment after it still is one.
        let cfg = parse("[ui]\npassword = it's ; a comment\n").unwrap();
        assert_eq!(cfg.ui.password.as_deref(), Some("it's"));
    }

    #[test]
    fn comments_start_only_outside_quotes_in_monitor_configs() {
        let cfg = MonitorConfig::from_ini_str(
            "[overc]\nmy-name = a ; the host\n\
             [service:dummy] # a check\nperiod = 60 # a minute\n\
             command = check_dummy 0 \"ticket #12 ; see wiki\"\n",
            "monitor.ini",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(cfg.name.as_deref(), Some("a"));
        assert_eq!(cfg.services[0].period, 60);
        assert_eq!(
            cfg.services[0].command,
            vec!["check_dummy", "0", "ticket #12 ; see wiki"]
        );
    }

    #[test]
    fn database_is_sqlite_or_refused_naming_what_is_supported() {
        for (given, path) in [
            ("a.db", "a.db"),
            ("sqlite:a.db", "a.db"),
            ("sqlite:///var/lib/overc.db", "/var/lib/overc.db"),
            ("SQLite:/x.db", "/x.db"),
            ("./odd://name.db", "./odd://name.db"),
        ] {
            assert_eq!(
                parse_database(given),
                Ok(Database::Sqlite(PathBuf::from(path))),
                "{given}"
            );
        }
        let e = parse("[overc]\ndatabase = mysql://overc:hunter2@localhost/overc\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("server.ini: [overc] database: mysql://… is not supported")
                && e.contains("sqlite:PATH")
                && !e.contains("hunter2"),
            "{e}"
        );
        if !cfg!(feature = "postgres") {
            let e = parse_database("postgres://db/overc").unwrap_err();
            assert!(e.contains("needs overc built with the feature"), "{e}");
        }
        assert!(parse_database("sqlite:").is_err());
        assert!(parse_database(" ").is_err());
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn database_takes_postgres_urls_and_never_shows_their_password() {
        for url in [
            "postgres://overc:hunter2@db.example:5432/overc",
            "postgresql://overc:hunter2@127.0.0.1/overc?sslmode=disable",
            "postgres://overc@db/overc?sslmode=prefer&password=hunter2",
            "postgres://overc:hunter2@db/overc?sslmode=require",
            "postgres://overc:hunter2@db/overc?sslmode=verify-full&sslrootcert=/etc/overc/ca.pem",
        ] {
            let cfg = parse(&format!("[overc]\ndatabase = {url}\n")).unwrap();
            let pg = cfg.postgres.clone().expect(url);
            assert_eq!(pg.expose(), url);
            for shown in [format!("{pg}"), format!("{pg:?}"), format!("{cfg:?}")] {
                assert!(!shown.contains("hunter2"), "{shown}");
            }
        }
        let pg = parse("[overc]\ndatabase = postgres://u:pw@h:5433/d\n")
            .unwrap()
            .postgres;
        assert_eq!(pg.unwrap().to_string(), "postgres://u:***@h:5433/d");
        for (bad, why) in [
            ("postgres://u:hunter2@h/d?sslmode=allow", "sslmode=allow"),
            ("postgres://u:hunter2@h/d?sslmode=bogus", "sslmode"),
            ("postgres://u:hunter2@h", "no database name"),
        ] {
            let e = parse(&format!("[overc]\ndatabase = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("[overc] database:") && e.contains(why), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        let e = parse("[overc]\ndatabase = mysql://overc:hunter2@localhost/overc\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("postgres://USER:PASSWORD@HOST:PORT/DB"), "{e}");
        // A later sqlite: setting wins over an earlier postgres:// one.
        let mut cfg = parse("[overc]\ndatabase = postgres://u@h/d\n").unwrap();
        cfg.set_database(parse_database("sqlite:x.db").unwrap());
        assert_eq!((cfg.postgres, cfg.database), (None, PathBuf::from("x.db")));
    }

    #[test]
    fn max_connections_is_a_key_with_a_default_and_bounds() {
        assert_eq!(parse("[overc]\n").unwrap().max_connections, 1024);
        let c = parse("[overc]\nmax-connections = 50\n").unwrap();
        assert_eq!(c.max_connections, 50);
        let e = parse("[overc]\nmax-connections = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("max-connections") && e.contains("1 to 1000000"),
            "{e}"
        );
    }

    #[test]
    fn policy_keys_are_read_and_checked() {
        let c = parse("[overc]\nretries = 3\nflapping = on\nflap-high = 40\nflap-low = 20\ngroup-wait = 1m\n[alert:pager]\ncommand = true\nseverities = FAIL, UNK\nservers = web*\nrepeat = 4h\n").unwrap();
        assert_eq!(c.policy.retries, 3);
        assert!(c.policy.flapping);
        assert_eq!((c.policy.flap_high, c.policy.flap_low), (40.0, 20.0));
        assert_eq!(c.policy.group_wait, 60);
        let p = &c.alert_plugins[0].policy;
        assert_eq!(p.repeat, Some(4 * 3600));
        assert_eq!(
            p.route.severities,
            Some(vec![crate::State::Fail, crate::State::Unk])
        );
        let default = parse("[overc]\n").unwrap();
        assert_eq!(default.policy, policy::PolicyConfig::default(), "all off");
        for (text, key) in [
            ("[overc]\nretries = 0\n", "retries"),
            ("[overc]\nretries = 101\n", "retries"),
            ("[overc]\nflapping = maybe\n", "flapping"),
            ("[overc]\nflap-high = 20\nflap-low = 30\n", "flap-low"),
            ("[overc]\ngroup-wait = 2h\n", "group-wait"),
            ("[alert:x]\ncommand = true\nseverities = BAD\n", "BAD"),
            ("[alert:x]\ncommand = true\nrepeat = soon\n", "repeat"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_shipped_configs_parse() {
        let shipped = parse(include_str!("../../misc/server.ini")).unwrap();
        assert!(shipped.policy.flapping, "the recommended policy is on");
        MonitorConfig::from_ini_str(
            include_str!("../../misc/monitor.ini"),
            "monitor.ini",
            Path::new("/etc/overc"),
        )
        .unwrap();
    }

    #[test]
    fn cidrs_hold_their_addresses() {
        let net = |s: &str| s.parse::<Cidr>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(net("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("192.168.1.7").contains(ip("192.168.1.7")));
        assert!(!net("192.168.1.7").contains(ip("192.168.1.8")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!net("0.0.0.0/0").contains(ip("::1")));
        assert!(net("2001:db8::/32").contains(ip("2001:db8:1::5")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::5")));
        assert!(net("::/0").contains(ip("fe80::1")));
        // A dual-stack socket's IPv4 peer.
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(net("::ffff:10.0.0.1").contains(ip("10.0.0.1")));
        assert_eq!(net("10.1.2.3/8").to_string(), "10.1.2.3/8");
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "host",
            "10.0.0.0/",
            "/8",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn registration_and_proxies_are_read_from_overc() {
        assert_eq!(parse("").unwrap().registration, Registration::default());
        assert!(Registration::default().allows("203.0.113.9"));
        assert!(Registration::default().allows(""));
        let cfg = parse(
            "[overc]\nregistration = closed\nregister-from = 10.0.0.0/8, fd00::/8\n\
             trusted-proxies = 127.0.0.1 ::1\n",
        )
        .unwrap();
        assert!(!cfg.registration.open);
        assert!(!cfg.registration.allows("10.0.0.1"), "closed wins");
        assert_eq!(cfg.trusted_proxies.len(), 2);
        let open_from = Registration {
            open: true,
            ..cfg.registration.clone()
        };
        assert!(open_from.allows("10.9.8.7"));
        assert!(open_from.allows("fd12::1"));
        assert!(!open_from.allows("192.168.0.1"));
        assert!(!open_from.allows(""), "an unknown address is outside");
        let e = parse("[overc]\nregistration = maybe\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[overc] registration: should be open or closed"),
            "{e}"
        );
        let e = parse("[overc]\nregister-from = 10.0.0.0/8, lan\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[overc] register-from: \"lan\" is not an IP"),
            "{e}"
        );
        let e = ServerConfig::from_ini_str("", "f", Path::new("."), |k| {
            (k == "OVERC_TRUSTED_PROXIES").then(|| "10.0.0.0/99".to_owned())
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("environment OVERC_TRUSTED_PROXIES") && e.contains("trusted-proxies"),
            "{e}"
        );
    }

    #[test]
    fn webhooks_are_read_with_their_preset_and_headers() {
        let cfg = ServerConfig::from_ini_str(
            "[alert:slack]\nwebhook = https://hooks.slack.com/services/${SLACK_PATH}\nformat = Slack\ntimeout = 5\n\
             [alert:hook]\nwebhook = http://10.0.0.1:8080/overc?x=1\n\
             header = Authorization: Bearer ${TOKEN}\nheader = X-Cost: $$5 and $${NOT}\n",
            "server.ini",
            Path::new("."),
            |k| match k {
                "SLACK_PATH" => Some("T0/B0/xyz".into()),
                "TOKEN" => Some("t0ken".into()),
                _ => None,
            },
        )
        .unwrap();
        let [slack, hook] = &cfg.alert_plugins[..] else {
            panic!("{:?}", cfg.alert_plugins)
        };
        assert_eq!(slack.timeout, Duration::from_secs(5));
        assert_eq!(
            slack.kind,
            PluginKind::Webhook(WebhookConfig {
                url: "https://hooks.slack.com/services/T0/B0/xyz".into(),
                format: WebhookFormat::Slack,
                headers: vec![],
                chat_id: None,
            })
        );
        assert_eq!(hook.timeout, Duration::from_secs(30));
        let PluginKind::Webhook(w) = &hook.kind else {
            panic!()
        };
        assert_eq!(w.format, WebhookFormat::Generic);
        assert_eq!(
            w.headers,
            vec![
                ("Authorization".to_owned(), "Bearer t0ken".to_owned()),
                ("X-Cost".to_owned(), "$$5 and ${NOT}".to_owned()),
            ]
        );
    }

    #[test]
    fn bad_webhooks_are_refused_naming_the_key() {
        let e = |t: &str| parse(t).unwrap_err().to_string();
        for (text, want) in [
            (
                "[alert:x]\nwebhook = ftp://x/\n",
                "[alert:x] webhook: should be an http",
            ),
            (
                "[alert:x]\nwebhook = https:///path\n",
                "[alert:x] webhook: should be an http",
            ),
            (
                "[alert:x]\nwebhook = http://x/\ncommand = a\n",
                "[alert:x] webhook: set either",
            ),
            (
                "[alert:x]\nwebhook = http://x/\nformat = teams\n",
                "[alert:x] format: should be generic",
            ),
            (
                "[alert:x]\nwebhook = http://x/${TOKEN}\n",
                "[alert:x] webhook: ${TOKEN}: the environment variable TOKEN is not set",
            ),
            (
                "[alert:x]\nwebhook = http://x/${TOKEN\n",
                "[alert:x] webhook: a ${ without its }",
            ),
            (
                "[alert:x]\nwebhook = http://x/\nformat = telegram\n",
                "[alert:x] chat-id: missing",
            ),
            (
                "[alert:x]\nwebhook = https://ntfy.sh/\nformat = ntfy\n",
                "[alert:x] webhook: format = ntfy needs the topic",
            ),
            (
                "[alert:x]\nwebhook = http://x/\nheader = Authorization Bearer\n",
                "[alert:x] header: should be Name: value",
            ),
            (
                "[alert:x]\nwebhook = http://x/\nheader = Bad Name: v\n",
                "[alert:x] header: \"Bad Name\" is not a header name",
            ),
            (
                "[alert:x]\nwebhook = http://x/\nheader = X: caf\u{e9}\n",
                "[alert:x] header: the value of X should be printable ASCII",
            ),
            (
                "[alert:x]\ncommand = ./a.sh\nheader = X: y\n",
                "[alert:x] header: is for webhook = URL only",
            ),
            (
                "[alert:x]\ntimeout = 3\n",
                "[alert:x] command: missing (or set webhook = URL)",
            ),
        ] {
            let got = e(text);
            assert!(got.contains(want), "{text:?}: {got}");
        }
        // A header from the environment cannot smuggle in a line break.
        let e = ServerConfig::from_ini_str(
            "[alert:x]\nwebhook = http://x/\nheader = X-Token: ${T}\n",
            "f",
            Path::new("."),
            |_| Some("a\r\nEvil: 1".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("[alert:x] header") && !e.contains("Evil"), "{e}");
    }

    #[test]
    fn ntfy_urls_split_into_root_and_topic() {
        assert_eq!(
            ntfy_topic("https://ntfy.sh/alerts"),
            Some(("https://ntfy.sh/", "alerts"))
        );
        assert_eq!(
            ntfy_topic("https://ntfy.sh/alerts/"),
            Some(("https://ntfy.sh/", "alerts"))
        );
        assert_eq!(
            ntfy_topic("http://h:81/ntfy/ops"),
            Some(("http://h:81/ntfy/", "ops"))
        );
        for none in [
            "https://ntfy.sh/",
            "https://ntfy.sh",
            "https://ntfy.sh/a?x=1",
        ] {
            assert_eq!(ntfy_topic(none), None, "{none}");
        }
    }

    #[test]
    fn environment_overrides_file() {
        let cfg =
            ServerConfig::from_ini_str("[overc]\ndatabase = a.db\n", "f", Path::new("."), |k| {
                (k == "OVERC_DATABASE").then(|| "b.db".to_owned())
            })
            .unwrap();
        assert_eq!(cfg.database, PathBuf::from("b.db"));
        let e = ServerConfig::from_ini_str("", "f", Path::new("."), |k| {
            (k == "OVERC_HISTORY_LIMIT").then(|| "lots".to_owned())
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("environment OVERC_HISTORY_LIMIT") && e.contains("history-limit"),
            "{e}"
        );
    }
}
