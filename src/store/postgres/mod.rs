//! PostgreSQL storage (SPEC §10): the same [`Storage`] as SQLite, for
//! several overc servers sharing one database.
//!
//! Writes go through `WRITERS` writer threads per server, each with its
//! own connection, which take the operations that arrived from one queue
//! and apply them as one transaction (group commit), answering each caller
//! only after COMMIT. They keep no memory of rows between batches, since
//! other writers and servers write too: each operation
//! reads what it decides on, locking the rows it changes (`FOR UPDATE`),
//! and a new host is registered with `INSERT … ON CONFLICT DO NOTHING`, so
//! that of two servers registering one name with different keys at once,
//! one key is stored and the other request refused. Reads run on a small
//! pool of connections of their own.

mod acks;
mod connect;
pub(super) mod copy;
mod leader;
mod ops;
mod query;
mod schema;
mod silences;
mod tls;
mod writer;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::Client;

use crate::clock::{Clock, Millis};
use crate::config::PostgresUrl;
use crate::error::{Error, Result};
use crate::idmap::IdMap;
use crate::notification::Notification;
use crate::policy::Ack;
use crate::protocol::StatusReport;
use crate::store::{
    AlertFilter, AlertListView, Applied, HistoryView, OpenProblem, PendingDelivery,
    ServiceDeadline, SilenceListView, StatusFilter, StatusPart, Storage, StoreOptions, TableCounts,
    WriteOp,
};

/// How long a server waits at start for PostgreSQL to accept connections.
pub const START_WAIT: Duration = Duration::from_secs(60);
/// Writer threads per server, each with its own connection (see
/// `writer.rs`): a batch waits on PostgreSQL's round trips, so several
/// batches in flight keep it busy.
pub(super) const WRITERS: usize = 4;
/// Read connections per server, open at once at most (and kept while idle):
/// with the writers and the leader's, what a server asks of PostgreSQL's
/// `max_connections`, however many page views and plugins read at once.
const READERS: usize = 6;
/// How long a read waits for one of the [`READERS`] connections to be free
/// before it fails (503).
const READ_SLOT_WAIT: Duration = Duration::from_secs(10);
/// A read connection idle this long is checked before it is used (a round
/// trip, so that a read does not fail on a connection whose server
/// restarted meanwhile).
const IDLE_CHECK: Duration = Duration::from_millis(100);
/// How long a read waits for a new connection when PostgreSQL is away.
const READ_CONNECT_WAIT: Duration = Duration::from_secs(1);

/// An operation for the writer thread.
enum Op {
    /// A write of the [`Storage`] interface.
    Write(WriteOp),
    /// Moves due times that passed to now + period.
    ExtendDue(Millis),
}

impl WriteOp {
    /// The name of the host a write of a host is about; `None` for the
    /// rest: a batch is ordered by it (see `writer.rs`).
    fn host(&self) -> Option<&str> {
        match self {
            WriteOp::Ping(p, _) => Some(&p.server.name),
            WriteOp::Status(r, _) => Some(&r.server.name),
            WriteOp::Alerts(r, _) => Some(&r.server.name),
            WriteOp::HostSilence(r, _) => Some(&r.server.name),
            WriteOp::HostUnsilence(r, _) => Some(&r.server.name),
            WriteOp::AddServer(s) => Some(&s.name),
            _ => None,
        }
    }
}

impl Op {
    /// The name of the host a request of a host is about (the order of a
    /// batch, see `writer.rs`); `None` for the rest.
    fn host(&self) -> Option<&str> {
        match self {
            Op::Write(w) => w.host(),
            Op::ExtendDue(_) => None,
        }
    }
}

struct Job {
    op: Op,
    reply: mpsc::SyncSender<Result<Applied>>,
}

/// An overc database on PostgreSQL.
pub struct PgStore {
    url: PostgresUrl,
    /// The writers' queue: a group of jobs (one request, or the reports
    /// of several requests read at once) goes into one batch, in order.
    jobs: RwLock<Option<mpsc::Sender<Vec<Job>>>>,
    writers: Mutex<Vec<JoinHandle<()>>>,
    /// Idle read connections, with when they were last used.
    readers: Mutex<Vec<(Client, Instant)>>,
    /// Read connections in use, and a wake-up when one is given back.
    reading: (Mutex<usize>, std::sync::Condvar),
    clock: Arc<dyn Clock>,
    commits: Arc<AtomicU64>,
    alerts_raised: Arc<AtomicU64>,
    leadership: Mutex<leader::Leadership>,
    /// This server's name in delivery claims: its listen address and a
    /// random tag. The address alone is not unique: servers on two hosts
    /// behind a load balancer often both listen on 127.0.0.1:5000, and a
    /// new leader would take the claims of an old one still delivering as
    /// its own.
    claimant: String,
    /// How long a delivery claim holds off the other servers.
    claim_lease: Millis,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.url).finish()
    }
}

