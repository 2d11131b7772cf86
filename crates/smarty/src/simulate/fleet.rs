//! `smarty simulate --meters N --keys-out FILE` and `smarty simulate --keys FILE --nats URL |
//! --mqtt URL`: a fleet of virtual meters (docs/fleet.md).
//!
//! Each meter sends the frames the single virtual meter sends ([`Meter`]), encrypted with its
//! own key under its own system title, at the same instants as the others: every `--interval`
//! (or at once with `--fast`, the simulated time still advancing by `--interval`).
//!
//! Frame counters and telegram times always advance, also across runs: a frame's counter is
//! the number of seconds from 2020-01-01T00:00:00Z to its telegram time ([`frame_counter`]),
//! and a run starts at the later of now and where the last run stopped, which the state file
//! ([`State`], next to the keys file) remembers with each meter's energy registers, so that
//! these go on too. The state is written ahead while running (the time and registers a run
//! may reach within the next [`RESERVE`] intervals), so that even a killed run is continued
//! after its last frame; and exactly on a clean end.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use smarty_fleet::keys_csv::{self, MeterKeys};
use smarty_fleet::publish::{Publisher, PublisherConfig};
use smarty_fleet::stream::{self, StreamConfig};
use smarty_fleet::subject;
use smarty_p1::Key;

use super::{Household, Meter};
use crate::cli::{MeterArgs, SimulateArgs};

/// Frame counters count seconds from this instant (2020-01-01T00:00:00Z): they fit in 32 bits
/// until 2156.
const COUNTER_EPOCH_S: i64 = 1_577_836_800;
/// The state is written ahead by this many intervals.
pub const RESERVE: i64 = 60;
/// Frames sent from the simulating thread to the publishing task at a time.
const BATCH: usize = 512;
/// MQTT messages awaiting their PUBACK, at most (NATS's MQTT listener takes 1024 per session).
const MQTT_WINDOW: u16 = 256;

/// The frame counter of a frame sent at `time`: seconds since 2020-01-01T00:00:00Z.
///
/// # Errors
/// A time before 2020 or after 2156.
pub fn frame_counter(time: Timestamp) -> Result<u32> {
    u32::try_from(time.as_second() - COUNTER_EPOCH_S).map_err(|_| {
        anyhow::anyhow!("{time}: a fleet's telegram times are from 2020 to 2156 (frame counters)")
    })
}

/// Runs `smarty simulate --meters` or `--keys`.
///
/// # Errors
/// Bad options, a keys or state file that cannot be read or written, a server that cannot be
/// reached at first or refuses the frames.
pub async fn run(args: SimulateArgs) -> Result<()> {
    if let (Some(n), Some(path)) = (args.meters, &args.keys_out) {
        return make_keys(n, path);
    }
    let keys_path = args.keys.clone().context("--keys FILE is needed")?;
    let state_path = args.state.clone().unwrap_or_else(|| {
        let mut name = keys_path.clone().into_os_string();
        name.push(".state");
        PathBuf::from(name)
    });
    if args.meter.interval < Duration::from_secs(1) {
        bail!(
            "--interval: a fleet's meters send at most once a second (telegram times have \
             whole seconds, and a meter's readings are told apart by them)"
        );
    }
    let keys = keys_csv::read_file(&keys_path)
        .with_context(|| format!("keys file {}", keys_path.display()))?;
    if keys.is_empty() {
        bail!("the keys file {} names no meter", keys_path.display());
    }
    let state = State::read(&state_path)?;
    let now = Timestamp::from_second(Timestamp::now().as_second())?;
    let start = state.next.map_or(now, |next| next.max(now));
    let first_counter = frame_counter(start)?;
    let mut meters = Vec::with_capacity(keys.len());
    let mut continued = 0usize;
    for meter_keys in &keys {
        let mut meter = Meter::of_fleet(&args.meter, meter_keys);
        if let Some(registers) = state.registers.get(&meter_keys.system_title) {
            registers.apply(meter.household_mut());
            continued += 1;
        }
        meters.push(meter);
    }
    let mut sink = Sink::connect(&args).await?;
    crate::output::note(format_args!(
        "virtual fleet: {} meters of {} sending encrypted frames every {:?} to {}, from {} \
         (frame counter {first_counter}; {continued} meters continue the last run of {})",
        meters.len(),
        keys_path.display(),
        args.meter.interval,
        sink.describe(),
        start.to_zoned(zone()),
        state_path.display(),
    ));

    let (frames_tx, mut frames_rx) = tokio::sync::mpsc::channel::<Vec<Frame>>(8);
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    let producer = Producer {
        meters,
        args: args.meter.clone(),
        fast: args.fast,
        start,
        state_path,
    };
    let simulating = tokio::task::spawn_blocking(move || producer.run(&frames_tx, &stop_rx));
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    let mut stopping = false;
    let mut failure = None;
    loop {
        tokio::select! {
            batch = frames_rx.recv() => match batch {
                Some(batch) => {
                    if let Err(e) = sink.send_all(batch).await {
                        failure = Some(e);
                        break;
                    }
                }
                None => break,
            },
            _ = &mut interrupted, if !stopping => {
                stopping = true;
                let _ = stop_tx.send(());
            }
        }
    }
    // The simulating thread ends once it sees the channel closed (or the stop).
    drop(frames_rx);
    let _ = stop_tx.send(());
    let made = simulating.await??;
    if let Some(e) = failure {
        return Err(e);
    }
    tokio::select! {
        result = sink.flush() => {
            let summary = result?;
            crate::output::note(format_args!("smarty simulate: {made} frames sent{summary}"));
        }
        _ = tokio::signal::ctrl_c() => {
            crate::output::note(format_args!(
                "smarty simulate: {made} frames made, {} not acknowledged (interrupted)",
                sink.in_flight()
            ));
        }
    }
    Ok(())
}

