//! Raw readings packed into blocks: one row of `raw_block` per meter and 5 minutes.
//!
//! A row per telegram costs about 65 bytes in SQLite (a byte of record header per column,
//! four-byte registers), which is 205 MB for a year at 10 s. Packed by column, each value
//! stored as the difference from the column's previous value (registers grow by a few Wh,
//! voltages move by tenths), a telegram takes about 28 bytes, and the aggregates are computed
//! from the same rows anyway.
//!
//! The blob is a format byte ([`FORMAT`]) followed by a postcard-encoded `Wire`: the times
//! and every column of [`COLUMNS`] as zig-zag varints of differences.

use serde::{Deserialize, Serialize};

use super::reading::{COLUMNS, NCOL};

/// The length of a block, seconds. Blocks start at multiples of it; three make a 15-minute
/// period.
pub const BLOCK_S: i64 = 300;

/// The version of the blob layout (its first byte).
pub const FORMAT: u8 = 1;

/// One reading inside the store: its time and values in [`COLUMNS`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Unix seconds.
    pub ts: i64,
    /// Values in stored units, `None` when absent.
    pub values: [Option<i64>; NCOL],
}

/// The start of the block holding `ts`.
pub fn block_start(ts: i64) -> i64 {
    ts.div_euclid(BLOCK_S) * BLOCK_S
}

/// The encoded layout.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    /// The first time, then differences to the previous one.
    ts: Vec<i64>,
    /// One entry per column of [`COLUMNS`], in order.
    columns: Vec<WireColumn>,
}

/// One column of a block.
#[derive(Debug, Serialize, Deserialize)]
enum WireColumn {
    /// No reading of the block has the value.
    Absent,
    /// Every reading has it: the first value, then differences to the previous one.
    Dense(Vec<i64>),
    /// Some readings have it: a bitmap of which (bit `i % 8` of byte `i / 8`), then the
    /// present values as in `Dense`.
    Sparse(Vec<u8>, Vec<i64>),
}

fn deltas(values: impl Iterator<Item = i64>) -> Vec<i64> {
    let mut previous = 0i64;
    values
        .map(|v| {
            let d = v.wrapping_sub(previous);
            previous = v;
            d
        })
        .collect()
}

fn undelta(deltas: &[i64]) -> impl Iterator<Item = i64> + '_ {
    deltas.iter().scan(0i64, |acc, d| {
        *acc = acc.wrapping_add(*d);
        Some(*acc)
    })
}

/// Packs rows sorted by time (distinct times).
pub fn encode(rows: &[Row]) -> Vec<u8> {
    let columns = (0..COLUMNS.len())
        .map(|c| {
            let present = rows.iter().filter(|r| r.values[c].is_some()).count();
            let values = deltas(rows.iter().filter_map(|r| r.values[c]));
            if present == 0 {
                WireColumn::Absent
            } else if present == rows.len() {
                WireColumn::Dense(values)
            } else {
                let mut bitmap = vec![0u8; rows.len().div_ceil(8)];
                for (i, r) in rows.iter().enumerate() {
                    if r.values[c].is_some() {
                        bitmap[i / 8] |= 1 << (i % 8);
                    }
                }
                WireColumn::Sparse(bitmap, values)
            }
        })
        .collect();
    let wire = Wire {
        ts: deltas(rows.iter().map(|r| r.ts)),
        columns,
    };
    let mut out = vec![FORMAT];
    out.extend(postcard::to_allocvec(&wire).unwrap_or_default());
    out
}

/// Unpacks a block; the error says what does not fit.
pub fn decode(data: &[u8]) -> Result<Vec<Row>, String> {
    let (&format, body) = data.split_first().ok_or("empty block")?;
    if format != FORMAT {
        return Err(format!("unknown block format {format}"));
    }
    let wire: Wire = postcard::from_bytes(body).map_err(|e| e.to_string())?;
    let n = wire.ts.len();
    let mut rows: Vec<Row> = undelta(&wire.ts)
        .map(|ts| Row {
            ts,
            values: [None; NCOL],
        })
        .collect();
    if wire.columns.len() > NCOL {
        return Err(format!(
            "{} columns, at most {NCOL} known",
            wire.columns.len()
        ));
    }
    for (c, column) in wire.columns.iter().enumerate() {
        match column {
            WireColumn::Absent => {}
            WireColumn::Dense(values) => {
                if values.len() != n {
                    return Err(format!("column {c}: {} values for {n} rows", values.len()));
                }
                for (row, v) in rows.iter_mut().zip(undelta(values)) {
                    row.values[c] = Some(v);
                }
            }
            WireColumn::Sparse(bitmap, values) => {
                let mut values = undelta(values);
                for (i, row) in rows.iter_mut().enumerate() {
                    if bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0) {
                        row.values[c] =
                            Some(values.next().ok_or(format!("column {c}: too few values"))?);
                    }
                }
            }
        }
    }
    Ok(rows)
}

