//! A fleet worker (`smarty fleet ingest`): raw frames from the JetStream stream, decrypted
//! with each meter's key, checked (tag, CRC, frame counter), parsed, and stored in batches
//! through the store's writer; every message of a batch is acknowledged only after the
//! transaction that stored the batch committed.
//!
//! **Partitions.** The NATS server maps each meter's subject `smarty.raw.<title>` to
//! `smarty.raw.<partition>.<title>` ([`crate::subject::server_mapping`]); each partition has a
//! durable pull consumer `<consumer>-<partition>` that every worker shares, and one worker at
//! a time holds it (a lease, `lease.rs`): it fetches a batch, stores it, acknowledges it, and
//! fetches the next, so each meter's frames are stored in order. A worker that dies loses its
//! leases after the ack wait and a margin; its unacknowledged frames go first, in order, to
//! the next holder. With one partition (the default) no mapping is needed: the consumer
//! `<consumer>-0` takes `smarty.raw.*`. With more, the consumer `<consumer>-unmapped` takes
//! frames of a server without the mapping, so that none is stranded (and the worker warns).
//!
//! **Exactly once in effect.** A reading is keyed by meter and telegram time and inserted
//! once; each meter's last frame counter and tag are kept (`frame_counter`). A frame whose
//! counter does not advance is a replay when delivered the first time (set aside), and a
//! duplicate when redelivered (its reading goes to the store again, which finds it there and
//! counts it as a duplicate); the same counter with another tag is nonce reuse or forgery (an
//! alarm, set aside).
//!
//! **Set aside.** A frame that cannot be stored — an unknown meter, a tag that fails, a CRC
//! error, a subject that names no meter, a replay, nonce reuse — is published to the
//! dead-letter stream (`SMARTY_DEAD`, subject `smarty.dead.<reason>.<title>`) and acknowledged
//! once that publication is; it is counted per meter and reason in the worker's metrics and
//! in the store (`fleet_rejection`), without holding up any other meter's frames.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer};
use futures_util::StreamExt as _;
use smarty_p1::{Aad, Decoder, DecoderConfig};
use smarty_store::{FleetCounter, Reading, Store, Writer};
use tokio::sync::watch;

use crate::keys::{self, MasterKey};
use crate::keys_csv::MeterKeys;
use crate::lease::Leases;
use crate::stream::StreamConfig;
use crate::subject;

/// The length of a Smarty frame's authentication tag.
const TAG_LEN: usize = 12;

/// How a worker consumes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IngestConfig {
    /// The stream of raw frames, created on start when missing, checked otherwise.
    pub stream: StreamConfig,
    /// The dead-letter stream, created on start when missing, checked otherwise.
    pub dead_letters: StreamConfig,
    /// The prefix of the durable consumers the workers share (`<consumer>-<partition>`),
    /// and of the lease bucket (`<consumer>-leases`).
    pub consumer: String,
    /// Partitions (1 to 1,000): the number the server's mapping uses; 1 needs no mapping.
    pub partitions: u32,
    /// Frames stored per transaction at most (and unacknowledged per partition at most).
    pub batch_max: usize,
    /// How long a fetch waits for its first frame (it returns what is there as soon as it
    /// has one). Not much shorter than a second: NATS 2.9 answers a partition's fetch late
    /// while it serves the others, and a fetch that expires meanwhile comes back empty (at
    /// 200 ms, one worker of four partitions stored a quarter of what it stores at 1 s).
    pub batch_wait: Duration,
    /// A frame taken but not acknowledged is redelivered after this long.
    pub ack_wait: Duration,
    /// An unknown meter's keys are looked up again at most this often.
    pub keys_refresh: Duration,
    /// How often the consumers' lag and the database are checked.
    pub poll: Duration,
    /// Unhealthy when the lag stays above this many frames …
    pub lag_unhealthy: u64,
    /// … for this long.
    pub lag_unhealthy_for: Duration,
    /// New consumers start at this stream sequence (after a change of `partitions`), instead
    /// of the stream's first frame.
    pub start_sequence: Option<u64>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            stream: StreamConfig::default(),
            dead_letters: StreamConfig::dead_letters(Duration::from_secs(7 * 24 * 3600)),
            consumer: "smarty-ingest".to_owned(),
            partitions: 1,
            batch_max: 20_000,
            batch_wait: Duration::from_secs(1),
            ack_wait: Duration::from_secs(30),
            keys_refresh: Duration::from_secs(10),
            poll: Duration::from_secs(3),
            lag_unhealthy: 100_000,
            lag_unhealthy_for: Duration::from_secs(60),
            start_sequence: None,
        }
    }
}

/// What can stop a worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// NATS or JetStream refused something (the server is gone).
    #[error("NATS: {0}")]
    Nats(String),
    /// The stream cannot be created, or is unfit.
    #[error(transparent)]
    Stream(#[from] crate::stream::StreamError),
    /// The consumers found were made for another number of partitions.
    #[error("{0}")]
    Partitions(String),
    /// The keys cannot be read or unwrapped (a wrong master key).
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
    /// The store cannot be written at all.
    #[error(transparent)]
    Store(#[from] smarty_store::StoreError),
}

fn nats(e: impl std::fmt::Display) -> IngestError {
    IngestError::Nats(e.to_string())
}

/// The upper bounds of the commit latency histogram, seconds.
pub const COMMIT_BUCKETS_S: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A worker's counters, shared with its `/metrics` and `/healthz`.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Messages taken from the stream.
    pub frames: AtomicU64,
    /// Readings stored (new ones).
    pub stored: AtomicU64,
    /// Readings already stored (a redelivery or a resend), left out.
    pub duplicates: AtomicU64,
    /// Messages delivered more than once.
    pub redelivered: AtomicU64,
    /// Frames whose counter did not advance, delivered the first time (set aside).
    pub replays: AtomicU64,
    /// Frames with a counter seen before under another tag (set aside; an alarm).
    pub nonce_reuse: AtomicU64,
    /// Frames published to the dead-letter stream.
    pub dead_lettered: AtomicU64,
    /// Frames stored out of their meter's order (a lower counter after a higher one in
    /// the same worker): 0 while partitions keep the order.
    pub out_of_order: AtomicU64,
    /// Frames taken from unmapped subjects while partitioned (the server lacks the mapping).
    pub unmapped: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Commits that failed (their frames are redelivered).
    pub failed_commits: AtomicU64,
    /// The last commit's duration, microseconds.
    pub commit_us: AtomicU64,
    /// Commits per latency bucket ([`COMMIT_BUCKETS_S`], then +Inf), not cumulative.
    pub commit_buckets: [AtomicU64; 13],
    /// The sum of the commits' durations, microseconds.
    pub commit_sum_us: AtomicU64,
    /// Frames waiting in the worker's consumers (their `num_pending`), as last polled.
    pub lag: AtomicU64,
    /// Partitions this worker holds now.
    pub partitions_held: AtomicU64,
    /// The database answered the last check or commit.
    pub database_ok: AtomicBool,
    /// The last error of a commit.
    pub last_error: Mutex<Option<String>>,
    /// Frames set aside, by reason (`unknown_meter`, `tag`, `crc`, `bad_subject`, `replay`,
    /// `nonce_reuse`, …) and meter.
    pub rejected: Mutex<BTreeMap<(String, String), u64>>,
    /// Since when the lag has been above the threshold.
    lag_high_since: Mutex<Option<Instant>>,
}

