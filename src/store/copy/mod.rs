//! `overc-server copy`: a whole installation from one database to another,
//! SQLite or PostgreSQL in either direction (SPEC §10).
//!
//! Both backends speak one neutral row model: the tables below, their
//! columns under the same names on both, values as [`Value`]. A source
//! exports each table in key order, a page at a time, from one consistent
//! read; a target imports the pages into one transaction, keeping every id
//! (history, events and deliveries refer to them), and commits once at the
//! end, so that a failed copy leaves the target as it was: empty, its
//! schema created. Key hashes are bytes like any other: copied as stored,
//! so hosts keep their keys.
//!
//! What each backend does lives beside it (`sqlite/copy.rs`,
//! `postgres/copy.rs`): opening the source read-only and refusing one that
//! a server holds or whose schema is not this build's, creating the target
//! by the normal open path and refusing one that holds data, and what a
//! target keeps of its own (PostgreSQL's sequences and due times).

mod progress;

use std::collections::HashSet;

pub use progress::{CopyProgress, TerminalProgress};

use crate::config::Database;
use crate::error::{Error, Result};

/// A value in the neutral row model. Flags are integers (0 or 1), times
/// unix milliseconds, key salts and hashes bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// A column of the row model.
#[derive(Debug)]
pub(crate) struct Column {
    pub name: &'static str,
    /// Free text (an info, a message, a title…), which PostgreSQL stores
    /// escaped because its `text` cannot hold NUL (see `postgres::ops::text`).
    /// Names, patterns, states and plugin names are stored as they are.
    // Only the PostgreSQL backend reads it.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub text: bool,
    /// A column a schema may lack (added by a later migration of one
    /// backend): read as `default` where missing, not written where missing.
    pub default: Option<i64>,
}

/// A table of the row model.
#[derive(Debug)]
pub(crate) struct Table {
    pub name: &'static str,
    /// What its rows are, for messages.
    pub what: &'static str,
    pub columns: &'static [Column],
    /// The primary key: the order of the export and where a page resumes.
    pub key: &'static [&'static str],
    /// A table a schema may lack (PostgreSQL before its silences migration):
    /// skipped with a warning when the target lacks it.
    pub optional: bool,
}

const fn col(name: &'static str) -> Column {
    Column {
        name,
        text: false,
        default: None,
    }
}

const fn text(name: &'static str) -> Column {
    Column {
        name,
        text: true,
        default: None,
    }
}

const fn flag_since(name: &'static str) -> Column {
    Column {
        name,
        text: false,
        default: Some(0),
    }
}

/// Every table copied, parents before children (the target checks foreign
/// keys). Not copied: SQLite's `redo` (the redo log's bookmark: each
/// database has its own), PostgreSQL's `overc_schema` and `overc_leader`,
/// its delivery claims (a copied delivery is unclaimed) and due times
/// (computed again from the history), and SQLite's unused
/// `alerts.attempts`/`next_attempt` of schema version 1.
pub(crate) const TABLES: &[Table] = &[
    Table {
        name: "servers",
        what: "hosts",
        columns: &[
            col("id"),
            col("name"),
            text("title"),
            col("key_salt"),
            col("key_hash"),
            text("ip"),
            col("first_seen"),
            col("last_seen"),
        ],
        key: &["id"],
        optional: false,
    },
    Table {
        name: "services",
        what: "services",
        columns: &[
            col("id"),
            col("server_id"),
            col("name"),
            text("title"),
            col("period"),
            col("overdue"),
            col("hard"),
            col("hard_state"),
            col("streak"),
            col("flapping"),
        ],
        key: &["id"],
        optional: false,
    },
    Table {
        name: "states",
        what: "history records",
        columns: &[
            col("id"),
            col("service_id"),
            col("rtime"),
            col("state"),
            text("info"),
        ],
        key: &["id"],
        optional: false,
    },
    Table {
        name: "alerts",
        what: "events",
        columns: &[
            col("id"),
            col("server_id"),
            col("service_id"),
            col("state_id"),
            col("ctime"),
            col("channel"),
            col("event"),
            text("message"),
            col("severity"),
            col("state"),
            text("info"),
            col("soft"),
            col("routed"),
            col("delivered"),
            flag_since("silenced"),
        ],
        key: &["id"],
        optional: false,
    },
    Table {
        name: "deliveries",
        what: "deliveries",
        columns: &[
            col("plugin"),
            col("alert_id"),
            col("state"),
            col("attempts"),
            col("next_attempt"),
            text("error"),
        ],
        key: &["plugin", "alert_id"],
        optional: false,
    },
    Table {
        name: "silences",
        what: "silences",
        columns: &[
            col("id"),
            col("server"),
            col("service"),
            col("starts"),
            col("ends"),
            text("comment"),
            text("author"),
            col("ended_early"),
            col("finished"),
        ],
        key: &["id"],
        optional: true,
    },
    Table {
        name: "acks",
        what: "acknowledgements",
        columns: &[
            col("service_id"),
            text("author"),
            text("comment"),
            col("ctime"),
            col("problem"),
        ],
        key: &["service_id"],
        optional: true,
    },
];

