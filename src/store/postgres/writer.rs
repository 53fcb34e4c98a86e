//! A writer thread (a server has several, see `mod.rs`): applies the
//! operations that arrived while it was busy as one transaction (group
//! commit), and answers each caller only after PostgreSQL committed it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{Client, Row, Statement, Transaction};

use super::{Job, Op};
use super::{acks, ops, silences};
use crate::clock::{Clock, Millis};
use crate::config::PostgresUrl;
use crate::error::{Error, Result};
use crate::idmap::{IdMap, IdSet};
use crate::policy::Silence;
use crate::store::{Applied, StoreOptions, WriteOp};

/// Most operations committed in one transaction.
const MAX_BATCH: usize = 512;
/// How often the retention rules run.
const MAINTENANCE_EVERY: Millis = 10 * 60 * 1000;
/// How many times a batch PostgreSQL aborted for a deadlock or a
/// serialization failure (another writer's batch took its locks in another
/// order) is run again before its callers get a storage error (503).
const RETRIES: usize = 2;
/// The pause before the first run again (4 times that before the second).
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How long the writer waits for PostgreSQL when it lost its connection:
/// a request waits that long at most before its 503.
const RECONNECT_WAIT: Duration = Duration::from_secs(2);

/// A connection with its prepared statements.
pub(super) struct Conn {
    pub(super) client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    pub(super) fn new(client: Client) -> Conn {
        Conn {
            client,
            statements: HashMap::new(),
        }
    }
}

/// What the operations of one batch work with: the open transaction and
/// the batch's time.
pub(super) struct Batch<'a> {
    tx: Transaction<'a>,
    statements: &'a mut HashMap<String, Statement>,
    pub now: Millis,
    pub opts: &'a StoreOptions,
    /// Services that got history records in this batch.
    pub touched: IdSet,
    /// The unfinished silences, read (and locked against their end) when
    /// the batch first needs them; dropped with the batch, as other
    /// servers set and end silences too (see `silences.rs`).
    pub silences: Option<Vec<Silence>>,
}

/// Parameters of a statement.
pub(super) type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl Batch<'_> {
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.tx.prepare(sql)?;
        self.statements.insert(sql.to_owned(), st.clone());
        Ok(st)
    }

    /// Runs a statement; the rows it changed.
    pub fn exec(&mut self, sql: &str, params: Params<'_>) -> Result<u64> {
        let st = self.statement(sql)?;
        Ok(self.tx.execute(&st, params)?)
    }

    /// The rows of a query.
    pub fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        let st = self.statement(sql)?;
        Ok(self.tx.query(&st, params)?)
    }

    /// The row of a query that returns at most one.
    pub fn opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        let st = self.statement(sql)?;
        Ok(self.tx.query_opt(&st, params)?)
    }

    /// The row of a query that returns exactly one.
    pub fn one(&mut self, sql: &str, params: Params<'_>) -> Result<Row> {
        let st = self.statement(sql)?;
        Ok(self.tx.query_one(&st, params)?)
    }
}

pub(super) struct Writer {
    pub(super) conn: Option<Conn>,
    pub(super) url: PostgresUrl,
    pub(super) opts: StoreOptions,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) commits: Arc<AtomicU64>,
    pub(super) alerts_raised: Arc<AtomicU64>,
    /// Reports stored per service since its history was last pruned,
    /// shared by the server's writers.
    pub(super) unpruned: Arc<Mutex<IdMap<u32>>>,
    /// When one of the server's writers last ran the retention rules.
    pub(super) last_maintenance: Arc<AtomicI64>,
}

impl Writer {
    /// Takes the jobs waiting in the queue (up to [`MAX_BATCH`], whole
    /// groups) and commits them as one batch, until the queue closes. The
    /// server's writers share the queue: while one waits on PostgreSQL,
    /// another takes the jobs that arrived meanwhile.
    pub(super) fn run(mut self, jobs: &Mutex<mpsc::Receiver<Vec<Job>>>) {
        loop {
            let batch = {
                let jobs = jobs.lock().unwrap_or_else(|e| e.into_inner());
                let mut batch = match jobs.recv_timeout(Duration::from_secs(60)) {
                    Ok(group) => group,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        drop(jobs);
                        self.maintain_if_due();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                };
                while batch.len() < MAX_BATCH {
                    match jobs.try_recv() {
                        Ok(group) => batch.extend(group),
                        Err(_) => break,
                    }
                }
                batch
            };
            if !batch.is_empty() {
                self.commit(batch);
            }
            self.maintain_if_due();
        }
        log::debug!(
            "PostgreSQL writer stopped ({} commits by the server's writers)",
            self.commits.load(Ordering::Relaxed)
        );
    }

    fn maintain_if_due(&mut self) {
        let now = self.clock.now();
        let last = self.last_maintenance.load(Ordering::Relaxed);
        if now.saturating_sub(last) < MAINTENANCE_EVERY
            // Another writer's turn.
            || self
                .last_maintenance
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let (reply, answer) = mpsc::sync_channel(1);
        self.commit(vec![Job {
            op: Op::Write(WriteOp::Prune),
            reply,
        }]);
        match answer.recv() {
            Ok(Ok(a)) if a.pruned > 0 => log::info!("pruned {} old records", a.pruned),
            Ok(Err(e)) => log::warn!("pruning failed: {e}"),
            _ => {}
        }
    }

