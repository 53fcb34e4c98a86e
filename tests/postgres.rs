//! SPEC §10 on a real PostgreSQL (`OVERC_TEST_POSTGRES`): several servers
//! on one database, race-free registration, and the errors an operator
//! sees. Without the variable only what needs no database runs.

#![cfg(feature = "postgres")]

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use overc::config::{Database, PostgresUrl, parse_database};
use overc::store::{PgStore, StoreOptions};
use overc::{Server, SystemClock};

use crate::common::backend::PgDb;
use crate::common::{TestServer, config_in, get, post_bytes, report};

fn url(text: &str) -> PostgresUrl {
    match parse_database(text).unwrap() {
        Database::Postgres(url) => url,
        other => panic!("{other:?}"),
    }
}

fn open(url: &PostgresUrl, wait: Duration) -> overc::Result<PgStore> {
    PgStore::open(url, &StoreOptions::default(), Arc::new(SystemClock), wait)
}

#[test]
fn a_server_waits_for_postgres_then_says_it_did_not_come() {
    // A port nothing listens on: refused at once, retried until the wait ends.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let e = open(
        &url(&format!("postgres://overc:hunter2@127.0.0.1:{port}/overc")),
        Duration::from_secs(3),
    )
    .unwrap_err()
    .to_string();
    assert!(started.elapsed() >= Duration::from_secs(1), "retried");
    assert!(e.contains("did not accept connections within 3 s"), "{e}");
    assert!(!e.contains("hunter2") && e.contains("overc:***@"), "{e}");
}

#[test]
fn a_wrong_password_or_database_is_refused_at_once_saying_what_to_fix() {
    let Some(pg) = PgDb::create() else { return };
    let (scheme, rest) = pg.url.split_once("://").unwrap();
    let (userinfo, host) = rest.rsplit_once('@').unwrap();
    let user = userinfo.split(':').next().unwrap();
    let started = Instant::now();
    let e = open(
        &url(&format!("{scheme}://{user}:hunter2-wrong@{host}")),
        Duration::from_secs(30),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("refused the login of user"), "{e}");
    assert!(!e.contains("hunter2-wrong"), "{e}");
    let host_only = host.split('/').next().unwrap();
    let e = open(
        &url(&format!(
            "{scheme}://{userinfo}@{host_only}/overc_no_such_db"
        )),
        Duration::from_secs(30),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("has no database \"overc_no_such_db\""), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10), "not retried");
}

/// Servers started at once on an empty database: one creates the schema
/// under the advisory lock, the others find it done.
#[test]
fn servers_starting_together_create_the_schema_once() {
    let Some(pg) = PgDb::create() else { return };
    let url = url(&pg.url);
    let barrier = Arc::new(Barrier::new(4));
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                open(&url, Duration::from_secs(10)).map(|_| ())
            })
        })
        .collect();
    for t in opened {
        t.join().unwrap().unwrap();
    }
}

/// Two servers on one database: what one stores the other shows; and when
/// both get the first report of new hosts with different keys at the same
/// moment, one key is stored per host and the other request gets 403.
#[test]
fn two_servers_share_one_database_and_register_each_host_once() {
    let Some(pg) = PgDb::create() else { return };
    let start = || {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(dir.path());
        pg.use_in(&mut config);
        let server = Server::start(config.clone()).unwrap();
        TestServer::wrap_any(server, dir, config, None)
    };
    let (a, b) = (start(), start());
    assert_eq!(
        a.post_json(
            "/api/set/service/status",
            &report("web", "k", "http", "OK", "fine")
        )
        .0,
        200
    );
    let on_b = b.service("web", "http").expect("B shows what A stored");
    assert_eq!(on_b["state"]["info"], "fine");

    const HOSTS: usize = 20;
    let barrier = Arc::new(Barrier::new(2));
    let race = |url: String, key: &'static str| {
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            barrier.wait();
            (0..HOSTS)
                .map(|i| {
                    let body = report(&format!("new{i}"), key, "s", "OK", key);
                    post_bytes(&url, "/api/set/service/status", body.to_string().as_bytes()).0
                })
                .collect::<Vec<u16>>()
        })
    };
    let (ta, tb) = (race(a.url(), "key-a"), race(b.url(), "key-b"));
    let (got_a, got_b) = (ta.join().unwrap(), tb.join().unwrap());
    for i in 0..HOSTS {
        let mut codes = [got_a[i], got_b[i]];
        codes.sort();
        assert_eq!(
            codes,
            [200, 403],
            "host new{i}: A {}, B {}",
            got_a[i],
            got_b[i]
        );
        // The key that won is the one that still works, on either server.
        let winner = if got_a[i] == 200 { "key-a" } else { "key-b" };
        let body = report(&format!("new{i}"), winner, "s", "OK", "again");
        for t in [&a, &b] {
            assert_eq!(t.post_json("/api/set/service/status", &body).0, 200);
        }
    }
    let (_, status) = get(&b.url(), "/ui/api/status/");
    assert_eq!(status["servers"].as_array().unwrap().len(), HOSTS + 1);
    drop((a, b));
}