/// Rows read and written at a time.
pub(crate) const PAGE: usize = 1000;

/// The tables whose rows make a target "hold data" (the others cannot
/// have rows without these).
pub(crate) const DATA_TABLES: &[&str] = &["servers", "services", "states", "alerts", "silences"];

/// The refusal of a target that holds data.
pub(crate) fn not_empty(target: &str, table: &str) -> Error {
    Error::Storage(format!(
        "the target {target} already holds data (table {table} has rows); copy only into a new \
         or empty database"
    ))
}

/// The refusal of a source whose schema is not this build's.
pub(crate) fn wrong_version(source: &str, version: i64, current: i64) -> Error {
    Error::Storage(if version > current {
        format!(
            "the source {source} has schema version {version}, newer than this overc \
             understands ({current}); copy with a newer overc-server"
        )
    } else {
        format!(
            "the source {source} has schema version {version}, older than this overc's \
             ({current}); the copy never changes its source: start this overc-server on it once \
             (it migrates at start), stop it, then copy"
        )
    })
}

/// One page of a table's rows, each with the columns of the model.
pub(crate) type Rows = Vec<Vec<Value>>;

/// A database to copy from, read in one consistent snapshot.
pub(crate) trait Source {
    /// The database, for messages (never with a password).
    fn describe(&self) -> String;
    /// The columns of `table`; `None` when there is no such table.
    fn columns(&mut self, table: &str) -> Result<Option<HashSet<String>>>;
    /// Starts the read that every later call reads in.
    fn begin(&mut self) -> Result<()>;
    /// The rows of `table`.
    fn count(&mut self, table: &str) -> Result<u64>;
    /// Up to `limit` rows of `table`, in key order after the key `after`
    /// (from the start when `None`): `select` holds a column name or a
    /// literal for each column of the model.
    fn page(
        &mut self,
        table: &Table,
        select: &[String],
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Rows>;
}

/// A database to copy into: created or migrated to this build's schema and
/// found empty when opened.
pub(crate) trait Target {
    /// The database, for messages (never with a password).
    fn describe(&self) -> String;
    /// The columns of `table`; `None` when there is no such table.
    fn columns(&mut self, table: &str) -> Result<Option<HashSet<String>>>;
    /// Starts the transaction every write goes into.
    fn begin(&mut self) -> Result<()>;
    /// Writes rows of `table`: of each row, the model's columns at `columns`.
    fn write(&mut self, table: &Table, columns: &[usize], rows: &Rows) -> Result<()>;
    /// Brings what the target keeps of its own up to date, and commits.
    fn commit(&mut self) -> Result<()>;
}

/// What a copy copied: rows per table, in copy order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopySummary {
    /// Each table copied with its rows: (`servers`, 12), (`states`, 9000)…
    pub tables: Vec<(String, u64)>,
}

