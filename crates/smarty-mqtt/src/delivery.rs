//! The MQTT output's delivery: every message goes through a [`Queue`] and leaves it only when
//! the broker acknowledged it (QoS 1: PUBACK, QoS 2: PUBCOMP) or, at QoS 0, when it was
//! written to the connection.
//!
//! At most [`WINDOW`] messages are handed to the client at a time (never blocking); each comes
//! with a notice of what became of it, and the output settles each message by its own notice
//! ([`InFlight`]), whatever order the notices come in: acknowledgements out of order mark
//! messages done where they are, and the queue's front leaves once it is done. When the
//! connection drops, the client's own copies are given up and everything not acknowledged is
//! sent again, in queue order, after the reconnect: a message may arrive twice (as QoS 1
//! allows) but never out of order and never not at all, unless the queue overflows
//! (`queue_max`; the oldest are dropped and counted). With a queue directory the queue is
//! also on disk (see [`Queue`]: a full disk is reported and retried, never silently given up).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::client::publisher::{self, Loop, MqttClient, NotTaken, Note, Outcome};
use super::config::MqttConfig;
use super::discovery::{device_key, discovery_message, guard_discovery_messages};
use super::topics;
use crate::error::MqttError;
use smarty_model::backoff::Backoff;
use smarty_model::event::{GuardEvent, MeterEvent, MeterStatus, TelegramEvent};
use smarty_model::live::{OutputHealth, QueueReport};
use smarty_store::queue::{Publication, Queue};

/// Messages handed to the client and not yet acknowledged, at most.
pub const WINDOW: usize = 64;
/// The first wait before connecting again; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// The longest wait between connection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the event-loop task tells the output.
enum Notice {
    Event(Note),
    /// The connection failed or dropped; the output answers once it stopped handing messages
    /// to the client, so that nothing stale is left in the client's channel on reconnect.
    Down(String, oneshot::Sender<()>),
}

/// The queued messages handed to the client whose outcome is not known yet, and where
/// handing messages over resumes.
///
/// Each outcome settles its own message by its queue sequence number, whatever order the
/// outcomes come in: a delivered message is marked done where it is in the queue (the queue's
/// front leaves once it is done), a lost one is handed over again. After the connection went,
/// everything is forgotten and handing over starts again at the queue's front.
#[derive(Debug, Default)]
struct InFlight {
    /// Sequence numbers handed over on this connection, outcome unknown.
    seqs: HashSet<u64>,
    /// Where to look for the next message to hand over.
    next: u64,
}

impl InFlight {
    /// Forgets what was handed over: everything not acknowledged goes again, from the queue's
    /// front.
    fn reset(&mut self, queue: &Queue) {
        self.seqs.clear();
        self.next = queue.first_seq();
    }

    /// The next queued message to hand over, in queue order: not delivered, not in flight.
    fn next_to_send(&mut self, queue: &Queue) -> Option<u64> {
        let mut seq = self.next.max(queue.first_seq());
        let found = loop {
            match queue.get(seq) {
                None => break None,
                Some((_, done)) if done || self.seqs.contains(&seq) => seq += 1,
                Some(_) => break Some(seq),
            }
        };
        self.next = seq;
        found
    }

    /// Message `seq` was handed over.
    fn sent(&mut self, seq: u64) {
        self.seqs.insert(seq);
        self.next = self.next.max(seq + 1);
    }

