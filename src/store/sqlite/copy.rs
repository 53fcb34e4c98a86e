//! An SQLite database as the source or the target of a copy
//! (`crate::store::copy`).
//!
//! The source is opened read-only under a shared lock on its file: a
//! running server (which holds the file's lock) is refused, and no server
//! starts on it while the copy reads. Its redo log must hold no writes
//! that the file does not (a server that did not stop cleanly): only a
//! server's start runs them again, and the copy never writes to its source.
//!
//! The target is locked as a server locks it, created or migrated by the
//! schema code a server's start runs, and written in one transaction,
//! committed with `synchronous=FULL`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};

use super::lock::DbLock;
use super::{BUSY_TIMEOUT, redo, schema};
use crate::config::Durability;
use crate::error::{Error, Result};
use crate::store::copy::{self, Rows, Source, Table, Target, Value};

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn value(v: ValueRef<'_>) -> std::result::Result<Value, String> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Text(t) => Value::Text(
            String::from_utf8(t.to_vec()).map_err(|_| "text that is not UTF-8".to_owned())?,
        ),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        ValueRef::Real(r) => return Err(format!("a real number ({r}) where overc writes none")),
    })
}

fn columns_of(conn: &Connection, table: &str) -> Result<Option<HashSet<String>>> {
    let mut st = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let names = st
        .query_map([table], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<HashSet<String>>>()?;
    Ok((!names.is_empty()).then_some(names))
}

/// The redo log beside the database at `path` (beside the file a symlink
/// points to, as the server puts it).
fn redo_path(path: &Path) -> PathBuf {
    let mut log = std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .into_os_string();
    log.push("-redo");
    PathBuf::from(log)
}

/// How many groups of acknowledged writes the redo log of `conn` holds
/// that the database file does not. The log stays open, shared-locked,
/// in the returned file: a server holds it locked while it runs.
fn unapplied_writes(conn: &Connection, path: &Path) -> Result<(usize, Option<std::fs::File>)> {
    let log = redo_path(path);
    let cannot = |e: std::io::Error| Error::Storage(format!("cannot read {}: {e}", log.display()));
    let file = match std::fs::File::open(&log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, None)),
        Err(e) => return Err(cannot(e)),
    };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            return Err(Error::Storage(format!(
                "{} is in use: is an overc-server running on {}? Stop it first",
                log.display(),
                path.display()
            )));
        }
        Err(e) => return Err(cannot(e.into())),
    }
    let data = std::fs::read(&log).map_err(cannot)?;
    let (db_id, committed) = schema::redo_mark(conn)?;
    let n = redo::unapplied(&data, &db_id, committed, &log)?;
    Ok((n, Some(file)))
}

/// An SQLite database read for a copy.
pub(in crate::store) struct SqliteSource {
    // Dropped in this order: SQLite's connection before the lock's
    // descriptor (see `lock.rs`).
    conn: Connection,
    _redo: Option<std::fs::File>,
    _lock: DbLock,
    path: PathBuf,
}

impl SqliteSource {
    /// Opens the database at `path` read-only for a copy.
    ///
    /// # Errors
    /// [`Error::Storage`] when there is no such file, a server holds it,
    /// it is no overc database, its schema is not this build's, or its
    /// redo log holds writes it does not.
    pub(in crate::store) fn open(path: &Path) -> Result<SqliteSource> {
        if !path.is_file() {
            return Err(Error::Storage(format!(
                "there is no database at {} to copy from",
                path.display()
            )));
        }
        let lock = DbLock::share(path)?;
        let name = format!("sqlite:{}", path.display());
        let unreadable = |e: Error| {
            Error::Storage(format!(
                "cannot read {name} as an overc database: {}",
                e.to_string().trim_start_matches("storage: ")
            ))
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| unreadable(e.into()))?;
        schema::prepare_reader(&conn, BUSY_TIMEOUT).map_err(unreadable)?;
        let version = schema::version(&conn).map_err(unreadable)?;
        if version == 0 {
            return Err(Error::Storage(format!(
                "{name} is not an overc database (schema version 0)"
            )));
        }
        if version != schema::VERSION {
            return Err(copy::wrong_version(&name, version, schema::VERSION));
        }
        let (n, redo) = unapplied_writes(&conn, path)?;
        if n > 0 {
            return Err(Error::Storage(format!(
                "the redo log {} holds {n} groups of acknowledged writes that {name} does not \
                 (its server did not stop cleanly); the copy never changes its source: start \
                 overc-server on it once (it runs them at start), stop it, then copy",
                redo_path(path).display()
            )));
        }
        Ok(SqliteSource {
            conn,
            _redo: redo,
            _lock: lock,
            path: path.to_path_buf(),
        })
    }
}

