//! Schema creation and migrations, versioned with `PRAGMA user_version`.

use rusqlite::Connection;
use rusqlite::config::DbConfig;

use std::time::Duration;

use crate::config::Durability;
use crate::error::{Error, Result};

/// Each entry migrates from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema. Times are unix milliseconds.
    "CREATE TABLE servers(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        key_salt BLOB NOT NULL,
        key_hash BLOB NOT NULL,
        ip TEXT NOT NULL DEFAULT '',
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL
    );
    CREATE TABLE services(
        id INTEGER PRIMARY KEY,
        server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        title TEXT NOT NULL,
        period INTEGER,
        state TEXT,
        info TEXT,
        rtime INTEGER,
        state_id INTEGER,
        overdue INTEGER NOT NULL DEFAULT 0,
        UNIQUE(server_id, name)
    );
    CREATE TABLE states(
        id INTEGER PRIMARY KEY,
        service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,
        rtime INTEGER NOT NULL,
        state TEXT NOT NULL,
        info TEXT NOT NULL
    );
    CREATE INDEX states_by_service ON states(service_id, id);
    CREATE TABLE alerts(
        id INTEGER PRIMARY KEY,
        server_id INTEGER REFERENCES servers(id) ON DELETE CASCADE,
        service_id INTEGER REFERENCES services(id) ON DELETE CASCADE,
        state_id INTEGER,
        ctime INTEGER NOT NULL,
        channel TEXT NOT NULL,
        event TEXT NOT NULL,
        message TEXT NOT NULL,
        severity TEXT NOT NULL,
        state TEXT,
        info TEXT,
        delivered INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX alerts_by_time ON alerts(ctime);
    CREATE INDEX alerts_by_server ON alerts(server_id, ctime);
    CREATE INDEX alerts_by_service ON alerts(service_id, ctime);
    CREATE INDEX alerts_undelivered ON alerts(next_attempt) WHERE delivered = 0;",
    // 2: a service's current state is its newest history record, found
    // through the index, instead of a copy on the service row: a report then
    // writes the history alone, not the service row's page as well. The index
    // on service_id alone keeps each service's records in id order too, with
    // smaller entries.
    // A service whose history was pruned away entirely (history-limit 0
    // through the library) keeps its state as a history record.
    "INSERT INTO states(service_id, rtime, state, info)
        SELECT id, rtime, state, coalesce(info, '') FROM services s
        WHERE state IS NOT NULL AND rtime IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM states WHERE service_id = s.id);
    DROP INDEX states_by_service;
    CREATE INDEX states_by_service ON states(service_id);
    ALTER TABLE services DROP COLUMN state;
    ALTER TABLE services DROP COLUMN info;
    ALTER TABLE services DROP COLUMN rtime;
    ALTER TABLE services DROP COLUMN state_id;",
    // 3: the redo log's bookmark (see redo.rs): which database a log belongs
    // to, and the last of its groups that this file holds.
    "CREATE TABLE redo(
        id INTEGER PRIMARY KEY CHECK (id = 1),
        db_id BLOB NOT NULL,
        seq INTEGER NOT NULL
    );
    INSERT INTO redo(id, db_id, seq) VALUES (1, randomblob(16), 0);",
    // 4: delivery per alert plugin. An alert is `routed` once its
    // deliveries (one per plugin that gets it) are written; `delivered` once
    // none of them is pending. A delivery's state: 0 pending, 1 delivered,
    // 2 given up. Alerts undelivered so far are routed again at start, to
    // the plugins configured then.
    "ALTER TABLE alerts ADD COLUMN routed INTEGER NOT NULL DEFAULT 0;
    UPDATE alerts SET routed = 1 WHERE delivered = 1;
    DROP INDEX alerts_undelivered;
    CREATE INDEX alerts_unrouted ON alerts(id) WHERE routed = 0;
    CREATE TABLE deliveries(
        plugin TEXT NOT NULL,
        alert_id INTEGER NOT NULL,
        state INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        PRIMARY KEY (plugin, alert_id)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_by_alert ON deliveries(alert_id);
    CREATE INDEX deliveries_pending ON deliveries(plugin, alert_id) WHERE state = 0;",
    // 5: the notification policy's memory of a service (SPEC §9): whether
    // its state is hard, the last hard state, non-OK reports in a row while
    // soft, and whether it flaps; and the soft mark of an alert. Written
    // only when they change, so steady reports cost nothing more.
    "ALTER TABLE services ADD COLUMN hard INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE services ADD COLUMN hard_state TEXT;
    ALTER TABLE services ADD COLUMN streak INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE services ADD COLUMN flapping INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE alerts ADD COLUMN soft INTEGER NOT NULL DEFAULT 0;
    UPDATE services SET hard_state =
        (SELECT state FROM states WHERE service_id = services.id ORDER BY id DESC LIMIT 1);",
    // 6: silences and acknowledgements (SPEC §9). A silence holds from
    // `starts` to `ends` (excluded) for the servers matching the glob
    // `server` and, when not NULL, their services matching `service`;
    // `author` is a page user or `host:<name>` (a host's own silence, which
    // `/api/set/unsilence` finds by it). Ending one early sets `ends` to
    // that time and `ended_early`; `finished` is set once its end was
    // processed (what it held back told). An ack is the problem a service
    // was acknowledged in (`WARN`, `FAIL`, `UNK` or `offline`), one per
    // service, deleted as soon as that problem changes. An alert raised
    // while a silence matched is `silenced`, and routed and delivered at
    // once: delivery never sees it.
    "CREATE TABLE silences(
        id INTEGER PRIMARY KEY,
        server TEXT NOT NULL,
        service TEXT,
        starts INTEGER NOT NULL,
        ends INTEGER NOT NULL,
        comment TEXT NOT NULL,
        author TEXT NOT NULL,
        ended_early INTEGER NOT NULL DEFAULT 0,
        finished INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX silences_by_end ON silences(ends);
    CREATE TABLE acks(
        service_id INTEGER PRIMARY KEY REFERENCES services(id) ON DELETE CASCADE,
        author TEXT NOT NULL,
        comment TEXT NOT NULL,
        ctime INTEGER NOT NULL,
        problem TEXT NOT NULL
    );
    ALTER TABLE alerts ADD COLUMN silenced INTEGER NOT NULL DEFAULT 0;",
];

