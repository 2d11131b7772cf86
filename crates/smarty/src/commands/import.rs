//! `smarty import`: backfills the store from a capture of frames or a `read --format json`
//! file.

use std::io::{self, IsTerminal};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value as Json;
use smarty_p1::registry::{Kind, Medium};
use smarty_p1::{Decimal, Decoder, Obis, RejectReason};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, ReadBuf};

use smarty_model::time::local_rfc3339;
use smarty_model::value::{TelegramValue, ValueData, ValueId};
use smarty_store::{MbusRecord, Reading, Store, StoreError, Writer};

use crate::cli::ImportArgs;
use crate::source::HexOrBinary;

/// Readings committed at once at most (a day at 10 s).
const BATCH: usize = 8640;

/// How far ahead of this machine's clock a reading may lie before it counts as in the future
/// (a meter's clock may run a little ahead).
const FUTURE_TOLERANCE_S: i64 = 300;

/// Counts the bytes read into the progress bar.
struct Counting<R> {
    inner: R,
    progress: ProgressBar,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.progress.inc((buf.filled().len() - before) as u64);
        polled
    }
}

/// The import in progress.
struct Import {
    writer: Writer,
    meter: Arc<str>,
    retention_s: Option<i64>,
    progress: ProgressBar,
    /// Telegrams (or JSON lines) read.
    telegrams: u64,
    /// Telegrams without a time of their own (not imported).
    timeless: u64,
    /// JSON lines that are not telegrams.
    bad_lines: u64,
    first: Option<i64>,
    last: Option<i64>,
    /// The latest reading time committed.
    committed_until: Option<i64>,
    /// Readings later than the clock of this machine (beyond [`FUTURE_TOLERANCE_S`]).
    future: u64,
}

impl Import {
    /// Adds the readings of one telegram; `timed` tells whether it carries its own time.
    fn add(&mut self, reading: Option<Reading>, mbus: Vec<MbusRecord>, timed: bool) -> Result<()> {
        self.telegrams += 1;
        match reading {
            Some(reading) => {
                if reading.ts > jiff::Timestamp::now().as_second() + FUTURE_TOLERANCE_S {
                    self.future += 1;
                }
                self.first = Some(self.first.map_or(reading.ts, |f| f.min(reading.ts)));
                self.last = Some(self.last.map_or(reading.ts, |l| l.max(reading.ts)));
                self.writer.push(reading);
            }
            None if !timed => self.timeless += 1,
            None => {}
        }
        for m in mbus {
            self.writer.push_mbus(m);
        }
        if self.writer.buffered() >= BATCH || self.writer.due() {
            self.commit()?;
        }
        Ok(())
    }

    /// Commits the buffer, then prunes raw readings past the retention (never the period of
    /// the last reading committed, which the next batch may continue).
    fn commit(&mut self) -> Result<()> {
        self.writer.flush()?;
        self.committed_until = self.last;
        if let (Some(retention), Some(last)) = (self.retention_s, self.committed_until) {
            let now = jiff::Timestamp::now().as_second();
            self.writer.prune(now.min(last + retention))?;
        }
        let totals = self.writer.totals();
        self.progress.set_message(format!(
            "{} readings imported, {} already stored",
            totals.readings, totals.duplicates
        ));
        Ok(())
    }
}

