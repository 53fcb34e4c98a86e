//! The single writer thread: batches operations into one transaction each
//! (group commit), applies each inside its own savepoint, and prunes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Job, Op, StoreOptions};
use crate::clock::{Clock, Millis};
use crate::error::{Error, Result};
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
    /// service has no period.
    pub due: Option<Millis>,
}

#[derive(Clone)]
struct KnownServer {
    id: i64,
    salt: [u8; 16],
    hash: [u8; 32],
}

pub(super) struct Writer {
    conn: Connection,
    opts: StoreOptions,
    clock: Arc<dyn Clock>,
    commits: Arc<AtomicU64>,
    alerts_raised: Arc<AtomicU64>,
    servers: HashMap<String, KnownServer>,
    /// Reports stored per service since its history was last pruned.
    unpruned: HashMap<i64, u32>,
    last_maintenance: Millis,
}

fn key_hash(salt: &[u8; 16], key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(key.as_bytes());
    h.finalize().into()
}

/// Compares without an early exit, so timing does not reveal how much matched.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Batch<'a> {
    servers: &'a HashMap<String, KnownServer>,
    /// Hosts registered in this batch; trusted only once the batch commits.
    registered: HashMap<String, KnownServer>,
    /// Hosts deleted in this batch; dropped from the key cache after commit.
    forgotten: Vec<String>,
    touched: HashSet<i64>,
    now: Millis,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        opts: StoreOptions,
        clock: Arc<dyn Clock>,
        commits: Arc<AtomicU64>,
        alerts_raised: Arc<AtomicU64>,
    ) -> Writer {
        Writer {
            conn,
            opts,
            clock,
            commits,
            alerts_raised,
            servers: HashMap::new(),
            unpruned: HashMap::new(),
            last_maintenance: Millis::MIN,
        }
    }

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
                // Gives the freed pages back to the file system.
                if let Err(e) = self.conn.execute_batch("PRAGMA incremental_vacuum") {
                    log::warn!("incremental vacuum failed: {e}");
                }
            }
            Ok(Err(e)) => log::warn!("pruning failed: {e}"),
            _ => {}
        }
    }

    fn commit(&mut self, batch: Vec<Job>) {
        let now = self.clock.now();
        let mut results: Vec<Result<Applied>> = Vec::with_capacity(batch.len());
        let Writer {
            conn,
            opts,
            servers,
            unpruned,
            ..
        } = self;
        let mut state = Batch {
            servers,
            registered: HashMap::new(),
            touched: HashSet::new(),
            forgotten: Vec::new(),
            now,
        };
        let outcome = (|| -> Result<()> {
            let mut tx = conn.transaction()?;
            for job in &batch {
                let sp = tx.savepoint()?;
                let before = state.registered.len();
                match apply(&sp, &job.op, &mut state, opts) {
                    Ok(a) => {
                        sp.commit()?;
                        results.push(Ok(a));
                    }
                    Err(e) => {
                        drop(sp);
                        if state.registered.len() > before {
                            if let ServerIdOf(Some(name)) = server_of(&job.op) {
                                state.registered.remove(name);
                            }
                        }
                        results.push(Err(e));
                    }
                }
            }
            let step = (opts.history_limit / 10).max(10);
            for id in &state.touched {
                let n = unpruned.entry(*id).or_insert(0);
                *n += 1;
                if *n >= step {
                    *n = 0;
                    prune_history(&tx, *id, opts.history_limit)?;
                }
            }
            tx.commit()?;
            Ok(())
        })();
        let registered = state.registered;
        let forgotten = state.forgotten;
        match outcome {
            Ok(()) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                self.servers.extend(registered);
                for name in forgotten {
                    self.servers.remove(&name);
                }
                let raised: usize = results.iter().flatten().map(|a| a.alerts.len()).sum();
                self.alerts_raised
                    .fetch_add(raised as u64, Ordering::Relaxed);
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                log::error!("commit of {} operations failed: {e}", batch.len());
                for job in batch {
                    let _ = job
                        .reply
                        .send(Err(Error::Storage(format!("commit failed: {e}"))));
                }
            }
        }
    }
}

struct ServerIdOf<'a>(Option<&'a str>);

