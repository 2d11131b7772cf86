//! The tables and their versioned migrations.
//!
//! `PRAGMA user_version` holds the schema version of a file. Opening a store applies every
//! step above it, each in its own transaction (the version is set inside that transaction,
//! so a crash leaves the file at the previous or the next version, never between). A file of
//! a newer version than this program knows is refused.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::StoreError;

/// One migration step: brings a file from `version - 1` to `version`.
pub struct Migration {
    /// The version after this step.
    pub version: u32,
    /// What the step does, for logs.
    pub description: &'static str,
    /// The step.
    pub apply: fn(&Transaction<'_>) -> rusqlite::Result<()>,
}

/// Every step, in order. Never change a released step: add one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "meters, raw reading blocks, 15-minute and daily aggregates",
        apply: v1,
    },
    Migration {
        version: 2,
        description: "M-Bus channels and readings",
        apply: v2,
    },
    Migration {
        version: 3,
        description: "the frame counters of meters that reject replayed frames",
        apply: v3,
    },
];

/// The version this program writes.
pub fn latest() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Energy registers of version 1 (each has `X` = energy of the period, `X_first`, `X_last` in
/// the aggregates).
pub const V1_ENERGY: [&str; 8] = [
    "energy_import_wh",
    "energy_export_wh",
    "energy_import_t1_wh",
    "energy_import_t2_wh",
    "energy_export_t1_wh",
    "energy_export_t2_wh",
    "reactive_energy_import_varh",
    "reactive_energy_export_varh",
];

/// Instantaneous columns of version 1 (each has `X_sum`, `X_n`, `X_min`, `X_max` in the
/// aggregates).
pub const V1_INSTANT: [&str; 16] = [
    "power_import_w",
    "power_export_w",
    "power_import_l1_w",
    "power_import_l2_w",
    "power_import_l3_w",
    "power_export_l1_w",
    "power_export_l2_w",
    "power_export_l3_w",
    "reactive_power_import_var",
    "reactive_power_export_var",
    "voltage_l1_dv",
    "voltage_l2_dv",
    "voltage_l3_dv",
    "current_l1_ca",
    "current_l2_ca",
    "current_l3_ca",
];

/// The value columns of an aggregate table.
fn aggregate_columns() -> String {
    let mut sql = String::new();
    for c in V1_ENERGY {
        sql.push_str(&format!(
            ",\n  {c} INTEGER, {c}_first INTEGER, {c}_last INTEGER"
        ));
    }
    for c in V1_INSTANT {
        sql.push_str(&format!(
            ",\n  {c}_sum INTEGER, {c}_n INTEGER NOT NULL DEFAULT 0, {c}_min INTEGER, {c}_max INTEGER"
        ));
    }
    sql
}

fn v1(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let columns = aggregate_columns();
    tx.execute_batch(&format!(
        "CREATE TABLE meter(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  meter_id TEXT
);
-- Raw readings: one row per meter and 5 minutes, the readings packed column by column
-- (docs/storage.md).
CREATE TABLE raw_block(
  meter INTEGER NOT NULL REFERENCES meter(id),
  start INTEGER NOT NULL,
  n INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY(meter, start)
);
CREATE TABLE agg_15m(
  meter INTEGER NOT NULL REFERENCES meter(id),
  start INTEGER NOT NULL,
  n INTEGER NOT NULL,
  first_ts INTEGER NOT NULL,
  last_ts INTEGER NOT NULL{columns},
  PRIMARY KEY(meter, start)
) WITHOUT ROWID;
CREATE TABLE agg_day(
  meter INTEGER NOT NULL REFERENCES meter(id),
  start INTEGER NOT NULL,
  day TEXT NOT NULL,
  periods INTEGER NOT NULL,
  n INTEGER NOT NULL,
  first_ts INTEGER NOT NULL,
  last_ts INTEGER NOT NULL{columns},
  PRIMARY KEY(meter, start)
) WITHOUT ROWID;"
    ))
}

fn v2(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE mbus_channel(
  meter INTEGER NOT NULL REFERENCES meter(id),
  channel INTEGER NOT NULL,
  medium TEXT NOT NULL,
  unit TEXT NOT NULL,
  PRIMARY KEY(meter, channel)
) WITHOUT ROWID;
CREATE TABLE mbus_reading(
  meter INTEGER NOT NULL,
  channel INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  value_milli INTEGER NOT NULL,
  PRIMARY KEY(meter, channel, ts)
) WITHOUT ROWID;",
    )
}

fn v3(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE frame_counter(
  meter TEXT NOT NULL,
  system_title TEXT NOT NULL,
  key_check TEXT NOT NULL,
  counter INTEGER NOT NULL,
  PRIMARY KEY(meter, system_title)
) WITHOUT ROWID;",
    )
}

/// The file's schema version.
///
/// # Errors
/// SQLite errors.
pub fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Applies the steps above the file's version up to `target`, each in one transaction.
///
/// # Errors
/// [`StoreError::Migration`] for a file newer than `target` or a step that fails.
pub fn migrate_to(conn: &mut Connection, target: u32) -> Result<(), StoreError> {
    let current = version(conn)?;
    if current > latest() {
        return Err(StoreError::Migration {
            version: current,
            reason: format!(
                "the file was written by a newer smarty (this one knows versions up to {}); \
                 upgrade smarty",
                latest()
            ),
        });
    }
    for step in MIGRATIONS
        .iter()
        .filter(|m| m.version > current && m.version <= target)
    {
        let fail = |e: rusqlite::Error| StoreError::Migration {
            version: step.version,
            reason: format!("{} failed: {e}", step.description),
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        // Another process may have migrated meanwhile.
        if version(&tx).map_err(fail)? >= step.version {
            continue;
        }
        (step.apply)(&tx).map_err(fail)?;
        tx.pragma_update(None, "user_version", step.version)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        if current > 0 {
            tracing::info!(
                "store: migrated to version {}: {}",
                step.version,
                step.description
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{Aggregation, COLUMNS};

    #[test]
    fn the_current_columns_are_those_of_the_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, latest()).unwrap();
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('agg_15m')")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for column in COLUMNS {
            let wanted: Vec<String> = match column.aggregation {
                Aggregation::Energy => vec![
                    column.name.into(),
                    format!("{}_first", column.name),
                    format!("{}_last", column.name),
                ],
                Aggregation::Instant => ["sum", "n", "min", "max"]
                    .iter()
                    .map(|s| format!("{}_{s}", column.name))
                    .collect(),
            };
            for name in wanted {
                assert!(columns.contains(&name), "agg_15m lacks {name}");
            }
        }
        assert_eq!(version(&conn).unwrap(), latest());
    }

    #[test]
    fn a_newer_file_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", latest() + 1)
            .unwrap();
        let err = migrate_to(&mut conn, latest()).unwrap_err();
        assert!(matches!(err, StoreError::Migration { .. }), "{err}");
        assert!(err.to_string().contains("newer smarty"), "{err}");
    }
}
