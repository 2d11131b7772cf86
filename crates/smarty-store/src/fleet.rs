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

/// Frames a fleet's workers set aside for one meter and one reason (table `fleet_rejection`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetRejection {
    /// The meter's name, or its system title in upper-case hex when it is not in the fleet
    /// (or the subject itself when it names no meter).
    pub meter: String,
    /// Why: `unknown_meter`, `tag`, `crc`, `bad_subject`, `replay`, `nonce_reuse`, … (the
    /// workers' reasons, as in their metrics).
    pub reason: String,
    /// How many frames, since the database was made.
    pub count: u64,
    /// When the last one was counted.
    pub last_at: jiff::Timestamp,
}

/// The last frame a fleet worker accepted from one meter: its counter, and the tag that
/// authenticated it (the same counter with another tag is nonce reuse or forgery).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetCounter {
    /// The meter's name.
    pub meter: String,
    /// The system title of its frames.
    pub system_title: [u8; 8],
    /// The check value (hex) of the key the frame was accepted under.
    pub key_check: String,
    /// The frame counter.
    pub counter: u32,
    /// The frame's authentication tag (12 bytes for a Smarty), when known.
    pub tag: Option<Vec<u8>>,
}

impl FleetCounter {
    /// A meter's last accepted frame.
    pub fn new(
        meter: String,
        system_title: [u8; 8],
        key_check: String,
        counter: u32,
        tag: Option<Vec<u8>>,
    ) -> FleetCounter {
        FleetCounter {
            meter,
            system_title,
            key_check,
            counter,
            tag,
        }
    }
}

impl std::fmt::Debug for FleetCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetCounter")
            .field("meter", &self.meter)
            .field(
                "system_title",
                &smarty_p1::hex::upper(&self.system_title).to_string(),
            )
            .field("key_check", &self.key_check)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Adds `(meter, reason, count)` to the rejections kept per meter and reason, in one
    /// statement (the workers' counts of a batch); `last_at` becomes now.
    ///
    /// # Errors
    /// An SQLite store, database errors.
    pub fn add_fleet_rejections(&self, counts: &[(String, String, u64)]) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        let meters: Vec<&str> = counts.iter().map(|(m, _, _)| m.as_str()).collect();
        let reasons: Vec<&str> = counts.iter().map(|(_, r, _)| r.as_str()).collect();
        let ns: Vec<i64> = counts
            .iter()
            .map(|(_, _, n)| i64::try_from(*n).unwrap_or(i64::MAX))
            .collect();
        self.fleet_client(move |client| {
            // Sorted, so that two workers upserting at once take the rows in one order.
            client.execute(
                "INSERT INTO fleet_rejection (meter, reason, count, last_at)
                 SELECT m, r, sum(n), now() FROM unnest($1::text[], $2::text[], $3::int8[]) AS u (m, r, n)
                 GROUP BY m, r ORDER BY m, r
                 ON CONFLICT (meter, reason) DO UPDATE SET
                   count = fleet_rejection.count + excluded.count, last_at = excluded.last_at",
                &[&meters, &reasons, &ns],
            )?;
            Ok(())
        })
    }

    /// The rejections kept per meter and reason, by meter and reason. An SQLite store (one
    /// household, no fleet) has none.
    ///
    /// # Errors
    /// Database errors.
    pub fn fleet_rejections(&self) -> Result<Vec<FleetRejection>, StoreError> {
        if matches!(self.inner.config.location, Location::Sqlite(_)) {
            return Ok(Vec::new());
        }
        self.fleet_client(|client| {
            Ok(client
                .query(
                    "SELECT meter, reason, count, last_at FROM fleet_rejection ORDER BY meter, reason",
                    &[],
                )?
                .iter()
                .map(|row| FleetRejection {
                    meter: row.get(0),
                    reason: row.get(1),
                    count: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
                    last_at: row.get(3),
                })
                .collect())
        })
    }

    /// The last accepted frame of every meter of the fleet (under whichever key).
    ///
    /// # Errors
    /// An SQLite store, database errors.
    pub fn fleet_counters(&self) -> Result<Vec<FleetCounter>, StoreError> {
        self.fleet_client(|client| {
            Ok(client
                .query(
                    "SELECT meter, system_title, key_check, counter, tag FROM frame_counter
                     ORDER BY meter, system_title",
                    &[],
                )?
                .iter()
                .filter_map(|row| {
                    let title: String = row.get(1);
                    Some(FleetCounter {
                        meter: row.get(0),
                        system_title: smarty_p1::hex::decode(&title).ok()?.try_into().ok()?,
                        key_check: row.get(2),
                        counter: u32::try_from(row.get::<_, i64>(3)).ok()?,
                        tag: row.get(4),
                    })
                })
                .collect())
        })
    }

    /// Saves the last accepted frame of meters, in one statement: a counter never goes back
    /// (whichever worker saves first), and the tag goes with the counter; a counter saved
    /// under another key is replaced.
    ///
    /// # Errors
    /// An SQLite store, database errors (the caller saves again after its next batch).
    pub fn save_fleet_counters(&self, counters: &[FleetCounter]) -> Result<(), StoreError> {
        if counters.is_empty() {
            return Ok(());
        }
        let counters = counters.to_vec();
        self.fleet_client(move |client| save_counters(client, &counters))
    }
}

/// [`Store::save_fleet_counters`] on a client or in a transaction (the writer's, with the
/// readings of the frames: [`crate::writer::Writer::flush_with_counters`]).
///
/// # Errors
/// Database errors.
pub(crate) fn save_counters(
    client: &mut impl postgres::GenericClient,
    counters: &[FleetCounter],
) -> Result<(), StoreError> {
    if counters.is_empty() {
        return Ok(());
    }
    let mut sorted: Vec<&FleetCounter> = counters.iter().collect();
    sorted.sort_by(|a, b| (&a.meter, a.system_title).cmp(&(&b.meter, b.system_title)));
    sorted.dedup_by(|a, b| a.meter == b.meter && a.system_title == b.system_title);
    let meters: Vec<&str> = sorted.iter().map(|c| c.meter.as_str()).collect();
    let titles: Vec<String> = sorted
        .iter()
        .map(|c| smarty_p1::hex::upper(&c.system_title).to_string())
        .collect();
    let checks: Vec<&str> = sorted.iter().map(|c| c.key_check.as_str()).collect();
    let values: Vec<i64> = sorted.iter().map(|c| i64::from(c.counter)).collect();
    let tags: Vec<Option<&[u8]>> = sorted.iter().map(|c| c.tag.as_deref()).collect();
    client.execute(
        "INSERT INTO frame_counter (meter, system_title, key_check, counter, tag)
         SELECT m, t, k, c, g FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::bytea[])
           AS u (m, t, k, c, g)
         ON CONFLICT (meter, system_title) DO UPDATE SET
           counter = CASE WHEN frame_counter.key_check = excluded.key_check
             THEN greatest(frame_counter.counter, excluded.counter) ELSE excluded.counter END,
           tag = CASE WHEN frame_counter.key_check <> excluded.key_check
               OR excluded.counter >= frame_counter.counter
             THEN excluded.tag ELSE frame_counter.tag END,
           key_check = excluded.key_check, updated_at = now()",
        &[&meters, &titles, &checks, &values, &tags],
    )?;
    Ok(())
}

impl Store {
    /// Asks the database a trivial question (`SELECT 1`), for health checks.
    ///
    /// # Errors
    /// An SQLite store, the database cannot be reached.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.fleet_client(|client| {
            client.query_one("SELECT 1", &[])?;
            Ok(())
        })
    }
}
