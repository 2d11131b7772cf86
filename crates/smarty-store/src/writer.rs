//! The writer: buffers readings and commits them with their aggregates in one transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::aggregate::{self, Agg};
use super::block::Row;
use super::connection::WriteConnection;
use super::db::{BatchDb, Db, DbResult};
use super::reading::{MbusRecord, Reading};
use super::{StoreConfig, StoreError};
use jiff::tz::TimeZone;
use smarty_model::period::{INTERVAL_S, interval_start};

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
    conn: WriteConnection,
    config: StoreConfig,
    zone: TimeZone,
    readings: Vec<Reading>,
    mbus: Vec<MbusRecord>,
    last_flush: Instant,
    meters: HashMap<Arc<str>, (i64, Option<String>)>,
    totals: WriteTotals,
}

impl Writer {
    pub(super) fn new(conn: WriteConnection, config: StoreConfig) -> Writer {
        Writer {
            conn,
            config,
            zone: smarty_model::time::meter_zone(),
            readings: Vec::new(),
            mbus: Vec::new(),
            last_flush: Instant::now(),
            meters: HashMap::new(),
            totals: WriteTotals::default(),
        }
    }

    #[cfg(test)]
    pub(super) fn conn_for_tests(&self) -> &rusqlite::Connection {
        match &self.conn {
            WriteConnection::Sqlite { conn, .. } => conn,
            #[allow(unreachable_patterns)] // PostgreSQL writers are not used by these tests
            _ => panic!("not an SQLite store"),
        }
    }

    /// Buffers a reading until the next [`Writer::flush`].
    pub fn push(&mut self, reading: Reading) {
        self.readings.push(reading);
    }

    /// Buffers an M-Bus reading until the next [`Writer::flush`].
    pub fn push_mbus(&mut self, reading: MbusRecord) {
        self.mbus.push(reading);
    }

    /// Takes the readings and M-Bus readings waiting for [`Writer::flush`] (to hold them
    /// elsewhere, [`crate::spill::Spill`]).
    pub fn take_buffered(&mut self) -> (Vec<Reading>, Vec<MbusRecord>) {
        (
            std::mem::take(&mut self.readings),
            std::mem::take(&mut self.mbus),
        )
    }

    /// Puts back readings taken with [`Writer::take_buffered`], before those buffered since.
    pub fn give_back(&mut self, mut readings: Vec<Reading>, mut mbus: Vec<MbusRecord>) {
        readings.append(&mut self.readings);
        mbus.append(&mut self.mbus);
        self.readings = readings;
        self.mbus = mbus;
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
        self.flush_with_counters(&[])
    }

    /// [`Writer::flush`], with the fleet's frame counters of the frames of these readings
    /// saved in the same transaction ([`crate::Store::save_fleet_counters`]: a counter never
    /// goes back, its tag goes with it): one commit for both.
    ///
    /// # Errors
    /// As [`Writer::flush`]; counters given to an SQLite store ([`StoreError::Config`]).
    pub fn flush_with_counters(
        &mut self,
        counters: &[crate::fleet::FleetCounter],
    ) -> Result<usize, StoreError> {
        if self.buffered() == 0 && counters.is_empty() {
            self.last_flush = Instant::now();
            return Ok(0);
        }
        let started = Instant::now();
        let buffered = self.readings.len();
        let times: BTreeSet<i64> = self.readings.iter().map(|r| r.ts).collect();
        self.conn.prepare_for(&times)?;
        let (readings, mbus, meters, zone) =
            (&self.readings, &self.mbus, &mut self.meters, &self.zone);
        let (added, duplicates, mbus_added) = self
            .conn
            .transaction(|db| {
                let written = write_batch(db, readings, mbus, meters, zone)?;
                if !counters.is_empty() {
                    db.as_batch()
                        .ok_or_else(|| {
                            StoreError::Config(
                                "the fleet keeps its frame counters in PostgreSQL".into(),
                            )
                        })?
                        .save_fleet_counters(counters)?;
                }
                Ok(written)
            })
            .inspect_err(|_| {
                // Meters created by the rolled-back transaction are not there.
                self.meters.clear();
            })?;
        self.readings.clear();
        self.mbus.clear();
        self.last_flush = Instant::now();
        self.totals.readings += added;
        self.totals.duplicates += duplicates;
        self.totals.mbus += mbus_added;
        // What bench/fleet.sh reads for the commit latency (RUST_LOG=smarty_store::writer=debug).
        tracing::debug!(
            readings = buffered,
            added,
            duplicates,
            commit_ms = started.elapsed().as_secs_f64() * 1000.0,
            "store: batch committed"
        );
        Ok((added + mbus_added) as usize)
    }