/// Unpacks the times and one column of a block: `(time, value)` for the readings that have
/// the value.
pub fn decode_column(data: &[u8], c: usize) -> Result<Vec<(i64, i64)>, String> {
    let (&format, body) = data.split_first().ok_or("empty block")?;
    if format != FORMAT {
        return Err(format!("unknown block format {format}"));
    }
    let wire: Wire = postcard::from_bytes(body).map_err(|e| e.to_string())?;
    let times = undelta(&wire.ts);
    Ok(match wire.columns.get(c) {
        None | Some(WireColumn::Absent) => Vec::new(),
        Some(WireColumn::Dense(values)) => {
            if values.len() != wire.ts.len() {
                return Err(format!(
                    "column {c}: {} values for {} rows",
                    values.len(),
                    wire.ts.len()
                ));
            }
            times.zip(undelta(values)).collect()
        }
        Some(WireColumn::Sparse(bitmap, values)) => {
            let mut values = undelta(values);
            let mut out = Vec::new();
            for (i, ts) in times.enumerate() {
                if bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0) {
                    out.push((
                        ts,
                        values.next().ok_or(format!("column {c}: too few values"))?,
                    ));
                }
            }
            out
        }
    })
}

/// Adds `new` rows (sorted by time) to `rows` (sorted by time); rows whose time is already
/// there are left out. Returns how many were added.
pub fn merge(rows: &mut Vec<Row>, new: &[Row]) -> usize {
    let before = rows.len();
    if rows
        .last()
        .is_none_or(|last| new.first().is_none_or(|n| n.ts > last.ts))
    {
        // The common case: newer readings after the older ones.
        let mut last = rows.last().map(|r| r.ts);
        for row in new {
            if last.is_none_or(|l| row.ts > l) {
                rows.push(*row);
                last = Some(row.ts);
            }
        }
    } else {
        for row in new {
            if let Err(at) = rows.binary_search_by_key(&row.ts, |r| r.ts) {
                rows.insert(at, *row);
            }
        }
    }
    rows.len() - before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ts: i64, seed: i64) -> Row {
        let mut values = [None; NCOL];
        for (c, v) in values.iter_mut().enumerate() {
            *v = match c {
                0 => Some(11_742_449 + seed * 3),
                3 => None,
                5 if seed % 3 == 0 => None,
                5 => Some(-seed * 1000),
                _ => Some(seed * 37 % 5000 + c as i64),
            };
        }
        Row { ts, values }
    }

    #[test]
    fn blocks_round_trip() {
        let rows: Vec<Row> = (0..30).map(|i| row(1_790_000_000 + i * 10, i)).collect();
        let data = encode(&rows);
        assert_eq!(decode(&data).unwrap(), rows);
        // Small: about 25 bytes per reading here, far below a row per reading.
        assert!(data.len() < 30 * 45, "{} bytes", data.len());
        for c in 0..NCOL {
            let column: Vec<(i64, i64)> = rows
                .iter()
                .filter_map(|r| r.values[c].map(|v| (r.ts, v)))
                .collect();
            assert_eq!(decode_column(&data, c).unwrap(), column, "column {c}");
        }
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
        assert!(decode(&[FORMAT + 1]).unwrap_err().contains("format"));
        assert!(decode(&data[..data.len() / 2]).is_err());
        let extreme = Row {
            ts: i64::MIN,
            values: [Some(i64::MAX); NCOL],
        };
        let other = Row {
            ts: i64::MAX,
            values: [Some(i64::MIN); NCOL],
        };
        assert_eq!(
            decode(&encode(&[extreme, other])).unwrap(),
            vec![extreme, other]
        );
    }

    #[test]
    fn merging_keeps_rows_already_there() {
        let mut rows: Vec<Row> = [10, 20, 40].iter().map(|&t| row(t, t)).collect();
        let added = merge(&mut rows, &[row(20, 99), row(30, 30), row(50, 50)]);
        assert_eq!(added, 2);
        let times: Vec<i64> = rows.iter().map(|r| r.ts).collect();
        assert_eq!(times, [10, 20, 30, 40, 50]);
        assert_eq!(rows[1], row(20, 20), "the stored row wins");
        assert_eq!(merge(&mut rows, &[row(60, 1), row(60, 2)]), 1);
        assert_eq!(block_start(1_790_000_123), 1_790_000_100);
        assert_eq!(block_start(-1), -300);
    }
}
