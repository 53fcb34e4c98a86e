//! Configuration: INI file + `OVERC_<KEY>` environment + flags → one typed,
//! validated config. Every error names the file, section and key.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ini::{Ini, ParseOption};

use crate::error::{Error, Result};
use crate::policy;

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

/// An IP network such as `10.0.0.0/8` or `2001:db8::/32`; a bare address
/// is a network of that one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address
    /// (`::ffff:10.1.2.3`, as a dual-stack socket reports IPv4 peers) counts
    /// as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Whether any of `nets` holds `ip`.
    pub fn any_contains(nets: &[Cidr], ip: IpAddr) -> bool {
        nets.iter().any(|n| n.contains(ip))
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Cidr, String> {
        let bad =
            || format!("{s:?} is not an IP address or network (such as 10.0.0.0/8 or fd00::/8)");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(bad()),
            },
        };
        Ok(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Reads `CIDR, CIDR …` (commas and/or blanks between them; empty: none).
fn parse_cidrs(v: &str) -> std::result::Result<Vec<Cidr>, String> {
    v.split([',', ' ', '\t'])
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

/// Who may register a new server name (trust on first use): `[overc]
/// registration` and `register-from`. Hosts already registered keep
/// reporting whatever this says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// `registration = open` (the default, as OverC 1.0.9): an unknown name
    /// registers with the key it brings. `closed`: only an operator adds
    /// hosts (`POST /ui/api/hosts`).
    pub open: bool,
    /// `register-from`: the networks new names may register from; empty
    /// means from anywhere.
    pub from: Vec<Cidr>,
}

impl Default for Registration {
    fn default() -> Self {
        Registration {
            open: true,
            from: Vec::new(),
        }
    }
}

impl Registration {
    /// Whether a client at `ip` (as text; empty when unknown) may register
    /// a new server name.
    pub fn allows(&self, ip: &str) -> bool {
        self.open
            && (self.from.is_empty()
                || ip
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| Cidr::any_contains(&self.from, ip)))
    }
}

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

/// Where the data lives, as `database =` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (feature `postgres`).
    Postgres(PostgresUrl),
}

/// A PostgreSQL connection URL, `postgres://USER:PASSWORD@HOST:PORT/DB`
/// (also `postgresql://`, with libpq-style parameters such as
/// `?sslmode=disable`). `Debug` and `Display` show it without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// The URL as given, password included: for connecting, never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password (in the user part or a `password=`
    /// parameter) replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({:?})", self.redacted())
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `url` without its password.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

impl ServerConfig {
    /// Keeps the data where `db` says: an SQLite file, or PostgreSQL.
    pub fn set_database(&mut self, db: Database) {
        match db {
            Database::Sqlite(path) => {
                self.database = path;
                self.postgres = None;
            }
            Database::Postgres(url) => self.postgres = Some(url),
        }
    }
}

/// Reads a `database` setting: `sqlite:PATH` (also `sqlite://PATH`) or a
/// plain file path for SQLite; `postgres://…` or `postgresql://…` for
/// PostgreSQL (feature `postgres`).
///
/// # Errors
///
/// Any other `scheme://…`, such as the original OverC's `mysql://…`, or a
/// PostgreSQL URL in a build without the feature, with a message saying
/// what is supported. The message never repeats a password.
pub fn parse_database(value: &str) -> std::result::Result<Database, String> {
    let v = value.trim();
    let sqlite = v.get(..7).filter(|p| p.eq_ignore_ascii_case("sqlite:"));
    let path = match sqlite {
        Some(_) => v[7..].strip_prefix("//").unwrap_or(&v[7..]),
        None => v,
    };
    let supported = if cfg!(feature = "postgres") {
        "use postgres://USER:PASSWORD@HOST:PORT/DB (PostgreSQL), sqlite:PATH or a plain file path (SQLite)"
    } else {
        "use sqlite:PATH or a plain file path (SQLite)"
    };
    if let Some(scheme) = url_scheme(path).filter(|_| sqlite.is_none()) {
        let postgres = ["postgres", "postgresql"]
            .iter()
            .any(|p| scheme.eq_ignore_ascii_case(p));
        if !postgres {
            return Err(format!("{scheme}://… is not supported; {supported}"));
        }
        if !cfg!(feature = "postgres") {
            return Err(format!(
                "{scheme}://… needs overc built with the feature `postgres`; {supported}"
            ));
        }
        return check_postgres_url(path).map(Database::Postgres);
    }
    if path.is_empty() {
        return Err("empty path".into());
    }
    Ok(Database::Sqlite(PathBuf::from(path)))
}

