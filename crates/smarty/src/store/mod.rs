//! The history store: SQLite (bundled, WAL) in the state directory.

pub mod cli;
pub mod interval;

pub use interval::{INTERVAL_S, Interval, Period};
