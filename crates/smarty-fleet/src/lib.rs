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
//! | [`keys`] | the meters' keys wrapped under the master key |
//! | [`ingest`] | a worker: frames from the stream into the store, acknowledged after commit |
//!
//! The only crate of the workspace that uses the NATS client.

pub mod ingest;
pub mod keys;
pub mod subject;

/// The JetStream stream of raw frames.
pub const STREAM: &str = "SMARTY_RAW";
