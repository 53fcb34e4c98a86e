//! A PostgreSQL database as the source or the target of a copy
//! (`crate::store::copy`).
//!
//! The source is read in one `REPEATABLE READ READ ONLY` transaction: one
//! consistent snapshot, even while servers run on it (a warning says that
//! what they write afterwards is not copied). The target is created or
//! migrated as a server's start does, refused while a server runs on it
//! (one holds the leader lock), and written in one transaction holding the
//! migration lock, so that a server starting meanwhile waits for the
//! commit. Rows go in with `COPY … FROM STDIN (FORMAT binary)`, a page at a
//! time; then the due times (from the history) and the id sequences (past
//! the largest id copied) are set, and it commits.
//!
//! Values are bound by the column types the database reports, so a flag
//! may be `BOOLEAN` or an integer, and a count any integer width.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use postgres::Client;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

use super::ops::{text, untext};
use super::{connect, schema};
use crate::config::PostgresUrl;
use crate::error::{Error, Result};
use crate::store::copy::{self, Rows, Source, Table, Target, Value};

/// How long a copy waits for PostgreSQL to accept connections.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// A value as PostgreSQL takes it for a column of a given type.
#[derive(Debug)]
enum PgValue {
    Bool(Option<bool>),
    I16(Option<i16>),
    I32(Option<i32>),
    I64(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl PgValue {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            PgValue::Bool(v) => v,
            PgValue::I16(v) => v,
            PgValue::I32(v) => v,
            PgValue::I64(v) => v,
            PgValue::Text(v) => v,
            PgValue::Bytes(v) => v,
        }
    }
}

fn int(v: &Value) -> std::result::Result<Option<i64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Int(i) => Ok(Some(*i)),
        other => Err(format!("an integer expected, not {other:?}")),
    }
}

fn narrow<T: TryFrom<i64>>(v: &Value) -> std::result::Result<Option<T>, String> {
    int(v)?
        .map(|i| T::try_from(i).map_err(|_| format!("{i} is out of the column's range")))
        .transpose()
}

/// `v` for a column of type `ty`; free text (`escaped`) as stored text.
fn bind(v: &Value, ty: &Type, escaped: bool) -> std::result::Result<PgValue, String> {
    Ok(match *ty {
        Type::BOOL => PgValue::Bool(int(v)?.map(|i| i != 0)),
        Type::INT2 => PgValue::I16(narrow(v)?),
        Type::INT4 => PgValue::I32(narrow(v)?),
        Type::INT8 => PgValue::I64(int(v)?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => PgValue::Text(match v {
            Value::Null => None,
            Value::Text(s) if escaped => Some(text(s).into_owned()),
            Value::Text(s) => Some(s.clone()),
            other => return Err(format!("text expected, not {other:?}")),
        }),
        Type::BYTEA => PgValue::Bytes(match v {
            Value::Null => None,
            Value::Blob(b) => Some(b.clone()),
            other => return Err(format!("bytes expected, not {other:?}")),
        }),
        ref other => {
            return Err(format!(
                "a column of type {other}, which overc does not write"
            ));
        }
    })
}

/// Column `i` of `row` in the row model; free text (`escaped`) as given.
fn read(row: &postgres::Row, i: usize, escaped: bool) -> std::result::Result<Value, String> {
    let ty = row.columns()[i].type_();
    let failed = |e: postgres::Error| e.to_string();
    let int = |v: Option<i64>| v.map_or(Value::Null, Value::Int);
    Ok(match *ty {
        Type::BOOL => int(row
            .try_get::<_, Option<bool>>(i)
            .map_err(failed)?
            .map(i64::from)),
        Type::INT2 => int(row
            .try_get::<_, Option<i16>>(i)
            .map_err(failed)?
            .map(i64::from)),
        Type::INT4 => int(row
            .try_get::<_, Option<i32>>(i)
            .map_err(failed)?
            .map(i64::from)),
        Type::INT8 => int(row.try_get::<_, Option<i64>>(i).map_err(failed)?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            match row.try_get::<_, Option<String>>(i).map_err(failed)? {
                None => Value::Null,
                Some(s) if escaped => Value::Text(untext(s)),
                Some(s) => Value::Text(s),
            }
        }
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)
            .map_err(failed)?
            .map_or(Value::Null, Value::Blob),
        ref other => {
            return Err(format!(
                "a column of type {other}, which overc does not write"
            ));
        }
    })
}

