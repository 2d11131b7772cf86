//! The only module that talks to the MQTT client library: rumqttc (the maintained fork,
//! `rumqttc-v4-next` for MQTT 3.1.1 and `rumqttc-v5-next` for MQTT 5, both named `rumqttc` in
//! their code). The output publishes through [`publisher`] (either protocol); the raw MQTT
//! source subscribes through [`Subscriber`] (MQTT 3.1.1); `smarty simulate --mqtt` publishes
//! through [`Sender`] (MQTT 3.1.1).
//!
//! What both share is here: the connection settings ([`Connection`]), the QoS levels, and the
//! options every connection gets (client id, address, keep-alive, credentials, TLS, packet
//! size).

pub(super) mod publisher;
mod sender;
mod subscriber;

use std::path::PathBuf;

use rumqttc::{QoS, TlsConfiguration};
use rumqttc5 as v5;

use super::endpoint::Endpoint;
use super::tls::{self, TlsError};
use smarty_model::secret::Secret;

pub use sender::Sender;
pub use subscriber::{Received, Subscriber, Subscription};

/// The largest packet sent or received, bytes.
const MAX_PACKET: u32 = 1 << 20;

/// What a client needs to connect, whatever its protocol and role.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The broker.
    pub endpoint: Endpoint,
    /// The client id.
    pub client_id: String,
    /// The user, if the broker wants one.
    pub username: Option<String>,
    /// The user's password.
    pub password: Option<Secret>,
    /// Keep-alive interval, seconds.
    pub keep_alive_s: u16,
    /// For `mqtts://`: trust the authorities in this PEM file instead of the system's.
    pub ca_file: Option<PathBuf>,
}

/// The QoS of level 0, 1 or 2 (a larger level, which [`super::MqttConfig::check`] refuses and
/// no queue holds, is taken as 2). Both protocol versions of rumqttc share the type.
fn qos(level: u8) -> QoS {
    rumqttc::mqttbytes::qos(level.min(2)).unwrap_or(QoS::ExactlyOnce)
}

/// The TLS settings of `connection`, `None` for plain TCP.
fn tls(connection: &Connection) -> Result<Option<TlsConfiguration>, TlsError> {
    if !connection.endpoint.tls {
        return Ok(None);
    }
    let config = tls::client_config(connection.ca_file.as_deref())?;
    Ok(Some(TlsConfiguration::Rustls(config)))
}

/// The user name and password, as rumqttc takes them.
fn credentials(connection: &Connection) -> Option<(String, String)> {
    let user = connection.username.clone()?;
    let password = connection
        .password
        .as_ref()
        .map_or("", Secret::expose)
        .to_owned();
    Some((user, password))
}

/// MQTT 3.1.1 options every connection gets.
fn v4_options(connection: &Connection) -> Result<rumqttc::MqttOptions, TlsError> {
    let endpoint = &connection.endpoint;
    let mut options = rumqttc::MqttOptions::new(
        connection.client_id.clone(),
        (endpoint.host_name(), endpoint.port),
    );
    options
        .set_keep_alive(connection.keep_alive_s)
        .set_max_packet_size(MAX_PACKET as usize, MAX_PACKET as usize);
    if let Some((user, password)) = credentials(connection) {
        options.set_credentials(user, password);
    }
    if let Some(tls) = tls(connection)? {
        options.set_transport(rumqttc::Transport::tls_with_config(tls));
    }
    Ok(options)
}

/// MQTT 5 options every connection gets: those of [`v4_options`].
fn v5_options(connection: &Connection) -> Result<v5::MqttOptions, TlsError> {
    let endpoint = &connection.endpoint;
    let mut options = v5::MqttOptions::new(
        connection.client_id.clone(),
        (endpoint.host_name(), endpoint.port),
    );
    options
        .set_keep_alive(connection.keep_alive_s)
        .set_max_packet_size(Some(MAX_PACKET));
    if let Some((user, password)) = credentials(connection) {
        options.set_credentials(user, password);
    }
    if let Some(tls) = tls(connection)? {
        options.set_transport(v5::Transport::tls_with_config(tls));
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_levels_map_to_rumqttc() {
        assert_eq!(qos(0), QoS::AtMostOnce);
        assert_eq!(qos(1), QoS::AtLeastOnce);
        assert_eq!(qos(2), QoS::ExactlyOnce);
        assert_eq!(qos(7), QoS::ExactlyOnce);
    }
}