/// One leader among servers on one database (SPEC §10): it alone flags
/// overdue services, also those reported to another server, and delivers
/// each alert once; when it stops, another server takes over within
/// `leader-timeout`, from what the database holds.
#[test]
fn one_leader_supervises_and_delivers_and_another_takes_over() {
    use overc::ManualClock;

    let Some(pg) = PgDb::create() else { return };
    let clock = ManualClock::new(crate::common::T0);
    let start = |inbox: &Inbox| server_with_inbox(&pg, &clock, inbox);
    let (inbox_a, inbox_b): (Inbox, Inbox) = Default::default();
    let a = start(&inbox_a);
    let b = start(&inbox_b);
    let leader = |t: &TestServer| t.server().app().store().is_leader();
    assert!(leader(&a) && !leader(&b), "the first server leads");
    let shown = b.status()["stats"]["leader"].clone();
    assert_eq!(shown["listen"], a.server().addr().to_string(), "{shown}");
    // And the machine, as servers on two hosts may listen on one address.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    if !host.trim().is_empty() {
        assert_eq!(shown["host"], host.trim(), "{shown}");
    }

    // Reported to B only; B raises the state change, A delivers it.
    let fail = report("h", "k", "s", "FAIL", "down");
    assert_eq!(b.post_json("/api/set/service/status", &fail).0, 200);
    b.server().app().supervise_now().unwrap();
    assert!(inbox_b.lock().unwrap().is_empty(), "B does not deliver");
    a.server().app().supervise_now().unwrap();
    let got = std::mem::take(&mut *inbox_a.lock().unwrap());
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("[service:state/FAIL]"), "{got:?}");

    // Its deadline is in the database: A flags it overdue.
    clock.advance(61_000);
    b.server().app().supervise_now().unwrap();
    assert!(inbox_b.lock().unwrap().is_empty());
    let (offline, _) = a.server().app().supervise_now().unwrap();
    assert_eq!(offline, 1);
    let got = std::mem::take(&mut *inbox_a.lock().unwrap());
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("[plugin/offline]"), "{got:?}");

    // The leader goes; B takes over within leader-timeout and delivers
    // what is raised from then on.
    let stopped = Instant::now();
    drop(a);
    while !leader(&b) {
        assert!(
            stopped.elapsed() < Duration::from_secs(2 + 2),
            "no takeover within leader-timeout"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        b.status()["stats"]["leader"]["listen"],
        b.server().addr().to_string()
    );
    let ok = report("h", "k", "s", "OK", "back");
    assert_eq!(b.post_json("/api/set/service/status", &ok).0, 200);
    b.server().app().supervise_now().unwrap();
    let got = std::mem::take(&mut *inbox_b.lock().unwrap());
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].contains("[service:state/OK]") && got[1].contains("[plugin/online]"),
        "{got:?}"
    );
    assert!(inbox_a.lock().unwrap().is_empty());
}

