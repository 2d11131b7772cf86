//! The history store: SQLite (bundled, WAL) in the state directory.

pub mod cli;
