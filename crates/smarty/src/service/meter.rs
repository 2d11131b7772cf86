//! One meter of the service: its source, its decoder, and a sink that turns what the pipeline
//! decodes into [`MeterEvent`]s for the outputs ([`Publisher`]).
//!
//! Telegrams wait for the lossless outputs (back-pressure, never loss). Status events are
//! coalesced: a connect or disconnect (and the first telegram, or the first after a problem)
//! goes out at once, counter changes at most once per [`STATUS_EVERY`], so that a flood of
//! rejections makes one status a second, not one each.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use smarty_p1::{Decoded, Decoder, DecoderConfig, Stats};
use tokio::sync::watch;

use super::bus::Publisher;
use super::guard::MeterGuard;
use super::replay::ReplayCounters;
use crate::cli::SerialArgs;
use crate::config::{MeterConfig, read_secret};
use crate::key;
use crate::output::{Delivery, Sink, note};
use crate::pipeline::{self, Options, RejectionLog};
use crate::source::{self, Source};
use smarty_model::event::{MeterEvent, MeterStatus, TelegramEvent};
use smarty_store::Store;

/// Counter changes make at most one status event per meter this often.
pub const STATUS_EVERY: Duration = Duration::from_secs(1);

/// How long a stopping meter may take to hand over what it holds.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Publishes what a meter's pipeline produces.
struct EventSink {
    meter: Arc<str>,
    publisher: Publisher,
    status: MeterStatus,
    /// The status changed since it was last sent.
    status_changed: bool,
    /// … and the change must go out at once (connected or lost).
    status_urgent: bool,
    status_sent: Option<Instant>,
    /// Events taken in, not delivered yet.
    outbox: Vec<MeterEvent>,
    connected_once: bool,
    /// The first frame that could not be decrypted for lack of a key was logged.
    undecrypted_logged: bool,
    /// Also hands every telegram to this sink (the console of `smarty demo`).
    console: Option<Box<dyn Sink + Send>>,
    /// The frame counters of a `reject_replay` meter, saved in the state directory.
    replay: Option<ReplayCounters>,
    /// The meter's live guard, when `[guard]` is on.
    guard: Option<MeterGuard>,
}

impl EventSink {
    /// Sends what the outbox holds, then the status when it is due (or `force`d).
    async fn flush(&mut self, force: bool) {
        for event in std::mem::take(&mut self.outbox) {
            self.publisher.send(event).await;
        }
        let due = self.status_urgent
            || force
            || self.status_sent.is_none_or(|t| t.elapsed() >= STATUS_EVERY);
        if self.status_changed && due {
            self.status_changed = false;
            self.status_urgent = false;
            self.status_sent = Some(Instant::now());
            let status = MeterEvent::Status(Arc::new(self.status.clone()));
            self.publisher.send(status).await;
        }
        if let Some(replay) = &mut self.replay {
            if force {
                replay.save();
            } else {
                replay.save_if_due();
            }
        }
    }
}

impl Sink for EventSink {
    fn telegram(&mut self, decoded: &Decoded<'_>) -> io::Result<()> {
        if let Some(console) = &mut self.console {
            console.telegram(decoded)?;
        }
        if let (Some(replay), Some(frame)) = (&mut self.replay, &decoded.frame) {
            replay.accepted(frame.system_title, frame.frame_counter);
        }
        let event = TelegramEvent::new(&self.meter, decoded, SystemTime::now());
        // The first telegram (or the first after a problem) changes the meter's state: its
        // status goes out with it, not up to a second later.
        if self.status.last_telegram.is_none() || self.status.last_error.is_some() {
            self.status_urgent = true;
        }
        self.status.last_telegram = Some(event.received);
        self.status.last_error = None;
        self.status_changed = true;
        let guard = self.guard.as_mut().and_then(|g| g.telegram(&event));
        self.outbox.push(MeterEvent::Telegram(Arc::new(event)));
        if let Some(guard) = guard {
            self.outbox.push(MeterEvent::Guard(Arc::new(guard)));
        }
        Ok(())
    }

    /// Frames a meter without a key cannot decrypt go out as [`MeterEvent::RawFrame`] (the MQTT
    /// output forwards them with `publish_raw`) instead of being reported as rejections.
    fn forwards_undecrypted(&self) -> bool {
        true
    }

