//! The single writer thread: applies operations in batches (group commit),
//! appends each batch's writes to the redo log, hands the answers to the
//! fsync thread, commits SQLite about once a second, and prunes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::durability::{MAX_UNCOMMITTED, Redo, Reply, sync_loop};
use super::ops::{acks, admin, auth, overdue, reports, retention, silences};
use super::redo::{Group, Tx};
use super::{Job, Op, StoreOptions};
use crate::clock::{Clock, Millis};
use crate::config::Durability;
use crate::error::{Error, Result};
use crate::idmap::{IdMap, IdSet};
use crate::store::WriteOp;
pub(crate) use crate::store::{Applied, DeadlineChange};

/// Most operations committed in one transaction; bounds the latency one
/// commit adds to the first request of a batch.
const MAX_BATCH: usize = 512;
/// How often the retention rules run when the writer is otherwise idle.
const MAINTENANCE_EVERY: Millis = 10 * 60 * 1000;

#[derive(Clone)]
pub(super) struct KnownServer {
    pub(super) id: i64,
    pub(super) salt: [u8; 16],
    pub(super) hash: [u8; 32],
    /// Address and `last_seen` as last written, to skip rewriting them on
    /// every request.
    pub(super) ip: String,
    pub(super) seen_written: Millis,
    /// The key that last matched the hash: a host sends the same key with
    /// every report, and comparing it costs far less than hashing it.
    pub(super) verified: Option<String>,
}

/// What the writer knows of a service without asking SQLite.
pub(super) type KnownService = crate::store::plan::ServiceMemory;

/// The writer's memory of rows it wrote. It is only ever a copy of what the
/// writer's open transaction holds: after a failed batch or commit it is
/// dropped and refilled from the database on demand.
#[derive(Default)]
pub(super) struct Caches {
    pub(super) servers: HashMap<String, KnownServer>,
    /// server id → service name → service.
    pub(super) services: IdMap<HashMap<String, KnownService>>,
    /// The silences whose end is not processed yet (active ones among
    /// them), loaded on first use: whether an alert is silenced costs no
    /// query (`ops/silences.rs`).
    pub(super) silences: Option<Vec<crate::policy::Silence>>,
    /// Acknowledged services and the problem each was acknowledged in,
    /// loaded on first use (`ops/acks.rs`).
    pub(super) acks: Option<IdMap<crate::policy::Problem>>,
}

pub(super) struct Writer {
    /// `None` for a store in memory: each batch commits.
    pub(super) redo: Option<Redo>,
    pub(super) syncer: Option<mpsc::Sender<Vec<Reply>>>,
    /// Set for good when an fsync of the log failed (by the fsync thread).
    pub(super) sync_failed: Arc<AtomicBool>,
    /// Set for good when SQLite no longer holds what the log says (writes
    /// are refused; a restart runs the log again).
    pub(super) stopped: bool,
    pub(super) conn: Connection,
    pub(super) opts: StoreOptions,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) commits: Arc<AtomicU64>,
    pub(super) alerts_raised: Arc<AtomicU64>,
    /// When the next unfinished silence ends (`Millis::MAX`: none;
    /// `Millis::MIN`: not known), for `Store::end_silences` to skip the
    /// writer until then.
    pub(super) next_silence_end: Arc<AtomicI64>,
    pub(super) caches: Caches,
    /// The writes of the batch being applied.
    pub(super) group: Group,
    /// Reports stored per service since its history was last pruned.
    pub(super) unpruned: IdMap<u32>,
    pub(super) last_maintenance: Millis,
}

/// What the operations of one batch work with: the only handle on the
/// database they get is `tx` (see `redo/tx.rs`: no write outside the log).
pub(super) struct Batch<'a> {
    pub tx: Tx<'a>,
    pub caches: &'a mut Caches,
    /// Services that got history records in this batch.
    pub touched: IdSet,
    /// The clock's time for the whole batch.
    pub now: Millis,
    /// Who may register a new server name.
    pub registration: &'a crate::config::Registration,
    /// Retries and flapping, applied to reports.
    pub policy: &'a crate::policy::PolicyConfig,
}

