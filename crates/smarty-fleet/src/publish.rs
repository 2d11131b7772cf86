//! Publishing raw frames into the stream: each frame on its meter's subject
//! ([`subject::raw`]) with the header `Nats-Msg-Id: <system title>:<frame counter>`
//! ([`subject::message_id`]), many at a time, each until JetStream acknowledged it.
//!
//! [`Publisher::publish`] hands a frame to the client in call order and returns at once while
//! fewer than [`PublisherConfig::max_in_flight`] frames await their acknowledgement
//! (JetStream's `PubAck`); beyond that it waits for the oldest outcomes first. A frame whose
//! acknowledgement does not come (the connection went, the server restarts, a cluster elects
//! a leader) is sent again under the same message id after a pause, until it is
//! acknowledged: the server drops a copy it already stored (within the stream's duplicate
//! window) and acknowledges it as a duplicate, which counts as delivered. So every frame is
//! stored once, and resends can only reorder the frames of a meter whose first copy was lost.
//! The client reconnects on its own ([`crate::nats::connect`]).
//!
//! Only two things end publishing with an error: a frame larger than the server takes, and no
//! stream for the subjects ([`PublishError::NoStream`], after a few tries: create it with
//! [`crate::stream::ensure`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use bytes::Bytes;
use tokio::task::JoinSet;

use crate::subject;

/// How a [`Publisher`] works.
///
/// # Example
/// ```
/// let mut config = smarty_fleet::publish::PublisherConfig::default();
/// config.max_in_flight = 256;
/// assert_eq!(config.ack_timeout, std::time::Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublisherConfig {
    /// Frames handed to the server and not acknowledged yet, at most (default 1024; at least
    /// 1). One at a time caps a publisher at a few thousand frames a second; a thousand keep
    /// a server busy.
    pub max_in_flight: usize,
    /// How long to wait for a frame's acknowledgement before sending it again (default 10 s).
    pub ack_timeout: Duration,
    /// The longest pause before sending a frame again (default 5 s; the first pause is
    /// 100 ms, doubling).
    pub max_retry_wait: Duration,
    /// Tries of a frame for which the server says no stream exists before
    /// [`PublishError::NoStream`] (default 5).
    pub no_stream_tries: u32,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        PublisherConfig {
            max_in_flight: 1024,
            ack_timeout: Duration::from_secs(10),
            max_retry_wait: Duration::from_secs(5),
            no_stream_tries: 5,
        }
    }
}

/// Why publishing stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// No stream takes the subject (the server has no responders for it).
    #[error(
        "no JetStream stream takes {subject} (tried {tries} times): create the stream first \
         (smarty_fleet::stream::ensure; docs/fleet.md)"
    )]
    NoStream {
        /// The frame's subject.
        subject: String,
        /// How many times it was tried.
        tries: u32,
    },
    /// The frame is larger than the server's `max_payload`.
    #[error("the frame {id} ({bytes} bytes) is larger than the NATS server takes (max_payload)")]
    TooLarge {
        /// Its message id.
        id: String,
        /// Its size.
        bytes: usize,
    },
}

/// What a [`Publisher`] did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Frames handed to [`Publisher::publish`].
    pub published: u64,
    /// Frames acknowledged (stored, or duplicates).
    pub acknowledged: u64,
    /// Of those, acknowledged as duplicates: the stream held them already (a resend, or the
    /// same frame published again).
    pub duplicates: u64,
    /// Sends again after a missing or failed acknowledgement.
    pub resent: u64,
}

/// Publishes raw frames into the stream with acknowledgements (see the module's
/// documentation).
pub struct Publisher {
    context: jetstream::Context,
    config: PublisherConfig,
    in_flight: JoinSet<Result<bool, PublishError>>,
    report: Report,
    resent: Arc<AtomicU64>,
}

