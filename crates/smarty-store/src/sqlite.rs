//! The SQLite backend's statements ([`Db`] over a `rusqlite` connection or transaction): raw
//! readings packed in 5-minute blocks ([`crate::block`]), aggregates and M-Bus readings in
//! plain tables ([`crate::schema`]).

use jiff::civil::Date;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row as SqlRow, params_from_iter};

use crate::StoreError;
use crate::aggregate::{Agg, select_list, sql_columns};
use crate::block::{self, BLOCK_S, Row};
use crate::db::{AggColumn, AggTable, Db, DbResult};
use crate::query::{MbusChannel, StoredMeter};
use crate::reading::{Aggregation, COLUMNS};
use smarty_model::period::{INTERVAL_S, Interval};

/// The statements of [`Db`] on one SQLite connection (a transaction derefs to one).
pub(crate) struct SqliteDb<'c>(pub(crate) &'c Connection);

/// Reads an [`Agg`] from a row selected with [`select_list`].
fn agg_from_sql(row: &SqlRow<'_>) -> rusqlite::Result<Agg> {
    let mut agg = Agg::empty(row.get(0)?);
    agg.n = row.get(1)?;
    agg.first_ts = row.get(2)?;
    agg.last_ts = row.get(3)?;
    let mut i = 4;
    for (c, column) in COLUMNS.iter().enumerate() {
        match column.aggregation {
            Aggregation::Energy => {
                agg.energy[c] = row.get(i)?;
                agg.first[c] = row.get(i + 1)?;
                agg.last[c] = row.get(i + 2)?;
                i += 3;
            }
            Aggregation::Instant => {
                agg.sum[c] = row.get(i)?;
                agg.count[c] = row.get(i + 1)?;
                agg.min[c] = row.get(i + 2)?;
                agg.max[c] = row.get(i + 3)?;
                i += 4;
            }
        }
    }
    Ok(agg)
}

/// The values of an [`Agg`] in [`select_list`] order.
fn agg_values(agg: &Agg) -> Vec<Value> {
    let opt = |v: Option<i64>| v.map_or(Value::Null, Value::Integer);
    let mut out = vec![
        Value::Integer(agg.start),
        Value::Integer(agg.n),
        Value::Integer(agg.first_ts),
        Value::Integer(agg.last_ts),
    ];
    for (c, column) in COLUMNS.iter().enumerate() {
        match column.aggregation {
            Aggregation::Energy => {
                out.push(opt(agg.energy[c]));
                out.push(opt(agg.first[c]));
                out.push(opt(agg.last[c]));
            }
            Aggregation::Instant => {
                out.push(opt(agg.sum[c]));
                out.push(Value::Integer(agg.count[c]));
                out.push(opt(agg.min[c]));
                out.push(opt(agg.max[c]));
            }
        }
    }
    out
}

