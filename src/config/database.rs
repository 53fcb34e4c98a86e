//! `database =`: an SQLite file or a PostgreSQL URL, never shown with its
//! password.

use std::path::{Path, PathBuf};

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
/// `?sslmode=verify-full&sslrootcert=/etc/overc/pg-ca.pem`). `Debug` and
/// `Display` show it without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    given: String,
    /// The URL for the client library: without `sslrootcert`, with the
    /// `sslmode` it knows (TLS or not; the checks are overc's).
    client: String,
    ssl_mode: SslMode,
    root_cert: Option<PathBuf>,
}

/// How connections to PostgreSQL use TLS: libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Plain text.
    Disable,
    /// TLS when the server offers it, else plain text; the certificate
    /// is not checked (libpq's default).
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked: encrypted,
    /// not authenticated.
    Require,
    /// TLS, and the server's certificate chain verified against
    /// `sslrootcert` (or the built-in roots), not its host name. Also
    /// `sslmode=require` with a `sslrootcert` file, as libpq.
    VerifyCa,
    /// TLS, and the chain and the host name verified.
    VerifyFull,
}

impl SslMode {
    /// Its name in `sslmode=`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(text: &str) -> std::result::Result<SslMode, String> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow is not supported: use prefer (TLS when the server offers it) \
                     or disable"
                        .into(),
                );
            }
            other => {
                return Err(format!(
                    "sslmode={other}: use disable, prefer, require, verify-ca or verify-full"
                ));
            }
        })
    }

    /// Whether the server's certificate is verified.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl PostgresUrl {
    /// The URL as given, password included: for connecting, never for logs.
    pub fn expose(&self) -> &str {
        &self.given
    }

    /// The URL with its password (in the user part or a `password=`
    /// parameter) replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.given)
    }

    /// How connections use TLS (`sslmode=`; `sslmode=require` with a
    /// `sslrootcert` file is [`SslMode::VerifyCa`], as with libpq).
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The CA certificates (PEM) the server's certificate is verified
    /// against (`sslrootcert=PATH`); `None`: the built-in Mozilla roots
    /// (also `sslrootcert=system`), as the HTTPS client's.
    pub fn root_cert(&self) -> Option<&Path> {
        self.root_cert.as_deref()
    }

    /// The URL for the client library, which does not know `verify-ca`,
    /// `verify-full` or `sslrootcert`: overc checks the certificate itself.
    // Only the PostgreSQL backend connects; a build without it only checks.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn for_client(&self) -> &str {
        &self.client
    }

    /// Reads the TLS parameters of `url`.
    ///
    /// # Errors
    /// An `sslmode` that is not supported, a `sslrootcert` that is not a
    /// path, or `sslrootcert=system` with less than `verify-full`.
    pub(super) fn parse(url: &str) -> std::result::Result<PostgresUrl, String> {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (url, None),
        };
        let mut kept = Vec::new();
        let (mut mode, mut root) = (None, None);
        for param in query.into_iter().flat_map(|q| q.split('&')) {
            match param.split_once('=') {
                Some(("sslmode", v)) => mode = Some(SslMode::parse(&percent_decode(v)?)?),
                Some(("sslrootcert", v)) => {
                    let path = percent_decode(v)?;
                    if path.is_empty() {
                        return Err("sslrootcert= names no file".into());
                    }
                    root = Some(path);
                }
                _ => kept.push(param),
            }
        }
        let system = root.as_deref() == Some("system");
        let mode = match (mode, &root) {
            // libpq: the system roots mean verify-full, and nothing less.
            (None, _) if system => SslMode::VerifyFull,
            (Some(m), _) if system && m != SslMode::VerifyFull => {
                return Err(format!(
                    "sslrootcert=system needs sslmode=verify-full, not {}",
                    m.as_str()
                ));
            }
            // libpq: require with a root certificate file verifies the chain.
            (Some(SslMode::Require), Some(_)) => SslMode::VerifyCa,
            (m, _) => m.unwrap_or_default(),
        };
        // The library's modes: whether to use TLS at all.
        kept.push(match mode {
            SslMode::Disable => "sslmode=disable",
            SslMode::Prefer => "sslmode=prefer",
            _ => "sslmode=require",
        });
        Ok(PostgresUrl {
            given: url.to_owned(),
            client: format!("{base}?{}", kept.join("&")),
            ssl_mode: mode,
            root_cert: root.filter(|_| !system).map(PathBuf::from),
        })
    }
}

