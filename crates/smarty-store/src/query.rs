//! Queries: the meters, series at every resolution, 15-minute intervals and M-Bus totals.

use std::sync::Weak;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;

use super::aggregate::Agg;
use super::block::Row;
use super::connection::ReadConn;
use super::db::{AggColumn, AggTable, Db, DbResult};
use super::reading::{Aggregation, COLUMNS};
use super::{Inner, StoreError, give_back};
use smarty_model::period::{Interval, Period, Resolution, interval_start};
use smarty_model::time::{day_of, day_start};
use smarty_model::unit::Unit;
use smarty_model::value::{ValueId, medium_named};

/// The longest range a raw query may cover, days.
pub const RAW_MAX_DAYS: i64 = 31;

/// A meter the store has readings of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredMeter {
    /// Its configured name.
    pub name: String,
    /// The id it sends, if any.
    pub meter_id: Option<String>,
    /// Time of its first stored reading (raw or aggregated), Unix seconds.
    pub first_reading: Option<i64>,
    /// Time of its last stored reading, Unix seconds.
    pub last_reading: Option<i64>,
    /// Its M-Bus sub-meters, by channel.
    pub mbus: Vec<MbusChannel>,
}

/// An M-Bus sub-meter of a meter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MbusChannel {
    /// The channel 1–4.
    pub channel: u8,
    /// `gas`, `water`, `heat`, …
    pub medium: String,
    /// `m3`, `gj`, … (lower case, as in value names).
    pub unit: String,
}

impl MbusChannel {
    /// What its readings are: the reading of the M-Bus device on its channel, of its medium,
    /// in its unit (as stored).
    pub fn id(&self) -> ValueId {
        let unit = (!self.unit.is_empty()).then(|| Unit::parse(&self.unit));
        ValueId::mbus_reading(self.channel, medium_named(&self.medium), unit)
    }

    /// Its value name: `mbus1_gas_m3`.
    pub fn name(&self) -> String {
        self.id().name().to_string()
    }
}

/// One value over time, columnar. `t` are Unix seconds: reading times for `raw`, period
/// starts otherwise. Instantaneous values give the average over each period with `min` and
/// `max`; energies and M-Bus values the consumption in each period (for `raw`: since the
/// previous reading), without `min`/`max`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// The field asked for (`power_import_kw`).
    pub field: String,
    /// Its unit: `kW`, `kvar`, `V`, `A`, `kWh`, `kvarh`, `m3`, …
    pub unit: String,
    /// The resolution of the points.
    pub resolution: Resolution,
    /// Times of the points.
    pub t: Vec<i64>,
    /// Values of the points.
    pub value: Vec<f64>,
    /// Smallest value in each point's period (instantaneous fields, not `raw`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<Vec<f64>>,
    /// Largest value in each point's period (instantaneous fields, not `raw`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<Vec<f64>>,
}

/// The consumption of one M-Bus sub-meter in one local day or month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MbusTotal {
    /// The period: `2026-11-22` or `2026-11`.
    pub period: String,
    /// Its start (local midnight), Unix seconds.
    pub start: i64,
    /// The value name: `mbus1_gas_m3`.
    pub name: String,
    /// The consumption in the period, in the sub-meter's unit.
    pub value: f64,
}

