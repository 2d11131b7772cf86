//! The MQTT output: telegrams and meter states to an MQTT broker, with Home Assistant
//! discovery, and a queue (on disk if configured) so that nothing is lost while the broker is
//! down. Also the client side of the raw MQTT source ([`Subscriber`]).
//!
//! One file per concern:
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the `[mqtt]` section ([`MqttConfig`]) and its check |
//! | [`endpoint`] | broker addresses (`mqtt[s]://[user[:password]@]host[:port]`), parsed by the `url` crate |
//! | [`tls`] | the rustls client configuration: the system's authorities or `ca_file` |
//! | [`topics`] | the topic layout, and the state, value, raw and status messages |
//! | [`discovery`] | Home Assistant discovery: units, names, classes, device blocks, messages |
//! | `client` | the only module that talks to the MQTT client library (rumqttc): the output's publisher (MQTT 3.1.1 and 5) and the raw source's [`Subscriber`] |
//! | `delivery` | the output task: queueing, the publish window, reconnects, shutdown |
//! | [`queue`] | the outgoing queue, in memory and in an SQLite file |
//!
//! The output depends only on the model: the events of [`smarty_model::event`], the
//! reporting handles of [`smarty_model::live`] ([`OutputHealth`](smarty_model::live::OutputHealth),
//! [`QueueReport`](smarty_model::live::QueueReport)), [`smarty_model::secret::Secret`] and the
//! back-off of [`smarty_model::backoff`].

mod client;
pub mod config;
mod delivery;
pub mod discovery;
pub mod endpoint;
pub use smarty_store::queue;
pub mod tls;
pub mod topics;

pub use client::{Connection, Received, Subscriber};
pub use config::MqttConfig;
#[cfg(test)]
pub use config::Protocol;
pub use delivery::run_reporting;
#[cfg(test)]
pub use delivery::spawn;
pub use endpoint::{BrokerUrl, Endpoint};

/// The Mosquitto harness the tests share with the integration tests (`tests/service.rs`).
#[cfg(test)]
#[path = "../../../tests/support/mosquitto.rs"]
pub(crate) mod test_broker;

/// The small disk the queue's tests use too.
#[cfg(test)]
#[path = "../../../../smarty-store/tests/support/small_disk.rs"]
mod small_disk;

#[cfg(test)]
mod tests;
