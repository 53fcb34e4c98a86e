//! `overc-server copy` (SPEC §10): an installation populated through the
//! real server (hosts with keys, services with history, alerts delivered
//! and pending, silences, an ack, deleted and renamed things) copied
//! SQLite → SQLite, and with `OVERC_TEST_POSTGRES` SQLite → PostgreSQL →
//! SQLite; the read API of the copy is the source's, and the hosts' keys
//! still decide.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use overc::config::Database;
#[cfg(feature = "postgres")]
use overc::config::parse_database;
use overc::policy::Silence;
use overc::store::{AlertFilter, StatusFilter, Storage, StoreOptions, copy_database};
use overc::{Clock, ManualClock, Server, Store};
use serde_json::{Value, json};

#[cfg(feature = "postgres")]
use crate::common::backend::PgDb;
use crate::common::{T0, config_in, post_bytes, report};

const MIN: i64 = 60_000;

fn post(url: &str, path: &str, body: Value) {
    let (code, v) = post_bytes(url, path, body.to_string().as_bytes());
    assert_eq!(code, 200, "{path}: {v}");
}

fn server_id(server: &Server, host: &str) -> i64 {
    let status = server.engine().status(StatusFilter::All).unwrap().unwrap();
    status.servers.iter().find(|s| s.name == host).unwrap().id
}

fn service_id(server: &Server, host: &str, service: &str) -> i64 {
    let status = server.engine().status(StatusFilter::All).unwrap().unwrap();
    let host = status.servers.iter().find(|s| s.name == host).unwrap();
    host.services.iter().find(|s| s.name == service).unwrap().id
}

/// An installation in `dir/source.db` made through a real server on a
/// manual clock, stopped; the clock it stopped at.
fn populate(dir: &Path) -> (PathBuf, ManualClock) {
    let mut config = config_in(dir);
    config.database = dir.join("source.db");
    let clock = ManualClock::new(T0);
    let server = Server::builder(config.clone())
        .clock(Arc::new(clock.clone()) as Arc<dyn Clock>)
        .notifier("ok", |_: &overc::Notification| Ok(()))
        .notifier("down", |_: &overc::Notification| {
            Err("the pager is down".to_owned())
        })
        .start()
        .unwrap();
    let url = server.url();
    let send = |host: &str, service: &str, state: &str, info: &str| {
        let mut body = report(host, &format!("key-{host}"), service, state, info);
        body["period"] = json!(3600);
        post(&url, "/api/set/service/status", body);
        clock.advance(MIN / 4);
    };
    send("web", "http", "OK", "200 in 12 ms");
    // Free text as PostgreSQL cannot store it as it is: NUL, and its escape.
    send("web", "disk", "WARN", "a\0b \u{FFFF} ü");
    send("db", "pg", "OK", "up");
    send("gone", "x", "OK", "soon deleted");
    send("web", "old", "OK", "soon deleted");
    send("web", "http", "FAIL", "500");
    send("db", "pg", "FAIL", "down");
    post(
        &url,
        "/api/set/alerts",
        json!({"server": {"name": "web", "key": "key-web"},
               "alerts": [{"message": "backup failed", "service": "backup"}]}),
    );
    let engine = server.engine();
    engine
        .delete_server(server_id(&server, "gone"))
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .delete_service(service_id(&server, "web", "old"))
        .unwrap();
    engine
        .rename_server(server_id(&server, "db"), "Database host")
        .unwrap();
    engine
        .rename_service(service_id(&server, "web", "http"), "Front page")
        .unwrap();
    // Routed and delivered to `ok`, pending with an error for `down`.
    server.app().supervise_now().unwrap();
    // A host's own silence: the next change of db is recorded, not told.
    post(
        &url,
        "/api/set/silence",
        json!({"server": {"name": "db", "key": "key-db"}, "duration": 3600,
               "comment": "maintenance \u{FFFF} window"}),
    );
    send("db", "pg", "WARN", "degraded");
    let page = |service: Option<&str>, minutes: i64| Silence {
        id: 0,
        server: "web".into(),
        service: service.map(str::to_owned),
        starts: 0,
        ends: clock.now() + minutes * MIN,
        comment: "disk swap".into(),
        author: "admin".into(),
    };
    engine.silence(page(Some("disk"), 120)).unwrap();
    let ended = engine.silence(page(None, 30)).unwrap();
    clock.advance(MIN);
    engine.end_silence(ended).unwrap();
    engine
        .ack(
            service_id(&server, "web", "http"),
            "admin",
            "on it \u{FFFF} (ticket 12)",
        )
        .unwrap();
    server.app().supervise_now().unwrap();
    clock.advance(MIN);
    server.stop();
    (dir.join("source.db"), clock)
}