/// Runs `smarty import`.
///
/// # Errors
/// No store, an unreadable file, a wrong or missing key, or store errors.
pub async fn run(args: ImportArgs) -> Result<()> {
    let started = Instant::now();
    let config = crate::config::store::from_args(&args.store)?;
    // One process writes a store at a time: a store that the service writes is refused
    // (docs/storage.md, "One writer").
    let store = match Store::open(&config) {
        Ok(store) => store,
        Err(e @ StoreError::Locked { .. }) => bail!(
            "{e}. smarty import does not write beside it: stop that process, import, then \
             start it again (its readings of the meantime arrive when it reconnects to the \
             meter), or import into another file with --database"
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot open the store {}", config.location));
        }
    };
    let stdin = args.file.as_os_str() == "-";
    let (input, total): (Box<dyn AsyncRead + Unpin + Send>, Option<u64>) = if stdin {
        (Box::new(tokio::io::stdin()), None)
    } else {
        let file = tokio::fs::File::open(&args.file)
            .await
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let len = file.metadata().await.ok().map(|m| m.len());
        (Box::new(file), len)
    };
    let progress = match total {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{elapsed_precise} {spinner} {bytes} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    if args.quiet || !io::stderr().is_terminal() {
        progress.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut input = BufReader::with_capacity(
        64 * 1024,
        Counting {
            inner: input,
            progress: progress.clone(),
        },
    );
    let head = input.fill_buf().await.context("cannot read the input")?;
    let json = head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let mut import = Import {
        writer: store.writer()?,
        meter: Arc::from(args.meter.as_str()),
        retention_s: config.retention_s(),
        progress: progress.clone(),
        telegrams: 0,
        timeless: 0,
        bad_lines: 0,
        first: None,
        last: None,
        committed_until: None,
        future: 0,
    };
    let rejected = if json {
        json_lines(input, &mut import).await?;
        import.bad_lines
    } else {
        frames(input, &args, &mut import).await?
    };
    import.commit()?;
    progress.finish_and_clear();
    let totals = import.writer.totals();
    let zone = smarty_model::time::meter_zone();
    let period = match (import.first, import.last) {
        (Some(first), Some(last)) => format!(
            "from {} to {}",
            local_rfc3339(first, &zone),
            local_rfc3339(last, &zone)
        ),
        _ => "nothing".to_owned(),
    };
    let mut summary = format!(
        "smarty import: {} telegram{} imported, {} skipped as already stored, {} rejected {}",
        totals.readings,
        if totals.readings == 1 { "" } else { "s" },
        totals.duplicates,
        rejected,
        if json { "lines" } else { "frames" },
    );
    if import.timeless > 0 {
        summary.push_str(&format!(
            ", {} without a time of their own",
            import.timeless
        ));
    }
    if totals.mbus > 0 {
        summary.push_str(&format!(", {} M-Bus readings", totals.mbus));
    }
    crate::output::note(format_args!(
        "{summary}; {period}; into {} in {:.1} s",
        store.location(),
        started.elapsed().as_secs_f64()
    ));
    if import.future > 0 {
        let last = import.last.map_or_else(String::new, |t| {
            format!(", up to {}", local_rfc3339(t, &zone))
        });
        tracing::warn!(
            "{} reading{} lie in the future{last}, later than this machine's clock: the \
             capture's clock is ahead, or it was simulated without --start (`smarty simulate` \
             starts at the current time; `--start DATE` puts a capture in the past). They are \
             stored anyway and count in the days and periods they name",
            import.future,
            if import.future == 1 { "" } else { "s" },
        );
    }
    Ok(())
}

/// One line of `smarty read --format json` (docs/formats.md) as the store takes it.
#[derive(Debug)]
struct JsonTelegram {
    /// The telegram's time, Unix seconds.
    ts: Option<i64>,
    /// The meter id it carries.
    meter_id: Option<String>,
    /// Its numbers, typed: each under its OBIS code (the registry says what it is, the line's
    /// M-Bus device types give the media), with the unit and capture time sent. The names of
    /// the line are not read: they follow from the codes.
    values: Vec<TelegramValue>,
}

impl JsonTelegram {
    /// The line `json`; `None` when it is not a telegram (no `objects`).
    fn read(json: &Json) -> Option<JsonTelegram> {
        let objects = json.get("objects")?.as_object()?;
        let rfc3339 = |value: Option<&Json>| value?.as_str()?.parse::<jiff::Timestamp>().ok();
        let objects: Vec<(Obis, &str, &Json)> = objects
            .iter()
            .filter_map(|(code, object)| {
                let (obis, len) = Obis::parse_prefix(code.as_bytes())?;
                Some((obis, &code[..len], object))
            })
            .collect();
        // The media of the M-Bus channels, from their device types (`0-n:24.1.0`).
        let mut media = [None; 10];
        for (obis, _, object) in &objects {
            if smarty_p1::registry::lookup(*obis).is_some_and(|d| d.kind == Kind::MbusDeviceType)
                && let Some(code) = object.get("value").and_then(Json::as_u64)
                && let (Ok(code), Some(slot)) =
                    (u8::try_from(code), media.get_mut(usize::from(obis.b)))
            {
                *slot = Some(Medium::from_device_type(code));
            }
        }
        let values = objects
            .iter()
            .filter_map(|(obis, code, object)| {
                let value = decimal(object.get("value")?)?;
                let unit = object.get("unit").and_then(Json::as_str);
                let medium = media.get(usize::from(obis.b)).copied().flatten();
                let id = ValueId::from_parts(*obis, medium, unit)?;
                let captured = rfc3339(object.get("timestamp"));
                let data = ValueData::Number { value, captured };
                Some(TelegramValue::new(id, (*code).to_owned(), data))
            })
            .collect();
        Some(JsonTelegram {
            ts: rfc3339(json.get("timestamp")).map(|t| t.as_second()),
            meter_id: json
                .get("meter_id")
                .and_then(Json::as_str)
                .map(str::to_owned),
            values,
        })
    }
}

/// A JSON number as the decimal it was written from: integers as they are, other numbers by
/// their shortest decimal text (`14239.771`); `None` for anything else.
fn decimal(value: &Json) -> Option<Decimal> {
    if let Some(n) = value.as_i64() {
        return Some(Decimal::new(n, 0));
    }
    Decimal::parse(&value.as_f64()?.to_string()).ok()
}

/// Reads JSON lines (`smarty read --format json`).
async fn json_lines<R: AsyncRead + Unpin>(input: BufReader<R>, import: &mut Import) -> Result<()> {
    let mut lines = input.lines();
    let mut number = 0u64;
    while let Some(line) = lines.next_line().await.context("cannot read the input")? {
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let telegram = serde_json::from_str::<Json>(&line)
            .ok()
            .as_ref()
            .and_then(JsonTelegram::read);
        match telegram {
            Some(line) => {
                let (reading, mbus) = Reading::from_values(
                    &import.meter,
                    line.meter_id.as_deref(),
                    line.ts,
                    &line.values,
                );
                import.add(reading, mbus, line.ts.is_some())?;
            }
            None => {
                import.bad_lines += 1;
                if import.bad_lines <= 3 {
                    import.progress.suspend(|| {
                        tracing::warn!("line {number}: not a telegram of smarty read --format json")
                    });
                }
            }
        }
    }
    Ok(())
}

/// Reads frames (binary, or the hex lines of `read --format raw`); returns the frames
/// rejected.
async fn frames<R: AsyncRead + Unpin>(
    input: BufReader<R>,
    args: &ImportArgs,
    import: &mut Import,
) -> Result<u64> {
    let (config, _) = crate::key::decoder_config(&args.key)?;
    let mut decoder = Decoder::new(config);
    let mut input = HexOrBinary::with_block(input, crate::pipeline::FILE_BLOCK);
    let mut buf = vec![0u8; crate::pipeline::FILE_BLOCK];
    let mut reported = 0u32;
    let mut handle = |decoder: &mut Decoder, at_end: bool, import: &mut Import| -> Result<()> {
        loop {
            let result = if at_end {
                decoder.finish()
            } else {
                decoder.next()
            };
            match result {
                None => return Ok(()),
                Some(Ok(decoded)) => {
                    let telegram = &decoded.telegram;
                    let (reading, mbus) = Reading::from_telegram(&import.meter, telegram);
                    import.add(reading, mbus, telegram.timestamp().is_some())?;
                }
                Some(Err(rejection)) => {
                    reported += 1;
                    if reported <= 3 {
                        import.progress.suspend(|| {
                            tracing::warn!(
                                "rejected: {}",
                                crate::key::explain(&rejection, crate::key::Settings::Flags)
                            );
                        });
                    }
                }
            }
        }
    };
    loop {
        let n = input
            .read(&mut buf)
            .await
            .context("cannot read the input")?;
        if n == 0 {
            break;
        }
        decoder.push(&buf[..n]);
        handle(&mut decoder, false, import)?;
    }
    handle(&mut decoder, true, import)?;
    let stats = decoder.stats();
    let rejected: u64 = stats.rejections().map(|(_, n)| n).sum();
    if stats.telegrams == 0 && stats.rejected(RejectReason::NoKey) > 0 {
        bail!(
            "the capture holds encrypted frames: give the key with --key-file, --key or SMARTY_KEY"
        );
    }
    if stats.telegrams == 0 && stats.frames + stats.plain_telegrams == 0 {
        bail!("no frame or telegram found in {}", args.file.display());
    }
    Ok(rejected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reading_of(json: &Json) -> (Option<Reading>, Vec<MbusRecord>) {
        let line = JsonTelegram::read(json).unwrap();
        Reading::from_values(
            &Arc::from("home"),
            line.meter_id.as_deref(),
            line.ts,
            &line.values,
        )
    }

    #[test]
    fn a_json_line_becomes_a_reading() {
        let json = json!({
            "meter_id": "SAG1030700114004",
            "timestamp": "2026-04-03T17:54:31+02:00",
            "objects": {
                "1-0:1.8.0": {"name": "energy_import_kwh", "value": 11742.449, "unit": "kWh"},
                "1-0:2.8.1": {"name": "energy_export_tariff1_kwh", "value": 1.5, "unit": "kWh"},
                "1-0:2.8.2": {"name": "energy_export_tariff2_kwh", "value": 2000, "unit": "Wh"},
                "1-0:1.7.0": {"name": "power_import_kw", "value": 0.461, "unit": "kW"},
                "1-0:3.7.0": {"name": "reactive_power_import_kvar", "value": 0.12, "unit": null},
                "1-0:32.7.0": {"name": "voltage_l1_v", "value": 231.4, "unit": "V"},
                "1-0:31.7.0": {"name": "current_l1_a", "value": 2, "unit": "A"},
                "0-1:24.1.0": {"name": "mbus1_device_type", "value": 3, "unit": null},
                "0-1:24.2.1": {"name": "mbus1_gas_m3", "value": 14239.771, "unit": "m3",
                               "timestamp": "2026-04-03T17:45:42+02:00"},
                "0-2:24.2.1": {"name": "mbus2_warm_water_m3", "value": 3.5, "unit": "m3",
                               "timestamp": null}
            }
        });
        let (reading, mbus) = reading_of(&json);
        let r = reading.unwrap();
        assert_eq!(r.ts, 1_775_231_671);
        assert_eq!(r.meter_id.as_deref(), Some("SAG1030700114004"));
        assert_eq!(r.energy_import_wh, Some(11_742_449));
        assert_eq!(r.energy_export_wh, Some(3500));
        assert_eq!(r.energy_export_t1_wh, Some(1500));
        assert_eq!(r.energy_export_t2_wh, Some(2000));
        assert_eq!(r.power_import_w, Some(461));
        assert_eq!(r.reactive_power_import_var, Some(120));
        assert_eq!(r.voltage_l1_dv, Some(2314));
        assert_eq!(r.current_l1_ca, Some(200));
        assert_eq!(r.power_export_w, None);
        assert_eq!(mbus.len(), 1, "{mbus:?}");
        assert_eq!(
            (mbus[0].channel, mbus[0].medium_name(), mbus[0].unit_name()),
            (1, "gas", "m3".to_owned())
        );
        assert_eq!(mbus[0].ts, 1_775_231_142);
        assert_eq!(mbus[0].value, 14239.771);
        // Without a time of its own there is no reading; the M-Bus readings have theirs.
        let mut no_time = json.clone();
        no_time["timestamp"] = Json::Null;
        let (reading, mbus) = reading_of(&no_time);
        assert!(reading.is_none());
        assert_eq!(mbus.len(), 1);
        // The names are not read: a line whose names are wrong gives the same.
        let mut renamed = json.clone();
        for object in renamed["objects"].as_object_mut().unwrap().values_mut() {
            object["name"] = json!("x");
        }
        assert_eq!(reading_of(&renamed), reading_of(&json));
        assert!(JsonTelegram::read(&json!({"meter_id": "x"})).is_none());
    }

    #[test]
    fn frames_and_their_json_lines_give_the_same_readings() {
        use crate::cli::{Firmware, MeterArgs};
        let zone = smarty_model::time::meter_zone();
        for firmware in [Firmware::Full, Firmware::Basic, Firmware::Early] {
            let args = MeterArgs {
                interval: std::time::Duration::from_secs(10),
                count: None,
                key: None,
                key_file: None,
                auth_key: None,
                plain: true,
                gas: true,
                water: true,
                firmware,
                solar_kwp: 4.0,
                frame_counter: None,
                start: None,
                seed: Some(3),
            };
            let (mut meter, _) = crate::simulate::Meter::new(&args).unwrap();
            let meter_name: Arc<str> = Arc::from("home");
            let mut mbus_seen = 0;
            for i in 0..100 {
                let now = jiff::Timestamp::from_second(1_790_000_000 + 10 * i)
                    .unwrap()
                    .to_zoned(zone.clone());
                let bytes = meter.next_frame(&now);
                let mut decoder = Decoder::new(smarty_p1::DecoderConfig::default());
                decoder.push(&bytes);
                let decoded = decoder.finish().unwrap().unwrap();
                let telegram = &decoded.telegram;
                let direct = Reading::from_telegram(&meter_name, telegram);
                let json = smarty_model::json::telegram_json(&decoded);
                let line = JsonTelegram::read(&json).unwrap();
                let via_json = Reading::from_values(
                    &meter_name,
                    line.meter_id.as_deref(),
                    line.ts,
                    &line.values,
                );
                assert_eq!(direct, via_json, "{firmware:?}");
                let reading = direct.0.unwrap();
                assert_eq!(reading.ts, 1_790_000_000 + 10 * i);
                assert!(reading.energy_import_wh.is_some());
                mbus_seen += direct.1.len();
            }
            if firmware == Firmware::Full {
                assert!(mbus_seen >= 100, "{mbus_seen}");
            }
        }
    }
}
