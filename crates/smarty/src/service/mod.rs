//! `smarty run`: the long-running service. Meters (each a source and a decoder) publish
//! [`Event`]s on a [`bus::Bus`]; outputs (the store, MQTT, the plain-telegram proxy, metrics
//! and health) each run as their own task. Lossless outputs (the store, MQTT) hold a meter
//! back while they are full; the others skip when they fall behind.

// Wired up step by step by `smarty run`; some items are used only by outputs in progress.
#![allow(dead_code, unused_imports)]

pub mod backoff;
pub mod bus;
pub mod event;
mod meter;
pub mod metrics;
pub mod mqtt;
mod outputs;
pub mod proxy;
mod replay;
mod run;

pub use event::{Event, MeterStatus, NamedValue, TelegramEvent, ValueData};
pub use outputs::describe as describe_outputs;
pub use run::{run, serve};