    fn undecrypted_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        if !self.undecrypted_logged {
            self.undecrypted_logged = true;
            tracing::warn!(
                "encrypted frames and no key: not decrypted, only forwarded raw \
                 (MQTT publish_raw / --publish-raw)"
            );
        }
        self.outbox.push(MeterEvent::RawFrame {
            meter: Arc::clone(&self.meter),
            frame: Arc::from(frame),
        });
        Ok(())
    }

    fn source_state(&mut self, connected: bool, why: Option<&str>) {
        if connected && self.connected_once {
            self.status.reconnects += 1;
        }
        self.connected_once |= connected;
        self.status.connected = connected;
        if let Some(why) = why {
            self.status.last_error = Some(why.to_owned());
        }
        self.status_changed = true;
        self.status_urgent = true;
    }

    fn counters(&mut self, stats: &Stats) {
        if *stats != self.status.stats {
            self.status.stats = *stats;
            self.status_changed = true;
        }
    }

    fn deliver(&mut self) -> Delivery<'_> {
        Box::pin(async move {
            self.flush(false).await;
            Ok(())
        })
    }
}

/// The decoder settings of a configured meter (the key from `key`, `key_file` or the
/// environment `SMARTY_METER_<NAME>_KEY`, which the configuration already merged).
///
/// # Errors
/// Unreadable key file or malformed key/AAD.
pub fn decoder_config(meter: &MeterConfig) -> Result<DecoderConfig> {
    let in_meter = |e: anyhow::Error| anyhow::anyhow!("meter {:?}: {e:#}", meter.name);
    let key = match (&meter.key, &meter.key_file) {
        (Some(key), _) => {
            Some(key::parse_key(key.expose(), &"the meter's key setting").map_err(in_meter)?)
        }
        (None, Some(file)) => {
            let text = read_secret(file)?;
            let origin = format!("key_file {}", file.display());
            Some(key::parse_key(text.expose(), &origin).map_err(in_meter)?)
        }
        (None, None) => None,
    };
    let aad = key::load_aad(
        meter
            .auth_key
            .as_ref()
            .map(smarty_model::secret::Secret::expose),
        meter.aad.as_ref().map(smarty_model::secret::Secret::expose),
        key::Settings::Meter,
    )
    .map_err(in_meter)?;
    Ok(DecoderConfig::default()
        .with_key(key)
        .with_aad(aad)
        .with_verify_tag(meter.verify_tag)
        .with_reject_replay(meter.reject_replay))
}

/// A configured meter, checked and ready to run.
pub struct Prepared {
    config: MeterConfig,
    source: Box<dyn Source>,
    decoder: DecoderConfig,
}

impl Prepared {
    /// The meter's configured name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The source, for display (never a secret).
    pub fn source(&self) -> String {
        self.source.to_string()
    }
}

/// Checks a configured meter: its source (a device path that does not exist yet is waited
/// for) and its key.
///
/// # Errors
/// A bad source or key setting.
pub fn prepare(meter: MeterConfig) -> Result<Prepared> {
    let serial = SerialArgs {
        baud: meter.baud,
        serial: meter.serial_format().map_err(anyhow::Error::msg)?,
    };
    let source = source::from_spec_waiting(&meter.source, &serial)?;
    let decoder = decoder_config(&meter)?;
    Ok(Prepared {
        config: meter,
        source,
        decoder,
    })
}

/// What else a meter does (`smarty demo`; the service's state directory; its stop).
pub struct Extras {
    /// Also prints every telegram there (`smarty demo`), with the summary at the end.
    pub console: Option<Box<dyn Sink + Send>>,
    /// Stops after this many telegrams.
    pub limit: Option<u64>,
    /// Where the replay counters of a `reject_replay` meter are kept without a store (and
    /// read from once when a store has none yet).
    pub state_dir: Option<PathBuf>,
    /// The history store, which keeps the replay counters when there is one.
    pub store: Option<Store>,
    /// Turns `true` when the service stops: the meter logs what it counted and hands over
    /// what it holds.
    pub stop: watch::Receiver<bool>,
    /// The meter's live guard (`[guard]`), resumed from the store when there is one.
    pub guard: Option<MeterGuard>,
}

