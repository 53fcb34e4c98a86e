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
//!
//! Where the chain stops is either the end of what was written (a crash
//! leaves a torn last record, or none) or damage: a record that was on disk
//! and no longer reads back. To tell them apart, each record also carries
//! the last sequence number whose `fdatasync` had returned when it was
//! written. A valid record after the break that says the record at the
//! break was synced proves damage, and the store refuses to start rather
//! than drop acknowledged reports in silence. The later records alone
//! would not prove it: a power cut may keep a later unsynced record and
//! lose an earlier one (pages reach the disk in any order), and no report
//! of either was acknowledged. With `durability = process` the log is not
//! synced, so that proof is never there and recovery stops at the break.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, ToSql};

use crate::error::{Error, Result};

mod tx;
pub(super) use tx::Tx;

/// Records of the first format, without the synced mark: still read, so
/// that a log written before an upgrade runs again after it.
const MAGIC_V1: u32 = 0x4f56_5244;
/// magic, payload length, sequence number, database id, checksum.
const HEADER_V1: usize = 4 + 4 + 8 + 16 + 8;
const MAGIC: u32 = 0x4f56_5245;
/// magic, payload length, sequence number, last synced sequence number,
/// database id, checksum.
const HEADER: usize = 4 + 4 + 8 + 8 + 16 + 8;
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
    /// What the fsync thread knows: the last record written, and the last
    /// one on disk.
    marks: Arc<Marks>,
}

/// Sequence numbers shared with the fsync thread.
#[derive(Debug, Default)]
struct Marks {
    written: AtomicU64,
    synced: AtomicU64,
}

/// The fsync thread's handle on the log.
pub(super) struct SyncHandle {
    file: File,
    marks: Arc<Marks>,
}

impl SyncHandle {
    /// Syncs the log; every record written before the call is then on disk,
    /// which the records written next say.
    pub(super) fn sync_data(&self) -> io::Result<()> {
        let written = self.marks.written.load(Ordering::Acquire);
        self.file.sync_data()?;
        self.marks.synced.fetch_max(written, Ordering::AcqRel);
        Ok(())
    }
}

impl RedoLog {
    /// Opens (or creates) the log and reads back every valid record of this
    /// database, in order. The next record will follow `last_seq`, the
    /// greater of the last one read and `committed` (what SQLite holds).
    ///
    /// # Errors
    /// [`Error::Storage`] when the file cannot be read or locked, and when
    /// it is damaged (see the module's documentation): the message says
    /// what the operator can do.
    pub(super) fn open(
        path: &Path,
        db_id: [u8; 16],
        lap: u64,
        committed: u64,
    ) -> Result<(RedoLog, Vec<Record>)> {
        let cannot = |e: io::Error| Error::Storage(format!("cannot read {}: {e}", path.display()));
        let created = !path.exists();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(cannot)?;
        // A new file's name must be on disk before anything in it counts.
        if created {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir).and_then(|d| d.sync_all()).map_err(cannot)?;
            }
        }
        // Two servers on one database would write over each other's log.
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                cannot(if e == rustix::io::Errno::WOULDBLOCK {
                    io::Error::other(
                        "it is in use by another process \
                         (is another overc-server running on this database?)",
                    )
                } else {
                    io::Error::from(e)
                })
            },
        )?;
        let data = std::fs::read(path).map_err(cannot)?;
        let records = scan(&data, &db_id, committed).map_err(|d| d.error(path, committed))?;
        let seq = records.last().map_or(0, |r| r.seq).max(committed);
        let log = RedoLog {
            file,
            len: data.len() as u64,
            off: 0,
            lap: lap.max(HEADER as u64),
            seq,
            db_id,
            rec: Vec::new(),
            // What was read back is run again and synced before the log is
            // written over.
            marks: Arc::new(Marks {
                written: AtomicU64::new(seq),
                synced: AtomicU64::new(seq),
            }),
        };
        Ok((log, records))
    }

    /// A handle for the fsync thread.
    pub(super) fn try_clone_file(&self) -> io::Result<SyncHandle> {
        Ok(SyncHandle {
            file: self.file.try_clone()?,
            marks: self.marks.clone(),
        })
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
        let synced = self.marks.synced.load(Ordering::Acquire);
        let rec = &mut self.rec;
        rec.clear();
        rec.extend_from_slice(&MAGIC.to_le_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&seq.to_le_bytes());
        rec.extend_from_slice(&synced.to_le_bytes());
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
        self.marks.written.store(seq, Ordering::Release);
        Ok(seq)
    }
}

