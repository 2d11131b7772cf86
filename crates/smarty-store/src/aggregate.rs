//! Aggregates: what the store keeps forever of each 15-minute period and each local day.
//!
//! For each energy register a period keeps the first and last value it saw and its energy:
//! the register's increase since the last value before the period (which may lie in an
//! earlier period). The energies telescope: summed over periods they give exactly the last
//! register value minus the first, and a day's energy is exactly the sum of its periods'.
//! A register that goes backwards (a replaced or reset meter) counts as a new start: the
//! period where it drops counts only its own increase, never negative energy.
//! For each instantaneous value a period keeps sum, count, min and max, so that averages of
//! longer periods are exact weighted averages (docs/storage.md).

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::block::Row;
use super::db::{AggTable, AggWindow, Db, DbResult};
use super::reading::{Aggregation, COLUMNS, NCOL};
use smarty_model::time::day_start;

/// The aggregate of one period (15 minutes or a day) of one meter. Arrays follow
/// [`COLUMNS`]; energy fields are used by [`Aggregation::Energy`] columns, the others by
/// [`Aggregation::Instant`] columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agg {
    /// Start of the period, Unix seconds.
    pub start: i64,
    /// Readings in the period.
    pub n: i64,
    /// Time of the first and the last reading.
    pub first_ts: i64,
    /// See `first_ts`.
    pub last_ts: i64,
    /// Energy of the period (register increase since the last value before it).
    pub energy: [Option<i64>; NCOL],
    /// First register value seen in the period.
    pub first: [Option<i64>; NCOL],
    /// The register at the end of the period: its last value in the period, else (no value in
    /// the period) the last one before it.
    pub last: [Option<i64>; NCOL],
    /// Sum of the instantaneous values.
    pub sum: [Option<i64>; NCOL],
    /// How many instantaneous values.
    pub count: [i64; NCOL],
    /// Smallest instantaneous value.
    pub min: [Option<i64>; NCOL],
    /// Largest instantaneous value.
    pub max: [Option<i64>; NCOL],
}

impl Agg {
    pub(crate) fn empty(start: i64) -> Agg {
        Agg {
            start,
            n: 0,
            first_ts: i64::MAX,
            last_ts: i64::MIN,
            energy: [None; NCOL],
            first: [None; NCOL],
            last: [None; NCOL],
            sum: [None; NCOL],
            count: [0; NCOL],
            min: [None; NCOL],
            max: [None; NCOL],
        }
    }

    /// The aggregate of the readings of one period (sorted by time), energies not yet set
    /// (`settle` sets them).
    pub fn of_rows(start: i64, rows: &[Row]) -> Agg {
        let mut agg = Agg::empty(start);
        for row in rows {
            agg.n += 1;
            agg.first_ts = agg.first_ts.min(row.ts);
            agg.last_ts = agg.last_ts.max(row.ts);
            for (c, column) in COLUMNS.iter().enumerate() {
                let Some(v) = row.values[c] else { continue };
                match column.aggregation {
                    Aggregation::Energy => {
                        agg.first[c].get_or_insert(v);
                        agg.last[c] = Some(v);
                    }
                    Aggregation::Instant => {
                        agg.sum[c] = Some(agg.sum[c].unwrap_or(0) + v);
                        agg.count[c] += 1;
                        agg.min[c] = Some(agg.min[c].map_or(v, |m| m.min(v)));
                        agg.max[c] = Some(agg.max[c].map_or(v, |m| m.max(v)));
                    }
                }
            }
        }
        agg
    }

