//! The writer: buffers readings and commits them with their aggregates in one transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::aggregate::{self, Agg};
use super::block::{self, BLOCK_S, Row};
use super::lock::WriterLock;
use super::reading::{MbusRecord, Reading};
use super::{StoreConfig, StoreError};
use smarty_model::period::INTERVAL_S;
use smarty_model::period::interval_start;

/// What a writer wrote since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteTotals {
    /// Readings added.
    pub readings: u64,
    /// Readings left out because the store already had one of that meter at that time (or
    /// their period was aggregated and its raw readings pruned already).
    pub duplicates: u64,
    /// M-Bus readings added (repeated capture times are not counted).
    pub mbus: u64,
}

/// The one connection that writes: buffers readings ([`Writer::push`]) and commits them with
/// their aggregates ([`Writer::flush`]).
pub struct Writer {
    conn: Connection,
    config: StoreConfig,
    zone: TimeZone,
    readings: Vec<Reading>,
    mbus: Vec<MbusRecord>,
    last_flush: Instant,
    meters: HashMap<Arc<str>, (i64, Option<String>)>,
    totals: WriteTotals,
    /// The writer's lock, held as long as the writer lives.
    _lock: Arc<WriterLock>,
}

impl Writer {
    pub(super) fn new(conn: Connection, config: StoreConfig, lock: Arc<WriterLock>) -> Writer {
        Writer {
            conn,
            config,
            zone: smarty_model::time::meter_zone(),
            readings: Vec::new(),
            mbus: Vec::new(),
            last_flush: Instant::now(),
            meters: HashMap::new(),
            totals: WriteTotals::default(),
            _lock: lock,
        }
    }

    #[cfg(test)]
    pub(super) fn conn_for_tests(&self) -> &Connection {
        &self.conn
    }

    /// Buffers a reading until the next [`Writer::flush`].
    pub fn push(&mut self, reading: Reading) {
        self.readings.push(reading);
    }

    /// Buffers an M-Bus reading until the next [`Writer::flush`].
    pub fn push_mbus(&mut self, reading: MbusRecord) {
        self.mbus.push(reading);
    }

    /// Readings and M-Bus readings waiting for [`Writer::flush`].
    pub fn buffered(&self) -> usize {
        self.readings.len() + self.mbus.len()
    }

    /// What this writer wrote so far.
    pub fn totals(&self) -> WriteTotals {
        self.totals
    }

    /// `true` when the commit interval has passed since the last flush and something is
    /// buffered.
    pub fn due(&self) -> bool {
        self.buffered() > 0 && self.last_flush.elapsed() >= self.config.commit_interval
    }

    /// Time until [`Writer::due`] can become true.
    pub fn until_due(&self) -> Duration {
        self.config
            .commit_interval
            .saturating_sub(self.last_flush.elapsed())
    }

