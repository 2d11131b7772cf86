//! A PostgreSQL connection usable from any thread, async or not.
//!
//! The synchronous client of rust-postgres drives a Tokio runtime of its own, which panics
//! when started (or dropped) on a thread that already runs one — and `smarty`'s commands run
//! inside one. [`PgClient`] runs each use of the client, its connection and its drop on a
//! scoped thread of its own when the calling thread is inside a runtime, and in place
//! otherwise (the store's writer thread, blocking tasks).

use super::db::Statements;
use crate::StoreError;

/// A connection to PostgreSQL (see the module documentation).
pub(crate) struct PgClient(Option<Box<postgres::Client>>, Statements);

/// Runs `f` where a runtime may be started: here, or on a scoped thread when this thread
/// is inside a Tokio runtime.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

impl PgClient {
    /// Connects with `connect` (see [`super::PostgresConfig::connect`]).
    pub(crate) fn connect(
        connect: impl FnOnce() -> Result<postgres::Client, postgres::Error> + Send,
    ) -> Result<PgClient, postgres::Error> {
        off_runtime(connect).map(|client| PgClient(Some(Box::new(client)), Statements::default()))
    }

    /// Runs `f` on the client.
    pub(crate) fn run<T: Send>(
        &mut self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.run_prepared(|client, _| f(client))
    }

    /// Runs `f` on the client with its prepared statements.
    pub(crate) fn run_prepared<T: Send>(
        &mut self,
        f: impl FnOnce(&mut postgres::Client, &mut Statements) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        let client = self.0.as_mut().expect("a client is there until dropped");
        let statements = &mut self.1;
        off_runtime(move || f(client, statements))
    }
}

impl PgClient {
    /// Whether the connection is gone (the server closed it or an error broke it).
    pub(crate) fn is_closed(&self) -> bool {
        self.0.as_ref().is_none_or(|client| client.is_closed())
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            off_runtime(move || drop(client));
        }
    }
}