/// `--meters N --keys-out FILE`: N meters with random system titles (`SAG` and 5 random
/// bytes, all different) and keys, named `meter-0001`…, with Luxembourg's authentication key.
fn make_keys(n: u32, path: &Path) -> Result<()> {
    let mut rng = rand::rng();
    let width = n.to_string().len().max(4);
    let mut titles = std::collections::HashSet::new();
    let mut meters = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let title = loop {
            let mut title = *b"SAG\0\0\0\0\0";
            rng.fill(&mut title[3..]);
            if titles.insert(title) {
                break title;
            }
        };
        meters.push(MeterKeys {
            name: Some(format!("meter-{i:0width$}")),
            system_title: title,
            key: Key::from_bytes(rng.random()),
            auth_key: None,
        });
    }
    keys_csv::write_file(path, &meters)?;
    crate::output::note(format_args!(
        "smarty simulate: {n} meters with their keys written to {} (run them with --keys {0})",
        path.display()
    ));
    Ok(())
}

fn zone() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get(smarty_model::time::METER_ZONE).unwrap_or(jiff::tz::TimeZone::UTC)
}

/// One frame of one meter.
struct Frame {
    system_title: [u8; 8],
    frame_counter: u32,
    frame: Vec<u8>,
}

/// The simulating side, on a thread of its own: the meters, tick by tick.
struct Producer {
    meters: Vec<Meter>,
    args: MeterArgs,
    fast: bool,
    start: Timestamp,
    state_path: PathBuf,
}

