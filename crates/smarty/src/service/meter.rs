//! One meter of the service: its source, its decoder, and a sink that turns what the pipeline
//! decodes into [`Event`]s on the broadcast channel.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use smarty_p1::{Decoded, Decoder, DecoderConfig, Stats};
use tokio::sync::broadcast;

use super::event::{Event, MeterStatus, TelegramEvent};
use crate::cli::SerialArgs;
use crate::config::{MeterConfig, read_secret};
use crate::output::Sink;
use crate::{key, pipeline, source};

/// Publishes what a meter's pipeline produces.
struct EventSink {
    meter: Arc<str>,
    tx: broadcast::Sender<Event>,
    status: MeterStatus,
    connected_once: bool,
    /// The first frame that could not be decrypted for lack of a key was logged.
    undecrypted_logged: bool,
    /// Also hands every telegram to this sink (the console of `smarty demo`).
    console: Option<Box<dyn Sink + Send>>,
}

impl EventSink {
    fn publish_status(&self) {
        // No receiver yet (outputs starting) is not an error.
        let _ = self.tx.send(Event::Status(Arc::new(self.status.clone())));
    }
}

impl Sink for EventSink {
    fn telegram(&mut self, decoded: &Decoded<'_>) -> io::Result<()> {
        if let Some(console) = &mut self.console {
            console.telegram(decoded)?;
        }
        let event = TelegramEvent::new(&self.meter, decoded);
        self.status.last_telegram = Some(event.received);
        self.status.last_error = None;
        let _ = self.tx.send(Event::Telegram(Arc::new(event)));
        Ok(())
    }

    /// Frames a meter without a key cannot decrypt go out as [`Event::RawFrame`] (the MQTT
    /// output forwards them with `publish_raw`) instead of being reported as rejections.
    fn forwards_undecrypted(&self) -> bool {
        true
    }

    fn undecrypted_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        if !self.undecrypted_logged {
            self.undecrypted_logged = true;
            tracing::warn!(
                "meter {}: encrypted frames and no key: not decrypted, only forwarded raw \
                 (MQTT publish_raw / --publish-raw)",
                self.meter
            );
        }
        let _ = self.tx.send(Event::RawFrame {
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
        self.publish_status();
    }

    fn counters(&mut self, stats: &Stats) {
        if *stats != self.status.stats {
            self.status.stats = *stats;
            self.publish_status();
        }
    }
}

/// The decoder settings of a configured meter (the key from `key`, `key_file` or the
/// environment `SMARTY_METER_<NAME>_KEY`, which the configuration already merged).
///
/// # Errors
/// Unreadable key file or malformed key/AAD.
pub fn decoder_config(meter: &MeterConfig) -> Result<DecoderConfig> {
    let key_text = match (&meter.key, &meter.key_file) {
        (Some(key), _) => Some(key.clone()),
        (None, Some(file)) => Some(read_secret(file)?),
        (None, None) => None,
    };
    let key = match key_text {
        Some(text) => key::load_key(Some(text.expose()), None)
            .map_err(|e| anyhow::anyhow!("meter {:?}: {e:#}", meter.name))?
            .map(|(k, _)| k),
        None => None,
    };
    let aad = key::load_aad(
        meter.auth_key.as_ref().map(crate::secret::Secret::expose),
        meter.aad.as_ref().map(crate::secret::Secret::expose),
    )?;
    Ok(DecoderConfig {
        key,
        aad,
        verify_tag: meter.verify_tag,
        reject_replay: meter.reject_replay,
        ..DecoderConfig::default()
    })
}

/// Runs one meter until its (finite) source ends; live sources run until the task is aborted.
///
/// # Errors
/// A bad source or key setting, or a finite source that cannot be read.
pub async fn run(meter: MeterConfig, tx: broadcast::Sender<Event>) -> Result<()> {
    run_with(meter, tx, None, None).await
}

/// [`run`] that also prints every telegram to `console` and stops after `limit` telegrams
/// (`smarty demo`), with the one-line summary on standard error at the end.
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    meter: MeterConfig,
    tx: broadcast::Sender<Event>,
    console: Option<Box<dyn Sink + Send>>,
    limit: Option<u64>,
) -> Result<()> {
    let started = std::time::Instant::now();
    let print_summary = console.is_some();
    let serial = SerialArgs {
        baud: meter.baud,
        serial: meter.serial_format().map_err(anyhow::Error::msg)?,
    };
    let source = source::from_spec(&meter.source, &serial)?;
    let mut decoder = Decoder::new(decoder_config(&meter)?);
    let name: Arc<str> = Arc::from(meter.name.as_str());
    let mut sink = EventSink {
        meter: Arc::clone(&name),
        tx,
        status: MeterStatus {
            meter: name,
            source: source.to_string(),
            connected: false,
            last_telegram: None::<SystemTime>,
            stats: Stats::default(),
            reconnects: 0,
            last_error: None,
        },
        connected_once: false,
        undecrypted_logged: false,
        console,
    };
    sink.publish_status();
    // The configuration keeps interval_s within METER_INTERVAL_S; a day of silence at most
    // should it not.
    let silence = Duration::try_from_secs_f64(meter.interval_s * 3.0)
        .unwrap_or(Duration::from_secs(3 * 86_400));
    pipeline::run_with(
        source.as_ref(),
        &mut decoder,
        &mut sink,
        limit,
        Some(silence),
    )
    .await?;
    sink.status.connected = false;
    sink.publish_status();
    if print_summary {
        eprintln!("{}", pipeline::summary(decoder.stats(), started.elapsed()));
    }
    Ok(())
}