    /// Writes 15-minute aggregates as they are (a copy of another store's, [`crate::copy`])
    /// for meter `meter`, and rebuilds the daily aggregates of their days.
    ///
    /// # Errors
    /// Database errors.
    pub fn copy_aggregates(
        &mut self,
        meter: &str,
        meter_id: Option<&str>,
        periods: &[Agg],
    ) -> Result<(), StoreError> {
        let zone = &self.zone;
        let name: Arc<str> = Arc::from(meter);
        let meters = &mut self.meters;
        self.conn.transaction(|db| {
            let id = self::meter_id(db, meters, &name, meter_id)?;
            db.lock_meter(id)?;
            db.write_15m(id, periods)?;
            let days: BTreeSet<jiff::civil::Date> = periods
                .iter()
                .map(|p| smarty_model::time::day_of(p.start, zone))
                .collect();
            for day in days {
                aggregate::rebuild_day(db, id, day, zone)?;
            }
            Ok(())
        })
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
        self.conn.prune_raw(cutoff)
    }

    /// Recomputes the 15-minute and daily aggregates of the periods of `meter` from `from` to
    /// `to` (Unix seconds, `to` exclusive) from the raw readings, and the energies of the
    /// periods after them. Periods whose raw readings were pruned keep their aggregates.
    ///
    /// # Errors
    /// [`StoreError::UnknownMeter`], database errors, or a damaged raw block.
    // [`Writer::flush`] keeps the aggregates up to date for readings in any order, so
    // `smarty import` does not need this; it repairs aggregates (and is tested).
    pub fn rebuild_aggregates(
        &mut self,
        meter: &str,
        from: i64,
        to: i64,
    ) -> Result<(), StoreError> {
        let zone = &self.zone;
        self.conn.transaction(|db| {
            let id = db
                .meter_by_name(meter)?
                .ok_or_else(|| StoreError::UnknownMeter(meter.to_owned()))?;
            let first = interval_start(from);
            let mut pending = BTreeMap::new();
            let rows = db.raw_rows(id, first, to)?;
            let mut start = 0;
            while start < rows.len() {
                let period = interval_start(rows[start].ts);
                let end = rows[start..]
                    .iter()
                    .position(|r| interval_start(r.ts) != period)
                    .map_or(rows.len(), |n| start + n);
                pending.insert(period, Agg::of_rows(period, &rows[start..end]));
                start = end;
            }
            let periods: Vec<i64> = pending.keys().copied().collect();
            let written = aggregate::settle(db, id, pending)?;
            let days: BTreeSet<jiff::civil::Date> = periods
                .iter()
                .chain(&written)
                .map(|&p| smarty_model::time::day_of(p, zone))
                .collect();
            for day in days {
                aggregate::rebuild_day(db, id, day, zone)?;
            }
            Ok(())
        })
    }
}

