//! SQLite storage: schema and migrations, the group-commit writer, and the
//! queries behind the read API.
//!
//! All writes go through one writer thread. A request handler hands its
//! operation over and blocks until it is durable, so a 200 means on disk;
//! operations that arrive while the writer is busy are collected into the
//! next group and share its fsync (group commit). A file store's groups
//! become durable in its redo log (see `redo.rs`), and SQLite commits them
//! about once a second and before every read.
//! A refused operation (a wrong key) is refused before it writes anything, so
//! it never disturbs the others in its batch; any other failure rolls the
//! whole batch back and every request in it gets a 503.

pub(super) mod copy;
mod durability;
mod lock;
mod ops;
mod outbox;
mod query;
mod redo;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::clock::{Clock, Millis};
use crate::config::Durability;
use crate::error::{Error, Result};
use crate::notification::Notification;
use crate::policy::Ack;
use crate::protocol::StatusReport;
use crate::store::{
    AlertFilter, AlertListView, Applied, HistoryView, OpenProblem, PendingDelivery,
    ServiceDeadline, SilenceListView, StatusFilter, StatusPart, Storage, TableCounts, WriteOp,
};

use durability::Tuning;

/// Storage settings taken from the server config.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Commit durability.
    pub durability: Durability,
    /// History records kept per service.
    pub history_limit: u32,
    /// Days alerts are kept.
    pub retention_days: u32,
    /// How long a write waits for a database lock before failing.
    pub lock_timeout: Duration,
    /// The notification policy's server-wide settings (retries, flapping),
    /// applied where reports are written.
    pub policy: crate::policy::PolicyConfig,
    /// Who may register a new server name.
    pub registration: crate::config::Registration,
    /// Shared storage (PostgreSQL): how soon another server takes over
    /// from a leader that died or lost the database.
    pub leader_timeout: Duration,
    /// Shared storage: this server's listen address, shown as the leader's.
    pub node: String,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::Disk,
            history_limit: 1000,
            retention_days: 90,
            lock_timeout: BUSY_TIMEOUT,
            policy: crate::policy::PolicyConfig::default(),
            registration: crate::config::Registration::default(),
            leader_timeout: Duration::from_secs(10),
            node: String::new(),
        }
    }
}

/// An operation for the writer thread.
pub(crate) enum Op {
    /// A write of the [`Storage`] interface.
    Write(WriteOp),
    /// Commits SQLite, so that a read sees every write before it.
    Flush,
    /// A fault injected by a test.
    #[cfg(test)]
    Test(writer::Fault),
}

struct Job {
    op: Op,
    reply: mpsc::SyncSender<Result<Applied>>,
}

/// The overc database: one writer thread with group commit, and a read connection.
pub struct Store {
    checkpointer: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
    /// Read-locked by every request (the sender itself is shared), so that
    /// the HTTP workers never queue behind each other to hand over a job;
    /// write-locked only to close.
    jobs: RwLock<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: Mutex<Connection>,
    /// Whether the writer keeps a transaction open across batches (a file
    /// store with its redo log): reads first ask it to commit.
    batched: bool,
    clock: Arc<dyn Clock>,
    commits: Arc<AtomicU64>,
    alerts_raised: Arc<AtomicU64>,
    /// When the writer next has a silence to end (see `Writer`).
    next_silence_end: Arc<AtomicI64>,
    path: PathBuf,
    /// A file store's lock on its database file: dropped last, after every
    /// connection (see `lock.rs`).
    _lock: Option<lock::DbLock>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

static MEMORY_DBS: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens (creating or migrating) the database file at `path`.
    ///
    /// # Errors
    /// [`Error::Storage`] when the file cannot be opened or migrated.
    pub fn open(path: &Path, opts: &StoreOptions, clock: Arc<dyn Clock>) -> Result<Store> {
        let open = || -> Result<Connection> {
            let conn = Connection::open(path).map_err(|e| {
                Error::Storage(format!("cannot open database {}: {e}", path.display()))
            })?;
            Ok(conn)
        };
        Self::start(open, path.to_path_buf(), opts, clock, Tuning::default())
    }

    /// [`Store::open`] with other commit batching, for tests.
    #[cfg(test)]
    pub(crate) fn open_tuned(
        path: &Path,
        opts: &StoreOptions,
        clock: Arc<dyn Clock>,
        tuning: Tuning,
    ) -> Result<Store> {
        let open = || -> Result<Connection> { Ok(Connection::open(path)?) };
        Self::start(open, path.to_path_buf(), opts, clock, tuning)
    }

