//! The MQTT client: [`mqttrust`] 1.0, re-exported so that the firmware uses the same one.
//!
//! mqttrust is a `no_std` async client on `embedded-io-async` (any TCP socket: embassy-net's
//! on the chip, tokio's in the host tests) with its own reconnect loop and keep-alive. It
//! speaks MQTT 3.1.1 *or* 5, chosen when it is built (this crate's features `mqtt-v3`, the
//! default, and `mqtt-v5`); [`PROTOCOL`] says which. The settings' protocol must match it:
//! [`ConnectOptions::new`] refuses the other with [`MqttError::ProtocolNotBuilt`].
//!
//! This module turns settings into connect options (client id, credentials, keep-alive, the
//! last will `offline`, retained, on `<prefix>/<meter>/availability`) and [`Publication`]s into
//! publish calls.
//!
//! Buffers: mqttrust's `State<M, TX, RX>` must hold the largest message whole: the `state`
//! JSON of a full Smarty telegram with an M-Bus meter is about 5 KB; [`TX_BUFFER`] leaves
//! room.

use alloc::string::String;

use embassy_sync::blocking_mutex::raw::RawMutex;
pub use mqttrust;
use mqttrust::{Config, LastWill, MqttClient, Publish};

use crate::p1::{Publication, PublishConfig, QoS};
use crate::ring::Ring;
use crate::settings::{MqttProtocol, Settings};

/// The protocol this build speaks.
pub const PROTOCOL: MqttProtocol = if cfg!(feature = "mqtt-v5") {
    MqttProtocol::V5
} else {
    MqttProtocol::V311
};

/// Size of mqttrust's transmit buffer the firmware should give (bytes).
pub const TX_BUFFER: usize = 8192;
/// Size of its receive buffer (bytes): the dongle subscribes to nothing large.
pub const RX_BUFFER: usize = 1024;

/// Keep-alive interval (s).
pub const KEEPALIVE_S: u64 = 30;

/// How long one connection attempt of [`ConnectOptions::config_once`] may take: DNS, TCP,
/// CONNECT and CONNACK.
pub const CONNECT_TIMEOUT: embassy_time::Duration = embassy_time::Duration::from_secs(15);

/// Why the MQTT connection cannot be set up, or a message not sent.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum MqttError {
    /// The settings ask for a protocol this firmware was not built with.
    ProtocolNotBuilt {
        /// What the settings ask for.
        wanted: MqttProtocol,
    },
    /// The client id is longer than the client accepts (64 bytes).
    ClientIdTooLong,
    /// The client failed (connection lost, timeout, message too large for the buffer).
    Client(mqttrust::Error),
}

impl core::fmt::Display for MqttError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MqttError::ProtocolNotBuilt { wanted } => write!(
                f,
                "this firmware speaks MQTT {} only, the settings ask for MQTT {}",
                PROTOCOL.as_str(),
                wanted.as_str()
            ),
            MqttError::ClientIdTooLong => f.write_str("the MQTT client id is longer than 64 bytes"),
            MqttError::Client(e) => write!(f, "MQTT client error: {e:?}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for MqttError {}

impl From<mqttrust::Error> for MqttError {
    fn from(e: mqttrust::Error) -> Self {
        MqttError::Client(e)
    }
}

/// The client's QoS of a publication's.
pub fn qos(q: QoS) -> mqttrust::QoS {
    match q {
        QoS::AtMostOnce => mqttrust::QoS::AtMostOnce,
        QoS::AtLeastOnce => mqttrust::QoS::AtLeastOnce,
    }
}

/// What a connection needs, owned (mqttrust's [`Config`] borrows it).
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The client id (unique per dongle: `smarty-<device name>-<MAC suffix>` say).
    pub client_id: String,
    /// User name; empty for none.
    pub user: String,
    /// Password; empty for none.
    pub password: crate::settings::Secret,
    /// The last will's topic: `<prefix>/<meter>/availability`.
    pub will_topic: String,
}