/// `%XX` escapes of a URL parameter decoded.
fn percent_decode(text: &str) -> std::result::Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{text:?}: a % that is not followed by two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?}: not UTF-8 once decoded"))
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

/// A PostgreSQL URL the client library understands, with libpq's TLS
/// parameters (`sslmode`, `sslrootcert`) read by overc.
#[cfg(feature = "postgres")]
pub(super) fn check_postgres_url(url: &str) -> std::result::Result<PostgresUrl, String> {
    let redacted = redact_url(url);
    let parsed = PostgresUrl::parse(url).map_err(|e| format!("{redacted}: {e}"))?;
    let config: postgres::Config = parsed.for_client().parse().map_err(|e: postgres::Error| {
        // The library's message names an option, never the URL; redact anyway.
        format!("{redacted}: {}", redact_url(&e.to_string()))
    })?;
    if config.get_dbname().is_none() {
        return Err(format!(
            "{redacted}: no database name (postgres://USER:PASSWORD@HOST:PORT/DB)"
        ));
    }
    Ok(parsed)
}

#[cfg(not(feature = "postgres"))]
pub(super) fn check_postgres_url(url: &str) -> std::result::Result<PostgresUrl, String> {
    PostgresUrl::parse(url)
}

pub(super) fn url_scheme(v: &str) -> Option<&str> {
    let (scheme, _) = v.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
        .then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(url: &str) -> (SslMode, Option<PathBuf>, String) {
        let u = PostgresUrl::parse(url).unwrap();
        (
            u.ssl_mode(),
            u.root_cert().map(Path::to_owned),
            u.for_client().to_owned(),
        )
    }

    #[test]
    fn sslmode_and_sslrootcert_are_read_as_libpq_reads_them() {
        let base = "postgres://u:pw@db:5432/d";
        assert_eq!(
            tls(base),
            (SslMode::Prefer, None, format!("{base}?sslmode=prefer")),
            "libpq's default"
        );
        for (mode, client) in [
            (SslMode::Disable, "disable"),
            (SslMode::Prefer, "prefer"),
            (SslMode::Require, "require"),
            (SslMode::VerifyCa, "require"),
            (SslMode::VerifyFull, "require"),
        ] {
            let url = format!("{base}?application_name=x&sslmode={}", mode.as_str());
            assert_eq!(
                tls(&url),
                (
                    mode,
                    None,
                    format!("{base}?application_name=x&sslmode={client}")
                )
            );
        }
        // The file (percent-escapes decoded) is overc's: not passed on.
        let (mode, root, client) = tls(&format!(
            "{base}?sslrootcert=%2Fetc%2Fpg%20ca.pem&sslmode=verify-full&connect_timeout=3"
        ));
        assert_eq!(mode, SslMode::VerifyFull);
        assert_eq!(root, Some(PathBuf::from("/etc/pg ca.pem")));
        assert_eq!(client, format!("{base}?connect_timeout=3&sslmode=require"));
        // require with a root certificate verifies the chain (libpq).
        let (mode, ..) = tls(&format!("{base}?sslmode=require&sslrootcert=ca.pem"));
        assert_eq!(mode, SslMode::VerifyCa);
        // The system roots: verify-full, and nothing less.
        assert_eq!(
            tls(&format!("{base}?sslrootcert=system")),
            (SslMode::VerifyFull, None, format!("{base}?sslmode=require"))
        );
        // The last one given wins, as with the client library.
        assert_eq!(
            tls(&format!("{base}?sslmode=require&sslmode=disable")).0,
            SslMode::Disable
        );
    }

    #[test]
    fn tls_parameters_it_cannot_honour_are_refused_saying_why() {
        let base = "postgres://u:pw@db/d";
        for (query, why) in [
            ("sslmode=allow", "use prefer"),
            (
                "sslmode=verify",
                "use disable, prefer, require, verify-ca or verify-full",
            ),
            ("sslmode=VERIFY-FULL", "sslmode=VERIFY-FULL"),
            ("sslrootcert=", "names no file"),
            ("sslrootcert=a%2", "two hex digits"),
            (
                "sslrootcert=system&sslmode=require",
                "needs sslmode=verify-full",
            ),
        ] {
            let e = PostgresUrl::parse(&format!("{base}?{query}")).unwrap_err();
            assert!(e.contains(why), "{query}: {e}");
        }
    }
}