impl Writer {
    pub(super) fn new(
        redo: Option<Redo>,
        conn: Connection,
        opts: StoreOptions,
        clock: Arc<dyn Clock>,
        commits: Arc<AtomicU64>,
        alerts_raised: Arc<AtomicU64>,
        next_silence_end: Arc<AtomicI64>,
    ) -> Writer {
        // Foreign keys are not enforced on the writer's connection: the
        // writer only ever refers to rows it has just read or written, and
        // deletes children itself. Enforced, every history record cost a
        // lookup of its service, and a report's multi-row INSERT a statement
        // journal (a copy of each page it touched): 15 % of the writer's CPU.
        // Logs of earlier versions, whose deletes relied on ON DELETE
        // CASCADE, ran when the store opened, still enforcing them.
        if let Err(e) = conn.pragma_update(None, "foreign_keys", false) {
            log::warn!("foreign keys stay enforced on the writer's connection: {e}");
        }
        Writer {
            group: Group::new(redo.is_some()),
            redo,
            syncer: None,
            sync_failed: Arc::new(AtomicBool::new(false)),
            stopped: false,
            conn,
            opts,
            clock,
            commits,
            alerts_raised,
            next_silence_end,
            caches: Caches::default(),
            unpruned: IdMap::default(),
            last_maintenance: Millis::MIN,
        }
    }

    pub(super) fn run(mut self, jobs: mpsc::Receiver<Job>) {
        let mut sync_thread = None;
        if let (Some(redo), Durability::Disk) = (&self.redo, self.opts.durability) {
            let (tx, rx) = mpsc::channel();
            let failed = self.sync_failed.clone();
            let started = redo
                .log
                .try_clone_file()
                .map_err(|e| e.to_string())
                .and_then(|file| {
                    std::thread::Builder::new()
                        .name("overc-fsync".into())
                        .spawn(move || sync_loop(file, failed, rx))
                        .map_err(|e| e.to_string())
                });
            match started {
                Ok(h) => {
                    self.syncer = Some(tx);
                    sync_thread = Some(h);
                }
                Err(e) => self.fail(&format!("no fsync thread ({e})")),
            }
        }
        loop {
            // An open transaction commits when no more writes come in.
            let wait = match self.redo.as_ref().and_then(|r| Some((r.open_since?, r))) {
                Some((since, r)) => r.commit_every.saturating_sub(since.elapsed()),
                None => Duration::from_secs(60),
            };
            let first = match jobs.recv_timeout(wait) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let was_open = !self.conn.is_autocommit();
                    self.commit_sqlite();
                    // The writer keeps up: its cache is worth less than the
                    // memory (up to 32 MiB) it holds. A busy writer commits
                    // in `commit` instead and keeps its cache warm.
                    if was_open {
                        if let Err(e) = self.conn.execute_batch("PRAGMA shrink_memory") {
                            log::debug!("shrink_memory failed: {e}");
                        }
                    }
                    self.maintain_if_due();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            #[cfg(test)]
            if batch.iter().any(|j| matches!(j.op, Op::Test(Fault::Crash))) {
                // The connection rolls the open transaction back as it
                // closes; the log's lock goes with the fsync thread's handle.
                self.syncer = None;
                if let Some(h) = sync_thread {
                    let _ = h.join();
                }
                return;
            }
            self.commit(batch);
            self.maintain_if_due();
        }
        self.commit_sqlite();
        self.syncer = None;
        if let Some(h) = sync_thread {
            let _ = h.join();
        }
        log::debug!(
            "writer stopped after {} commits",
            self.commits.load(Ordering::Relaxed)
        );
    }

    fn maintain_if_due(&mut self) {
        let now = self.clock.now();
        if now.saturating_sub(self.last_maintenance) < MAINTENANCE_EVERY {
            return;
        }
        self.last_maintenance = now;
        let (reply, answer) = mpsc::sync_channel(1);
        self.commit(vec![Job {
            op: Op::Write(WriteOp::Prune),
            reply,
        }]);
        match answer.recv() {
            Ok(Ok(a)) if a.pruned > 0 => {
                log::info!("pruned {} old records", a.pruned);
                // Gives the freed pages back to the file system, in a
                // transaction of its own: not a write the redo log replays.
                self.commit_sqlite();
                if let Err(e) = self.conn.execute_batch("PRAGMA incremental_vacuum") {
                    log::warn!("incremental vacuum failed: {e}");
                }
            }
            Ok(Err(e)) => log::warn!("pruning failed: {e}"),
            _ => {}
        }
    }

