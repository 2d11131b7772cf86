//! The store as an output of `smarty run`: a thread that owns the writer.
//!
//! A lossless output ([`super::bus`]): events come on a bounded channel, readings go to the
//! writer thread on another bounded one. When the writer falls behind (a burst, a slow disk),
//! both fill up and the meters wait: nothing is dropped on the way. The writer keeps up by
//! batching: it commits what it holds every `commit_interval`, however many readings.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, TrySendError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::mpsc as channel;

use smarty_model::event::MeterEvent;
use smarty_model::live::OutputHealth;
use smarty_store::config::Location;
use smarty_store::spill::Spill;
use smarty_store::{MbusRecord, Reading, Store, Writer};

/// How often raw readings past the retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The wait before a failed commit is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Readings held in memory while the store refuses them (a day at 1 s); beyond, they go to
/// the spill file when there is one, else new ones are dropped.
const MAX_BUFFERED: usize = 100_000;

/// A PostgreSQL store's readings held in memory while it refuses them, before they go to
/// the spill file (about three hours of a meter at 1 s).
const SPILL_AFTER: usize = 10_000;

/// Readings the spill file holds at most (about 58 days of a meter at 1 s, 1.6 years at 10 s,
/// some 150 MB); beyond, new ones are dropped and counted.
const SPILL_MAX: u64 = 5_000_000;

/// The spill file's name in the state directory.
const SPILL_FILE: &str = "store-spill.db";

/// Readings on their way to the writer thread before the event side waits.
const TO_WRITER: usize = 1024;

/// What the event side hands to the writer thread.
enum ToWriter {
    Reading(Box<Reading>),
    Mbus(MbusRecord),
}

/// Stores every telegram of the event channel until it closes: a dedicated thread owns the
/// [`Writer`], commits every `commit_interval`, prunes raw readings past the retention every
/// hour, and commits what it holds when the channel closes (a clean stop loses nothing; a
/// crash loses at most one commit interval). A failed commit is logged and retried with the
/// next one; while commits fail, up to a day of readings is held in memory, newer ones are
/// dropped (and counted in the log) — for a PostgreSQL store with a state directory they go
/// to a spill file there instead ([`smarty_store::spill`], bounded), written into the store
/// once it takes readings again. `health` says on `/healthz` whether commits work and how
/// many readings wait.
///
/// # Errors
/// When the writer cannot be opened or its thread cannot start or dies.
pub async fn follow(
    store: Store,
    mut events: channel::Receiver<MeterEvent>,
    health: OutputHealth,
    state_dir: Option<PathBuf>,
) -> Result<()> {
    let writer = store
        .writer()
        .with_context(|| format!("cannot write the store {}", store.location()))?;
    let retention = match store.config().raw_retention_days {
        0 => "forever".to_owned(),
        days => format!("{days} days"),
    };
    tracing::info!(
        "store: history in {} (raw readings kept {retention}, committed every {:?})",
        store.location(),
        store.config().commit_interval
    );
    let spill = match (&store.location(), state_dir) {
        (Location::Postgres(_), Some(dir)) => {
            let path = dir.join(SPILL_FILE);
            let spill = Spill::at(&path, SPILL_MAX)
                .with_context(|| format!("cannot open the spill file {}", path.display()))?;
            if spill.held() > 0 {
                tracing::warn!(
                    "store: {} readings wait in {} from an earlier run; they go to the store with the next commit",
                    spill.held(),
                    path.display()
                );
            }
            Some(spill)
        }
        _ => None,
    };
    let (tx, rx) = mpsc::sync_channel::<ToWriter>(TO_WRITER);
    let thread = std::thread::Builder::new()
        .name("store".into())
        .spawn(move || write_loop(writer, spill, &rx, &health))
        .context("cannot start the store's thread")?;
    'events: while let Some(event) = events.recv().await {
        let MeterEvent::Telegram(event) = event else {
            continue;
        };
        let (reading, mbus) = Reading::from_event(&event);
        let messages = reading
            .map(|r| ToWriter::Reading(Box::new(r)))
            .into_iter()
            .chain(mbus.into_iter().map(ToWriter::Mbus));
        for message in messages {
            if !send(&tx, message).await {
                break 'events; // the thread ended: its result says why
            }
        }
    }
    drop(tx);
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .context("the store's thread")?
        .map_err(|_| anyhow::anyhow!("the store's thread panicked"))
}

