//! What the writer and the queries ask of a database: the statements that both backends,
//! SQLite ([`crate::sqlite`]) and PostgreSQL ([`crate::postgres`]), answer in plain types.
//!
//! The logic around them — which periods a batch touches, how energies telescope over
//! periods, how 15-minute rows become hours and local days become months, how M-Bus captures
//! become consumption — is written once, in [`crate::writer`], [`crate::aggregate`] and
//! [`crate::query`], over `&mut dyn Db`: both backends give the same answers by construction.
//! A backend's statements run inside the transaction (writer) or on the connection (queries)
//! it was made from.
//!
//! Times are Unix seconds, values are the stored integers of [`crate::reading::COLUMNS`].

use std::collections::{HashMap, HashSet};

use jiff::civil::Date;

use crate::StoreError;
use crate::aggregate::Agg;
use crate::block::Row;
use crate::query::{MbusChannel, StoredMeter};
use smarty_model::period::Interval;

/// The result of a statement.
pub(crate) type DbResult<T> = Result<T, StoreError>;

/// Which aggregate table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggTable {
    /// 15-minute periods (`agg_15m`).
    Min15,
    /// Local days (`agg_day`).
    Day,
}

impl AggTable {
    /// The table's name (the same in both backends).
    pub(crate) fn name(self) -> &'static str {
        match self {
            AggTable::Min15 => "agg_15m",
            AggTable::Day => "agg_day",
        }
    }
}

/// One column's part of one aggregate row: the energy of an energy register, or sum, count,
/// min and max of an instantaneous value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AggColumn {
    /// Energy of the period (energy registers).
    pub energy: Option<i64>,
    /// Sum of the values (instantaneous values).
    pub sum: Option<i64>,
    /// How many values.
    pub n: i64,
    /// Smallest value.
    pub min: Option<i64>,
    /// Largest value.
    pub max: Option<i64>,
}

/// The stored 15-minute aggregates of one meter around the periods a batch touches
/// ([`BatchDb::agg_windows`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct AggWindow {
    /// The last aggregate starting before the first period.
    pub before: Option<Agg>,
    /// The aggregates from the first period to the last, by start.
    pub range: Vec<Agg>,
    /// The first aggregate starting after the last period.
    pub after: Option<Agg>,
}

/// Set-wise statements that write a batch of many meters in a few statements
/// (PostgreSQL, where each statement is a round trip; [`crate::writer`] uses them when
/// [`Db::as_batch`] gives them). Meters are ids, times Unix seconds.
pub(crate) trait BatchDb: Db {
    /// [`Db::meter_upsert`] of many meters (`(name, sent id)`, each name once, sorted): their
    /// ids and stored sent ids, by name.
    fn meter_upsert_many(
        &mut self,
        meters: &[(&str, Option<&str>)],
    ) -> DbResult<HashMap<String, (i64, Option<String>)>>;
    /// [`Db::lock_meter`] of each meter, in the order given (sorted: no circles).
    fn lock_meters(&mut self, meters: &[i64]) -> DbResult<()>;
    /// Which of the `(meter, period start)` have raw readings.
    fn periods_with_rows(&mut self, periods: &[(i64, i64)]) -> DbResult<HashSet<(i64, i64)>>;
    /// For each `(meter, first period, last period)`: [`AggWindow`], by meter.
    fn agg_windows(&mut self, windows: &[(i64, i64, i64)]) -> DbResult<HashMap<i64, AggWindow>>;
    /// Inserts `(meter, reading)`s, those of a meter and time stored already left out;
    /// returns the `(meter, time)` of those inserted.
    fn insert_rows(&mut self, rows: &[(i64, Row)]) -> DbResult<HashSet<(i64, i64)>>;
    /// The raw readings of each `(meter, period start)`, sorted by time.
    fn period_rows(&mut self, periods: &[(i64, i64)]) -> DbResult<HashMap<(i64, i64), Vec<Row>>>;
    /// [`Db::write_15m`] of the aggregates of many meters: `(meter, aggregate)`, each
    /// meter and start once.
    fn write_15m_many(&mut self, aggs: &[(i64, Agg)]) -> DbResult<()>;
    /// Recomputes the day aggregates of `(meter, local day, its start, its end)` from their
    /// 15-minute aggregates (each day has some).
    fn rebuild_days(&mut self, days: &[(i64, Date, i64, i64)]) -> DbResult<()>;
    /// [`Db::mbus_insert`] of many captures: `(meter, channel, time, value in thousandths)`;
    /// returns how many were added.
    fn mbus_insert_many(&mut self, captures: &[(i64, u8, i64, i64)]) -> DbResult<u64>;
    /// [`crate::Store::save_fleet_counters`] in this transaction.
    fn save_fleet_counters(&mut self, counters: &[crate::fleet::FleetCounter]) -> DbResult<()>;
}