impl SqliteDb<'_> {
    /// The blocks of `meter` starting in `[from, to)`, decoded, by start.
    fn blocks(&self, meter: i64, from: i64, to: i64) -> DbResult<Vec<(i64, Vec<u8>)>> {
        let mut statement = self.0.prepare_cached(
            "SELECT start, data FROM raw_block WHERE meter = ?1 AND start >= ?2 AND start < ?3
             ORDER BY start",
        )?;
        let rows = statement.query_map((meter, from, to), |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Writes the blocks of a period whose rows changed from `before` to `after`.
    fn write_blocks(&self, meter: i64, period: i64, before: &[Row], after: &[Row]) -> DbResult<()> {
        let mut start = period;
        while start < period + INTERVAL_S {
            let in_block = |rows: &[Row]| -> Vec<Row> {
                rows.iter()
                    .filter(|r| block::block_start(r.ts) == start)
                    .copied()
                    .collect()
            };
            let (old, new) = (in_block(before), in_block(after));
            if old != new && !new.is_empty() {
                self.0
                    .prepare_cached(
                        "INSERT INTO raw_block (meter, start, n, data) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (meter, start) DO UPDATE SET n = excluded.n, data = excluded.data",
                    )?
                    .execute((meter, start, new.len() as i64, block::encode(&new)))?;
            }
            start += BLOCK_S;
        }
        Ok(())
    }
}

fn corrupt(meter: i64, start: i64, reason: String) -> StoreError {
    StoreError::Corrupt {
        meter: meter.to_string(),
        start,
        reason,
    }
}

impl Db for SqliteDb<'_> {
    fn meter_upsert(
        &mut self,
        name: &str,
        sent_id: Option<&str>,
    ) -> DbResult<(i64, Option<String>)> {
        let conn = self.0;
        conn.prepare_cached("INSERT OR IGNORE INTO meter (name, meter_id) VALUES (?1, ?2)")?
            .execute((name, sent_id))?;
        if sent_id.is_some() {
            conn.prepare_cached(
                "UPDATE meter SET meter_id = ?2 WHERE name = ?1 AND meter_id IS NOT ?2",
            )?
            .execute((name, sent_id))?;
        }
        Ok(conn
            .prepare_cached("SELECT id, meter_id FROM meter WHERE name = ?1")?
            .query_row([name], |row| Ok((row.get(0)?, row.get(1)?)))?)
    }

    fn meter_by_name(&mut self, name: &str) -> DbResult<Option<i64>> {
        Ok(self
            .0
            .prepare_cached("SELECT id FROM meter WHERE name = ?1")?
            .query_row([name], |row| row.get(0))
            .optional()?)
    }

    fn meters(&mut self, name: Option<&str>) -> DbResult<Vec<(i64, StoredMeter)>> {
        let mut statement = self.0.prepare_cached(
            "SELECT id, name, meter_id,
               (SELECT first_ts FROM agg_15m WHERE meter = m.id ORDER BY start LIMIT 1),
               (SELECT last_ts FROM agg_15m WHERE meter = m.id ORDER BY start DESC LIMIT 1)
             FROM meter AS m WHERE ?1 IS NULL OR name = ?1 ORDER BY name",
        )?;
        let rows = statement.query_map([name], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                StoredMeter {
                    name: row.get(1)?,
                    meter_id: row.get(2)?,
                    first_reading: row.get(3)?,
                    last_reading: row.get(4)?,
                    mbus: Vec::new(),
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn lock_meter(&mut self, _meter: i64) -> DbResult<()> {
        // The writer's lock and the IMMEDIATE transaction keep every other writer off.
        Ok(())
    }

    fn raw_rows(&mut self, meter: i64, from: i64, to: i64) -> DbResult<Vec<Row>> {
        let mut rows = Vec::new();
        for (start, data) in self.blocks(meter, block::block_start(from), to)? {
            let decoded = block::decode(&data).map_err(|reason| corrupt(meter, start, reason))?;
            rows.extend(decoded.into_iter().filter(|r| r.ts >= from && r.ts < to));
        }
        Ok(rows)
    }

    fn add_rows(
        &mut self,
        meter: i64,
        periods: &[(i64, &[Row], &[Row])],
    ) -> DbResult<Vec<(usize, Vec<Row>)>> {
        let mut out = Vec::with_capacity(periods.len());
        for &(period, before, new) in periods {
            let mut rows = before.to_vec();
            let added = block::merge(&mut rows, new);
            if added > 0 {
                self.write_blocks(meter, period, before, &rows)?;
            }
            out.push((added, rows));
        }
        Ok(out)
    }

    fn raw_count(&mut self, meter: i64, from: i64, to: i64) -> DbResult<i64> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT coalesce(sum(n), 0) FROM raw_block WHERE meter = ?1 AND start >= ?2
                 AND start < ?3",
            )?
            .query_row((meter, block::block_start(from), to), |row| row.get(0))?)
    }

    fn raw_column(
        &mut self,
        meter: i64,
        c: usize,
        from: i64,
        to: i64,
    ) -> DbResult<Vec<(i64, i64)>> {
        let mut statement = self.0.prepare_cached(
            "SELECT start, data FROM raw_block WHERE meter = ?1 AND start >= ?2 AND start < ?3
             ORDER BY start",
        )?;
        let mut blocks = statement.query((meter, block::block_start(from), to))?;
        let mut out = Vec::new();
        while let Some(row) = blocks.next()? {
            let start: i64 = row.get(0)?;
            let data = match row.get_ref(1)? {
                rusqlite::types::ValueRef::Blob(data) => data,
                _ => &[],
            };
            let values =
                block::decode_column(data, c).map_err(|reason| corrupt(meter, start, reason))?;
            out.extend(values.into_iter().filter(|(ts, _)| (from..to).contains(ts)));
        }
        Ok(out)
    }

    fn raw_column_before(
        &mut self,
        meter: i64,
        c: usize,
        before: i64,
    ) -> DbResult<Option<(i64, i64)>> {
        // The block holding `before` and the twelve before it (an hour), newest first, until
        // one has the value.
        let mut statement = self.0.prepare_cached(
            "SELECT start, data FROM raw_block WHERE meter = ?1 AND start < ?2
             ORDER BY start DESC LIMIT 13",
        )?;
        let mut blocks = statement.query((meter, before))?;
        while let Some(row) = blocks.next()? {
            let start: i64 = row.get(0)?;
            let data: Vec<u8> = row.get(1)?;
            let values =
                block::decode_column(&data, c).map_err(|reason| corrupt(meter, start, reason))?;
            if let Some(last) = values.into_iter().rfind(|(ts, _)| *ts < before) {
                return Ok(Some(last));
            }
        }
        Ok(None)
    }

    fn prune_raw(&mut self, cutoff: i64) -> DbResult<u64> {
        let readings: i64 = self.0.query_row(
            "SELECT COALESCE(SUM(n), 0) FROM raw_block WHERE start < ?1",
            [cutoff],
            |row| row.get(0),
        )?;
        self.0
            .execute("DELETE FROM raw_block WHERE start < ?1", [cutoff])?;
        Ok(u64::try_from(readings).unwrap_or(0))
    }

    fn agg_starts(&mut self, meter: i64, from: i64, to: i64) -> DbResult<Vec<i64>> {
        let mut statement = self.0.prepare_cached(
            "SELECT start FROM agg_15m WHERE meter = ?1 AND start >= ?2 AND start < ?3",
        )?;
        let rows = statement.query_map((meter, from, to), |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn write_15m(&mut self, meter: i64, aggs: &[Agg]) -> DbResult<()> {
        let sql = format!(
            "INSERT OR REPLACE INTO agg_15m (meter, {}) VALUES (?{})",
            select_list(),
            ", ?".repeat(sql_columns().len() + 4)
        );
        let mut statement = self.0.prepare_cached(&sql)?;
        for agg in aggs {
            let mut params = vec![Value::Integer(meter)];
            params.extend(agg_values(agg));
            statement.execute(params_from_iter(params))?;
        }
        Ok(())
    }

    fn write_day(&mut self, meter: i64, day: Date, periods: usize, agg: &Agg) -> DbResult<()> {
        let sql = format!(
            "INSERT OR REPLACE INTO agg_day (meter, day, periods, {}) VALUES (?, ?, ?{})",
            select_list(),
            ", ?".repeat(sql_columns().len() + 4)
        );
        let mut params = vec![
            Value::Integer(meter),
            Value::Text(day.to_string()),
            Value::Integer(periods as i64),
        ];
        params.extend(agg_values(agg));
        self.0
            .prepare_cached(&sql)?
            .execute(params_from_iter(params))?;
        Ok(())
    }

    fn delete_day(&mut self, meter: i64, start: i64) -> DbResult<()> {
        self.0
            .prepare_cached("DELETE FROM agg_day WHERE meter = ?1 AND start = ?2")?
            .execute((meter, start))?;
        Ok(())
    }

    fn read_aggs(&mut self, table: AggTable, meter: i64, from: i64, to: i64) -> DbResult<Vec<Agg>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE meter = ?1 AND start >= ?2 AND start < ?3 ORDER BY start",
            select_list(),
            table.name()
        );
        let mut statement = self.0.prepare_cached(&sql)?;
        let rows = statement.query_map((meter, from, to), agg_from_sql)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn last_15m_before(&mut self, meter: i64, before: i64) -> DbResult<Option<Agg>> {
        Ok(self
            .0
            .prepare_cached(&format!(
                "SELECT {} FROM agg_15m WHERE meter = ?1 AND start < ?2 ORDER BY start DESC LIMIT 1",
                select_list()
            ))?
            .query_row((meter, before), agg_from_sql)
            .optional()?)
    }

    fn page_15m(&mut self, meter: i64, from: i64, limit: usize) -> DbResult<Vec<Agg>> {
        let sql = format!(
            "SELECT {} FROM agg_15m WHERE meter = ?1 AND start >= ?2 ORDER BY start LIMIT ?3",
            select_list()
        );
        let mut statement = self.0.prepare_cached(&sql)?;
        let rows = statement.query_map((meter, from, limit as i64), agg_from_sql)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn count_15m(&mut self, meter: i64, from: i64, to: i64) -> DbResult<i64> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT count(*) FROM agg_15m WHERE meter = ?1 AND start >= ?2 AND start < ?3",
            )?
            .query_row((meter, from, to), |row| row.get(0))?)
    }

    fn agg_column(
        &mut self,
        table: AggTable,
        meter: i64,
        c: usize,
        from: i64,
        to: i64,
    ) -> DbResult<Vec<(i64, AggColumn)>> {
        let name = COLUMNS[c].name;
        let fields = match COLUMNS[c].aggregation {
            Aggregation::Energy => format!("{name}, NULL, 0, NULL, NULL"),
            Aggregation::Instant => format!("NULL, {name}_sum, {name}_n, {name}_min, {name}_max"),
        };
        let mut statement = self.0.prepare_cached(&format!(
            "SELECT start, {fields} FROM {} WHERE meter = ?1 AND start >= ?2 AND start < ?3
             ORDER BY start",
            table.name()
        ))?;
        let rows = statement.query_map((meter, from, to), |row| {
            Ok((
                row.get::<_, i64>(0)?,
                AggColumn {
                    energy: row.get(1)?,
                    sum: row.get(2)?,
                    n: row.get(3)?,
                    min: row.get(4)?,
                    max: row.get(5)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn intervals(&mut self, meter: i64, from: i64, to: i64) -> DbResult<Vec<Interval>> {
        // Only the three columns it needs: a year is 35,000 rows of a wide table.
        let mut statement = self.0.prepare_cached(
            "SELECT start, energy_import_wh, energy_export_wh FROM agg_15m \
             WHERE meter = ?1 AND start >= ?2 AND start < ?3 ORDER BY start",
        )?;
        let rows = statement.query_map((meter, from, to), |row| {
            Ok(Interval {
                start: row.get(0)?,
                energy_import_wh: row.get::<_, Option<i64>>(1)?.unwrap_or(0),
                energy_export_wh: row.get::<_, Option<i64>>(2)?.unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn frame_counters(&mut self, meter: &str, key_check: &str) -> DbResult<Vec<(String, i64)>> {
        let mut statement = self.0.prepare_cached(
            "SELECT system_title, counter FROM frame_counter WHERE meter = ?1 AND key_check = ?2
             ORDER BY system_title",
        )?;
        let rows = statement.query_map((meter, key_check), |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn save_frame_counters(
        &mut self,
        meter: &str,
        key_check: &str,
        counters: &[(String, i64)],
    ) -> DbResult<()> {
        self.0
            .prepare_cached("DELETE FROM frame_counter WHERE meter = ?1 AND key_check != ?2")?
            .execute((meter, key_check))?;
        let mut statement = self.0.prepare_cached(
            "INSERT INTO frame_counter (meter, system_title, key_check, counter) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (meter, system_title) DO UPDATE SET
             counter = CASE WHEN key_check = excluded.key_check
                 THEN max(counter, excluded.counter) ELSE excluded.counter END,
             key_check = excluded.key_check",
        )?;
        for (title, counter) in counters {
            statement.execute((meter, title, key_check, counter))?;
        }
        Ok(())
    }

    fn mbus_channels(&mut self, meter: i64) -> DbResult<Vec<MbusChannel>> {
        let mut statement = self.0.prepare_cached(
            "SELECT channel, medium, unit FROM mbus_channel WHERE meter = ?1 ORDER BY channel",
        )?;
        let rows = statement.query_map([meter], |row| {
            Ok(MbusChannel {
                channel: row.get(0)?,
                medium: row.get(1)?,
                unit: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn mbus_channel_upsert(
        &mut self,
        meter: i64,
        channel: u8,
        medium: &str,
        unit: &str,
    ) -> DbResult<()> {
        self.0
            .prepare_cached(
                "INSERT INTO mbus_channel (meter, channel, medium, unit) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (meter, channel) DO UPDATE SET medium = excluded.medium, unit = excluded.unit
                 WHERE medium != excluded.medium OR unit != excluded.unit",
            )?
            .execute((meter, channel, medium, unit))?;
        Ok(())
    }

    fn mbus_insert(&mut self, meter: i64, channel: u8, ts: i64, value_milli: i64) -> DbResult<u64> {
        Ok(self
            .0
            .prepare_cached(
                "INSERT OR IGNORE INTO mbus_reading (meter, channel, ts, value_milli) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute((meter, channel, ts, value_milli))? as u64)
    }

    fn mbus_before(
        &mut self,
        meter: i64,
        channel: u8,
        before: i64,
    ) -> DbResult<Option<(i64, i64)>> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT ts, value_milli FROM mbus_reading WHERE meter = ?1 AND channel = ?2 AND ts < ?3
                 ORDER BY ts DESC LIMIT 1",
            )?
            .query_row((meter, channel, before), |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?)
    }

    fn mbus_at_or_after(
        &mut self,
        meter: i64,
        channel: u8,
        at: i64,
    ) -> DbResult<Option<(i64, i64)>> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT ts, value_milli FROM mbus_reading WHERE meter = ?1 AND channel = ?2 AND ts >= ?3
                 ORDER BY ts LIMIT 1",
            )?
            .query_row((meter, channel, at), |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?)
    }

    fn mbus_range(
        &mut self,
        meter: i64,
        channel: u8,
        from: i64,
        to: i64,
    ) -> DbResult<Vec<(i64, i64)>> {
        let mut statement = self.0.prepare_cached(
            "SELECT ts, value_milli FROM mbus_reading WHERE meter = ?1 AND channel = ?2
             AND ts >= ?3 AND ts < ?4 ORDER BY ts",
        )?;
        let rows = statement.query_map((meter, channel, from, to), |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn mbus_edge(
        &mut self,
        meter: i64,
        channel: u8,
        from: i64,
        to: i64,
        last: bool,
    ) -> DbResult<Option<i64>> {
        // Two look-ups: MIN and MAX together would scan every capture.
        let order = if last { "DESC" } else { "ASC" };
        Ok(self
            .0
            .prepare_cached(&format!(
                "SELECT ts FROM mbus_reading WHERE meter = ?1 AND channel = ?2
                 AND ts >= ?3 AND ts < ?4 ORDER BY ts {order} LIMIT 1"
            ))?
            .query_row((meter, channel, from, to), |row| row.get(0))
            .optional()?)
    }

    fn mbus_count(&mut self, meter: i64, channel: u8, from: i64, to: i64) -> DbResult<i64> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT count(*) FROM mbus_reading WHERE meter = ?1 AND channel = ?2
                 AND ts >= ?3 AND ts < ?4",
            )?
            .query_row((meter, channel, from, to), |row| row.get(0))?)
    }
}
