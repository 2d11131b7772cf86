//! Feeding a fleet (`[fleet] url`, `smarty run --publish-raw URL`): every encrypted frame the
//! meters receive, decrypted here or not, goes as it came to a fleet's stream (docs/fleet.md):
//!
//! - `nats://HOST:PORT` (several separated by commas; `tls://` too): natively, on
//!   `smarty.raw.<system title>` with the message id `<system title>:<frame counter>`,
//!   through [`smarty_fleet::publish::Publisher`] (the stream `SMARTY_RAW` created or checked
//!   first; a frame is sent again until JetStream acknowledged it, the server dropping copies);
//! - `mqtt://HOST:PORT` (or `mqtts://`): binary on `smarty/raw/<system title>` at QoS 1 over
//!   MQTT 3.1.1, for NATS's MQTT listener (or any broker a fleet reads).
//!
//! The frames wait in memory (at most `queue_max`, the oldest dropped and counted beyond) while
//! the server is away or not reached yet; the meters are never held back by it. Plain
//! telegrams (meters that do not encrypt) have no system title and are not sent.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{Notify, mpsc};

use smarty_fleet::publish::{Publisher, PublisherConfig};
use smarty_fleet::stream::{self, StreamConfig};
use smarty_model::backoff::Backoff;
use smarty_model::event::MeterEvent;

/// The `[fleet]` section: where `smarty run` publishes the raw frames of its meters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFeedConfig {
    /// `nats://[user:password@]host[:port]` (comma-separated for a cluster; `tls://`), or
    /// `mqtt://[user:password@]host[:port]` / `mqtts://…` for NATS's MQTT listener.
    pub url: String,
    /// With `nats://`: the replicas of the stream when this program creates it (1 to 5;
    /// default 1, 3 in a cluster). An existing stream is left as it is.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// Frames held in memory while the server is away, at most (default 100,000); beyond,
    /// the oldest are dropped and counted.
    #[serde(default = "default_queue_max")]
    pub queue_max: usize,
}

fn default_replicas() -> usize {
    1
}
fn default_queue_max() -> usize {
    100_000
}

/// Where a [`FleetFeedConfig`] sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// NATS servers, natively.
    Nats(String),
    /// An MQTT broker (NATS's MQTT listener).
    Mqtt(String),
}

impl Target {
    /// The target of `url` by its scheme.
    ///
    /// # Errors
    /// A scheme other than `nats`, `tls`, `mqtt`, `mqtts`, or an MQTT address that does not
    /// parse (the address itself is not shown: it may hold a password).
    pub fn parse(url: &str) -> Result<Target, String> {
        let scheme = url
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default();
        match scheme.as_str() {
            "nats" | "tls" => {
                let bad = url.split(',').any(|server| {
                    !server.trim().to_ascii_lowercase().starts_with("nats://")
                        && !server.trim().to_ascii_lowercase().starts_with("tls://")
                });
                if bad {
                    return Err(
                        "every server of a NATS address is nats://HOST[:PORT] or tls://HOST[:PORT]"
                            .to_owned(),
                    );
                }
                Ok(Target::Nats(url.to_owned()))
            }
            "mqtt" | "mqtts" | "tcp" | "ssl" => smarty_mqtt::BrokerUrl::parse(url)
                .map(|_| Target::Mqtt(url.to_owned()))
                .map_err(|e| format!("{e}")),
            _ => Err(
                "expected nats://HOST[:PORT] (natively, with message ids) or mqtt://HOST[:PORT] \
                 (NATS's MQTT listener)"
                    .to_owned(),
            ),
        }
    }
}

impl FleetFeedConfig {
    /// What is wrong with the settings, in words (`[fleet]: …`).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Err(e) = Target::parse(&self.url) {
            out.push(("fleet.url", format!("[fleet]: url: {e}")));
        }
        if !(1..=5).contains(&self.replicas) {
            out.push((
                "fleet.replicas",
                "[fleet]: replicas must be from 1 to 5".to_owned(),
            ));
        }
        if self.queue_max == 0 {
            out.push((
                "fleet.queue_max",
                "[fleet]: queue_max must be at least 1".to_owned(),
            ));
        }
        out
    }

    /// The address for messages, without passwords.
    pub fn shown_url(&self) -> String {
        smarty_fleet::nats::redacted(&self.url)
    }
}

