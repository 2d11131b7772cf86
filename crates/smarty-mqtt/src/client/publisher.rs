//! The output's client, MQTT 3.1.1 or 5: options, publishing with a notice of each message's
//! fate, and the events of the connection, in the same terms for both protocols.

use std::future::Future;
use std::pin::Pin;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, LastWill, Outgoing, PublishOptions,
    QoS,
};
use rumqttc5 as v5;

use super::{Connection, qos, v4_options, v5_options};
use crate::config::{MqttConfig, Protocol};
use crate::endpoint::Endpoint;
use crate::error::MqttError;
use crate::topics;
use smarty_store::queue::Publication;

/// rumqttc's in-flight limit with an MQTT 5 broker (which may ask for fewer in its CONNACK:
/// rumqttc honours its receive maximum).
const INFLIGHT: u16 = 100;
/// rumqttc's in-flight limit with an MQTT 3.1.1 broker, which cannot say how many it takes:
/// Mosquitto's default (`max_inflight_messages 20`). A broker past its limit drops QoS 2
/// messages while acknowledging them (Mosquitto does), so stay within it.
const INFLIGHT_V4: u16 = 20;
/// Room in rumqttc's request channel beyond the publish window, for the few direct requests
/// (the gateway's status, the subscription to Home Assistant's status, the disconnect).
const DIRECT_REQUESTS: usize = 16;

/// The events of the connection (either protocol) the output cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The broker accepted the connection.
    ConnAck,
    /// An incoming message (only Home Assistant's status is subscribed to).
    Publish {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// The DISCONNECT the output asked for went out.
    Disconnect,
    /// Anything else.
    Other,
}

impl From<Event> for Note {
    fn from(event: Event) -> Note {
        match event {
            Event::Incoming(Incoming::ConnAck(_)) => Note::ConnAck,
            Event::Incoming(Incoming::Publish(p)) => Note::Publish {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload.to_vec(),
            },
            Event::Outgoing(Outgoing::Disconnect) => Note::Disconnect,
            _ => Note::Other,
        }
    }
}

impl From<v5::Event> for Note {
    fn from(event: v5::Event) -> Note {
        match event {
            v5::Event::Incoming(v5::Packet::ConnAck(_)) => Note::ConnAck,
            v5::Event::Incoming(v5::Packet::Publish(p)) => Note::Publish {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload.to_vec(),
            },
            v5::Event::Outgoing(v5::Outgoing::Disconnect) => Note::Disconnect,
            _ => Note::Other,
        }
    }
}

/// What became of one message handed to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The broker is done with it (QoS 1: PUBACK; QoS 2: PUBCOMP, or a PUBREC refusing it
    /// for good) or, at QoS 0, it was written to the connection.
    Delivered,
    /// The connection went before that: send it again.
    Lost(String),
    /// The broker will never take it (an MQTT 5 broker without retained messages): give up.
    Refused(String),
}

impl From<Result<rumqttc::PublishResult, rumqttc::PublishNoticeError>> for Outcome {
    fn from(result: Result<rumqttc::PublishResult, rumqttc::PublishNoticeError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Delivered,
            Err(e) => Outcome::Lost(e.to_string()),
        }
    }
}

impl From<Result<v5::PublishResult, v5::PublishNoticeError>> for Outcome {
    fn from(result: Result<v5::PublishResult, v5::PublishNoticeError>) -> Outcome {
        use v5::PublishNoticeError as E;
        match result {
            Ok(_) => Outcome::Delivered,
            Err(
                e @ (E::RetainNotSupported | E::V5PubAck(_) | E::V5PubRec(_) | E::V5PubComp(_)),
            ) => Outcome::Refused(e.to_string()),
            Err(e) => Outcome::Lost(e.to_string()),
        }
    }
}

/// The outcome of a message handed to the client, once it is known.
pub type Delivery = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Why the client did not take a message.
#[derive(Debug)]
pub enum NotTaken {
    /// Its request channel is full: try again once it took some.
    Full,
    /// The message itself is unusable (a topic MQTT forbids).
    Invalid(String),
}

/// The client, MQTT 3.1.1 or 5.
pub enum MqttClient {
    /// MQTT 3.1.1.
    V4(AsyncClient),
    /// MQTT 5.
    V5(v5::AsyncClient),
}