impl ConnectOptions {
    /// The options of `settings` for the client id `client_id`.
    ///
    /// # Errors
    /// [`MqttError::ProtocolNotBuilt`] when the settings ask for the protocol this build does
    /// not speak; [`MqttError::ClientIdTooLong`].
    pub fn new(settings: &Settings, client_id: &str) -> Result<Self, MqttError> {
        if settings.mqtt.protocol != PROTOCOL {
            return Err(MqttError::ProtocolNotBuilt {
                wanted: settings.mqtt.protocol,
            });
        }
        if client_id.len() > 64 {
            return Err(MqttError::ClientIdTooLong);
        }
        Ok(ConnectOptions {
            client_id: client_id.into(),
            user: settings.mqtt.user.clone(),
            password: settings.mqtt.password.clone(),
            will_topic: settings.publish_config().availability_topic(),
        })
    }

    /// Options without settings: `client_id`, no credentials, the will on `publish`'s
    /// availability topic.
    pub fn anonymous(client_id: &str, publish: &PublishConfig) -> Self {
        ConnectOptions {
            client_id: client_id.into(),
            user: String::new(),
            password: crate::settings::Secret::default(),
            will_topic: publish.availability_topic(),
        }
    }

    /// mqttrust's configuration: client id, keep-alive [`KEEPALIVE_S`], credentials, and the
    /// last will `offline`, retained, QoS 1.
    ///
    /// # Errors
    /// [`MqttError::ClientIdTooLong`].
    pub fn config(&self) -> Result<Config<'_>, MqttError> {
        self.build(None)
    }

    /// [`ConnectOptions::config`] for one connection attempt: `MqttStack::run` returns when
    /// the broker cannot be reached or refuses, instead of retrying with its own back-off (up
    /// to 10 times). The firmware's connection state machine ([`crate::provisioning`]) does
    /// the retrying, so there is one back-off policy and the status says what happens.
    /// (After a connection is lost, mqttrust still tries to reconnect once at once.)
    ///
    /// # Errors
    /// [`MqttError::ClientIdTooLong`].
    pub fn config_once(&self) -> Result<Config<'_>, MqttError> {
        self.build(Some(CONNECT_TIMEOUT))
    }

    fn build(&self, once: Option<embassy_time::Duration>) -> Result<Config<'_>, MqttError> {
        let will = LastWill::builder()
            .topic(&self.will_topic)
            .data(b"offline")
            .qos(mqttrust::QoS::AtLeastOnce)
            .retained(true)
            .build();
        Ok(Config::builder()
            .client_id(
                self.client_id
                    .as_str()
                    .try_into()
                    .map_err(|_| MqttError::ClientIdTooLong)?,
            )
            .keepalive_interval(embassy_time::Duration::from_secs(KEEPALIVE_S))
            .maybe_username((!self.user.is_empty()).then_some(self.user.as_str()))
            .maybe_password(
                (!self.password.is_empty()).then_some(self.password.expose().as_bytes()),
            )
            .last_will(will)
            .maybe_connect_timeout(once)
            .maybe_backoff_algo(once.map(|_| give_up as fn(u8) -> Option<embassy_time::Duration>))
            .build())
    }
}

/// The back-off of [`ConnectOptions::config_once`]: no second attempt.
fn give_up(_attempt: u8) -> Option<embassy_time::Duration> {
    None
}

/// Publishes `p` (waits for the connection; at QoS 1 for the broker's acknowledgement).
///
/// # Errors
/// [`MqttError::Client`] when the client gives up (it retries for about 100 s).
pub async fn publish<M: RawMutex>(
    client: &MqttClient<'_, M>,
    p: &Publication,
) -> Result<(), MqttError> {
    client
        .publish(
            Publish::builder()
                .topic_name(p.topic.as_str())
                .payload(p.payload.as_slice())
                .qos(qos(p.qos))
                .retain(p.retain)
                .build(),
        )
        .await?;
    Ok(())
}

/// Publishes the queued publications, oldest first, removing each once sent; stops at the
/// first failure (that one stays queued). Returns how many were sent.
///
/// # Errors
/// The first failure's [`MqttError`].
pub async fn flush<M: RawMutex>(
    client: &MqttClient<'_, M>,
    ring: &mut Ring,
) -> Result<usize, MqttError> {
    let mut sent = 0;
    while let Some(p) = ring.front() {
        publish(client, p).await?;
        ring.pop();
        sent += 1;
    }
    Ok(sent)
}