impl IngestStats {
    fn reject(&self, reason: &str, meter: &str) {
        let mut rejected = self.rejected.lock().unwrap_or_else(PoisonError::into_inner);
        *rejected
            .entry((reason.to_owned(), meter.to_owned()))
            .or_default() += 1;
    }

    /// Frames set aside for `reason`, all meters.
    pub fn rejected_for(&self, reason: &str) -> u64 {
        self.rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|((r, _), _)| r == reason)
            .map(|(_, n)| n)
            .sum()
    }

    fn commit_took(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.commit_us.store(us, Ordering::Relaxed);
        self.commit_sum_us.fetch_add(us, Ordering::Relaxed);
        let bucket = COMMIT_BUCKETS_S
            .iter()
            .position(|&b| took.as_secs_f64() <= b)
            .unwrap_or(COMMIT_BUCKETS_S.len());
        self.commit_buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    fn set_lag(&self, lag: u64, config: &IngestConfig) {
        self.lag.store(lag, Ordering::Relaxed);
        let mut since = self
            .lag_high_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if lag > config.lag_unhealthy {
            since.get_or_insert_with(Instant::now);
        } else {
            *since = None;
        }
        drop(since);
    }

    /// `Ok` with a short text when healthy; `Err` with the reason when the database cannot be
    /// reached or the lag has stayed above `lag_unhealthy` for `lag_unhealthy_for`.
    ///
    /// # Errors
    /// The reason, as above.
    pub fn health(&self, config: &IngestConfig) -> Result<String, String> {
        if !self.database_ok.load(Ordering::Relaxed) {
            let last = self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_else(|| "no answer yet".to_owned());
            return Err(format!("the database cannot be reached: {last}"));
        }
        let lag = self.lag.load(Ordering::Relaxed);
        let since = *self
            .lag_high_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(since) = since
            && since.elapsed() >= config.lag_unhealthy_for
        {
            return Err(format!(
                "the consumers' lag is {lag} frames, above {} for {} s",
                config.lag_unhealthy,
                since.elapsed().as_secs()
            ));
        }
        Ok(format!("ok: lag {lag} frames"))
    }

    /// The counters in the Prometheus text format (0.0.4), names prefixed `smarty_fleet_`.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP smarty_fleet_{name} {help}\n# TYPE smarty_fleet_{name} counter\n\
                 smarty_fleet_{name} {value}"
            );
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            "frames_total",
            "Frames taken from the stream.",
            get(&self.frames),
        );
        counter(
            "stored_total",
            "Readings stored (new ones).",
            get(&self.stored),
        );
        counter(
            "duplicates_total",
            "Readings already stored (redelivered or resent frames), left out.",
            get(&self.duplicates),
        );
        counter(
            "redelivered_total",
            "Frames delivered more than once.",
            get(&self.redelivered),
        );
        counter(
            "replays_total",
            "Frames whose counter did not advance, set aside.",
            get(&self.replays),
        );
        counter(
            "nonce_reuse_total",
            "Frames reusing a counter with another tag (nonce reuse or forgery), set aside.",
            get(&self.nonce_reuse),
        );
        counter(
            "dead_lettered_total",
            "Frames published to the dead-letter stream.",
            get(&self.dead_lettered),
        );
        counter(
            "out_of_order_total",
            "Frames stored after a later frame of their meter.",
            get(&self.out_of_order),
        );
        counter(
            "unmapped_total",
            "Frames on unmapped subjects while partitioned (the server lacks the mapping).",
            get(&self.unmapped),
        );
        counter("batches_total", "Batches committed.", get(&self.batches));
        counter(
            "failed_commits_total",
            "Commits that failed (their frames come again).",
            get(&self.failed_commits),
        );
        let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
        for ((reason, _), n) in self
            .rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            *by_reason.entry(reason.clone()).or_default() += n;
        }
        for reason in [
            "unknown_meter",
            "wrong_key",
            "authentication",
            "crc",
            "bad_subject",
            "replay",
            "nonce_reuse",
        ] {
            by_reason.entry(reason.to_owned()).or_default();
        }
        out.push_str(
            "# HELP smarty_fleet_rejected_total Frames set aside, by reason.\n\
             # TYPE smarty_fleet_rejected_total counter\n",
        );
        for (reason, n) in &by_reason {
            let _ = writeln!(
                out,
                "smarty_fleet_rejected_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP smarty_fleet_consumer_lag Frames waiting in the consumers (num_pending).\n\
             # TYPE smarty_fleet_consumer_lag gauge\nsmarty_fleet_consumer_lag {}",
            get(&self.lag)
        );
        let _ = writeln!(
            out,
            "# HELP smarty_fleet_partitions_held Partitions this worker holds.\n\
             # TYPE smarty_fleet_partitions_held gauge\nsmarty_fleet_partitions_held {}",
            get(&self.partitions_held)
        );
        let _ = writeln!(
            out,
            "# HELP smarty_fleet_database_up Whether the database answered the last check.\n\
             # TYPE smarty_fleet_database_up gauge\nsmarty_fleet_database_up {}",
            u8::from(self.database_ok.load(Ordering::Relaxed))
        );
        out.push_str(
            "# HELP smarty_fleet_commit_seconds Batch commit latency.\n\
             # TYPE smarty_fleet_commit_seconds histogram\n",
        );
        let mut cumulative = 0;
        for (i, bound) in COMMIT_BUCKETS_S.iter().enumerate() {
            cumulative += get(&self.commit_buckets[i]);
            let _ = writeln!(
                out,
                "smarty_fleet_commit_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += get(&self.commit_buckets[COMMIT_BUCKETS_S.len()]);
        let _ = writeln!(
            out,
            "smarty_fleet_commit_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n\
             smarty_fleet_commit_seconds_sum {}\nsmarty_fleet_commit_seconds_count {cumulative}",
            get(&self.commit_sum_us) as f64 / 1e6
        );
        out
    }
}

/// One meter as the worker holds it: its keys and a decoder.
struct Meter {
    name: Arc<str>,
    decoder: Decoder,
    /// The key's check value (hex), which its saved frame counters are kept under.
    key_check: String,
    /// The authentication key's check value (hex; empty for Luxembourg's): with `key_check`,
    /// tells a meter whose keys were imported again.
    auth_check: String,
}

impl Meter {
    fn new(key: &MeterKeys) -> Meter {
        let mut config = DecoderConfig::new(key.key.clone());
        if let Some(auth) = &key.auth_key {
            config = config.with_aad(Aad::AuthKey(*auth.as_bytes()));
        }
        Meter {
            name: Arc::from(key.name().as_str()),
            decoder: Decoder::new(config),
            key_check: smarty_p1::hex::upper(&key.key.check_value()).to_string(),
            auth_check: auth_check(key),
        }
    }

    /// Whether `key` is what this meter decrypts with.
    fn has_keys(&self, key: &MeterKeys) -> bool {
        self.key_check == smarty_p1::hex::upper(&key.key.check_value()).to_string()
            && self.auth_check == auth_check(key)
    }
}

fn auth_check(key: &MeterKeys) -> String {
    key.auth_key.as_ref().map_or_else(String::new, |k| {
        smarty_p1::hex::upper(&k.check_value()).to_string()
    })
}

/// A meter's last accepted frame.
#[derive(Clone)]
struct Last {
    counter: u32,
    tag: Vec<u8>,
    key_check: String,
}

/// The worker's view of the fleet: meters by system title, loaded from the store, and their
/// last accepted frames.
struct Fleet {
    store: Store,
    master: MasterKey,
    meters: HashMap<[u8; 8], Meter>,
    last: HashMap<[u8; 8], Last>,
    loaded: Instant,
    refresh: Duration,
}

impl Fleet {
    fn load(store: Store, master: MasterKey, refresh: Duration) -> Result<Fleet, IngestError> {
        let mut fleet = Fleet {
            store,
            master,
            meters: HashMap::new(),
            last: HashMap::new(),
            loaded: Instant::now(),
            refresh,
        };
        fleet.reload()?;
        fleet.reload_counters()?;
        Ok(fleet)
    }

    fn reload(&mut self) -> Result<(), IngestError> {
        let keys = keys::load(&self.store, &self.master)?;
        self.meters.retain(|title, _| keys.contains_key(title));
        for (title, key) in keys {
            match self.meters.get(&title) {
                Some(meter) if meter.has_keys(&key) => {}
                // New, or its keys were imported again (the operator changed them).
                _ => {
                    self.meters.insert(title, Meter::new(&key));
                }
            }
        }
        self.loaded = Instant::now();
        Ok(())
    }

    /// The counters saved by every worker: taken where they are ahead of ours (another
    /// worker held the partition meanwhile).
    fn reload_counters(&mut self) -> Result<(), IngestError> {
        for saved in self.store.fleet_counters()? {
            let ahead = self.last.get(&saved.system_title).is_none_or(|ours| {
                ours.key_check != saved.key_check || ours.counter < saved.counter
            });
            if ahead {
                self.last.insert(
                    saved.system_title,
                    Last {
                        counter: saved.counter,
                        tag: saved.tag.unwrap_or_default(),
                        key_check: saved.key_check,
                    },
                );
            }
        }
        Ok(())
    }

    /// The meter of `title`, looking the keys up again when it is unknown and they were
    /// loaded a while ago (a meter added while workers run).
    fn meter(&mut self, title: &[u8; 8]) -> Option<&mut Meter> {
        if !self.meters.contains_key(title) {
            self.reload_if_due();
        }
        self.meters.get_mut(title)
    }

    /// Looks the keys up again when they were loaded a while ago: after an unknown meter, or a
    /// frame its key did not open (its keys may have been imported again meanwhile).
    fn reload_if_due(&mut self) {
        if self.loaded.elapsed() >= self.refresh
            && let Err(e) = self.reload()
        {
            tracing::error!("fleet: cannot reload the keys: {e}");
        }
    }
}

/// A frame's payload: binary as sent, or hex text (dongles that publish text).
fn payload(bytes: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if digits.len() >= 2 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        smarty_p1::hex::decode(&digits).ok()
    } else {
        None
    }
}