/// The statements of one backend (module documentation).
pub(crate) trait Db {
    /// The set-wise statements, where the backend has them (PostgreSQL).
    fn as_batch(&mut self) -> Option<&mut dyn BatchDb> {
        None
    }

    // Meters.

    /// The id of meter `name`, created on first use; its sent id is stored when given and
    /// different. Returns the id and the stored sent id.
    fn meter_upsert(
        &mut self,
        name: &str,
        sent_id: Option<&str>,
    ) -> DbResult<(i64, Option<String>)>;
    /// The id of meter `name`, if it is stored.
    fn meter_by_name(&mut self, name: &str) -> DbResult<Option<i64>>;
    /// Every stored meter with its id, by name, or only the one named `name` (M-Bus
    /// channels not filled in).
    fn meters(&mut self, name: Option<&str>) -> DbResult<Vec<(i64, StoredMeter)>>;
    /// Keeps other writers off `meter`'s readings and aggregates until the transaction ends
    /// (PostgreSQL, where writers of several processes may share a database; SQLite has one
    /// writer per file).
    fn lock_meter(&mut self, meter: i64) -> DbResult<()>;

    // Raw readings.

    /// The raw readings of `meter` with time in `[from, to)`, sorted by time.
    fn raw_rows(&mut self, meter: i64, from: i64, to: i64) -> DbResult<Vec<Row>>;
    /// Adds readings to 15-minute periods: for each `(period start, stored readings, new
    /// readings)`, both sorted by time, the new readings at a time not stored yet. Returns,
    /// for each, how many were added and the period's readings after, sorted.
    fn add_rows(
        &mut self,
        meter: i64,
        periods: &[(i64, &[Row], &[Row])],
    ) -> DbResult<Vec<(usize, Vec<Row>)>>;
    /// At least the number of raw readings of `meter` with time in `[from, to)` (SQLite counts
    /// whole 5-minute blocks).
    fn raw_count(&mut self, meter: i64, from: i64, to: i64) -> DbResult<i64>;
    /// The values of column `c` of `meter` with time in `[from, to)` that are present,
    /// sorted: `(time, value)`.
    fn raw_column(&mut self, meter: i64, c: usize, from: i64, to: i64)
    -> DbResult<Vec<(i64, i64)>>;
    /// The last present value of column `c` of `meter` before `before`, looked for in about
    /// the hour before it.
    fn raw_column_before(
        &mut self,
        meter: i64,
        c: usize,
        before: i64,
    ) -> DbResult<Option<(i64, i64)>>;
    /// Deletes the raw readings with time before `cutoff` (a period start). Returns how many.
    fn prune_raw(&mut self, cutoff: i64) -> DbResult<u64>;

    // Aggregates.

