//! The single writer thread: applies operations in batches (group commit),
//! appends each batch's writes to the redo log, hands the answers to the
//! fsync thread, commits SQLite about once a second, and prunes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::redo::{self, Group, RedoLog};
use super::schema::{self, current_state};
use super::{Job, Op, StoreOptions};
use crate::clock::{Clock, Millis};
use crate::config::Durability;
use crate::error::{Error, Result};
use crate::idmap::{IdMap, IdSet};
use crate::protocol::{AlertReport, ServerId, StatusReport};
use crate::state::State;

/// Most operations committed in one transaction; bounds the latency one
/// commit adds to the first request of a batch.
const MAX_BATCH: usize = 512;
/// How often the retention rules run when the writer is otherwise idle.
const MAINTENANCE_EVERY: Millis = 10 * 60 * 1000;

/// What a committed operation changed, for the layers downstream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The host the request came from, if any.
    pub server_id: Option<i64>,
    /// Services whose deadline moved.
    pub deadlines: Vec<DeadlineChange>,
    /// Alerts written to the outbox, by id.
    pub alerts: Vec<i64>,
    /// Rows removed by pruning.
    pub pruned: u64,
    /// Services deleted (to stop supervising them).
    pub removed_services: Vec<i64>,
}

/// A service's new deadline after a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlineChange {
    /// The service.
    pub service_id: i64,
    /// Time of the report.
    pub rtime: Millis,
    /// Report time + period (grace is added by the supervisor); `None` when the
    /// service has no period, or was deleted: no longer supervised.
    pub due: Option<Millis>,
}

#[derive(Clone)]
struct KnownServer {
    id: i64,
    salt: [u8; 16],
    hash: [u8; 32],
    /// Address and `last_seen` as last written, to skip rewriting them on
    /// every request.
    ip: String,
    seen_written: Millis,
    /// The key that last matched the hash: a host sends the same key with
    /// every report, and comparing it costs far less than hashing it.
    verified: Option<String>,
}

/// What the writer knows of a service without asking SQLite.
#[derive(Clone)]
struct KnownService {
    id: i64,
    /// The current state (of the newest history record).
    state: Option<State>,
    overdue: bool,
    period: Option<u32>,
}

/// The writer's memory of rows it wrote. It is only ever a copy of what the
/// writer's open transaction holds: after a failed batch or commit it is
/// dropped and refilled from the database on demand.
#[derive(Default)]
struct Caches {
    servers: HashMap<String, KnownServer>,
    /// server id → service name → service.
    services: IdMap<HashMap<String, KnownService>>,
}

/// `last_seen` is rewritten at most this often per host.
const SEEN_RESOLUTION: Millis = 1000;

type Reply = (mpsc::SyncSender<Result<Applied>>, Result<Applied>);

/// Makes appended groups durable and only then answers them.
///
/// The writer appends each group to the redo log without syncing it and
/// hands the replies here; this thread fsyncs the log once for every batch
/// queued meanwhile and then replies. A 200 thus means "on disk", while the
/// writer executes the next batch as the disk is busy.
fn sync_loop(file: std::fs::File, failed: Arc<AtomicBool>, batches: mpsc::Receiver<Vec<Reply>>) {
    while let Ok(first) = batches.recv() {
        let mut all = vec![first];
        while let Ok(more) = batches.try_recv() {
            all.push(more);
        }
        // After a failed fsync the kernel may have dropped the dirty pages and
        // a later fsync can succeed without them: nothing is acknowledged
        // any more until a restart (recovery then reads what is on disk).
        let synced = if failed.load(Ordering::SeqCst) {
            Err("an earlier fsync failed".to_owned())
        } else {
            file.sync_data().map_err(|e| e.to_string())
        };
        if let Err(e) = &synced {
            if !failed.swap(true, Ordering::SeqCst) {
                log::error!("fsync of the redo log failed: {e}; refusing writes until restart");
            }
        }
        for (reply, result) in all.into_iter().flatten() {
            let result = match &synced {
                Ok(()) => result,
                Err(e) => Err(Error::Storage(format!("fsync failed: {e}"))),
            };
            let _ = reply.send(result);
        }
    }
}

/// How a file store batches its SQLite commits.
#[derive(Debug, Clone)]
pub(crate) struct Tuning {
    /// The redo log starts over past this many bytes.
    pub lap: u64,
    /// SQLite commits at least this often while writes come in (and before
    /// every read).
    pub commit_every: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            lap: 32 << 20,
            commit_every: Duration::from_secs(1),
        }
    }
}

/// Groups kept for running again after a failed batch; past this SQLite
/// commits early.
const MAX_UNCOMMITTED: usize = 8 << 20;

/// A file store's redo log, and the SQLite transaction it stands for.
pub(super) struct Redo {
    log: RedoLog,
    /// The groups since SQLite last committed, to run again when a batch
    /// fails and the transaction is rolled back.
    uncommitted: Vec<Vec<u8>>,
    uncommitted_bytes: usize,
    /// When the open SQLite transaction began.
    open_since: Option<Instant>,
    commit_every: Duration,
}

/// Makes everything SQLite committed survive a power cut: one more commit
/// with `synchronous=FULL`, which syncs the WAL with every frame in it (a
/// checkpoint syncs the database file before any frame is reused). SQLite
/// does it with its own file handles: opening and closing the database
/// file here would drop every POSIX lock the process holds on it, and
/// another process would then take our WAL for abandoned.
/// `conn` must not be inside a transaction.
pub(super) fn commit_durably(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    let done = conn
        .execute_batch("BEGIN; UPDATE redo SET seq = seq WHERE id = 1; COMMIT;")
        .map_err(Error::from);
    if done.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    done
}