/// What becomes of one message.
enum Outcome {
    /// Its reading is in the writer's buffer.
    Store,
    /// Set aside: reason, meter (name, or title in hex, or the subject), title token.
    SetAside(&'static str, String, String),
}

/// The accepted frames of a batch not yet committed, by title: (meter name, last).
type Pending = HashMap<[u8; 8], (Arc<str>, Last)>;

/// Decodes one message into the writer's buffer, checking its frame counter.
fn classify(
    fleet: &mut Fleet,
    writer: &mut Writer,
    pending: &mut Pending,
    overlay: Option<&Pending>,
    subject: &str,
    data: &[u8],
    delivered: i64,
) -> (Outcome, bool) {
    let Some((title, partition)) = subject::title_and_partition(subject) else {
        let token = subject
            .rsplit('.')
            .next()
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric()))
            .unwrap_or("none")
            .to_owned();
        return (
            Outcome::SetAside("bad_subject", subject.to_owned(), token),
            false,
        );
    };
    let unmapped = partition.is_none();
    // Named in hex only when the frame is set aside (not for every frame).
    let hex_title = || smarty_p1::hex::upper(&title).to_string();
    if fleet.meter(&title).is_none() {
        return (
            Outcome::SetAside("unknown_meter", hex_title(), hex_title()),
            unmapped,
        );
    }
    let Some(meter) = fleet.meters.get_mut(&title) else {
        return (
            Outcome::SetAside("unknown_meter", hex_title(), hex_title()),
            unmapped,
        );
    };
    // Binary as sent (no copy), or hex text decoded.
    match payload(data) {
        Some(frame) => meter.decoder.push(&frame),
        None => meter.decoder.push(data),
    }
    let name = Arc::clone(&meter.name);
    let key_check = meter.key_check.clone();
    let reason = match meter.decoder.next() {
        Some(Ok(decoded)) => {
            let (counter, tag) = match &decoded.frame {
                Some(info) => (
                    Some(info.frame_counter),
                    decoded.raw[decoded.raw.len().saturating_sub(TAG_LEN)..].to_vec(),
                ),
                None => (None, Vec::new()),
            };
            if let Some(counter) = counter {
                let last = pending
                    .get(&title)
                    .or_else(|| overlay.and_then(|o| o.get(&title)))
                    .map(|(_, l)| l)
                    .or_else(|| fleet.last.get(&title))
                    .filter(|l| l.key_check == key_check);
                let mut advances = true;
                if let Some(last) = last
                    && counter <= last.counter
                {
                    if counter == last.counter && !last.tag.is_empty() && last.tag != tag {
                        tracing::error!(
                            meter = %name,
                            "fleet: ALARM: meter {name} ({}) sent frame counter {counter} \
                             again with another tag: nonce reuse or forgery; the frame is set aside",
                            hex_title()
                        );
                        return (
                            Outcome::SetAside("nonce_reuse", name.to_string(), hex_title()),
                            unmapped,
                        );
                    }
                    if delivered <= 1 {
                        return (
                            Outcome::SetAside("replay", name.to_string(), hex_title()),
                            unmapped,
                        );
                    }
                    // Redelivered: stored already, as a rule (the store absorbs it, and
                    // keeps it should its first commit not have happened).
                    advances = false;
                }
                if advances {
                    pending.insert(
                        title,
                        (
                            Arc::clone(&name),
                            Last {
                                counter,
                                tag,
                                key_check,
                            },
                        ),
                    );
                }
            }
            // Straight from the telegram: no event (its JSON nobody reads here).
            let (reading, mbus) =
                Reading::from_received(&name, &decoded.telegram, SystemTime::now());
            if let Some(reading) = reading {
                writer.push(reading);
            }
            for record in mbus {
                writer.push_mbus(record);
            }
            return (Outcome::Store, unmapped);
        }
        Some(Err(rejection)) => rejection.reason().as_str(),
        None => "incomplete",
    };
    // Whatever is left of a frame that did not decode goes with it.
    let _ = meter.decoder.finish();
    if matches!(reason, "wrong_key" | "authentication") {
        // The next frames of this meter use its keys as imported now.
        fleet.reload_if_due();
    }
    (
        Outcome::SetAside(reason, name.to_string(), hex_title()),
        unmapped,
    )
}

