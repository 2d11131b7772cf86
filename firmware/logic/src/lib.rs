//! # smarty-dongle
//!
//! Everything of the smarty P1 dongle (an ESP32-C3/C6 on the meter's P1 port) that is not
//! hardware glue, tested on the host. `no_std` + `alloc`: no HAL, no radio, no clock (callers
//! pass monotonic milliseconds `now_ms`).
//!
//! | module | concern |
//! |---|---|
//! | [`access_point`] | the set-up access point's name and its per-device password |
//! | [`p1`] | UART bytes → [`smarty_p1::Decoder`] → [`p1::Snapshot`]s → MQTT [`p1::Publication`]s (topics and names as the gateway's) |
//! | [`diagnosis`] | what the status page says is wrong (cable, wiring, key, authentication key, partial read-out) |
//! | [`settings`] | the settings record kept in flash: versioned, length-prefixed, CRC-32 checked |
//! | [`setup_form`] | the captive portal's form: parsing, validation per field, the HTML pages |
//! | [`provisioning`] | the connection state machine: set-up access point, Wi-Fi, broker, button |
//! | [`discovery`] | Home Assistant MQTT discovery messages |
//! | [`api`] | the JSON of the local read-only HTTP API |
//! | [`ring`] | a bounded queue of publications for while the broker is away |
//! | [`mqtt`] | the MQTT client (mqttrust): connect options with the last will, publishing |
//! | [`ota`] | signed updates: the upload's header, the ed25519 check of the image |
//!
//! The real Luxembourg frame of the core's test data, through the reader to MQTT messages:
//!
//! ```
//! use smarty_dongle::p1::{PublishConfig, Reader};
//! use smarty_p1::{DecoderConfig, Key};
//! let hex = include_str!("../../../crates/smarty-p1/tests/data/encrypted/nexxtlab_lux_t210d_fc0005a8e3.hex");
//! let frame = smarty_p1::hex::decode(hex).unwrap();
//! let key: Key = "D491470F47126332B07D1923B3504188".parse().unwrap();
//! let mut reader = Reader::new(DecoderConfig::new(key));
//! reader.push(&frame, 0);
//! let snapshot = reader.poll().unwrap().unwrap();
//! let config = PublishConfig::new("smarty", "home");
//! let messages = smarty_dongle::p1::publications(&snapshot, &config);
//! let energy = messages.iter().find(|p| p.topic == "smarty/home/energy_import_kwh").unwrap();
//! assert_eq!(energy.payload, b"6.695");
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![warn(clippy::exhaustive_enums, clippy::exhaustive_structs)]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod access_point;
pub mod api;
pub mod diagnosis;
pub mod discovery;
mod json;
pub mod mqtt;
pub mod ota;
pub mod p1;
pub mod provisioning;
pub mod ring;
pub mod settings;
pub mod setup_form;

/// The firmware's version (this crate's), as the status API and discovery's `origin` give it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