impl MqttClient {
    /// Hands a publish to the client without waiting; returns what becomes of it.
    pub fn try_publish(&self, message: &Publication) -> Result<Delivery, NotTaken> {
        let topic = message.topic.clone();
        let payload = message.payload.clone();
        let qos = qos(message.qos);
        match self {
            MqttClient::V4(c) => {
                let options = PublishOptions::new(qos).retain(message.retain);
                match c.try_publish_tracked(topic, payload, options) {
                    Ok(notice) => Ok(Box::pin(async move { notice.wait_async().await.into() })),
                    Err(rumqttc::ClientError::RequestChannelFull(_)) => Err(NotTaken::Full),
                    Err(e) => Err(NotTaken::Invalid(e.to_string())),
                }
            }
            MqttClient::V5(c) => {
                let options = v5::PublishOptions::new(qos).retain(message.retain);
                match c.try_publish_tracked(topic, payload, options) {
                    Ok(notice) => Ok(Box::pin(async move { notice.wait_async().await.into() })),
                    Err(v5::ClientError::RequestChannelFull(_)) => Err(NotTaken::Full),
                    Err(e) => Err(NotTaken::Invalid(e.to_string())),
                }
            }
        }
    }

    /// Subscribes to `topic` at QoS 1, without waiting (a full channel skips it).
    pub fn try_subscribe(&self, topic: String) {
        let _ = match self {
            MqttClient::V4(c) => c.try_subscribe(topic, QoS::AtLeastOnce).is_ok(),
            MqttClient::V5(c) => c.try_subscribe(topic, QoS::AtLeastOnce).is_ok(),
        };
    }

    /// Asks for a DISCONNECT, without waiting.
    pub fn try_disconnect(&self) {
        let _ = match self {
            MqttClient::V4(c) => c.try_disconnect().is_ok(),
            MqttClient::V5(c) => c.try_disconnect().is_ok(),
        };
    }
}

/// The client's event loop, MQTT 3.1.1 or 5.
pub enum Loop {
    /// MQTT 3.1.1.
    V4(Box<EventLoop>),
    /// MQTT 5.
    V5(Box<v5::EventLoop>),
}

impl Loop {
    /// The next event, or the error and whether the client is gone.
    pub async fn poll(&mut self) -> Result<Note, (String, bool)> {
        match self {
            Loop::V4(l) => l.poll().await.map(Note::from).map_err(|e| {
                let done = matches!(e, ConnectionError::RequestsDone);
                (e.to_string(), done)
            }),
            Loop::V5(l) => l.poll().await.map(Note::from).map_err(|e| {
                let done = matches!(e, v5::ConnectionError::RequestsDone);
                (e.to_string(), done)
            }),
        }
    }

    /// Gives up every request the client still holds from before the connection dropped (the
    /// output sends them again from its queue, in order): its copies of unacknowledged
    /// messages and what was handed to it since (its request channel is drained too) fail
    /// with "session reset".
    pub fn discard_pending(&mut self) {
        match self {
            Loop::V4(l) => {
                l.clean();
                l.drain_pending_as_failed(rumqttc::NoticeFailureReason::SessionReset);
            }
            Loop::V5(l) => {
                l.clean();
                l.drain_pending_as_failed(v5::NoticeFailureReason::SessionReset);
            }
        }
    }
}

/// The client and event loop of the output configured by `config`, handing at most `window`
/// publishes to the client at a time: a clean session, the last will `offline` on
/// `<prefix>/status` (retained).
///
/// # Errors
/// TLS settings that cannot work, or rumqttc refusing the options.
pub fn connect(
    config: &MqttConfig,
    endpoint: &Endpoint,
    window: usize,
) -> Result<(MqttClient, Loop), MqttError> {
    let connection = Connection {
        endpoint: endpoint.clone(),
        client_id: config.client_id(),
        username: config.username.clone(),
        password: config.password.clone(),
        keep_alive_s: config.keep_alive_s(),
        ca_file: config.ca_file.clone(),
    };
    let will = topics::gateway_status(config);
    let will_qos = qos(config.qos);
    let capacity = window + DIRECT_REQUESTS;
    Ok(match config.protocol {
        Protocol::V4 => {
            let mut options = v4_options(&connection)?;
            options
                .set_clean_session(true)
                .set_inflight(INFLIGHT_V4)
                .set_max_request_batch(window)
                .set_last_will(LastWill::new(will, "offline", will_qos, true));
            let (client, eventloop) = AsyncClient::builder(options)
                .capacity(capacity)
                .try_build()
                .map_err(|e| MqttError::Options(e.to_string()))?;
            (MqttClient::V4(client), Loop::V4(Box::new(eventloop)))
        }
        Protocol::V5 => {
            let mut options = v5_options(&connection)?;
            options
                .set_clean_start(true)
                .set_outgoing_inflight_upper_limit(INFLIGHT)
                .set_max_request_batch(window)
                .set_last_will(v5::LastWill::new(will, "offline", will_qos, true, None));
            let (client, eventloop) = v5::AsyncClient::builder(options)
                .capacity(capacity)
                .try_build()
                .map_err(|e| MqttError::Options(e.to_string()))?;
            (MqttClient::V5(client), Loop::V5(Box::new(eventloop)))
        }
    })
}
