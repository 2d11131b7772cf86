//! A fleet worker (`smarty fleet ingest`): raw frames from the JetStream stream, decrypted
//! with each meter's key, checked (tag, CRC), parsed, and stored in batches through the
//! store's writer; every message of a batch is acknowledged only after the transaction that
//! stored the batch committed.
//!
//! Workers share one durable pull consumer: JetStream hands each message to one of them, and
//! redelivers what a worker took but never acknowledged (it was killed, or its commit failed)
//! after `ack_wait`. Redelivered and resent frames are absorbed by the store: a reading is
//! keyed by meter and telegram time and inserted once, so each frame counts once. A frame
//! that cannot be stored — an unknown meter, a tag that fails, a CRC error, a subject that
//! names no meter — is counted by reason and acknowledged (set aside), without holding up any
//! other meter's frames.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, AckKind, consumer};
use futures_util::StreamExt as _;
use smarty_model::event::TelegramEvent;
use smarty_p1::{Aad, Decoder, DecoderConfig};
use smarty_store::{Reading, Store, Writer};
use tokio::sync::watch;

use crate::keys::{self, MasterKey};
use crate::keys_csv::MeterKeys;
use crate::subject;

/// How a worker consumes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IngestConfig {
    /// The stream of raw frames, created on start when missing, checked otherwise.
    pub stream: crate::stream::StreamConfig,
    /// The durable consumer the workers share.
    pub consumer: String,
    /// Frames stored per transaction at most.
    pub batch_max: usize,
    /// How long a fetch waits for a batch to fill.
    pub batch_wait: Duration,
    /// A frame taken but not acknowledged is redelivered after this long.
    pub ack_wait: Duration,
    /// An unknown meter's keys are looked up again at most this often.
    pub keys_refresh: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            stream: crate::stream::StreamConfig::default(),
            consumer: "smarty-ingest".to_owned(),
            batch_max: 2_000,
            batch_wait: Duration::from_millis(200),
            ack_wait: Duration::from_secs(30),
            keys_refresh: Duration::from_secs(10),
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

/// A worker's counters, shared with its `/metrics`.
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
    /// Batches committed.
    pub batches: AtomicU64,
    /// Commits that failed (their frames are redelivered).
    pub failed_commits: AtomicU64,
    /// The last commit's duration, microseconds.
    pub commit_us: AtomicU64,
    /// The last error of a commit.
    pub last_error: Mutex<Option<String>>,
    /// Frames set aside, by reason (`unknown_meter`, `tag`, `crc`, `bad_subject`, …) and
    /// meter.
    pub rejected: Mutex<BTreeMap<(String, String), u64>>,
}

impl IngestStats {
    fn reject(&self, reason: &str, meter: &str) {
        let mut rejected = self
            .rejected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *rejected
            .entry((reason.to_owned(), meter.to_owned()))
            .or_default() += 1;
    }

    /// Frames set aside for `reason`, all meters.
    pub fn rejected_for(&self, reason: &str) -> u64 {
        self.rejected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|((r, _), _)| r == reason)
            .map(|(_, n)| n)
            .sum()
    }
}

/// One meter as the worker holds it: its keys and a decoder.
struct Meter {
    name: Arc<str>,
    decoder: Decoder,
    /// The key's check value (hex), which its saved frame counters are kept under.
    key_check: String,
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
        }
    }
}

/// The worker's view of the fleet: meters by system title, loaded from the store.
struct Fleet {
    store: Store,
    master: MasterKey,
    meters: HashMap<[u8; 8], Meter>,
    loaded: Instant,
    refresh: Duration,
}

impl Fleet {
    fn load(store: Store, master: MasterKey, refresh: Duration) -> Result<Fleet, IngestError> {
        let mut fleet = Fleet {
            store,
            master,
            meters: HashMap::new(),
            loaded: Instant::now(),
            refresh,
        };
        fleet.reload()?;
        Ok(fleet)
    }

    fn reload(&mut self) -> Result<(), IngestError> {
        let keys = keys::load(&self.store, &self.master)?;
        self.meters.retain(|title, _| keys.contains_key(title));
        for (title, key) in keys {
            self.meters.entry(title).or_insert_with(|| Meter::new(&key));
        }
        self.loaded = Instant::now();
        Ok(())
    }