impl PgStore {
    /// Connects to the database at `url` (waiting up to `wait` for
    /// PostgreSQL to accept connections), creates or migrates its schema
    /// under an advisory lock, and starts the writer.
    ///
    /// # Errors
    /// [`Error::Storage`] when PostgreSQL does not answer within `wait`,
    /// refuses the login or the database name, is older than 13, or holds
    /// a schema newer than this build's.
    pub fn open(
        url: &PostgresUrl,
        opts: &StoreOptions,
        clock: Arc<dyn Clock>,
        wait: Duration,
    ) -> Result<PgStore> {
        let mut client = connect::connect(url, wait)?;
        schema::migrate(&mut client)?;
        let commits = Arc::new(AtomicU64::new(0));
        let alerts_raised = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel::<Vec<Job>>();
        let rx = Arc::new(Mutex::new(rx));
        let unpruned = Arc::new(Mutex::new(IdMap::default()));
        let last_maintenance = Arc::new(AtomicI64::new(clock.now()));
        let mut first = Some(client);
        let mut handles = Vec::with_capacity(WRITERS);
        for i in 0..WRITERS {
            let w = writer::Writer {
                // The first writer has the connection that migrated; the
                // others connect when they get their first batch.
                conn: first.take().map(writer::Conn::new),
                url: url.clone(),
                opts: opts.clone(),
                clock: clock.clone(),
                commits: commits.clone(),
                alerts_raised: alerts_raised.clone(),
                unpruned: unpruned.clone(),
                last_maintenance: last_maintenance.clone(),
            };
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("overc-pg-writer-{i}"))
                .spawn(move || w.run(&rx));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    drop(tx);
                    for h in handles {
                        let _ = h.join();
                    }
                    return Err(e.into());
                }
            }
        }
        let leadership = leader::Leadership::start(
            url.clone(),
            opts.node.clone(),
            opts.leader_timeout,
            clock.clone(),
        )?;
        log::info!(
            "PostgreSQL storage at {url} (schema version {})",
            schema::VERSION
        );
        Ok(PgStore {
            url: url.clone(),
            jobs: RwLock::new(Some(tx)),
            writers: Mutex::new(handles),
            readers: Mutex::new(Vec::new()),
            reading: (Mutex::new(0), std::sync::Condvar::new()),
            clock,
            commits,
            alerts_raised,
            leadership: Mutex::new(leadership),
            claimant: claimant(&opts.node)?,
            claim_lease: Millis::try_from(opts.leader_timeout.as_millis()).unwrap_or(10_000),
        })
    }

    fn submit(&self, op: Op) -> Result<Applied> {
        let (reply, answer) = mpsc::sync_channel(1);
        {
            let jobs = self.jobs.read().unwrap_or_else(|e| e.into_inner());
            let jobs = jobs
                .as_ref()
                .ok_or_else(|| Error::Storage("the store is closed".into()))?;
            jobs.send(vec![Job { op, reply }])
                .map_err(|_| Error::Storage("the writer thread has stopped".into()))?;
        }
        answer
            .recv()
            .map_err(|_| Error::Storage("the writer thread has stopped".into()))?
    }

    /// Runs `f` on a pooled read connection (a new one when none is idle).
    fn read<T>(&self, f: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        let _slot = self.read_slot()?;
        let idle = crate::store::lock(&self.readers).pop();
        let mut client = match idle {
            // One that idled may have lost its server meanwhile (a restart):
            // checked first, so that the read does not fail on it.
            Some((mut c, since)) if !c.is_closed() => {
                if since.elapsed() < IDLE_CHECK || c.is_valid(READ_CONNECT_WAIT).is_ok() {
                    c
                } else {
                    connect::connect(&self.url, READ_CONNECT_WAIT)?
                }
            }
            _ => connect::connect(&self.url, READ_CONNECT_WAIT)?,
        };
        let result = f(&mut client);
        if client.is_closed() {
            // Its server went away: the idle ones are as suspect.
            crate::store::lock(&self.readers).clear();
        }
        // A connection that failed a read is not trusted again.
        if result.is_ok() && !client.is_closed() {
            let mut idle = crate::store::lock(&self.readers);
            if idle.len() < READERS {
                idle.push((client, Instant::now()));
            }
        }
        result
    }

    /// Waits for one of the [`READERS`] read connections; it is given back
    /// when the slot drops.
    fn read_slot(&self) -> Result<ReadSlot<'_>> {
        let (count, freed) = &self.reading;
        let deadline = Instant::now() + READ_SLOT_WAIT;
        let mut n = crate::store::lock(count);
        while *n >= READERS {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Storage(format!(
                    "all {READERS} read connections to PostgreSQL stayed busy"
                )));
            }
            n = freed
                .wait_timeout(n, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *n += 1;
        Ok(ReadSlot(&self.reading))
    }

    fn shut(&self) {
        // Leadership first: another server takes over while this one stops.
        crate::store::lock(&self.leadership).stop();
        self.jobs.write().unwrap_or_else(|e| e.into_inner()).take();
        for h in std::mem::take(&mut *crate::store::lock(&self.writers)) {
            let _ = h.join();
        }
        crate::store::lock(&self.readers).clear();
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.shut();
    }
}