/// SQL joining a service `s` to its current state `st` (its newest history
/// record). A macro, not a const, so that statements can be built with
/// `concat!` once at compile time rather than with `format!` on every run.
macro_rules! current_state {
    () => {
        "LEFT JOIN states st ON st.id = (SELECT max(id) FROM states WHERE service_id = s.id)"
    };
}
pub(crate) use current_state;

/// The first schema version with a redo log (table `redo`).
pub const REDO_SINCE: i64 = 3;

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

fn common(conn: &Connection, lock_timeout: Duration) -> Result<()> {
    conn.busy_timeout(lock_timeout)?;
    // The bundled SQLite is built with STAT4, under which a statement whose
    // WHERE or ON clause has a subquery is compiled again on every run
    // (12 us instead of 0.8 for the current-state lookup). We never run
    // ANALYZE, so value-dependent plans gain nothing: keep plans stable.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Sets up the writer connection: journal, durability, and migrations.
/// Returns whether the database is in WAL mode.
#[cfg(test)]
pub fn prepare(
    conn: &mut Connection,
    durability: Durability,
    lock_timeout: Duration,
) -> Result<bool> {
    let wal = configure(conn, durability, lock_timeout)?;
    migrate(conn)?;
    Ok(wal)
}

/// The schema version of the database.
pub fn version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Sets up the writer connection's journal and durability, and refuses a
/// database of a newer schema. Returns whether it is in WAL mode.
pub fn configure(
    conn: &mut Connection,
    durability: Durability,
    lock_timeout: Duration,
) -> Result<bool> {
    common(conn, lock_timeout)?;
    // Must precede the first table so that pruned pages can be given back.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    let wal = mode.eq_ignore_ascii_case("wal");
    if !wal && !mode.eq_ignore_ascii_case("memory") {
        log::warn!("SQLite journal mode is {mode}, not WAL");
    }
    // With a WAL, `disk` durability does not use synchronous=FULL: a file
    // store's writes are durable once in its redo log (see redo.rs).
    let sync = if durability == Durability::Disk && !wal {
        "FULL"
    } else {
        "NORMAL"
    };
    conn.pragma_update(None, "synchronous", sync)?;
    // Checkpoints run on a connection of their own (see Store::start); the
    // writer only checkpoints itself if that one falls far behind.
    conn.pragma_update(None, "wal_autocheckpoint", 16384)?;
    // The WAL file is reused, not shrunk, after a checkpoint; cap what it keeps.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    let version = version(conn)?;
    if version > VERSION {
        return Err(Error::Storage(format!(
            "database schema version {version} is newer than this overc understands ({VERSION}); \
             use a newer overc-server"
        )));
    }
    Ok(wal)
}

/// Brings the schema to this build's version; true if it changed.
pub fn migrate(conn: &mut Connection) -> Result<bool> {
    let version = version(conn)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        log::info!("database migrated to schema version {}", i + 1);
    }
    Ok(version < VERSION)
}