fn server_of(op: &Op) -> ServerIdOf<'_> {
    ServerIdOf(match op {
        Op::Ping(p, _) => Some(&p.server.name),
        Op::Status(r, _) => Some(&r.server.name),
        Op::Alerts(r, _) => Some(&r.server.name),
        _ => None,
    })
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
        Op::Prune => prune_all(conn, b.now, opts),
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
            conn.prepare_cached("DELETE FROM servers WHERE id = ?1")?
                .execute([id])?;
            log::info!("deleted server {name:?} with {} services", services.len());
            b.forgotten.push(name);
            Ok(Applied {
                server_id: Some(*id),
                removed_services: services,
                ..Applied::default()
            })
        }
        Op::DeleteService(id) => {
            let n = conn
                .prepare_cached("DELETE FROM services WHERE id = ?1")?
                .execute([id])?;
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
            if conn.prepare_cached(sql)?.execute(params![id, title])? == 0 {
                return Err(Error::NotFound(format!(
                    "no such {}",
                    if *service { "service" } else { "server" }
                )));
            }
            Ok(Applied::default())
        }
        Op::MarkOverdue(due) => mark_overdue(conn, due, b.now),
        Op::Delivered(ids) => {
            let mut st = conn.prepare_cached(
                "UPDATE alerts SET delivered = 1, attempts = attempts + 1 WHERE id = ?1",
            )?;
            for id in ids {
                st.execute([id])?;
            }
            Ok(Applied::default())
        }
        Op::Defer(id, at) => {
            conn.prepare_cached(
                "UPDATE alerts SET attempts = attempts + 1, next_attempt = ?2 WHERE id = ?1",
            )?
            .execute(params![id, at])?;
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
                alerts: vec![insert_alert(conn, &alert, b.now)?],
                ..Applied::default()
            })
        }
    }
}

/// Registers a new host (trust on first use) or checks its key, and records
/// where it called from. A wrong key is refused before anything is written.
fn authenticate(conn: &Connection, server: &ServerId, ip: &str, b: &mut Batch<'_>) -> Result<i64> {
    let known = match b
        .registered
        .get(&server.name)
        .or_else(|| b.servers.get(&server.name))
    {
        Some(k) => Some(k.clone()),
        None => conn
            .prepare_cached("SELECT id, key_salt, key_hash FROM servers WHERE name = ?1")?
            .query_row([&server.name], |r| {
                let salt: Vec<u8> = r.get(1)?;
                let hash: Vec<u8> = r.get(2)?;
                Ok((r.get::<_, i64>(0)?, salt, hash))
            })
            .optional()?
            .and_then(|(id, salt, hash)| {
                Some(KnownServer {
                    id,
                    salt: salt.try_into().ok()?,
                    hash: hash.try_into().ok()?,
                })
            }),
    };
    match known {
        Some(k) => {
            if !constant_time_eq(&key_hash(&k.salt, &server.key), &k.hash) {
                log::warn!(
                    "rejected a request for server {:?} from {ip}: invalid key",
                    server.name
                );
                return Err(Error::Forbidden("Invalid server key".into()));
            }
            conn.prepare_cached("UPDATE servers SET ip = ?2, last_seen = ?3 WHERE id = ?1")?
                .execute(params![k.id, ip, b.now])?;
            if !b.servers.contains_key(&server.name) && !b.registered.contains_key(&server.name) {
                b.registered.insert(server.name.clone(), k.clone());
            }
            Ok(k.id)
        }
        None => {
            let mut salt = [0u8; 16];
            getrandom::fill(&mut salt)
                .map_err(|e| Error::Storage(format!("no randomness for a key salt: {e}")))?;
            let hash = key_hash(&salt, &server.key);
            conn.prepare_cached(
                "INSERT INTO servers(name, title, key_salt, key_hash, ip, first_seen, last_seen)
                 VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?5)",
            )?
            .execute(params![server.name, &salt[..], &hash[..], ip, b.now])?;
            let id = conn.last_insert_rowid();
            log::info!("registered new server {:?} from {ip}", server.name);
            b.registered
                .insert(server.name.clone(), KnownServer { id, salt, hash });
            Ok(id)
        }
    }
}

struct ServiceRow {
    id: i64,
    state: Option<String>,
    overdue: bool,
}

