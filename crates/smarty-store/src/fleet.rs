//! The fleet's meters and their keys, as stored (PostgreSQL only, table `fleet_key`): each key
//! wrapped under the fleet's master key by `smarty-fleet`, which alone wraps and unwraps them.
//! The store never sees a key in the clear.

use crate::config::Location;
use crate::{Store, StoreError};

/// A meter of the fleet with its wrapped keys.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WrappedKey {
    /// The meter's system title.
    pub system_title: [u8; 8],
    /// Its name (readings are stored under it).
    pub name: String,
    /// Its decryption key, wrapped.
    pub key: Vec<u8>,
    /// Its authentication key, wrapped, when not Luxembourg's.
    pub auth_key: Option<Vec<u8>>,
    /// The key check value of the master key they are wrapped under.
    pub master_check: String,
}

impl WrappedKey {
    /// A meter's wrapped keys.
    pub fn new(
        system_title: [u8; 8],
        name: String,
        key: Vec<u8>,
        auth_key: Option<Vec<u8>>,
        master_check: String,
    ) -> WrappedKey {
        WrappedKey {
            system_title,
            name,
            key,
            auth_key,
            master_check,
        }
    }
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedKey")
            .field(
                "system_title",
                &smarty_p1::hex::upper(&self.system_title).to_string(),
            )
            .field("name", &self.name)
            .field("master_check", &self.master_check)
            .finish_non_exhaustive()
    }
}

fn row_of(row: &postgres::Row) -> Option<WrappedKey> {
    let title: String = row.get(0);
    Some(WrappedKey {
        system_title: smarty_p1::hex::decode(&title).ok()?.try_into().ok()?,
        name: row.get(1),
        key: row.get(2),
        auth_key: row.get(3),
        master_check: row.get(4),
    })
}

impl Store {
    fn fleet_client<T: Send>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        match &self.inner.config.location {
            Location::Postgres(_) => self.reader()?.with_postgres(f),
            Location::Sqlite(_) => Err(StoreError::Config(
                "the fleet keeps its meters and keys in PostgreSQL: give a postgres:// URL".into(),
            )),
        }
    }

    /// Adds meters with their wrapped keys, or replaces those of a system title already
    /// there, in one transaction. Returns how many.
    ///
    /// # Errors
    /// An SQLite store, a name given to two meters, database errors.
    pub fn put_fleet_keys(&self, keys: &[WrappedKey]) -> Result<usize, StoreError> {
        let keys = keys.to_vec();
        self.fleet_client(move |client| {
            let mut tx = client.transaction()?;
            for key in &keys {
                tx.execute(
                    "INSERT INTO fleet_key (system_title, name, wrapped_key, wrapped_auth_key, master_check)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (system_title) DO UPDATE SET name = excluded.name,
                       wrapped_key = excluded.wrapped_key, wrapped_auth_key = excluded.wrapped_auth_key,
                       master_check = excluded.master_check, updated_at = now()",
                    &[
                        &smarty_p1::hex::upper(&key.system_title).to_string(),
                        &key.name,
                        &key.key,
                        &key.auth_key,
                        &key.master_check,
                    ],
                )?;
            }
            tx.commit()?;
            Ok(keys.len())
        })
    }

    /// Every meter of the fleet with its wrapped keys, by name.
    ///
    /// # Errors
    /// An SQLite store, database errors.
    pub fn fleet_keys(&self) -> Result<Vec<WrappedKey>, StoreError> {
        self.fleet_client(|client| {
            Ok(client
                .query(
                    "SELECT system_title, name, wrapped_key, wrapped_auth_key, master_check
                     FROM fleet_key ORDER BY name",
                    &[],
                )?
                .iter()
                .filter_map(row_of)
                .collect())
        })
    }

    /// The meter with `system_title` and its wrapped keys, if it is in the fleet.
    ///
    /// # Errors
    /// An SQLite store, database errors.
    pub fn fleet_key(&self, system_title: &[u8; 8]) -> Result<Option<WrappedKey>, StoreError> {
        let title = smarty_p1::hex::upper(system_title).to_string();
        self.fleet_client(move |client| {
            Ok(client
                .query_opt(
                    "SELECT system_title, name, wrapped_key, wrapped_auth_key, master_check
                     FROM fleet_key WHERE system_title = $1",
                    &[&title],
                )?
                .as_ref()
                .and_then(row_of))
        })
    }
}