/// The redo log's bookmark: the database's id and the last group it holds.
pub fn redo_mark(conn: &Connection) -> Result<([u8; 16], u64)> {
    let (id, seq): (Vec<u8>, i64) =
        conn.query_row("SELECT db_id, seq FROM redo WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let id = id
        .try_into()
        .map_err(|_| Error::Storage("corrupt database id in table redo".into()))?;
    let seq = u64::try_from(seq)
        .map_err(|_| Error::Storage(format!("corrupt redo log position {seq} in table redo")))?;
    Ok((id, seq))
}

/// Records, inside the writer's open transaction, the last group it holds.
pub fn set_redo_seq(conn: &Connection, seq: u64) -> Result<()> {
    conn.prepare_cached("UPDATE redo SET seq = ?1 WHERE id = 1")?
        .execute([seq as i64])?;
    Ok(())
}

/// Sets up a read connection.
pub fn prepare_reader(conn: &Connection, lock_timeout: Duration) -> Result<()> {
    common(conn, lock_timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Storage;

    #[test]
    fn lookups_with_subqueries_are_not_compiled_again_on_every_run() {
        let mut conn = Connection::open_in_memory().unwrap();
        prepare(&mut conn, Durability::Disk, Duration::from_secs(1)).unwrap();
        conn.execute_batch(
            "INSERT INTO servers(id, name, title, key_salt, key_hash, first_seen, last_seen)
                 VALUES (1, 'h', 'h', x'00', x'00', 0, 0);
             INSERT INTO services(id, server_id, name, title, period) VALUES (1, 1, 'a', 'a', 60);
             INSERT INTO states(service_id, rtime, state, info) VALUES (1, 5, 'OK', '');",
        )
        .unwrap();
        let mut st = conn
            .prepare(concat!(
                "SELECT s.id, st.state FROM services s ",
                current_state!(),
                " WHERE s.server_id = ?1 AND s.name = ?2"
            ))
            .unwrap();
        for name in ["a", "b", "a", "c"] {
            let _ = st.query_row(rusqlite::params![1, name], |r| r.get::<_, i64>(0));
        }
        assert_eq!(st.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    #[test]
    fn a_version_1_database_keeps_its_states_and_history() {
        use std::sync::Arc;

        use sha2::{Digest, Sha256};

        use crate::clock::ManualClock;
        use crate::protocol::{StatusReport, parse_object};
        use crate::store::{AlertFilter, StatusFilter, Store, StoreOptions};

        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("overc.db");
        let t0: i64 = 1_700_000_000_000;
        let t1 = t0 + 60_000;
        {
            let conn = Connection::open(&db).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            let salt = [7u8; 16];
            let hash: [u8; 32] = Sha256::new()
                .chain_update(salt)
                .chain_update("k")
                .finalize()
                .into();
            conn.execute(
                "INSERT INTO servers(id, name, title, key_salt, key_hash, ip, first_seen, last_seen)
                 VALUES (1, 'old', 'old', ?1, ?2, '', ?3, ?3)",
                rusqlite::params![&salt[..], &hash[..], t0],
            )
            .unwrap();
            conn.execute_batch(&format!(
                "INSERT INTO services(id, server_id, name, title, period, state, info, rtime, state_id)
                   VALUES (1, 1, 'svc', 'svc', 60, 'WARN', 'w2', {t1}, 2),
                 -- its history pruned away (history-limit 0 through the library)
                          (2, 1, 'bare', 'bare', 60, 'FAIL', 'f', {t1}, 9);
                 INSERT INTO states(id, service_id, rtime, state, info)
                   VALUES (1, 1, {t0}, 'OK', 'o1'), (2, 1, {t1}, 'WARN', 'w2');
                 PRAGMA user_version = 1;"
            ))
            .unwrap();
        }
        let clock = Arc::new(ManualClock::new(t1 + 1000));
        let store = Store::open(&db, &StoreOptions::default(), clock).unwrap();
        let current = |name: &str| {
            let status = store.status(StatusFilter::All, 0, 0.0).unwrap().unwrap();
            let svc = status.servers[0]
                .services
                .iter()
                .find(|s| s.name == name)
                .cloned()
                .unwrap();
            let state = svc.state.unwrap();
            (state.state, state.info)
        };
        let history = || -> Vec<String> {
            let v = serde_json::to_value(store.states(1, 24.0, None).unwrap().unwrap()).unwrap();
            v["states"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["info"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(current("svc"), ("WARN".into(), "w2".into()));
        assert_eq!(current("bare"), ("FAIL".into(), "f".into()));
        assert_eq!(history(), ["w2", "o1"]);

        // The state from before the migration is the previous one: WARN
        // again is no change, FAIL is.
        for (state, info) in [("WARN", "w3"), ("FAIL", "f4")] {
            let body = format!(
                r#"{{"server": {{"name": "old", "key": "k"}}, "period": 60,
                    "services": [{{"name": "svc", "state": "{state}", "info": "{info}"}}]}}"#
            );
            let report = StatusReport::from_json(&parse_object(body.as_bytes()).unwrap()).unwrap();
            store.report(report, "127.0.0.1").unwrap();
        }
        let alerts =
            serde_json::to_value(store.alert_list(AlertFilter::All, 24.0).unwrap().unwrap())
                .unwrap();
        let messages: Vec<&str> = alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["message"].as_str().unwrap())
            .collect();
        assert_eq!(messages, ["State changed: \"WARN\" -> \"FAIL\""]);
        assert_eq!(history(), ["f4", "w3", "w2", "o1"]);
        store.close();

        let conn = Connection::open(&db).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, VERSION);
        let copied: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('services')
                 WHERE name IN ('state', 'info', 'rtime', 'state_id')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(copied, 0);
    }
}
