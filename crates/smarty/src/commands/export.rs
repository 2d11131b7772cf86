//! `smarty export`: the stored history of one meter as CSV or JSON.
//!
//! Every row has `time` (RFC 3339 with the local offset) and `ts` (Unix seconds), then the
//! meter's values with their units in the column names. Raw rows hold the readings as the
//! meter sent them (registers in kWh, powers in kW, …); aggregated rows hold per period the
//! energy (`energy_import_kwh`: kWh in the period), the average, minimum and maximum of each
//! instantaneous value (`power_import_kw_avg`, `_min`, `_max`) and the M-Bus consumption
//! (`mbus1_gas_m3`). Columns the meter never sends are left out.
//!
//! Raw rows are the readings inside the range; aggregated rows are every period that overlaps
//! the range, each whole (docs/storage.md, "Export").

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value as Json};

use smarty_model::period::{Resolution, interval_start};
use smarty_model::time::local_rfc3339;
use smarty_store::Store;
use smarty_store::aggregate::Agg;
use smarty_store::query::{ReadConnection, whole_periods};
use smarty_store::reading::{Aggregation, COLUMNS};

use crate::cli::{ExportArgs, ExportFormat};

/// Raw rows are read a day at a time.
const RAW_CHUNK_S: i64 = 86_400;

/// One output column: its name and where its values come from.
#[derive(Debug, Clone)]
enum Source {
    /// A raw reading's value of column `c`.
    Raw(usize),
    /// The energy of column `c` in the period.
    Energy(usize),
    /// Average, minimum or maximum of instantaneous column `c`.
    Average(usize),
    /// See [`Source::Average`].
    Min(usize),
    /// See [`Source::Average`].
    Max(usize),
    /// The consumption of an M-Bus channel (its index in the channel list).
    Mbus(usize),
}

/// Writes rows as CSV or JSON.
trait RowWriter {
    fn row(&mut self, ts: i64, time: &str, values: &[Option<f64>]) -> Result<()>;
    fn finish(&mut self) -> Result<()>;
}

struct Csv<W: Write> {
    out: csv::Writer<W>,
}