impl Publisher {
    /// A publisher over `client` (see [`crate::nats::connect`]).
    pub fn new(client: async_nats::Client, config: PublisherConfig) -> Publisher {
        let config = PublisherConfig {
            max_in_flight: config.max_in_flight.max(1),
            ..config
        };
        let context = jetstream::ContextBuilder::new()
            .timeout(config.ack_timeout)
            // Above the window: this publisher bounds what is in flight itself.
            .max_ack_inflight(config.max_in_flight + 1)
            .backpressure_on_inflight(true)
            .build(client);
        Publisher {
            context,
            config,
            in_flight: JoinSet::new(),
            report: Report::default(),
            resent: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The JetStream context it publishes with (to [`crate::stream::ensure`] the stream).
    pub fn context(&self) -> &jetstream::Context {
        &self.context
    }

    /// Publishes `frame` of the meter `system_title` with its `frame_counter` (the message id):
    /// hands it to the client now, and waits only while
    /// [`PublisherConfig::max_in_flight`] frames await their acknowledgement.
    ///
    /// # Errors
    /// A frame that failed for good (this one or an earlier one): see [`PublishError`].
    pub async fn publish(
        &mut self,
        system_title: &[u8; 8],
        frame_counter: u32,
        frame: Bytes,
    ) -> Result<(), PublishError> {
        while self.in_flight.len() >= self.config.max_in_flight {
            self.settle_one().await?;
        }
        // Settle what is done already without waiting, so that a failure shows early.
        while let Some(done) = self.in_flight.try_join_next() {
            self.settled(done)?;
        }
        let subject = subject::raw(system_title);
        let id = subject::message_id(system_title, frame_counter);
        // The first send here, in call order (the frames of a meter leave in order); the wait
        // for the acknowledgement, and any resends, in a task of their own.
        let first = self
            .context
            .send_publish(subject.clone(), message(&frame, &id))
            .await;
        let frame = Frame { subject, id, frame };
        let task = deliver(
            self.context.clone(),
            self.config.clone(),
            frame,
            first,
            Arc::clone(&self.resent),
        );
        self.in_flight.spawn(task);
        self.report.published += 1;
        Ok(())
    }

    /// Waits until every frame published so far is acknowledged.
    ///
    /// # Errors
    /// A frame that failed for good: see [`PublishError`].
    pub async fn flush(&mut self) -> Result<Report, PublishError> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(self.report())
    }

    /// What it did so far.
    pub fn report(&self) -> Report {
        Report {
            resent: self.resent.load(Ordering::Relaxed),
            ..self.report
        }
    }

    /// Frames handed over and not acknowledged yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    async fn settle_one(&mut self) -> Result<(), PublishError> {
        match self.in_flight.join_next().await {
            Some(done) => self.settled(done),
            None => Ok(()),
        }
    }

    fn settled(
        &mut self,
        done: Result<Result<bool, PublishError>, tokio::task::JoinError>,
    ) -> Result<(), PublishError> {
        match done {
            Ok(Ok(duplicate)) => {
                self.report.acknowledged += 1;
                if duplicate {
                    self.report.duplicates += 1;
                }
                Ok(())
            }
            Ok(Err(e)) => {
                self.in_flight.abort_all();
                Err(e)
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a delivery task was cancelled: {e}"),
        }
    }
}

/// One frame on its way.
struct Frame {
    subject: String,
    id: String,
    frame: Bytes,
}

/// The JetStream message of a frame: its payload and message id.
fn message(frame: &Bytes, id: &str) -> jetstream::message::PublishMessage {
    jetstream::message::PublishMessage::build()
        .payload(frame.clone())
        .message_id(id)
}

/// Waits for the acknowledgement of `frame` sent first as `first`, sending it again after
/// each failure; `Ok(duplicate)` once acknowledged.
async fn deliver(
    context: jetstream::Context,
    config: PublisherConfig,
    frame: Frame,
    first: Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError>,
    resent: Arc<AtomicU64>,
) -> Result<bool, PublishError> {
    let mut sent = first;
    let mut wait = Duration::from_millis(100);
    let mut no_stream = 0u32;
    let mut failures = 0u64;
    loop {
        let result = match sent {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        let error = match result {
            Ok(ack) => return Ok(ack.duplicate),
            Err(e) => e,
        };
        match error.kind() {
            PublishErrorKind::MaxPayloadExceeded => {
                return Err(PublishError::TooLarge {
                    id: frame.id,
                    bytes: frame.frame.len(),
                });
            }
            PublishErrorKind::StreamNotFound => {
                no_stream += 1;
                if no_stream >= config.no_stream_tries {
                    return Err(PublishError::NoStream {
                        subject: frame.subject,
                        tries: no_stream,
                    });
                }
            }
            _ => {}
        }
        failures += 1;
        // The first failure of a frame, then every tenth: a long outage does not flood the log.
        if failures == 1 || failures.is_multiple_of(10) {
            tracing::debug!(id = %frame.id, failures, "NATS: frame not acknowledged ({error}); sending it again");
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(config.max_retry_wait);
        resent.fetch_add(1, Ordering::Relaxed);
        sent = context
            .send_publish(frame.subject.clone(), message(&frame.frame, &frame.id))
            .await;
    }
}