    /// Commits the buffer in one transaction: the raw readings (readings of a meter at a time
    /// already stored are left out), the 15-minute and daily aggregates of every period they
    /// touch (and the energy of the next stored period, whose starting point may have moved),
    /// and the M-Bus readings (one per capture time). Returns the rows written: readings plus
    /// M-Bus readings added.
    ///
    /// A period whose raw readings were pruned already keeps its aggregate: readings for it
    /// are counted as duplicates.
    ///
    /// On error nothing is written and the buffer is kept for the next attempt.
    ///
    /// # Errors
    /// SQLite errors (a full disk, a locked file).
    pub fn flush(&mut self) -> Result<usize, StoreError> {
        if self.buffered() == 0 {
            self.last_flush = Instant::now();
            return Ok(0);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut ids = HashMap::new();
        for reading in &self.readings {
            if !ids.contains_key(&reading.meter) {
                let id = meter_id(
                    &tx,
                    &mut self.meters,
                    &reading.meter,
                    reading.meter_id.as_deref(),
                )?;
                ids.insert(Arc::clone(&reading.meter), id);
            }
        }
        // Readings by meter and period, sorted by time.
        let mut groups: BTreeMap<(i64, i64), Vec<Row>> = BTreeMap::new();
        for reading in &self.readings {
            let id = ids[&reading.meter];
            groups
                .entry((id, interval_start(reading.ts)))
                .or_default()
                .push(Row {
                    ts: reading.ts,
                    values: reading.values(),
                });
        }
        let mut added = 0u64;
        let mut duplicates = 0u64;
        let mut touched: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
        for ((meter, period), mut new) in groups {
            new.sort_by_key(|r| r.ts);
            let mut rows = read_period(&tx, meter, period)?;
            if rows.is_empty() && aggregated(&tx, meter, period)? {
                // Raw readings pruned, the aggregate stays as it is.
                duplicates += new.len() as u64;
                continue;
            }
            let before: Vec<Row> = rows.clone();
            let n = block::merge(&mut rows, &new);
            added += n as u64;
            duplicates += (new.len() - n) as u64;
            if n == 0 {
                continue;
            }
            write_blocks(&tx, meter, period, &before, &rows)?;
            aggregate::write_15m(&tx, meter, &Agg::of_rows(period, &rows))?;
            touched.entry(meter).or_default().insert(period);
        }
        for (meter, periods) in &touched {
            let (Some(&first), Some(&last)) = (periods.first(), periods.last()) else {
                continue;
            };
            let changed = aggregate::settle(&tx, *meter, first, last)?;
            let days: BTreeSet<jiff::civil::Date> = periods
                .iter()
                .chain(&changed)
                .map(|&p| smarty_model::time::day_of(p, &self.zone))
                .collect();
            for day in days {
                aggregate::rebuild_day(&tx, *meter, day, &self.zone)?;
            }
        }
        let mut mbus_added = 0u64;
        for reading in &self.mbus {
            let meter = meter_id(&tx, &mut self.meters, &reading.meter, None)?;
            tx.prepare_cached(
                "INSERT INTO mbus_channel (meter, channel, medium, unit) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (meter, channel) DO UPDATE SET medium = excluded.medium, unit = excluded.unit
                 WHERE medium != excluded.medium OR unit != excluded.unit",
            )?
            .execute((
                meter,
                reading.channel,
                reading.medium_name(),
                reading.unit_name(),
            ))?;
            mbus_added += tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO mbus_reading (meter, channel, ts, value_milli) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute((
                    meter,
                    reading.channel,
                    reading.ts,
                    (reading.value * 1000.0).round() as i64,
                ))? as u64;
        }
        tx.commit()?;
        self.readings.clear();
        self.mbus.clear();
        self.last_flush = Instant::now();
        self.totals.readings += added;
        self.totals.duplicates += duplicates;
        self.totals.mbus += mbus_added;
        Ok((added + mbus_added) as usize)
    }

    /// Deletes the raw readings of the periods that ended `raw_retention_days` before `now`
    /// (Unix seconds); aggregates and M-Bus readings stay. Returns the readings deleted.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn prune(&mut self, now: i64) -> Result<u64, StoreError> {
        let Some(retention) = self.config.retention_s() else {
            return Ok(0);
        };
        let cutoff = interval_start(now - retention);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let meters: Vec<i64> = tx
            .prepare("SELECT id FROM meter")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let mut readings = 0i64;
        for meter in meters {
            readings += tx.query_row(
                "SELECT COALESCE(SUM(n), 0) FROM raw_block WHERE meter = ?1 AND start < ?2",
                (meter, cutoff),
                |row| row.get::<_, i64>(0),
            )?;
            tx.execute(
                "DELETE FROM raw_block WHERE meter = ?1 AND start < ?2",
                (meter, cutoff),
            )?;
        }
        tx.commit()?;
        Ok(readings as u64)
    }

