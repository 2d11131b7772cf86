//! `smarty run`: the long-running service. Meters (each a source and a decoder) publish
//! [`MeterEvent`](smarty_model::event::MeterEvent)s on a [`bus::Bus`]; outputs (the store, MQTT, the plain-telegram proxy, metrics
//! and health) each run as their own task. Lossless outputs (the store, MQTT) hold a meter
//! back while they are full; the others skip when they fall behind.

pub mod bus;
mod live;
mod meter;
mod outputs;
pub mod proxy;
mod replay;
mod run;
mod store_follow;

pub use outputs::describe as describe_outputs;
pub use run::{run, serve};
