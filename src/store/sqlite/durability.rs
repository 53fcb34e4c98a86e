//! Durability of the writer's groups: the redo log and the SQLite
//! transaction it stands for, the fsync thread that answers only once a
//! group is on disk, recovery at start, and what happens when a commit fails.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::redo::{self, RedoLog};
use super::schema;
use super::writer::{Applied, Caches, Writer};
use crate::error::{Error, Result};

pub(super) type Reply = (mpsc::SyncSender<Result<Applied>>, Result<Applied>);

/// Makes appended groups durable and only then answers them.
///
/// The writer appends each group to the redo log without syncing it and
/// hands the replies here; this thread fsyncs the log once for every batch
/// queued meanwhile and then replies. A 200 thus means "on disk", while the
/// writer executes the next batch as the disk is busy.
pub(super) fn sync_loop(
    file: redo::SyncHandle,
    failed: Arc<AtomicBool>,
    batches: mpsc::Receiver<Vec<Reply>>,
) {
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
pub(super) const MAX_UNCOMMITTED: usize = 8 << 20;

/// A file store's redo log, and the SQLite transaction it stands for.
pub(super) struct Redo {
    pub(super) log: RedoLog,
    /// The groups since SQLite last committed, to run again when a batch
    /// fails and the transaction is rolled back.
    pub(super) uncommitted: Vec<Vec<u8>>,
    pub(super) uncommitted_bytes: usize,
    /// When the open SQLite transaction began.
    pub(super) open_since: Option<Instant>,
    pub(super) commit_every: Duration,
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
        let (log, records) = RedoLog::open(path, db_id, tuning.lap, committed)?;
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

impl Writer {
    /// Commits the open SQLite transaction with the redo log's position.
    /// If the commit fails, the groups it held run again in a new
    /// transaction from memory (the next commit tries again); if that fails
    /// too, the writer stops. Returns whether SQLite now holds every group.
    pub(super) fn commit_sqlite(&mut self) -> bool {
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
    pub(super) fn fail(&mut self, why: &str) {
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
    pub(super) fn restart_log_if_full(&mut self) -> Result<()> {
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
    pub(super) fn roll_back(&mut self) -> Result<()> {
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
    pub(super) fn finish_group(&mut self) -> Result<()> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::protocol::parse_object;
    use crate::protocol::{AlertReport, StatusReport};
    use crate::store::Storage;
    use crate::store::Store;
    use crate::store::sqlite::StoreOptions;

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
        store.post_alerts(alerts, "10.0.0.2").unwrap();
        store
            .rename_server(db.server_id.unwrap(), "Database")
            .unwrap();
        store.delete_service(web.deadlines[1].service_id).unwrap();
        clock.advance(120_000);
        let pg = db.deadlines[0];
        store.mark_overdue(vec![(pg.service_id, pg.rtime)]).unwrap();
        store
            .system_alert(crate::rules::on_plugin_failure("log", "boom"))
            .unwrap();
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

    /// Where each record of the current format starts in a redo log file.
    fn record_starts(log: &Path) -> Vec<usize> {
        let data = std::fs::read(log).unwrap();
        let magic = 0x4f56_5245u32.to_le_bytes();
        (0..data.len().saturating_sub(4))
            .filter(|&i| data[i..i + 4] == magic)
            .collect()
    }

    /// Thirty reports acknowledged (each synced), then a crash before
    /// SQLite commits: the redo log alone holds them.
    fn crashed_with_reports(f: &Fixture) -> std::path::PathBuf {
        let store = f.open(32 << 20);
        for i in 0..30 {
            f.clock.advance(1000);
            report(&store, &format!("h{i}"), &[("svc", "OK")]);
        }
        store.crash();
        drop(store);
        f.dir.path().join("overc.db-redo")
    }

    #[test]
    fn a_damaged_redo_log_is_refused_and_its_message_says_what_to_do() {
        let f = Fixture::new();
        let log = crashed_with_reports(&f);
        let starts = record_starts(&log);
        assert!(starts.len() >= 30, "{} records", starts.len());
        let middle = starts[starts.len() / 2];
        let mut data = std::fs::read(&log).unwrap();
        data[middle + 60] ^= 0x01;
        std::fs::write(&log, &data).unwrap();
        let Err(Error::Storage(e)) = f.open_with(&StoreOptions::default(), 32 << 20) else {
            panic!("acknowledged reports after a damaged record were dropped in silence");
        };
        assert!(e.contains("is damaged"), "{e}");
        assert!(e.contains("restore the database and its redo log"), "{e}");
        // Following the advice keeps every report before the damage.
        let cut = format!("truncate -s {middle} {}", log.display());
        assert!(e.contains(&cut), "{e}");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(middle as u64)
            .unwrap();
        let store = f.open(32 << 20);
        let states = store.counts().unwrap().states;
        assert!(states > 0 && states < 30, "{states} states");
    }

    #[test]
    fn a_torn_tail_after_a_crash_recovers_every_record_before_it() {
        let f = Fixture::new();
        let log = crashed_with_reports(&f);
        let last = *record_starts(&log).last().unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(last as u64 + 30)
            .unwrap();
        let store = f.open(32 << 20);
        assert_eq!(store.counts().unwrap().states, 29);
    }
}