impl AggColumn {
    /// Adds a following period.
    fn merge(&mut self, other: &AggColumn) {
        let add = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.energy = add(self.energy, other.energy);
        self.sum = add(self.sum, other.sum);
        self.n += other.n;
        self.min = match (self.min, other.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// What a series field refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Field {
    /// A column of [`COLUMNS`].
    Column(usize),
    /// An M-Bus channel.
    Mbus(MbusChannel),
}

/// A meter's last stored reading: its time (Unix seconds) and its values under their series
/// names in their units (`("power_import_kw", 0.3)`).
pub type LastReading = (i64, Vec<(&'static str, f64)>);

/// A read-only connection to the store (from [`super::Store::reader`]).
pub struct ReadConnection {
    conn: Option<ReadConn>,
    pool: Weak<Inner>,
    zone: TimeZone,
}

impl Drop for ReadConnection {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            give_back(&self.pool, conn);
        }
    }
}

/// Rounds an average to 4 decimals (0.1 W in kW).
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Buckets of a resolution: the start of the period holding a time.
pub(crate) struct Buckets {
    resolution: Resolution,
    zone: TimeZone,
    /// The local day or month last computed: `[start, end)` and its start.
    cached: Option<(i64, i64)>,
}

impl Buckets {
    pub(crate) fn new(resolution: Resolution, zone: TimeZone) -> Buckets {
        Buckets {
            resolution,
            zone,
            cached: None,
        }
    }

    /// The start of the period of `ts` (`ts` itself for raw).
    pub(crate) fn start(&mut self, ts: i64) -> i64 {
        match self.resolution {
            Resolution::Raw => ts,
            Resolution::Min15 => interval_start(ts),
            Resolution::Hour => ts.div_euclid(3600) * 3600,
            Resolution::Day | Resolution::Month => {
                if let Some((start, end)) = self.cached
                    && (start..end).contains(&ts)
                {
                    return start;
                }
                let day = day_of(ts, &self.zone);
                let (first, next) = if self.resolution == Resolution::Day {
                    (day, day.tomorrow().unwrap_or(day))
                } else {
                    let first = day.first_of_month();
                    (
                        first,
                        first
                            .checked_add(jiff::Span::new().months(1))
                            .unwrap_or(first),
                    )
                };
                let range = (day_start(first, &self.zone), day_start(next, &self.zone));
                self.cached = Some(range);
                range.0
            }
        }
    }
}

impl Buckets {
    /// The start of the period after the one starting at `start`.
    pub(crate) fn next_start(&mut self, start: i64) -> i64 {
        match self.resolution {
            Resolution::Raw => start + 1,
            Resolution::Min15 => start + 900,
            Resolution::Hour => start + 3600,
            Resolution::Day | Resolution::Month => {
                self.start(start);
                self.cached.map_or(start + 86_400, |(_, end)| end)
            }
        }
    }
}

/// The range `[from, to)` widened to whole periods of `resolution`: from the start of the
/// period holding `from` to the end of the period holding `to - 1`. Raw ranges stay as they
/// are.
pub fn whole_periods(from: i64, to: i64, resolution: Resolution, zone: &TimeZone) -> (i64, i64) {
    if resolution == Resolution::Raw || from >= to {
        return (from, to);
    }
    let mut buckets = Buckets::new(resolution, zone.clone());
    let start = buckets.start(from);
    let last = buckets.start(to - 1);
    (start, buckets.next_start(last).max(to))
}

impl ReadConnection {
    pub(super) fn new(conn: ReadConn, pool: Weak<Inner>) -> ReadConnection {
        ReadConnection {
            conn: Some(conn),
            pool,
            zone: smarty_model::time::meter_zone(),
        }
    }

    /// Runs statements on the connection.
    pub(crate) fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut dyn Db) -> DbResult<T> + Send,
    ) -> DbResult<T> {
        self.conn
            .as_ref()
            .expect("a reader has its connection until dropped")
            .with(f)
    }

