//! All integration tests, as modules of one test binary (keeps link time low).

mod common;

mod client;
mod copy;
mod engine;
mod fuzz;
mod ingest;
mod monitor;
mod overcli;
mod page;
mod policy;
mod postgres;
mod read_api;
mod registration;
mod server_bin;
mod silences;
mod slow_clients;
mod storage;
mod supervision;
mod webhook;