    /// Recomputes the 15-minute and daily aggregates of the periods of `meter` from `from` to
    /// `to` (Unix seconds, `to` exclusive) from the raw readings, and the energies of the
    /// periods after them. Periods whose raw readings were pruned keep their aggregates.
    ///
    /// # Errors
    /// [`StoreError::UnknownMeter`], SQLite errors, or a damaged raw block.
    // [`Writer::flush`] keeps the aggregates up to date for readings in any order, so
    // `smarty import` does not need this; it repairs aggregates (and is tested).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn rebuild_aggregates(
        &mut self,
        meter: &str,
        from: i64,
        to: i64,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id: i64 = tx
            .query_row("SELECT id FROM meter WHERE name = ?1", [meter], |row| {
                row.get(0)
            })
            .optional()?
            .ok_or_else(|| StoreError::UnknownMeter(meter.to_owned()))?;
        let first = interval_start(from);
        let mut periods = BTreeSet::new();
        {
            let mut statement = tx.prepare(
                "SELECT start, data FROM raw_block WHERE meter = ?1 AND start >= ?2 AND start < ?3 ORDER BY start",
            )?;
            let mut blocks = statement.query((id, first, to))?;
            let mut current: Option<(i64, Vec<Row>)> = None;
            while let Some(row) = blocks.next()? {
                let start: i64 = row.get(0)?;
                let data: Vec<u8> = row.get(1)?;
                let rows = block::decode(&data).map_err(|reason| StoreError::Corrupt {
                    meter: meter.to_owned(),
                    start,
                    reason,
                })?;
                let period = interval_start(start);
                if current.as_ref().is_some_and(|(p, _)| *p != period)
                    && let Some((p, rows)) = current.take()
                {
                    aggregate::write_15m(&tx, id, &Agg::of_rows(p, &rows))?;
                    periods.insert(p);
                }
                current
                    .get_or_insert_with(|| (period, Vec::new()))
                    .1
                    .extend(rows);
            }
            if let Some((p, rows)) = current {
                aggregate::write_15m(&tx, id, &Agg::of_rows(p, &rows))?;
                periods.insert(p);
            }
        }
        if let (Some(&start), Some(&end)) = (periods.first(), periods.last()) {
            let changed = aggregate::settle(&tx, id, start, end)?;
            let days: BTreeSet<jiff::civil::Date> = periods
                .iter()
                .chain(&changed)
                .map(|&p| smarty_model::time::day_of(p, &self.zone))
                .collect();
            for day in days {
                aggregate::rebuild_day(&tx, id, day, &self.zone)?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// The id of a meter, created on first use; its meter id is updated when it changes.
fn meter_id(
    conn: &Connection,
    cache: &mut HashMap<Arc<str>, (i64, Option<String>)>,
    name: &Arc<str>,
    sent_id: Option<&str>,
) -> rusqlite::Result<i64> {
    if let Some((id, known)) = cache.get(name)
        && (sent_id.is_none() || known.as_deref() == sent_id)
    {
        return Ok(*id);
    }
    conn.prepare_cached("INSERT OR IGNORE INTO meter (name, meter_id) VALUES (?1, ?2)")?
        .execute((name.as_ref(), sent_id))?;
    if sent_id.is_some() {
        conn.prepare_cached(
            "UPDATE meter SET meter_id = ?2 WHERE name = ?1 AND meter_id IS NOT ?2",
        )?
        .execute((name.as_ref(), sent_id))?;
    }
    let (id, stored): (i64, Option<String>) = conn
        .prepare_cached("SELECT id, meter_id FROM meter WHERE name = ?1")?
        .query_row([name.as_ref()], |row| Ok((row.get(0)?, row.get(1)?)))?;
    cache.insert(Arc::clone(name), (id, stored));
    Ok(id)
}

/// The stored readings of a period, sorted by time.
fn read_period(conn: &Connection, meter: i64, period: i64) -> Result<Vec<Row>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT start, data FROM raw_block WHERE meter = ?1 AND start >= ?2 AND start < ?3 ORDER BY start",
    )?;
    let mut blocks = statement.query((meter, period, period + INTERVAL_S))?;
    let mut rows = Vec::new();
    while let Some(row) = blocks.next()? {
        let start: i64 = row.get(0)?;
        let data: Vec<u8> = row.get(1)?;
        rows.extend(block::decode(&data).map_err(|reason| StoreError::Corrupt {
            meter: meter.to_string(),
            start,
            reason,
        })?);
    }
    Ok(rows)
}

fn aggregated(conn: &Connection, meter: i64, period: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM agg_15m WHERE meter = ?1 AND start = ?2")?
        .exists((meter, period))
}

/// Writes the blocks of a period whose rows changed from `before` to `after`.
fn write_blocks(
    conn: &Connection,
    meter: i64,
    period: i64,
    before: &[Row],
    after: &[Row],
) -> rusqlite::Result<()> {
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
            conn.prepare_cached(
                "INSERT INTO raw_block (meter, start, n, data) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (meter, start) DO UPDATE SET n = excluded.n, data = excluded.data",
            )?
            .execute((meter, start, new.len() as i64, block::encode(&new)))?;
        }
        start += BLOCK_S;
    }
    Ok(())
}