impl Producer {
    /// Makes the frames of every meter at every tick and hands them to `frames`, until
    /// `--count` ticks, a message on `stop`, or `frames` closing; writes the state ahead as it
    /// goes and exactly at the end. Returns the number of frames made.
    fn run(
        mut self,
        frames: &tokio::sync::mpsc::Sender<Vec<Frame>>,
        stop: &Receiver<()>,
    ) -> Result<u64> {
        let interval = self.args.interval;
        let step = SignedDuration::try_from(interval)?;
        let zone = zone();
        let started = Instant::now();
        let mut reserved = self.start;
        let mut time = self.start;
        let mut ticks = 0u64;
        let mut made = 0u64;
        'ticks: while self.args.count.is_none_or(|count| ticks < count) {
            if time >= reserved {
                reserved = time.checked_add(step * RESERVE as i32)?;
                // Whatever a meter may reach until then: its registers grown at the most a
                // connection draws, over the time to `reserved` and one interval more (a first
                // frame's step).
                let span_h = (reserved.duration_since(time) + step).as_secs_f64() / 3600.0;
                self.write_state(reserved, span_h)?;
            }
            let counter = frame_counter(time)?;
            let now = time.to_zoned(zone.clone());
            let mut batch = Vec::with_capacity(BATCH.min(self.meters.len()));
            for meter in &mut self.meters {
                meter.set_frame_counter(counter);
                batch.push(Frame {
                    system_title: *meter.system_title(),
                    frame_counter: counter,
                    frame: meter.next_frame(&now),
                });
                if batch.len() == BATCH {
                    made += BATCH as u64;
                    if frames.blocking_send(std::mem::take(&mut batch)).is_err()
                        || stop.try_recv().is_ok()
                    {
                        break 'ticks;
                    }
                }
            }
            made += batch.len() as u64;
            if !batch.is_empty() && frames.blocking_send(batch).is_err() {
                break;
            }
            ticks += 1;
            time = time.checked_add(step)?;
            if self.fast {
                if stop.try_recv().is_ok() {
                    break;
                }
            } else {
                let due = started + interval * u32::try_from(ticks).unwrap_or(u32::MAX);
                match stop.recv_timeout(due.saturating_duration_since(Instant::now())) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
        }
        // Exactly where it stopped: the tick after the last one made.
        let next = if ticks == 0 { self.start } else { time };
        self.write_state(next, 0.0)?;
        Ok(made)
    }

    /// Writes the state: `next`, and each meter's registers grown at most for `span_h` hours.
    fn write_state(&mut self, next: Timestamp, span_h: f64) -> Result<()> {
        let solar_kwp = self.args.solar_kwp;
        let meters = self.meters.iter_mut().map(|meter| {
            let title = *meter.system_title();
            (
                title,
                Registers::of(meter.household_mut()).grown(span_h, solar_kwp),
            )
        });
        State::write(&self.state_path, next, meters)
    }
}

/// A meter's energy registers.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Registers {
    import_wh: f64,
    export_wh: f64,
    reactive_import_varh: f64,
    reactive_export_varh: f64,
    gas_m3: Option<f64>,
    water_m3: Option<f64>,
}

impl Registers {
    fn of(house: &Household) -> Registers {
        Registers {
            import_wh: house.import_wh,
            export_wh: house.export_wh,
            reactive_import_varh: house.reactive_import_varh,
            reactive_export_varh: house.reactive_export_varh,
            gas_m3: house.gas.as_ref().map(|g| g.total_m3),
            water_m3: house.water.as_ref().map(|w| w.total_m3),
        }
    }

    /// Sets the household's registers to these (gas and water where both have them).
    fn apply(&self, house: &mut Household) {
        house.import_wh = self.import_wh;
        house.export_wh = self.export_wh;
        house.reactive_import_varh = self.reactive_import_varh;
        house.reactive_export_varh = self.reactive_export_varh;
        if let (Some(gas), Some(m3)) = (&mut house.gas, self.gas_m3) {
            gas.total_m3 = m3;
        }
        if let (Some(water), Some(m3)) = (&mut house.water, self.water_m3) {
            water.total_m3 = m3;
        }
    }

    /// The registers after `hours` at the most a household can draw: 30 kW (more than a
    /// 3 × 40 A connection), its panels' peak power, 8 kvar, 2 m³/h of gas, 0.1 m³/h of water.
    fn grown(self, hours: f64, solar_kwp: f64) -> Registers {
        Registers {
            import_wh: self.import_wh + 30_000.0 * hours,
            export_wh: self.export_wh + solar_kwp * 1000.0 * hours,
            reactive_import_varh: self.reactive_import_varh + 8_000.0 * hours,
            reactive_export_varh: self.reactive_export_varh + solar_kwp * 1000.0 * hours,
            gas_m3: self.gas_m3.map(|m3| m3 + 2.0 * hours),
            water_m3: self.water_m3.map(|m3| m3 + 0.1 * hours),
        }
    }
}