impl Redo {
    /// Opens the redo log at `path` and runs the groups SQLite does not hold
    /// yet (after a crash), committing them durably before the log is
    /// written over.
    pub(super) fn open(conn: &mut Connection, path: &Path, tuning: &Tuning) -> Result<Redo> {
        let (db_id, committed) = schema::redo_mark(conn)?;
        let (log, records) = RedoLog::open(path, db_id, tuning.lap, committed)
            .map_err(|e| Error::Storage(format!("cannot read {}: {e}", path.display())))?;
        let todo: Vec<_> = records.into_iter().filter(|r| r.seq > committed).collect();
        // SQLite is synced before a lap starts, so the log goes on where
        // SQLite stopped; a gap means the database is older than its log
        // (a backup put back beside a newer log): running the rest would
        // leave holes and wrong references.
        if let Some(first) = todo.first().filter(|r| r.seq != committed + 1) {
            return Err(Error::Storage(format!(
                "the redo log {} goes on from write group {} but the database holds groups up to \
                 {committed} only (was the database file replaced?); moving the log away starts \
                 without the reports it holds",
                path.display(),
                first.seq
            )));
        }
        if !todo.is_empty() {
            let tx = conn.transaction()?;
            for r in &todo {
                redo::replay(&tx, &r.payload).map_err(|e| {
                    Error::Storage(format!(
                        "cannot run group {} of the redo log {} again: {e}; moving that file \
                         away starts without the reports it holds",
                        r.seq,
                        path.display()
                    ))
                })?;
            }
            schema::set_redo_seq(&tx, log.seq())?;
            tx.commit()?;
            // An unclean stop: worth the operator's notice at the default level.
            log::warn!(
                "recovered {} groups of writes from the redo log {}",
                todo.len(),
                path.display()
            );
        }
        // The open transaction's pages stay in the writer's cache until it
        // commits: each reporting service's newest index leaf (4 KiB) and
        // the new table pages. 32 MiB holds them for ~6,000 services; with
        // less, pages spill to the WAL and are read back at the service's
        // next report (3,840 services at 64 connections: 8 MiB lost 12 %
        // against 32, and the loss grew as the history did). The cache is
        // given back whenever the writer is idle at a commit (see `run`),
        // so an idle server holds none of it.
        conn.pragma_update(None, "cache_size", -32768)?;
        // The log is written from its start again: SQLite must hold on disk
        // what it held.
        commit_durably(conn)?;
        let mut log = log;
        log.restart();
        Ok(Redo {
            log,
            uncommitted: Vec::new(),
            uncommitted_bytes: 0,
            open_since: None,
            commit_every: tuning.commit_every,
        })
    }
}

pub(super) struct Writer {
    /// `None` for a store in memory: each batch commits.
    redo: Option<Redo>,
    syncer: Option<mpsc::Sender<Vec<Reply>>>,
    /// Set for good when an fsync of the log failed (by the fsync thread).
    sync_failed: Arc<AtomicBool>,
    /// Set for good when SQLite no longer holds what the log says (writes
    /// are refused; a restart runs the log again).
    stopped: bool,
    conn: Connection,
    opts: StoreOptions,
    clock: Arc<dyn Clock>,
    commits: Arc<AtomicU64>,
    alerts_raised: Arc<AtomicU64>,
    caches: Caches,
    /// The writes of the batch being applied.
    group: Group,
    /// Reports stored per service since its history was last pruned.
    unpruned: IdMap<u32>,
    last_maintenance: Millis,
}

fn key_hash(salt: &[u8; 16], key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(key.as_bytes());
    h.finalize().into()
}

/// Compares a presented value with a known one without an early exit: the
/// time depends on the known value's length only, so it shows neither how
/// much matched nor how long the presented value is.
pub(crate) fn constant_time_eq(known: &[u8], presented: &[u8]) -> bool {
    let diff = known.iter().enumerate().fold(0u8, |acc, (i, x)| {
        acc | (x ^ presented.get(i).copied().unwrap_or(!x))
    });
    diff == 0 && known.len() == presented.len()
}

struct Batch<'a> {
    caches: &'a mut Caches,
    log: &'a mut Group,
    touched: IdSet,
    now: Millis,
}

