//! The redo log: where a file store's writes become durable.
//!
//! Committing SQLite once per group of requests wrote one 4 KiB WAL frame for
//! nearly every history row: 3,840 services reporting in groups of about ten
//! requests share no B-tree leaf. So the writer keeps one SQLite transaction
//! open for up to a second and appends each group's writes here instead, as
//! the SQL statements it ran and their parameters. A 200 waits for the
//! `fdatasync` of this file (a few KiB per group); SQLite commits with
//! `synchronous=NORMAL` and records, in the same transaction, the sequence
//! number of the last group it holds (table `redo`). After a crash, the groups
//! after that number are run again, in order, on what SQLite committed: the
//! same statements on the same rows give the same ids and the same results.
//!
//! The file is written from its start up to a lap size, then from its start
//! again, once SQLite's own WAL is synced (so nothing before is needed any
//! more). Each record carries its sequence number, the database's id and a
//! checksum; reading stops at the first record that is torn, of another
//! database, or does not follow its predecessor, which also ends a lap that
//! was written over.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, ToSql};

use crate::error::{Error, Result};

mod tx;
pub(super) use tx::Tx;

const MAGIC: u32 = 0x4f56_5244;
/// magic, payload length, sequence number, database id, checksum.
const HEADER: usize = 4 + 4 + 8 + 16 + 8;
/// The file grows by this much at a time, written with zeros, so that
/// appending a record rarely changes the file's size (which would make its
/// `fdatasync` write metadata too).
const GROW: u64 = 1 << 20;

const DEFINE: u8 = 1;
const EXEC: u8 = 2;

/// The writes of one group, encoded as they run.
#[derive(Default)]
pub(super) struct Group {
    /// Off for stores without a redo log (in memory): writes only run.
    on: bool,
    buf: Vec<u8>,
    /// Statements defined in this group, by address: a group is read back
    /// on its own, so it defines every statement it uses.
    stmts: Vec<(usize, usize)>,
}

impl Group {
    pub(super) fn new(on: bool) -> Group {
        Group {
            on,
            ..Group::default()
        }
    }

    /// Runs one write statement and records it.
    fn exec(
        &mut self,
        conn: &Connection,
        sql: &'static str,
        params: &[&dyn ToSql],
    ) -> Result<usize> {
        if self.on {
            self.record(sql, params)?;
        }
        Ok(conn.prepare_cached(sql)?.execute(params)?)
    }

