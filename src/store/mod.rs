//! Storage: the SQLite backend for now.

mod sqlite;

pub use sqlite::*;
