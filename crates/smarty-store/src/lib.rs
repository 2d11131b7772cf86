//! `smarty-store`: the history store of the smarty gateway, SQLite (bundled, WAL) in the state
//! directory (docs/storage.md); and the MQTT output's durable queue ([`queue`]). The only crate
//! of the workspace that uses SQLite.
//!
//! One [`Writer`] per process commits buffered readings every few seconds with their
//! aggregates; [`ReadConnection`]s answer the queries of the API and `smarty export`. One
//! process writes a store at a time: it holds the writer's lock ([`lock`]) while it may write.
//! Raw readings are packed in 5-minute blocks and kept `raw_retention_days`; 15-minute and daily
//! aggregates and M-Bus readings are kept forever.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the `[store]` section and the settings a store is opened with |
//! | [`reading`] | what is stored of a telegram: the columns, [`Reading`], [`MbusRecord`] |
//! | [`block`] | raw readings packed in 5-minute blocks |
//! | [`aggregate`] | 15-minute and daily aggregates |
//! | [`writer`] | the one writing connection: buffering, commits, pruning |
//! | [`query`] | read connections: meters, series, totals, intervals |
//! | [`schema`] | the schema and its migrations |
//! | [`lock`] | the writer's lock: one process writes a store |
//! | [`error`] | [`StoreError`] |
//! | [`fleet_view`] | what `smarty fleet serve` shows: the meter list, the community view (PostgreSQL) |
//! | [`queue`] | the MQTT output's outgoing queue, in memory and in an SQLite file |
//!
//! It depends on `smarty-model` (readings come from its typed values, periods and time) and
//! does no networking; the service's adapter from its event channel to the writer thread, and
//! the `export` and `import` commands, are the application's.

pub mod aggregate;
pub mod block;
pub mod config;
mod connection;
pub mod copy;
mod db;
pub mod error;
pub mod fleet;
pub mod fleet_view;
pub mod lock;
pub mod postgres;
pub mod query;
pub mod queue;
pub mod reading;
pub mod schema;
pub mod spill;
mod sqlite;
#[cfg(any(test, feature = "test_postgres"))]
pub mod test_postgres;
pub mod writer;

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use config::Location;
use connection::{ReadConn, WriteConnection};
use lock::WriterLock;
use postgres::Partitions;

pub use config::StoreConfig;
pub use error::StoreError;
pub use fleet::{FleetCounter, FleetRejection};
pub use query::{ReadConnection, Series, StoredMeter};
pub use reading::{MbusRecord, Reading};
pub use writer::Writer;

/// How long a connection waits for another one's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Read connections kept open for reuse.
const POOLED_READERS: usize = 4;

/// An open store: cheap to clone (the clones share one pool of read connections).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    config: StoreConfig,
    readers: Mutex<Vec<ReadConn>>,
    /// SQLite: a writing connection for small writes beside the writer's (frame counters).
    side: Mutex<Option<Connection>>,
    /// The writer's lock, held while the store is open for writing.
    lock: Option<Arc<WriterLock>>,
}