/// Hands `message` to the writer thread, waiting (off the runtime's threads) while its channel
/// is full; `false` when the thread is gone.
async fn send(tx: &mpsc::SyncSender<ToWriter>, message: ToWriter) -> bool {
    match tx.try_send(message) {
        Ok(()) => true,
        Err(TrySendError::Disconnected(_)) => false,
        Err(TrySendError::Full(message)) => {
            let tx = tx.clone();
            tokio::task::spawn_blocking(move || tx.send(message).is_ok())
                .await
                .unwrap_or(false)
        }
    }
}

/// The writer thread: until the channel closes.
fn write_loop(
    mut writer: Writer,
    mut spill: Option<Spill>,
    rx: &mpsc::Receiver<ToWriter>,
    health: &OutputHealth,
) {
    let mut last_prune: Option<Instant> = None;
    let mut failing: Option<String> = None;
    let mut dropped = 0u64;
    // After a failed commit, the next attempt waits this long.
    let mut retry_at: Option<Instant> = None;
    loop {
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            match writer.prune(jiff::Timestamp::now().as_second()) {
                Ok(0) => {}
                Ok(n) => tracing::debug!("store: pruned {n} raw readings"),
                Err(e) => tracing::error!("store: cannot prune: {e}"),
            }
        }
        let retry_wait = retry_at.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(Instant::now())
        });
        let wait = if writer.buffered() > 0 {
            writer.until_due().max(retry_wait)
        } else {
            Duration::from_secs(60)
        };
        let closed = match rx.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(message) => {
                if writer.buffered() >= MAX_BUFFERED
                    && let Some(spill) = &mut spill
                {
                    dropped += hold(spill, &mut writer);
                }
                if writer.buffered() >= MAX_BUFFERED {
                    dropped += 1;
                    if dropped == 1 {
                        tracing::error!(
                            "store: {MAX_BUFFERED} readings waiting; dropping new ones until a commit succeeds"
                        );
                    }
                } else {
                    match message {
                        ToWriter::Reading(r) => writer.push(*r),
                        ToWriter::Mbus(m) => writer.push_mbus(m),
                    }
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        let may_retry = retry_at.is_none_or(|t| Instant::now() >= t);
        if (writer.due() && may_retry) || (closed && writer.buffered() > 0) {
            let flushed = writer.flush().and_then(|n| match &mut spill {
                Some(spill) if spill.held() > 0 => {
                    let held = spill.drain_into(&mut writer)?;
                    tracing::info!(
                        "store: the {held} readings of {} are in the store",
                        spill.path().display()
                    );
                    Ok(n)
                }
                _ => Ok(n),
            });
            match flushed {
                Ok(_) => {
                    retry_at = None;
                    health.ok();
                    if failing.take().is_some() {
                        tracing::info!("store: commits work again");
                    }
                    if dropped > 0 {
                        tracing::warn!("store: {dropped} readings were dropped");
                        dropped = 0;
                    }
                }
                Err(e) => {
                    retry_at = Some(Instant::now() + RETRY_AFTER);
                    if let Some(spill) = &mut spill
                        && writer.buffered() >= SPILL_AFTER
                    {
                        dropped += hold(spill, &mut writer);
                    }
                    let message = e.to_string();
                    let on_disk = spill
                        .as_ref()
                        .filter(|s| s.held() > 0)
                        .map_or_else(String::new, |s| format!(", {} of them on disk", s.held()));
                    health.failing(format!(
                        "cannot commit ({message}); {} readings waiting{on_disk}",
                        writer.buffered() as u64 + spill.as_ref().map_or(0, Spill::held)
                    ));
                    if failing.as_deref() != Some(&message) {
                        tracing::error!("store: cannot commit: {message}; retrying");
                        failing = Some(message);
                    }
                    if closed {
                        tracing::error!("store: {} readings not stored at stop", writer.buffered());
                    }
                }
            }
        }
        if closed {
            let totals = writer.totals();
            tracing::info!(
                "store: stopped after storing {} readings and {} M-Bus readings",
                totals.readings,
                totals.mbus
            );
            return;
        }
    }
}