/// A PostgreSQL URL the client library understands, without TLS (this
/// build connects in plain text: `sslmode=require` is refused).
#[cfg(feature = "postgres")]
fn check_postgres_url(url: &str) -> std::result::Result<PostgresUrl, String> {
    let redacted = redact_url(url);
    let config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
        // The library's message names an option, never the URL; redact anyway.
        format!("{redacted}: {}", redact_url(&e.to_string()))
    })?;
    if config.get_ssl_mode() == postgres::config::SslMode::Require {
        return Err(format!(
            "{redacted}: sslmode=require is not supported yet (this build has no TLS to PostgreSQL); \
             use sslmode=disable or prefer, over a trusted network or a local socket"
        ));
    }
    if config.get_dbname().is_none() {
        return Err(format!(
            "{redacted}: no database name (postgres://USER:PASSWORD@HOST:PORT/DB)"
        ));
    }
    Ok(PostgresUrl(url.to_owned()))
}

#[cfg(not(feature = "postgres"))]
fn check_postgres_url(url: &str) -> std::result::Result<PostgresUrl, String> {
    Ok(PostgresUrl(url.to_owned()))
}

fn url_scheme(v: &str) -> Option<&str> {
    let (scheme, _) = v.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
        .then_some(scheme)
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

/// One `[alert:NAME]` section: `command =` or `webhook =` with their keys.
fn alert_plugin(
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

/// The text of a policy error without its kind's prefix (`config: `).
fn policy_why(e: Error) -> String {
    match e {
        Error::Config(m) | Error::Invalid(m) => m,
        other => other.to_string(),
    }
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
fn webhook_url(url: &str) -> std::result::Result<String, String> {
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
fn header(v: &str) -> std::result::Result<(String, String), String> {
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

/// One `[service:NAME]` section of a monitor config.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// Service name as reported.
    pub name: String,
    /// Seconds between reports the server is promised.
    pub period: u32,
    /// Seconds reserved for the run and the trip to the server; 3 × the last
    /// run time when not set.
    pub max_lag: Option<f64>,
    /// Plugin timeout (default: the period).
    pub timeout: Duration,
    /// Program and arguments, split with shell-like quoting.
    pub command: Vec<String>,
    /// `retries`: non-OK results in a row before the server notifies the
    /// problem (SPEC §9); sent with each state; `None`: the server decides.
    pub retries: Option<u8>,
}

/// An `overcli monitor` config: where to report, as whom, and what to run.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// Server URL (`[overc] server`), if set.
    pub server: Option<String>,
    /// `[overc] my-name`.
    pub name: Option<String>,
    /// `[overc] my-key`.
    pub key: Option<String>,
    /// `[overc] ca-file`: PEM file of the CA certificates to trust for HTTPS
    /// instead of the bundled roots; a relative path is taken from the
    /// config file's folder.
    pub ca_file: Option<PathBuf>,
    /// The services, in file order.
    pub services: Vec<ServiceConfig>,
    /// Folder plugin commands run in (the config file's folder).
    pub base_dir: PathBuf,
}

impl MonitorConfig {
    /// Reads a monitor config file.
    ///
    /// # Errors
    /// As [`ServerConfig::from_file`].
    pub fn from_file(path: &Path) -> Result<MonitorConfig> {
        let text = read_file(path)?;
        Self::from_ini_str(&text, &path.display().to_string(), &folder_of(path))
    }

    /// The pure twin of [`MonitorConfig::from_file`].
    ///
    /// # Errors
    /// As [`ServerConfig::from_ini_str`].
    pub fn from_ini_str(text: &str, source: &str, base_dir: &Path) -> Result<MonitorConfig> {
        let ini = parse_ini(text, source)?;
        let mut cfg = MonitorConfig {
            server: None,
            name: None,
            key: None,
            ca_file: None,
            services: Vec::new(),
            base_dir: base_dir.to_path_buf(),
        };
        for (section, props) in ini.iter() {
            let section = section.unwrap_or("");
            if section.is_empty() {
                if let Some((k, _)) = props.iter().next() {
                    return Err(Error::Config(format!(
                        "{source}: key {k:?} is outside of any section; put it under [overc]"
                    )));
                }
            } else if section == "overc" {
                for (k, v) in props.iter() {
                    let v = Some(v.trim().to_owned()).filter(|v| !v.is_empty());
                    match k {
                        "server" => cfg.server = v,
                        "my-name" => cfg.name = v,
                        "my-key" => cfg.key = v,
                        // Read when the client is made, so that `check`,
                        // which sends nothing, does not need it.
                        "ca-file" => cfg.ca_file = v.map(|p| base_dir.join(p)),
                        _ => return Err(key_error(source, section, k, "unknown key")),
                    }
                }
            } else if let Some(name) = section.strip_prefix("service:") {
                if name.is_empty() || name.chars().count() > 64 {
                    return Err(Error::Config(format!(
                        "{source}: [{section}]: the service name should be 1 to 64 characters"
                    )));
                }
                if cfg.services.iter().any(|s| s.name == name) {
                    return Err(Error::Config(format!(
                        "{source}: [{section}] appears twice"
                    )));
                }
                let mut period = None;
                let mut max_lag = None;
                let mut timeout = None;
                let mut command = None;
                let mut retries = None;
                for (k, v) in props.iter() {
                    match k {
                        "retries" => {
                            let n: i64 = parse_num(v, source, section, k)?;
                            retries = Some(
                                policy::check_retries(n)
                                    .map_err(|why| key_error(source, section, k, &why))?,
                            );
                        }
                        "period" => {
                            let p: u32 = parse_num(v, source, section, k)?;
                            if !(1..=crate::protocol::MAX_PERIOD).contains(&p) {
                                return Err(key_error(
                                    source,
                                    section,
                                    k,
                                    "should be 1 to 31536000 seconds",
                                ));
                            }
                            period = Some(p);
                        }
                        "max-lag" => {
                            let l: f64 = parse_num(v, source, section, k)?;
                            if !(0.0..=86_400.0).contains(&l) {
                                return Err(key_error(
                                    source,
                                    section,
                                    k,
                                    "should be 0 to 86400 seconds",
                                ));
                            }
                            max_lag = Some(l);
                        }
                        "timeout" => {
                            let t: f64 = parse_num(v, source, section, k)?;
                            if !(t > 0.0 && t <= 86_400.0) {
                                return Err(key_error(
                                    source,
                                    section,
                                    k,
                                    "should be more than 0 and at most 86400 seconds",
                                ));
                            }
                            timeout = Some(Duration::from_secs_f64(t));
                        }
                        "command" => {
                            command = Some(split_command(v).ok_or_else(|| {
                                key_error(source, section, k, "empty or badly quoted command")
                            })?)
                        }
                        _ => return Err(key_error(source, section, k, "unknown key")),
                    }
                }
                let period =
                    period.ok_or_else(|| key_error(source, section, "period", "missing"))?;
                let command =
                    command.ok_or_else(|| key_error(source, section, "command", "missing"))?;
                cfg.services.push(ServiceConfig {
                    name: name.to_owned(),
                    period,
                    max_lag,
                    timeout: timeout.unwrap_or(Duration::from_secs(u64::from(period))),
                    command,
                    retries,
                });
            } else {
                return Err(Error::Config(format!(
                    "{source}: unknown section [{section}] (expected [overc] or [service:NAME])"
                )));
            }
        }
        if cfg.services.is_empty() {
            return Err(Error::Config(format!(
                "{source}: no [service:NAME] sections"
            )));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            (
                "postgres://u:hunter2@h/d?sslmode=require",
                "sslmode=require",
            ),
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
        let shipped = parse(include_str!("../misc/server.ini")).unwrap();
        assert!(shipped.policy.flapping, "the recommended policy is on");
        MonitorConfig::from_ini_str(
            include_str!("../misc/monitor.ini"),
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