/// One consumer: a partition, or the unmapped subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    /// The consumer's name, and the lease's.
    name: String,
    filter: String,
    unmapped: bool,
}

fn parts(config: &IngestConfig) -> Vec<Part> {
    let prefix = &config.consumer;
    if config.partitions <= 1 {
        return vec![Part {
            name: format!("{prefix}-0"),
            filter: subject::unmapped_filter(),
            unmapped: false,
        }];
    }
    let mut parts: Vec<Part> = (0..config.partitions)
        .map(|p| Part {
            name: format!("{prefix}-{p}"),
            filter: subject::partition_filter(p),
            unmapped: false,
        })
        .collect();
    parts.push(Part {
        name: format!("{prefix}-unmapped"),
        filter: subject::unmapped_filter(),
        unmapped: true,
    });
    parts
}

/// Refuses consumers made for another number of partitions (saying what to do), and makes
/// the missing ones.
async fn ensure_consumers(
    stream: &jetstream::stream::Stream,
    config: &IngestConfig,
    parts: &[Part],
) -> Result<Vec<consumer::PullConsumer>, IngestError> {
    let prefix = &config.consumer;
    let mut names = stream.consumer_names();
    let mut ours = Vec::new();
    while let Some(name) = names.next().await {
        let name = name.map_err(nats)?;
        if name == *prefix || name.starts_with(&format!("{prefix}-")) {
            ours.push(name);
        }
    }
    let mut wrong = Vec::new();
    let mut floor: Option<u64> = None;
    for name in &ours {
        let found: consumer::PullConsumer = stream.get_consumer(name).await.map_err(nats)?;
        let info = found.cached_info();
        let expected = parts.iter().find(|p| p.name == *name);
        if expected.is_none_or(|p| info.config.filter_subject != p.filter) {
            wrong.push(format!("{name} ({})", info.config.filter_subject));
        }
        let next = info.ack_floor.stream_sequence + 1;
        floor = Some(floor.map_or(next, |f: u64| f.min(next)));
    }
    if !wrong.is_empty() {
        return Err(IngestError::Partitions(format!(
            "the stream {stream} has consumers made for another number of partitions: {list}; \
             this worker has --partitions {n}. Start every worker with the same --partitions, \
             or, to change it: stop every worker, remove the stream's consumers {prefix}-* \
             (nats consumer rm {stream} NAME), change the server's mapping, and start the \
             workers with --partitions {n} --start-sequence {floor} (the first frame the old \
             consumers had not all acknowledged)",
            stream = config.stream.name,
            list = wrong.join(", "),
            n = config.partitions,
            floor = floor.unwrap_or(1),
        )));
    }
    let mut consumers = Vec::new();
    for part in parts {
        let deliver_policy = match config.start_sequence {
            Some(start_sequence) => consumer::DeliverPolicy::ByStartSequence { start_sequence },
            None => consumer::DeliverPolicy::All,
        };
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &part.name,
                consumer::pull::Config {
                    durable_name: Some(part.name.clone()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    max_ack_pending: max_ack_pending(config),
                    filter_subject: part.filter.clone(),
                    deliver_policy,
                    ..Default::default()
                },
            )
            .await
            .map_err(nats)?;
        // Made before batches overlapped (one batch unacknowledged at most): given room for
        // two.
        let mut consumer = consumer;
        if consumer.cached_info().config.max_ack_pending < max_ack_pending(config) {
            let mut updated = consumer.cached_info().config.clone();
            updated.max_ack_pending = max_ack_pending(config);
            stream.create_consumer(updated).await.map_err(nats)?;
            consumer = stream.get_consumer(&part.name).await.map_err(nats)?;
        }
        consumers.push(consumer);
    }
    Ok(consumers)
}

