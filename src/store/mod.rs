//! Storage: the SQLite backend for now.

mod sqlite;
mod views;

pub use sqlite::*;
pub use views::*;

/// Which servers `/ui/api/status/` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Every server.
    All,
    /// One server by id.
    Server(i64),
    /// One service (inside its server) by id.
    Service(i64),
}

/// Which alerts `/ui/api/status/alerts/` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFilter {
    /// All alerts.
    All,
    /// Alerts of one server (including its services').
    Server(i64),
    /// Alerts of one service.
    Service(i64),
}