/// One frame to send.
struct Frame {
    system_title: [u8; 8],
    frame_counter: u32,
    bytes: Bytes,
}

/// The frames between the bus and the sender.
#[derive(Default)]
struct Queue {
    frames: VecDeque<Frame>,
    /// The bus closed: send what is left, then stop.
    closed: bool,
    dropped: u64,
}

/// Runs the feed: takes the meters' events from `events` until the bus closes, and sends
/// their frames to `config.url`; ends once every frame taken was acknowledged.
///
/// # Errors
/// Settings that cannot work, or the server refusing the frames for good (no stream takes
/// the subjects, a frame larger than it takes).
pub async fn run(config: FleetFeedConfig, mut events: mpsc::Receiver<MeterEvent>) -> Result<()> {
    let target = Target::parse(&config.url).map_err(|e| anyhow::anyhow!("[fleet]: url: {e}"))?;
    let shown = config.shown_url();
    let queue = Arc::new(Mutex::new(Queue::default()));
    let wake = Arc::new(Notify::new());
    let receiving = {
        let queue = Arc::clone(&queue);
        let wake = Arc::clone(&wake);
        let max = config.queue_max.max(1);
        tokio::spawn(async move {
            let mut plain_logged = false;
            while let Some(event) = events.recv().await {
                let bytes: &[u8] = match &event {
                    MeterEvent::Telegram(t) => &t.frame,
                    MeterEvent::RawFrame { frame, .. } => frame,
                    MeterEvent::Status(_) | MeterEvent::Guard(_) => continue,
                };
                let Ok(frame) = smarty_p1::EncryptedFrame::parse(bytes) else {
                    if !plain_logged {
                        plain_logged = true;
                        tracing::warn!(
                            "fleet: a meter sends plain telegrams; only encrypted frames (with \
                             a system title) go to a fleet"
                        );
                    }
                    continue;
                };
                let frame = Frame {
                    system_title: frame.system_title(),
                    frame_counter: frame.frame_counter(),
                    bytes: Bytes::copy_from_slice(bytes),
                };
                let mut q = queue.lock().expect("fleet queue lock");
                q.frames.push_back(frame);
                if q.frames.len() > max {
                    q.frames.pop_front();
                    q.dropped += 1;
                    if q.dropped.is_power_of_two() {
                        tracing::warn!(
                            dropped = q.dropped,
                            "fleet: {max} frames wait already; the oldest dropped"
                        );
                    }
                }
                drop(q);
                wake.notify_one();
            }
            queue.lock().expect("fleet queue lock").closed = true;
            wake.notify_one();
        })
    };
    let result = match target {
        Target::Nats(url) => send_nats(&url, &shown, config.replicas, &queue, &wake).await,
        Target::Mqtt(url) => send_mqtt(&url, &shown, &queue, &wake).await,
    };
    receiving.abort();
    result
}

/// The next frame to send; `None` once the bus closed and every frame was taken.
async fn next(queue: &Mutex<Queue>, wake: &Notify) -> Option<Frame> {
    loop {
        {
            let mut q = queue.lock().expect("fleet queue lock");
            if let Some(frame) = q.frames.pop_front() {
                return Some(frame);
            }
            if q.closed {
                return None;
            }
        }
        wake.notified().await;
    }
}

/// How long to wait before trying to reach the server again: 1 s doubling to 30 s.
fn backoff() -> Backoff {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(30))
}

