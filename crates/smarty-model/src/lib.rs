//! `smarty-model`: the shared vocabulary of the smarty gateway, what the sources, the decoder
//! and every output (the store, the tariff, MQTT, the web server) agree on, with no I/O.
//!
//! | module | what |
//! |---|---|
//! | [`event`] | what meters hand to the outputs: accepted telegrams, meter states, undecrypted frames |
//! | [`value`] | one value of a telegram: its typed identity ([`ValueId`](value::ValueId)) and reading |
//! | [`unit`](mod@unit) | the one table of units: symbols, names, conversions |
//! | [`json`] | the JSON object of a telegram (docs/formats.md) |
//! | [`live`] | the live state: the latest of every meter, the health of the outputs, the MQTT queue's report |
//! | [`time`] | the meters' zone, meter timestamps as instants and RFC 3339, times given by people, local days and months |
//! | [`period`] | the 15-minute interval, reporting periods, resolutions of history |
//! | [`guard`] | the live reference-power guard: the quarter hour in progress, headroom, alerts |
//! | [`slug`] | names reduced to `[a-z0-9_]` |
//! | [`secret`] | [`Secret`](secret::Secret): passwords, tokens and key text that never show |
//! | [`backoff`] | exponential back-off between attempts |
//!
//! It depends on `smarty-p1`, serde, serde_json, jiff and thiserror only (its tests also on
//! toml and the test telegrams of `smarty-p1`): no tokio, clap, rusqlite, axum, rumqttc or
//! prometheus-client, and nothing here reads or writes files, sockets or the clock.

pub mod backoff;
pub mod event;
pub mod guard;
pub mod json;
pub mod live;
pub mod period;
pub mod secret;
pub mod slug;
pub mod time;
pub mod unit;
pub mod value;