fn sqlite(path: &Path) -> Database {
    Database::Sqlite(path.to_path_buf())
}

fn open(path: &Path, clock: &ManualClock) -> Store {
    Store::open(
        path,
        &StoreOptions::default(),
        Arc::new(clock.clone()) as Arc<dyn Clock>,
    )
    .unwrap()
}

/// What the read API shows of a store, and its pending deliveries.
fn snapshot(store: &dyn Storage) -> Value {
    let status = store.status(StatusFilter::All, 0, 0.0).unwrap().unwrap();
    let mut history = json!({});
    for server in &status.servers {
        for s in &server.services {
            history[s.id.to_string()] = json!(store.states(s.id, 24.0, None).unwrap());
        }
    }
    let pending = |plugin: &str| {
        let p = store.pending_deliveries(plugin, 100).unwrap();
        json!(p.iter().map(|d| format!("{d:?}")).collect::<Vec<_>>())
    };
    json!({
        "status": status,
        "alerts": store.alert_list(AlertFilter::All, 24.0).unwrap().unwrap(),
        "silences": store.silences().unwrap(),
        "history": history,
        "counts": format!("{:?}", store.counts().unwrap()),
        "pending": {"ok": pending("ok"), "down": pending("down")},
    })
}

/// `v` without what a database without silences cannot hold.
#[cfg(feature = "postgres")]
fn without_silences(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("silenced");
                map.remove("ack");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    v["silences"] = Value::Null;
    strip(&mut v);
    v
}

/// The host keys of the source decide on the copy as on the source.
fn keys_still_decide(store: &dyn Storage) {
    let body = |key: &str| {
        let v = report("web", key, "http", "OK", "back");
        overc::StatusReport::from_json(v.as_object().unwrap()).unwrap()
    };
    store.report(body("key-web"), "127.0.0.1").unwrap();
    let e = store.report(body("key-db"), "127.0.0.1").unwrap_err();
    assert!(matches!(e, overc::Error::Forbidden(_)), "{e}");
}

#[test]
fn a_copy_shows_what_the_source_showed_and_keeps_the_hosts_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (source, clock) = populate(dir.path());
    let target = dir.path().join("target.db");
    let summary = copy_database(&sqlite(&source), &sqlite(&target), &mut ()).unwrap();
    for (table, rows) in [
        ("servers", 2),
        ("services", 4),
        ("silences", 3),
        ("acks", 1),
    ] {
        assert_eq!(summary.rows(table), rows, "{table}: {summary}");
    }
    assert!(summary.rows("deliveries") >= 4, "{summary}");

    let expected = {
        let store = open(&source, &clock);
        let v = snapshot(&store);
        store.close();
        v
    };
    let pending = expected["pending"]["down"].as_array().unwrap();
    assert!(
        !pending.is_empty(),
        "a pending delivery to copy: {expected}"
    );
    assert!(expected["status"].to_string().contains("Front page"));
    assert!(
        expected["alerts"]
            .to_string()
            .contains(r#""silenced":true"#)
    );
    let copy = open(&target, &clock);
    assert_eq!(snapshot(&copy), expected);
    keys_still_decide(&copy);
    copy.close();
}

#[cfg(feature = "postgres")]
#[test]
fn sqlite_to_postgresql_and_back_shows_what_the_source_showed() {
    let Some(pg) = PgDb::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (source, clock) = populate(dir.path());
    let Ok(db @ Database::Postgres(_)) = parse_database(&pg.url) else {
        panic!("not a PostgreSQL URL")
    };
    let Database::Postgres(url) = &db else {
        unreachable!()
    };
    copy_database(&sqlite(&source), &db, &mut ()).unwrap();
    let back = dir.path().join("back.db");
    let summary = copy_database(&db, &sqlite(&back), &mut ()).unwrap();

    let expected = {
        let store = open(&source, &clock);
        let v = snapshot(&store);
        store.close();
        v
    };
    // Until PostgreSQL keeps silences, the trip loses them and the acks.
    let keeps_silences = summary.rows("silences") > 0;
    let trip = |v: Value| match keeps_silences {
        true => v,
        false => without_silences(v),
    };
    if !keeps_silences {
        eprintln!("note: the PostgreSQL schema keeps no silences yet: compared without them");
    }
    {
        let store = overc::store::PgStore::open(
            url,
            &StoreOptions::default(),
            Arc::new(clock.clone()) as Arc<dyn Clock>,
            overc::store::PG_START_WAIT,
        )
        .unwrap();
        let mut on_pg = snapshot(&store);
        on_pg["status"]["stats"]
            .as_object_mut()
            .unwrap()
            .remove("leader");
        // What PostgreSQL cannot tell before its silences migration.
        assert_eq!(
            without_silences(on_pg),
            without_silences(expected.clone()),
            "read on PostgreSQL"
        );
        // New rows get ids after the copied ones: the sequences moved.
        keys_still_decide(&store);
        let added = store.add_server(overc::ServerId {
            name: "new".into(),
            key: "k".into(),
        });
        assert!(added.unwrap().server_id.unwrap() > 2);
        store.close();
    }
    let copy = open(&back, &clock);
    assert_eq!(trip(snapshot(&copy)), trip(expected), "back on SQLite");
    keys_still_decide(&copy);
    copy.close();
}

