//! What a meter hands to the outputs (the store, MQTT, the telegram proxy, the live state):
//! owned, shareable snapshots, so that outputs run as independent tasks.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value as Json;
use smarty_p1::{Decoded, Stats, Timestamp};

use super::guard::{Alert, Closed, GuardState, Update};

use super::json::telegram_json;
use super::value::{TelegramValue, values_of};

/// Everything outputs receive.
#[derive(Debug, Clone)]
pub enum MeterEvent {
    /// A meter delivered an accepted telegram.
    Telegram(Arc<TelegramEvent>),
    /// A meter's state changed (connected, disconnected, its counters, …); coalesced by the
    /// meter: at once on a connect or disconnect, otherwise at most once a second.
    Status(Arc<MeterStatus>),
    /// A meter without a key received an encrypted frame it could not decrypt. Only the MQTT
    /// output uses it (`publish_raw`: forwarded on `<prefix>/<meter>/raw` so that a `smarty`
    /// holding the key decrypts it elsewhere); decrypted frames travel in [`MeterEvent::Telegram`].
    RawFrame {
        /// The meter's configured name.
        meter: Arc<str>,
        /// The frame as received.
        frame: Arc<[u8]>,
    },
    /// Where a meter's quarter hour stands against the reference power, after each accepted
    /// telegram (the live guard, [`crate::guard`]); sent right after the telegram's event.
    Guard(Arc<GuardEvent>),
}

/// The live guard of one meter after one telegram.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardEvent {
    /// The meter's configured name.
    pub meter: Arc<str>,
    /// The figures now.
    pub state: GuardState,
    /// Thresholds this telegram crossed (each kind at most once per quarter hour); the
    /// outputs deliver those the `[guard]` section asks for.
    pub alerts: Vec<Alert>,
    /// The quarter hour this telegram closed, when it is the first of a new one.
    pub closed: Option<Closed>,
}

impl GuardEvent {
    /// The event of `meter`'s guard `update`.
    pub fn new(meter: &Arc<str>, update: Update) -> GuardEvent {
        GuardEvent {
            meter: Arc::clone(meter),
            state: update.state,
            alerts: update.alerts,
            closed: update.closed,
        }
    }
}

/// One accepted telegram of one meter.
#[derive(Debug, Clone)]
pub struct TelegramEvent {
    /// The meter's configured name (a slug: letters, digits, `_`, `-`).
    pub meter: Arc<str>,
    /// The meter id the telegram carries (`0-0:42.0.0` / `0-0:96.1.1`), if any.
    pub meter_id: Option<String>,
    /// The telegram's own time (`0-0:1.0.0`); `None` when absent or a placeholder.
    pub timestamp: Option<Timestamp>,
    /// The identification line without `/` (`Lux5\253663629_D`): the meter's model.
    pub header: String,
    /// The P1 version (`1-3:0.2.8`: `42` on Smarty, `50` on DSMR 5), if sent.
    pub version: Option<String>,
    /// Every value with a standard name, typed ([`TelegramValue`]), in the order sent.
    pub values: Vec<TelegramValue>,
    /// The JSON object of `smarty read --format json` (docs/formats.md), rendered once for the
    /// outputs that send it whole (the MQTT state message, the API's `telegram`).
    pub rendered_json: Json,
    /// The plaintext telegram, byte-exact (`/` … `!CRC` CR LF).
    pub telegram: Vec<u8>,
    /// The bytes as received: the encrypted frame, or the plaintext telegram.
    pub frame: Vec<u8>,
    /// When the gateway accepted it.
    pub received: SystemTime,
}

impl TelegramEvent {
    /// The snapshot of a telegram that meter `meter` accepted at `received`.
    pub fn new(meter: &Arc<str>, decoded: &Decoded<'_>, received: SystemTime) -> Self {
        let telegram = &decoded.telegram;
        TelegramEvent {
            meter: Arc::clone(meter),
            meter_id: telegram.meter_id(),
            timestamp: telegram.timestamp(),
            header: telegram.header_str().into_owned(),
            version: telegram.version().map(str::to_owned),
            values: values_of(telegram),
            rendered_json: telegram_json(decoded),
            telegram: telegram.raw().to_vec(),
            frame: decoded.raw.to_vec(),
            received,
        }
    }

    /// The value named `name` (`energy_import_kwh`), if the telegram has it: a look-up for
    /// tests and tools; the outputs go through `values` by their typed
    /// identity.
    pub fn value(&self, name: &str) -> Option<&TelegramValue> {
        self.values.iter().find(|v| v.name == name)
    }
}

/// The state of one meter.
#[derive(Debug, Clone)]
pub struct MeterStatus {
    /// The meter's configured name.
    pub meter: Arc<str>,
    /// Where it reads from, for display (never a secret).
    pub source: String,
    /// `true` while the source is open.
    pub connected: bool,
    /// When the last telegram was accepted.
    pub last_telegram: Option<SystemTime>,
    /// Counters of its decoder: frames, telegrams, rejections by reason.
    pub stats: Stats,
    /// How often the source was reopened.
    pub reconnects: u64,
    /// The last problem, in words, if any.
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use smarty_p1::{Decoder, DecoderConfig};

    #[test]
    fn a_telegram_event_carries_the_telegram_typed_and_rendered() {
        let telegram = b"/Lux5\\253663629_D\r\n\r\n1-3:0.2.8(42)\r\n0-0:1.0.0(260403175431S)\r\n\
0-0:42.0.0(53414731303330373030313134303034)\r\n1-0:1.8.0(000006.695*kWh)\r\n\
1-0:3.7.0(00.000)\r\n0-1:24.1.0(003)\r\n0-1:24.2.1(260403174542S)(14239.771*m3)\r\n!";
        let mut decoder = Decoder::new(DecoderConfig::default());
        decoder.push(telegram);
        let decoded = decoder.finish().unwrap().unwrap();
        let event = TelegramEvent::new(&Arc::from("home"), &decoded, SystemTime::UNIX_EPOCH);
        assert_eq!(event.meter_id.as_deref(), Some("SAG1030700114004"));
        assert_eq!(event.header, "Lux5\\253663629_D");
        assert_eq!(event.version.as_deref(), Some("42"));
        assert_eq!(
            event.timestamp.map(|t| super::super::time::rfc3339(&t)),
            Some("2026-04-03T17:54:31+02:00".to_owned())
        );
        assert_eq!(event.rendered_json["header"], event.header.as_str());
        assert_eq!(event.rendered_json["objects"]["1-0:1.8.0"]["value"], 6.695);
        // Every value is in the JSON object, under its code and with its name.
        for value in &event.values {
            assert_eq!(
                event.rendered_json["objects"][&value.code]["name"],
                value.name.as_str()
            );
        }
        assert!(event.value("mbus1_gas_m3").is_some());
        assert_eq!(event.telegram, telegram);
    }
}
