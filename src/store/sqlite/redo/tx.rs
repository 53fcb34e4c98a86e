//! The one handle through which the writer's operations touch the database.
//!
//! **Every write must be in the redo log.** A group is acknowledged once its
//! log record is on disk, long before SQLite commits it; a statement that
//! ran without being logged would be lost by a crash after its 200. So the
//! operations in `ops/` never see the `Connection`: they get a [`Tx`], whose
//! [`Tx::exec`] logs a statement and runs it, and whose [`Tx::read`] only
//! prepares statements that SQLite confirms are read-only. A write that
//! bypasses the log cannot be expressed with it.

use rusqlite::{CachedStatement, Connection, ToSql};

use super::Group;
use crate::error::{Error, Result};

/// The writer's connection inside its open transaction, and the group of
/// writes the redo log will hold for this batch.
pub(in crate::store::sqlite) struct Tx<'a> {
    conn: &'a Connection,
    group: &'a mut Group,
}

impl<'a> Tx<'a> {
    /// Operations of one batch run on `conn` and are logged in `group`.
    pub(in crate::store::sqlite) fn new(conn: &'a Connection, group: &'a mut Group) -> Tx<'a> {
        Tx { conn, group }
    }

    /// Runs one write statement and records it in the group; returns the
    /// number of rows changed.
    pub(in crate::store::sqlite) fn exec(
        &mut self,
        sql: &'static str,
        params: &[&dyn ToSql],
    ) -> Result<usize> {
        self.group.exec(self.conn, sql, params)
    }

    /// A prepared read: refused when the statement would write.
    pub(in crate::store::sqlite) fn read(&self, sql: &str) -> Result<CachedStatement<'a>> {
        let st = self.conn.prepare_cached(sql)?;
        if !st.readonly() {
            return Err(Error::Storage(format!(
                "a write outside the redo log was refused: {sql}"
            )));
        }
        Ok(st)
    }

    /// The id of the row the last `INSERT` through [`Tx::exec`] created.
    pub(in crate::store::sqlite) fn last_insert_rowid(&self) -> i64 {
        self.conn.last_insert_rowid()
    }

    /// Logs a statement without running it: a group that fails when it runs
    /// again (tests of recovery).
    #[cfg(test)]
    pub(in crate::store::sqlite) fn record_only(&mut self, sql: &'static str) -> Result<()> {
        self.group.record_only(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_cannot_be_prepared_as_a_read() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t(x)").unwrap();
        let mut group = Group::new(true);
        let mut tx = Tx::new(&conn, &mut group);
        let err = tx.read("INSERT INTO t VALUES (1)").err().unwrap();
        assert!(err.to_string().contains("outside the redo log"), "{err}");
        tx.exec("INSERT INTO t VALUES (1)", &[]).unwrap();
        assert!(!group.payload().is_empty(), "the write is in the group");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
