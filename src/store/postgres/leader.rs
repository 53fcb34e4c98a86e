//! One leader among the servers sharing a database (SPEC §10): the server
//! holding a PostgreSQL advisory lock on a connection of its own runs
//! overdue detection, the notification policy and delivery. The lock goes
//! with the session, so when the leader dies or its connection does,
//! PostgreSQL frees it and another server takes it at its next try.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::Client;

use super::connect::connect_leader;
use super::schema::LEADER_LOCK;
use crate::clock::Clock;
use crate::config::PostgresUrl;
use crate::error::Result;

/// The thread that takes and keeps the leadership.
pub(super) struct Leadership {
    pub(super) is_leader: Arc<AtomicBool>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Leadership {
    /// Starts trying for the lock (at once, then every quarter of `timeout`).
    pub(super) fn start(
        url: PostgresUrl,
        node: String,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Leadership> {
        let is_leader = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel();
        let flag = is_leader.clone();
        let every = (timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(2));
        let (tried, first_try) = mpsc::sync_channel(1);
        let host = host_name();
        let thread = std::thread::Builder::new()
            .name("overc-pg-leader".into())
            .spawn(move || {
                let mut conn: Option<Client> = None;
                loop {
                    if let Err(e) = step(&mut conn, &url, (&node, &host), timeout, &*clock, &flag) {
                        if flag.swap(false, Ordering::SeqCst) {
                            log::warn!("this server ({node}) is no longer the leader: {e}");
                        } else {
                            log::debug!("leader election: {e}");
                        }
                        // Its session, and the lock with it, is gone or going.
                        conn = None;
                    }
                    let _ = tried.try_send(());
                    match stopped.recv_timeout(every) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => break,
                    }
                }
                flag.store(false, Ordering::SeqCst);
                // Dropping the connection ends the session: the lock is free.
                drop(conn);
            })?;
        // A server alone becomes the leader before it serves anything.
        let _ = first_try.recv_timeout(timeout);
        Ok(Leadership {
            is_leader,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Gives the leadership up (another server takes it at its next try).
    pub(super) fn stop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One try: the leader checks its connection; another server tries the lock.
fn step(
    conn: &mut Option<Client>,
    url: &PostgresUrl,
    (node, host): (&str, &str),
    timeout: Duration,
    clock: &dyn Clock,
    is_leader: &AtomicBool,
) -> Result<()> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        // The lock went with the session that held it: a new session must
        // take it again before this server leads.
        if is_leader.swap(false, Ordering::SeqCst) {
            log::warn!("this server ({node}) is no longer the leader: its connection closed");
        }
        *conn = Some(connect_leader(url, timeout)?);
    }
    let client = conn.as_mut().expect("connected");
    let now = clock.now();
    if is_leader.load(Ordering::SeqCst) {
        // The heartbeat: a broken connection shows here, and the row says
        // until when a leader ran.
        client.execute("UPDATE overc_leader SET seen = $1 WHERE id = 1", &[&now])?;
        return Ok(());
    }
    let got: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])?
        .get(0);
    if !got {
        return Ok(());
    }
    let mut tx = client.transaction()?;
    let seen: Option<i64> = tx
        .query_opt("SELECT seen FROM overc_leader WHERE id = 1", &[])?
        .map(|r| r.get(0));
    // No leader ran for a while (every server was down): as at a restart,
    // a deadline that passed meanwhile moves to now + period, so hosts get
    // one period to reconnect. A takeover within the timeout moves none.
    let gap = Duration::from_millis(now.saturating_sub(seen.unwrap_or(i64::MIN)).max(0) as u64);
    if gap > 2 * timeout {
        let moved = tx.execute(
            "UPDATE services SET due = $1 + period * 1000
             WHERE NOT overdue AND due IS NOT NULL AND due < $1",
            &[&now],
        )?;
        if moved > 0 {
            log::info!("{moved} deadlines that passed while no server led moved by their period");
        }
    }
    tx.execute(
        "INSERT INTO overc_leader(id, node, host, since, seen) VALUES (1, $1, $3, $2, $2)
         ON CONFLICT (id) DO UPDATE SET node = excluded.node, host = excluded.host,
             since = excluded.since, seen = excluded.seen",
        &[&node, &now, &host],
    )?;
    tx.commit()?;
    is_leader.store(true, Ordering::SeqCst);
    log::info!("this server ({node}) is now the leader: it runs overdue detection and delivery");
    Ok(())
}

/// This machine's name, shown beside the leader's listen address (which
/// servers on several hosts may share); empty when the system does not say.
fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