#[test]
fn a_target_that_holds_data_or_a_source_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (source, clock) = populate(dir.path());
    let target = dir.path().join("target.db");
    copy_database(&sqlite(&source), &sqlite(&target), &mut ()).unwrap();
    let e = copy_database(&sqlite(&source), &sqlite(&target), &mut ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("already holds data"), "{e}");
    assert!(e.contains("target.db"), "{e}");

    let e = copy_database(&sqlite(&source), &sqlite(&source), &mut ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("same file"), "{e}");

    // A server running on the source: its redo log may hold what the file does not.
    let running = open(&source, &clock);
    let fresh = dir.path().join("fresh.db");
    let e = copy_database(&sqlite(&source), &sqlite(&fresh), &mut ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("in use"), "{e}");
    assert!(!fresh.exists(), "nothing created for a refused source");
    running.close();
    drop(running);
    copy_database(&sqlite(&source), &sqlite(&fresh), &mut ()).unwrap();
}

fn overc_server(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_overc-server"))
        .args(args)
        .current_dir(dir)
        .env_remove("OVERC_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_binary_copies_and_refuses_with_exit_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = populate(dir.path());
    let d = dir.path();
    let (code, out, err) = overc_server(
        &["copy", "--from", "source.db", "--to", "sqlite:copy.db"],
        d,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("copied 2 hosts, 4 services,"), "{out}");
    // Not a terminal: one plain line per table.
    assert!(
        err.lines()
            .any(|l| l.starts_with("servers") && l.ends_with(" 2 rows")),
        "{err}"
    );
    assert!(!err.contains('\r'), "{err:?}");

    for (args, says) in [
        (
            ["copy", "--from", "source.db", "--to", "copy.db"],
            "already holds data",
        ),
        (
            ["copy", "--from", "missing.db", "--to", "new.db"],
            "there is no database at missing.db",
        ),
        (
            ["copy", "--from", "mysql://u:secret@h/db", "--to", "new.db"],
            "mysql://… is not supported",
        ),
        (["copy", "--from", "source.db", "--too", "new.db"], "--too"),
    ] {
        let (code, out, err) = overc_server(&args, d);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("secret"), "{err}");
        assert!(!d.join("new.db").exists(), "{args:?} created the target");
    }
    let (code, help, _) = overc_server(&["--help"], d);
    assert_eq!(code, 0);
    assert!(
        help.contains("overc-server copy --from SOURCE --to TARGET"),
        "{help}"
    );
}