impl Writer {
    pub(super) fn new(
        redo: Option<Redo>,
        conn: Connection,
        opts: StoreOptions,
        clock: Arc<dyn Clock>,
        commits: Arc<AtomicU64>,
        alerts_raised: Arc<AtomicU64>,
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
            if batch.iter().any(|j| matches!(j.op, Op::Crash)) {
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
            op: Op::Prune,
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

    /// Commits the open SQLite transaction with the redo log's position.
    /// If the commit fails, the groups it held run again in a new
    /// transaction from memory (the next commit tries again); if that fails
    /// too, the writer stops. Returns whether SQLite now holds every group.
    fn commit_sqlite(&mut self) -> bool {
        let Some(redo) = &mut self.redo else {
            return true;
        };
        if self.conn.is_autocommit() {
            return true;
        }
        redo.open_since = None;
        if redo.uncommitted.is_empty() {
            // Nothing written (a read's flush, refusals): no write lock to take.
            return self.conn.execute_batch("COMMIT").is_ok();
        }
        let done = schema::set_redo_seq(&self.conn, redo.log.seq())
            .and_then(|()| Ok(self.conn.execute_batch("COMMIT")?));
        match done {
            Ok(()) => {
                redo.uncommitted.clear();
                redo.uncommitted_bytes = 0;
                true
            }
            Err(e) => {
                log::error!("commit failed: {e}");
                if let Err(again) = self.roll_back() {
                    self.fail(&format!(
                        "after a failed commit, the writes it held could not run again: {again}"
                    ));
                }
                false
            }
        }
    }

    /// Stops writing: every later batch is refused, and nothing more is
    /// committed (the open transaction is rolled back; what it held is in
    /// the log, which a restart runs again).
    fn fail(&mut self, why: &str) {
        if !self.stopped {
            log::error!("{why}; refusing writes until restart");
        }
        self.stopped = true;
        self.caches = Caches::default();
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        if let Some(redo) = &mut self.redo {
            redo.open_since = None;
        }
    }

    /// Before a batch: a full lap of the redo log starts over once SQLite
    /// holds, on disk, every group in it.
    fn restart_log_if_full(&mut self) -> Result<()> {
        if !self.redo.as_ref().is_some_and(|r| r.log.lap_full()) {
            return Ok(());
        }
        if !self.commit_sqlite() {
            return Err(Error::Storage("commit failed".into()));
        }
        commit_durably(&self.conn)?;
        if let Some(redo) = &mut self.redo {
            redo.log.restart();
        }
        Ok(())
    }

    /// After a failed batch or commit: rolls the SQLite transaction back and
    /// runs the groups it held again from memory (they are in the redo log
    /// already, and may have been acknowledged). On an error the transaction
    /// is rolled back: nothing half-run is ever committed.
    fn roll_back(&mut self) -> Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        let Some(redo) = &mut self.redo else {
            return Ok(());
        };
        redo.open_since = None;
        if redo.uncommitted.is_empty() {
            return Ok(());
        }
        self.conn.execute_batch("BEGIN")?;
        redo.open_since = Some(Instant::now());
        for payload in &redo.uncommitted {
            if let Err(e) = redo::replay(&self.conn, payload) {
                let _ = self.conn.execute_batch("ROLLBACK");
                redo.open_since = None;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Appends the batch's writes to the redo log, or commits them (in memory).
    fn finish_group(&mut self) -> Result<()> {
        let Some(redo) = &mut self.redo else {
            return Ok(self.conn.execute_batch("COMMIT")?);
        };
        let payload = self.group.payload();
        if payload.is_empty() {
            return Ok(());
        }
        redo.log
            .append(payload)
            .map_err(|e| Error::Storage(format!("cannot write the redo log: {e}")))?;
        redo.uncommitted.push(payload.to_vec());
        redo.uncommitted_bytes += payload.len();
        Ok(())
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
        let mut state = Batch {
            caches,
            log: group,
            touched: IdSet::default(),
            now,
        };
        let outcome = (|| -> Result<()> {
            if conn.is_autocommit() {
                conn.execute_batch("BEGIN")?;
                if let Some(redo) = redo {
                    redo.open_since = Some(Instant::now());
                }
            }
            for job in &batch {
                match apply(conn, &job.op, &mut state, opts) {
                    Ok(a) => results.push(Ok(a)),
                    // Refusals are decided before anything is written, so the
                    // batch goes on without a savepoint per operation.
                    Err(e @ (Error::Forbidden(_) | Error::Invalid(_) | Error::NotFound(_))) => {
                        results.push(Err(e))
                    }
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
                    prune_history(conn, state.log, *id, opts.history_limit)?;
                }
            }
            Ok(())
        })()
        .and_then(|()| self.finish_group());
        if let Err(e) = outcome {
            log::error!("commit of {} operations failed: {e}", batch.len());
            // The caches may hold rows of the rolled-back batch.
            self.caches = Caches::default();
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

fn apply(conn: &Connection, op: &Op, b: &mut Batch<'_>, opts: &StoreOptions) -> Result<Applied> {
    match op {
        Op::Ping(p, ip) => {
            let id = authenticate(conn, &p.server, ip, b)?;
            Ok(Applied {
                server_id: Some(id),
                ..Applied::default()
            })
        }
        Op::Status(r, ip) => apply_status(conn, r, ip, b),
        Op::Alerts(r, ip) => apply_alerts(conn, r, ip, b),
        Op::Prune => prune_all(conn, b.log, b.now, opts),
        Op::Flush => Ok(Applied::default()),
        #[cfg(test)]
        Op::Crash => Ok(Applied::default()),
        #[cfg(test)]
        Op::FailAfterWrite => {
            b.log.exec(
                conn,
                "INSERT INTO servers(name, title, key_salt, key_hash, first_seen, last_seen)
                 VALUES ('doomed', 'doomed', x'00', x'00', 0, 0)",
                params![],
            )?;
            Err(Error::Storage("disk full".into()))
        }
        #[cfg(test)]
        Op::PoisonLog => {
            b.log.record_only("INSERT INTO no_such_table VALUES (1)")?;
            Ok(Applied::default())
        }
        Op::DeleteServer(id) => {
            let name: Option<String> = conn
                .prepare_cached("SELECT name FROM servers WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?;
            let Some(name) = name else {
                return Err(Error::NotFound("no such server".into()));
            };
            let services: Vec<i64> = conn
                .prepare_cached("SELECT id FROM services WHERE server_id = ?1")?
                .query_map([id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            // What ON DELETE CASCADE did while the writer enforced foreign
            // keys (see `Writer::new`), children first.
            for sql in [
                "DELETE FROM states WHERE service_id IN (SELECT id FROM services WHERE server_id = ?1)",
                "DELETE FROM alerts WHERE server_id = ?1",
                "DELETE FROM alerts WHERE service_id IN (SELECT id FROM services WHERE server_id = ?1)",
                "DELETE FROM services WHERE server_id = ?1",
                "DELETE FROM servers WHERE id = ?1",
            ] {
                b.log.exec(conn, sql, params![id])?;
            }
            log::info!("deleted server {name:?} with {} services", services.len());
            b.caches.servers.remove(&name);
            b.caches.services.remove(id);
            Ok(Applied {
                server_id: Some(*id),
                removed_services: services,
                ..Applied::default()
            })
        }
        Op::DeleteService(id) => {
            for names in b.caches.services.values_mut() {
                names.retain(|_, known| known.id != *id);
            }
            for sql in [
                "DELETE FROM states WHERE service_id = ?1",
                "DELETE FROM alerts WHERE service_id = ?1",
            ] {
                b.log.exec(conn, sql, params![id])?;
            }
            let n = b
                .log
                .exec(conn, "DELETE FROM services WHERE id = ?1", params![id])?;
            if n == 0 {
                return Err(Error::NotFound("no such service".into()));
            }
            Ok(Applied {
                removed_services: vec![*id],
                ..Applied::default()
            })
        }
        Op::Rename { service, id, title } => {
            let sql = if *service {
                "UPDATE services SET title = ?2 WHERE id = ?1"
            } else {
                "UPDATE servers SET title = ?2 WHERE id = ?1"
            };
            if b.log.exec(conn, sql, params![id, title])? == 0 {
                return Err(Error::NotFound(format!(
                    "no such {}",
                    if *service { "service" } else { "server" }
                )));
            }
            Ok(Applied::default())
        }
        Op::MarkOverdue(due) => mark_overdue(conn, due, b),
        Op::Delivered(ids) => {
            for id in ids {
                b.log.exec(
                    conn,
                    "UPDATE alerts SET delivered = 1, attempts = attempts + 1 WHERE id = ?1",
                    params![id],
                )?;
            }
            Ok(Applied::default())
        }
        Op::Defer(id, at) => {
            b.log.exec(
                conn,
                "UPDATE alerts SET attempts = attempts + 1, next_attempt = ?2 WHERE id = ?1",
                params![id, at],
            )?;
            Ok(Applied::default())
        }
        Op::SystemAlert {
            channel,
            event,
            message,
        } => {
            let alert = NewAlert {
                server_id: None,
                service_id: None,
                state_id: None,
                channel,
                event,
                message,
                severity: State::Fail,
                state: None,
            };
            Ok(Applied {
                alerts: vec![insert_alert(conn, b.log, &alert, b.now)?],
                ..Applied::default()
            })
        }
    }
}

/// Registers a new host (trust on first use) or checks its key, and records
/// where it called from. A wrong key is refused before anything is written.
fn authenticate(conn: &Connection, server: &ServerId, ip: &str, b: &mut Batch<'_>) -> Result<i64> {
    if !b.caches.servers.contains_key(&server.name) {
        let row = conn
            .prepare_cached(
                "SELECT id, key_salt, key_hash, ip, last_seen FROM servers WHERE name = ?1",
            )?
            .query_row([&server.name], |r| {
                let salt: Vec<u8> = r.get(1)?;
                let hash: Vec<u8> = r.get(2)?;
                Ok((
                    r.get::<_, i64>(0)?,
                    salt,
                    hash,
                    r.get::<_, String>(3)?,
                    r.get::<_, Millis>(4)?,
                ))
            })
            .optional()?;
        if let Some((id, salt, hash, ip, seen)) = row {
            let (Ok(salt), Ok(hash)) = (salt.try_into(), hash.try_into()) else {
                return Err(Error::Storage(format!(
                    "corrupt key of server {:?}",
                    server.name
                )));
            };
            b.caches.servers.insert(
                server.name.clone(),
                KnownServer {
                    id,
                    salt,
                    hash,
                    ip,
                    seen_written: seen,
                    verified: None,
                },
            );
        }
    }
    let now = b.now;
    match b.caches.servers.get_mut(&server.name) {
        Some(k) => {
            let cached = k
                .verified
                .as_deref()
                .is_some_and(|v| constant_time_eq(v.as_bytes(), server.key.as_bytes()));
            if !cached {
                if !constant_time_eq(&key_hash(&k.salt, &server.key), &k.hash) {
                    log::warn!(
                        "rejected a request for server {:?} from {ip}: invalid key",
                        server.name
                    );
                    return Err(Error::Forbidden("Invalid server key".into()));
                }
                k.verified = Some(server.key.clone());
            }
            if k.ip != ip || now - k.seen_written >= SEEN_RESOLUTION {
                b.log.exec(
                    conn,
                    "UPDATE servers SET ip = ?2, last_seen = ?3 WHERE id = ?1",
                    params![k.id, ip, now],
                )?;
                k.ip = ip.to_owned();
                k.seen_written = now;
            }
            Ok(k.id)
        }
        None => {
            let mut salt = [0u8; 16];
            getrandom::fill(&mut salt)
                .map_err(|e| Error::Storage(format!("no randomness for a key salt: {e}")))?;
            let hash = key_hash(&salt, &server.key);
            b.log.exec(
                conn,
                "INSERT INTO servers(name, title, key_salt, key_hash, ip, first_seen, last_seen)
                 VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?5)",
                params![server.name, &salt[..], &hash[..], ip, now],
            )?;
            let id = conn.last_insert_rowid();
            log::info!("registered new server {:?} from {ip}", server.name);
            b.caches.servers.insert(
                server.name.clone(),
                KnownServer {
                    id,
                    salt,
                    hash,
                    ip: ip.to_owned(),
                    seen_written: now,
                    verified: Some(server.key.clone()),
                },
            );
            Ok(id)
        }
    }
}

/// Finds a service (in the cache or the database) or creates it.
fn find_or_create_service(
    conn: &Connection,
    b: &mut Batch<'_>,
    server_id: i64,
    name: &str,
    period: Option<u32>,
) -> Result<KnownService> {
    if let Some(known) = b.caches.services.get(&server_id).and_then(|m| m.get(name)) {
        return Ok(known.clone());
    }
    let row = conn
        .prepare_cached(concat!(
            "SELECT s.id, st.state, s.overdue, s.period FROM services s ",
            current_state!(),
            " WHERE s.server_id = ?1 AND s.name = ?2"
        ))?
        .query_row(params![server_id, name], |r| {
            Ok(KnownService {
                id: r.get(0)?,
                state: r
                    .get::<_, Option<String>>(1)?
                    .map(|s| State::parse(&s).unwrap_or(State::Unk)),
                overdue: r.get(2)?,
                period: r.get(3)?,
            })
        })
        .optional()?;
    let known = match row {
        Some(row) => row,
        None => {
            b.log.exec(
                conn,
                "INSERT INTO services(server_id, name, title, period) VALUES (?1, ?2, ?2, ?3)",
                params![server_id, name, period],
            )?;
            KnownService {
                id: conn.last_insert_rowid(),
                state: None,
                overdue: false,
                period,
            }
        }
    };
    b.caches
        .services
        .entry(server_id)
        .or_default()
        .insert(name.to_owned(), known.clone());
    Ok(known)
}

/// What an alert is about and says; written to the outbox.
pub(crate) struct NewAlert<'a> {
    pub server_id: Option<i64>,
    pub service_id: Option<i64>,
    pub state_id: Option<i64>,
    pub channel: &'a str,
    pub event: &'a str,
    pub message: &'a str,
    pub severity: State,
    pub state: Option<(&'a str, &'a str)>,
}

pub(crate) fn insert_alert(
    conn: &Connection,
    log: &mut Group,
    a: &NewAlert<'_>,
    now: Millis,
) -> Result<i64> {
    log.exec(
        conn,
        "INSERT INTO alerts(server_id, service_id, state_id, ctime, channel, event, message,
                            severity, state, info)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            a.server_id,
            a.service_id,
            a.state_id,
            now,
            a.channel,
            a.event,
            a.message,
            a.severity.as_str(),
            a.state.map(|s| s.0),
            a.state.map(|s| s.1),
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// History rows written by one statement at most. A report's records go in
/// as one multi-row INSERT rather than one statement each: the statement
/// cache, binding and halting are paid once per report.
const HISTORY_CHUNK: usize = 8;

/// `INSERT_HISTORY[n - 1]` inserts `n` history records. `OR FAIL`: a NOT
/// NULL violation would stop the statement where it is rather than undo its
/// earlier rows, so SQLite keeps no statement journal for it; the batch is
/// rolled back on any error anyway.
#[rustfmt::skip]
const INSERT_HISTORY: [&str; HISTORY_CHUNK] = [
        "INSERT OR FAIL INTO states(service_id, rtime, state, info) VALUES (?, ?, ?, ?)",
        "INSERT OR FAIL INTO states(service_id, rtime, state, info) VALUES (?, ?, ?, ?), (?, ?, ?, ?)",
        "INSERT OR FAIL INTO states(service_id, rtime, state, info) VALUES (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?)",
        "INSERT OR FAIL INTO states(service_id, rtime, state, info) VALUES (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?)",
        "INSERT OR FAIL INTO states(service_id, rtime, state, info) VALUES (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?)",
        "INSERT OR FAIL INTO states(service_id, rtime, state, info) VALUES (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?)",
        "INSERT OR FAIL INTO states(service_id, rtime, state, info) VALUES (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?)",
        "INSERT OR FAIL INTO states(service_id, rtime, state, info) VALUES (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?)",
];

/// One service's report as it is about to be written.
struct Pending {
    row: KnownService,
    period: u32,
    state: &'static str,
    changed: bool,
}

fn apply_status(
    conn: &Connection,
    r: &StatusReport,
    ip: &str,
    b: &mut Batch<'_>,
) -> Result<Applied> {
    let server_id = authenticate(conn, &r.server, ip, b)?;
    let mut applied = Applied {
        server_id: Some(server_id),
        ..Applied::default()
    };
    // First what each record changes, in order: a name given twice sees
    // its first record as the current state, as if each were written alone.
    let mut pending = Vec::with_capacity(r.services.len());
    for s in &r.services {
        let period = s.period.unwrap_or(r.period);
        let row = find_or_create_service(conn, b, server_id, &s.name, Some(period))?;
        // The service row changes only when its period does or it was
        // overdue; its current state is the record about to be inserted.
        if row.overdue || row.period != Some(period) {
            b.log.exec(
                conn,
                "UPDATE services SET period = ?2, overdue = 0 WHERE id = ?1",
                params![row.id, period],
            )?;
        }
        let changed = match row.state {
            None => s.state != State::Ok,
            Some(prev) => prev != s.state,
        };
        if let Some(known) = b
            .caches
            .services
            .get_mut(&server_id)
            .and_then(|m| m.get_mut(&s.name))
        {
            known.state = Some(s.state);
            known.overdue = false;
            known.period = Some(period);
        }
        pending.push(Pending {
            row,
            period,
            state: s.state.as_str(),
            changed,
        });
    }
    // Then the history records, a chunk per statement. Without an id given,
    // SQLite numbers the rows of one INSERT one after the other, each the
    // largest id plus one, so the last id tells each record's.
    let mut state_ids = Vec::with_capacity(pending.len());
    for (chunk, reports) in pending
        .chunks(HISTORY_CHUNK)
        .zip(r.services.chunks(HISTORY_CHUNK))
    {
        let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(4 * chunk.len());
        for (p, s) in chunk.iter().zip(reports) {
            values.extend_from_slice(&[&p.row.id, &b.now, &p.state, &s.info]);
        }
        b.log.exec(conn, INSERT_HISTORY[chunk.len() - 1], &values)?;
        let last = conn.last_insert_rowid();
        state_ids.extend((0..chunk.len() as i64).rev().map(|back| last - back));
    }
    for ((p, s), state_id) in pending.iter().zip(&r.services).zip(state_ids) {
        let (row, state) = (&p.row, p.state);
        let base = NewAlert {
            server_id: Some(server_id),
            service_id: Some(row.id),
            state_id: Some(state_id),
            channel: "",
            event: "",
            message: "",
            severity: s.state,
            state: Some((state, &s.info)),
        };
        if p.changed {
            let message = format!(
                "State changed: \"{}\" -> \"{state}\"",
                row.state.map_or("(?)", State::as_str)
            );
            let alert = NewAlert {
                channel: "service:state",
                event: state,
                message: &message,
                ..base
            };
            applied
                .alerts
                .push(insert_alert(conn, b.log, &alert, b.now)?);
        }
        if row.overdue {
            let alert = NewAlert {
                channel: "plugin",
                event: "online",
                message: "Monitoring plugin back online",
                severity: State::Ok,
                ..base
            };
            applied
                .alerts
                .push(insert_alert(conn, b.log, &alert, b.now)?);
        }
        applied.deadlines.push(DeadlineChange {
            service_id: row.id,
            rtime: b.now,
            due: Some(b.now + i64::from(p.period) * 1000),
        });
        b.touched.insert(row.id);
    }
    Ok(applied)
}

fn apply_alerts(
    conn: &Connection,
    r: &AlertReport,
    ip: &str,
    b: &mut Batch<'_>,
) -> Result<Applied> {
    let server_id = authenticate(conn, &r.server, ip, b)?;
    let mut applied = Applied {
        server_id: Some(server_id),
        ..Applied::default()
    };
    for a in &r.alerts {
        let (service_id, current) = match &a.service {
            Some(name) => {
                let row = find_or_create_service(conn, b, server_id, name, None)?;
                let current: Option<(String, String)> = conn
                    .prepare_cached(concat!(
                        "SELECT st.state, st.info FROM services s ",
                        current_state!(),
                        " WHERE s.id = ?1 AND st.id IS NOT NULL"
                    ))?
                    .query_row([row.id], |r| {
                        Ok((
                            r.get(0)?,
                            r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        ))
                    })
                    .optional()?;
                (Some(row.id), current)
            }
            None => (None, None),
        };
        let alert = NewAlert {
            server_id: Some(server_id),
            service_id,
            state_id: None,
            channel: "api",
            event: "alert",
            message: &a.message,
            severity: State::Fail,
            state: current.as_ref().map(|(s, i)| (s.as_str(), i.as_str())),
        };
        applied
            .alerts
            .push(insert_alert(conn, b.log, &alert, b.now)?);
    }
    Ok(applied)
}

fn mark_overdue(conn: &Connection, due: &[(i64, Millis)], b: &mut Batch<'_>) -> Result<Applied> {
    let now = b.now;
    let mut applied = Applied::default();
    for &(service_id, rtime) in due {
        /// The service and its current state.
        struct Row {
            server_id: i64,
            name: String,
            flaggable: bool,
            state: Option<String>,
            info: Option<String>,
            state_id: Option<i64>,
            rtime: Option<Millis>,
        }
        let row = conn
            .prepare_cached(concat!(
                "SELECT s.server_id, s.name, s.overdue = 0 AND s.period IS NOT NULL,
                        st.state, st.info, st.id, st.rtime FROM services s ",
                current_state!(),
                " WHERE s.id = ?1"
            ))?
            .query_row([service_id], |r| {
                Ok(Row {
                    server_id: r.get(0)?,
                    name: r.get(1)?,
                    flaggable: r.get(2)?,
                    state: r.get(3)?,
                    info: r.get(4)?,
                    state_id: r.get(5)?,
                    rtime: r.get(6)?,
                })
            })
            .optional()?;
        // Deleted, already flagged, or reported again since: not overdue.
        let Some(Row {
            server_id,
            name,
            state,
            info,
            state_id,
            ..
        }) = row.filter(|r| r.flaggable && r.rtime == Some(rtime))
        else {
            continue;
        };
        b.log.exec(
            conn,
            "UPDATE services SET overdue = 1 WHERE id = ?1",
            params![service_id],
        )?;
        if let Some(known) = b
            .caches
            .services
            .get_mut(&server_id)
            .and_then(|m| m.get_mut(&name))
        {
            known.overdue = true;
        }
        let info = info.unwrap_or_default();
        let alert = NewAlert {
            server_id: Some(server_id),
            service_id: Some(service_id),
            state_id,
            channel: "plugin",
            event: "offline",
            message: "Monitoring plugin offline",
            severity: State::Fail,
            state: state.as_deref().map(|s| (s, info.as_str())),
        };
        applied.alerts.push(insert_alert(conn, b.log, &alert, now)?);
    }
    Ok(applied)
}

fn prune_history(conn: &Connection, log: &mut Group, service_id: i64, limit: u32) -> Result<u64> {
    let n = log.exec(
        conn,
        "DELETE FROM states WHERE service_id = ?1 AND id <= (
             SELECT id FROM states WHERE service_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        // The newest record is the current state: always kept.
        params![service_id, limit.max(1)],
    )?;
    Ok(n as u64)
}

fn prune_all(
    conn: &Connection,
    log: &mut Group,
    now: Millis,
    opts: &StoreOptions,
) -> Result<Applied> {
    let mut pruned = 0;
    let ids: Vec<i64> = conn
        .prepare_cached("SELECT id FROM services")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in ids {
        pruned += prune_history(conn, log, id, opts.history_limit)?;
    }
    let cutoff = now - i64::from(opts.retention_days) * 86_400_000;
    // An alert no plugin took within the whole retention period is given up
    // too: otherwise a plugin that is broken for good grows the outbox forever.
    let abandoned = log.exec(
        conn,
        "DELETE FROM alerts WHERE ctime < ?1 AND delivered = 0",
        params![cutoff],
    )?;
    if abandoned > 0 {
        log::warn!(
            "gave up {abandoned} alerts that no alert plugin took in {} days",
            opts.retention_days
        );
    }
    pruned += abandoned as u64;
    pruned += log.exec(
        conn,
        "DELETE FROM alerts WHERE ctime < ?1 AND delivered = 1",
        params![cutoff],
    )? as u64;
    Ok(Applied {
        pruned,
        ..Applied::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_needs_the_whole_value() {
        assert!(constant_time_eq(b"secret", b"secret"));
        for other in ["", "s", "secre", "secret!", "secreT", "xecret"] {
            assert!(!constant_time_eq(b"secret", other.as_bytes()), "{other:?}");
        }
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

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
        );
        let server = || ServerId {
            name: "h".into(),
            key: "k".into(),
        };
        let status = |state: State, info: &str| {
            Op::Status(
                StatusReport {
                    server: server(),
                    period: 60,
                    services: vec![ServiceReport {
                        name: "s".into(),
                        state,
                        info: info.into(),
                        period: None,
                    }],
                },
                "127.0.0.1".into(),
            )
        };
        let alert = Op::Alerts(
            AlertReport {
                server: server(),
                alerts: vec![AlertMessage {
                    message: "disk replaced".into(),
                    service: Some("s".into()),
                }],
            },
            "127.0.0.1".into(),
        );
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
            for state in [State::Ok, State::Fail, State::Ok] {
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
                        })
                        .collect(),
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
                }],
            };
            store.alerts(alert, "127.0.0.1").unwrap();
        }
        let a = *services.iter().find(|(_, s)| **s == "a").unwrap().0;
        store.delete_service(a).unwrap();
        let b_server = store.report(
            StatusReport {
                server: id("b"),
                period: 60,
                services: Vec::new(),
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
        assert!(count("SELECT count(*) FROM alerts") >= 2);
        assert_eq!(
            count(&format!(
                "SELECT count(*) FROM alerts WHERE service_id = {a}"
            )),
            0
        );
    }

    #[test]
    fn key_hash_depends_on_salt() {
        assert_ne!(key_hash(&[0; 16], "k"), key_hash(&[1; 16], "k"));
        assert_eq!(key_hash(&[0; 16], "k"), key_hash(&[0; 16], "k"));
    }

    mod redo_log {
        use super::*;
        use crate::clock::ManualClock;
        use crate::protocol::parse_object;
        use crate::store::Store;

        const HOUR: Duration = Duration::from_secs(3600);

        /// A database file in a temporary directory, and a clock.
        struct Fixture {
            dir: tempfile::TempDir,
            path: std::path::PathBuf,
            clock: ManualClock,
        }

        impl Fixture {
            fn new() -> Fixture {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("overc.db");
                Fixture {
                    dir,
                    path,
                    clock: ManualClock::new(1_700_000_000_000),
                }
            }

            /// Opens the store with a lap of `lap` bytes and commits only
            /// before reads (or as a lap ends).
            fn open(&self, lap: u64) -> Store {
                self.open_with(&StoreOptions::default(), lap).unwrap()
            }

            fn open_with(&self, opts: &StoreOptions, lap: u64) -> Result<Store> {
                tuned(&self.path, &self.clock, opts, lap)
            }
        }

        fn tuned(path: &Path, clock: &ManualClock, opts: &StoreOptions, lap: u64) -> Result<Store> {
            let tuning = Tuning {
                lap,
                commit_every: HOUR,
            };
            Store::open_tuned(path, opts, Arc::new(clock.clone()), tuning)
        }

        fn report(store: &Store, server: &str, services: &[(&str, &str)]) -> Applied {
            let services: Vec<String> = services
                .iter()
                .map(|(n, s)| format!(r#"{{"name": "{n}", "state": "{s}", "info": "{n} is {s}"}}"#))
                .collect();
            let body = format!(
                r#"{{"server": {{"name": "{server}", "key": "k"}}, "period": 60,
                    "services": [{}]}}"#,
                services.join(",")
            );
            let r = StatusReport::from_json(&parse_object(body.as_bytes()).unwrap()).unwrap();
            store.report(r, "10.0.0.1").unwrap()
        }

        /// Every kind of write, as a user's server makes them.
        fn scenario(store: &Store, clock: &ManualClock) {
            report(store, "web", &[("cpu", "OK"), ("disk", "WARN")]);
            let db = report(store, "db", &[("pg", "OK")]);
            clock.advance(1000);
            let web = report(store, "web", &[("cpu", "FAIL"), ("disk", "WARN")]);
            let body = r#"{"server": {"name": "db", "key": "k"},
                           "alerts": [{"message": "disk almost full", "service": "pg"}]}"#;
            let alerts = AlertReport::from_json(&parse_object(body.as_bytes()).unwrap()).unwrap();
            store.alerts(alerts, "10.0.0.2").unwrap();
            store
                .rename_server(db.server_id.unwrap(), "Database")
                .unwrap();
            store.delete_service(web.deadlines[1].service_id).unwrap();
            clock.advance(120_000);
            let pg = db.deadlines[0];
            store.mark_overdue(vec![(pg.service_id, pg.rtime)]).unwrap();
            store.system_alert("plugin", "failed", "boom").unwrap();
            for i in 0..30 {
                clock.advance(1000);
                report(
                    store,
                    &format!("host{}", i % 7),
                    &[("ping", ["OK", "WARN"][i % 2])],
                );
            }
        }

        /// The database's content, without the random key salts and hashes.
        fn dump(path: &Path) -> Vec<String> {
            let conn = Connection::open(path).unwrap();
            let mut out = Vec::new();
            for sql in [
                "SELECT id, name, title, ip, first_seen, last_seen FROM servers ORDER BY id",
                "SELECT * FROM services ORDER BY id",
                "SELECT * FROM states ORDER BY id",
                "SELECT * FROM alerts ORDER BY id",
            ] {
                let mut st = conn.prepare(sql).unwrap();
                let n = st.column_count();
                let rows = st
                    .query_map([], |r| {
                        (0..n)
                            .map(|i| {
                                r.get::<_, rusqlite::types::Value>(i)
                                    .map(|v| format!("{v:?}"))
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .unwrap();
                for row in rows {
                    out.push(row.unwrap().join("|"));
                }
            }
            out
        }

        fn states_in(path: &Path) -> i64 {
            Connection::open(path)
                .unwrap()
                .query_row("SELECT count(*) FROM states", [], |r| r.get(0))
                .unwrap()
        }

        /// The same writes on a store that stops normally.
        fn reference(dir: &Path) -> Vec<String> {
            let path = dir.join("reference.db");
            let clock = ManualClock::new(1_700_000_000_000);
            let store = tuned(&path, &clock, &StoreOptions::default(), 32 << 20).unwrap();
            scenario(&store, &clock);
            store.close();
            dump(&path)
        }

        #[test]
        fn acknowledged_writes_survive_a_crash_before_sqlite_commits() {
            let f = Fixture::new();
            let store = f.open(32 << 20);
            scenario(&store, &f.clock);
            store.crash();
            drop(store);
            // SQLite never committed them: they are in the redo log alone.
            assert_eq!(states_in(&f.path), 0);
            let store = f.open(32 << 20);
            let counts = store.counts().unwrap();
            assert_eq!(counts.servers, 9);
            assert!(counts.states > 30, "{counts:?}");
            store.close();
            drop(store);
            let expected = reference(f.dir.path());
            assert_eq!(dump(&f.path), expected);
            // Opening it again runs nothing twice.
            let store = f.open(32 << 20);
            store.close();
            drop(store);
            assert_eq!(dump(&f.path), expected);
        }

        #[test]
        fn a_log_that_started_over_many_times_still_recovers_everything() {
            let f = Fixture::new();
            // A lap of a few groups: SQLite commits and the log starts over
            // every few requests.
            let store = f.open(2048);
            scenario(&store, &f.clock);
            store.crash();
            drop(store);
            let committed = states_in(&f.path);
            assert!(committed > 0, "the log started over: SQLite committed");
            let store = f.open(2048);
            store.close();
            drop(store);
            assert!(states_in(&f.path) > committed);
            assert_eq!(dump(&f.path), reference(f.dir.path()));
        }

        #[test]
        fn reads_see_what_the_open_transaction_holds() {
            let f = Fixture::new();
            let store = f.open(32 << 20);
            report(&store, "web", &[("cpu", "OK")]);
            assert_eq!(store.counts().unwrap().states, 1);
            report(&store, "web", &[("cpu", "WARN")]);
            let status = store
                .status(crate::store::StatusFilter::All, 0, 0.0)
                .unwrap();
            let json = serde_json::to_string(&status.unwrap()).unwrap();
            assert!(json.contains("cpu is WARN"), "{json}");
        }

        #[test]
        fn a_failed_batch_leaves_the_writes_before_it_in_place() {
            let f = Fixture::new();
            let store = f.open(32 << 20);
            report(&store, "web", &[("cpu", "OK")]);
            report(&store, "web", &[("cpu", "WARN")]);
            // Rolling the failed batch back rolls back the open transaction:
            // the two reports before it run again from memory.
            assert!(matches!(store.fail_after_write(), Err(Error::Storage(_))));
            report(&store, "web", &[("cpu", "FAIL")]);
            let counts = store.counts().unwrap();
            assert_eq!((counts.servers, counts.states), (1, 3));
            report(&store, "web", &[("cpu", "OK")]);
            store.crash();
            drop(store);
            let store = f.open(32 << 20);
            let counts = store.counts().unwrap();
            assert_eq!((counts.servers, counts.states), (1, 4));
        }

        #[test]
        fn a_failed_batch_whose_earlier_groups_cannot_run_again_commits_nothing() {
            let f = Fixture::new();
            let store = f.open(32 << 20);
            report(&store, "web", &[("cpu", "OK")]);
            store.poison_log().unwrap();
            report(&store, "web", &[("cpu", "WARN")]);
            // Running the groups again stops at the poisoned one: the
            // writer stops rather than commit the first group alone under
            // the log position of all three.
            assert!(store.fail_after_write().is_err());
            let refused = store.fail_after_write();
            assert!(
                matches!(&refused, Err(Error::Storage(m)) if m.contains("restart")),
                "{refused:?}"
            );
            store.close();
            drop(store);
            let conn = Connection::open(&f.path).unwrap();
            let (seq, states): (i64, i64) = conn
                .query_row(
                    "SELECT (SELECT seq FROM redo), (SELECT count(*) FROM states)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!((seq, states), (0, 0));
        }

        #[test]
        fn a_read_while_another_connection_writes_leaves_writes_working() {
            let f = Fixture::new();
            let opts = StoreOptions {
                lock_timeout: Duration::from_millis(100),
                ..StoreOptions::default()
            };
            let store = f.open_with(&opts, 32 << 20).unwrap();
            report(&store, "web", &[("cpu", "OK")]);
            store.counts().unwrap();
            let other = Connection::open(&f.path).unwrap();
            other
                .execute_batch("BEGIN IMMEDIATE; UPDATE servers SET title = 'x';")
                .unwrap();
            // Nothing to commit: the read takes no write lock.
            assert_eq!(store.counts().unwrap().states, 1);
            other.execute_batch("ROLLBACK").unwrap();
            report(&store, "web", &[("cpu", "WARN")]);
            assert_eq!(store.counts().unwrap().states, 2);
        }

        #[test]
        fn a_database_older_than_its_log_is_refused() {
            let f = Fixture::new();
            let backup = f.dir.path().join("backup.db");
            let store = f.open(2048);
            report(&store, "web", &[("cpu", "OK")]);
            store.close();
            drop(store);
            std::fs::copy(&f.path, &backup).unwrap();
            let store = f.open(2048);
            for i in 0..40 {
                f.clock.advance(1000);
                report(&store, &format!("h{i}"), &[("svc", "OK")]);
            }
            store.crash();
            drop(store);
            for name in ["overc.db-wal", "overc.db-shm"] {
                let _ = std::fs::remove_file(f.dir.path().join(name));
            }
            std::fs::copy(&backup, &f.path).unwrap();
            let opened = f.open_with(&StoreOptions::default(), 2048);
            let Err(Error::Storage(e)) = opened else {
                panic!("an old database was run on with a newer log");
            };
            assert!(e.contains("was the database file replaced"), "{e}");
        }

        /// SQLite's own lock on the database file tells other processes that
        /// the WAL is in use: closing any descriptor of that file in this
        /// process would drop it.
        #[test]
        #[cfg(target_os = "linux")]
        fn sqlite_keeps_its_lock_on_the_database_file() {
            use std::os::unix::fs::MetadataExt;

            let f = Fixture::new();
            // A tiny lap: the log starts over (and SQLite is synced) often.
            let store = f.open(1024);
            for i in 0..20 {
                report(&store, &format!("h{i}"), &[("cpu", "OK")]);
            }
            let inode = std::fs::metadata(&f.path).unwrap().ino();
            let pid = std::process::id().to_string();
            let locks = std::fs::read_to_string("/proc/locks").unwrap();
            let held = locks.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 5
                    && f[1] == "POSIX"
                    && f[4] == pid
                    && f[5].rsplit(':').next() == Some(&inode.to_string())
            });
            assert!(held, "no POSIX lock on inode {inode} in:\n{locks}");
        }

        #[test]
        fn the_redo_log_of_a_removed_database_is_not_run() {
            let f = Fixture::new();
            let store = f.open(32 << 20);
            report(&store, "old", &[("cpu", "OK")]);
            store.crash();
            drop(store);
            for name in ["overc.db", "overc.db-wal", "overc.db-shm"] {
                let _ = std::fs::remove_file(f.dir.path().join(name));
            }
            assert!(f.dir.path().join("overc.db-redo").exists());
            let store = f.open(32 << 20);
            assert_eq!(store.counts().unwrap().servers, 0);
            report(&store, "new", &[("cpu", "OK")]);
            assert_eq!(store.counts().unwrap().servers, 1);
        }
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