    fn record(&mut self, sql: &'static str, params: &[&dyn ToSql]) -> Result<()> {
        let key = (sql.as_ptr() as usize, sql.len());
        let id = match self.stmts.iter().position(|k| *k == key) {
            Some(id) => id,
            None => {
                self.buf.push(DEFINE);
                put_bytes(&mut self.buf, sql.as_bytes());
                self.stmts.push(key);
                self.stmts.len() - 1
            }
        };
        self.buf.push(EXEC);
        self.buf.extend_from_slice(&(id as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&(params.len() as u32).to_le_bytes());
        for p in params {
            let v = p.to_sql()?;
            let v = match &v {
                rusqlite::types::ToSqlOutput::Borrowed(v) => *v,
                rusqlite::types::ToSqlOutput::Owned(v) => ValueRef::from(v),
                _ => {
                    return Err(Error::Storage(
                        "a parameter type the redo log cannot hold".into(),
                    ));
                }
            };
            match v {
                ValueRef::Null => self.buf.push(0),
                ValueRef::Integer(i) => {
                    self.buf.push(1);
                    self.buf.extend_from_slice(&i.to_le_bytes());
                }
                ValueRef::Real(f) => {
                    self.buf.push(2);
                    self.buf.extend_from_slice(&f.to_bits().to_le_bytes());
                }
                ValueRef::Text(t) => {
                    self.buf.push(3);
                    put_bytes(&mut self.buf, t);
                }
                ValueRef::Blob(b) => {
                    self.buf.push(4);
                    put_bytes(&mut self.buf, b);
                }
            }
        }
        Ok(())
    }

    /// Records a statement without running it: a group that fails when it
    /// runs again.
    #[cfg(test)]
    fn record_only(&mut self, sql: &'static str) -> Result<()> {
        self.record(sql, &[])
    }

    /// The encoded writes (empty when the group wrote nothing).
    pub(super) fn payload(&self) -> &[u8] {
        &self.buf
    }

    /// Starts the next group.
    pub(super) fn clear(&mut self) {
        self.buf.clear();
        self.stmts.clear();
    }
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
    buf.extend_from_slice(b);
}

/// Reads a payload back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::Storage("truncated redo log group".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// Runs the writes of a group again, in order.
pub(super) fn replay(conn: &Connection, payload: &[u8]) -> Result<()> {
    let mut r = Reader(payload);
    let mut stmts: Vec<&str> = Vec::new();
    while !r.0.is_empty() {
        match r.u8()? {
            DEFINE => {
                let sql = std::str::from_utf8(r.bytes()?)
                    .map_err(|_| Error::Storage("redo log statement is not UTF-8".into()))?;
                stmts.push(sql);
            }
            EXEC => {
                let id = r.u32()? as usize;
                let sql = stmts
                    .get(id)
                    .ok_or_else(|| Error::Storage("redo log refers to no statement".into()))?;
                let n = r.u32()? as usize;
                let mut values = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    values.push(match r.u8()? {
                        0 => Value::Null,
                        1 => Value::Integer(r.u64()? as i64),
                        2 => Value::Real(f64::from_bits(r.u64()?)),
                        3 => Value::Text(
                            String::from_utf8(r.bytes()?.to_vec())
                                .map_err(|_| Error::Storage("redo log text is not UTF-8".into()))?,
                        ),
                        4 => Value::Blob(r.bytes()?.to_vec()),
                        t => return Err(Error::Storage(format!("redo log value of type {t}"))),
                    });
                }
                conn.prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(values))?;
            }
            t => return Err(Error::Storage(format!("redo log entry of type {t}"))),
        }
    }
    Ok(())
}