/// Regression: a leader that lost the leadership in the middle of a
/// delivery pass went on running its plugins on the rest of the pass (up
/// to 100 alerts), beside the new leader. It stops after the one in flight.
#[test]
fn a_leader_deposed_during_a_delivery_pass_runs_no_further_plugin() {
    use std::sync::{Mutex, OnceLock};

    use overc::Notification;
    use overc::server::App;

    let Some(pg) = PgDb::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path());
    config.leader_timeout = 2;
    pg.use_in(&mut config);
    let app: Arc<OnceLock<Arc<App>>> = Arc::default();
    // What the plugin got, and whether its server led when it ran.
    let runs: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let (this, got, url) = (app.clone(), runs.clone(), pg.url.clone());
    let server = Server::builder(config.clone())
        .notifier("app", move |n: &Notification| {
            let app = this.get().expect("started");
            let leads = app.store().is_leader();
            let first = {
                let mut got = got.lock().unwrap();
                got.push((n.text(), leads));
                got.len() == 1
            };
            if first {
                // Its leadership ends while this alert is in flight: the
                // session holding the lock is ended from outside.
                let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                admin
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks
                         WHERE locktype = 'advisory' AND granted AND database =
                             (SELECT oid FROM pg_database WHERE datname = current_database())",
                        &[],
                    )
                    .unwrap();
                let since = Instant::now();
                while app.store().is_leader() {
                    assert!(since.elapsed() < Duration::from_secs(5), "still the leader");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            Ok(())
        })
        .start()
        .unwrap();
    let _ = app.set(server.app().clone());
    let t = TestServer::wrap_any(server, dir, config, None);
    // Three alerts in one commit: one pass finds them all.
    let fail = serde_json::json!({
        "server": {"name": "h", "key": "k"},
        "period": 60,
        "services": [
            {"name": "s1", "state": "FAIL", "info": "down"},
            {"name": "s2", "state": "FAIL", "info": "down"},
            {"name": "s3", "state": "FAIL", "info": "down"},
        ],
    });
    assert_eq!(t.post_json("/api/set/service/status", &fail).0, 200);
    let _ = t.server().app().supervise_now();
    let runs = runs.lock().unwrap().clone();
    assert!(!runs.is_empty(), "the leader delivers");
    assert!(
        runs.iter().all(|(_, leads)| *leads),
        "a plugin ran on a server that no longer led: {runs:?}"
    );
}

/// Silences and acknowledgements set on any server hold where reports
/// are written and on the leader, which tells what a silence held back
/// once at its end, whichever servers process that end at the same time.
#[test]
fn silences_and_acks_from_any_server_hold_on_the_leader_and_end_once() {
    use overc::{Clock, ManualClock};
    use serde_json::json;

    let Some(pg) = PgDb::create() else { return };
    let clock = ManualClock::new(crate::common::T0);
    let start = |inbox: &Inbox| server_with_inbox(&pg, &clock, inbox);
    let (inbox_a, inbox_b): (Inbox, Inbox) = Default::default();
    let a = start(&inbox_a);
    let b = start(&inbox_b);
    assert!(a.server().app().store().is_leader());
    let told = || {
        b.server().app().supervise_now().unwrap();
        a.server().app().supervise_now().unwrap();
        assert!(inbox_b.lock().unwrap().is_empty(), "B does not deliver");
        std::mem::take(&mut *inbox_a.lock().unwrap())
    };
    // Hourly: nothing goes overdue here.
    let report = |service, state, info| {
        let mut r = report("h", "k", service, state, info);
        r["period"] = json!(3600);
        r
    };
    for service in ["s", "t"] {
        let ok = report(service, "OK", "fine");
        assert_eq!(a.post_json("/api/set/service/status", &ok).0, 200);
    }
    // Set on B; A writes the report it silences.
    let silence = json!({"server": {"name": "h", "key": "k"}, "service": "s", "duration": 600});
    let (code, v) = b.post_json("/api/set/silence", &silence);
    assert_eq!(code, 200, "{v}");
    let fail = |service| report(service, "FAIL", "down");
    assert_eq!(a.post_json("/api/set/service/status", &fail("s")).0, 200);
    assert_eq!(b.post_json("/api/set/service/status", &fail("t")).0, 200);
    let got = told();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("h t: [service:state/FAIL]"), "{got:?}");
    assert_eq!(a.service("h", "s").unwrap()["silenced"], true);
    assert_eq!(b.service("h", "s").unwrap()["silenced"], true);

    // Acknowledged on B: told by A, shown by both, held by the leader.
    let t = a.service("h", "t").unwrap()["id"].as_i64().unwrap();
    b.server().engine().ack(t, "ann", "on it").unwrap();
    let got = told();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("h t: [service:ack] Acknowledged by ann: on it"),
        "{got:?}"
    );
    assert_eq!(a.service("h", "t").unwrap()["ack"]["author"], "ann");
    assert!(a.server().engine().ack_of(t).unwrap().is_some());
    // A report to A that changes the problem ends it for everyone.
    let warn = report("t", "WARN", "slow");
    assert_eq!(a.post_json("/api/set/service/status", &warn).0, 200);
    assert!(b.server().engine().ack_of(t).unwrap().is_none());
    assert_eq!(told().len(), 1);

    // Its expiry: the leader tells the problem it held back, once.
    clock.advance(600_000);
    let got = told();
    assert_eq!(
        got,
        ["h s: [service:state/FAIL] Silence ended: still FAIL\nCurrent: FAIL: down"]
    );
    assert!(told().is_empty(), "once");
    assert_eq!(a.service("h", "s").unwrap()["silenced"], false);

    // Two servers processing the same end at once: one of them does.
    let (code, _) = b.post_json("/api/set/silence", &silence);
    assert_eq!(code, 200);
    let down = report("s", "UNK", "gone");
    assert_eq!(a.post_json("/api/set/service/status", &down).0, 200);
    assert!(told().is_empty());
    clock.advance(600_000);
    let barrier = Barrier::new(2);
    let now = clock.now();
    let ended: Vec<overc::store::Applied> = std::thread::scope(|scope| {
        let both = [&a, &b].map(|t| {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                t.server().app().store().end_silences(now).unwrap()
            })
        });
        both.map(|h| h.join().unwrap()).into()
    });
    let n: usize = ended.iter().map(|e| e.ended_silences.len()).sum();
    let alerts: usize = ended.iter().map(|e| e.alerts.len()).sum();
    assert_eq!((n, alerts), (1, 1), "{ended:?}");
    let got = told();
    assert_eq!(
        got,
        ["h s: [service:state/UNK] Silence ended: still UNK\nCurrent: UNK: gone"]
    );
}

