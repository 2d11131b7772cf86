//! A plain publisher (MQTT 3.1.1, QoS 1) of messages to any topic, each until the broker
//! acknowledged it: what `smarty simulate --mqtt` feeds a broker with (raw frames into NATS's
//! MQTT listener, which speaks MQTT 3.1.1 only).
//!
//! No queue on disk, no last will, no discovery: unlike the output ([`crate::run_reporting`]),
//! the caller holds what it sends. At most `window` messages await their PUBACK; the
//! connection is made again after a loss (after a pause, doubling up to 30 s), and a message
//! whose PUBACK did not come is sent again: it may arrive twice (as QoS 1 allows), never not
//! at all.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, PublishOptions, QoS};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::{Connection, v4_options};
use smarty_model::backoff::Backoff;

/// How long the first connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes at QoS 1 (see the module's documentation).
pub struct Sender {
    client: AsyncClient,
    window: usize,
    /// The messages awaiting their PUBACK: `Err` gives one back to send again.
    acks: JoinSet<Result<(), (String, Bytes)>>,
    driver: JoinHandle<()>,
    sent: u64,
    resent: u64,
}

impl Sender {
    /// Connects over `connection` (a clean session), allowing `window` (at least 1)
    /// unacknowledged messages; returns once the broker accepted the connection.
    ///
    /// # Errors
    /// TLS settings that cannot work, or the broker not accepting the connection within 10 s.
    pub async fn connect(connection: &Connection, window: u16) -> io::Result<Sender> {
        let window = window.max(1);
        let mut options = v4_options(connection).map_err(io::Error::other)?;
        options.set_clean_session(true).set_inflight(window);
        let (client, eventloop) = AsyncClient::builder(options)
            .capacity(usize::from(window) * 2)
            .try_build()
            .map_err(io::Error::other)?;
        let (ready_tx, ready_rx) = oneshot::channel();
        let driver = tokio::spawn(drive(eventloop, ready_tx));
        match tokio::time::timeout(CONNECT_TIMEOUT, ready_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                driver.abort();
                return Err(io::Error::new(io::ErrorKind::ConnectionRefused, e));
            }
            Ok(Err(_)) => {
                driver.abort();
                return Err(io::Error::other("the MQTT connection task ended"));
            }
            Err(_) => {
                driver.abort();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the broker did not accept the connection within 10 s",
                ));
            }
        }
        Ok(Sender {
            client,
            window: usize::from(window),
            acks: JoinSet::new(),
            driver,
            sent: 0,
            resent: 0,
        })
    }

    /// Publishes `payload` on `topic` at QoS 1, waiting first while `window` messages await
    /// their PUBACK.
    ///
    /// # Errors
    /// A topic MQTT forbids, or the connection task gone.
    pub async fn send(&mut self, topic: &str, payload: Bytes) -> io::Result<()> {
        while self.acks.len() >= self.window {
            self.settle_one().await?;
        }
        self.sent += 1;
        self.hand_over(topic.to_owned(), payload).await
    }

    /// Waits until every message sent so far is acknowledged; returns how many were sent
    /// again after a lost connection.
    ///
    /// # Errors
    /// The connection task gone.
    pub async fn flush(&mut self) -> io::Result<u64> {
        while !self.acks.is_empty() {
            self.settle_one().await?;
        }
        Ok(self.resent)
    }

    /// Messages sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Disconnects (after the messages handed over before).
    pub async fn close(mut self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.driver).await;
    }

    async fn hand_over(&mut self, topic: String, payload: Bytes) -> io::Result<()> {
        let notice = self
            .client
            .publish_tracked(
                topic.clone(),
                payload.clone(),
                PublishOptions::new(QoS::AtLeastOnce),
            )
            .await
            .map_err(io::Error::other)?;
        self.acks.spawn(async move {
            match notice.wait_async().await {
                Ok(_) => Ok(()),
                Err(_) => Err((topic, payload)),
            }
        });
        Ok(())
    }

    async fn settle_one(&mut self) -> io::Result<()> {
        match self.acks.join_next().await {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err((topic, payload)))) => {
                self.resent += 1;
                self.hand_over(topic, payload).await
            }
            Some(Err(e)) => Err(io::Error::other(e)),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Drives the event loop: reports the first connection's outcome on `ready`, and connects
/// again after each loss, after a back-off. Ends when the client disconnected.
async fn drive(mut eventloop: EventLoop, ready: oneshot::Sender<Result<(), String>>) {
    let mut ready = Some(ready);
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                backoff.reset();
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Ok(()));
                }
            }
            Ok(_) => {}
            Err(rumqttc::ConnectionError::RequestsDone) => return,
            Err(e) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
                tracing::warn!("MQTT: connection lost ({e}); connecting again");
                tokio::time::sleep(backoff.next_wait()).await;
            }
        }
    }
}