    /// Runs `f` on the PostgreSQL client of a PostgreSQL store (the fleet's tables).
    pub(crate) fn with_postgres<T: Send>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        match self.conn.as_ref() {
            Some(ReadConn::Postgres(client)) => client.borrow_mut().run(f),
            _ => Err(StoreError::Config("not a PostgreSQL store".into())),
        }
    }

    /// The SQLite connection (tests of the SQLite schema).
    #[cfg(test)]
    pub(crate) fn conn(&self) -> &rusqlite::Connection {
        match self.conn.as_ref() {
            Some(ReadConn::Sqlite(conn)) => conn,
            _ => panic!("not an SQLite store"),
        }
    }

    /// The meters with stored readings, by name.
    ///
    /// # Errors
    /// database errors.
    pub fn meters(&self) -> Result<Vec<StoredMeter>, StoreError> {
        self.meters_named(None)
    }

    /// The stored meter named `name`, if there is one.
    ///
    /// # Errors
    /// database errors.
    pub fn meter(&self, name: &str) -> Result<Option<StoredMeter>, StoreError> {
        Ok(self.meters_named(Some(name))?.pop())
    }

    fn meters_named(&self, name: Option<&str>) -> Result<Vec<StoredMeter>, StoreError> {
        self.with(|db| {
            let rows = db.meters(name)?;
            rows.into_iter()
                .map(|(id, mut meter)| {
                    meter.mbus = db.mbus_channels(id)?;
                    Ok(meter)
                })
                .collect()
        })
    }

    /// The id of a meter by name.
    ///
    /// # Errors
    /// [`StoreError::UnknownMeter`], database errors.
    pub fn meter_id(&self, meter: &str) -> Result<i64, StoreError> {
        self.with(|db| db.meter_by_name(meter))?
            .ok_or_else(|| StoreError::UnknownMeter(meter.to_owned()))
    }

    /// The M-Bus channels of a meter (by its id, [`ReadConnection::meter_id`]).
    ///
    /// # Errors
    /// Database errors.
    pub fn mbus_channels(&self, meter: i64) -> Result<Vec<MbusChannel>, StoreError> {
        self.with(|db| db.mbus_channels(meter))
    }

    /// The captures of M-Bus channel `channel` of `meter` with time in `[from, to)`, by time:
    /// (capture time, reading in the channel's unit).
    ///
    /// # Errors
    /// Database errors.
    pub fn mbus_captures(
        &self,
        meter: i64,
        channel: u8,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        Ok(self
            .with(|db| db.mbus_range(meter, channel, from, to))?
            .into_iter()
            .map(|(ts, milli)| (ts, milli as f64 / 1000.0))
            .collect())
    }

    /// What a series field name refers to: the column or M-Bus channel whose value has that
    /// name.
    pub(crate) fn field(&self, meter: i64, name: &str) -> Result<Field, StoreError> {
        if let Some(c) = COLUMNS.iter().position(|c| c.series() == name) {
            return Ok(Field::Column(c));
        }
        if let Some(channel) = self
            .mbus_channels(meter)?
            .into_iter()
            .find(|c| c.name() == name)
        {
            return Ok(Field::Mbus(channel));
        }
        Err(StoreError::UnknownField(name.to_owned()))
    }

    /// One field of `meter` from `from` to `to` (Unix seconds, `to` exclusive) at
    /// `resolution` (docs/api.md): points whose time (reading time or period start) is in the
    /// range. Hours come from the 15-minute aggregates, months from the daily ones.
    ///
    /// # Errors
    /// [`StoreError::UnknownMeter`], [`StoreError::UnknownField`],
    /// [`StoreError::TooManyPoints`] for raw ranges over [`RAW_MAX_DAYS`] days, SQLite
    /// errors.
    pub fn series(
        &self,
        meter: &str,
        field: &str,
        from: i64,
        to: i64,
        resolution: Resolution,
    ) -> Result<Series, StoreError> {
        let id = self.meter_id(meter)?;
        let target = self.field(id, field)?;
        if resolution == Resolution::Raw {
            let days = ((to - from).max(0) + 86_399) / 86_400;
            if days > RAW_MAX_DAYS {
                return Err(StoreError::TooManyPoints {
                    days,
                    max_days: RAW_MAX_DAYS,
                });
            }
        }
        let mut series = Series {
            field: field.to_owned(),
            unit: String::new(),
            resolution,
            t: Vec::new(),
            value: Vec::new(),
            min: None,
            max: None,
        };
        // Aggregated points are read over whole periods and kept when they start in the
        // range: a range that starts or ends inside an hour or a month still gets whole
        // hours and months, never a part labelled as the whole.
        let (lo, hi) = whole_periods(from, to, resolution, &self.zone);
        let inside = |t: i64| (from..to).contains(&t);
        match target {
            Field::Mbus(channel) => {
                series.unit = channel.unit.clone();
                for (t, v) in self.mbus_consumption(id, channel.channel, lo, hi, resolution)? {
                    if inside(t) {
                        series.t.push(t);
                        series.value.push(v);
                    }
                }
            }
            Field::Column(c) => {
                let column = &COLUMNS[c];
                series.unit = column.unit.to_owned();
                if resolution == Resolution::Raw {
                    let values = self.with(|db| {
                        raw_column(
                            db,
                            id,
                            c,
                            from,
                            to,
                            column.aggregation == Aggregation::Energy,
                        )
                    })?;
                    let mut previous = None;
                    for (ts, v) in values {
                        if ts >= from {
                            match column.aggregation {
                                Aggregation::Instant => {
                                    series.t.push(ts);
                                    series.value.push(v as f64 / column.scale);
                                }
                                Aggregation::Energy => {
                                    if let Some(p) = previous {
                                        series.t.push(ts);
                                        series.value.push((v - p) as f64 / column.scale);
                                    }
                                }
                            }
                        }
                        previous = Some(v);
                    }
                } else {
                    let instant = column.aggregation == Aggregation::Instant;
                    if instant {
                        series.min = Some(Vec::new());
                        series.max = Some(Vec::new());
                    }
                    for (t, point) in self.column_aggregates(id, c, lo, hi, resolution)? {
                        if !inside(t) {
                            continue;
                        }
                        match column.aggregation {
                            Aggregation::Energy => {
                                if let Some(e) = point.energy {
                                    series.t.push(t);
                                    series.value.push(e as f64 / column.scale);
                                }
                            }
                            Aggregation::Instant => {
                                let (Some(sum), Some(lo), Some(hi)) =
                                    (point.sum, point.min, point.max)
                                else {
                                    continue;
                                };
                                if point.n == 0 {
                                    continue;
                                }
                                let avg = sum as f64 / point.n as f64;
                                series.t.push(t);
                                series.value.push(round4(avg / column.scale));
                                if let (Some(min), Some(max)) = (&mut series.min, &mut series.max) {
                                    min.push(lo as f64 / column.scale);
                                    max.push(hi as f64 / column.scale);
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(series)
    }

    /// At least as many points as [`ReadConnection::series`] gives for the same arguments, from row
    /// counts and the span alone (no reading is decoded), so that the API can refuse or
    /// coarsen an answer before reading it.
    ///
    /// # Errors
    /// [`StoreError::UnknownMeter`], [`StoreError::UnknownField`], database errors.
    pub fn series_points_bound(
        &self,
        meter: &str,
        field: &str,
        from: i64,
        to: i64,
        resolution: Resolution,
    ) -> Result<u64, StoreError> {
        let id = self.meter_id(meter)?;
        let target = self.field(id, field)?;
        let span = u64::try_from(to.saturating_sub(from)).unwrap_or(0);
        // Periods in the span: local days are at least 23 hours long.
        let by_span = match resolution {
            Resolution::Raw => u64::MAX,
            Resolution::Min15 => span / 900 + 1,
            Resolution::Hour => span / 3600 + 2,
            Resolution::Day | Resolution::Month => span / (23 * 3600) + 2,
        };
        if matches!(resolution, Resolution::Day | Resolution::Month) {
            return Ok(by_span);
        }
        let rows: i64 = self.with(|db| match target {
            Field::Mbus(channel) => db.mbus_count(id, channel.channel, from, to),
            Field::Column(_) if resolution == Resolution::Raw => db.raw_count(id, from, to),
            Field::Column(_) => db.count_15m(id, from, to),
        })?;
        Ok(u64::try_from(rows).unwrap_or(0).min(by_span))
    }

    /// The aggregates of one column of `meter` at an aggregated resolution with period start
    /// in `[from, to)`: reads only that column's fields (a series needs no more).
    fn column_aggregates(
        &self,
        meter: i64,
        c: usize,
        from: i64,
        to: i64,
        resolution: Resolution,
    ) -> Result<Vec<(i64, AggColumn)>, StoreError> {
        let table = match resolution {
            Resolution::Day | Resolution::Month => AggTable::Day,
            _ => AggTable::Min15,
        };
        let rows = self.with(|db| db.agg_column(table, meter, c, from, to))?;
        let mut buckets = Buckets::new(resolution, self.zone.clone());
        let mut out: Vec<(i64, AggColumn)> = Vec::new();
        for (start, point) in rows {
            let bucket = match resolution {
                Resolution::Hour | Resolution::Month => buckets.start(start),
                _ => start,
            };
            match out.last_mut() {
                Some((b, merged)) if *b == bucket => merged.merge(&point),
                _ => out.push((bucket, point)),
            }
        }
        Ok(out)
    }

    /// The aggregates of `meter` at an aggregated resolution with period start in
    /// `[from, to)`: 15-minute rows, hours merged from them, days, months merged from days.
    /// Pairs of (period start, aggregate).
    ///
    /// # Errors
    /// database errors.
    pub fn aggregates(
        &self,
        meter: i64,
        from: i64,
        to: i64,
        resolution: Resolution,
    ) -> Result<Vec<(i64, Agg)>, StoreError> {
        // The rows come sorted by start, so each bucket's rows are consecutive: merge them
        // in one pass, holding one bucket's rows at a time.
        let merge = |rows: Vec<Agg>, buckets: &mut Buckets| -> Vec<(i64, Agg)> {
            let mut out = Vec::new();
            let mut group: Vec<Agg> = Vec::new();
            let mut current = None;
            for agg in rows {
                let start = buckets.start(agg.start);
                if let Some(previous) = current
                    && previous != start
                {
                    out.push((previous, Agg::of_periods(previous, &group)));
                    group.clear();
                }
                current = Some(start);
                group.push(agg);
            }
            if let Some(last) = current {
                out.push((last, Agg::of_periods(last, &group)));
            }
            out
        };
        Ok(match resolution {
            Resolution::Raw | Resolution::Min15 => self
                .with(|db| db.read_aggs(AggTable::Min15, meter, from, to))?
                .into_iter()
                .map(|agg| (agg.start, agg))
                .collect(),
            Resolution::Hour => {
                let rows = self.with(|db| db.read_aggs(AggTable::Min15, meter, from, to))?;
                merge(rows, &mut Buckets::new(Resolution::Hour, self.zone.clone()))
            }
            Resolution::Day => self
                .with(|db| db.read_aggs(AggTable::Day, meter, from, to))?
                .into_iter()
                .map(|agg| (agg.start, agg))
                .collect(),
            Resolution::Month => {
                let rows = self.with(|db| db.read_aggs(AggTable::Day, meter, from, to))?;
                merge(
                    rows,
                    &mut Buckets::new(Resolution::Month, self.zone.clone()),
                )
            }
        })
    }

    /// The raw readings of `meter` with time in `[from, to)`, sorted (`smarty export`).
    ///
    /// # Errors
    /// database errors, [`StoreError::Corrupt`] for a block that does not decode.
    pub fn raw_rows(&self, meter: i64, from: i64, to: i64) -> Result<Vec<Row>, StoreError> {
        self.with(|db| db.raw_rows(meter, from, to))
    }

    /// The consumption of an M-Bus channel per period of `resolution` (per capture for raw):
    /// each capture's increase over the previous capture counts in the period of its capture
    /// time. Pairs of (period start or capture time, consumption).
    ///
    /// # Errors
    /// database errors.
    pub fn mbus_consumption(
        &self,
        meter: i64,
        channel: u8,
        from: i64,
        to: i64,
        resolution: Resolution,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        if matches!(resolution, Resolution::Day | Resolution::Month) {
            return self.mbus_consumption_by_boundaries(meter, channel, from, to, resolution);
        }
        let (mut previous, rows) = self.with(|db| {
            Ok((
                db.mbus_before(meter, channel, from)?.map(|(_, v)| v),
                db.mbus_range(meter, channel, from, to)?,
            ))
        })?;
        let mut buckets = Buckets::new(resolution, self.zone.clone());
        let mut out: Vec<(i64, i64)> = Vec::new();
        for (ts, value) in rows {
            if let Some(p) = previous {
                let start = buckets.start(ts);
                match out.last_mut() {
                    Some((s, sum)) if *s == start && resolution != Resolution::Raw => {
                        *sum += value - p;
                    }
                    _ => out.push((start, value - p)),
                }
            }
            previous = Some(value);
        }
        Ok(out
            .into_iter()
            .map(|(t, milli)| (t, milli as f64 / 1000.0))
            .collect())
    }

    /// [`ReadConnection::mbus_consumption`] for days and months without reading every capture: the
    /// increases telescope, so a period's consumption is the last capture before its end
    /// minus the last capture before its start (or its first capture when there is none),
    /// two index look-ups per period.
    fn mbus_consumption_by_boundaries(
        &self,
        meter: i64,
        channel: u8,
        from: i64,
        to: i64,
        resolution: Resolution,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        let zone = self.zone.clone();
        self.with(|db| {
            let range = db
                .mbus_edge(meter, channel, from, to, false)?
                .zip(db.mbus_edge(meter, channel, from, to, true)?);
            let Some((first, last)) = range else {
                return Ok(Vec::new());
            };
            let mut buckets = Buckets::new(resolution, zone);
            let mut out = Vec::new();
            let mut start = buckets.start(first);
            while start <= last {
                let next = buckets.next_start(start);
                let (lo, hi) = (start.max(from), next.min(to));
                // The last capture in the period, and the reading it increased from.
                let end = db.mbus_before(meter, channel, hi)?;
                if let Some((end_ts, end_value)) = end.filter(|(ts, _)| *ts >= lo) {
                    let base = match db.mbus_before(meter, channel, lo)? {
                        Some((_, value)) => Some(value),
                        // The very first capture: it counts from the second one on, as in the
                        // scan of every capture.
                        None => db
                            .mbus_at_or_after(meter, channel, lo)?
                            .filter(|(ts, _)| *ts < end_ts)
                            .map(|(_, value)| value),
                    };
                    if let Some(base) = base {
                        out.push((start, (end_value - base) as f64 / 1000.0));
                    }
                }
                start = next;
            }
            Ok(out)
        })
    }

    /// The 15-minute periods of `meter` starting in `[from, to)` that have readings, with
    /// their energies (Wh).
    ///
    /// # Errors
    /// [`StoreError::UnknownMeter`], database errors.
    pub fn intervals(&self, meter: &str, from: i64, to: i64) -> Result<Vec<Interval>, StoreError> {
        let id = self.meter_id(meter)?;
        self.with(|db| db.intervals(id, from, to))
    }

    /// The last stored raw reading of `meter`: its time (Unix seconds) and its values under
    /// their series names in their units (`power_import_kw`, `voltage_l1_v`), those present.
    /// `None` when nothing is stored, or its last period's raw readings were pruned.
    ///
    /// # Errors
    /// [`StoreError::UnknownMeter`], database errors.
    pub fn last_reading(&self, meter: &str) -> Result<Option<LastReading>, StoreError> {
        let id = self.meter_id(meter)?;
        let Some(last) = self.with(|db| db.last_15m_before(id, i64::MAX))? else {
            return Ok(None);
        };
        let rows = self.raw_rows(id, last.start, last.last_ts + 1)?;
        Ok(rows.last().map(|row| {
            let values = COLUMNS
                .iter()
                .zip(row.values)
                .filter_map(|(c, v)| Some((c.series(), v? as f64 / c.scale)))
                .collect();
            (row.ts, values)
        }))
    }

    /// The consumption of each M-Bus sub-meter of `meter` per local day or month whose start
    /// is in `[from, to)`, by period then name. Periods without a capture are left out.
    ///
    /// # Errors
    /// [`StoreError::UnknownMeter`], database errors.
    pub fn mbus_totals(
        &self,
        meter: &str,
        from: i64,
        to: i64,
        period: Period,
    ) -> Result<Vec<MbusTotal>, StoreError> {
        let id = self.meter_id(meter)?;
        let resolution = match period {
            Period::Day => Resolution::Day,
            Period::Month => Resolution::Month,
        };
        let mut totals = Vec::new();
        for channel in self.mbus_channels(id)? {
            let name = channel.name();
            for (start, value) in
                self.mbus_consumption(id, channel.channel, from, to, resolution)?
            {
                totals.push(MbusTotal {
                    period: period_label(start, period, &self.zone),
                    start,
                    name: name.clone(),
                    value: round4(value),
                });
            }
        }
        totals.sort_by(|a, b| (a.start, &a.name).cmp(&(b.start, &b.name)));
        Ok(totals)
    }
}

/// `2026-11-22` or `2026-11` for a period start.
pub(crate) fn period_label(start: i64, period: Period, zone: &TimeZone) -> String {
    let day: Date = day_of(start, zone);
    match period {
        Period::Day => day.to_string(),
        Period::Month => format!("{:04}-{:02}", day.year(), day.month()),
    }
}

/// The raw values of column `c` of `meter` with time in `[from, to)`, sorted; with
/// `previous`, the last value before `from` too (when it is still stored, in the hour before).
fn raw_column(
    db: &mut dyn Db,
    meter: i64,
    c: usize,
    from: i64,
    to: i64,
    previous: bool,
) -> DbResult<Vec<(i64, i64)>> {
    let mut out = Vec::new();
    if previous && let Some(before) = db.raw_column_before(meter, c, from)? {
        out.push(before);
    }
    out.extend(db.raw_column(meter, c, from, to)?);
    Ok(out)
}