/// TLS as libpq's `sslmode` asks, against the cluster of
/// `OVERC_TEST_POSTGRES` with `ssl = on` and the certificate of tests/tls
/// (for 127.0.0.1 and localhost), as scripts/e2e-postgres.sh starts it. A
/// cluster without TLS gets only the check that `require` is refused
/// saying so.
#[test]
fn tls_to_postgres_as_sslmode_asks() {
    let Some(pg) = PgDb::create() else { return };
    let mut admin = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
    let with = |url: &str, params: &str| {
        let sep = if url.contains('?') { '&' } else { '?' };
        self::url(&format!("{url}{sep}{params}"))
    };
    let wait = Duration::from_secs(5);
    let ssl: String = admin.query_one("SHOW ssl", &[]).unwrap().get(0);
    if ssl != "on" {
        let e = open(&with(&pg.url, "sslmode=require"), wait)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not accept TLS connections"), "{e}");
        eprintln!("note: the cluster has ssl off: only sslmode=require's refusal was checked");
        return;
    }
    let ca = crate::common::tls::CA_PEM;
    // Whether the connections a store opened (named by the case) use TLS.
    let mut encrypted = |name: &str| -> Vec<bool> {
        admin
            .query(
                "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid
                 WHERE a.application_name = $1",
                &[&name],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    for (i, (params, tls)) in [
        ("sslmode=disable", false),
        ("sslmode=prefer", true),
        ("sslmode=require", true),
        // SCRAM bound to the certificate: its hash is the server's.
        ("sslmode=require&channel_binding=require", true),
        (&format!("sslmode=verify-ca&sslrootcert={ca}") as &str, true),
        (&format!("sslmode=verify-full&sslrootcert={ca}"), true),
        (&format!("sslmode=require&sslrootcert={ca}"), true),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("overc_tls_{i}");
        let store = open(
            &with(&pg.url, &format!("{params}&application_name={name}")),
            wait,
        )
        .unwrap_or_else(|e| panic!("{params}: {e}"));
        let seen = encrypted(&name);
        assert!(!seen.is_empty(), "{params}: no connection seen");
        assert!(seen.iter().all(|s| *s == tls), "{params}: {seen:?}");
        drop(store);
    }

    // Not the test CA: the built-in roots do not know it.
    let e = open(&with(&pg.url, "sslmode=verify-full"), wait)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("certificate verification failed") && e.contains("UnknownIssuer"),
        "{e}"
    );
    assert!(!e.contains(&password(&pg.url)), "{e}");
    // Another host name at the same address: the chain is good, the name
    // is not.
    let (at, rest) = pg.url.split_once('@').unwrap();
    let end = rest.find([':', '/']).unwrap();
    let (host, tail) = rest.split_at(end);
    let port: u16 = tail[1..].split(['/', '?']).next().unwrap().parse().unwrap();
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .unwrap()
        .next()
        .unwrap()
        .ip();
    let renamed = format!("{at}@pg.example{tail}");
    let elsewhere = |mode: &str| {
        with(
            &renamed,
            &format!("hostaddr={addr}&sslmode={mode}&sslrootcert={ca}"),
        )
    };
    let e = open(&elsewhere("verify-full"), wait)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("certificate verification failed") && e.contains("NotValidForName"),
        "{e}"
    );
    assert!(
        open(&elsewhere("verify-ca"), wait).is_ok(),
        "verify-ca checks no name"
    );
}

