//! Why the MQTT output stops: [`MqttError`].

use crate::config::ConfigError;
use crate::tls::TlsError;

/// Why the MQTT output cannot run. Broker outages are not errors: the output waits them out
/// (and says so on `/healthz`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MqttError {
    /// Settings that cannot work ([`MqttConfig::check`](crate::MqttConfig::check)).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS settings that cannot work: no system authorities, an unreadable `ca_file`.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The client library refused the connection options (its message).
    #[error("{0}")]
    Options(String),
    /// The client library's event loop stopped.
    #[error("the MQTT event loop stopped")]
    EventLoopStopped,
}