/// FNV-1a over the record: torn writes and stale bytes, not adversaries.
fn checksum(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A group read back from the file.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Record {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// The redo log file of one database.
pub(super) struct RedoLog {
    file: File,
    /// Bytes the file holds.
    len: u64,
    /// Where the next record goes.
    off: u64,
    /// Past this offset the log starts over (once SQLite is synced).
    lap: u64,
    /// The last sequence number written (or committed to SQLite).
    seq: u64,
    db_id: [u8; 16],
    /// The record being written, kept for its capacity.
    rec: Vec<u8>,
}

impl RedoLog {
    /// Opens (or creates) the log and reads back every valid record of this
    /// database, in order. The next record will follow `last_seq`, the
    /// greater of the last one read and `committed` (what SQLite holds).
    pub(super) fn open(
        path: &Path,
        db_id: [u8; 16],
        lap: u64,
        committed: u64,
    ) -> io::Result<(RedoLog, Vec<Record>)> {
        let created = !path.exists();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // A new file's name must be on disk before anything in it counts.
        if created {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
        }
        // Two servers on one database would write over each other's log.
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                if e == rustix::io::Errno::WOULDBLOCK {
                    io::Error::other(
                        "it is in use by another process \
                         (is another overc-server running on this database?)",
                    )
                } else {
                    io::Error::from(e)
                }
            },
        )?;
        let data = std::fs::read(path)?;
        let records = scan(&data, &db_id);
        let seq = records.last().map_or(0, |r| r.seq).max(committed);
        let log = RedoLog {
            file,
            len: data.len() as u64,
            off: 0,
            lap: lap.max(HEADER as u64),
            seq,
            db_id,
            rec: Vec::new(),
        };
        Ok((log, records))
    }

    /// A handle for the fsync thread.
    pub(super) fn try_clone_file(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// Whether the current lap is full: the log should start over before
    /// the next group is applied. A lap is a soft limit (its last record
    /// may end past it), because a group's size is known only once it ran,
    /// and SQLite must hold everything before the log starts over.
    pub(super) fn lap_full(&self) -> bool {
        self.off >= self.lap
    }

    /// Starts writing from the beginning again. Only once SQLite holds (on
    /// disk) every group written so far.
    pub(super) fn restart(&mut self) {
        self.off = 0;
    }

    /// The sequence number of the last record written.
    pub(super) fn seq(&self) -> u64 {
        self.seq
    }

    /// Writes the next record (not synced) and returns its sequence number.
    pub(super) fn append(&mut self, payload: &[u8]) -> io::Result<u64> {
        let seq = self
            .seq
            .checked_add(1)
            .ok_or_else(|| io::Error::other("redo log sequence exhausted"))?;
        let len = u32::try_from(payload.len())
            .map_err(|_| io::Error::other("redo log group over 4 GiB"))?;
        let rec = &mut self.rec;
        rec.clear();
        rec.extend_from_slice(&MAGIC.to_le_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&seq.to_le_bytes());
        rec.extend_from_slice(&self.db_id);
        let sum = checksum(&[&rec[4..], payload]);
        rec.extend_from_slice(&sum.to_le_bytes());
        rec.extend_from_slice(payload);
        let end = self.off + rec.len() as u64;
        if end > self.len {
            let new_len = end.div_ceil(GROW) * GROW;
            let zeros = vec![0u8; (new_len - self.len) as usize];
            self.file.write_all_at(&zeros, self.len)?;
            self.len = new_len;
        }
        self.file.write_all_at(rec, self.off)?;
        // An exceptionally large group does not keep its buffer for good.
        if rec.capacity() > 4 << 20 {
            *rec = Vec::new();
        }
        self.off = end;
        self.seq = seq;
        Ok(seq)
    }
}

/// The valid chain of records of `db_id` from the start of `data`.
fn scan(data: &[u8], db_id: &[u8; 16]) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut off = 0usize;
    while let Some(head) = off.checked_add(HEADER).and_then(|end| data.get(off..end)) {
        let u32_at =
            |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        if u32_at(0) != MAGIC {
            break;
        }
        let len = u32_at(4) as usize;
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&head[8..16]);
        let seq = u64::from_le_bytes(seq);
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&head[32..40]);
        let start = off + HEADER;
        let Some(payload) = start.checked_add(len).and_then(|end| data.get(start..end)) else {
            break;
        };
        if head[16..32] != db_id[..]
            || checksum(&[&head[4..32], payload]) != u64::from_le_bytes(sum)
            || out
                .last()
                .is_some_and(|r| r.seq.checked_add(1) != Some(seq))
        {
            break;
        }
        out.push(Record {
            seq,
            payload: payload.to_vec(),
        });
        off += HEADER + len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 16] = [7; 16];

    fn group(sql: &'static str, n: i64) -> Vec<u8> {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v, w)")
            .unwrap();
        let mut g = Group::new(true);
        g.exec(&conn, sql, rusqlite::params![n, format!("v{n}")])
            .unwrap();
        g.payload().to_vec()
    }

    #[test]
    fn a_group_runs_again_with_the_same_values() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v, w)")
            .unwrap();
        let mut g = Group::new(true);
        let ins: &'static str = "INSERT INTO t(v, w) VALUES (?1, ?2)";
        g.exec(&conn, ins, rusqlite::params![1, "é"]).unwrap();
        g.exec(&conn, ins, rusqlite::params![2.5, &b"\x00\xff"[..]])
            .unwrap();
        g.exec(&conn, ins, rusqlite::params![None::<i64>, i64::MIN])
            .unwrap();
        g.exec(&conn, "DELETE FROM t WHERE id = ?1", rusqlite::params![1])
            .unwrap();
        let dump = |c: &Connection| -> Vec<(i64, Value, Value)> {
            c.prepare("SELECT id, v, w FROM t ORDER BY id")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        let other = Connection::open_in_memory().unwrap();
        other
            .execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v, w)")
            .unwrap();
        replay(&other, g.payload()).unwrap();
        assert_eq!(dump(&other), dump(&conn));
        assert_eq!(dump(&other).len(), 2);
        // Each statement is defined once per group.
        let defines = g.payload().iter().filter(|&&b| b == DEFINE).count();
        assert!(defines >= 2);
        g.clear();
        assert!(g.payload().is_empty());
    }

    #[test]
    fn a_garbled_group_is_an_error_not_a_panic() {
        let conn = Connection::open_in_memory().unwrap();
        let p = group("INSERT INTO t(v, w) VALUES (?1, ?2)", 1);
        for cut in 0..p.len() {
            let _ = replay(&conn, &p[..cut]);
        }
        assert!(replay(&conn, &[EXEC, 9, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(replay(&conn, &[42]).is_err());
    }

    #[test]
    fn records_read_back_stop_at_a_torn_or_foreign_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut log, old) = RedoLog::open(&path, ID, 1 << 20, 0).unwrap();
        assert!(old.is_empty());
        let payloads: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 10 + i]).collect();
        for p in &payloads {
            log.append(p).unwrap();
        }
        drop(log);
        let (log, back) = RedoLog::open(&path, ID, 1 << 20, 0).unwrap();
        assert_eq!(
            back.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(back[4].payload, payloads[4]);
        assert_eq!(log.seq(), 5);
        drop(log);
        // Another database's log is not ours.
        let (_, none) = RedoLog::open(&path, [8; 16], 1 << 20, 0).unwrap();
        assert!(none.is_empty());
        // A torn fourth record ends the chain there.
        let mut data = std::fs::read(&path).unwrap();
        let third_end: usize = (0..3).map(|i| HEADER + 10 + i).sum();
        data[third_end + HEADER + 2] ^= 1;
        std::fs::write(&path, &data).unwrap();
        let (log, back) = RedoLog::open(&path, ID, 1 << 20, 0).unwrap();
        assert_eq!(back.len(), 3);
        // What SQLite already holds decides where numbering goes on.
        assert_eq!(log.seq(), 3);
        drop(log);
        let (log, _) = RedoLog::open(&path, ID, 1 << 20, 9).unwrap();
        assert_eq!(log.seq(), 9);
    }

    #[test]
    fn a_log_in_use_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (first, _) = RedoLog::open(&path, ID, 1 << 20, 0).unwrap();
        let Err(e) = RedoLog::open(&path, ID, 1 << 20, 0) else {
            panic!("opened twice");
        };
        assert!(e.to_string().contains("another overc-server"), "{e}");
        drop(first);
        assert!(RedoLog::open(&path, ID, 1 << 20, 0).is_ok());
    }

    #[test]
    fn a_new_lap_ends_where_the_old_one_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let lap = 3 * (HEADER as u64 + 100);
        let (mut log, _) = RedoLog::open(&path, ID, lap, 0).unwrap();
        let p = vec![1u8; 100];
        for _ in 0..3 {
            assert!(!log.lap_full());
            log.append(&p).unwrap();
        }
        assert!(log.lap_full());
        log.restart();
        // Smaller records of the new lap leave the old lap's bytes after them.
        log.append(&[2u8; 50]).unwrap();
        log.append(&[3u8; 50]).unwrap();
        drop(log);
        let (log, back) = RedoLog::open(&path, ID, lap, 3).unwrap();
        assert_eq!(back.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(log.seq(), 5);
        drop(log);
        // A record larger than a lap is written anyway.
        let (mut log, _) = RedoLog::open(&path, ID, 64, 5).unwrap();
        assert!(!log.lap_full());
        log.append(&[4u8; 1000]).unwrap();
        assert!(log.lap_full());
        drop(log);
        let (_, back) = RedoLog::open(&path, ID, 64, 5).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].seq, 6);
    }
}
