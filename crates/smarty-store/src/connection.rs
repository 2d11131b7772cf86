//! The connections of a store, whichever its backend: the writer's ([`WriteConnection`]) and
//! the readers' ([`ReadConn`]), each running the statements of [`Db`] in a transaction or on
//! the connection.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Arc;

use rusqlite::TransactionBehavior;

use crate::db::{Db, DbResult};
use crate::lock::WriterLock;
use crate::postgres::{Partitions, PgClient, PgDb, PostgresConfig};
use crate::sqlite::SqliteDb;

/// The writer's connection.
pub(crate) enum WriteConnection {
    /// An SQLite file, with the writer's lock held as long as the writer lives.
    Sqlite {
        /// The connection.
        conn: rusqlite::Connection,
        /// The lock.
        _lock: Arc<WriterLock>,
    },
    /// A PostgreSQL database.
    Postgres {
        /// The server, to connect again after the connection was lost.
        server: PostgresConfig,
        /// The connection; `None` after it was lost (connected again on next use).
        client: Option<PgClient>,
        /// The partitions of `reading` known to exist.
        partitions: Partitions,
    },
}

impl WriteConnection {
    /// Runs `f` in one transaction, committed when it succeeds and rolled back otherwise.
    pub(crate) fn transaction<T: Send>(
        &mut self,
        f: impl FnOnce(&mut dyn Db) -> DbResult<T> + Send,
    ) -> DbResult<T> {
        match self {
            WriteConnection::Sqlite { conn, .. } => {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let out = f(&mut SqliteDb(&tx))?;
                tx.commit()?;
                Ok(out)
            }
            WriteConnection::Postgres { server, client, .. } => {
                let result = connected(server, client)?.run_prepared(|client, statements| {
                    let mut tx = client.transaction()?;
                    let out = f(&mut PgDb {
                        client: &mut tx,
                        statements,
                    })?;
                    tx.commit()?;
                    Ok(out)
                });
                forget_if_lost(client);
                result
            }
        }
    }

    /// Makes sure the readings of these times have somewhere to go (PostgreSQL's daily
    /// partitions, each created in a short transaction of its own); nothing for SQLite.
    pub(crate) fn prepare_for(&mut self, times: &BTreeSet<i64>) -> DbResult<()> {
        match self {
            WriteConnection::Sqlite { .. } => Ok(()),
            WriteConnection::Postgres {
                server,
                client,
                partitions,
            } => {
                let result = partitions.ensure(connected(server, client)?, times.iter().copied());
                forget_if_lost(client);
                result
            }
        }
    }

    /// Removes raw readings before `cutoff` (a period start): whole partitions where it
    /// can (PostgreSQL), in one transaction otherwise. Returns the readings removed.
    pub(crate) fn prune_raw(&mut self, cutoff: i64) -> DbResult<u64> {
        match self {
            WriteConnection::Sqlite { .. } => self.transaction(|db| db.prune_raw(cutoff)),
            WriteConnection::Postgres {
                server,
                client,
                partitions,
            } => {
                let result = partitions.drop_before(connected(server, client)?, cutoff);
                forget_if_lost(client);
                result
            }
        }
    }
}

/// The connection, made again when it was lost (a restarted or unreachable server).
fn connected<'c>(
    server: &PostgresConfig,
    client: &'c mut Option<PgClient>,
) -> DbResult<&'c mut PgClient> {
    if client.is_none() {
        let mut new = server.connect()?;
        tracing::info!("store: connected to {server}");
        // The writer's statements need the current schema (another process may have
        // created the database meanwhile).
        new.run(crate::postgres::schema::migrate)?;
        *client = Some(new);
    }
    Ok(client.as_mut().expect("connected above"))
}

/// Forgets a connection the server closed, so that the next use connects again.
fn forget_if_lost(client: &mut Option<PgClient>) {
    if client.as_ref().is_some_and(PgClient::is_closed) {
        tracing::warn!(
            "store: the connection to PostgreSQL was lost; connecting again on the next commit"
        );
        *client = None;
    }
}

/// A reader's connection.
pub(crate) enum ReadConn {
    /// A read-only SQLite connection.
    Sqlite(rusqlite::Connection),
    /// A PostgreSQL connection (its statements need it mutably).
    Postgres(RefCell<PgClient>),
}

impl ReadConn {
    /// Whether it still works: always for SQLite; for PostgreSQL, whether the server answers
    /// on it (a round trip, with a short timeout).
    pub(crate) fn alive(&self) -> bool {
        match self {
            ReadConn::Sqlite(_) => true,
            ReadConn::Postgres(client) => client
                .borrow_mut()
                .run(|client| Ok(client.is_valid(std::time::Duration::from_secs(2)).is_ok()))
                .unwrap_or(false),
        }
    }

    /// Whether it can go back to the pool (a PostgreSQL connection the server closed
    /// cannot).
    pub(crate) fn reusable(&self) -> bool {
        match self {
            ReadConn::Sqlite(_) => true,
            ReadConn::Postgres(client) => !client.borrow().is_closed(),
        }
    }

    /// Runs statements on the connection.
    pub(crate) fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut dyn Db) -> DbResult<T> + Send,
    ) -> DbResult<T> {
        match self {
            ReadConn::Sqlite(conn) => f(&mut SqliteDb(conn)),
            ReadConn::Postgres(client) => client
                .borrow_mut()
                .run_prepared(|client, statements| f(&mut PgDb { client, statements })),
        }
    }
}