/// Writes one batch inside a transaction (see [`Writer::flush`]): returns the readings added,
/// those left out as duplicates, and the M-Bus readings added.
fn write_batch(
    db: &mut dyn Db,
    readings: &[Reading],
    mbus: &[MbusRecord],
    meters: &mut HashMap<Arc<str>, (i64, Option<String>)>,
    zone: &TimeZone,
) -> DbResult<(u64, u64, u64)> {
    if let Some(batch) = db.as_batch() {
        return write_batch_setwise(batch, readings, mbus, meters, zone);
    }
    // Meters in the order of their names: writers that share a database lock them in the
    // same order, and never wait for each other in a circle.
    let mut names: BTreeMap<&Arc<str>, Option<&str>> = BTreeMap::new();
    for reading in readings {
        let sent = names.entry(&reading.meter).or_default();
        if reading.meter_id.is_some() {
            *sent = reading.meter_id.as_deref();
        }
    }
    let mut ids = HashMap::new();
    for (name, sent_id) in names {
        let id = meter_id(db, meters, name, sent_id)?;
        ids.insert(Arc::clone(name), id);
    }
    // Readings by meter and period, sorted by time.
    let groups = by_meter_and_period(readings, &ids);
    let mut added = 0u64;
    let mut duplicates = 0u64;
    for (meter, mut periods) in groups {
        db.lock_meter(meter)?;
        for rows in periods.values_mut() {
            rows.sort_by_key(|r| r.ts);
        }
        let (stored, aggregated) = stored_periods(db, meter, &periods)?;
        let mut batch: Vec<(i64, &[Row], &[Row])> = Vec::new();
        for (period, new) in &periods {
            let before = stored.get(period).map_or(&[][..], Vec::as_slice);
            if before.is_empty() && aggregated.contains(period) {
                // Raw readings pruned, the aggregate stays as it is.
                duplicates += new.len() as u64;
                continue;
            }
            batch.push((*period, before, new));
        }
        let mut pending = BTreeMap::new();
        for ((period, _, new), (n, rows)) in batch.iter().zip(db.add_rows(meter, &batch)?) {
            added += n as u64;
            duplicates += (new.len() - n) as u64;
            if n > 0 {
                pending.insert(*period, Agg::of_rows(*period, &rows));
            }
        }
        let touched: Vec<i64> = pending.keys().copied().collect();
        let written = aggregate::settle(db, meter, pending)?;
        let days: BTreeSet<jiff::civil::Date> = touched
            .iter()
            .chain(&written)
            .map(|&p| smarty_model::time::day_of(p, zone))
            .collect();
        for day in days {
            aggregate::rebuild_day(db, meter, day, zone)?;
        }
    }
    let mut mbus_added = 0u64;
    for (meter, channel, ts, value) in mbus_captures(db, meters, mbus)? {
        mbus_added += db.mbus_insert(meter, channel, ts, value)?;
    }
    Ok((added, duplicates, mbus_added))
}

