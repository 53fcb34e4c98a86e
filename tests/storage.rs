//! Bounded storage: history-limit per service and retention-days for alerts,
//! driven by a manual clock.

use serde_json::json;

use crate::common::{TestServer, report};

fn states_of(t: &TestServer, service_id: i64) -> Vec<String> {
    let (_, v) = t.get(&format!(
        "/ui/api/status/service/{service_id}/states?hours=8784"
    ));
    v["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["info"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn history_keeps_the_newest_records_per_service() {
    let t = TestServer::start_manual(|c| c.history_limit = 10);
    for i in 0..57 {
        assert_eq!(
            t.post_json(
                "/api/set/service/status",
                &report("h", "k", "a", "OK", &format!("a{i}"))
            )
            .0,
            200
        );
        assert_eq!(
            t.post_json(
                "/api/set/service/status",
                &report("h", "k", "b", "OK", &format!("b{i}"))
            )
            .0,
            200
        );
    }
    let a = t.service("h", "a").unwrap()["id"].as_i64().unwrap();
    // Pruning in the writer is amortised: never more than a tenth over the limit.
    assert!(states_of(&t, a).len() <= 20, "{}", states_of(&t, a).len());
    t.server().app().store().prune().unwrap();
    let kept = states_of(&t, a);
    assert_eq!(
        kept,
        (47..57).rev().map(|i| format!("a{i}")).collect::<Vec<_>>()
    );
    let b = t.service("h", "b").unwrap()["id"].as_i64().unwrap();
    assert_eq!(states_of(&t, b).len(), 10);
    assert_eq!(t.counts().states, 20);
}

#[test]
fn delivered_alerts_older_than_retention_are_pruned_in_the_background() {
    let t = TestServer::start_manual(|c| c.retention_days = 90);
    let clock = t.clock.clone().unwrap();
    let alert = |m: &str| json!({"server": {"name": "h", "key": "k"}, "alerts": [{"message": m}]});
    assert_eq!(t.post_json("/api/set/alerts", &alert("old")).0, 200);
    t.server().app().supervise_now().unwrap();
    clock.advance(89 * 86_400_000);
    assert_eq!(t.post_json("/api/set/alerts", &alert("recent")).0, 200);
    t.server().app().supervise_now().unwrap();
    clock.advance(2 * 86_400_000);
    // The writer runs its maintenance after a commit once it is due; the
    // second request is served after the maintenance of the first finished.
    assert_eq!(
        t.post_json("/api/ping", &json!({"server": {"name": "h", "key": "k"}}))
            .0,
        200
    );
    assert_eq!(
        t.post_json("/api/ping", &json!({"server": {"name": "h", "key": "k"}}))
            .0,
        200
    );
    let (_, list) = t.get("/ui/api/status/alerts/?hours=8784");
    let msgs: Vec<&str> = list["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["message"].as_str().unwrap())
        .collect();
    assert_eq!(msgs, ["recent"]);
}

#[test]
fn undelivered_alerts_are_retried_within_retention_and_given_up_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("down");
    std::fs::write(&flag, "").unwrap();
    let out = dir.path().join("out");
    let (flag_s, out_s) = (
        flag.to_str().unwrap().to_owned(),
        out.to_str().unwrap().to_owned(),
    );
    let t = TestServer::start_manual(|c| {
        c.retention_days = 1;
        c.alert_plugins.push(overc::config::AlertPluginConfig {
            name: "flaky".into(),
            command: vec![crate::supervision::plugin("flaky.sh"), flag_s, out_s],
            timeout: std::time::Duration::from_secs(10),
        });
    });
    let body = json!({"server": {"name": "h", "key": "k"}, "alerts": [{"message": "must arrive"}]});
    assert_eq!(t.post_json("/api/set/alerts", &body).0, 200);
    t.server().app().supervise_now().unwrap();
    t.clock.as_ref().unwrap().advance(12 * 3_600_000);
    t.server().app().store().prune().unwrap();
    let (_, list) = t.get("/ui/api/status/alerts/?hours=8784");
    assert!(
        list["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["message"] == "must arrive" && a["delivered"] == false),
        "kept while within retention-days"
    );
    t.clock.as_ref().unwrap().advance(2 * 86_400_000);
    t.server().app().store().prune().unwrap();
    let (_, list) = t.get("/ui/api/status/alerts/?hours=8784");
    assert!(
        list["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["message"] != "must arrive"),
        "{list}"
    );
}

/// The schema of version 1, when the service row held a copy of the current
/// state; kept here to test the migration from it.
const SCHEMA_V1: &str = "CREATE TABLE servers(
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
    CREATE INDEX alerts_undelivered ON alerts(next_attempt) WHERE delivered = 0;";

#[test]
fn a_version_1_database_keeps_its_states_and_history() {
    use sha2::{Digest, Sha256};
    let mut t = crate::common::TestServer::start();
    t.stop();
    let db = t.db_path();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        let salt = [7u8; 16];
        let hash: [u8; 32] = Sha256::new()
            .chain_update(salt)
            .chain_update("k")
            .finalize()
            .into();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let t0 = now - 3_600_000;
        conn.execute(
            "INSERT INTO servers(id, name, title, key_salt, key_hash, ip, first_seen, last_seen)
             VALUES (1, 'old', 'old', ?1, ?2, '', ?3, ?3)",
            rusqlite::params![&salt[..], &hash[..], t0],
        )
        .unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO services(id, server_id, name, title, period, state, info, rtime, state_id)
               VALUES (1, 1, 'svc', 'svc', 60, 'WARN', 'w2', {t1}, 2);
             INSERT INTO states(id, service_id, rtime, state, info)
               VALUES (1, 1, {t0}, 'OK', 'o1'), (2, 1, {t1}, 'WARN', 'w2');
             -- History pruned away (history-limit 0 through the library).
             INSERT INTO services(id, server_id, name, title, period, state, info, rtime, state_id)
               VALUES (2, 1, 'bare', 'bare', 60, 'FAIL', 'f', {t1}, 9);
             PRAGMA user_version = 1;",
            t1 = t0 + 60_000
        ))
        .unwrap();
    }
    t.start_again();
    let svc = t.service("old", "svc").unwrap();
    assert_eq!(svc["state"]["state"], "WARN");
    assert_eq!(svc["state"]["info"], "w2");
    assert_eq!(states_of(&t, 1), ["w2", "o1"]);
    let bare = t.service("old", "bare").unwrap();
    assert_eq!(bare["state"]["state"], "FAIL");
    assert_eq!(bare["state"]["info"], "f");
    // The state before the migration is the previous one: WARN again is no
    // change, FAIL is.
    let (code, _) = t.post_json(
        "/api/set/service/status",
        &report("old", "k", "svc", "WARN", "w3"),
    );
    assert_eq!(code, 200);
    assert_eq!(
        t.post_json(
            "/api/set/service/status",
            &report("old", "k", "svc", "FAIL", "f4")
        )
        .0,
        200
    );
    let (_, alerts) = t.get("/ui/api/status/alerts/?hours=8784");
    let messages: Vec<&str> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["State changed: \"WARN\" -> \"FAIL\""]);
    assert_eq!(states_of(&t, 1), ["f4", "w3", "w2", "o1"]);
    t.stop();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('services')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        !columns.iter().any(|c| c == "state" || c == "rtime"),
        "{columns:?}"
    );
}
