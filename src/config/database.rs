//! `database =`: an SQLite file or a PostgreSQL URL, never shown with its
//! password.

use std::path::PathBuf;

use super::ServerConfig;

/// Where the data lives, as `database =` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (feature `postgres`).
    Postgres(PostgresUrl),
}

/// `sqlite:PATH`, or the URL without its password.
impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Database::Postgres(url) => url.fmt(f),
        }
    }
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
pub(super) fn redact_url(url: &str) -> String {
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
pub(super) fn check_postgres_url(url: &str) -> std::result::Result<PostgresUrl, String> {
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
pub(super) fn check_postgres_url(url: &str) -> std::result::Result<PostgresUrl, String> {
    Ok(PostgresUrl(url.to_owned()))
}

pub(super) fn url_scheme(v: &str) -> Option<&str> {
    let (scheme, _) = v.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
        .then_some(scheme)
}
