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

use jiff::civil::Date;
use jiff::tz::TimeZone;
use rusqlite::types::Value;
use rusqlite::{Connection, Row as SqlRow, params_from_iter};

use super::block::Row;
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
    fn empty(start: i64) -> Agg {
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
    /// ([`settle`] sets them).
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

/// Reads an [`Agg`] from a row selected with [`select_list`].
pub fn from_sql(row: &SqlRow<'_>) -> rusqlite::Result<Agg> {
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

fn values(agg: &Agg) -> Vec<Value> {
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

/// Writes (inserts or replaces) a 15-minute aggregate.
///
/// # Errors
/// SQLite errors.
pub fn write_15m(conn: &Connection, meter: i64, agg: &Agg) -> rusqlite::Result<()> {
    let columns = sql_columns();
    let sql = format!(
        "INSERT OR REPLACE INTO agg_15m (meter, {}) VALUES (?{})",
        select_list(),
        ", ?".repeat(columns.len() + 4)
    );
    let mut params = vec![Value::Integer(meter)];
    params.extend(values(agg));
    conn.prepare_cached(&sql)?
        .execute(params_from_iter(params))?;
    Ok(())
}

/// Writes (inserts or replaces) a day aggregate of `periods` 15-minute periods.
///
/// # Errors
/// SQLite errors.
pub fn write_day(
    conn: &Connection,
    meter: i64,
    day: Date,
    periods: usize,
    agg: &Agg,
) -> rusqlite::Result<()> {
    let columns = sql_columns();
    let sql = format!(
        "INSERT OR REPLACE INTO agg_day (meter, day, periods, {}) VALUES (?, ?, ?{})",
        select_list(),
        ", ?".repeat(columns.len() + 4)
    );
    let mut params = vec![
        Value::Integer(meter),
        Value::Text(day.to_string()),
        Value::Integer(periods as i64),
    ];
    params.extend(values(agg));
    conn.prepare_cached(&sql)?
        .execute(params_from_iter(params))?;
    Ok(())
}

/// The 15-minute aggregates of `meter` with start in `[from, to)`, by start.
///
/// # Errors
/// SQLite errors.
pub fn read_15m(conn: &Connection, meter: i64, from: i64, to: i64) -> rusqlite::Result<Vec<Agg>> {
    let sql = format!(
        "SELECT {} FROM agg_15m WHERE meter = ?1 AND start >= ?2 AND start < ?3 ORDER BY start",
        select_list()
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map((meter, from, to), from_sql)?;
    rows.collect()
}

/// The day aggregates of `meter` with start in `[from, to)`, by start, with their dates.
///
/// # Errors
/// SQLite errors.
pub fn read_days(
    conn: &Connection,
    meter: i64,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<(String, Agg)>> {
    let sql = format!(
        "SELECT {}, day FROM agg_day WHERE meter = ?1 AND start >= ?2 AND start < ?3 ORDER BY start",
        select_list()
    );
    let index = sql_columns().len() + 4;
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map((meter, from, to), |row| {
        Ok((row.get::<_, String>(index)?, from_sql(row)?))
    })?;
    rows.collect()
}

/// Sets the energies (and the carried `last` values) of the 15-minute periods of `meter`
/// from `from` on: each period's energy is its `last` register minus the `last` of the period
/// before it (or minus its own `first` when there is none). Walks forward until it is past
/// `until` and a period needed no change. Returns the starts of the periods it changed.
///
/// # Errors
/// SQLite errors.
pub fn settle(conn: &Connection, meter: i64, from: i64, until: i64) -> rusqlite::Result<Vec<i64>> {
    let mut baseline: [Option<i64>; NCOL] = conn
        .prepare_cached(&format!(
            "SELECT {} FROM agg_15m WHERE meter = ?1 AND start < ?2 ORDER BY start DESC LIMIT 1",
            select_list()
        ))?
        .query_row((meter, from), from_sql)
        .map(|agg| agg.last)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok([None; NCOL]),
            e => Err(e),
        })?;
    let energy_columns: Vec<usize> = (0..NCOL)
        .filter(|&c| COLUMNS[c].aggregation == Aggregation::Energy)
        .collect();
    let mut changed = Vec::new();
    let mut next = from;
    'pages: loop {
        let page = read_page(conn, meter, next)?;
        if page.is_empty() {
            break;
        }
        for mut agg in page {
            next = agg.start + 1;
            let before = agg.clone();
            for &c in &energy_columns {
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
            if agg != before {
                write_15m(conn, meter, &agg)?;
                changed.push(agg.start);
            } else if agg.start > until {
                break 'pages;
            }
        }
    }
    Ok(changed)
}

fn read_page(conn: &Connection, meter: i64, from: i64) -> rusqlite::Result<Vec<Agg>> {
    let sql = format!(
        "SELECT {} FROM agg_15m WHERE meter = ?1 AND start >= ?2 ORDER BY start LIMIT 64",
        select_list()
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map((meter, from), from_sql)?;
    rows.collect()
}

/// Recomputes the day aggregate of `day` from its 15-minute periods (removes it when it has
/// none).
///
/// # Errors
/// SQLite errors.
pub fn rebuild_day(
    conn: &Connection,
    meter: i64,
    day: Date,
    zone: &TimeZone,
) -> rusqlite::Result<()> {
    let start = day_start(day, zone);
    let end = day
        .tomorrow()
        .map_or(start + 86_400, |d| day_start(d, zone));
    let periods = read_15m(conn, meter, start, end)?;
    if periods.is_empty() {
        conn.prepare_cached("DELETE FROM agg_day WHERE meter = ?1 AND start = ?2")?
            .execute((meter, start))?;
        return Ok(());
    }
    let agg = Agg::of_periods(start, &periods);
    write_day(conn, meter, day, periods.len(), &agg)
}
