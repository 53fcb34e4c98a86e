//! The crate's error type.

use std::fmt;

/// Everything that can go wrong in overc's library calls.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A request body broke the wire protocol; the message names the field.
    Invalid(String),
    /// The server name is registered with another key.
    Forbidden(String),
    /// The server, service or alert asked for does not exist.
    NotFound(String),
    /// The request does not fit the current state of what it is about
    /// (acknowledging a service that is not in a problem).
    Conflict(String),
    /// A configuration file, flag or environment variable is wrong.
    Config(String),
    /// The database could not be used (disk full, locked, corrupt).
    Storage(String),
    /// The remote overc server refused the request (HTTP status and its message).
    Refused {
        /// HTTP status code of the answer.
        status: u16,
        /// The server's `error` message.
        message: String,
    },
    /// The server could not listen on its address (in use, not ours, or a
    /// port that needs privileges); [`source`](std::error::Error::source) is
    /// the I/O error.
    Listen {
        /// The address asked for.
        addr: String,
        /// Why not.
        source: std::io::Error,
    },
    /// An operating system call failed.
    Io(std::io::Error),
    /// SQLite failed a statement; [`source`](std::error::Error::source) is
    /// the `rusqlite::Error`.
    #[cfg(feature = "server")]
    Database(rusqlite::Error),
    /// PostgreSQL failed a statement or the connection;
    /// [`source`](std::error::Error::source) is the `postgres::Error`.
    #[cfg(feature = "postgres")]
    Postgres(postgres::Error),
    /// An HTTP request to an overc server failed before an answer came;
    /// [`source`](std::error::Error::source) is the `ureq::Error`.
    #[cfg(feature = "client")]
    Http {
        /// The URL asked.
        url: String,
        /// What ureq reported.
        source: Box<ureq::Error>,
    },
}

/// Result with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m) => write!(f, "{m}"),
            Error::Forbidden(m) => write!(f, "{m}"),
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::Conflict(m) => write!(f, "{m}"),
            Error::Config(m) => write!(f, "config: {m}"),
            Error::Storage(m) => write!(f, "storage: {m}"),
            Error::Refused { status, message } => write!(f, "refused ({status}): {message}"),
            Error::Listen { addr, source } => {
                let why = match source.kind() {
                    std::io::ErrorKind::AddrInUse => "address in use".to_owned(),
                    std::io::ErrorKind::AddrNotAvailable => {
                        "no such address on this host".to_owned()
                    }
                    std::io::ErrorKind::PermissionDenied => {
                        "permission denied (ports below 1024 need privileges)".to_owned()
                    }
                    _ => source.to_string(),
                };
                write!(f, "cannot listen on {addr}: {why}")
            }
            Error::Io(e) => write!(f, "io: {e}"),
            #[cfg(feature = "server")]
            Error::Database(e) => write!(f, "storage: {e}"),
            #[cfg(feature = "postgres")]
            Error::Postgres(e) => match e.as_db_error() {
                // The library's own text is only "db error".
                Some(db) => write!(
                    f,
                    "storage: postgres: {} ({}): {}",
                    db.message(),
                    db.code().code(),
                    db.detail().unwrap_or("")
                ),
                None => match std::error::Error::source(e) {
                    Some(cause) => write!(f, "storage: postgres: {e}: {cause}"),
                    None => write!(f, "storage: postgres: {e}"),
                },
            },
            #[cfg(feature = "client")]
            Error::Http { url, source } => write!(f, "transport: {url}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) | Error::Listen { source: e, .. } => Some(e),
            #[cfg(feature = "server")]
            Error::Database(e) => Some(e),
            #[cfg(feature = "postgres")]
            Error::Postgres(e) => Some(e),
            #[cfg(feature = "client")]
            Error::Http { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

#[cfg(feature = "server")]
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Database(e)
    }
}

#[cfg(feature = "postgres")]
impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error::Postgres(e)
    }
}

impl Error {
    /// Whether storage could not be used (disk full, locked, a failed
    /// commit): the request may succeed when retried, so HTTP answers 503.
    pub fn is_storage(&self) -> bool {
        match self {
            Error::Storage(_) => true,
            #[cfg(feature = "server")]
            Error::Database(_) => true,
            #[cfg(feature = "postgres")]
            Error::Postgres(_) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn wrapped_errors_keep_their_source() {
        let io = Error::from(std::io::Error::other("disk on fire"));
        assert_eq!(
            io.source().map(|s| s.to_string()).as_deref(),
            Some("disk on fire")
        );
        #[cfg(feature = "server")]
        {
            let db = Error::from(rusqlite::Error::InvalidQuery);
            assert!(db.is_storage());
            assert!(db.source().is_some_and(|s| s.is::<rusqlite::Error>()));
            assert!(db.to_string().starts_with("storage: "), "{db}");
        }
        assert!(Error::Invalid("x".into()).source().is_none());
    }
}