impl Store {
    /// Opens the store for writing: takes the writer's lock first (nothing is created or
    /// changed before it holds), then creates the directory and file when missing, sets WAL
    /// mode and brings the schema to the current version (docs/storage.md). The lock is held
    /// until the store and its writers are dropped.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process writes the store, [`StoreError::Io`] when
    /// the directory or the lock file cannot be created, [`StoreError::Migration`] for a file
    /// of a newer smarty or a failed migration, SQLite errors (not a database, …).
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        match &config.location {
            Location::Sqlite(_) => Self::open_at_version(config, schema::latest()),
            Location::Postgres(server) => {
                let mut client = server.connect()?;
                client.run(postgres::schema::migrate)?;
                Partitions::default().ensure_ahead(&mut client)?;
                Ok(Store::postgres(config, client))
            }
        }
    }

    /// A PostgreSQL store whose first reader is `client`.
    fn postgres(config: &StoreConfig, client: postgres::PgClient) -> Store {
        Store {
            inner: Arc::new(Inner {
                config: config.clone(),
                readers: Mutex::new(vec![ReadConn::Postgres(RefCell::new(client))]),
                side: Mutex::new(None),
                lock: None,
            }),
        }
    }

    /// Opens an existing store for reading (`smarty export`) without the writer's lock, so
    /// that it works while `smarty run` writes. A file of an older schema is migrated when no
    /// other process writes it.
    ///
    /// # Errors
    /// [`StoreError::Migration`] for a file of another schema version that cannot be migrated
    /// now (another process writes it, or it is newer), SQLite errors (no such file, not a
    /// database, …).
    pub fn open_read_only(config: &StoreConfig) -> Result<Store, StoreError> {
        let path = match &config.location {
            Location::Sqlite(path) => path,
            Location::Postgres(server) => {
                let mut client = server.connect()?;
                client.run(|client| {
                    if postgres::schema::version(client)? < postgres::schema::latest() {
                        postgres::schema::migrate(client)?;
                    }
                    postgres::schema::check(client)
                })?;
                return Ok(Store::postgres(config, client));
            }
        };
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let version = schema::version(&conn)?;
        drop(conn);
        if version < schema::latest() {
            return match Self::open(config) {
                Err(StoreError::Locked { holder, .. }) => Err(StoreError::Migration {
                    version,
                    reason: format!(
                        "the file needs an upgrade to version {}, which waits until {} stops \
                         writing it",
                        schema::latest(),
                        holder.map_or_else(|| "the other process".into(), |h| h.to_string())
                    ),
                }),
                other => other,
            };
        }
        if version > schema::latest() {
            // The same refusal as when opening it for writing.
            let mut conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            schema::migrate_to(&mut conn, schema::latest())?;
        }
        Ok(Store {
            inner: Arc::new(Inner {
                config: config.clone(),
                readers: Mutex::new(Vec::new()),
                side: Mutex::new(None),
                lock: None,
            }),
        })
    }

    /// [`Store::open`] that migrates only up to `version` (tests of migrations).
    fn open_at_version(config: &StoreConfig, version: u32) -> Result<Store, StoreError> {
        let path = config
            .location
            .sqlite_path()
            .ok_or_else(|| StoreError::Config("not an SQLite store".into()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let lock = WriterLock::acquire(path)?;
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                "store: {} is in journal mode {mode}, not WAL",
                path.display()
            );
        }
        schema::migrate_to(&mut conn, version)?;
        Ok(Store {
            inner: Arc::new(Inner {
                config: config.clone(),
                readers: Mutex::new(Vec::new()),
                side: Mutex::new(None),
                lock: Some(lock),
            }),
        })
    }

    /// Where the store is (an SQLite file or a PostgreSQL database; shown without a
    /// password).
    pub fn location(&self) -> &Location {
        &self.inner.config.location
    }

    /// The settings it was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// A read-only connection (`query_only`), from the pool when one is free.
    ///
    /// # Errors
    /// SQLite errors (the file went away, …).
    pub fn reader(&self) -> Result<ReadConnection, StoreError> {
        let pooled = self
            .inner
            .readers
            .lock()
            .ok()
            .and_then(|mut pool| pool.pop())
            // A PostgreSQL connection may have been closed by the server while pooled (a
            // restart): it is checked, and replaced when gone.
            .filter(ReadConn::alive);
        let conn = match pooled {
            Some(conn) => conn,
            None => match &self.inner.config.location {
                Location::Sqlite(path) => {
                    let conn = Connection::open_with_flags(
                        path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY
                            | OpenFlags::SQLITE_OPEN_NO_MUTEX
                            | OpenFlags::SQLITE_OPEN_URI,
                    )?;
                    conn.busy_timeout(BUSY_TIMEOUT)?;
                    conn.pragma_update(None, "query_only", true)?;
                    ReadConn::Sqlite(conn)
                }
                Location::Postgres(server) => ReadConn::Postgres(RefCell::new(server.connect()?)),
            },
        };
        Ok(ReadConnection::new(conn, Arc::downgrade(&self.inner)))
    }

    /// A writing connection (`synchronous = NORMAL`): one per process, owned by the
    /// service's store output or by `smarty import`. It holds the writer's lock (the
    /// store's, or taken now for a store opened with [`Store::open_read_only`]).
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process writes the store, SQLite errors.
    pub fn writer(&self) -> Result<Writer, StoreError> {
        let conn = match &self.inner.config.location {
            Location::Sqlite(path) => {
                let lock = match &self.inner.lock {
                    Some(lock) => Arc::clone(lock),
                    None => WriterLock::acquire(path)?,
                };
                let conn = Connection::open(path)?;
                conn.busy_timeout(BUSY_TIMEOUT)?;
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                conn.set_prepared_statement_cache_capacity(64);
                WriteConnection::Sqlite { conn, _lock: lock }
            }
            Location::Postgres(server) => {
                let mut client = server.connect()?;
                let mut partitions = Partitions::default();
                partitions.ensure_ahead(&mut client)?;
                WriteConnection::Postgres {
                    server: server.clone(),
                    client: Some(client),
                    partitions,
                }
            }
        };
        Ok(Writer::new(conn, self.inner.config.clone()))
    }
}

