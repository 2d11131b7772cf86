//! The end-to-end tests of the `smarty` binary: what needs the process itself (its flags,
//! configuration and environment, its sources, outputs and web server wired together, its
//! logs, exit codes, signals and limits). One test binary, one module per subject; the HTTP
//! API's answers are tested in process in `smarty-web` (`crates/smarty-web/src/tests/`).
//!
//! Every server a test starts binds port 0 and reports the address it got in its log
//! ([`support::reported_address`]); nothing waits a fixed time.

mod support;

mod api;
mod cli;
mod config;
mod dashboard;
mod export;
mod fleet;
mod fleet_feed;
mod fleet_serve;
mod import;
mod lock;
mod postgres;
mod read;
mod service;
mod simulate_fleet;
mod store;
