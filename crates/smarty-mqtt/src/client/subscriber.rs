//! The raw MQTT source's client: a subscription at QoS 1 in a persistent session (clean
//! session off), each message acknowledged (PUBACK) only once the reader is done with it.
//!
//! The connection task never waits for the reader, so acknowledgements and keep-alive pings
//! always flow; the broker's in-flight window (Mosquitto: 20) bounds what is received and not
//! read yet, so a backlog of thousands of messages on reconnect flows through at the reader's
//! pace. What was not read when the connection or `smarty` went is not acknowledged, so the
//! broker sends it again.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::mqttbytes::v4::SubscribeReasonCode;
use rumqttc::{AckMode, AsyncClient, Event, EventLoop, Incoming, ManualAck, Outgoing, QoS};
use tokio::io::AsyncReadExt as _;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::Stream;

use super::{Connection, v4_options};

/// How long connecting and subscribing may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing the connection waits for the broker to close its end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// QoS 0 messages (which the broker sends without flow control) waiting for the reader, at
/// most.
const MAX_PENDING_QOS0: usize = 10_000;

/// Subscribes to one topic filter, again after each lost connection, one connection at a
/// time (a new one under the same client id would throw the old one off while it still sends
/// its last acknowledgements).
#[derive(Debug)]
pub struct Subscriber {
    connection: Connection,
    topic: String,
    /// The task of the last connection, to wait for its end before the next.
    last: Mutex<Option<JoinHandle<()>>>,
}

impl Subscriber {
    /// A subscriber to `topic` (a filter: `+` and `#` allowed) over `connection`, whose client
    /// id names the persistent session.
    pub fn new(connection: Connection, topic: String) -> Subscriber {
        Subscriber {
            connection,
            topic,
            last: Mutex::new(None),
        }
    }

    /// How it connects.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The topic filter it subscribes to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Connects and subscribes (unless the broker kept the session, subscription included).
    ///
    /// # Errors
    /// The broker cannot be reached or refuses the connection or the subscription, TLS
    /// settings that cannot work, or no answer within 10 s.
    pub async fn subscribe(&self) -> io::Result<Subscription> {
        let previous = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(previous) = previous {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, previous).await;
        }
        let mut options = v4_options(&self.connection).map_err(io::Error::other)?;
        options
            .set_clean_session(false)
            // A message is acknowledged once read, not on arrival: what was not read when the
            // connection or `smarty` goes comes again.
            .set_ack_mode(AckMode::Manual);
        let socket = SocketSlot::default();
        let slot = Arc::clone(&socket);
        options.set_socket_connector(move |host, network_options| {
            let slot = Arc::clone(&slot);
            async move {
                let stream = rumqttc::default_socket_connect(host, network_options)
                    .await?
                    .into_std()?;
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(stream.try_clone()?);
                tokio::net::TcpStream::from_std(stream)
            }
        });
        // Unbounded: the acknowledgements go through it, and must never wait (their number is
        // bounded by the broker's in-flight window).
        let (client, eventloop) = AsyncClient::builder(options)
            .unbounded()
            .try_build()
            .map_err(io::Error::other)?;
        let (messages_tx, messages) = mpsc::unbounded_channel();
        let (error_tx, error) = oneshot::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let link = Link {
            client: client.clone(),
            topic: self.topic.clone(),
            messages: messages_tx,
            error: Some(error_tx),
            ready: Some(ready_tx),
            pending: Arc::clone(&pending),
            dropped_qos0: 0,
            socket,
        };
        let task = tokio::spawn(link.drive(eventloop));
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        let subscription = Subscription {
            client,
            messages,
            error,
            ended: false,
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(subscription),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(io::Error::other("the MQTT connection task ended")),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connecting and subscribing timed out",
            )),
        }
    }
}

/// One message of a [`Subscription`]. [`Received::acknowledge`] tells the broker it was read;
/// dropped without that, the broker sends it again on the next connection.
#[derive(Debug)]
pub struct Received {
    payload: Bytes,
    /// The acknowledgement to send (`None` at QoS 0), and the client to send it with.
    ack: Option<(AsyncClient, ManualAck)>,
    /// Messages handed to the reader and not done with yet.
    pending: Arc<AtomicUsize>,
}

impl Received {
    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Acknowledges the message (a no-op at QoS 0).
    pub fn acknowledge(mut self) {
        if let Some((client, ack)) = self.ack.take() {
            // The request channel is unbounded: this fails only once the connection task is
            // gone, and then the broker sends the message again.
            let _ = client.try_manual_ack(ack);
        }
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The messages of one connection, in order. It ends with an error as soon as the connection
/// is lost (the messages not read yet come again). Dropping it disconnects, after the
/// acknowledgements sent before.
#[derive(Debug)]
pub struct Subscription {
    client: AsyncClient,
    messages: mpsc::UnboundedReceiver<Received>,
    /// The error the connection ended with.
    error: oneshot::Receiver<io::Error>,
    /// The error was returned: the stream is over.
    ended: bool,
}

impl Drop for Subscription {
    /// Disconnects, after the acknowledgements queued before (one channel, in order), so
    /// that the broker does not send again what was read.
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}

impl Stream for Subscription {
    type Item = io::Result<Received>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        // A lost connection ends the stream at once: unread messages come again.
        if let Poll::Ready(result) = Pin::new(&mut this.error).poll(cx) {
            this.ended = true;
            return Poll::Ready(Some(Err(result.unwrap_or_else(|_| ended()))));
        }
        match ready!(this.messages.poll_recv(cx)) {
            Some(received) => Poll::Ready(Some(Ok(received))),
            // The connection task is gone without a word: treat it as a lost connection.
            None => {
                this.ended = true;
                Poll::Ready(Some(Err(ended())))
            }
        }
    }
}

fn ended() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the MQTT connection ended",
    )
}

