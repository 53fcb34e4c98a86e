//! The writer thread: applies the operations that arrive while it is busy
//! as one transaction (group commit), and answers each caller only after
//! PostgreSQL committed it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
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
use crate::store::{Applied, StoreOptions};

/// Most operations committed in one transaction.
const MAX_BATCH: usize = 512;
/// How often the retention rules run.
const MAINTENANCE_EVERY: Millis = 10 * 60 * 1000;
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
    /// Reports stored per service since its history was last pruned.
    pub(super) unpruned: IdMap<u32>,
    pub(super) last_maintenance: Millis,
}

impl Writer {
    pub(super) fn run(mut self, jobs: mpsc::Receiver<Job>) {
        loop {
            let first = match jobs.recv_timeout(Duration::from_secs(60)) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
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
            self.commit(batch);
            self.maintain_if_due();
        }
        log::debug!(
            "PostgreSQL writer stopped after {} commits",
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

    fn commit(&mut self, batch: Vec<Job>) {
        let now = self.clock.now();
        let outcome = self.apply_all(&batch, now);
        let results = match outcome {
            Ok(results) => results,
            Err(e) => {
                log::error!("commit of {} operations failed: {e}", batch.len());
                // The connection may be broken without knowing it yet (a
                // server restarting): the next batch connects afresh.
                self.conn = None;
                for job in batch {
                    let _ = job
                        .reply
                        .send(Err(Error::Storage(format!("commit failed: {e}"))));
                }
                return;
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
        for id in touched {
            let n = unpruned.entry(id).or_insert(0);
            *n += 1;
            if *n >= step {
                *n = 0;
                ops::prune_history(&mut b, id, opts.history_limit)?;
            }
        }
        b.tx.commit()?;
        Ok(results)
    }
}

fn apply(op: &Op, b: &mut Batch<'_>) -> Result<Applied> {
    match op {
        Op::Ping(p, ip) => {
            let id = ops::authenticate(&p.server, ip, b)?;
            Ok(Applied {
                server_id: Some(id),
                ..Applied::default()
            })
        }
        Op::Status(r, ip) => ops::apply_status(r, ip, b),
        Op::Alerts(r, ip) => ops::apply_alerts(r, ip, b),
        Op::AddServer(server) => ops::add_server(server, b),
        Op::Prune => ops::prune_all(b),
        Op::DeleteServer(id) => ops::delete_server(b, *id),
        Op::DeleteService(id) => ops::delete_service(b, *id),
        Op::Rename { service, id, title } => ops::rename(b, *service, *id, title),
        Op::MarkOverdue(due) => ops::mark_overdue(due, b),
        Op::Route(routes) => ops::route(b, routes),
        Op::Delivery {
            plugin,
            alert_id,
            outcome,
        } => ops::delivery(b, plugin, *alert_id, outcome),
        Op::SystemAlert(event) => ops::system_alert(b, event),
        Op::AddSilence(s) => silences::add(b, s),
        Op::HostSilence(r, ip) => silences::host_silence(r, ip, b),
        Op::HostUnsilence(r, ip) => silences::host_unsilence(r, ip, b),
        Op::EndSilence(id) => silences::end_one(b, *id),
        Op::EndSilences(now) => silences::end_due(b, *now),
        Op::Ack {
            service_id,
            author,
            comment,
        } => acks::ack(b, *service_id, author, comment),
        Op::Unack(id) => acks::unack(b, *id),
        Op::ExtendDue(now) => Ok(Applied {
            pruned: ops::extend_due(b, *now)?,
            ..Applied::default()
        }),
    }
}