/// How many groups of writes the redo log at `path`, read as `data`,
/// holds after `committed` (the last group SQLite holds): writes a server
/// acknowledged that the database file does not hold yet, which only a
/// server's start runs again. Reads only.
///
/// # Errors
/// [`Error::Storage`] when the log is damaged (as at a server's start).
pub(in crate::store::sqlite) fn unapplied(
    data: &[u8],
    db_id: &[u8; 16],
    committed: u64,
    path: &Path,
) -> Result<usize> {
    let records = scan(data, db_id, committed).map_err(|d| d.error(path, committed))?;
    Ok(records.iter().filter(|r| r.seq > committed).count())
}

/// A valid record of this database at some offset.
struct Found<'a> {
    seq: u64,
    /// The last sequence number on disk when it was written (0: unknown).
    synced: u64,
    payload: &'a [u8],
    end: usize,
}

/// The record of `db_id` at `off`, if one is there intact.
fn record_at<'a>(data: &'a [u8], off: usize, db_id: &[u8; 16]) -> Option<Found<'a>> {
    let u32_at = |i: usize| -> Option<u32> {
        let b = data.get(off.checked_add(i)?..off.checked_add(i + 4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let header = match u32_at(0)? {
        MAGIC => HEADER,
        MAGIC_V1 => HEADER_V1,
        _ => return None,
    };
    let head = data.get(off..off.checked_add(header)?)?;
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&head[i..i + 8]);
        u64::from_le_bytes(a)
    };
    let len = u32_at(4)? as usize;
    let seq = u64_at(8);
    let (synced, id_at) = if header == HEADER {
        (u64_at(16), 24)
    } else {
        (0, 16)
    };
    let start = off + header;
    let end = start.checked_add(len)?;
    let payload = data.get(start..end)?;
    let sum = u64_at(header - 8);
    if head[id_at..id_at + 16] != db_id[..] || checksum(&[&head[4..header - 8], payload]) != sum {
        return None;
    }
    Some(Found {
        seq,
        synced,
        payload,
        end,
    })
}

/// Damage found in a log: valid records follow a record that does not
/// read back, and they say it had been synced.
#[derive(Debug, PartialEq, Eq)]
struct Damage {
    /// Where the record that does not read back starts.
    at: usize,
    /// The group that should be there.
    group: u64,
    /// Groups the chain holds before it (to run again).
    before: usize,
    /// Valid groups found after it, and the last of them.
    after: usize,
    last: u64,
}

impl Damage {
    fn error(&self, path: &Path, committed: u64) -> Error {
        let p = path.display();
        Error::Storage(format!(
            "the redo log {p} is damaged: the record at byte {at} (write group {group}) does not \
             read back, yet {after} later groups up to {last} follow it that were written after \
             it was on disk. A crash leaves at most a torn end, never this: the file was changed \
             after it was written (disk or filesystem error, or by hand). The reports of those \
             groups were acknowledged to their hosts, so the server does not start without you. \
             Either restore the database and its redo log from a backup; or keep the {before} \
             groups before the damage and lose the acknowledged reports from group {group} on: \
             copy {p} aside, then `truncate -s {at} {p}` and start again; or move {p} away to \
             start from what the database holds (up to group {committed}), losing every group \
             the log holds after it",
            at = self.at,
            group = self.group,
            after = self.after,
            last = self.last,
            before = self.before,
        ))
    }
}