    /// The aggregate of this stored period (energies settled) with `new`, the aggregate of
    /// readings of the period added to it ([`Agg::of_rows`]), energies not set: as
    /// [`Agg::of_rows`] of all its readings gives it. `None` when the new readings lie
    /// between stored ones (the registers' first and last values cannot be told then).
    pub(crate) fn with_added(&self, new: &Agg) -> Option<Agg> {
        let append = new.first_ts > self.last_ts;
        if !append && new.last_ts >= self.first_ts {
            return None;
        }
        let mut agg = Agg::empty(self.start);
        agg.n = self.n + new.n;
        agg.first_ts = self.first_ts.min(new.first_ts);
        agg.last_ts = self.last_ts.max(new.last_ts);
        for (c, column) in COLUMNS.iter().enumerate() {
            match column.aggregation {
                Aggregation::Energy => {
                    // A stored period without a value of its own carries the one before.
                    let first = self.first[c];
                    let last = first.and(self.last[c]);
                    if append {
                        agg.first[c] = first.or(new.first[c]);
                        agg.last[c] = new.last[c].or(last);
                    } else {
                        agg.first[c] = new.first[c].or(first);
                        agg.last[c] = last.or(new.last[c]);
                    }
                }
                Aggregation::Instant => {
                    agg.sum[c] = match (self.sum[c], new.sum[c]) {
                        (Some(a), Some(b)) => Some(a + b),
                        (a, b) => a.or(b),
                    };
                    agg.count[c] = self.count[c] + new.count[c];
                    agg.min[c] = match (self.min[c], new.min[c]) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    agg.max[c] = match (self.max[c], new.max[c]) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
        }
        Some(agg)
    }

    /// The aggregate of consecutive periods (sorted by start), starting at `start`.
    pub fn of_periods(start: i64, periods: &[Agg]) -> Agg {
        let mut agg = Agg::empty(start);
        for p in periods {
            agg.n += p.n;
            agg.first_ts = agg.first_ts.min(p.first_ts);
            agg.last_ts = agg.last_ts.max(p.last_ts);
            for c in 0..NCOL {
                if let Some(e) = p.energy[c] {
                    agg.energy[c] = Some(agg.energy[c].unwrap_or(0) + e);
                }
                if agg.first[c].is_none() {
                    agg.first[c] = p.first[c];
                }
                if p.last[c].is_some() {
                    agg.last[c] = p.last[c];
                }
                if let Some(s) = p.sum[c] {
                    agg.sum[c] = Some(agg.sum[c].unwrap_or(0) + s);
                }
                agg.count[c] += p.count[c];
                agg.min[c] = match (agg.min[c], p.min[c]) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                agg.max[c] = match (agg.max[c], p.max[c]) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        agg
    }

    /// The average of an instantaneous column, in stored units.
    pub fn average(&self, c: usize) -> Option<f64> {
        let sum = self.sum[c]?;
        (self.count[c] > 0).then(|| sum as f64 / self.count[c] as f64)
    }
}

/// The SQL names of the value columns of the aggregate tables, in the order [`Agg`] is
/// written and read.
pub fn sql_columns() -> Vec<String> {
    let mut names = Vec::new();
    for column in COLUMNS {
        match column.aggregation {
            Aggregation::Energy => {
                names.push(column.name.to_owned());
                names.push(format!("{}_first", column.name));
                names.push(format!("{}_last", column.name));
            }
            Aggregation::Instant => {
                for suffix in ["sum", "n", "min", "max"] {
                    names.push(format!("{}_{suffix}", column.name));
                }
            }
        }
    }
    names
}

/// `start, n, first_ts, last_ts, <sql_columns>` for a SELECT.
pub fn select_list() -> String {
    format!("start, n, first_ts, last_ts, {}", sql_columns().join(", "))
}

/// Writes the 15-minute aggregates `pending` (new or recomputed from raw readings, energies
/// not yet set) with their energies, and corrects the stored periods after them: each
/// period's energy is its `last` register minus the `last` of the period before it (or minus
/// its own `first` when there is none). Walks forward from the first pending period until it
/// is past the last one and a stored period needed no change. Returns the starts of the
/// periods written, pending ones included.
///
/// # Errors
/// Database errors.
pub(crate) fn settle(
    db: &mut dyn Db,
    meter: i64,
    mut pending: BTreeMap<i64, Agg>,
) -> DbResult<Vec<i64>> {
    let (Some(&from), Some(&until)) = (pending.keys().next(), pending.keys().next_back()) else {
        return Ok(Vec::new());
    };
    let mut baseline: [Option<i64>; NCOL] = db
        .last_15m_before(meter, from)?
        .map_or([None; NCOL], |agg| agg.last);
    let energy_columns: Vec<usize> = (0..NCOL)
        .filter(|&c| COLUMNS[c].aggregation == Aggregation::Energy)
        .collect();
    let mut writes: Vec<Agg> = Vec::new();
    let mut next = from;
    let mut stored_done = false;
    loop {
        // The stored periods from `next` on, one page at a time, merged with the pending
        // ones (which replace stored periods of the same start).
        let page = if stored_done {
            Vec::new()
        } else {
            db.page_15m(meter, next, PAGE)?
        };
        stored_done = page.len() < PAGE;
        let page_end = if stored_done {
            i64::MAX
        } else {
            page.last().map_or(i64::MAX, |a| a.start + 1)
        };
        let mut merged: BTreeMap<i64, (Agg, bool)> = page
            .into_iter()
            .map(|agg| (agg.start, (agg, false)))
            .collect();
        let later = pending.split_off(&page_end);
        for (start, agg) in std::mem::replace(&mut pending, later) {
            merged.insert(start, (agg, true));
        }
        if merged.is_empty() {
            break;
        }
        let mut finished = false;
        for (_, (mut agg, is_pending)) in merged {
            next = agg.start + 1;
            let before = agg.clone();
            settle_energies(&mut agg, &mut baseline, &energy_columns);
            if is_pending || agg != before {
                writes.push(agg);
            } else if agg.start > until && pending.is_empty() {
                finished = true;
                break;
            }
        }
        if finished || (stored_done && pending.is_empty()) {
            break;
        }
    }
    db.write_15m(meter, &writes)?;
    Ok(writes.iter().map(|a| a.start).collect())
}

/// Sets the energies of `agg` (a period) from `baseline`, the registers at the end of the
/// period before it, and moves `baseline` to the end of `agg` (see [`settle`]).
fn settle_energies(agg: &mut Agg, baseline: &mut [Option<i64>; NCOL], energy_columns: &[usize]) {
    for &c in energy_columns {
        if agg.first[c].is_none() {
            // No value in the period: the register stands where it stood.
            agg.last[c] = baseline[c];
            agg.energy[c] = baseline[c].map(|_| 0);
        } else {
            // A register below the one before (a replaced or reset meter, or a
            // simulator restarted) starts afresh: its drop is not negative energy.
            let reference = match (baseline[c], agg.first[c]) {
                (Some(b), Some(f)) if f >= b => Some(b),
                (_, first) => first,
            };
            agg.energy[c] = agg.last[c].zip(reference).map(|(l, r)| (l - r).max(0));
        }
        baseline[c] = agg.last[c];
    }
}

/// [`settle`] in memory, over the stored aggregates around the pending periods of one meter
/// (`window`, [`AggWindow`]): the aggregates to write, or `None` when the walk would go past
/// what `window` holds (a stored period after the last pending one changes: periods after it
/// may change too; [`settle`] on the database then).
pub(crate) fn settle_window(window: &AggWindow, pending: &BTreeMap<i64, Agg>) -> Option<Vec<Agg>> {
    let until = *pending.keys().next_back()?;
    let mut baseline = window.before.as_ref().map_or([None; NCOL], |agg| agg.last);
    let energy_columns: Vec<usize> = (0..NCOL)
        .filter(|&c| COLUMNS[c].aggregation == Aggregation::Energy)
        .collect();
    let mut merged: BTreeMap<i64, (Agg, bool)> = window
        .range
        .iter()
        .chain(&window.after)
        .map(|agg| (agg.start, (agg.clone(), false)))
        .collect();
    for (start, agg) in pending {
        merged.insert(*start, (agg.clone(), true));
    }
    let mut writes = Vec::new();
    for (_, (mut agg, is_pending)) in merged {
        let before = agg.clone();
        settle_energies(&mut agg, &mut baseline, &energy_columns);
        if is_pending || agg != before {
            writes.push(agg);
        } else if agg.start > until {
            return Some(writes);
        }
    }
    // Past the last stored period it knows of: done unless more may follow.
    window.after.is_none().then_some(writes)
}

/// Stored 15-minute aggregates read at a time by [`settle`].
const PAGE: usize = 64;

/// Recomputes the day aggregate of `day` from its 15-minute periods (removes it when it has
/// none).
///
/// # Errors
/// Database errors.
pub(crate) fn rebuild_day(db: &mut dyn Db, meter: i64, day: Date, zone: &TimeZone) -> DbResult<()> {
    let start = day_start(day, zone);
    let end = day
        .tomorrow()
        .map_or(start + 86_400, |d| day_start(d, zone));
    let periods = db.read_aggs(AggTable::Min15, meter, start, end)?;
    if periods.is_empty() {
        return db.delete_day(meter, start);
    }
    let agg = Agg::of_periods(start, &periods);
    db.write_day(meter, day, periods.len(), &agg)
}
