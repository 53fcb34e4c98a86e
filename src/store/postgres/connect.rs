//! Connecting to PostgreSQL: waiting for it at start, and telling the
//! errors an operator must fix (credentials, database name, version) from
//! those that pass (a server starting up or restarting).

use std::time::{Duration, Instant};

use postgres::Client;
use postgres::error::SqlState;

use crate::config::PostgresUrl;
use crate::error::{Error, Result};

/// The oldest PostgreSQL overc runs on (SPEC §10), as `server_version_num`.
const MIN_VERSION: i64 = 130_000;
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between attempts while the database is not there yet.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Connects to `url`, retrying for up to `wait` while PostgreSQL does not
/// accept connections (down, starting, too many clients). A login or a
/// database that PostgreSQL refuses, or a server older than 13, fails at
/// once: waiting would not change it.
pub(crate) fn connect(url: &PostgresUrl, wait: Duration) -> Result<Client> {
    connect_with(url, wait, config(url)?)
}

/// [`connect`] for the leader's connection: a connection that stops
/// answering is given up within `timeout` (TCP keepalives and the user
/// timeout on our side, the same keepalives asked of the server's side), so
/// a leader cut off steps down, and PostgreSQL frees its lock, in time.
pub(crate) fn connect_leader(url: &PostgresUrl, timeout: Duration) -> Result<Client> {
    let mut config = config(url)?;
    let probe = (timeout / 4).max(Duration::from_secs(1));
    config
        .keepalives_idle(probe)
        .keepalives_interval(probe)
        .keepalives_retries(2)
        .tcp_user_timeout(timeout / 2)
        .connect_timeout(timeout / 2);
    let mut client = connect_with(url, Duration::ZERO, config)?;
    let secs = probe.as_secs().max(1);
    client.batch_execute(&format!(
        "SET tcp_keepalives_idle = {secs}; SET tcp_keepalives_interval = {secs};
         SET tcp_keepalives_count = 2; SET statement_timeout = {}",
        (timeout / 2).as_millis()
    ))?;
    Ok(client)
}

fn connect_with(url: &PostgresUrl, wait: Duration, config: postgres::Config) -> Result<Client> {
    let tls = super::tls::connector(url)?;
    let started = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let e = match config.connect(tls.clone()) {
            Ok(mut client) => {
                check_version(&mut client, url)?;
                if attempts > 1 {
                    log::info!("PostgreSQL at {url} accepts connections");
                }
                return Ok(client);
            }
            Err(e) => e,
        };
        let fatal = super::tls::failure(&e, url).or_else(|| refusal(&e, &config, url));
        if let Some(fatal) = fatal {
            return Err(fatal);
        }
        if started.elapsed() + RETRY_EVERY > wait {
            return Err(Error::Storage(format!(
                "PostgreSQL at {url} did not accept connections within {} s: {}",
                wait.as_secs(),
                reason(&e)
            )));
        }
        if attempts == 1 {
            log::warn!(
                "PostgreSQL at {url} does not accept connections yet ({}); retrying for up to {} s",
                reason(&e),
                wait.as_secs()
            );
        } else {
            log::debug!("PostgreSQL at {url}: {}", reason(&e));
        }
        std::thread::sleep(RETRY_EVERY);
    }
}

/// The client library's settings for `url`, with overc's timeouts.
fn config(url: &PostgresUrl) -> Result<postgres::Config> {
    let mut config: postgres::Config = url
        .for_client()
        .parse()
        .map_err(|e| Error::Config(format!("database: {url}: {e}")))?;
    if config.get_application_name().is_none() {
        config.application_name("overc");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    // A connection a dead peer left open is noticed in well under a minute.
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(10));
    Ok(config)
}

/// The error an operator must fix, if `e` is one.
fn refusal(e: &postgres::Error, config: &postgres::Config, url: &PostgresUrl) -> Option<Error> {
    let db = e.as_db_error()?;
    let code = db.code();
    let user = config.get_user().unwrap_or("?");
    let name = config.get_dbname().unwrap_or("?");
    let why = if *code == SqlState::INVALID_PASSWORD
        || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        format!(
            "PostgreSQL at {url} refused the login of user {user:?}: {}; \
             check the user and password in `database`",
            db.message()
        )
    } else if *code == SqlState::INVALID_CATALOG_NAME {
        format!(
            "PostgreSQL at {url} has no database {name:?}; create it first \
             (createdb -O {user} {name})"
        )
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        format!(
            "PostgreSQL at {url} refused user {user:?}: {}",
            db.message()
        )
    } else {
        return None;
    };
    Some(Error::Storage(why))
}

/// What went wrong, in a line.
fn reason(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                s = format!("{s}: {cause}");
                source = cause.source();
            }
            s
        }
    }
}

fn check_version(client: &mut Client, url: &PostgresUrl) -> Result<()> {
    let row = client.query_one(
        "SELECT current_setting('server_version_num'), current_setting('server_version')",
        &[],
    )?;
    let num: String = row.get(0);
    let shown: String = row.get(1);
    let num: i64 = num.trim().parse().unwrap_or(0);
    if num < MIN_VERSION {
        return Err(Error::Storage(format!(
            "PostgreSQL at {url} is version {shown}: overc needs 13 or newer"
        )));
    }
    Ok(())
}