impl Source for SqliteSource {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn columns(&mut self, table: &str) -> Result<Option<HashSet<String>>> {
        columns_of(&self.conn, table)
    }

    fn begin(&mut self) -> Result<()> {
        // Nobody writes (the shared lock keeps servers out): the read
        // transaction only spares each page a lock of its own.
        Ok(self.conn.execute_batch("BEGIN")?)
    }

    fn count(&mut self, table: &str) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn page(
        &mut self,
        table: &Table,
        select: &[String],
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Rows> {
        let sql = copy::page_sql(table, select, after.is_some(), limit, |i| format!("?{i}"));
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st.query(rusqlite::params_from_iter(after.unwrap_or(&[])))?;
        let mut out = Vec::with_capacity(limit);
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(select.len());
            for (i, c) in table.columns.iter().enumerate() {
                row.push(
                    value(r.get_ref(i)?)
                        .map_err(|why| Error::Storage(format!("column {}: {why}", c.name)))?,
                );
            }
            out.push(row);
        }
        Ok(out)
    }
}

/// An SQLite database written by a copy.
pub(in crate::store) struct SqliteTarget {
    conn: Connection,
    _lock: DbLock,
    path: PathBuf,
}

impl SqliteTarget {
    /// Opens (creating) the database at `path` to copy into, as a server
    /// opens it: locked, migrated to this build's schema.
    ///
    /// # Errors
    /// [`Error::Storage`] when a server holds it, it holds data (an
    /// overc database with rows, or any other SQLite database with
    /// tables), its schema is newer than this build's, or it cannot be
    /// created.
    pub(in crate::store) fn open(path: &Path) -> Result<SqliteTarget> {
        let name = format!("sqlite:{}", path.display());
        let existed = path.exists();
        let lock = DbLock::take(path)?;
        let unusable = |e: Error| {
            Error::Storage(format!(
                "cannot use {name} as the target: {}",
                e.to_string().trim_start_matches("storage: ")
            ))
        };
        let mut conn = Connection::open(path).map_err(|e| unusable(e.into()))?;
        if existed {
            refuse_data(&conn, path, &name).map_err(|e| match e {
                e @ Error::Storage(_) => e,
                e => unusable(e),
            })?;
        }
        schema::configure(&mut conn, Durability::Disk, BUSY_TIMEOUT).map_err(unusable)?;
        schema::migrate(&mut conn).map_err(unusable)?;
        // The one commit of the copy is on disk when it returns.
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(SqliteTarget {
            conn,
            _lock: lock,
            path: path.to_path_buf(),
        })
    }
}

/// Refuses an existing file that holds data, before anything is written
/// to it: rows in an overc database (or in its redo log), tables in any
/// other.
fn refuse_data(conn: &Connection, path: &Path, name: &str) -> Result<()> {
    let version = schema::version(conn)?;
    if version == 0 {
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if tables > 0 {
            return Err(Error::Storage(format!(
                "the target {name} is an SQLite database but not overc's (it has tables and \
                 schema version 0); copy only into a new or empty database"
            )));
        }
        return Ok(());
    }
    for table in copy::DATA_TABLES {
        if columns_of(conn, table)?.is_none() {
            continue;
        }
        let rows: bool =
            conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), [], |r| {
                r.get(0)
            })?;
        if rows {
            return Err(copy::not_empty(name, table));
        }
    }
    if version >= schema::REDO_SINCE && unapplied_writes(conn, path)?.0 > 0 {
        return Err(Error::Storage(format!(
            "the target {name} already holds data (writes in its redo log {}); copy only into \
             a new or empty database",
            redo_path(path).display()
        )));
    }
    Ok(())
}

impl Target for SqliteTarget {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn columns(&mut self, table: &str) -> Result<Option<HashSet<String>>> {
        columns_of(&self.conn, table)
    }