impl<W: Write> RowWriter for Csv<W> {
    fn row(&mut self, ts: i64, time: &str, values: &[Option<f64>]) -> Result<()> {
        let mut record = vec![time.to_owned(), ts.to_string()];
        record.extend(
            values
                .iter()
                .map(|v| v.map_or(String::new(), |v| v.to_string())),
        );
        self.out.write_record(&record)?;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

struct JsonRows<W: Write> {
    out: W,
    names: Vec<String>,
    first: bool,
}

impl<W: Write> RowWriter for JsonRows<W> {
    fn row(&mut self, ts: i64, time: &str, values: &[Option<f64>]) -> Result<()> {
        let mut object = Map::new();
        object.insert("time".into(), Json::from(time));
        object.insert("ts".into(), Json::from(ts));
        for (name, value) in self.names.iter().zip(values) {
            object.insert(name.clone(), value.map_or(Json::Null, Json::from));
        }
        self.out
            .write_all(if self.first { b"\n" } else { b",\n" })?;
        self.first = false;
        serde_json::to_writer(&mut self.out, &object)?;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.out.write_all(b"\n]}\n")?;
        self.out.flush()?;
        Ok(())
    }
}

/// Runs `smarty export`.
///
/// # Errors
/// No store file, an unknown or ambiguous meter, an unwritable output, or store errors.
pub fn run(args: &ExportArgs) -> Result<()> {
    let config = crate::config::store::from_args(&args.store)?;
    if let Some(path) = config.location.sqlite_path()
        && !path.exists()
    {
        bail!(
            "no store at {}: `smarty run` keeps one in its state directory and `smarty import` \
             fills one; point to it with --database FILE|URL, --state-dir DIR or --config FILE",
            path.display()
        );
    }
    // Read-only: an export runs while `smarty run` writes the store.
    let store = Store::open_read_only(&config)
        .with_context(|| format!("cannot open the store {}", config.location))?;
    let reader = store.reader()?;
    let meters = reader.meters()?;
    let names = || {
        meters
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let meter = match (&args.meter, meters.as_slice()) {
        (Some(name), _) => meters
            .iter()
            .find(|m| &m.name == name)
            .with_context(|| format!("no meter {name:?} in the store; it holds: {}", names()))?,
        (None, [one]) => one,
        (None, []) => bail!("the store {} holds no readings yet", config.location),
        (None, _) => bail!(
            "the store holds several meters ({}): choose one with --meter",
            names()
        ),
    };
    let from = args
        .from
        .map(|t| t.as_second())
        .or(meter.first_reading)
        .unwrap_or(0);
    let to = args
        .to
        .map(|t| t.as_second())
        .unwrap_or_else(|| jiff::Timestamp::now().as_second() + 1);
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    let written = write(
        &reader,
        &meter.name,
        from,
        to,
        args.resolution.into(),
        args.format,
        out,
    );
    match written {
        Err(e) if closed_pipe(&e) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// `true` when the error is a closed output (`smarty export … | head`).
fn closed_pipe(e: &anyhow::Error) -> bool {
    let pipe = |kind: Option<io::ErrorKind>| kind == Some(io::ErrorKind::BrokenPipe);
    e.chain().any(|cause| {
        pipe(cause.downcast_ref::<io::Error>().map(io::Error::kind))
            || pipe(cause.downcast_ref::<serde_json::Error>().and_then(serde_json::Error::io_error_kind))
            || cause.downcast_ref::<csv::Error>().is_some_and(|e| {
                matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == io::ErrorKind::BrokenPipe)
            })
    })
}

/// Writes the rows of `meter` in `[from, to)` at `resolution` to `out`: at raw resolution the
/// readings in the range, otherwise every period that overlaps the range, whole (its start may
/// lie before `from`): a day export from noon, or the first minutes of a service, still gets
/// the period's row with the same values as any other export. Returns the rows written.
///
/// # Errors
/// Store errors or an unwritable output.
pub fn write(
    reader: &ReadConnection,
    meter: &str,
    from: i64,
    to: i64,
    resolution: Resolution,
    format: ExportFormat,
    mut out: Box<dyn Write>,
) -> Result<u64> {
    let zone = smarty_model::time::meter_zone();
    let id = reader.meter_id(meter)?;
    let channels = reader.mbus_channels(id)?;
    let (from, to) = whole_periods(from, to, resolution, &zone);
    // Which columns the meter has: from the 15-minute periods that overlap the range (raw) or
    // from the aggregates of the range.
    let aggregates = if resolution == Resolution::Raw {
        reader.aggregates(id, interval_start(from), to, Resolution::Min15)?
    } else {
        reader.aggregates(id, from, to, resolution)?
    };
    let all: Vec<Agg> = aggregates.iter().map(|(_, a)| a.clone()).collect();
    let presence = Agg::of_periods(from, &all);
    let mut columns: Vec<(String, Source)> = Vec::new();
    for (c, column) in COLUMNS.iter().enumerate() {
        let present = match column.aggregation {
            Aggregation::Energy => presence.last[c].is_some(),
            Aggregation::Instant => presence.count[c] > 0,
        };
        if !present {
            continue;
        }
        match (resolution, column.aggregation) {
            (Resolution::Raw, _) => columns.push((column.series().to_owned(), Source::Raw(c))),
            (_, Aggregation::Energy) => {
                columns.push((column.series().to_owned(), Source::Energy(c)))
            }
            (_, Aggregation::Instant) => {
                columns.push((format!("{}_avg", column.series()), Source::Average(c)));
                columns.push((format!("{}_min", column.series()), Source::Min(c)));
                columns.push((format!("{}_max", column.series()), Source::Max(c)));
            }
        }
    }
    if resolution != Resolution::Raw {
        for (i, channel) in channels.iter().enumerate() {
            columns.push((channel.name(), Source::Mbus(i)));
        }
    }
    let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
    let mut writer: Box<dyn RowWriter> = match format {
        ExportFormat::Csv => {
            let mut csv = csv::Writer::from_writer(out);
            let mut header = vec!["time".to_owned(), "ts".to_owned()];
            header.extend(names.iter().cloned());
            csv.write_record(&header)?;
            Box::new(Csv { out: csv })
        }
        ExportFormat::Json => {
            write!(
                out,
                "{{\"meter\": {}, \"resolution\": {}, \"rows\": [",
                Json::from(meter),
                serde_json::to_value(resolution)?
            )?;
            Box::new(JsonRows {
                out,
                names: names.clone(),
                first: true,
            })
        }
    };
    let mut rows = 0u64;
    let mut values = vec![None; columns.len()];
    if resolution == Resolution::Raw {
        let mut start = from;
        while start < to {
            let end = (start + RAW_CHUNK_S).min(to);
            for row in reader.raw_rows(id, start, end)? {
                for (slot, (_, source)) in values.iter_mut().zip(&columns) {
                    *slot = match source {
                        Source::Raw(c) => row.values[*c].map(|v| v as f64 / COLUMNS[*c].scale),
                        _ => None,
                    };
                }
                writer.row(row.ts, &local_rfc3339(row.ts, &zone), &values)?;
                rows += 1;
            }
            start = end;
        }
    } else {
        let mut mbus: Vec<BTreeMap<i64, f64>> = Vec::new();
        for channel in &channels {
            mbus.push(
                reader
                    .mbus_consumption(id, channel.channel, from, to, resolution)?
                    .into_iter()
                    .collect(),
            );
        }
        let mut times: Vec<i64> = aggregates.iter().map(|(t, _)| *t).collect();
        times.extend(mbus.iter().flat_map(|m| m.keys().copied()));
        times.sort_unstable();
        times.dedup();
        let by_time: BTreeMap<i64, &Agg> = aggregates.iter().map(|(t, a)| (*t, a)).collect();
        for t in times {
            let agg = by_time.get(&t);
            for (slot, (_, source)) in values.iter_mut().zip(&columns) {
                let scale = |c: usize| COLUMNS[c].scale;
                *slot = match source {
                    Source::Raw(_) => None,
                    Source::Energy(c) => {
                        agg.and_then(|a| a.energy[*c]).map(|e| e as f64 / scale(*c))
                    }
                    Source::Average(c) => agg
                        .and_then(|a| a.average(*c))
                        .map(|v| (v / scale(*c) * 10_000.0).round() / 10_000.0),
                    Source::Min(c) => agg.and_then(|a| a.min[*c]).map(|v| v as f64 / scale(*c)),
                    Source::Max(c) => agg.and_then(|a| a.max[*c]).map(|v| v as f64 / scale(*c)),
                    Source::Mbus(i) => mbus[*i].get(&t).copied(),
                };
            }
            writer.row(t, &local_rfc3339(t, &zone), &values)?;
            rows += 1;
        }
    }
    writer.finish()?;
    Ok(rows)
}
