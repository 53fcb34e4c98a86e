//! The writer's domain operations. Each takes the batch it runs in and
//! reaches the database only through its `Tx` (every write logged); which
//! alerts a change raises is decided by `crate::rules`, not here.

pub(super) mod acks;
pub(super) mod admin;
pub(super) mod auth;
pub(super) mod overdue;
pub(super) mod reports;
pub(super) mod retention;
pub(super) mod silences;