/// The password of a `postgres://USER:PASSWORD@…` URL.
fn password(url: &str) -> String {
    let (_, rest) = url.split_once("://").unwrap();
    let (user, _) = rest.split_once('@').unwrap();
    user.split_once(':')
        .map(|(_, p)| p.to_owned())
        .unwrap_or_default()
}

/// Delivery claims: what one server is delivering another skips (`FOR
/// UPDATE SKIP LOCKED` and a lease), until it is recorded or the lease ends.
#[test]
fn a_delivery_one_server_claims_is_skipped_by_another_until_its_lease_ends() {
    use overc::store::{DeliveryOutcome, Storage};
    use overc::{Clock, ManualClock};

    let Some(pg) = PgDb::create() else { return };
    let url = url(&pg.url);
    let clock = ManualClock::new(crate::common::T0);
    let open_as = |node: &str| {
        let opts = StoreOptions {
            node: node.into(),
            leader_timeout: Duration::from_secs(10),
            ..StoreOptions::default()
        };
        PgStore::open(
            &url,
            &opts,
            Arc::new(clock.clone()) as Arc<dyn Clock>,
            Duration::from_secs(10),
        )
        .unwrap()
    };
    let (a, b) = (open_as("a:1"), open_as("b:1"));
    let alert = failure_for_plugin_p(&a);
    let ids = pending_for_p;
    assert_eq!(ids(&a), [alert]);
    assert_eq!(ids(&a), [alert], "its own claim it sees again");
    assert_eq!(ids(&b), Vec::<i64>::new(), "claimed by a");
    clock.advance(10_001);
    assert_eq!(ids(&b), [alert], "a's lease ended");
    assert_eq!(ids(&a), Vec::<i64>::new(), "now b's");
    b.record_delivery(
        "p",
        alert,
        DeliveryOutcome::Failed {
            error: "no".into(),
            retry_at: clock.now() + 10_000,
        },
    )
    .unwrap();
    assert_eq!(ids(&a), [alert], "a failed attempt lets the claim go");
}

/// Regression: a delivery claim named its server by the listen address
/// alone, and servers on two hosts behind a load balancer often both listen
/// on 127.0.0.1:5000: each took the other's claims for its own, so a new
/// leader delivered what an old one still alive was delivering.
#[test]
fn servers_with_the_same_listen_address_do_not_take_each_others_claims() {
    let Some(pg) = PgDb::create() else { return };
    let url = url(&pg.url);
    let opts = StoreOptions {
        node: "127.0.0.1:5000".into(),
        leader_timeout: Duration::from_secs(10),
        ..StoreOptions::default()
    };
    let open_one =
        || PgStore::open(&url, &opts, Arc::new(SystemClock), Duration::from_secs(10)).unwrap();
    let (a, b) = (open_one(), open_one());
    let alert = failure_for_plugin_p(&a);
    let ids = pending_for_p;
    assert_eq!(ids(&a), [alert]);
    assert_eq!(ids(&b), Vec::<i64>::new(), "claimed by the other server");
    assert_eq!(ids(&a), [alert], "still a's own");
}