fn find_or_create_service(
    conn: &Connection,
    server_id: i64,
    name: &str,
    period: Option<u32>,
) -> Result<ServiceRow> {
    let row = conn
        .prepare_cached(
            "SELECT id, state, overdue FROM services WHERE server_id = ?1 AND name = ?2",
        )?
        .query_row(params![server_id, name], |r| {
            Ok(ServiceRow {
                id: r.get(0)?,
                state: r.get(1)?,
                overdue: r.get(2)?,
            })
        })
        .optional()?;
    if let Some(row) = row {
        return Ok(row);
    }
    conn.prepare_cached(
        "INSERT INTO services(server_id, name, title, period) VALUES (?1, ?2, ?2, ?3)",
    )?
    .execute(params![server_id, name, period])?;
    Ok(ServiceRow {
        id: conn.last_insert_rowid(),
        state: None,
        overdue: false,
    })
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

pub(crate) fn insert_alert(conn: &Connection, a: &NewAlert<'_>, now: Millis) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO alerts(server_id, service_id, state_id, ctime, channel, event, message,
                            severity, state, info)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
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
    ])?;
    Ok(conn.last_insert_rowid())
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
    for s in &r.services {
        let period = s.period.unwrap_or(r.period);
        let row = find_or_create_service(conn, server_id, &s.name, Some(period))?;
        let state = s.state.as_str();
        conn.prepare_cached(
            "INSERT INTO states(service_id, rtime, state, info) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![row.id, b.now, state, s.info])?;
        let state_id = conn.last_insert_rowid();
        conn.prepare_cached(
            "UPDATE services SET period = ?2, state = ?3, info = ?4, rtime = ?5, state_id = ?6,
                                 overdue = 0 WHERE id = ?1",
        )?
        .execute(params![row.id, period, state, s.info, b.now, state_id])?;
        let changed = match row.state.as_deref() {
            None => s.state != State::Ok,
            Some(prev) => prev != state,
        };
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
        if changed {
            let message = format!(
                "State changed: \"{}\" -> \"{state}\"",
                row.state.as_deref().unwrap_or("(?)")
            );
            let alert = NewAlert {
                channel: "service:state",
                event: state,
                message: &message,
                ..base
            };
            applied.alerts.push(insert_alert(conn, &alert, b.now)?);
        }
        if row.overdue {
            let alert = NewAlert {
                channel: "plugin",
                event: "online",
                message: "Monitoring plugin back online",
                severity: State::Ok,
                ..base
            };
            applied.alerts.push(insert_alert(conn, &alert, b.now)?);
        }
        applied.deadlines.push(DeadlineChange {
            service_id: row.id,
            rtime: b.now,
            due: Some(b.now + i64::from(period) * 1000),
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
                let row = find_or_create_service(conn, server_id, name, None)?;
                let current: Option<(String, String)> = conn
                    .prepare_cached(
                        "SELECT state, info FROM services WHERE id = ?1 AND state IS NOT NULL",
                    )?
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
        applied.alerts.push(insert_alert(conn, &alert, b.now)?);
    }
    Ok(applied)
}

fn mark_overdue(conn: &Connection, due: &[(i64, Millis)], now: Millis) -> Result<Applied> {
    let mut applied = Applied::default();
    for &(service_id, rtime) in due {
        let changed = conn
            .prepare_cached(
                "UPDATE services SET overdue = 1
                 WHERE id = ?1 AND rtime = ?2 AND overdue = 0 AND period IS NOT NULL",
            )?
            .execute(params![service_id, rtime])?;
        if changed == 0 {
            // Reported again, deleted, or already flagged: nothing is overdue.
            continue;
        }
        let (server_id, state, info, state_id): (i64, Option<String>, Option<String>, Option<i64>) =
            conn.prepare_cached(
                "SELECT server_id, state, info, state_id FROM services WHERE id = ?1",
            )?
            .query_row([service_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
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
        applied.alerts.push(insert_alert(conn, &alert, now)?);
    }
    Ok(applied)
}

fn prune_history(conn: &Connection, service_id: i64, limit: u32) -> Result<u64> {
    let n = conn
        .prepare_cached(
            "DELETE FROM states WHERE service_id = ?1 AND id <= (
                 SELECT id FROM states WHERE service_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        )?
        .execute(params![service_id, limit])?;
    Ok(n as u64)
}

fn prune_all(conn: &Connection, now: Millis, opts: &StoreOptions) -> Result<Applied> {
    let mut pruned = 0;
    let ids: Vec<i64> = conn
        .prepare_cached("SELECT id FROM services")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in ids {
        pruned += prune_history(conn, id, opts.history_limit)?;
    }
    let cutoff = now - i64::from(opts.retention_days) * 86_400_000;
    // Undelivered alerts stay until delivered: the outbox must not lose them.
    pruned += conn
        .prepare_cached("DELETE FROM alerts WHERE ctime < ?1 AND delivered = 1")?
        .execute([cutoff])? as u64;
    Ok(Applied {
        pruned,
        ..Applied::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn key_hash_depends_on_salt() {
        assert_ne!(key_hash(&[0; 16], "k"), key_hash(&[1; 16], "k"));
        assert_eq!(key_hash(&[0; 16], "k"), key_hash(&[0; 16], "k"));
    }
}