fn columns_of(client: &mut Client, table: &str) -> Result<Option<HashSet<String>>> {
    let names: HashSet<String> = client
        .query(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1",
            &[&table],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok((!names.is_empty()).then_some(names))
}

fn has_table(client: &mut Client, table: &str) -> Result<bool> {
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])?
        .get(0))
}

/// Whether a server leads on this database (holds the leader lock): one
/// runs whenever any does, within `leader-timeout`.
fn server_running(client: &mut Client) -> Result<bool> {
    let free: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&schema::LEADER_LOCK])?
        .get(0);
    if free {
        client.execute("SELECT pg_advisory_unlock($1)", &[&schema::LEADER_LOCK])?;
    }
    Ok(!free)
}

/// A PostgreSQL database read for a copy.
pub(in crate::store) struct PgSource {
    client: Client,
    url: PostgresUrl,
}

impl PgSource {
    /// Connects to the database at `url` to copy from it.
    ///
    /// # Errors
    /// [`Error::Storage`] when PostgreSQL refuses the connection, or the
    /// database is no overc database of this build's schema version.
    pub(in crate::store) fn open(url: &PostgresUrl) -> Result<PgSource> {
        let mut client = connect::connect(url, CONNECT_WAIT)?;
        if !has_table(&mut client, "overc_schema")? {
            return Err(Error::Storage(format!(
                "{url} is not an overc database (it has no table overc_schema)"
            )));
        }
        let version: i32 = client
            .query_one("SELECT version FROM overc_schema WHERE id = 1", &[])?
            .get(0);
        if version != schema::VERSION {
            return Err(copy::wrong_version(
                &url.to_string(),
                i64::from(version),
                i64::from(schema::VERSION),
            ));
        }
        if server_running(&mut client)? {
            log::warn!(
                "overc servers are running on {url}: the copy reads one consistent snapshot, \
                 and what they write after it is not copied (stop them to move an installation)"
            );
        }
        Ok(PgSource {
            client,
            url: url.clone(),
        })
    }
}

impl Source for PgSource {
    fn describe(&self) -> String {
        self.url.to_string()
    }

    fn columns(&mut self, table: &str) -> Result<Option<HashSet<String>>> {
        columns_of(&mut self.client, table)
    }

    fn begin(&mut self) -> Result<()> {
        Ok(self
            .client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?)
    }

    fn count(&mut self, table: &str) -> Result<u64> {
        let n: i64 = self
            .client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])?
            .get(0);
        Ok(n as u64)
    }

    fn page(
        &mut self,
        table: &Table,
        select: &[String],
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Rows> {
        let sql = copy::page_sql(table, select, after.is_some(), limit, |i| format!("${i}"));
        let st = self.client.prepare(&sql)?;
        let params = after
            .unwrap_or(&[])
            .iter()
            .zip(st.params())
            .map(|(v, ty)| bind(v, ty, false))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::Storage)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(PgValue::as_sql).collect();
        let mut out = Vec::with_capacity(limit);
        for r in self.client.query(&st, &refs)? {
            let mut row = Vec::with_capacity(table.columns.len());
            for (i, c) in table.columns.iter().enumerate() {
                row.push(
                    read(&r, i, c.text)
                        .map_err(|why| Error::Storage(format!("column {}: {why}", c.name)))?,
                );
            }
            out.push(row);
        }
        Ok(out)
    }
}

/// A PostgreSQL database written by a copy.
pub(in crate::store) struct PgTarget {
    client: Client,
    url: PostgresUrl,
    /// The column types of each table, as written.
    types: HashMap<&'static str, Vec<Type>>,
}