    fn commit(&mut self, batch: Vec<Job>) {
        if self.stopped || self.sync_failed.load(Ordering::SeqCst) {
            for job in batch {
                let _ = job.reply.send(Err(Error::Storage(
                    "a write of the database failed; restart overc-server".into(),
                )));
            }
            return;
        }
        if let Err(e) = self.restart_log_if_full() {
            self.fail(&format!("cannot start the redo log over: {e}"));
            return self.commit(batch);
        }
        let now = self.clock.now();
        let mut results: Vec<Result<Applied>> = Vec::with_capacity(batch.len());
        self.group.clear();
        let Writer {
            conn,
            opts,
            caches,
            unpruned,
            group,
            redo,
            ..
        } = self;
        let outcome = (|| -> Result<()> {
            // The transaction spans batches (it commits about once a second,
            // see `durability.rs`), so it is begun and ended by hand rather
            // than by a guard that would borrow the connection meanwhile.
            if conn.is_autocommit() {
                conn.execute_batch("BEGIN")?;
                if let Some(redo) = redo {
                    redo.open_since = Some(Instant::now());
                }
            }
            let mut state = Batch {
                tx: Tx::new(conn, group),
                caches,
                touched: IdSet::default(),
                now,
                registration: &opts.registration,
                policy: &opts.policy,
            };
            for job in &batch {
                match apply(&job.op, &mut state, opts) {
                    Ok(a) => results.push(Ok(a)),
                    // Refusals are decided before anything is written, so the
                    // batch goes on without a savepoint per operation.
                    Err(
                        e @ (Error::Forbidden(_)
                        | Error::Invalid(_)
                        | Error::NotFound(_)
                        | Error::Conflict(_)),
                    ) => results.push(Err(e)),
                    // Anything else may have left the operation half-done:
                    // roll the whole batch back; every request in it gets a
                    // 503 and retries.
                    Err(e) => return Err(e),
                }
            }
            let step = (opts.history_limit / 10).max(10);
            for id in &state.touched {
                let n = unpruned.entry(*id).or_insert(0);
                *n += 1;
                if *n >= step {
                    *n = 0;
                    retention::prune_history(&mut state.tx, *id, opts.history_limit)?;
                }
            }
            Ok(())
        })()
        .and_then(|()| self.finish_group());
        if let Err(e) = outcome {
            log::error!("commit of {} operations failed: {e}", batch.len());
            // The caches may hold rows of the rolled-back batch.
            self.caches = Caches::default();
            self.next_silence_end.store(Millis::MIN, Ordering::Relaxed);
            if let Err(again) = self.roll_back() {
                self.fail(&format!(
                    "after a failed batch, the writes before it could not run again: {again}"
                ));
            }
            for job in batch {
                let _ = job
                    .reply
                    .send(Err(Error::Storage(format!("commit failed: {e}"))));
            }
            return;
        }
        self.commits.fetch_add(1, Ordering::Relaxed);
        if let Some(list) = &self.caches.silences {
            let next = list.iter().map(|s| s.ends).min().unwrap_or(Millis::MAX);
            self.next_silence_end.store(next, Ordering::Relaxed);
        }
        let raised: usize = results.iter().flatten().map(|a| a.alerts.len()).sum();
        self.alerts_raised
            .fetch_add(raised as u64, Ordering::Relaxed);
        let flush = batch.iter().any(|j| matches!(j.op, Op::Flush));
        if let Some(redo) = &self.redo {
            let due = redo
                .open_since
                .is_some_and(|since| since.elapsed() >= redo.commit_every);
            if flush || due || redo.uncommitted_bytes > MAX_UNCOMMITTED {
                self.commit_sqlite();
            }
        }
        let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
        for (job, result) in batch.into_iter().zip(results) {
            // A read waiting for the commit needs no fsync.
            if matches!(job.op, Op::Flush) {
                let _ = job.reply.send(result);
            } else {
                replies.push((job.reply, result));
            }
        }
        match &self.syncer {
            Some(syncer) => {
                if let Err(mpsc::SendError(replies)) = syncer.send(replies) {
                    for (reply, _) in replies {
                        let _ =
                            reply.send(Err(Error::Storage("the fsync thread has stopped".into())));
                    }
                }
            }
            None => {
                for (reply, result) in replies {
                    let _ = reply.send(result);
                }
            }
        }
    }
}

