//! `smarty-fleet`: many meters on one system (docs/fleet.md). Dongles and gateways publish
//! the raw encrypted frames of their meters on NATS JetStream (natively, or through NATS's
//! MQTT listener); any number of workers (`smarty fleet ingest`) decrypt them with each
//! meter's key and store them in PostgreSQL through `smarty-store`, acknowledging a frame
//! only once the transaction that stored it committed. Redelivered and resent frames are
//! absorbed by the store (readings keyed by meter and telegram time, inserted once; frame
//! counters per meter), so that every frame counts once.
//!
//! | module | what |
//! |---|---|
//! | [`subject`] | subjects and message ids: `smarty.raw.<system title>`, partitions |
//! | [`nats`] | connecting (reconnects for ever; passwords kept out of logs) |
//! | [`stream`] | the stream `SMARTY_RAW` on `smarty.raw.>`: created on start, or checked |
//! | [`publish`] | publishing frames with message ids, many acknowledgements in flight |
//! | [`keys_csv`] | the keys file `name,system_title,key,auth_key` |
//! | [`keys`] | the meters' keys wrapped under the master key |
//! | [`ingest`] | a worker: frames from the stream into the store, acknowledged after commit |
//! | `test_nats` | (feature `test_nats`, and this crate's tests) a real `nats-server` for tests |
//!
//! The only crate of the workspace that uses the NATS client.

pub mod ingest;
pub mod keys;
pub mod keys_csv;
mod lease;
pub mod nats;
pub mod publish;
pub mod stream;
pub mod subject;

/// The NATS harness of every test that needs a server: this crate's, and (with the feature
/// `test_nats`, a dev-dependency of the binary) the application's.
#[cfg(any(test, feature = "test_nats"))]
pub mod test_nats;

#[cfg(test)]
mod tests;