    /// The writer's connection, connecting again if it was lost.
    fn conn(&mut self) -> Result<&mut Conn> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            log::warn!("lost the connection to PostgreSQL at {}", self.url);
            self.conn = None;
        }
        if self.conn.is_none() {
            let client = super::connect::connect(&self.url, RECONNECT_WAIT)?;
            self.conn = Some(Conn::new(client));
        }
        Ok(self.conn.as_mut().expect("connected"))
    }

    fn commit(&mut self, mut batch: Vec<Job>) {
        // The same order in every batch of every writer (and server): the
        // rows of hosts are locked in the order of their names, so two
        // batches seldom wait for each other's locks in a cycle. A stable
        // sort: the operations of one host keep their order. Any order of
        // a batch's jobs is one in which they could have arrived, as none
        // was answered yet.
        batch.sort_by(|a, b| a.op.host().cmp(&b.op.host()));
        let mut attempt = 0;
        let results = loop {
            let now = self.clock.now();
            match self.apply_all(&batch, now) {
                Ok(results) => break results,
                Err(e) if attempt < RETRIES && retryable(&e) => {
                    attempt += 1;
                    log::debug!(
                        "batch of {} operations aborted ({e}), running it again",
                        batch.len()
                    );
                    // The batch that won goes on taking its locks: run at
                    // once, this one would race it into the same cycle.
                    std::thread::sleep(RETRY_PAUSE * (attempt * attempt) as u32);
                }
                Err(e) => {
                    log::error!("commit of {} operations failed: {e}", batch.len());
                    // The connection may be broken without knowing it yet (a
                    // server restarting): the next batch connects afresh.
                    if !retryable(&e) {
                        self.conn = None;
                    }
                    for job in batch {
                        let _ = job
                            .reply
                            .send(Err(Error::Storage(format!("commit failed: {e}"))));
                    }
                    return;
                }
            }
        };
        self.commits.fetch_add(1, Ordering::Relaxed);
        let raised: usize = results.iter().flatten().map(|a| a.alerts.len()).sum();
        self.alerts_raised
            .fetch_add(raised as u64, Ordering::Relaxed);
        for (job, result) in batch.into_iter().zip(results) {
            let _ = job.reply.send(result);
        }
    }

    /// Runs the batch in one transaction and commits it; the outcome of
    /// each operation. A refusal (decided before its operation wrote
    /// anything) is that operation's answer; any other error rolls the
    /// whole batch back.
    fn apply_all(&mut self, batch: &[Job], now: Millis) -> Result<Vec<Result<Applied>>> {
        let opts = self.opts.clone();
        self.conn()?;
        let Writer { conn, unpruned, .. } = self;
        let conn = conn.as_mut().expect("connected");
        let tx = conn.client.transaction()?;
        let mut b = Batch {
            tx,
            statements: &mut conn.statements,
            now,
            opts: &opts,
            touched: IdSet::default(),
            silences: None,
        };
        let mut results = Vec::with_capacity(batch.len());
        for job in batch {
            match apply(&job.op, &mut b) {
                Ok(a) => results.push(Ok(a)),
                Err(
                    e @ (Error::Forbidden(_)
                    | Error::Invalid(_)
                    | Error::NotFound(_)
                    | Error::Conflict(_)),
                ) => results.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        let step = (opts.history_limit / 10).max(10);
        let touched = std::mem::take(&mut b.touched);
        let due: Vec<i64> = {
            let mut unpruned = unpruned.lock().unwrap_or_else(|e| e.into_inner());
            touched
                .into_iter()
                .filter(|&id| {
                    let n = unpruned.entry(id).or_insert(0);
                    *n += 1;
                    let due = *n >= step;
                    if due {
                        *n = 0;
                    }
                    due
                })
                .collect()
        };
        for id in due {
            ops::prune_history(&mut b, id, opts.history_limit)?;
        }
        b.tx.commit()?;
        Ok(results)
    }
}

/// Whether PostgreSQL aborted the transaction for a deadlock or a
/// serialization failure, which running it again resolves.
fn retryable(e: &Error) -> bool {
    use postgres::error::SqlState;
    matches!(e, Error::Postgres(e) if e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    }))
}

fn apply(op: &Op, b: &mut Batch<'_>) -> Result<Applied> {
    match op {
        Op::Write(w) => apply_write(w, b),
        Op::ExtendDue(now) => Ok(Applied {
            pruned: ops::extend_due(b, *now)?,
            ..Applied::default()
        }),
    }
}

fn apply_write(op: &WriteOp, b: &mut Batch<'_>) -> Result<Applied> {
    match op {
        WriteOp::Ping(p, ip) => {
            let id = ops::authenticate(&p.server, ip, b)?;
            Ok(Applied {
                server_id: Some(id),
                ..Applied::default()
            })
        }
        WriteOp::Status(r, ip) => ops::apply_status(r, ip, b),
        WriteOp::Alerts(r, ip) => ops::apply_alerts(r, ip, b),
        WriteOp::AddServer(server) => ops::add_server(server, b),
        WriteOp::Prune => ops::prune_all(b),
        WriteOp::DeleteServer(id) => ops::delete_server(b, *id),
        WriteOp::DeleteService(id) => ops::delete_service(b, *id),
        WriteOp::Rename { service, id, title } => ops::rename(b, *service, *id, title),
        WriteOp::MarkOverdue(due) => ops::mark_overdue(due, b),
        WriteOp::Route(routes) => ops::route(b, routes),
        WriteOp::Delivery {
            plugin,
            alert_id,
            outcome,
        } => ops::delivery(b, plugin, *alert_id, outcome),
        WriteOp::SystemAlert(event) => ops::system_alert(b, event),
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