/// The same requests at the same times give the same read API on SQLite
/// and on PostgreSQL, byte for byte (but `stats.leader`, PostgreSQL's own).
#[test]
fn both_backends_answer_the_read_api_alike() {
    use serde_json::{Value, json};

    let Some(pg) = PgDb::create() else { return };
    let run = |pg: Option<&PgDb>| -> Vec<Value> {
        let t = TestServer::start_manual(|c| {
            c.policy.flapping = true;
            c.policy.retries = 2;
            c.grace = 5;
            if let Some(pg) = pg {
                pg.use_in(c);
            }
        });
        let clock = t.clock.clone().unwrap();
        let send = |service: &str, state: &str, info: &str| {
            let mut body = report("web", "k", service, state, info);
            body["services"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "db", "state": "OK", "info": "x\u{0}y", "period": 30}));
            assert_eq!(t.post_json("/api/set/service/status", &body).0, 200);
        };
        for (i, state) in [
            "OK", "FAIL", "FAIL", "OK", "WARN", "OK", "FAIL", "OK", "FAIL", "OK",
        ]
        .iter()
        .enumerate()
        {
            send("http", state, &format!("run {i} | t={i}ms;5;10"));
            clock.advance(7_000);
        }
        let alert = json!({"server": {"name": "web", "key": "k"},
            "alerts": [{"message": "deploy", "service": "http", "severity": "WARN"}, {"message": "reboot"}]});
        assert_eq!(t.post_json("/api/set/alerts", &alert).0, 200);
        assert_eq!(
            t.post_json(
                "/api/set/service/status",
                &report("mail", "m", "smtp", "UNK", "?")
            )
            .0,
            200
        );
        t.server().app().supervise_now().unwrap();
        clock.advance(70_000);
        t.server().app().supervise_now().unwrap();
        let status = t.status();
        let id = |server: &str, service: &str| -> i64 {
            status["servers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == server)
                .unwrap()["services"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == service)
                .unwrap()["id"]
                .as_i64()
                .unwrap()
        };
        let (http, smtp) = (id("web", "http"), id("mail", "smtp"));
        t.server()
            .engine()
            .rename_service(http, "Web site")
            .unwrap();
        t.server().engine().delete_service(smtp).unwrap();
        let mut got = vec![t.status()];
        got[0]["stats"].as_object_mut().unwrap().remove("leader");
        for path in [
            "/ui/api/status/alerts/".to_owned(),
            format!("/ui/api/status/service/{http}/states?groups=yes"),
            format!("/ui/api/status/service/{http}/states"),
            format!("/ui/api/status/service/{http}"),
        ] {
            let (code, mut v) = t.get(&path);
            assert_eq!(code, 200, "{path}: {v}");
            if let Some(stats) = v.get_mut("stats") {
                stats.as_object_mut().unwrap().remove("leader");
            }
            got.push(v);
        }
        got
    };
    let sqlite = run(None);
    let postgres = run(Some(&pg));
    let alerts = sqlite[1]["alerts"].as_array().unwrap();
    assert!(alerts.len() >= 8, "a scenario with alerts: {alerts:?}");
    assert!(
        alerts.iter().any(|a| a["soft"] == true) && alerts.iter().any(|a| a["event"] == "offline"),
        "soft changes and overdue: {alerts:?}"
    );
    assert!(sqlite[2]["states"].as_array().unwrap().len() >= 5);
    for (s, p) in sqlite.iter().zip(&postgres) {
        assert_eq!(s, p, "SQLite:\n{s:#}\nPostgreSQL:\n{p:#}");
    }
}

/// What a test server's notifier `app` was told, as texts.
type Inbox = Arc<std::sync::Mutex<Vec<String>>>;

/// A server on the test database with leader-timeout 2 s, the test clock,
/// and a notifier `app` that keeps what it is told in `inbox`.
fn server_with_inbox(pg: &PgDb, clock: &overc::ManualClock, inbox: &Inbox) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path());
    config.leader_timeout = 2;
    pg.use_in(&mut config);
    let got = inbox.clone();
    let server = Server::builder(config.clone())
        .clock(Arc::new(clock.clone()) as Arc<dyn overc::Clock>)
        .notifier("app", move |n: &overc::Notification| {
            got.lock().unwrap().push(n.text());
            Ok(())
        })
        .start()
        .unwrap();
    TestServer::wrap_any(server, dir, config, None)
}