/// Frames a partition's consumer lets out unacknowledged: two batches, one committing while
/// the next is fetched and decoded.
fn max_ack_pending(config: &IngestConfig) -> i64 {
    i64::try_from(config.batch_max.saturating_mul(2)).unwrap_or(i64::MAX)
}

/// What the partition tasks share.
struct Shared {
    js: jetstream::Context,
    store: Store,
    fleet: Mutex<Fleet>,
    stats: Arc<IngestStats>,
    config: IngestConfig,
    leases: Leases,
    /// The frames waiting in each partition this worker holds, as of its last fetch.
    lags: Mutex<HashMap<String, u64>>,
}

impl Shared {
    /// Notes the frames waiting in `part` (`None`: no longer held), and the worker's lag.
    fn note_lag(&self, part: &Part, lag: Option<u64>) {
        let mut lags = self.lags.lock().unwrap_or_else(PoisonError::into_inner);
        match lag {
            Some(lag) => lags.insert(part.name.clone(), lag),
            None => lags.remove(&part.name),
        };
        let sum = lags.values().sum();
        drop(lags);
        self.stats.set_lag(sum, &self.config);
    }
}

/// Runs one worker until `stop` turns true or NATS fails: consumes, stores, acknowledges.
///
/// # Errors
/// The stream is missing or NATS is gone ([`IngestError::Nats`]), consumers made for another
/// number of partitions ([`IngestError::Partitions`]), the keys cannot be unwrapped
/// ([`IngestError::Keys`]), the store cannot be opened.
pub async fn run(
    client: async_nats::Client,
    store: Store,
    master: MasterKey,
    config: IngestConfig,
    stats: Arc<IngestStats>,
    stop: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    let result = run_worker(client, store, master, config, stats, stop).await;
    if let Err(e) = &result {
        tracing::error!("fleet: the worker stops: {e}");
    }
    result
}

async fn run_worker(
    client: async_nats::Client,
    store: Store,
    master: MasterKey,
    config: IngestConfig,
    stats: Arc<IngestStats>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    if !(1..=1_000).contains(&config.partitions) {
        return Err(IngestError::Partitions(format!(
            "--partitions must be 1 to 1,000, not {}",
            config.partitions
        )));
    }
    let js = jetstream::new(client.clone());
    let ensured = crate::stream::ensure(&js, &config.stream).await?;
    if let crate::stream::Ensured::Created(_) = ensured {
        tracing::info!("fleet: created the stream {}", config.stream.name);
    }
    crate::stream::ensure(&js, &config.dead_letters).await?;
    let stream = js.get_stream(&config.stream.name).await.map_err(nats)?;
    let parts = parts(&config);
    let consumers = ensure_consumers(&stream, &config, &parts).await?;
    let leases = Leases::open(
        &js,
        &format!("{}-leases", config.consumer),
        config.ack_wait + Duration::from_secs(5),
        config.stream.replicas,
        parts.len(),
    )
    .await?;
    leases.heartbeat().await?;
    let fleet = {
        let store = store.clone();
        let refresh = config.keys_refresh;
        tokio::task::spawn_blocking(move || Fleet::load(store, master, refresh))
            .await
            .map_err(|e| IngestError::Nats(format!("loading the keys: {e}")))??
    };
    stats.database_ok.store(true, Ordering::Relaxed);
    tracing::info!(
        "fleet: worker {} on {} consumers ({}, leases of {:?}) of stream {}, {} meters, storing into {}",
        leases.id(),
        parts.len(),
        if config.partitions > 1 {
            format!("{} partitions", config.partitions)
        } else {
            "one partition".to_owned()
        },
        leases.ttl,
        config.stream.name,
        fleet.meters.len(),
        store.location()
    );
    let shared = Arc::new(Shared {
        js,
        store,
        fleet: Mutex::new(fleet),
        stats,
        config,
        leases,
        lags: Mutex::new(HashMap::new()),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (part, consumer) in parts.into_iter().zip(consumers) {
        tasks.spawn(partition_task(
            Arc::clone(&shared),
            part,
            consumer,
            stop.clone(),
        ));
    }
    tasks.spawn(poll_task(Arc::clone(&shared), stop.clone()));
    let mut result = Ok(());
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    result = Err(e);
                    break;
                }
                Some(Err(e)) => {
                    result = Err(IngestError::Nats(format!("a worker task failed: {e}")));
                    break;
                }
            },
            _ = stop.changed() => {
                // Each task stores and acknowledges the batch in hand, then ends.
                while let Some(done) = tasks.join_next().await {
                    if let Ok(Err(e)) = done && result.is_ok() {
                        result = Err(e);
                    }
                }
                break;
            }
        }
    }
    tasks.abort_all();
    shared.leases.leave().await;
    result
}

