//! One suite, two backends: a test that runs on "any backend" gets a fresh
//! PostgreSQL database when `OVERC_TEST_POSTGRES` names a cluster (a
//! connection URL whose user may create databases), else an SQLite file.

use std::io::Write;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use overc::ServerConfig;
use overc::config::{Database, parse_database};

/// The variable that names the PostgreSQL cluster to test against.
pub const VAR: &str = "OVERC_TEST_POSTGRES";

/// A database made for one test, dropped with it.
pub struct PgDb {
    admin: String,
    name: String,
    /// Its URL.
    pub url: String,
}

static SKIPPED: Once = Once::new();
static DBS: AtomicU64 = AtomicU64::new(0);

/// The cluster's URL, if the run names one; says once when it does not.
pub fn postgres_url() -> Option<String> {
    match std::env::var(VAR) {
        Ok(url) if !url.trim().is_empty() && cfg!(feature = "postgres") => Some(url),
        Ok(url) if !url.trim().is_empty() => {
            SKIPPED.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "note: {VAR} is set but overc is built without the feature `postgres`: \
                     the PostgreSQL runs were skipped"
                );
            });
            None
        }
        _ => {
            SKIPPED.call_once(|| {
                // Straight to stderr: the test harness captures print macros.
                let _ = writeln!(
                    std::io::stderr(),
                    "note: {VAR} is not set, so the store and engine suites ran on SQLite \
                     only and their PostgreSQL runs were skipped (scripts/e2e-postgres.sh \
                     runs them against a throwaway cluster)"
                );
            });
            None
        }
    }
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
    format!("{scheme}://{authority}/{db}{query}")
}

impl PgDb {
    /// A new empty database on the cluster of `OVERC_TEST_POSTGRES`, or
    /// `None` when the variable is not set.
    pub fn create() -> Option<PgDb> {
        let admin = postgres_url()?;
        let name = format!(
            "overc_test_{}_{}",
            std::process::id(),
            DBS.fetch_add(1, Ordering::Relaxed)
        );
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("{VAR}: cannot connect: {e}"));
        // One statement each: neither may run inside a transaction block.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            client
                .batch_execute(&sql)
                .unwrap_or_else(|e| panic!("{VAR}: {sql}: {e:?}"));
        }
        let url = with_database(&admin, &name);
        Some(PgDb { admin, name, url })
    }

    /// Points `config` at this database.
    pub fn use_in(&self, config: &mut ServerConfig) {
        match parse_database(&self.url) {
            Ok(db @ Database::Postgres(_)) => config.set_database(db),
            other => panic!("{VAR}: not a PostgreSQL URL: {other:?}"),
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A store for `Engine` tests on the backend the run names, with the guard
/// of its PostgreSQL database (keep it until the store is closed).
pub fn store_any(
    dir: &std::path::Path,
    opts: &overc::store::StoreOptions,
    clock: std::sync::Arc<dyn overc::Clock>,
) -> (std::sync::Arc<dyn overc::store::Storage>, Option<PgDb>) {
    #[cfg(feature = "postgres")]
    if let Some(pg) = PgDb::create() {
        let mut config = ServerConfig::default();
        pg.use_in(&mut config);
        let url = config.postgres.expect("a PostgreSQL URL");
        let store = overc::store::PgStore::open(&url, opts, clock, overc::store::PG_START_WAIT)
            .unwrap_or_else(|e| panic!("{VAR}: {e}"));
        return (std::sync::Arc::new(store), Some(pg));
    }
    let store = overc::Store::open(&dir.join("overc.db"), opts, clock).unwrap();
    (std::sync::Arc::new(store), None)
}