impl Storage for PgStore {
    fn location(&self) -> String {
        self.url.redacted()
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
        let mut group = Vec::with_capacity(reports.len());
        for (report, ip) in reports {
            let (reply, answer) = mpsc::sync_channel(1);
            group.push(Job {
                op: Op::Write(WriteOp::Status(report, ip)),
                reply,
            });
            answers.push(answer);
        }
        // One group: the reports go into one batch, in their order.
        let sent = {
            let jobs = self.jobs.read().unwrap_or_else(|e| e.into_inner());
            jobs.as_ref().is_some_and(|jobs| jobs.send(group).is_ok())
        };
        let answers: Vec<_> = answers.into_iter().map(|a| sent.then_some(a)).collect();
        for (i, answer) in answers.into_iter().enumerate() {
            let result = answer
                .and_then(|a| a.recv().ok())
                .unwrap_or_else(|| Err(Error::Storage("the writer thread has stopped".into())));
            each(i, result);
        }
    }

    fn unrouted(&self, limit: usize) -> Result<Vec<Notification>> {
        self.unrouted_pg(limit)
    }

    fn got_problem(&self, plugin: &str, recovery: i64) -> Result<bool> {
        self.got_problem_pg(plugin, recovery)
    }

    fn services_with_period(&self, server: &str) -> Result<usize> {
        self.services_with_period_pg(server)
    }

    fn open_problems(&self) -> Result<Vec<OpenProblem>> {
        self.open_problems_pg()
    }

    fn pending_deliveries(&self, plugin: &str, limit: usize) -> Result<Vec<PendingDelivery>> {
        self.pending_deliveries_pg(plugin, limit)
    }

    fn service_deadlines(&self) -> Result<Vec<ServiceDeadline>> {
        self.service_deadlines_pg()
    }

    fn status_each(
        &self,
        filter: StatusFilter,
        grace_s: u32,
        supervisor_lag: f64,
        each: &mut dyn FnMut(StatusPart) -> Result<()>,
    ) -> Result<bool> {
        self.status_each_pg(filter, grace_s, supervisor_lag, each)
    }

    fn states(
        &self,
        service_id: i64,
        hours: f64,
        fold: Option<&[(i64, i64)]>,
    ) -> Result<Option<HistoryView>> {
        self.states_pg(service_id, hours, fold)
    }

    fn alert_list(&self, filter: AlertFilter, hours: f64) -> Result<Option<AlertListView>> {
        self.alert_list_pg(filter, hours)
    }

    fn end_silences(&self, now: Millis) -> Result<Applied> {
        // A read first, so that the writer (a transaction) is asked only
        // when a silence is due to end: any server may have set it.
        if !self.silence_end_due(now)? {
            return Ok(Applied::default());
        }
        self.write(WriteOp::EndSilences(now))
    }

    fn silences(&self) -> Result<SilenceListView> {
        self.silences_pg()
    }

    fn ack_of(&self, service_id: i64) -> Result<Option<Ack>> {
        self.ack_of_pg(service_id)
    }

    fn counts(&self) -> Result<TableCounts> {
        self.counts_pg()
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

    fn is_shared(&self) -> bool {
        true
    }

    fn is_leader(&self) -> bool {
        crate::store::lock(&self.leadership)
            .is_leader
            .load(Ordering::SeqCst)
    }

    fn due_services(&self, before: Millis, limit: usize) -> Result<Vec<(i64, Millis)>> {
        self.due_services_pg(before, limit)
    }

    fn next_due(&self) -> Result<Option<Millis>> {
        self.read(|client| {
            Ok(client
                .query_one(
                    "SELECT min(due) FROM services WHERE NOT overdue AND due IS NOT NULL",
                    &[],
                )?
                .get(0))
        })
    }

    fn extend_due(&self, now: Millis) -> Result<u64> {
        Ok(self.submit(Op::ExtendDue(now))?.pruned)
    }
}

/// A name for this server's delivery claims that no other server has.
fn claimant(node: &str) -> Result<String> {
    let tag = crate::store::plan::new_salt()?;
    let tag: String = tag[..6].iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{node} {tag}"))
}

/// A read connection in use: counted while it lives.
struct ReadSlot<'a>(&'a (Mutex<usize>, std::sync::Condvar));

impl Drop for ReadSlot<'_> {
    fn drop(&mut self) {
        let (count, freed) = self.0;
        *crate::store::lock(count) -= 1;
        freed.notify_one();
    }
}