    /// A private in-memory database, for tests and examples.
    ///
    /// # Errors
    /// When SQLite cannot create the database or a thread cannot be started.
    pub fn open_in_memory(opts: &StoreOptions, clock: Arc<dyn Clock>) -> Result<Store> {
        let n = MEMORY_DBS.fetch_add(1, Ordering::Relaxed);
        let uri = format!(
            "file:overc-mem-{}-{n}?mode=memory&cache=shared",
            std::process::id()
        );
        let open = move || -> Result<Connection> {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_URI;
            Ok(Connection::open_with_flags(&uri, flags)?)
        };
        Self::start(
            open,
            PathBuf::from(":memory:"),
            opts,
            clock,
            Tuning::default(),
        )
    }

    fn start(
        open: impl Fn() -> Result<Connection>,
        path: PathBuf,
        opts: &StoreOptions,
        clock: Arc<dyn Clock>,
        tuning: Tuning,
    ) -> Result<Store> {
        let db_lock = match path != Path::new(":memory:") {
            true => Some(lock::DbLock::take(&path)?),
            false => None,
        };
        let mut wconn = open()?;
        let wal_mode = schema::configure(&mut wconn, opts.durability, opts.lock_timeout)?;
        // A file store in WAL mode gets its redo log beside the file (beside
        // the file a symlink points to, as SQLite puts its WAL there).
        let db = (wal_mode && path != Path::new(":memory:"))
            .then(|| std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone()));
        let open_redo = |conn: &mut Connection, db: &Path| {
            let mut log = db.as_os_str().to_owned();
            log.push("-redo");
            durability::Redo::open(conn, Path::new(&log), &tuning)
        };
        // A log runs again on the schema that wrote it, before migrations.
        let mut redo = None;
        if let Some(db) = &db {
            if schema::version(&wconn)? >= schema::REDO_SINCE {
                redo = Some(open_redo(&mut wconn, db)?);
            }
        }
        let migrated = schema::migrate(&mut wconn)?;
        match (&db, &redo) {
            (Some(db), None) => redo = Some(open_redo(&mut wconn, db)?),
            // Groups logged from now on expect the new schema: it must not
            // be lost to a power cut that the log survives.
            (Some(_), Some(_)) if migrated => durability::commit_durably(&wconn)?,
            _ => {}
        }
        let batched = redo.is_some();
        let rconn = open()?;
        schema::prepare_reader(&rconn, opts.lock_timeout)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let commits = Arc::new(AtomicU64::new(0));
        let alerts_raised = Arc::new(AtomicU64::new(0));
        let next_silence_end = Arc::new(AtomicI64::new(Millis::MIN));
        let w = writer::Writer::new(
            redo,
            wconn,
            opts.clone(),
            clock.clone(),
            commits.clone(),
            alerts_raised.clone(),
            next_silence_end.clone(),
        );
        let handle = std::thread::Builder::new()
            .name("overc-writer".into())
            .spawn(move || w.run(rx))?;
        // Checkpoints copy the WAL back into the database file. Done by a
        // connection of their own (PASSIVE: never blocking the writer), the
        // writer does not stall while tens of MiB are copied and synced.
        let (stop_ckpt, ckpt_rx) = mpsc::channel::<()>();
        let checkpointer = match (path != Path::new(":memory:")).then(&open) {
            Some(Ok(conn)) => {
                schema::prepare_reader(&conn, opts.lock_timeout)?;
                Some(
                    std::thread::Builder::new()
                        .name("overc-checkpoint".into())
                        .spawn(move || checkpoint_loop(conn, ckpt_rx))?,
                )
            }
            Some(Err(e)) => {
                log::warn!("no checkpoint connection ({e}); the writer checkpoints itself");
                None
            }
            None => None,
        };
        Ok(Store {
            checkpointer: Mutex::new(checkpointer.map(|h| (stop_ckpt, h))),
            jobs: RwLock::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            reader: Mutex::new(rconn),
            batched,
            clock,
            commits,
            alerts_raised,
            next_silence_end,
            path,
            _lock: db_lock,
        })
    }

    /// The database file's path (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn now(&self) -> Millis {
        self.clock.now()
    }

    fn submit(&self, op: Op) -> Result<Applied> {
        let (reply, answer) = mpsc::sync_channel(1);
        {
            let jobs = read(&self.jobs);
            let jobs = jobs
                .as_ref()
                .ok_or_else(|| Error::Storage("the store is closed".into()))?;
            jobs.send(Job { op, reply })
                .map_err(|_| Error::Storage("the writer thread has stopped".into()))?;
        }
        answer
            .recv()
            .map_err(|_| Error::Storage("the writer thread has stopped".into()))?
    }

    /// Stores many reports at once (see [`Storage::report_each`]); results
    /// in the order given.
    pub fn report_many(&self, reports: Vec<(StatusReport, String)>) -> Vec<Result<Applied>> {
        let mut results = Vec::with_capacity(reports.len());
        self.report_each(reports, &mut |_, result| results.push(result));
        results
    }

    /// Stops the writer as a crash would, leaving what SQLite has not
    /// committed to the redo log.
    #[cfg(test)]
    pub(crate) fn crash(&self) {
        let _ = self.submit(Op::Test(writer::Fault::Crash));
        self.shut();
    }

    #[cfg(test)]
    pub(crate) fn fail_after_write(&self) -> Result<Applied> {
        self.submit(Op::Test(writer::Fault::FailAfterWrite))
    }

    #[cfg(test)]
    pub(crate) fn poison_log(&self) -> Result<Applied> {
        self.submit(Op::Test(writer::Fault::PoisonLog))
    }

    /// The read connection, once the writer committed every write handed
    /// to it before: a read sees all that was acknowledged.
    pub(crate) fn reader(&self) -> MutexGuard<'_, Connection> {
        if self.batched {
            // A stopped writer has committed all it had.
            let _ = self.submit(Op::Flush);
        }
        lock(&self.reader)
    }

    /// Stops the writer after the operations already handed over are committed.
    fn shut(&self) {
        self.jobs.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = lock(&self.writer).take() {
            let _ = h.join();
        }
        if let Some((stop, h)) = lock(&self.checkpointer).take() {
            drop(stop);
            let _ = h.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shut();
    }
}

