//! Copying a store into another, whichever their backends (`smarty store migrate`): a
//! household's history from SQLite into PostgreSQL, or back.
//!
//! Raw readings are copied day by day through the destination's [`Writer`] (so that its
//! aggregates are computed as for any reading), then every 15-minute aggregate is copied as
//! it stands (the periods whose raw readings were pruned have nothing else), the daily ones
//! rebuilt from them, and the M-Bus captures copied. Nothing is deleted from either store;
//! copying again adds nothing. The result is then checked: counts of readings, periods, days
//! and captures, and the sum of every energy over the days, equal in both.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::aggregate::Agg;
use crate::query::{ReadConnection, StoredMeter};
use crate::reading::{Aggregation, COLUMNS, MbusRecord, Reading};
use crate::{Store, StoreError, Writer};
use smarty_model::period::Resolution;

/// Raw readings copied per transaction: a day at 10 s.
const DAY_S: i64 = 86_400;

/// What one meter holds, as compared after a copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MeterCounts {
    /// Raw readings.
    pub readings: u64,
    /// 15-minute aggregates.
    pub periods: u64,
    /// Daily aggregates.
    pub days: u64,
    /// M-Bus captures, all channels.
    pub captures: u64,
    /// The sum over the days of each energy column (`energy_import_wh`, …), in its stored
    /// unit.
    pub energy_sums: BTreeMap<&'static str, i64>,
}

/// The outcome of [`copy`]: each meter's counts in the source, as found again in the
/// destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyReport {
    /// By meter name.
    pub meters: BTreeMap<String, MeterCounts>,
}

/// What a store holds of meter `name` (see [`MeterCounts`]).
///
/// # Errors
/// [`StoreError::UnknownMeter`], database errors.
pub fn counts(store: &Store, name: &str) -> Result<MeterCounts, StoreError> {
    let reader = store.reader()?;
    let id = reader.meter_id(name)?;
    let readings = reader.with(|db| db.raw_count(id, i64::MIN / 2, i64::MAX / 2))?;
    let readings = u64::try_from(readings).unwrap_or(0);
    let periods = reader.aggregates(id, i64::MIN, i64::MAX, Resolution::Min15)?;
    let days = reader.aggregates(id, i64::MIN, i64::MAX, Resolution::Day)?;
    let mut captures = 0;
    for channel in reader.mbus_channels(id)? {
        captures += reader
            .mbus_captures(id, channel.channel, i64::MIN / 2, i64::MAX / 2)?
            .len() as u64;
    }
    let mut energy_sums = BTreeMap::new();
    for (c, column) in COLUMNS.iter().enumerate() {
        if column.aggregation == Aggregation::Energy {
            let sum = days.iter().filter_map(|(_, d)| d.energy[c]).sum();
            energy_sums.insert(column.name, sum);
        }
    }
    Ok(MeterCounts {
        readings,
        periods: periods.len() as u64,
        days: days.len() as u64,
        captures,
        energy_sums,
    })
}

/// Copies every meter of `from` into `to` and checks the copy (module documentation).
/// `progress` is called with each meter's name and the day copied.
///
/// # Errors
/// Database errors of either store; [`StoreError::Config`] when the copy does not hold what
/// the source holds (a count or an energy sum differs), naming the meter and what differs.
pub fn copy(
    from: &Store,
    to: &Store,
    mut progress: impl FnMut(&str, i64),
) -> Result<CopyReport, StoreError> {
    let reader = from.reader()?;
    let mut writer = to.writer()?;
    let mut report = CopyReport::default();
    for meter in reader.meters()? {
        let id = reader.meter_id(&meter.name)?;
        let name: Arc<str> = Arc::from(meter.name.as_str());
        write_raw_rows(&reader, &meter, &mut writer, &mut progress)?;
        // Every 15-minute aggregate as it stands, the days rebuilt from them.
        let periods: Vec<Agg> = reader
            .aggregates(id, i64::MIN, i64::MAX, Resolution::Min15)?
            .into_iter()
            .map(|(_, agg)| agg)
            .collect();
        writer.copy_aggregates(&name, meter.meter_id.as_deref(), &periods)?;
        write_mbus_captures(&reader, &meter, &mut writer)?;
        let source = counts(from, &meter.name)?;
        let copied = counts(to, &meter.name)?;
        if source != copied {
            return Err(StoreError::Config(format!(
                "the copy of meter {:?} differs from its source: {source:?} there, {copied:?} here",
                meter.name
            )));
        }
        report.meters.insert(meter.name.clone(), source);
    }
    Ok(report)
}

/// Writes the raw readings of `meter` held by `reader` through `writer`, a day per commit
/// (their aggregates computed as for any reading); `progress` is told each day.
///
/// # Errors
/// Database errors of either side.
pub(crate) fn write_raw_rows(
    reader: &ReadConnection,
    meter: &StoredMeter,
    writer: &mut Writer,
    progress: &mut impl FnMut(&str, i64),
) -> Result<(), StoreError> {
    let (Some(first), Some(last)) = (meter.first_reading, meter.last_reading) else {
        return Ok(());
    };
    let id = reader.meter_id(&meter.name)?;
    let name: Arc<str> = Arc::from(meter.name.as_str());
    let mut day = first - first.rem_euclid(DAY_S);
    while day <= last {
        progress(&meter.name, day);
        for row in reader.raw_rows(id, day, day + DAY_S)? {
            let mut reading = Reading::empty(Arc::clone(&name), row.ts);
            reading.meter_id = meter.meter_id.clone();
            reading.set_values(row.values);
            writer.push(reading);
        }
        writer.flush()?;
        day += DAY_S;
    }
    Ok(())
}

/// Writes every M-Bus capture of `meter` held by `reader` through `writer`, a channel per
/// commit.
///
/// # Errors
/// Database errors of either side.
pub(crate) fn write_mbus_captures(
    reader: &ReadConnection,
    meter: &StoredMeter,
    writer: &mut Writer,
) -> Result<(), StoreError> {
    let id = reader.meter_id(&meter.name)?;
    let name: Arc<str> = Arc::from(meter.name.as_str());
    for channel in &meter.mbus {
        let medium = smarty_model::value::medium_named(&channel.medium)
            .unwrap_or(smarty_p1::registry::Medium::Other(0));
        let unit =
            (!channel.unit.is_empty()).then(|| smarty_model::unit::Unit::parse(&channel.unit));
        for (ts, value) in reader.mbus_captures(id, channel.channel, i64::MIN / 2, i64::MAX / 2)? {
            writer.push_mbus(MbusRecord {
                meter: Arc::clone(&name),
                channel: channel.channel,
                medium,
                unit: unit.clone(),
                ts,
                value,
            });
        }
        writer.flush()?;
    }
    Ok(())
}