/// Faults a test injects into the writer.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Stops the writer as a crash would: nothing more is committed.
    Crash,
    /// Writes a server row, then fails as a full disk would.
    FailAfterWrite,
    /// Logs a write that fails when it runs again.
    PoisonLog,
}

#[cfg(test)]
impl Fault {
    fn apply(self, b: &mut Batch<'_>) -> Result<Applied> {
        match self {
            Fault::Crash => Ok(Applied::default()),
            Fault::FailAfterWrite => {
                b.tx.exec(
                    "INSERT INTO servers(name, title, key_salt, key_hash, first_seen, last_seen)
                     VALUES ('doomed', 'doomed', x'00', x'00', 0, 0)",
                    &[],
                )?;
                Err(Error::Storage("disk full".into()))
            }
            Fault::PoisonLog => {
                b.tx.record_only("INSERT INTO no_such_table VALUES (1)")?;
                Ok(Applied::default())
            }
        }
    }
}

fn apply(op: &Op, b: &mut Batch<'_>, opts: &StoreOptions) -> Result<Applied> {
    match op {
        Op::Write(w) => apply_write(w, b, opts),
        Op::Flush => Ok(Applied::default()),
        #[cfg(test)]
        Op::Test(fault) => fault.apply(b),
    }
}

fn apply_write(op: &WriteOp, b: &mut Batch<'_>, opts: &StoreOptions) -> Result<Applied> {
    match op {
        WriteOp::Ping(p, ip) => {
            let id = auth::authenticate(&p.server, ip, b)?;
            Ok(Applied {
                server_id: Some(id),
                ..Applied::default()
            })
        }
        WriteOp::Status(r, ip) => reports::apply_status(r, ip, b),
        WriteOp::Alerts(r, ip) => reports::apply_alerts(r, ip, b),
        WriteOp::AddServer(server) => auth::add_server(server, b),
        WriteOp::Prune => retention::prune_all(b, opts),
        WriteOp::DeleteServer(id) => admin::delete_server(b, *id),
        WriteOp::DeleteService(id) => admin::delete_service(b, *id),
        WriteOp::Rename { service, id, title } => admin::rename(b, *service, *id, title),
        WriteOp::MarkOverdue(due) => overdue::mark_overdue(due, b),
        WriteOp::Route(routes) => admin::route(b, routes),
        WriteOp::Delivery {
            plugin,
            alert_id,
            outcome,
        } => admin::delivery(b, plugin, *alert_id, outcome),
        WriteOp::SystemAlert(event) => admin::system_alert(b, event),
        WriteOp::AddSilence(s) => silences::add(b, s),
        WriteOp::HostSilence(r, ip) => silences::host_silence(r, ip, b),
        WriteOp::HostUnsilence(r, ip) => silences::host_unsilence(r, ip, b),
        WriteOp::EndSilence(id) => silences::end_one(b, *id),
        WriteOp::EndSilences(now) => silences::end_due(b, *now),
        WriteOp::Ack {
            service_id,
            author,
            comment,
        } => acks::ack(b, *service_id, author, comment),
        WriteOp::Unack(id) => acks::unack(b, *id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{AlertReport, StatusReport};
    use crate::state::State;
    use crate::store::Storage;
    use crate::store::sqlite::schema;

    /// Operations handled in one batch see each other's writes: history in
    /// the order sent, a posted alert the state current when it came, a
    /// state change linked to its own record.
    #[test]
    fn operations_in_one_batch_see_each_others_writes() {
        use crate::clock::ManualClock;
        use crate::protocol::{AlertMessage, ServerId, ServiceReport};

        let mut conn = Connection::open_in_memory().unwrap();
        schema::configure(&mut conn, Durability::Process, Duration::from_secs(1)).unwrap();
        schema::migrate(&mut conn).unwrap();
        let mut w = Writer::new(
            None,
            conn,
            StoreOptions::default(),
            Arc::new(ManualClock::new(1_700_000_000_000)),
            Arc::default(),
            Arc::default(),
            Arc::default(),
        );
        let server = || ServerId {
            name: "h".into(),
            key: "k".into(),
        };
        let status = |state: State, info: &str| {
            Op::Write(WriteOp::Status(
                StatusReport {
                    server: server(),
                    period: 60,
                    services: vec![ServiceReport {
                        name: "s".into(),
                        state,
                        info: info.into(),
                        period: None,
                        retries: None,
                    }],
                    retries: None,
                },
                "127.0.0.1".into(),
            ))
        };
        let alert = Op::Write(WriteOp::Alerts(
            AlertReport {
                server: server(),
                alerts: vec![AlertMessage {
                    message: "disk replaced".into(),
                    service: Some("s".into()),
                    ..AlertMessage::default()
                }],
            },
            "127.0.0.1".into(),
        ));
        let ops = vec![
            status(State::Ok, "a"),
            status(State::Ok, "b"),
            alert,
            status(State::Ok, "c"),
            status(State::Warn, "d"),
        ];
        let (jobs, answers): (Vec<Job>, Vec<_>) = ops
            .into_iter()
            .map(|op| {
                let (reply, answer) = mpsc::sync_channel(1);
                (Job { op, reply }, answer)
            })
            .unzip();
        w.commit(jobs);
        for answer in answers {
            answer.recv().unwrap().unwrap();
        }
        let history: Vec<String> = w
            .conn
            .prepare("SELECT info FROM states ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(history, ["a", "b", "c", "d"]);
        // The posted alert carries the state current when it came: "b".
        let (state, info): (String, String) = w
            .conn
            .query_row(
                "SELECT state, info FROM alerts WHERE channel = 'api'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((state.as_str(), info.as_str()), ("OK", "b"));
        // The state change links to its own record.
        let linked: String = w
            .conn
            .query_row(
                "SELECT st.info FROM alerts a JOIN states st ON st.id = a.state_id
                 WHERE a.channel = 'service:state'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(linked, "d");
    }

    /// The writer enforces no foreign keys (see `Writer::new`): deleting a
    /// service or a server removes what belongs to it, as ON DELETE CASCADE
    /// did, and leaves nothing that refers to a deleted row.
    #[test]
    fn deleting_removes_what_belongs_to_the_item_and_leaves_no_dangling_rows() {
        use crate::clock::ManualClock;
        use crate::protocol::{AlertMessage, ServerId, ServiceReport};
        use crate::store::Store;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overc.db");
        let store = Store::open(
            &path,
            &StoreOptions::default(),
            Arc::new(ManualClock::new(1_700_000_000_000)),
        )
        .unwrap();
        let id = |server: &str| ServerId {
            name: server.into(),
            key: "k".into(),
        };
        let mut services = HashMap::new();
        for server in ["a", "b"] {
            for state in [State::Ok, State::Fail, State::Warn] {
                let report = StatusReport {
                    server: id(server),
                    period: 60,
                    services: ["x", "y"]
                        .iter()
                        .map(|s| ServiceReport {
                            name: (*s).into(),
                            state,
                            info: format!("{server}/{s} {state:?}"),
                            period: None,
                            retries: None,
                        })
                        .collect(),
                    retries: None,
                };
                let applied = store.report(report, "127.0.0.1").unwrap();
                assert!(!applied.alerts.is_empty() || state == State::Ok);
                for d in applied.deadlines {
                    services.insert(d.service_id, server);
                }
            }
            let alert = AlertReport {
                server: id(server),
                alerts: vec![AlertMessage {
                    message: "posted".into(),
                    service: Some("x".into()),
                    ..AlertMessage::default()
                }],
            };
            store.post_alerts(alert, "127.0.0.1").unwrap();
        }
        // Every service acknowledged in its WARN.
        for id in services.keys() {
            store.ack(*id, "ann", "on it").unwrap();
        }
        let a = *services.iter().find(|(_, s)| **s == "a").unwrap().0;
        store.delete_service(a).unwrap();
        let b_server = store.report(
            StatusReport {
                server: id("b"),
                period: 60,
                services: Vec::new(),
                retries: None,
            },
            "127.0.0.1",
        );
        let b_server = b_server.unwrap().server_id.unwrap();
        store.delete_server(b_server).unwrap();
        store.close();

        let conn = Connection::open(&path).unwrap();
        let dangling: Vec<(String, i64)> = conn
            .prepare("PRAGMA foreign_key_check")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(dangling, []);
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        // Server "a" keeps its other service, with its history and alerts.
        assert_eq!(count("SELECT count(*) FROM servers"), 1);
        assert_eq!(count("SELECT count(*) FROM services"), 1);
        assert_eq!(count("SELECT count(*) FROM states"), 3);
        assert_eq!(count("SELECT count(*) FROM acks"), 1);
        assert!(count("SELECT count(*) FROM alerts") >= 2);
        assert_eq!(
            count(&format!(
                "SELECT count(*) FROM alerts WHERE service_id = {a}"
            )),
            0
        );
    }

    /// The supervisor calls `end_silences` every second: it reaches the
    /// writer only when a silence is due to end (or at the first call).
    #[test]
    fn only_a_due_silence_end_reaches_the_writer() {
        use crate::clock::ManualClock;
        use crate::policy::Silence;
        use crate::store::Store;

        let clock = ManualClock::new(1_000_000);
        let store =
            Store::open_in_memory(&StoreOptions::default(), Arc::new(clock.clone())).unwrap();
        store.end_silences(clock.now()).unwrap();
        let commits = store.commit_count();
        store.end_silences(clock.now()).unwrap();
        assert_eq!(store.commit_count(), commits, "nothing to end: not asked");
        let silence = Silence {
            server: "*".into(),
            ends: clock.now() + 1000,
            comment: "x".into(),
            author: "ann".into(),
            ..Silence::default()
        };
        let id = store.add_silence(silence).unwrap().silence_id.unwrap();
        let commits = store.commit_count();
        assert!(
            store
                .end_silences(clock.now() + 999)
                .unwrap()
                .ended_silences
                .is_empty()
        );
        assert_eq!(store.commit_count(), commits);
        clock.advance(1000);
        assert_eq!(
            store.end_silences(clock.now()).unwrap().ended_silences,
            [id]
        );
        let commits = store.commit_count();
        store.end_silences(clock.now() + 60_000).unwrap();
        assert_eq!(store.commit_count(), commits, "ended once");
    }

    #[test]
    fn only_a_service_that_did_not_report_since_is_flagged_overdue() {
        use crate::clock::ManualClock;
        use crate::protocol::parse_object;
        use crate::store::Store;

        let clock = ManualClock::new(1_000_000);
        let store =
            Store::open_in_memory(&StoreOptions::default(), Arc::new(clock.clone())).unwrap();
        let report = |service: &str| {
            let body = format!(
                r#"{{"server": {{"name": "h", "key": "k"}}, "period": 60,
                    "services": [{{"name": "{service}", "state": "OK"}}]}}"#
            );
            let r = StatusReport::from_json(&parse_object(body.as_bytes()).unwrap()).unwrap();
            store.report(r, "127.0.0.1").unwrap()
        };
        let first = report("a").deadlines[0];
        clock.advance(30_000);
        let second = report("a").deadlines[0];
        let gone = report("b").deadlines[0];
        store.delete_service(gone.service_id).unwrap();
        clock.advance(90_000);
        // The deadline of the first report raced with the second: no alert;
        // nor for a deleted service.
        let stale = store
            .mark_overdue(vec![
                (first.service_id, first.rtime),
                (gone.service_id, gone.rtime),
            ])
            .unwrap();
        assert!(stale.alerts.is_empty());
        let due = store
            .mark_overdue(vec![(second.service_id, second.rtime)])
            .unwrap();
        assert_eq!(due.alerts.len(), 1);
        // Raised once, not again while still overdue.
        let again = store
            .mark_overdue(vec![(second.service_id, second.rtime)])
            .unwrap();
        assert!(again.alerts.is_empty());
        // Reporting again clears the flag and says so.
        clock.advance(1000);
        assert_eq!(report("a").alerts.len(), 1, "plugin/online");
    }
}