/// Where a fleet's last run stopped: the first telegram time the next run may use, and each
/// meter's energy registers. A text file:
///
/// ```text
/// smarty-simulate-fleet 1
/// next 1796812800
/// 5341470000000001 4567890.123 1234.5 320000.0 2700000.0 - -
/// ```
///
/// (system title, import Wh, export Wh, reactive import varh, reactive export varh, gas m³ or
/// `-`, water m³ or `-`).
#[derive(Debug, Default)]
struct State {
    next: Option<Timestamp>,
    registers: HashMap<[u8; 8], Registers>,
}

const STATE_HEADER: &str = "smarty-simulate-fleet 1";

impl State {
    /// Reads the state file; an empty state when there is none.
    fn read(path: &Path) -> Result<State> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(e).with_context(|| format!("state file {}", path.display())),
        };
        State::parse(&text).with_context(|| {
            format!(
                "state file {} (remove it to start afresh from now)",
                path.display()
            )
        })
    }

    fn parse(text: &str) -> Result<State> {
        let mut lines = text.lines();
        if lines.next() != Some(STATE_HEADER) {
            bail!("not a state file of smarty simulate (no {STATE_HEADER:?} line)");
        }
        let next = lines
            .next()
            .and_then(|line| line.strip_prefix("next "))
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|s| Timestamp::from_second(s).ok())
            .context("line 2: no `next SECONDS`")?;
        let mut registers = HashMap::new();
        for (i, line) in lines.enumerate() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let parsed = (|| {
                let [title, import, export, r_import, r_export, gas, water] = fields[..] else {
                    return None;
                };
                let title: [u8; 8] = smarty_p1::hex::decode(title).ok()?.try_into().ok()?;
                let number = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
                let optional = |s: &str| {
                    if s == "-" {
                        Some(None)
                    } else {
                        number(s).map(Some)
                    }
                };
                Some((
                    title,
                    Registers {
                        import_wh: number(import)?,
                        export_wh: number(export)?,
                        reactive_import_varh: number(r_import)?,
                        reactive_export_varh: number(r_export)?,
                        gas_m3: optional(gas)?,
                        water_m3: optional(water)?,
                    },
                ))
            })();
            let (title, meter) = parsed.with_context(|| format!("line {}: malformed", i + 3))?;
            registers.insert(title, meter);
        }
        Ok(State {
            next: Some(next),
            registers,
        })
    }

    /// Writes the state file anew (a new file renamed over the old one).
    fn write(
        path: &Path,
        next: Timestamp,
        meters: impl Iterator<Item = ([u8; 8], Registers)>,
    ) -> Result<()> {
        let mut text = format!("{STATE_HEADER}\nnext {}\n", next.as_second());
        let optional = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
        for (title, r) in meters {
            let _ = writeln!(
                text,
                "{} {:.3} {:.3} {:.3} {:.3} {} {}",
                smarty_p1::hex::upper(&title),
                r.import_wh,
                r.export_wh,
                r.reactive_import_varh,
                r.reactive_export_varh,
                optional(r.gas_m3),
                optional(r.water_m3)
            );
        }
        let context = || format!("cannot write the state file {}", path.display());
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".new");
        let temporary = PathBuf::from(temporary);
        let mut file = std::fs::File::create(&temporary).with_context(context)?;
        file.write_all(text.as_bytes()).with_context(context)?;
        file.sync_all().with_context(context)?;
        std::fs::rename(&temporary, path).with_context(context)?;
        Ok(())
    }
}

/// Where the frames go.
enum Sink {
    Nats {
        publisher: Box<Publisher>,
        url: String,
    },
    Mqtt {
        sender: smarty_mqtt::Sender,
        url: String,
    },
}