/// Moves the writer's buffer to the spill file; returns the readings dropped (the spill is
/// full). A spill that cannot be written leaves them in memory (logged).
fn hold(spill: &mut Spill, writer: &mut Writer) -> u64 {
    match spill.hold(writer) {
        Ok(dropped) => dropped,
        Err(e) => {
            tracing::error!(
                "store: cannot hold readings in {}: {e}",
                spill.path().display()
            );
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use smarty_model::period::Resolution;
    use smarty_store::StoreConfig;

    use super::*;

    #[tokio::test]
    async fn the_service_output_stores_every_telegram() {
        use smarty_model::event::{MeterEvent, TelegramEvent};
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::at(dir.path().join("smarty.db"));
        config.commit_interval = Duration::from_millis(20);
        let store = Store::open(&config).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let follower = tokio::spawn(follow(store.clone(), rx, Default::default(), None));
        let args = crate::cli::MeterArgs {
            interval: Duration::from_secs(10),
            count: None,
            key: None,
            key_file: None,
            auth_key: None,
            plain: true,
            gas: true,
            water: false,
            firmware: crate::cli::Firmware::Full,
            solar_kwp: 4.0,
            frame_counter: None,
            start: None,
            seed: Some(1),
        };
        let (mut meter, _) = crate::simulate::Meter::new(&args).unwrap();
        let zone = smarty_model::time::meter_zone();
        let first: jiff::Zoned = jiff::Timestamp::from_second(1_794_960_000)
            .unwrap()
            .to_zoned(zone);
        let meter_name: Arc<str> = Arc::from("home");
        for i in 0..50 {
            let now = first
                .checked_add(jiff::SignedDuration::from_secs(10 * i))
                .unwrap();
            let frame = meter.next_frame(&now);
            let mut decoder = smarty_p1::Decoder::new(smarty_p1::DecoderConfig::default());
            decoder.push(&frame);
            let decoded = decoder.finish().unwrap().unwrap();
            tx.send(MeterEvent::Telegram(Arc::new(TelegramEvent::new(
                &meter_name,
                &decoded,
                std::time::SystemTime::now(),
            ))))
            .await
            .unwrap();
            if i == 25 {
                // Half-way, the follower commits by its interval while the meter goes on:
                // wait for that commit.
                let deadline = Instant::now() + Duration::from_secs(10);
                while store
                    .reader()
                    .unwrap()
                    .meters()
                    .unwrap()
                    .first()
                    .and_then(|m| m.last_reading)
                    != Some(1_794_960_250)
                {
                    assert!(Instant::now() < deadline, "no commit within 10 s");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        drop(tx);
        follower.await.unwrap().unwrap();
        let reader = store.reader().unwrap();
        let meters = reader.meters().unwrap();
        assert_eq!(meters[0].first_reading, Some(1_794_960_000));
        assert_eq!(meters[0].last_reading, Some(1_794_960_490));
        assert_eq!(meters[0].mbus.len(), 1);
        let series = reader
            .series(
                "home",
                "voltage_l1_v",
                1_794_960_000,
                1_794_961_000,
                Resolution::Raw,
            )
            .unwrap();
        assert_eq!(series.t.len(), 50);
    }
}