/// The tables PostgreSQL gets with its silences migration, as SQLite's
/// schema version 6 has them (a no-op once the migration made them).
#[cfg(feature = "postgres")]
const PG_SILENCES: &str = "
    CREATE TABLE IF NOT EXISTS silences(
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
    CREATE TABLE IF NOT EXISTS acks(
        service_id BIGINT PRIMARY KEY REFERENCES services(id) ON DELETE CASCADE,
        author TEXT NOT NULL,
        comment TEXT NOT NULL,
        ctime BIGINT NOT NULL,
        problem TEXT NOT NULL
    );
    ALTER TABLE alerts ADD COLUMN IF NOT EXISTS silenced BOOLEAN NOT NULL DEFAULT false;";

#[cfg(feature = "postgres")]
fn pg_store(url: &overc::config::PostgresUrl, clock: &ManualClock) -> overc::store::PgStore {
    overc::store::PgStore::open(
        url,
        &StoreOptions::default(),
        Arc::new(clock.clone()) as Arc<dyn Clock>,
        overc::store::PG_START_WAIT,
    )
    .unwrap()
}

#[cfg(feature = "postgres")]
#[test]
fn a_postgresql_schema_with_silences_carries_them_there_and_back() {
    let Some(pg) = PgDb::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (source, clock) = populate(dir.path());
    let db = parse_database(&pg.url).unwrap();
    let Database::Postgres(url) = &db else {
        panic!("not a PostgreSQL URL")
    };
    pg_store(url, &clock).close();
    let mut client = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
    client.batch_execute(PG_SILENCES).unwrap();

    let there = copy_database(&sqlite(&source), &db, &mut ()).unwrap();
    assert_eq!((there.rows("silences"), there.rows("acks")), (3, 1));
    let stored: String = client
        .query_one("SELECT comment FROM silences WHERE author = 'host:db'", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        stored, "maintenance \u{FFFF}\u{FFFF} window",
        "stored text, escaped"
    );
    let silenced: i64 = client
        .query_one("SELECT count(*) FROM alerts WHERE silenced", &[])
        .unwrap()
        .get(0);
    assert!(silenced > 0);
    let next: i64 = client
        .query_one(
            "SELECT nextval(pg_get_serial_sequence('silences', 'id'))",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(next, 4, "the sequence goes on after the copied ids");

    let back = dir.path().join("back.db");
    copy_database(&db, &sqlite(&back), &mut ()).unwrap();
    let expected = {
        let store = open(&source, &clock);
        let v = snapshot(&store);
        store.close();
        v
    };
    let copy = open(&back, &clock);
    assert_eq!(snapshot(&copy), expected);
    copy.close();
}

#[cfg(feature = "postgres")]
#[test]
fn a_postgresql_target_with_a_server_or_data_is_refused() {
    let Some(pg) = PgDb::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (source, clock) = populate(dir.path());
    let db = parse_database(&pg.url).unwrap();
    let Database::Postgres(url) = &db else {
        panic!("not a PostgreSQL URL")
    };
    let store = pg_store(url, &clock);
    let t0 = std::time::Instant::now();
    while !store.is_leader() {
        assert!(t0.elapsed().as_secs() < 20, "no leader");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let e = copy_database(&sqlite(&source), &db, &mut ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("server runs on the target"), "{e}");
    let rest = pg.url.split_once("://").unwrap().1;
    if let Some((user, _)) = rest.split_once('@') {
        if let Some((_, password)) = user.split_once(':') {
            assert!(!e.contains(password), "the password in {e}");
        }
    }
    store
        .add_server(overc::ServerId {
            name: "h".into(),
            key: "k".into(),
        })
        .unwrap();
    store.close();
    drop(store);
    let e = copy_database(&sqlite(&source), &db, &mut ())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("already holds data (table servers has rows)"),
        "{e}"
    );
}

/// More rows than a page in the history, the events and the deliveries
/// (whose key is two columns), copied there and back.
#[test]
fn tables_longer_than_a_page_are_copied_whole() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.db");
    let clock = ManualClock::new(T0);
    let opts = StoreOptions {
        history_limit: 100_000,
        ..StoreOptions::default()
    };
    let store = Store::open(&source, &opts, Arc::new(clock.clone()) as Arc<dyn Clock>).unwrap();
    let reports = (0..2100)
        .map(|i| {
            let state = ["OK", "FAIL"][i % 2];
            let v = report("h", "k", "flappy", state, &format!("report {i}"));
            let r = overc::StatusReport::from_json(v.as_object().unwrap()).unwrap();
            (r, "10.0.0.1".to_owned())
        })
        .collect();
    for r in store.report_many(reports) {
        r.unwrap();
    }
    loop {
        let alerts = store.unrouted(500).unwrap();
        if alerts.is_empty() {
            break;
        }
        let routes = alerts
            .iter()
            .map(|n| (n.id, vec!["a".to_owned(), "b".to_owned()]))
            .collect();
        store.route(routes).unwrap();
    }
    let pending = |s: &dyn Storage| {
        let p = s.pending_deliveries("b", 10_000).unwrap();
        (p.len(), format!("{:?}", p.last()))
    };
    let expected = (snapshot(&store), pending(&store));
    store.close();
    drop(store);
    assert!(expected.1.0 > 2000, "{}", expected.1.0);

    let mut trips = vec![dir.path().join("copy.db")];
    copy_database(&sqlite(&source), &sqlite(&trips[0]), &mut ()).unwrap();
    #[cfg(feature = "postgres")]
    let pg = PgDb::create();
    #[cfg(feature = "postgres")]
    if let Some(pg) = &pg {
        let db = parse_database(&pg.url).unwrap();
        copy_database(&sqlite(&source), &db, &mut ()).unwrap();
        trips.push(dir.path().join("back.db"));
        let summary = copy_database(&db, &sqlite(&trips[1]), &mut ()).unwrap();
        assert_eq!(summary.rows("states"), 2100);
    }
    for copy in &trips {
        let store = Store::open(copy, &opts, Arc::new(clock.clone()) as Arc<dyn Clock>).unwrap();
        assert_eq!((snapshot(&store), pending(&store)), expected, "{copy:?}");
        store.close();
    }
}