/// [`write_batch`] with the set-wise statements of [`BatchDb`] (PostgreSQL): a few
/// statements for the whole batch, whatever its meters, instead of several per meter. The
/// same rows: the readings inserted unless stored already, the aggregates of the periods
/// they were added to (a stored period's aggregate with the readings added, or recomputed
/// from its readings when they interleave), energies settled in memory over the stored
/// periods around them (on the database, meter by meter, when that walk goes further), the
/// days recomputed from their periods by the database.
fn write_batch_setwise(
    db: &mut dyn BatchDb,
    readings: &[Reading],
    mbus: &[MbusRecord],
    meters: &mut HashMap<Arc<str>, (i64, Option<String>)>,
    zone: &TimeZone,
) -> DbResult<(u64, u64, u64)> {
    let mut names: BTreeMap<&Arc<str>, Option<&str>> = BTreeMap::new();
    for reading in readings {
        let sent = names.entry(&reading.meter).or_default();
        if reading.meter_id.is_some() {
            *sent = reading.meter_id.as_deref();
        }
    }
    // The meters not known yet (or whose sent id changed) in one go.
    let unknown: Vec<(&str, Option<&str>)> = names
        .iter()
        .filter(|(name, sent_id)| {
            meters
                .get(**name)
                .is_none_or(|(_, known)| sent_id.is_some() && known.as_deref() != **sent_id)
        })
        .map(|(name, sent_id)| (&***name, *sent_id))
        .collect();
    if !unknown.is_empty() {
        let mut stored = db.meter_upsert_many(&unknown)?;
        for name in names.keys() {
            if let Some(row) = stored.remove(&***name) {
                meters.insert(Arc::clone(name), row);
            }
        }
    }
    let mut ids = HashMap::new();
    for (name, sent_id) in names {
        let id = meter_id(db, meters, name, sent_id)?;
        ids.insert(Arc::clone(name), id);
    }
    // Readings by meter and period, sorted by time; a time given twice is written once
    // (the first given).
    let mut groups = by_meter_and_period(readings, &ids);
    let mut duplicates = 0u64;
    for periods in groups.values_mut() {
        for rows in periods.values_mut() {
            rows.sort_by_key(|r| r.ts);
            let given = rows.len();
            rows.dedup_by_key(|r| r.ts);
            duplicates += (given - rows.len()) as u64;
        }
    }
    // Locked in the order of their ids, as meter by meter.
    let ids: Vec<i64> = groups.keys().copied().collect();
    db.lock_meters(&ids)?;
    let touched: Vec<(i64, i64)> = groups
        .iter()
        .flat_map(|(&m, periods)| periods.keys().map(move |&p| (m, p)))
        .collect();
    let with_rows = if touched.is_empty() {
        HashSet::new()
    } else {
        db.periods_with_rows(&touched)?
    };
    let windows: Vec<(i64, i64, i64)> = groups
        .iter()
        .filter_map(|(&m, periods)| {
            Some((m, *periods.keys().next()?, *periods.keys().next_back()?))
        })
        .collect();
    let stored = if windows.is_empty() {
        HashMap::new()
    } else {
        db.agg_windows(&windows)?
    };
    let stored_agg = |m: i64, p: i64| {
        stored
            .get(&m)
            .and_then(|w| w.range.iter().find(|a| a.start == p))
    };
    let mut rows: Vec<(i64, Row)> = Vec::new();
    for (&m, periods) in &groups {
        for (&p, new) in periods {
            if stored_agg(m, p).is_some() && !with_rows.contains(&(m, p)) {
                // Raw readings pruned, the aggregate stays as it is.
                duplicates += new.len() as u64;
                continue;
            }
            rows.extend(new.iter().map(|r| (m, *r)));
        }
    }
    let inserted = if rows.is_empty() {
        HashSet::new()
    } else {
        db.insert_rows(&rows)?
    };
    let added = inserted.len() as u64;
    duplicates += (rows.len() - inserted.len()) as u64;
    // The aggregates of the periods readings were added to.
    let mut pending: BTreeMap<i64, BTreeMap<i64, Agg>> = BTreeMap::new();
    let mut recompute = Vec::new();
    for (&m, periods) in &groups {
        for (&p, new) in periods {
            let new: Vec<Row> = new
                .iter()
                .filter(|r| inserted.contains(&(m, r.ts)))
                .copied()
                .collect();
            if new.is_empty() {
                continue;
            }
            let of_new = Agg::of_rows(p, &new);
            let agg = match (stored_agg(m, p), with_rows.contains(&(m, p))) {
                (None, false) => Some(of_new),
                (Some(stored), true) => stored.with_added(&of_new),
                _ => None,
            };
            match agg {
                Some(agg) => {
                    pending.entry(m).or_default().insert(p, agg);
                }
                None => recompute.push((m, p)),
            }
        }
    }
    if !recompute.is_empty() {
        let mut all = db.period_rows(&recompute)?;
        for (m, p) in recompute {
            let rows = all.remove(&(m, p)).unwrap_or_default();
            pending
                .entry(m)
                .or_default()
                .insert(p, Agg::of_rows(p, &rows));
        }
    }
    let mut writes: Vec<(i64, Agg)> = Vec::new();
    let mut days: BTreeSet<(i64, jiff::civil::Date)> = BTreeSet::new();
    for (m, periods) in pending {
        let window = stored.get(&m).cloned().unwrap_or_default();
        if let Some(written) = aggregate::settle_window(&window, &periods) {
            days.extend(
                written
                    .iter()
                    .map(|a| (m, smarty_model::time::day_of(a.start, zone))),
            );
            writes.extend(written.into_iter().map(|a| (m, a)));
        } else {
            // The walk goes past what was read: on the database, as meter by meter.
            let touched: Vec<i64> = periods.keys().copied().collect();
            let written = aggregate::settle(db, m, periods)?;
            let meter_days: BTreeSet<jiff::civil::Date> = touched
                .iter()
                .chain(&written)
                .map(|&p| smarty_model::time::day_of(p, zone))
                .collect();
            for day in meter_days {
                aggregate::rebuild_day(db, m, day, zone)?;
            }
        }
    }
    if !writes.is_empty() {
        db.write_15m_many(&writes)?;
    }
    let days: Vec<(i64, jiff::civil::Date, i64, i64)> = days
        .into_iter()
        .map(|(m, day)| {
            let start = smarty_model::time::day_start(day, zone);
            let end = day
                .tomorrow()
                .map_or(start + 86_400, |d| smarty_model::time::day_start(d, zone));
            (m, day, start, end)
        })
        .collect();
    if !days.is_empty() {
        db.rebuild_days(&days)?;
    }
    // M-Bus captures in one statement.
    let rows = mbus_captures(db, meters, mbus)?;
    let mbus_added = if rows.is_empty() {
        0
    } else {
        db.mbus_insert_many(&rows)?
    };
    Ok((added, duplicates, mbus_added))
}