/// Runs one meter until its (finite) source ends or `extras.stop` turns `true`; live sources
/// are reopened until then (a missing device is waited for, and shown in its status).
///
/// # Errors
/// A finite source that cannot be read.
pub async fn run(prepared: Prepared, publisher: Publisher, extras: Extras) -> Result<()> {
    let Prepared {
        config: meter,
        source,
        decoder: decoder_config,
    } = prepared;
    let Extras {
        console,
        limit,
        state_dir,
        store,
        mut stop,
        guard,
    } = extras;
    let guard = match (guard, &store) {
        (Some(mut guard), Some(store)) => {
            let (store, name) = (store.clone(), meter.name.clone());
            let resumed = tokio::task::spawn_blocking(move || {
                let resumed = guard.resume(&store, &name);
                (guard, resumed)
            })
            .await;
            match resumed {
                Ok((guard, Ok(()))) => Some(guard),
                Ok((guard, Err(e))) => {
                    tracing::warn!("guard: cannot resume from the store ({e:#}); starting afresh");
                    Some(guard)
                }
                Err(e) => anyhow::bail!("guard: {e}"),
            }
        }
        (guard, _) => guard,
    };
    let started = Instant::now();
    let print_summary = console.is_some();
    let replay = match (&decoder_config.key, &store, &state_dir) {
        (Some(key), Some(store), dir) if meter.reject_replay => Some(ReplayCounters::in_store(
            store.clone(),
            dir.as_deref(),
            &meter.name,
            key,
        )),
        (Some(key), None, Some(dir)) if meter.reject_replay => {
            Some(ReplayCounters::open(dir, &meter.name, key))
        }
        _ => None,
    };
    let mut decoder = Decoder::new(decoder_config);
    if let (Some(replay), Some(guard)) = (&replay, decoder.replay_guard()) {
        replay.restore(guard);
    }
    let name: Arc<str> = Arc::from(meter.name.as_str());
    let mut sink = EventSink {
        meter: Arc::clone(&name),
        publisher,
        status: MeterStatus {
            meter: name,
            source: source.to_string(),
            connected: false,
            last_telegram: None::<SystemTime>,
            stats: Stats::default(),
            reconnects: 0,
            last_error: None,
        },
        status_changed: true,
        status_urgent: true,
        status_sent: None,
        outbox: Vec::new(),
        connected_once: false,
        undecrypted_logged: false,
        console,
        replay,
        guard,
    };
    sink.flush(true).await;
    let options = Options {
        limit,
        // The configuration checks the range; a value beyond `Duration` means no limit.
        silence: Duration::try_from_secs_f64(meter.interval_s * 3.0).ok(),
    };
    let mut rejections = RejectionLog::for_source(source.as_ref(), key::Settings::Meter);
    let stopping = async {
        // A dropped sender (the service gone) stops the meter too.
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let ended = tokio::select! {
        ended = pipeline::run(source.as_ref(), &mut decoder, &mut sink, options, &mut rejections) => Some(ended),
        () = stopping => None,
    };
    rejections.finish();
    let finite_end = matches!(ended, Some(Ok(_)));
    if finite_end {
        sink.status.connected = false;
        sink.status_changed = true;
    }
    // Hand over what is held (a telegram, the latest counters), but never hang a stop.
    if tokio::time::timeout(STOP_GRACE, sink.flush(true))
        .await
        .is_err()
    {
        tracing::warn!("outputs busy: the last status was not delivered");
    }
    if print_summary {
        note(format_args!(
            "{}",
            pipeline::summary(decoder.stats(), started.elapsed())
        ));
    }
    ended.transpose().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use smarty_model::secret::Secret;

    fn meter() -> MeterConfig {
        MeterConfig {
            name: "home".into(),
            source: "/dev/null".into(),
            key: None,
            key_file: None,
            auth_key: None,
            aad: None,
            verify_tag: true,
            reject_replay: false,
            baud: 115_200,
            serial: "8N1".into(),
            interval_s: 10.0,
        }
    }

    #[test]
    fn decoder_errors_name_the_meter_setting_never_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "D491470F47126332B07D1923B35041\n").unwrap();
        let config = MeterConfig {
            key_file: Some(path.clone()),
            ..meter()
        };
        let err = decoder_config(&config).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "meter \"home\": invalid key from key_file {}: a key is 32 hex digits (16 bytes); this one has 30 hex digits",
                path.display()
            )
        );
        let config = MeterConfig {
            aad: Some(Secret::from("30zz".to_owned())),
            ..meter()
        };
        let err = decoder_config(&config).unwrap_err().to_string();
        assert!(err.starts_with("meter \"home\": invalid aad: "), "{err}");

        let config = MeterConfig {
            key: Some(Secret::from("D491470F47126332B07D1923B3504188".to_owned())),
            verify_tag: false,
            reject_replay: true,
            ..meter()
        };
        let decoder = decoder_config(&config).unwrap();
        assert!(decoder.key.is_some() && !decoder.verify_tag && decoder.reject_replay);
    }
}