    /// The meter of `title`, looking the keys up again when it is unknown and they were
    /// loaded a while ago (a meter added while workers run).
    fn meter(&mut self, title: &[u8; 8]) -> Option<&mut Meter> {
        if !self.meters.contains_key(title)
            && self.loaded.elapsed() >= self.refresh
            && let Err(e) = self.reload()
        {
            tracing::error!("fleet: cannot reload the keys: {e}");
        }
        self.meters.get_mut(title)
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

/// The highest frame counter of each meter in a batch: (name, key check) → (system title,
/// counter).
type Counters = HashMap<(Arc<str>, String), ([u8; 8], u32)>;

/// Decodes one message into the writer's buffer, noting its frame counter; returns the
/// reason when it is set aside.
fn decode(
    fleet: &mut Fleet,
    writer: &mut Writer,
    counters: &mut Counters,
    subject: &str,
    data: &[u8],
) -> Result<(), (&'static str, String)> {
    let Some(title) = subject::system_title(subject) else {
        return Err(("bad_subject", subject.to_owned()));
    };
    let hex_title = smarty_p1::hex::upper(&title).to_string();
    let Some(meter) = fleet.meter(&title) else {
        return Err(("unknown_meter", hex_title));
    };
    let frame = payload(data).unwrap_or_else(|| data.to_vec());
    meter.decoder.push(&frame);
    let name = Arc::clone(&meter.name);
    let reason = match meter.decoder.next() {
        Some(Ok(decoded)) => {
            if let Some(frame) = &decoded.frame {
                let entry = counters
                    .entry((Arc::clone(&name), meter.key_check.clone()))
                    .or_insert((frame.system_title, frame.frame_counter));
                entry.1 = entry.1.max(frame.frame_counter);
            }
            let event = TelegramEvent::new(&name, &decoded, SystemTime::now());
            let (reading, mbus) = Reading::from_event(&event);
            if let Some(reading) = reading {
                writer.push(reading);
            }
            for record in mbus {
                writer.push_mbus(record);
            }
            return Ok(());
        }
        Some(Err(rejection)) => rejection.reason().as_str(),
        None => "incomplete",
    };
    // Whatever is left of a frame that did not decode goes with it.
    let _ = meter.decoder.finish();
    Err((reason, name.to_string()))
}

/// Runs one worker until `stop` turns true or NATS fails: consumes, stores, acknowledges.
///
/// # Errors
/// The stream is missing or NATS is gone ([`IngestError::Nats`]), the keys cannot be
/// unwrapped ([`IngestError::Keys`]), the store cannot be opened.
pub async fn run(
    client: async_nats::Client,
    store: Store,
    master: MasterKey,
    config: IngestConfig,
    stats: Arc<IngestStats>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    let js = jetstream::new(client);
    let ensured = crate::stream::ensure(&js, &config.stream).await?;
    if let crate::stream::Ensured::Created(_) = ensured {
        tracing::info!("fleet: created the stream {}", config.stream.name);
    }
    let stream = js.get_stream(&config.stream.name).await.map_err(nats)?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &config.consumer,
            consumer::pull::Config {
                durable_name: Some(config.consumer.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_ack_pending: i64::try_from(config.batch_max * 4).unwrap_or(i64::MAX),
                filter_subject: format!("{}.>", subject::PREFIX),
                ..Default::default()
            },
        )
        .await
        .map_err(nats)?;
    let mut fleet = Fleet::load(store.clone(), master, config.keys_refresh)?;
    let mut writer = store.writer()?;
    tracing::info!(
        "fleet: worker on consumer {} of stream {}, {} meters, storing into {}",
        config.consumer,
        config.stream.name,
        fleet.meters.len(),
        store.location()
    );
    while !*stop.borrow() {
        let mut batch = tokio::select! {
            batch = consumer
                .fetch()
                .max_messages(config.batch_max)
                .expires(config.batch_wait)
                .messages() => batch.map_err(nats)?,
            _ = stop.changed() => break,
        };
        let mut messages = Vec::new();
        let mut counters = Counters::new();
        while let Some(message) = batch.next().await {
            let message = message.map_err(nats)?;
            stats.frames.fetch_add(1, Ordering::Relaxed);
            if message.info().is_ok_and(|info| info.delivered > 1) {
                stats.redelivered.fetch_add(1, Ordering::Relaxed);
            }
            if let Err((reason, meter)) = decode(
                &mut fleet,
                &mut writer,
                &mut counters,
                message.subject.as_str(),
                &message.payload,
            ) {
                stats.reject(reason, &meter);
            }
            messages.push(message);
        }
        if messages.is_empty() {
            continue;
        }
        let before = writer.totals();
        let started = Instant::now();
        match writer.flush() {
            Ok(_) => {
                let after = writer.totals();
                stats
                    .stored
                    .fetch_add(after.readings - before.readings, Ordering::Relaxed);
                stats
                    .duplicates
                    .fetch_add(after.duplicates - before.duplicates, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.commit_us.store(
                    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                // Each meter's last frame counter, kept with its key's check value (a
                // counter never goes back in the store, whichever worker saves first).
                for ((name, key_check), (title, counter)) in &counters {
                    let title = smarty_p1::hex::upper(title).to_string();
                    if let Err(e) = store.save_frame_counters(name, key_check, &[(title, *counter)])
                    {
                        tracing::warn!("fleet: cannot save the frame counter of {name}: {e}");
                    }
                }
                // Committed: now, and only now, the frames are acknowledged.
                for message in &messages {
                    message.ack().await.map_err(nats)?;
                }
            }
            Err(e) => {
                stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                *stats
                    .last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
                tracing::error!("fleet: cannot store a batch: {e}; its frames come again");
                // They are redelivered: nothing of them stays in memory.
                let _ = writer.take_buffered();
                for message in &messages {
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(2))))
                        .await;
                }
            }
        }
    }
    Ok(())
}