/// The batch's M-Bus captures as rows (meter id, channel, time, value in thousandths), each
/// once, their channels written first. Telegrams repeat a sub-meter's last capture until its
/// next one (a capture every 5 minutes, a telegram every 10 s): each capture and channel is
/// written once per batch.
fn mbus_captures(
    db: &mut dyn Db,
    meters: &mut HashMap<Arc<str>, (i64, Option<String>)>,
    mbus: &[MbusRecord],
) -> DbResult<Vec<(i64, u8, i64, i64)>> {
    let mut captures = BTreeSet::new();
    let mut channels = BTreeSet::new();
    let mut rows = Vec::new();
    for reading in mbus {
        if !captures.insert((&reading.meter, reading.channel, reading.ts)) {
            continue;
        }
        let meter = meter_id(db, meters, &reading.meter, None)?;
        let (medium, unit) = (reading.medium_name(), reading.unit_name());
        if channels.insert((meter, reading.channel, medium, unit.clone())) {
            db.mbus_channel_upsert(meter, reading.channel, medium, &unit)?;
        }
        rows.push((
            meter,
            reading.channel,
            reading.ts,
            (reading.value * 1000.0).round() as i64,
        ));
    }
    Ok(rows)
}

/// Readings by meter id and 15-minute period (its start), in the order given.
fn by_meter_and_period(
    readings: &[Reading],
    ids: &HashMap<Arc<str>, i64>,
) -> BTreeMap<i64, BTreeMap<i64, Vec<Row>>> {
    let mut groups: BTreeMap<i64, BTreeMap<i64, Vec<Row>>> = BTreeMap::new();
    for reading in readings {
        groups
            .entry(ids[&reading.meter])
            .or_default()
            .entry(interval_start(reading.ts))
            .or_default()
            .push(Row {
                ts: reading.ts,
                values: reading.values(),
            });
    }
    groups
}

/// The stored readings of the periods of `periods` (by period), and which of those periods
/// have an aggregate: in one look-up over their span when they lie close together (a batch of
/// the service, an import), else period by period.
#[allow(clippy::type_complexity)] // two plain maps, named by the documentation
fn stored_periods(
    db: &mut dyn Db,
    meter: i64,
    periods: &BTreeMap<i64, Vec<Row>>,
) -> DbResult<(BTreeMap<i64, Vec<Row>>, BTreeSet<i64>)> {
    let (Some(&first), Some(&last)) = (periods.keys().next(), periods.keys().next_back()) else {
        return Ok(Default::default());
    };
    let mut stored: BTreeMap<i64, Vec<Row>> = BTreeMap::new();
    let mut aggregated = BTreeSet::new();
    let span_periods = (last - first) / INTERVAL_S + 1;
    let ranges: Vec<(i64, i64)> = if span_periods <= 4 * periods.len() as i64 {
        vec![(first, last + INTERVAL_S)]
    } else {
        periods.keys().map(|&p| (p, p + INTERVAL_S)).collect()
    };
    for (from, to) in ranges {
        for row in db.raw_rows(meter, from, to)? {
            stored.entry(interval_start(row.ts)).or_default().push(row);
        }
        aggregated.extend(db.agg_starts(meter, from, to)?);
    }
    Ok((stored, aggregated))
}

/// The id of a meter, created on first use; its meter id is updated when it changes.
fn meter_id(
    db: &mut dyn Db,
    cache: &mut HashMap<Arc<str>, (i64, Option<String>)>,
    name: &Arc<str>,
    sent_id: Option<&str>,
) -> DbResult<i64> {
    if let Some((id, known)) = cache.get(name)
        && (sent_id.is_none() || known.as_deref() == sent_id)
    {
        return Ok(*id);
    }
    let (id, stored) = db.meter_upsert(name, sent_id)?;
    cache.insert(Arc::clone(name), (id, stored));
    Ok(id)
}