async fn send_nats(
    url: &str,
    shown: &str,
    replicas: usize,
    queue: &Mutex<Queue>,
    wake: &Notify,
) -> Result<()> {
    let mut wait = backoff();
    let client = loop {
        match smarty_fleet::nats::connect(url, "smarty run").await {
            Ok(client) => break client,
            Err(e) => {
                tracing::warn!("fleet: {e}; frames wait in memory, trying again");
                tokio::time::sleep(wait.next_wait()).await;
            }
        }
    };
    let mut publisher = Publisher::new(client, PublisherConfig::default());
    let mut stream_config = StreamConfig::default();
    stream_config.replicas = replicas;
    let mut wait = backoff();
    loop {
        match stream::ensure(publisher.context(), &stream_config).await {
            Ok(_) => break,
            // A stream that exists unfit for the fleet, or overlapping subjects: a person must act.
            Err(
                e @ (stream::StreamError::Config(_)
                | stream::StreamError::Subjects { .. }
                | stream::StreamError::Retention { .. }
                | stream::StreamError::Overlap { .. }),
            ) => return Err(e).context(format!("fleet: {shown}")),
            Err(e) => {
                tracing::warn!("fleet: {shown}: {e}; trying again");
                tokio::time::sleep(wait.next_wait()).await;
            }
        }
    }
    tracing::info!(
        "fleet: publishing raw frames to {shown} (stream {}, smarty.raw.<system title>)",
        stream::DEFAULT_NAME
    );
    while let Some(frame) = next(queue, wake).await {
        publisher
            .publish(&frame.system_title, frame.frame_counter, frame.bytes)
            .await
            .with_context(|| format!("fleet: {shown}"))?;
    }
    let report = publisher
        .flush()
        .await
        .with_context(|| format!("fleet: {shown}"))?;
    tracing::info!(
        "fleet: {} frames sent to {shown}: {} stored, {} duplicates, {} sent again",
        report.published,
        report.acknowledged - report.duplicates,
        report.duplicates,
        report.resent
    );
    Ok(())
}

/// MQTT messages awaiting their PUBACK, at most (NATS's MQTT listener takes 1024 per session).
const MQTT_WINDOW: u16 = 256;

async fn send_mqtt(url: &str, shown: &str, queue: &Mutex<Queue>, wake: &Notify) -> Result<()> {
    let broker =
        smarty_mqtt::BrokerUrl::parse(url).map_err(|e| anyhow::anyhow!("[fleet]: url: {e}"))?;
    // A clean session of its own: the host name for the broker's monitoring, a random part so
    // that two gateways on one host never throw each other off.
    let client_id = format!(
        "smarty-raw-{}-{:08x}",
        smarty_mqtt::config::host_label(40).unwrap_or_default(),
        rand::random::<u32>()
    );
    let connection = smarty_mqtt::Connection {
        endpoint: broker.endpoint,
        client_id,
        username: broker.username,
        password: broker.password,
        keep_alive_s: 30,
        ca_file: None,
    };
    let mut wait = backoff();
    let mut sender = loop {
        match smarty_mqtt::Sender::connect(&connection, MQTT_WINDOW).await {
            Ok(sender) => break sender,
            Err(e) => {
                tracing::warn!(
                    "fleet: cannot connect to {shown}: {e}; frames wait in memory, trying again"
                );
                tokio::time::sleep(wait.next_wait()).await;
            }
        }
    };
    tracing::info!("fleet: publishing raw frames to {shown} (smarty/raw/<system title>, QoS 1)");
    while let Some(frame) = next(queue, wake).await {
        let topic = smarty_fleet::subject::mqtt_topic(&frame.system_title);
        sender
            .send(&topic, frame.bytes)
            .await
            .with_context(|| format!("fleet: {shown}"))?;
    }
    let resent = sender
        .flush()
        .await
        .with_context(|| format!("fleet: {shown}"))?;
    tracing::info!(
        "fleet: {} frames sent to {shown}, all acknowledged, {resent} sent again",
        sender.sent()
    );
    sender.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_by_scheme() {
        assert_eq!(
            Target::parse("nats://a:4222,nats://b:4222"),
            Ok(Target::Nats("nats://a:4222,nats://b:4222".into()))
        );
        assert_eq!(
            Target::parse("mqtt://127.0.0.1:1883"),
            Ok(Target::Mqtt("mqtt://127.0.0.1:1883".into()))
        );
        assert!(
            Target::parse("/dev/ttyUSB0")
                .unwrap_err()
                .contains("nats://")
        );
        assert!(Target::parse("http://x").is_err());
        assert!(Target::parse("nats://a,/dev/tty").is_err());
        let config = FleetFeedConfig {
            url: "mqtt://u:hunter2@x:0".into(),
            replicas: 9,
            queue_max: 0,
        };
        let problems = config.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(!format!("{problems:?}").contains("hunter2"));
    }
}