impl PgTarget {
    /// Connects to the database at `url` to copy into it, and creates or
    /// migrates its schema as a server's start does.
    ///
    /// # Errors
    /// [`Error::Storage`] when PostgreSQL refuses the connection, the
    /// database holds data or a server runs on it, or its schema is newer
    /// than this build's.
    pub(in crate::store) fn open(url: &PostgresUrl) -> Result<PgTarget> {
        let mut client = connect::connect(url, CONNECT_WAIT)?;
        refuse_data(&mut client, url)?;
        if server_running(&mut client)? {
            return Err(Error::Storage(format!(
                "an overc server runs on the target {url} (it holds the leader lock); stop \
                 every server on it first"
            )));
        }
        schema::migrate(&mut client)?;
        Ok(PgTarget {
            client,
            url: url.clone(),
            types: HashMap::new(),
        })
    }
}

/// Refuses a database with rows in overc's tables, before anything is
/// written to it.
fn refuse_data(client: &mut Client, url: &PostgresUrl) -> Result<()> {
    if !has_table(client, "overc_schema")? {
        return Ok(());
    }
    for table in copy::DATA_TABLES {
        if !has_table(client, table)? {
            continue;
        }
        let rows: bool = client
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])?
            .get(0);
        if rows {
            return Err(copy::not_empty(&url.to_string(), table));
        }
    }
    Ok(())
}

impl Target for PgTarget {
    fn describe(&self) -> String {
        self.url.to_string()
    }

    fn columns(&mut self, table: &str) -> Result<Option<HashSet<String>>> {
        columns_of(&mut self.client, table)
    }

    fn begin(&mut self) -> Result<()> {
        // A server starting now waits at its migration for the commit.
        self.client.batch_execute("BEGIN")?;
        self.client.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&schema::MIGRATION_LOCK],
        )?;
        // Checked again under the lock: a server may have started since.
        refuse_data(&mut self.client, &self.url)
    }

    fn write(&mut self, table: &Table, columns: &[usize], rows: &Rows) -> Result<()> {
        let names: Vec<&str> = columns.iter().map(|&i| table.columns[i].name).collect();
        let names = names.join(", ");
        if !self.types.contains_key(table.name) {
            let st = self
                .client
                .prepare(&format!("SELECT {names} FROM {} LIMIT 0", table.name))?;
            let types = st.columns().iter().map(|c| c.type_().clone()).collect();
            self.types.insert(table.name, types);
        }
        let types = &self.types[table.name];
        let sink = self.client.copy_in(&format!(
            "COPY {}({names}) FROM STDIN (FORMAT binary)",
            table.name
        ))?;
        let mut writer = BinaryCopyInWriter::new(sink, types);
        for row in rows {
            let values = columns
                .iter()
                .zip(types)
                .map(|(&i, ty)| {
                    let c = &table.columns[i];
                    bind(&row[i], ty, c.text).map_err(|why| format!("column {}: {why}", c.name))
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(Error::Storage)?;
            let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(PgValue::as_sql).collect();
            writer.write(&refs)?;
        }
        writer.finish()?;
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        // The due times the leader reads (SPEC §10), as schema version 2
        // computed them: the last report + the period.
        self.client.batch_execute(
            "UPDATE services s SET due = st.rtime + s.period * 1000
                 FROM (SELECT service_id, max(rtime) AS rtime FROM states GROUP BY service_id) st
                 WHERE st.service_id = s.id AND s.period IS NOT NULL",
        )?;
        // New rows get ids after the copied ones.
        for table in copy::TABLES {
            if table.columns.iter().any(|c| c.name == "id")
                && has_table(&mut self.client, table.name)?
            {
                self.client.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence($1, 'id'), max(id)) FROM {}",
                        table.name
                    ),
                    &[&table.name],
                )?;
            }
        }
        Ok(self.client.batch_execute("COMMIT")?)
    }
}