impl CopySummary {
    /// The rows copied of `table` (0 when it was not copied).
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|(t, _)| t == table)
            .map_or(0, |(_, n)| *n)
    }
}

impl std::fmt::Display for CopySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (table, rows) in &self.tables {
            let what = TABLES
                .iter()
                .find(|t| t.name == table)
                .map_or(table.as_str(), |t| t.what);
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{rows} {what}")?;
        }
        Ok(())
    }
}

/// Copies a whole installation from `from` into `to` (SPEC §10): hosts
/// with their key hashes, services, history, events, silences,
/// acknowledgements and deliveries (pending ones included), every id kept.
///
/// The source is opened read-only and read in one consistent snapshot;
/// it must be at this build's schema version (start a server on an older
/// one once to migrate it). An SQLite source must not be in use by a
/// running server (its redo log may hold writes the file does not), nor
/// hold such writes after a crash. The target is created or migrated as a
/// server would at start, must hold no data, and gets everything in one
/// transaction: a copy that fails leaves it empty. Rows go a page at a
/// time; `progress` hears of each.
///
/// # Errors
/// [`Error::Storage`] saying why: a missing source, a source in use or
/// at another schema version, a target that holds data or that a server
/// runs on, or a failed statement (naming the table);
/// [`Error::Config`] for a PostgreSQL URL in a build without the feature
/// `postgres`.
///
/// # Example
/// ```no_run
/// use overc::config::parse_database;
/// use overc::store::{TerminalProgress, copy_database};
///
/// let from = parse_database("sqlite:/var/lib/overc/overc.db").unwrap();
/// let to = parse_database("postgres://overc:secret@db1/overc").unwrap();
/// let summary = copy_database(&from, &to, &mut TerminalProgress::stderr())?;
/// println!("copied {summary}");
/// # Ok::<(), overc::Error>(())
/// ```
pub fn copy_database(
    from: &Database,
    to: &Database,
    progress: &mut dyn CopyProgress,
) -> Result<CopySummary> {
    if let (Database::Sqlite(a), Database::Sqlite(b)) = (from, to) {
        if same_file(a, b) {
            return Err(Error::Storage(format!(
                "the source and the target are the same file {}",
                a.display()
            )));
        }
    }
    let mut source = open_source(from)?;
    let mut target = open_target(to)?;
    run(source.as_mut(), target.as_mut(), progress)
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

fn open_source(db: &Database) -> Result<Box<dyn Source>> {
    match db {
        Database::Sqlite(path) => Ok(Box::new(super::sqlite::copy::SqliteSource::open(path)?)),
        #[cfg(feature = "postgres")]
        Database::Postgres(url) => Ok(Box::new(super::postgres::copy::PgSource::open(url)?)),
        #[cfg(not(feature = "postgres"))]
        Database::Postgres(_) => Err(no_postgres()),
    }
}

fn open_target(db: &Database) -> Result<Box<dyn Target>> {
    match db {
        Database::Sqlite(path) => Ok(Box::new(super::sqlite::copy::SqliteTarget::open(path)?)),
        #[cfg(feature = "postgres")]
        Database::Postgres(url) => Ok(Box::new(super::postgres::copy::PgTarget::open(url)?)),
        #[cfg(not(feature = "postgres"))]
        Database::Postgres(_) => Err(no_postgres()),
    }
}

#[cfg(not(feature = "postgres"))]
fn no_postgres() -> Error {
    Error::Config("postgres://… needs overc built with the feature `postgres`".into())
}

/// A table as this copy reads and writes it.
struct Plan {
    table: &'static Table,
    /// A column name or a literal, for each column of the model.
    select: Vec<String>,
    /// The model's columns the target has.
    write: Vec<usize>,
    /// Where the key's columns are in a row.
    key: Vec<usize>,
    /// The model's columns the target lacks (of a later migration): rows
    /// whose value there is not the default lose something.
    dropped: Vec<usize>,
}

/// Which tables and columns go, from what each side's schema has, and the
/// optional tables the target lacks. Tables and columns of a later
/// migration that one side lacks are left out.
fn plan(source: &mut dyn Source, target: &mut dyn Target) -> Result<(Vec<Plan>, Vec<String>)> {
    let mut plans = Vec::new();
    let mut unwritten = Vec::new();
    for table in TABLES {
        let src = source.columns(table.name)?;
        let dst = target.columns(table.name)?;
        let (src, dst) = match (src, dst) {
            (Some(s), Some(d)) => (s, d),
            (None, _) if table.optional => {
                log::info!(
                    "the source has no table {} (a schema without {}): none to copy",
                    table.name,
                    table.what
                );
                continue;
            }
            (Some(_), None) if table.optional => {
                unwritten.push(table.name.to_owned());
                continue;
            }
            (None, _) => return Err(missing(&source.describe(), table.name, None)),
            (Some(_), None) => return Err(missing(&target.describe(), table.name, None)),
        };
        let mut select = Vec::new();
        let mut write = Vec::new();
        let mut dropped = Vec::new();
        for (i, c) in table.columns.iter().enumerate() {
            match (src.contains(c.name), c.default) {
                (true, _) => select.push(c.name.to_owned()),
                (false, Some(d)) => select.push(d.to_string()),
                (false, None) => {
                    return Err(missing(&source.describe(), table.name, Some(c.name)));
                }
            }
            match (dst.contains(c.name), c.default) {
                (true, _) => write.push(i),
                (false, Some(_)) => dropped.push(i),
                (false, None) => {
                    return Err(missing(&target.describe(), table.name, Some(c.name)));
                }
            }
        }
        let key = table
            .key
            .iter()
            .map(|k| {
                table
                    .columns
                    .iter()
                    .position(|c| c.name == *k)
                    .expect("a key column of the model")
            })
            .collect();
        plans.push(Plan {
            table,
            select,
            write,
            key,
            dropped,
        });
    }
    Ok((plans, unwritten))
}

fn missing(db: &str, table: &str, column: Option<&str>) -> Error {
    Error::Storage(match column {
        None => format!("{db} has no table {table}: not an overc database of this version"),
        Some(c) => format!("{db} has no column {table}.{c}: not an overc database of this version"),
    })
}

fn run(
    source: &mut dyn Source,
    target: &mut dyn Target,
    progress: &mut dyn CopyProgress,
) -> Result<CopySummary> {
    let (plans, unwritten) = plan(source, target)?;
    source.begin()?;
    for name in &unwritten {
        let n = source.count(name)?;
        if n > 0 {
            let what = TABLES
                .iter()
                .find(|t| t.name == name)
                .map_or("", |t| t.what);
            log::warn!(
                "{n} {what} not copied: the target {} has no table {name} (its overc keeps no {what} yet)",
                target.describe()
            );
        }
    }
    let mut totals = Vec::with_capacity(plans.len());
    for p in &plans {
        totals.push(source.count(p.table.name)?);
    }
    target.begin()?;
    // One transaction: whatever fails, the target keeps nothing of it.
    let (from, to) = (source.describe(), target.describe());
    let left_empty = |doing: String, e: Error| {
        Error::Storage(format!(
            "{doing} from {from} to {to}: {}; the target was left empty",
            e.to_string().trim_start_matches("storage: ")
        ))
    };
    let mut summary = CopySummary::default();
    for (p, &total) in plans.iter().zip(&totals) {
        let (copied, lost) = copy_table(source, target, p, total, progress)
            .map_err(|e| left_empty(format!("copying table {}", p.table.name), e))?;
        progress.done(p.table.name, copied);
        for (n, &i) in lost.iter().zip(&p.dropped).filter(|(n, _)| **n > 0) {
            log::warn!(
                "{n} {} copied without their flag {}: the target {} has no column {}.{1} \
                 (its overc keeps none yet)",
                p.table.what,
                p.table.columns[i].name,
                to,
                p.table.name
            );
        }
        summary.tables.push((p.table.name.to_owned(), copied));
    }
    target
        .commit()
        .map_err(|e| left_empty("committing the copy".into(), e))?;
    Ok(summary)
}

/// Copies the rows of one table; how many, and of each dropped column
/// how many rows held a value other than its default.
fn copy_table(
    source: &mut dyn Source,
    target: &mut dyn Target,
    p: &Plan,
    total: u64,
    progress: &mut dyn CopyProgress,
) -> Result<(u64, Vec<u64>)> {
    let mut copied = 0u64;
    let mut lost = vec![0u64; p.dropped.len()];
    let mut after: Option<Vec<Value>> = None;
    progress.update(p.table.name, 0, total);
    loop {
        let rows = source.page(p.table, &p.select, after.as_deref(), PAGE)?;
        let Some(last) = rows.last() else { break };
        after = Some(p.key.iter().map(|&i| last[i].clone()).collect());
        for (n, &i) in lost.iter_mut().zip(&p.dropped) {
            let default = p.table.columns[i].default.map(Value::Int);
            *n += rows
                .iter()
                .filter(|r| Some(&r[i]) != default.as_ref())
                .count() as u64;
        }
        target.write(p.table, &p.write, &rows)?;
        copied += rows.len() as u64;
        progress.update(p.table.name, copied, total.max(copied));
        if rows.len() < PAGE {
            break;
        }
    }
    Ok((copied, lost))
}

/// The statement reading a page: `select` from `table`, in key order,
/// after the key given as parameters `param(1)…` when `resume`.
pub(crate) fn page_sql(
    table: &Table,
    select: &[String],
    resume: bool,
    limit: usize,
    param: impl Fn(usize) -> String,
) -> String {
    let key = table.key.join(", ");
    let after = match resume {
        true => {
            let params: Vec<String> = (1..=table.key.len()).map(param).collect();
            format!(" WHERE ({key}) > ({})", params.join(", "))
        }
        false => String::new(),
    };
    format!(
        "SELECT {} FROM {}{after} ORDER BY {key} LIMIT {limit}",
        select.join(", "),
        table.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_its_key_among_its_columns_and_parents_come_first() {
        for t in TABLES {
            for k in t.key {
                assert!(t.columns.iter().any(|c| c.name == *k), "{}.{k}", t.name);
            }
        }
        let at = |name: &str| TABLES.iter().position(|t| t.name == name).unwrap();
        assert!(at("servers") < at("services"));
        assert!(at("services") < at("states"));
        assert!(at("states") < at("alerts"));
        assert!(at("alerts") < at("deliveries"));
        assert!(at("services") < at("acks"));
    }

    #[test]
    fn a_page_resumes_after_the_key_of_the_last_row() {
        let deliveries = TABLES.iter().find(|t| t.name == "deliveries").unwrap();
        let select: Vec<String> = ["plugin", "alert_id"].map(String::from).to_vec();
        assert_eq!(
            page_sql(deliveries, &select, true, 10, |i| format!("${i}")),
            "SELECT plugin, alert_id FROM deliveries WHERE (plugin, alert_id) > ($1, $2) \
             ORDER BY plugin, alert_id LIMIT 10"
        );
        assert_eq!(
            page_sql(deliveries, &select, false, 10, |i| format!("?{i}")),
            "SELECT plugin, alert_id FROM deliveries ORDER BY plugin, alert_id LIMIT 10"
        );
    }

    #[test]
    fn the_summary_says_what_was_copied() {
        let s = CopySummary {
            tables: vec![("servers".into(), 2), ("states".into(), 40)],
        };
        assert_eq!(s.to_string(), "2 hosts, 40 history records");
        assert_eq!(s.rows("states"), 40);
        assert_eq!(s.rows("acks"), 0);
    }
}