/// Two batches that take the same services' locks in opposite orders (a
/// host's report naming them one way, the next the other way, on two
/// servers or two writers of one): the services that exist are locked in
/// the order of their names first; new ones are inserted in the report's
/// order, which may deadlock, and PostgreSQL aborts one batch, which its
/// writer runs again. Both reports are stored and answered as if they had
/// come one after the other.
#[test]
fn batches_locking_services_in_opposite_orders_both_succeed() {
    let Some(pg) = PgDb::create() else { return };
    let url = url(&pg.url);
    let stores = [
        open(&url, Duration::from_secs(30)).unwrap(),
        open(&url, Duration::from_secs(30)).unwrap(),
    ];
    // The same services in even rounds (locked in name order up front),
    // new ones in odd rounds (inserted in the report's order: deadlocks,
    // and batches run again).
    let names = |round: usize| -> Vec<String> {
        (0..16)
            .map(|i| match round % 2 {
                0 => format!("svc{i:02}"),
                _ => format!("new{round:02}-{i:02}"),
            })
            .collect()
    };
    let body = |reversed: bool, round: usize| {
        let mut services: Vec<serde_json::Value> = names(round)
            .iter()
            .map(|n| serde_json::json!({"name": n, "state": "OK", "info": format!("{round}")}))
            .collect();
        if reversed {
            services.reverse();
        }
        let v = serde_json::json!({
            "server": {"name": "web", "key": "key-web"},
            "period": 60,
            "services": services,
        });
        overc::StatusReport::from_json(v.as_object().unwrap()).unwrap()
    };
    stores[0].report(body(false, 0), "127.0.0.1").unwrap();
    const ROUNDS: usize = 10;
    let barrier = Barrier::new(2);
    let failed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for (i, store) in stores.iter().enumerate() {
            let (barrier, body, failed) = (&barrier, &body, &failed);
            scope.spawn(move || {
                for round in 1..=ROUNDS {
                    barrier.wait();
                    if let Err(e) = store.report(body(i == 1, round), "127.0.0.1") {
                        failed
                            .lock()
                            .unwrap()
                            .push(format!("round {round}, server {i}: {e}"));
                    }
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap();
    assert!(failed.is_empty(), "{failed:#?}");
    use overc::store::Storage;
    let counts = stores[0].counts().unwrap();
    let rounds = ROUNDS as i64;
    assert_eq!(
        (counts.servers, counts.services),
        (1, 16 + 16 * (rounds / 2)),
        "{counts:?}"
    );
    assert_eq!(counts.states, 16 + 2 * 16 * rounds, "{counts:?}");
}

/// However many requests read at once, a server opens at most its few
/// read connections beside its writers' and the leader's: three servers
/// fit PostgreSQL's default `max_connections` (100) with room to spare.
#[test]
fn many_reads_at_once_stay_within_a_few_connections() {
    use overc::store::Storage;

    let Some(pg) = PgDb::create() else { return };
    let url = url(&pg.url);
    let store = open(&url, Duration::from_secs(30)).unwrap();
    let mut admin = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let most = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..24)
            .map(|_| {
                scope.spawn(|| {
                    for _ in 0..20 {
                        store.counts().unwrap();
                    }
                })
            })
            .collect();
        let sampler = scope.spawn(|| {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let n: i64 = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity
                         WHERE datname = current_database() AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                most = most.max(n);
            }
            most
        });
        for r in readers {
            r.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        sampler.join().unwrap()
    });
    // Four writers, six readers, the leader's.
    assert!(most <= 11, "{most} connections at once");
    assert!(most > 0, "the sampler saw the server's connections");
}

/// Host `h` reports its service `s` failing; the alert is routed to plugin
/// `p`. Its id.
fn failure_for_plugin_p(store: &PgStore) -> i64 {
    use overc::store::Storage;

    let service = overc::ServiceReport {
        name: "s".into(),
        state: overc::State::Fail,
        info: "down".into(),
        ..Default::default()
    };
    let report = overc::StatusReport {
        server: overc::ServerId {
            name: "h".into(),
            key: "k".into(),
        },
        period: 60,
        services: vec![service],
        retries: None,
    };
    let alert = store.report(report, "127.0.0.1").unwrap().alerts[0];
    store.route(vec![(alert, vec!["p".into()])]).unwrap();
    alert
}

/// The alerts plugin `p` may deliver from `store` now (claiming them).
fn pending_for_p(store: &PgStore) -> Vec<i64> {
    use overc::store::Storage;

    store
        .pending_deliveries("p", 10)
        .unwrap()
        .iter()
        .map(|p| p.notification.id)
        .collect()
}