    /// The starts of the 15-minute aggregates of `meter` in `[from, to)`.
    fn agg_starts(&mut self, meter: i64, from: i64, to: i64) -> DbResult<Vec<i64>>;
    /// Writes (inserts or replaces) 15-minute aggregates.
    fn write_15m(&mut self, meter: i64, aggs: &[Agg]) -> DbResult<()>;
    /// Writes (inserts or replaces) the aggregate of local day `day` made of `periods`
    /// 15-minute periods.
    fn write_day(&mut self, meter: i64, day: Date, periods: usize, agg: &Agg) -> DbResult<()>;
    /// Removes the day aggregate starting at `start`.
    fn delete_day(&mut self, meter: i64, start: i64) -> DbResult<()>;
    /// The aggregates of `table` with start in `[from, to)`, by start.
    fn read_aggs(&mut self, table: AggTable, meter: i64, from: i64, to: i64) -> DbResult<Vec<Agg>>;
    /// The last 15-minute aggregate starting before `before`.
    fn last_15m_before(&mut self, meter: i64, before: i64) -> DbResult<Option<Agg>>;
    /// Up to `limit` 15-minute aggregates starting at or after `from`, by start.
    fn page_15m(&mut self, meter: i64, from: i64, limit: usize) -> DbResult<Vec<Agg>>;
    /// How many 15-minute aggregates start in `[from, to)`.
    fn count_15m(&mut self, meter: i64, from: i64, to: i64) -> DbResult<i64>;
    /// Column `c`'s part of the aggregates of `table` with start in `[from, to)`, by start.
    fn agg_column(
        &mut self,
        table: AggTable,
        meter: i64,
        c: usize,
        from: i64,
        to: i64,
    ) -> DbResult<Vec<(i64, AggColumn)>>;
    /// The 15-minute periods with start in `[from, to)` and their energies.
    fn intervals(&mut self, meter: i64, from: i64, to: i64) -> DbResult<Vec<Interval>>;

    // Frame counters.

    /// The frame counters saved for meter `meter` under the key named by `key_check`:
    /// `(system title in hex, counter)`.
    fn frame_counters(&mut self, meter: &str, key_check: &str) -> DbResult<Vec<(String, i64)>>;
    /// Saves frame counters of meter `meter` under `key_check` (those of another key are
    /// removed).
    fn save_frame_counters(
        &mut self,
        meter: &str,
        key_check: &str,
        counters: &[(String, i64)],
    ) -> DbResult<()>;

    // M-Bus readings.

    /// The M-Bus channels of `meter`, by channel.
    fn mbus_channels(&mut self, meter: i64) -> DbResult<Vec<MbusChannel>>;
    /// Records (or updates) the medium and unit of a channel.
    fn mbus_channel_upsert(
        &mut self,
        meter: i64,
        channel: u8,
        medium: &str,
        unit: &str,
    ) -> DbResult<()>;
    /// Adds a capture unless one of that channel at that time is stored; returns 1 when added.
    fn mbus_insert(&mut self, meter: i64, channel: u8, ts: i64, value_milli: i64) -> DbResult<u64>;
    /// The last capture before `before`: `(time, value in thousandths)`.
    fn mbus_before(&mut self, meter: i64, channel: u8, before: i64)
    -> DbResult<Option<(i64, i64)>>;
    /// The first capture at or after `at`.
    fn mbus_at_or_after(
        &mut self,
        meter: i64,
        channel: u8,
        at: i64,
    ) -> DbResult<Option<(i64, i64)>>;
    /// The captures with time in `[from, to)`, by time.
    fn mbus_range(
        &mut self,
        meter: i64,
        channel: u8,
        from: i64,
        to: i64,
    ) -> DbResult<Vec<(i64, i64)>>;
    /// The time of the first (or, with `last`, the last) capture in `[from, to)`.
    fn mbus_edge(
        &mut self,
        meter: i64,
        channel: u8,
        from: i64,
        to: i64,
        last: bool,
    ) -> DbResult<Option<i64>>;
    /// How many captures in `[from, to)`.
    fn mbus_count(&mut self, meter: i64, channel: u8, from: i64, to: i64) -> DbResult<i64>;
}