impl Store {
    /// The frame counters saved for meter `meter` under the key named by `key_check` (a key
    /// check value, so that the key itself is never stored): `(system title in hex, last
    /// frame counter accepted)`. Counters saved under another key are not returned.
    ///
    /// # Errors
    /// Database errors.
    pub fn frame_counters(
        &self,
        meter: &str,
        key_check: &str,
    ) -> Result<Vec<(String, u32)>, StoreError> {
        let rows = self.with_side(|db| db.frame_counters(meter, key_check))?;
        Ok(rows
            .into_iter()
            .filter_map(|(title, counter)| Some((title, u32::try_from(counter).ok()?)))
            .collect())
    }

    /// Saves the frame counters of meter `meter` accepted under the key named by `key_check`,
    /// replacing those saved under another key; a counter never goes back (processes that
    /// share a store save theirs at once).
    ///
    /// # Errors
    /// Database errors (the caller keeps its counters and saves again later).
    pub fn save_frame_counters(
        &self,
        meter: &str,
        key_check: &str,
        counters: &[(String, u32)],
    ) -> Result<(), StoreError> {
        let counters: Vec<(String, i64)> = counters
            .iter()
            .map(|(title, counter)| (title.clone(), i64::from(*counter)))
            .collect();
        self.with_side(|db| db.save_frame_counters(meter, key_check, &counters))
    }

    /// Runs `f` in a transaction of its own beside the writer's: on SQLite a second writing
    /// connection (its writes wait for the writer's commits), on PostgreSQL a pooled one.
    fn with_side<T: Send>(
        &self,
        f: impl FnOnce(&mut dyn db::Db) -> db::DbResult<T> + Send,
    ) -> Result<T, StoreError> {
        match &self.inner.config.location {
            Location::Sqlite(path) => {
                let mut side = self
                    .inner
                    .side
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if side.is_none() {
                    let conn = Connection::open(path)?;
                    conn.busy_timeout(BUSY_TIMEOUT)?;
                    *side = Some(conn);
                }
                let conn = side.as_mut().expect("opened above");
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let out = f(&mut sqlite::SqliteDb(&tx))?;
                tx.commit()?;
                Ok(out)
            }
            Location::Postgres(_) => self.reader()?.with(f),
        }
    }
}

impl std::fmt::Debug for Store {
    /// Where it is (without a password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.inner.config.location.to_string())
            .finish_non_exhaustive()
    }
}

/// Gives a read connection back to its store's pool.
fn give_back(pool: &std::sync::Weak<Inner>, conn: ReadConn) {
    if conn.reusable()
        && let Some(inner) = pool.upgrade()
        && let Ok(mut readers) = inner.readers.lock()
        && readers.len() < POOLED_READERS
    {
        readers.push(conn);
    }
}

#[cfg(test)]
mod tests;