impl Storage for Store {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn write(&self, op: WriteOp) -> Result<Applied> {
        self.submit(Op::Write(op))
    }

    fn report_each(
        &self,
        reports: Vec<(StatusReport, String)>,
        each: &mut dyn FnMut(usize, Result<Applied>),
    ) {
        let mut answers = Vec::with_capacity(reports.len());
        {
            let jobs = read(&self.jobs);
            for (report, ip) in reports {
                let (reply, answer) = mpsc::sync_channel(1);
                let sent = match jobs.as_ref() {
                    Some(jobs) => jobs
                        .send(Job {
                            op: Op::Write(WriteOp::Status(report, ip)),
                            reply,
                        })
                        .is_ok(),
                    None => false,
                };
                answers.push(sent.then_some(answer));
            }
        }
        for (i, answer) in answers.into_iter().enumerate() {
            let result = answer
                .and_then(|a| a.recv().ok())
                .unwrap_or_else(|| Err(Error::Storage("the writer thread has stopped".into())));
            each(i, result);
        }
    }

    fn unrouted(&self, limit: usize) -> Result<Vec<Notification>> {
        Store::unrouted(self, limit)
    }

    fn got_problem(&self, plugin: &str, recovery: i64) -> Result<bool> {
        Store::got_problem(self, plugin, recovery)
    }

    fn services_with_period(&self, server: &str) -> Result<usize> {
        Store::services_with_period(self, server)
    }

    fn open_problems(&self) -> Result<Vec<OpenProblem>> {
        Store::open_problems(self)
    }

    fn pending_deliveries(&self, plugin: &str, limit: usize) -> Result<Vec<PendingDelivery>> {
        Store::pending_deliveries(self, plugin, limit)
    }

    fn service_deadlines(&self) -> Result<Vec<ServiceDeadline>> {
        Store::service_deadlines(self)
    }

    fn status_each(
        &self,
        filter: StatusFilter,
        grace_s: u32,
        supervisor_lag: f64,
        each: &mut dyn FnMut(StatusPart) -> Result<()>,
    ) -> Result<bool> {
        Store::status_each(self, filter, grace_s, supervisor_lag, each)
    }

    fn states(
        &self,
        service_id: i64,
        hours: f64,
        fold: Option<&[(i64, i64)]>,
    ) -> Result<Option<HistoryView>> {
        Store::states(self, service_id, hours, fold)
    }

    fn alert_list(&self, filter: AlertFilter, hours: f64) -> Result<Option<AlertListView>> {
        Store::alert_list(self, filter, hours)
    }

    fn counts(&self) -> Result<TableCounts> {
        Store::counts(self)
    }

    fn end_silences(&self, now: Millis) -> Result<Applied> {
        // The writer is asked only once the next end is due (or unknown).
        if now < self.next_silence_end.load(Ordering::Relaxed) {
            return Ok(Applied::default());
        }
        self.write(WriteOp::EndSilences(now))
    }

    fn silences(&self) -> Result<SilenceListView> {
        Store::silences(self)
    }

    fn ack_of(&self, service_id: i64) -> Result<Option<Ack>> {
        Store::ack_of(self, service_id)
    }

    fn alerts_raised(&self) -> u64 {
        self.alerts_raised.load(Ordering::Relaxed)
    }

    fn commit_count(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn close(&self) {
        self.shut();
    }
}

/// How often the checkpointer looks at the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

fn checkpoint_loop(conn: Connection, stop: mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match r {
            Ok((log, done)) if log > 0 => log::trace!("checkpoint: {done} of {log} WAL frames"),
            Ok(_) => {}
            Err(e) => log::debug!("checkpoint failed: {e}"),
        }
    }
}

/// Locks a mutex, recovering from poisoning: our guarded data stays valid
/// even if a thread panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

/// How long a connection waits for a lock before reporting "database locked".
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
