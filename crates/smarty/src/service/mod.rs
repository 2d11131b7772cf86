//! `smarty run`: the long-running service. Meters (each a source and a decoder) publish
//! [`MeterEvent`](smarty_model::event::MeterEvent)s on a [`bus::Bus`]; outputs (the store,
//! MQTT, the plain-telegram proxy, the web server with metrics and health) each run as their
//! own task. Lossless outputs (the store, MQTT) hold a meter back while they are full; the
//! others skip when they fall behind.
//!
//! The outputs themselves are crates (`smarty-store`, `smarty-mqtt`, `smarty-web`); here is
//! the wiring: the bus, the meters ([`meter`]), starting the outputs ([`outputs`]), the store's
//! adapter from the event channel to its writer thread ([`store_follow`]), the live state's
//! feed ([`live`]), the proxy, the replay counters, each meter's live guard ([`guard`]) and its alerts'
//! delivery ([`guard_alerts`]), and the feed of a fleet's stream with the
//! raw frames ([`fleet_feed`], `--publish-raw URL`).

pub mod bus;
pub mod fleet_feed;
pub mod guard;
pub(crate) mod guard_alerts;
mod live;
mod meter;
pub(crate) mod outputs;
pub mod proxy;
mod replay;
mod run;
mod store_follow;

pub use outputs::describe as describe_outputs;
pub(crate) use run::shutdown_signal;
pub use run::{run, serve};
