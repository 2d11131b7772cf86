//! `smarty-mqtt`: the MQTT output of the smarty gateway, telegrams and meter states to an MQTT
//! broker, with Home Assistant discovery, and a queue (on disk if configured) so that nothing
//! is lost while the broker is down. Also the client side of the raw MQTT source
//! ([`Subscriber`]), and a plain QoS 1 publisher for the fleet simulator ([`Sender`]). The only crate of the workspace that uses the MQTT client library.
//!
//! One file per concern:
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the `[mqtt]` section ([`MqttConfig`]) and its check |
//! | [`endpoint`] | broker addresses (`mqtt[s]://[user[:password]@]host[:port]`), parsed by the `url` crate |
//! | [`tls`] | the rustls client configuration: the system's authorities or `ca_file` |
//! | [`topics`] | the topic layout, and the state, value, raw, status and reference-power guard messages |
//! | [`discovery`] | Home Assistant discovery: units, names, classes, device blocks, messages (the values', the guard's) |
//! | `client` | the only module that talks to the MQTT client library (rumqttc): the output's publisher (MQTT 3.1.1 and 5), the raw source's [`Subscriber`] and the simulator's [`Sender`] |
//! | `delivery` | the output task: queueing, the publish window, reconnects, shutdown |
//! | [`error`] | [`MqttError`]: why the output stops |
//! | `test_broker` | (feature `test-broker`, and this crate's tests) a real Mosquitto and plain clients for tests |
//!
//! The queue is [`smarty_store::queue`] (an SQLite file is the store crate's business). The
//! output depends otherwise only on the model: the events of [`smarty_model::event`], the
//! reporting handles of [`smarty_model::live`]
//! ([`OutputHealth`](smarty_model::live::OutputHealth),
//! [`QueueReport`](smarty_model::live::QueueReport)), [`smarty_model::secret::Secret`] and the
//! back-off of [`smarty_model::backoff`].

mod client;
pub mod config;
mod delivery;
pub mod discovery;
pub mod endpoint;
pub mod error;
pub mod tls;
pub mod topics;

pub use client::{Connection, Received, Sender, Subscriber, Subscription};
pub use config::{MqttConfig, Protocol};
pub use delivery::run_reporting;
#[cfg(test)]
pub use delivery::spawn;
pub use endpoint::{BrokerUrl, Endpoint};
pub use error::MqttError;
pub use smarty_store::queue::Publication;

/// The Mosquitto harness of every test that needs a broker: this crate's, and (with the
/// feature `test-broker`, a dev-dependency of the binary) the application's.
#[cfg(any(test, feature = "test-broker"))]
pub mod test_broker;

/// The small disk the queue's tests use too.
#[cfg(test)]
#[path = "../../smarty-store/tests/support/small_disk.rs"]
mod small_disk;

#[cfg(test)]
mod tests;