/// The valid chain of records of `db_id` from the start of `data`; an error
/// when it ends at damage rather than at the end of what was written.
/// `committed` is the last group SQLite holds.
fn scan(data: &[u8], db_id: &[u8; 16], committed: u64) -> std::result::Result<Vec<Record>, Damage> {
    let mut out: Vec<Record> = Vec::new();
    let mut off = 0usize;
    while let Some(r) = record_at(data, off, db_id) {
        if out
            .last()
            .is_some_and(|last| last.seq.checked_add(1) != Some(r.seq))
        {
            break;
        }
        out.push(Record {
            seq: r.seq,
            payload: r.payload.to_vec(),
        });
        off = r.end;
    }
    // The group that should be at `off`: the next of the chain, or the
    // first after what SQLite holds (a lap starts there).
    let held = out.last().map_or(committed, |r| r.seq).max(committed);
    let mut after = 0;
    let mut last = 0;
    let magic = MAGIC.to_le_bytes();
    let mut at = off + 1;
    while let Some(found) = data
        .get(at..)
        .and_then(|rest| rest.windows(4).position(|w| w == magic))
    {
        at += found;
        match record_at(data, at, db_id) {
            // Records of an earlier lap are older and say so.
            Some(r) if r.synced > held && r.seq > held => {
                after += 1;
                last = last.max(r.seq);
                at = r.end;
            }
            _ => at += 1,
        }
    }
    if after > 0 {
        return Err(Damage {
            at: off,
            group: held + 1,
            before: out.iter().filter(|r| r.seq > committed).count(),
            after,
            last,
        });
    }
    Ok(out)
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

    /// Five records, each synced before the next is written (as the fsync
    /// thread does when every group waits for its answer).
    fn synced_log(path: &Path, sync: bool) -> Vec<usize> {
        let (mut log, _) = RedoLog::open(path, ID, 1 << 20, 0).unwrap();
        let handle = log.try_clone_file().unwrap();
        let mut starts = Vec::new();
        let mut off = 0;
        for i in 0..5 {
            starts.push(off);
            log.append(&[i as u8; 20]).unwrap();
            off += HEADER + 20;
            if sync {
                handle.sync_data().unwrap();
            }
        }
        starts
    }

    #[test]
    fn a_damaged_record_followed_by_later_synced_ones_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let starts = synced_log(&path, true);
        let mut data = std::fs::read(&path).unwrap();
        data[starts[2] + HEADER + 3] ^= 0x10;
        std::fs::write(&path, &data).unwrap();
        let Err(Error::Storage(e)) = RedoLog::open(&path, ID, 1 << 20, 0) else {
            panic!("a damaged log was read as a torn one");
        };
        assert!(e.contains("is damaged"), "{e}");
        assert!(e.contains("write group 3"), "{e}");
        assert!(e.contains("2 later groups up to 5"), "{e}");
        let cut = format!("truncate -s {} {}", starts[2], path.display());
        assert!(e.contains(&cut), "{e}");
        // Doing what it says keeps the groups before the damage.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(starts[2] as u64)
            .unwrap();
        let (log, back) = RedoLog::open(&path, ID, 1 << 20, 0).unwrap();
        assert_eq!(back.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(log.seq(), 2);
    }

    #[test]
    fn a_hole_before_records_never_synced_is_the_end_of_the_log() {
        // A power cut may keep a later unsynced record and lose an earlier
        // one: none of them was acknowledged, so that is no damage.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let starts = synced_log(&path, false);
        let mut data = std::fs::read(&path).unwrap();
        data[starts[2]..starts[3]].fill(0);
        std::fs::write(&path, &data).unwrap();
        let (_, back) = RedoLog::open(&path, ID, 1 << 20, 0).unwrap();
        assert_eq!(back.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn records_of_the_first_format_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut data = Vec::new();
        for seq in 1..=2u64 {
            let payload = [seq as u8; 9];
            let mut head = Vec::new();
            head.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            head.extend_from_slice(&seq.to_le_bytes());
            head.extend_from_slice(&ID);
            let sum = checksum(&[&head, &payload]);
            data.extend_from_slice(&MAGIC_V1.to_le_bytes());
            data.extend_from_slice(&head);
            data.extend_from_slice(&sum.to_le_bytes());
            data.extend_from_slice(&payload);
        }
        assert_eq!(data.len(), 2 * (HEADER_V1 + 9));
        std::fs::write(&path, &data).unwrap();
        let (log, back) = RedoLog::open(&path, ID, 1 << 20, 0).unwrap();
        assert_eq!(back.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(back[1].payload, [2u8; 9]);
        assert_eq!(log.seq(), 2);
    }
}