impl Sink {
    /// Connects to `--nats` (and creates or checks the stream) or `--mqtt`.
    async fn connect(args: &SimulateArgs) -> Result<Sink> {
        if let Some(url) = &args.nats {
            let client = smarty_fleet::nats::connect(url, "smarty simulate").await?;
            let publisher = Publisher::new(client, PublisherConfig::default());
            stream::ensure(publisher.context(), &StreamConfig::default()).await?;
            return Ok(Sink::Nats {
                publisher: Box::new(publisher),
                url: smarty_fleet::nats::redacted(url),
            });
        }
        let url = args.mqtt.as_deref().context("--nats or --mqtt is needed")?;
        let broker =
            smarty_mqtt::BrokerUrl::parse(url).map_err(|e| anyhow::anyhow!("--mqtt: {e}"))?;
        let shown = broker.endpoint.to_string();
        let connection = smarty_mqtt::Connection {
            endpoint: broker.endpoint,
            client_id: format!("smarty-simulate-{:08x}", rand::rng().random::<u32>()),
            username: broker.username,
            password: broker.password,
            keep_alive_s: 30,
            ca_file: None,
        };
        let sender = smarty_mqtt::Sender::connect(&connection, MQTT_WINDOW)
            .await
            .with_context(|| format!("cannot connect to the MQTT broker {shown}"))?;
        Ok(Sink::Mqtt { sender, url: shown })
    }

    fn describe(&self) -> String {
        match self {
            Sink::Nats { url, .. } => format!("{url} (stream {})", stream::DEFAULT_NAME),
            Sink::Mqtt { url, .. } => format!("{url} (smarty/raw/<system title>)"),
        }
    }

    async fn send_all(&mut self, batch: Vec<Frame>) -> Result<()> {
        for frame in batch {
            match self {
                Sink::Nats { publisher, .. } => {
                    publisher
                        .publish(
                            &frame.system_title,
                            frame.frame_counter,
                            Bytes::from(frame.frame),
                        )
                        .await?;
                }
                Sink::Mqtt { sender, .. } => {
                    let topic = subject::mqtt_topic(&frame.system_title);
                    sender.send(&topic, Bytes::from(frame.frame)).await?;
                }
            }
        }
        Ok(())
    }

    /// Waits for every acknowledgement; a summary to follow "N frames sent".
    async fn flush(&mut self) -> Result<String> {
        match self {
            Sink::Nats { publisher, url } => {
                let report = publisher.flush().await?;
                Ok(format!(
                    " to {url}: {} stored, {} duplicates, {} sent again",
                    report.acknowledged - report.duplicates,
                    report.duplicates,
                    report.resent
                ))
            }
            Sink::Mqtt { sender, url } => {
                let resent = sender.flush().await?;
                Ok(format!(" to {url}: all acknowledged, {resent} sent again"))
            }
        }
    }

    fn in_flight(&self) -> usize {
        match self {
            Sink::Nats { publisher, .. } => publisher.in_flight(),
            Sink::Mqtt { .. } => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counters_count_seconds_from_2020() {
        let t: Timestamp = "2020-01-01T00:00:10Z".parse().unwrap();
        assert_eq!(frame_counter(t).unwrap(), 10);
        let t: Timestamp = "2026-12-04T00:00:00Z".parse().unwrap();
        assert_eq!(frame_counter(t).unwrap(), 218_505_600);
        assert!(frame_counter("2019-12-31T23:59:59Z".parse().unwrap()).is_err());
    }

    #[test]
    fn the_state_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.csv.state");
        assert!(State::read(&path).unwrap().next.is_none());
        let r = Registers {
            import_wh: 4_567_890.125,
            export_wh: 1234.5,
            reactive_import_varh: 320_000.0,
            reactive_export_varh: 2_700_000.0,
            gas_m3: Some(1234.567),
            water_m3: None,
        };
        let next = Timestamp::from_second(1_796_812_800).unwrap();
        State::write(&path, next, [(*b"SAG\0\0\0\0\x01", r)].into_iter()).unwrap();
        let state = State::read(&path).unwrap();
        assert_eq!(state.next, Some(next));
        assert_eq!(state.registers[b"SAG\0\0\0\0\x01"], r);
        let grown = r.grown(0.5, 4.0);
        assert_eq!(grown.import_wh, r.import_wh + 15_000.0);
        assert_eq!(grown.water_m3, None);
        std::fs::write(&path, "something else\n").unwrap();
        let error = format!("{:#}", State::read(&path).unwrap_err());
        assert!(error.contains("remove it to start afresh"), "{error}");
    }
}