    fn begin(&mut self) -> Result<()> {
        Ok(self.conn.execute_batch("BEGIN IMMEDIATE")?)
    }

    fn write(&mut self, table: &Table, columns: &[usize], rows: &Rows) -> Result<()> {
        let names: Vec<&str> = columns.iter().map(|&i| table.columns[i].name).collect();
        let params: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {}({}) VALUES ({})",
            table.name,
            names.join(", "),
            params.join(", ")
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        for row in rows {
            st.execute(rusqlite::params_from_iter(columns.iter().map(|&i| &row[i])))?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        // SQLite numbers new rows after the largest id: no sequence to move.
        Ok(self.conn.execute_batch("COMMIT")?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::protocol::{StatusReport, parse_object};
    use crate::store::sqlite::durability::Tuning;
    use crate::store::{Storage, Store, StoreOptions};

    fn store(path: &Path, commit_every: Duration) -> Store {
        let tuning = Tuning {
            lap: 32 << 20,
            commit_every,
        };
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        Store::open_tuned(path, &StoreOptions::default(), clock, tuning).unwrap()
    }

    fn report(store: &Store, server: &str) {
        let body = format!(
            r#"{{"server": {{"name": "{server}", "key": "k"}}, "period": 60,
                "services": [{{"name": "s", "state": "OK"}}]}}"#
        );
        let r = StatusReport::from_json(&parse_object(body.as_bytes()).unwrap()).unwrap();
        store.report(r, "10.0.0.1").unwrap();
    }

    fn user_version(path: &Path) -> i64 {
        let conn = Connection::open(path).unwrap();
        schema::version(&conn).unwrap()
    }

    #[test]
    fn a_source_at_another_schema_version_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("overc.db");
        let s = store(&db, Duration::from_millis(1));
        report(&s, "h");
        s.close();
        drop(s);
        for (version, says) in [
            (schema::VERSION - 1, "older"),
            (schema::VERSION + 1, "newer"),
        ] {
            Connection::open(&db)
                .unwrap()
                .pragma_update(None, "user_version", version)
                .unwrap();
            let e = SqliteSource::open(&db).err().unwrap().to_string();
            assert!(e.contains(says), "{e}");
            assert!(e.contains(&format!("schema version {version}")), "{e}");
            assert_eq!(user_version(&db), version, "the source is never migrated");
        }
        let e = SqliteSource::open(&dir.path().join("none.db"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("there is no database at"), "{e}");
    }

    #[test]
    fn a_source_whose_redo_log_holds_unapplied_writes_is_refused_until_a_server_ran_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("overc.db");
        // SQLite commits only at reads or the end: the log alone holds these.
        let s = store(&db, Duration::from_secs(3600));
        for i in 0..3 {
            report(&s, &format!("h{i}"));
        }
        s.crash();
        drop(s);
        let e = SqliteSource::open(&db).err().unwrap().to_string();
        assert!(
            e.contains("groups of acknowledged writes that sqlite:"),
            "{e}"
        );
        assert!(e.contains("start overc-server on it once"), "{e}");
        // A target with such a log holds data too.
        let e = SqliteTarget::open(&db).err().unwrap().to_string();
        assert!(e.contains("already holds data"), "{e}");

        let s = store(&db, Duration::from_secs(3600));
        s.close();
        drop(s);
        let mut source = SqliteSource::open(&db).unwrap();
        source.begin().unwrap();
        assert_eq!(source.count("servers").unwrap(), 3);
    }

    #[test]
    fn a_target_that_is_another_sqlite_database_is_refused_and_an_empty_file_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE notes(x TEXT)")
            .unwrap();
        let e = SqliteTarget::open(&other).err().unwrap().to_string();
        assert!(e.contains("not overc's"), "{e}");
        let text = dir.path().join("text.db");
        std::fs::write(&text, "not a database, but not empty either").unwrap();
        let e = SqliteTarget::open(&text).err().unwrap().to_string();
        assert!(e.contains("cannot use sqlite:"), "{e}");
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, "").unwrap();
        SqliteTarget::open(&empty).unwrap();
        assert_eq!(user_version(&empty), schema::VERSION);
    }
}