    /// Settles message `seq` with its outcome. Returns `false` for an outcome of a message
    /// not in flight (settled already, or sent on a connection that went): ignored.
    fn settle(&mut self, queue: &mut Queue, seq: u64, outcome: &Outcome) -> bool {
        if !self.seqs.remove(&seq) {
            return false;
        }
        match outcome {
            Outcome::Delivered | Outcome::Refused(_) => queue.ack(seq),
            // Handed over again, in order, once the client takes messages again.
            Outcome::Lost(_) => self.next = self.next.min(seq),
        }
        true
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Drives the client's event loop: forwards its events, and after each failure waits for the
/// output's go-ahead, gives up the client's copies of unacknowledged messages (the output
/// resends from its queue) and reconnects after a back-off.
async fn drive(mut eventloop: Loop, notices: mpsc::Sender<Notice>) {
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        match eventloop.poll().await {
            Ok(note) => {
                if matches!(note, Note::ConnAck) {
                    backoff.reset();
                }
                if notices.send(Notice::Event(note)).await.is_err() {
                    return;
                }
            }
            Err((error, done)) => {
                let (tx, rx) = oneshot::channel();
                if notices.send(Notice::Down(error, tx)).await.is_err() {
                    return;
                }
                let _ = rx.await;
                eventloop.discard_pending();
                if done {
                    return;
                }
                tokio::time::sleep(backoff.next_wait()).await;
            }
        }
    }
}

/// What we know of one meter.
#[derive(Default)]
struct MeterState {
    /// The last telegram, to re-announce discovery.
    last: Option<Arc<TelegramEvent>>,
    /// The device key discovery was announced under.
    key: String,
    /// Values announced under `key`.
    announced: HashSet<String>,
    /// A guard event came: the guard's entities belong to the device.
    guarded: bool,
    /// The guard's entities are announced under `key`.
    guard_announced: bool,
    /// The availability last published.
    available: Option<bool>,
}

/// The MQTT output task's state.
struct Output {
    /// Where the queue's state is reported (the metrics' `smarty_mqtt_queue_depth` and
    /// `/healthz`).
    report: Option<Arc<QueueReport>>,
    /// Where the broker connection's state is reported (`/healthz`).
    health: Option<OutputHealth>,
    config: MqttConfig,
    client: MqttClient,
    queue: Queue,
    meters: HashMap<Arc<str>, MeterState>,
    ha_status_topic: String,
    connected: bool,
    /// A failure to connect was logged since the last state change.
    failure_logged: bool,
    /// The outcomes of messages handed to the client, as they become known: their queue
    /// sequence numbers (`None` for the gateway's own `online`/`offline`) and outcomes.
    outcomes: JoinSet<(Option<u64>, Outcome)>,
    /// The queued messages in flight.
    in_flight: InFlight,
    dropped_logged: u64,
    /// The broker, for logs and `/healthz`.
    url: String,
}

/// Runs the MQTT output until `events` closes (then publishes `offline` and disconnects),
/// storing the queue's state into `report` every second and the broker connection's into
/// `health`.
///
/// Fails only on bad settings; broker outages are waited out, and a queue directory that
/// cannot be written is retried (the queue carries on in memory meanwhile).
///
/// # Errors
/// Bad settings (see [`MqttConfig::check`]), or the client's event loop stopping.
pub async fn run_reporting(
    config: MqttConfig,
    events: mpsc::Receiver<MeterEvent>,
    report: Option<Arc<QueueReport>>,
    health: Option<OutputHealth>,
) -> Result<(), MqttError> {
    let endpoint = config.check()?;
    // One client id for the whole run (a random one without a host name).
    let config = MqttConfig {
        client_id: Some(config.client_id()),
        ..config
    };
    let queue = match &config.queue_dir {
        Some(dir) => Queue::open(dir, config.queue_max),
        None => Queue::in_memory(config.queue_max),
    };
    if !queue.is_empty() {
        tracing::info!(
            messages = queue.len(),
            "MQTT: {} messages queued by a previous run will be sent",
            queue.len()
        );
    }
    let (client, eventloop) = publisher::connect(&config, &endpoint, WINDOW)?;
    let (notice_tx, notice_rx) = mpsc::channel(256);
    let _driver = AbortOnDrop(tokio::spawn(drive(eventloop, notice_tx)));
    let mut output = Output {
        report,
        health,
        ha_status_topic: topics::home_assistant_status(&config),
        url: endpoint.to_string(),
        in_flight: InFlight {
            seqs: HashSet::new(),
            next: queue.first_seq(),
        },
        config,
        client,
        queue,
        meters: HashMap::new(),
        connected: false,
        failure_logged: false,
        outcomes: JoinSet::new(),
        dropped_logged: 0,
    };
    tracing::info!(url = %output.url, client_id = %output.config.client_id(), "MQTT output starting");
    output.report();
    output.run(events, notice_rx).await
}

/// Spawns the output without reporting, on the current runtime.
#[cfg(test)]
pub fn spawn(
    config: MqttConfig,
    events: mpsc::Receiver<MeterEvent>,
) -> JoinHandle<Result<(), MqttError>> {
    tokio::spawn(run_reporting(config, events, None, None))
}

impl Output {
    async fn run(
        &mut self,
        mut events: mpsc::Receiver<MeterEvent>,
        mut notices: mpsc::Receiver<Notice>,
    ) -> Result<(), MqttError> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // A lossless channel (service::bus): the meters wait while it is full.
                event = events.recv() => match event {
                    Some(event) => self.event(event),
                    None => break,
                },
                notice = notices.recv() => match notice {
                    Some(notice) => self.notice(notice),
                    None => return Err(MqttError::EventLoopStopped),
                },
                Some(done) = self.outcomes.join_next() => self.delivered(done),
                _ = tick.tick() => {
                    self.report_drops();
                    self.report();
                }
            }
            self.queue.flush();
            self.pump();
        }
        self.shutdown(&mut notices).await;
        Ok(())
    }

    /// Takes one event of the service.
    fn event(&mut self, event: MeterEvent) {
        match event {
            MeterEvent::Telegram(t) => self.telegram(&t),
            MeterEvent::Status(s) => self.status(&s),
            MeterEvent::RawFrame { meter, frame } => self.raw_frame(&meter, &frame),
            MeterEvent::Guard(g) => self.guard(&g),
        }
    }

    /// Stores the queue's state where `/metrics` and `/healthz` read it.
    fn report(&self) {
        if let Some(report) = &self.report {
            report.set(self.queue.len(), self.queue.write_error());
        }
    }

    /// Sends what is queued (for a few seconds at most), `offline`, and disconnects.
    async fn shutdown(&mut self, notices: &mut mpsc::Receiver<Notice>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while self.connected && !self.queue.is_empty() {
            tokio::select! {
                notice = tokio::time::timeout_at(deadline, notices.recv()) => match notice {
                    Ok(Some(notice)) => self.notice(notice),
                    _ => break,
                },
                Some(done) = self.outcomes.join_next() => self.delivered(done),
            }
            self.queue.flush();
            self.pump();
        }
        if self.connected {
            self.direct(topics::gateway_status(&self.config), "offline");
            // Wait for the acknowledgements: a broker drops a QoS 2 message whose PUBREL did
            // not come before the DISCONNECT.
            while self.connected && !self.outcomes.is_empty() {
                tokio::select! {
                    notice = tokio::time::timeout_at(deadline, notices.recv()) => match notice {
                        Ok(Some(notice)) => self.notice(notice),
                        _ => break,
                    },
                    Some(done) = self.outcomes.join_next() => self.delivered(done),
                }
            }
            self.client.try_disconnect();
            while let Ok(Some(notice)) = tokio::time::timeout_at(deadline, notices.recv()).await {
                let disconnected =
                    matches!(notice, Notice::Event(Note::Disconnect) | Notice::Down(..));
                self.notice(notice);
                if disconnected {
                    break;
                }
            }
        }
        self.queue.flush();
        self.report();
        if self.queue.is_empty() {
            return;
        }
        let waiting = self.queue.len();
        if self.config.queue_dir.is_none() {
            tracing::warn!(
                messages = waiting,
                "MQTT: {waiting} messages not delivered (no mqtt.queue_dir: they are lost)"
            );
            return;
        }
        let kept = self.queue.persisted_len();
        if kept == waiting {
            tracing::info!(
                messages = waiting,
                "MQTT: {waiting} messages not delivered, kept for the next run"
            );
        } else {
            tracing::error!(
                messages = waiting,
                kept,
                lost = waiting - kept,
                "MQTT: {waiting} messages not delivered: {kept} kept for the next run, {} lost \
                 because the queue directory cannot be written ({})",
                waiting - kept,
                self.queue.write_error().unwrap_or("unknown error")
            );
        }
    }

    fn push(&mut self, messages: impl IntoIterator<Item = Publication>) {
        for message in messages {
            self.queue.push(message);
        }
    }

    fn telegram(&mut self, event: &Arc<TelegramEvent>) {
        let meter = self.meters.entry(Arc::clone(&event.meter)).or_default();
        meter.last = Some(Arc::clone(event));
        let mut messages = Vec::new();
        if meter.available != Some(true) {
            meter.available = Some(true);
            messages.push(topics::availability_message(
                &self.config,
                &event.meter,
                true,
            ));
        }
        if self.config.discovery {
            let key = device_key(event);
            if meter.key != key {
                meter.key = key;
                meter.announced.clear();
                meter.guard_announced = false;
            }
            for value in &event.values {
                if !meter.announced.contains(&value.name) {
                    meter.announced.insert(value.name.clone());
                    messages.push(discovery_message(&self.config, event, value));
                }
            }
        }
        messages.extend(topics::telegram_messages(&self.config, event));
        self.push(messages);
    }

    /// Where a meter's quarter hour stands: the guard's topics, after announcing its entities
    /// with the first guard event (under the device of the meter's last telegram; before any
    /// telegram there is no device, and the announcement waits for the next guard event).
    fn guard(&mut self, event: &Arc<GuardEvent>) {
        let meter = self.meters.entry(Arc::clone(&event.meter)).or_default();
        meter.guarded = true;
        let mut messages = Vec::new();
        if self.config.discovery
            && !meter.guard_announced
            && let Some(last) = &meter.last
        {
            // Under `meter.key`: the telegram set it (and forgets the announcement when the
            // key changes).
            meter.guard_announced = true;
            messages.extend(guard_discovery_messages(&self.config, last));
        }
        messages.extend(topics::guard_messages(&self.config, event));
        self.push(messages);
    }

    /// A frame its meter could not decrypt (no key): forwarded on the raw topic when
    /// `publish_raw` is on, for a `smarty` that has the key.
    fn raw_frame(&mut self, meter: &str, frame: &[u8]) {
        if self.config.publish_raw {
            self.push([topics::raw_message(&self.config, meter, frame)]);
        }
    }

    fn status(&mut self, status: &MeterStatus) {
        let meter = self.meters.entry(Arc::clone(&status.meter)).or_default();
        let mut messages = Vec::new();
        if meter.available != Some(status.connected) {
            meter.available = Some(status.connected);
            messages.push(topics::availability_message(
                &self.config,
                &status.meter,
                status.connected,
            ));
        }
        messages.push(topics::status_message(&self.config, status));
        self.push(messages);
    }

    /// Home Assistant (re)started: announce everything again.
    fn rediscover(&mut self) {
        if !self.config.discovery {
            return;
        }
        let mut messages = Vec::new();
        for meter in self.meters.values_mut() {
            let Some(last) = &meter.last else { continue };
            meter.key = device_key(last);
            meter.announced.clear();
            for value in &last.values {
                meter.announced.insert(value.name.clone());
                messages.push(discovery_message(&self.config, last, value));
            }
            meter.guard_announced = meter.guarded;
            if meter.guarded {
                messages.extend(guard_discovery_messages(&self.config, last));
            }
        }
        tracing::info!(
            entities = messages.len(),
            "Home Assistant came online: discovery sent again"
        );
        self.push(messages);
    }

    fn notice(&mut self, notice: Notice) {
        match notice {
            Notice::Event(event) => self.mqtt_event(event),
            Notice::Down(error, ack) => {
                if self.connected {
                    tracing::warn!(
                        url = %self.url,
                        queued = self.queue.len(),
                        "MQTT connection lost ({error}); queueing and reconnecting"
                    );
                    self.failure_logged = true;
                } else if !self.failure_logged {
                    tracing::warn!(
                        url = %self.url,
                        "cannot connect to the MQTT broker ({error}); queueing and retrying"
                    );
                    self.failure_logged = true;
                } else {
                    tracing::debug!(url = %self.url, "MQTT connect failed again: {error}");
                }
                self.connected = false;
                if let Some(health) = &self.health {
                    health.failing(format!(
                        "MQTT broker {} unreachable ({error}); messages are queued",
                        self.url
                    ));
                }
                self.forget_in_flight();
                let _ = ack.send(());
            }
        }
    }

    /// Forgets what was handed to the client: after a reconnect everything not acknowledged
    /// is sent again from the queue, in order.
    fn forget_in_flight(&mut self) {
        self.outcomes.abort_all();
        self.outcomes = JoinSet::new();
        self.in_flight.reset(&self.queue);
    }

    fn mqtt_event(&mut self, note: Note) {
        match note {
            Note::ConnAck => {
                tracing::info!(
                    url = %self.url,
                    queued = self.queue.len(),
                    "connected to the MQTT broker"
                );
                self.connected = true;
                if let Some(health) = &self.health {
                    health.ok();
                }
                self.failure_logged = false;
                self.forget_in_flight();
                self.direct(topics::gateway_status(&self.config), "online");
                // A broker without persistence forgot the retained availability.
                let availability: Vec<(String, &str)> = self
                    .meters
                    .iter()
                    .filter_map(|(name, meter)| {
                        let payload = if meter.available? {
                            "online"
                        } else {
                            "offline"
                        };
                        Some((topics::availability(&self.config, name), payload))
                    })
                    .collect();
                for (topic, payload) in availability {
                    self.direct(topic, payload);
                }
                if self.config.discovery {
                    self.client.try_subscribe(self.ha_status_topic.clone());
                }
            }
            Note::Publish { topic, payload }
                if topic == self.ha_status_topic && payload.trim_ascii() == b"online" =>
            {
                self.rediscover();
            }
            _ => {}
        }
    }

    /// The outcome of a message handed to the client.
    fn delivered(&mut self, done: Result<(Option<u64>, Outcome), tokio::task::JoinError>) {
        // A task only fails when aborted, and aborted tasks were forgotten already.
        let Ok((Some(seq), outcome)) = done else {
            return;
        };
        let topic = matches!(outcome, Outcome::Refused(_))
            .then(|| self.queue.get(seq).map(|(m, _)| m.topic.clone()))
            .flatten();
        if !self.in_flight.settle(&mut self.queue, seq, &outcome) {
            return;
        }
        match outcome {
            Outcome::Delivered => {}
            Outcome::Refused(why) => {
                tracing::warn!(?topic, "the MQTT broker refused a message ({why}); dropped");
            }
            Outcome::Lost(why) => {
                tracing::debug!("MQTT message {seq} not delivered ({why}); sending it again");
            }
        }
    }

    /// Publishes outside the queue (the gateway's own `online`/`offline`).
    fn direct(&mut self, topic: String, payload: &str) {
        let message = Publication {
            topic,
            payload: payload.as_bytes().to_vec(),
            qos: self.config.qos,
            retain: true,
        };
        if let Ok(delivery) = self.client.try_publish(&message) {
            self.outcomes.spawn(async move { (None, delivery.await) });
        }
    }

    /// Hands queued messages to the client, in order, up to the window.
    fn pump(&mut self) {
        if !self.connected {
            return;
        }
        while self.outcomes.len() < WINDOW {
            let Some(seq) = self.in_flight.next_to_send(&self.queue) else {
                break;
            };
            let Some((message, _)) = self.queue.get(seq) else {
                break;
            };
            match self.client.try_publish(message) {
                Ok(delivery) => {
                    self.outcomes
                        .spawn(async move { (Some(seq), delivery.await) });
                    self.in_flight.sent(seq);
                }
                // Go on when the client took some.
                Err(NotTaken::Full) => break,
                Err(NotTaken::Invalid(why)) => {
                    tracing::error!(
                        topic = %message.topic,
                        "an MQTT message the client refuses ({why}); dropped"
                    );
                    self.queue.ack(seq);
                }
            }
        }
    }

    fn report_drops(&mut self) {
        let dropped = self.queue.dropped();
        if dropped > self.dropped_logged {
            tracing::warn!(
                dropped = dropped - self.dropped_logged,
                total = dropped,
                "MQTT queue full (mqtt.queue_max = {}): oldest messages dropped",
                self.config.queue_max
            );
            self.dropped_logged = dropped;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(n: u64) -> Queue {
        let mut queue = Queue::in_memory(100);
        for i in 0..n {
            queue.push(Publication {
                topic: format!("t/{i}"),
                payload: Vec::new(),
                qos: 1,
                retain: false,
            });
        }
        queue
    }

    /// Hands over every message it can; returns their sequence numbers.
    fn send_all(in_flight: &mut InFlight, queue: &Queue) -> Vec<u64> {
        let mut sent = Vec::new();
        while let Some(seq) = in_flight.next_to_send(queue) {
            in_flight.sent(seq);
            sent.push(seq);
        }
        sent
    }

    #[test]
    fn acknowledgements_in_any_order_settle_their_own_messages() {
        let mut queue = queue(5);
        let mut in_flight = InFlight::default();
        assert_eq!(send_all(&mut in_flight, &queue), [0, 1, 2, 3, 4]);
        for (seq, waiting) in [(3, 5), (1, 5), (4, 5), (0, 3), (2, 0)] {
            assert!(in_flight.settle(&mut queue, seq, &Outcome::Delivered));
            assert_eq!(queue.len(), waiting, "after {seq}");
        }
        assert_eq!(in_flight.next_to_send(&queue), None);
        // An outcome settles once.
        assert!(!in_flight.settle(&mut queue, 2, &Outcome::Delivered));
    }

    #[test]
    fn a_lost_message_goes_again_and_nothing_delivered_does() {
        let mut queue = queue(4);
        let mut in_flight = InFlight::default();
        assert_eq!(send_all(&mut in_flight, &queue), [0, 1, 2, 3]);
        assert!(in_flight.settle(&mut queue, 2, &Outcome::Delivered));
        assert!(in_flight.settle(&mut queue, 0, &Outcome::Lost("gone".into())));
        assert!(in_flight.settle(&mut queue, 3, &Outcome::Refused("no".into())));
        // 0 again; 1 is still in flight, 2 and 3 are settled.
        assert_eq!(send_all(&mut in_flight, &queue), [0]);
        assert!(in_flight.settle(&mut queue, 1, &Outcome::Delivered));
        assert!(in_flight.settle(&mut queue, 0, &Outcome::Delivered));
        assert!(queue.is_empty());
    }

    #[test]
    fn after_a_reset_everything_unacknowledged_goes_again_in_order() {
        let mut queue = queue(4);
        let mut in_flight = InFlight::default();
        assert_eq!(send_all(&mut in_flight, &queue), [0, 1, 2, 3]);
        assert!(in_flight.settle(&mut queue, 1, &Outcome::Delivered));
        in_flight.reset(&queue);
        // An outcome from before the reset is ignored.
        assert!(!in_flight.settle(&mut queue, 2, &Outcome::Delivered));
        assert_eq!(queue.len(), 4);
        assert_eq!(send_all(&mut in_flight, &queue), [0, 2, 3]);
        // New messages follow.
        queue.push(Publication {
            topic: "t/4".into(),
            payload: Vec::new(),
            qos: 1,
            retain: false,
        });
        assert_eq!(send_all(&mut in_flight, &queue), [4]);
    }

    #[test]
    fn messages_dropped_by_a_full_queue_are_skipped() {
        let mut queue = Queue::in_memory(2);
        let mut in_flight = InFlight::default();
        let message = |i: u64| Publication {
            topic: format!("t/{i}"),
            payload: Vec::new(),
            qos: 1,
            retain: false,
        };
        queue.push(message(0));
        queue.push(message(1));
        assert_eq!(send_all(&mut in_flight, &queue), [0, 1]);
        queue.push(message(2));
        assert_eq!(queue.first_seq(), 1);
        assert!(in_flight.settle(&mut queue, 0, &Outcome::Delivered));
        assert_eq!(send_all(&mut in_flight, &queue), [2]);
        assert!(in_flight.settle(&mut queue, 2, &Outcome::Delivered));
        assert!(in_flight.settle(&mut queue, 1, &Outcome::Delivered));
        assert!(queue.is_empty());
    }
}