/// Every `poll`: announces the worker, counts the workers, checks the database. (The lag
/// comes from the frames fetched: asking JetStream for a partition's pending count makes the
/// server walk the stream, which stalls every consumer of a large partitioned stream.)
async fn poll_task(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    loop {
        if let Err(e) = shared.leases.heartbeat().await {
            tracing::warn!("fleet: cannot announce this worker: {e}");
        }
        let store = shared.store.clone();
        let ping = tokio::task::spawn_blocking(move || store.ping()).await;
        match ping {
            Ok(Ok(())) => shared.stats.database_ok.store(true, Ordering::Relaxed),
            Ok(Err(e)) => {
                shared.stats.database_ok.store(false, Ordering::Relaxed);
                *shared
                    .stats
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
            }
            Err(_) => {}
        }
        shared.stats.partitions_held.store(
            u64::try_from(shared.leases.held()).unwrap_or(0),
            Ordering::Relaxed,
        );
        tokio::select! {
            () = tokio::time::sleep(shared.config.poll) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// A random pause of up to `max`, so that workers do not all try at the same moment.
fn jitter(max: Duration) -> Duration {
    max.mul_f64(rand::random::<f64>())
}

/// Takes the lease of `part` whenever free (and this worker under its share), and consumes
/// it while held.
async fn partition_task(
    shared: Arc<Shared>,
    part: Part,
    consumer: consumer::PullConsumer,
    mut stop: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    // Two writers: one batch is decoded into one while the other's batch commits.
    let mut spare = Vec::with_capacity(2);
    for _ in 0..2 {
        let Some(writer) = open_writer(&shared, &mut stop).await? else {
            return Ok(());
        };
        spare.push(writer);
    }
    let idle = Duration::from_millis(500);
    while !*stop.borrow() {
        let Some(mut revision) = shared.leases.try_take(&part.name).await else {
            tokio::select! {
                () = tokio::time::sleep(idle + jitter(idle)) => continue,
                _ = stop.changed() => break,
            }
        };
        tracing::debug!("fleet: holding {}", part.name);
        // Another worker may have held it: its counters are in the store.
        {
            let shared2 = Arc::clone(&shared);
            let reloaded = tokio::task::spawn_blocking(move || {
                shared2
                    .fleet
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .reload_counters()
            })
            .await;
            if let Ok(Err(e)) = reloaded {
                tracing::error!("fleet: cannot read the frame counters: {e}");
                shared.leases.release(&part.name, revision).await;
                tokio::time::sleep(idle).await;
                continue;
            }
        }
        let held = hold(&shared, &part, &consumer, &mut spare, &mut revision, &stop).await;
        // Nothing of this partition is in flight any more: its last commit was waited for.
        match held {
            Ok(Held::Stopped) => {
                shared.leases.release(&part.name, revision).await;
                return Ok(());
            }
            Ok(Held::Released) => {
                shared.leases.release(&part.name, revision).await;
                tokio::time::sleep(idle * 4).await;
            }
            Ok(Held::Lost) => {}
            Err(e) => {
                shared.leases.release(&part.name, revision).await;
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Opens a writer, trying again every second while the database is away. `None` when the
/// worker stops meanwhile.
async fn open_writer(
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<Writer>, IngestError> {
    loop {
        let store = shared.store.clone();
        match tokio::task::spawn_blocking(move || store.writer()).await {
            Ok(Ok(writer)) => return Ok(Some(writer)),
            Ok(Err(e)) => {
                shared.stats.database_ok.store(false, Ordering::Relaxed);
                tracing::error!("fleet: cannot open a writer: {e}; trying again");
            }
            Err(e) => return Err(IngestError::Nats(format!("opening a writer: {e}"))),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return Ok(None),
        }
    }
}

/// Why a worker stopped consuming a partition it held.
enum Held {
    /// The worker stops.
    Stopped,
    /// Over its share: the partition is given to another worker.
    Released,
    /// The lease was lost (its batch given back).
    Lost,
}

/// Consumes `part` while its lease is held: fetches and decodes a batch while the one
/// before it commits, and acknowledges each batch after its commit. Returns with nothing in
/// flight.
async fn hold(
    shared: &Arc<Shared>,
    part: &Part,
    consumer: &consumer::PullConsumer,
    spare: &mut Vec<Writer>,
    revision: &mut u64,
    stop: &watch::Receiver<bool>,
) -> Result<Held, IngestError> {
    let held_since = Instant::now();
    let mut renewed_at = Instant::now();
    let mut in_flight: Option<InFlight> = None;
    let held = loop {
        if *stop.borrow() {
            break Held::Stopped;
        }
        // Renewed now and then while idle (and always before a batch is stored).
        if renewed_at.elapsed() >= shared.leases.ttl / 6 {
            let Some(renewed) = shared.leases.renew(&part.name, *revision).await else {
                break Held::Lost;
            };
            *revision = renewed;
            renewed_at = Instant::now();
        }
        // Beyond its share (another worker came): give one back, now and then.
        if shared.leases.over_share() && held_since.elapsed() > Duration::from_secs(2) {
            break Held::Released;
        }
        let messages = fetch(shared, part, consumer).await?;
        // Each frame says how many wait behind it; none fetched, none wait.
        let waiting = messages
            .last()
            .and_then(|m| m.info().ok())
            .map_or(0, |info| info.pending);
        shared.note_lag(part, Some(waiting));
        if messages.is_empty() {
            if let Some(flight) = in_flight.take() {
                spare.push(finish(shared, part, flight, revision, &[]).await?.0);
            }
            continue;
        }
        let writer = spare
            .pop()
            .expect("a writer is free while at most one batch commits");
        let overlay = in_flight.as_ref().map(|flight| Arc::clone(&flight.pending));
        let batch = decode(shared, part, messages, writer, overlay).await?;
        // Set aside: into the dead-letter stream, each acknowledged there before anything else.
        let dead_lettered = dead_letter(shared, &batch.messages, &batch.outcomes).await;
        // The batch before it: committed and acknowledged (or given back, with this one).
        if let Some(flight) = in_flight.take() {
            let (writer, committed) =
                finish(shared, part, flight, revision, &batch.messages).await?;
            spare.push(writer);
            if !committed {
                // Given back with the one before it (finish did).
                let mut writer = batch.writer;
                let _ = writer.take_buffered();
                spare.push(writer);
                continue;
            }
        }
        if let Err(e) = dead_lettered {
            spare.push(give_back(batch.writer, &[&batch.messages], &e).await);
            continue;
        }
        // The lease must still be ours before the batch is stored.
        let Some(renewed) = shared.leases.renew(&part.name, *revision).await else {
            spare.push(give_back(batch.writer, &[&batch.messages], "the lease was lost").await);
            break Held::Lost;
        };
        *revision = renewed;
        renewed_at = Instant::now();
        in_flight = Some(commit(shared, batch));
    };
    if let Some(flight) = in_flight.take() {
        spare.push(finish(shared, part, flight, revision, &[]).await?.0);
    }
    shared.note_lag(part, None);
    Ok(held)
}

/// Fetches up to a batch of `part`'s frames, waiting at most the batch's time.
async fn fetch(
    shared: &Shared,
    part: &Part,
    consumer: &consumer::PullConsumer,
) -> Result<Vec<jetstream::Message>, IngestError> {
    let config = &shared.config;
    let mut fetched = consumer
        .fetch()
        .max_messages(config.batch_max)
        .expires(config.batch_wait)
        .messages()
        .await
        .map_err(nats)?;
    let mut messages = Vec::new();
    while let Some(message) = fetched.next().await {
        match message {
            Ok(message) => messages.push(message),
            // A status of the pull request (too many pending, …): the batch ends here.
            Err(e) => {
                tracing::debug!("fleet: {}: {e}", part.name);
                break;
            }
        }
    }
    if !messages.is_empty() {
        tracing::trace!("fleet: {}: {} frames", part.name, messages.len());
    }
    Ok(messages)
}

/// A batch decoded into its writer's buffer, not yet stored.
struct Batch {
    messages: Vec<jetstream::Message>,
    outcomes: Vec<Outcome>,
    /// The meters' last frames in this batch.
    pending: Pending,
    writer: Writer,
    redelivered: u64,
    unmapped: u64,
}

/// Decodes a batch, in order, meter by meter, off the runtime's threads. `overlay`: the
/// last frames of the batch still committing before it.
async fn decode(
    shared: &Arc<Shared>,
    part: &Part,
    messages: Vec<jetstream::Message>,
    mut writer: Writer,
    overlay: Option<Arc<Pending>>,
) -> Result<Batch, IngestError> {
    let shared2 = Arc::clone(shared);
    let batch = tokio::task::spawn_blocking(move || {
        let mut pending = Pending::new();
        let mut outcomes = Vec::with_capacity(messages.len());
        let mut unmapped = 0;
        let mut redelivered = 0;
        for message in &messages {
            let delivered = message.info().map_or(1, |info| info.delivered);
            if delivered > 1 {
                redelivered += 1;
            }
            // Locked frame by frame: the worker's other partitions decode in between.
            let mut fleet = shared2.fleet.lock().unwrap_or_else(PoisonError::into_inner);
            let (outcome, from_unmapped) = classify(
                &mut fleet,
                &mut writer,
                &mut pending,
                overlay.as_deref(),
                message.subject.as_str(),
                &message.payload,
                delivered,
            );
            drop(fleet);
            if from_unmapped && shared2.config.partitions > 1 {
                unmapped += 1;
            }
            outcomes.push(outcome);
        }
        Batch {
            messages,
            outcomes,
            pending,
            writer,
            redelivered,
            unmapped,
        }
    })
    .await
    .map_err(|e| IngestError::Nats(format!("decoding a batch: {e}")))?;
    if batch.unmapped > 0 {
        tracing::warn!(
            "fleet: {}: {} frames came on unmapped subjects (smarty.raw.<title>): the NATS \
             server lacks the mapping to {} partitions (docs/fleet.md)",
            part.name,
            batch.unmapped,
            shared.config.partitions
        );
    }
    Ok(batch)
}

/// Publishes a batch's set-aside frames to the dead-letter stream and waits for the
/// stream's acknowledgements. `Err` says why when one is not there.
async fn dead_letter(
    shared: &Shared,
    messages: &[jetstream::Message],
    outcomes: &[Outcome],
) -> Result<(), String> {
    let config = &shared.config;
    let mut acks = Vec::new();
    for (message, outcome) in messages.iter().zip(outcomes) {
        if let Outcome::SetAside(reason, meter, token) = outcome {
            let sequence = message.info().map_or(0, |info| info.stream_sequence);
            let mut headers = HeaderMap::new();
            headers.insert("Smarty-Reason", *reason);
            headers.insert("Smarty-Meter", meter.as_str());
            headers.insert("Smarty-Subject", message.subject.as_str());
            headers.insert("Smarty-Stream", config.stream.name.as_str());
            headers.insert("Smarty-Stream-Sequence", sequence.to_string().as_str());
            headers.insert(
                "Nats-Msg-Id",
                format!("{}:{sequence}", config.stream.name).as_str(),
            );
            let subject = format!("smarty.dead.{reason}.{token}");
            let ack = shared
                .js
                .publish_with_headers(subject, headers, message.payload.clone())
                .await
                .map_err(|e| format!("dead letter: {e}"))?;
            acks.push(ack);
        }
    }
    for ack in acks {
        ack.await.map_err(|e| format!("dead letter: {e}"))?;
    }
    Ok(())
}

/// A batch whose transaction runs.
struct InFlight {
    messages: Vec<jetstream::Message>,
    outcomes: Vec<Outcome>,
    pending: Arc<Pending>,
    redelivered: u64,
    unmapped: u64,
    before: smarty_store::writer::WriteTotals,
    started: Instant,
    task: tokio::task::JoinHandle<(Writer, StoreResult, Option<StoreResult>)>,
}

/// A commit's result, and the rejection counts' after it.
type StoreResult = Result<(), smarty_store::StoreError>;

/// Starts storing `batch` in one transaction, with the meters' last counters, and the
/// rejections after it.
fn commit(shared: &Shared, batch: Batch) -> InFlight {
    let mut rejections: BTreeMap<(String, String), u64> = BTreeMap::new();
    for outcome in &batch.outcomes {
        if let Outcome::SetAside(reason, meter, _) = outcome {
            *rejections
                .entry((meter.clone(), (*reason).to_owned()))
                .or_default() += 1;
        }
    }
    let counters: Vec<FleetCounter> = batch
        .pending
        .iter()
        .map(|(title, (name, last))| {
            FleetCounter::new(
                name.to_string(),
                *title,
                last.key_check.clone(),
                last.counter,
                Some(last.tag.clone()),
            )
        })
        .collect();
    let rows: Vec<(String, String, u64)> = rejections
        .iter()
        .map(|((m, r), n)| (m.clone(), r.clone(), *n))
        .collect();
    let before = batch.writer.totals();
    let store = shared.store.clone();
    let mut writer = batch.writer;
    let task = tokio::task::spawn_blocking(move || {
        // The meters' last counters in the readings' transaction.
        let result = writer.flush_with_counters(&counters).map(|_| ());
        let after = result.is_ok().then(|| store.add_fleet_rejections(&rows));
        (writer, result, after)
    });
    InFlight {
        messages: batch.messages,
        outcomes: batch.outcomes,
        pending: Arc::new(batch.pending),
        redelivered: batch.redelivered,
        unmapped: batch.unmapped,
        before,
        started: Instant::now(),
        task,
    }
}

/// Waits for a batch's commit (telling its frames to wait meanwhile), then acknowledges
/// them; a failed commit gives them back, and `next` (the batch decoded after it) with
/// them, in order. Returns the writer, and whether the batch was stored.
async fn finish(
    shared: &Shared,
    part: &Part,
    mut flight: InFlight,
    revision: &mut u64,
    next: &[jetstream::Message],
) -> Result<(Writer, bool), IngestError> {
    let config = &shared.config;
    let stats = &shared.stats;
    tracing::trace!("fleet: {}: committing", part.name);
    let mut progress = tokio::time::interval(config.ack_wait / 3);
    progress.tick().await;
    let (writer, result, after) = loop {
        tokio::select! {
            done = &mut flight.task => break done.map_err(|e| IngestError::Nats(format!("a commit: {e}")))?,
            _ = progress.tick() => {
                for message in flight.messages.iter().chain(next) {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
                if let Some(renewed) = shared.leases.renew(&part.name, *revision).await {
                    *revision = renewed;
                }
            }
        }
    };
    match result {
        Ok(()) => {
            stats.database_ok.store(true, Ordering::Relaxed);
            let after_totals = writer.totals();
            stats
                .frames
                .fetch_add(flight.messages.len() as u64, Ordering::Relaxed);
            stats
                .redelivered
                .fetch_add(flight.redelivered, Ordering::Relaxed);
            stats.unmapped.fetch_add(flight.unmapped, Ordering::Relaxed);
            stats.stored.fetch_add(
                after_totals.readings - flight.before.readings,
                Ordering::Relaxed,
            );
            stats.duplicates.fetch_add(
                after_totals.duplicates - flight.before.duplicates,
                Ordering::Relaxed,
            );
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats.commit_took(flight.started.elapsed());
            for outcome in &flight.outcomes {
                if let Outcome::SetAside(reason, meter, _) = outcome {
                    stats.reject(reason, meter);
                    stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    match *reason {
                        "replay" => stats.replays.fetch_add(1, Ordering::Relaxed),
                        "nonce_reuse" => stats.nonce_reuse.fetch_add(1, Ordering::Relaxed),
                        _ => 0,
                    };
                }
            }
            if let Some(Err(e)) = after {
                tracing::warn!("fleet: cannot save rejection counts: {e}");
            }
            {
                let mut fleet = shared.fleet.lock().unwrap_or_else(PoisonError::into_inner);
                for (title, (_, last)) in flight.pending.iter() {
                    if let Some(ours) = fleet.last.get(title)
                        && ours.key_check == last.key_check
                        && ours.counter > last.counter
                    {
                        stats.out_of_order.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    fleet.last.insert(*title, last.clone());
                }
            }
            // Committed: now, and only now, the frames are acknowledged.
            for message in &flight.messages {
                message.ack().await.map_err(nats)?;
            }
            Ok((writer, true))
        }
        Err(e) => {
            stats.database_ok.store(false, Ordering::Relaxed);
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            *stats
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
            Ok((
                give_back(writer, &[&flight.messages, next], &e.to_string()).await,
                false,
            ))
        }
    }
}

/// Gives batches back: nothing of them stays in memory; their frames come again, in the
/// order given (negative acknowledgements, then a pause). Returns the writer, emptied.
async fn give_back(mut writer: Writer, batches: &[&[jetstream::Message]], why: &str) -> Writer {
    tracing::error!("fleet: cannot store a batch: {why}; its frames come again");
    let _ = writer.take_buffered();
    // At once: JetStream gives redeliveries before newer frames, so the partition's order
    // holds (a delayed redelivery would let newer frames pass).
    for message in batches.iter().flat_map(|b| b.iter()) {
        let _ = message.ack_with(AckKind::Nak(None)).await;
    }
    // A pause before the next attempt (the lease is kept meanwhile).
    tokio::time::sleep(Duration::from_secs(1)).await;
    writer
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn health_turns_on_the_database_and_a_lag_that_stays_high() {
        let config = IngestConfig {
            lag_unhealthy: 10,
            lag_unhealthy_for: Duration::ZERO,
            ..IngestConfig::default()
        };
        let stats = IngestStats::default();
        assert!(stats.health(&config).unwrap_err().contains("database"));
        stats.database_ok.store(true, Ordering::Relaxed);
        stats.set_lag(10, &config);
        assert_eq!(stats.health(&config), Ok("ok: lag 10 frames".to_owned()));
        stats.set_lag(11, &config);
        let why = stats.health(&config).unwrap_err();
        assert!(why.contains("lag is 11 frames, above 10"), "{why}");
        stats.set_lag(0, &config);
        assert!(stats.health(&config).is_ok());
        // A lag above the threshold for less than the grace time is no alarm.
        let patient = IngestConfig {
            lag_unhealthy_for: Duration::from_secs(3600),
            ..config
        };
        stats.set_lag(1_000, &patient);
        assert!(stats.health(&patient).is_ok());
    }

    #[test]
    fn metrics_are_prometheus_text_with_every_reason_and_a_cumulative_histogram() {
        let stats = IngestStats::default();
        stats.frames.fetch_add(3, Ordering::Relaxed);
        stats.reject("replay", "m-1");
        stats.commit_took(Duration::from_millis(3));
        stats.commit_took(Duration::from_millis(40));
        stats.commit_took(Duration::from_secs(60));
        let text = stats.render();
        assert!(
            text.contains(
                "# TYPE smarty_fleet_frames_total counter\nsmarty_fleet_frames_total 3\n"
            )
        );
        assert!(text.contains("smarty_fleet_rejected_total{reason=\"replay\"} 1\n"));
        assert!(text.contains("smarty_fleet_rejected_total{reason=\"unknown_meter\"} 0\n"));
        assert!(text.contains("smarty_fleet_commit_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("smarty_fleet_commit_seconds_bucket{le=\"0.05\"} 2\n"));
        assert!(text.contains("smarty_fleet_commit_seconds_bucket{le=\"30\"} 2\n"));
        assert!(text.contains("smarty_fleet_commit_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("smarty_fleet_commit_seconds_count 3\n"));
        // No meter names: the worker's metrics carry no meter label.
        assert!(!text.contains("m-1"));
    }
}
