//! The PostgreSQL schema and its migrations, applied at start by one
//! server at a time under an advisory lock.

use postgres::Client;

use crate::error::{Error, Result};

/// The advisory lock (a 64-bit key of our own) held while migrating.
pub(crate) const MIGRATION_LOCK: i64 = 0x6f76_6572_635f_6d69; // "overc_mi"
/// The advisory lock the leader holds on its dedicated connection.
pub(crate) const LEADER_LOCK: i64 = 0x6f76_6572_635f_6c65; // "overc_le"

/// Each entry migrates from version `index` to `index + 1`. The same
/// tables as the SQLite schema at its version 6 (see its notes), with
/// PostgreSQL's types: times are unix milliseconds (BIGINT), flags BOOLEAN,
/// and deletes cascade through foreign keys. A service's current state is
/// its newest history record, as with SQLite.
const MIGRATIONS: &[&str] = &[
    // 1: the schema of overc's SQLite version 5.
    "CREATE TABLE servers(
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        key_salt BYTEA NOT NULL,
        key_hash BYTEA NOT NULL,
        ip TEXT NOT NULL DEFAULT '',
        first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL
    );
    CREATE TABLE services(
        id BIGSERIAL PRIMARY KEY,
        server_id BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        title TEXT NOT NULL,
        period BIGINT,
        overdue BOOLEAN NOT NULL DEFAULT false,
        hard BOOLEAN NOT NULL DEFAULT true,
        hard_state TEXT,
        streak BIGINT NOT NULL DEFAULT 1,
        flapping BOOLEAN NOT NULL DEFAULT false,
        UNIQUE(server_id, name)
    );
    CREATE TABLE states(
        id BIGSERIAL PRIMARY KEY,
        service_id BIGINT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
        rtime BIGINT NOT NULL,
        state TEXT NOT NULL,
        info TEXT NOT NULL
    );
    CREATE INDEX states_by_service ON states(service_id, id);
    CREATE TABLE alerts(
        id BIGSERIAL PRIMARY KEY,
        server_id BIGINT REFERENCES servers(id) ON DELETE CASCADE,
        service_id BIGINT REFERENCES services(id) ON DELETE CASCADE,
        state_id BIGINT,
        ctime BIGINT NOT NULL,
        channel TEXT NOT NULL,
        event TEXT NOT NULL,
        message TEXT NOT NULL,
        severity TEXT NOT NULL,
        state TEXT,
        info TEXT,
        soft BOOLEAN NOT NULL DEFAULT false,
        routed BOOLEAN NOT NULL DEFAULT false,
        delivered BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX alerts_by_time ON alerts(ctime);
    CREATE INDEX alerts_by_server ON alerts(server_id, ctime);
    CREATE INDEX alerts_by_service ON alerts(service_id, ctime);
    CREATE INDEX alerts_unrouted ON alerts(id) WHERE NOT routed;
    CREATE TABLE deliveries(
        plugin TEXT NOT NULL,
        alert_id BIGINT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
        state SMALLINT NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt BIGINT NOT NULL DEFAULT 0,
        error TEXT,
        PRIMARY KEY (plugin, alert_id)
    );
    CREATE INDEX deliveries_by_alert ON deliveries(alert_id);
    CREATE INDEX deliveries_pending ON deliveries(plugin, alert_id) WHERE state = 0;",
    // 2: several servers (SPEC §10). Deadlines live in the database: a
    // service's due time (last report + period) in an index of the services
    // that can still go overdue, so the leader reads the due ones only. The
    // leader's row says who it is.
    "ALTER TABLE services ADD COLUMN due BIGINT;
    UPDATE services s SET due = st.rtime + s.period * 1000
        FROM (SELECT service_id, max(rtime) AS rtime FROM states GROUP BY service_id) st
        WHERE st.service_id = s.id AND s.period IS NOT NULL;
    CREATE INDEX services_due ON services(due) WHERE NOT overdue AND due IS NOT NULL;
    CREATE TABLE overc_leader(
        id INTEGER PRIMARY KEY CHECK (id = 1),
        node TEXT NOT NULL,
        since BIGINT NOT NULL,
        seen BIGINT NOT NULL
    );",
    // 3: delivery claims. The server delivering a pending delivery marks it
    // with its name until a lease ends, so that around a failover two
    // leaders do not run one plugin for one alert at once.
    "ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
    ALTER TABLE deliveries ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;",
    // 4: silences and acknowledgements (SPEC §9): the tables and columns of
    // overc's SQLite version 6, with the same names and meanings. A
    // silence holds from `starts` to `ends` (excluded) for the servers
    // matching the glob `server` and, when not NULL, their services
    // matching `service`; `author` is a page user or `host:<name>` (a
    // host's own silence, which `/api/set/unsilence` finds by it). Ending
    // one early sets `ends` to that time and `ended_early`; `finished` is
    // set once its end was processed (what it held back told). An ack is
    // the problem a service was acknowledged in (`WARN`, `FAIL`, `UNK` or
    // `offline`), one per service, deleted as soon as that problem
    // changes. An alert raised while a silence matched is `silenced`, and
    // routed and delivered at once: delivery never sees it. The partial
    // index finds the silences whose end is still to be processed.
    "CREATE TABLE silences(
        id BIGSERIAL PRIMARY KEY,
        server TEXT NOT NULL,
        service TEXT,
        starts BIGINT NOT NULL,
        ends BIGINT NOT NULL,
        comment TEXT NOT NULL,
        author TEXT NOT NULL,
        ended_early BOOLEAN NOT NULL DEFAULT false,
        finished BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX silences_by_end ON silences(ends);
    CREATE INDEX silences_unfinished ON silences(ends) WHERE NOT finished;
    CREATE TABLE acks(
        service_id BIGINT PRIMARY KEY REFERENCES services(id) ON DELETE CASCADE,
        author TEXT NOT NULL,
        comment TEXT NOT NULL,
        ctime BIGINT NOT NULL,
        problem TEXT NOT NULL
    );
    ALTER TABLE alerts ADD COLUMN silenced BOOLEAN NOT NULL DEFAULT false;",
    // 5: the leader's host name beside its listen address: servers on two
    // hosts may both listen on 127.0.0.1:5000 behind a load balancer.
    "ALTER TABLE overc_leader ADD COLUMN host TEXT NOT NULL DEFAULT '';",
];

/// The schema version this build writes.
pub(crate) const VERSION: i32 = MIGRATIONS.len() as i32;

/// Creates or migrates the schema, one server at a time: the others wait
/// on the advisory lock, then find it done. A database of a newer schema
/// is refused.
pub(crate) fn migrate(client: &mut Client) -> Result<()> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let result = migrate_locked(client);
    // Unlocked either way; a broken connection releases it too.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    result
}

fn migrate_locked(client: &mut Client) -> Result<()> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS overc_schema(
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL
        );
        INSERT INTO overc_schema(id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
    )?;
    let version: i32 = client
        .query_one("SELECT version FROM overc_schema WHERE id = 1", &[])?
        .get(0);
    if version > VERSION {
        return Err(Error::Storage(format!(
            "database schema version {version} is newer than this overc understands ({VERSION}); \
             use a newer overc-server"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)?;
        tx.execute(
            "UPDATE overc_schema SET version = $1 WHERE id = 1",
            &[&(i as i32 + 1)],
        )?;
        tx.commit()?;
        log::info!("PostgreSQL schema migrated to version {}", i + 1);
    }
    Ok(())
}