/// The connection task's ends of the channels to the reader.
struct Link {
    client: AsyncClient,
    topic: String,
    messages: mpsc::UnboundedSender<Received>,
    /// The error the connection ended with, for the reader.
    error: Option<oneshot::Sender<io::Error>>,
    /// Told once subscribed (or why not).
    ready: Option<oneshot::Sender<io::Result<()>>>,
    /// Messages sent to the reader and not done with yet.
    pending: Arc<AtomicUsize>,
    /// QoS 0 messages dropped because the reader fell behind, since the last warning.
    dropped_qos0: u64,
    /// A second handle on the connection's socket, to close it cleanly.
    socket: SocketSlot,
}

/// A second handle on a connection's TCP socket (a duplicated descriptor), set by the socket
/// connector.
type SocketSlot = Arc<Mutex<Option<std::net::TcpStream>>>;

/// Closes a connection whose DISCONNECT went out, without losing what was sent before it.
///
/// Closing a socket that still holds unread data resets the connection, and a reset makes the
/// broker throw away what it did not read yet: the last acknowledgements, and the DISCONNECT.
/// So: the descriptor rumqttc held is closed already; through the second one, signal the end
/// of what we send (the broker reads all of it first), and read until the broker closed its
/// end (for [`CLOSE_TIMEOUT`] at most).
async fn close_cleanly(socket: &SocketSlot) {
    let Some(socket) = socket.lock().unwrap_or_else(PoisonError::into_inner).take() else {
        return;
    };
    if socket.shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let Ok(mut socket) = tokio::net::TcpStream::from_std(socket) else {
        return;
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        let mut sink = [0u8; 4096];
        while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

impl Link {
    /// Drives the connection: subscribes after the CONNACK (unless the broker kept the
    /// session, subscription included), reports readiness, and forwards every message. Ends
    /// with the first error, or once the DISCONNECT the reader asks for when dropped (after
    /// its last acknowledgements) went out.
    ///
    /// `poll` is never cancelled: a request it took from the channel would be lost.
    async fn drive(mut self, mut eventloop: EventLoop) {
        loop {
            let error = match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    if ack.session_present {
                        self.set_ready();
                        continue;
                    }
                    match self
                        .client
                        .try_subscribe(self.topic.clone(), QoS::AtLeastOnce)
                    {
                        Ok(()) => continue,
                        Err(e) => {
                            io::Error::other(format!("cannot subscribe to {}: {e}", self.topic))
                        }
                    }
                }
                Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, SubscribeReasonCode::Failure))
                    {
                        io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            format!("the broker refused the subscription to {}", self.topic),
                        )
                    } else {
                        self.set_ready();
                        continue;
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    self.forward(&p);
                    continue;
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    drop(eventloop);
                    close_cleanly(&self.socket).await;
                    return;
                }
                Ok(_) => continue,
                Err(e) => io::Error::other(format!("MQTT: {e}")),
            };
            // Before readiness, `subscribe` fails; after it, the subscription ends with the
            // error (the messages it did not read were not acknowledged: the broker sends them
            // again).
            if let Some(ready) = self.ready.take() {
                let _ = ready.send(Err(error));
            } else if let Some(tx) = self.error.take() {
                let _ = tx.send(error);
            }
            return;
        }
    }

    fn set_ready(&mut self) {
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ok(()));
        }
    }

    /// Hands a message to the reader. QoS 0 messages (a publisher that sends at QoS 0) have
    /// no flow control: past [`MAX_PENDING_QOS0`] unread ones they are dropped and counted.
    fn forward(&mut self, publish: &rumqttc::Publish) {
        let ack = self.client.prepare_ack(publish);
        if ack.is_none() && self.pending.load(Ordering::Relaxed) >= MAX_PENDING_QOS0 {
            if self.dropped_qos0 == 0 {
                tracing::warn!(
                    topic = %self.topic,
                    "MQTT source: the reader fell {MAX_PENDING_QOS0} frames behind; dropping QoS 0 \
                     frames until it catches up (publish at QoS 1 to lose none)"
                );
            }
            self.dropped_qos0 += 1;
            return;
        }
        if self.dropped_qos0 > 0 {
            tracing::warn!(
                topic = %self.topic,
                dropped = self.dropped_qos0,
                "MQTT source: {} QoS 0 frames were dropped while the reader was behind",
                self.dropped_qos0
            );
            self.dropped_qos0 = 0;
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        let received = Received {
            payload: publish.payload.clone(),
            ack: ack.map(|ack| (self.client.clone(), ack)),
            pending: Arc::clone(&self.pending),
        };
        // The reader is gone: its `Subscription`'s drop ends this task.
        let _ = self.messages.send(received);
    }
}
