//! What the service's meters hand to its outputs (the store, MQTT, the telegram proxy,
//! metrics, health): owned, shareable snapshots, so outputs run as independent tasks fed by
//! the channels of [`super::bus`].

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value as Json;
use smarty_p1::registry::{Channel, Kind, Medium};
use smarty_p1::{Decoded, Obis, Stats, Value};

use crate::model::time::rfc3339;
use crate::output::json::telegram_json;

/// Everything outputs receive.
#[derive(Debug, Clone)]
pub enum Event {
    /// A meter delivered an accepted telegram.
    Telegram(Arc<TelegramEvent>),
    /// A meter's state changed (connected, disconnected, its counters, …); coalesced by the
    /// meter: at once on a connect or disconnect, otherwise at most once a second.
    Status(Arc<MeterStatus>),
    /// A meter without a key received an encrypted frame it could not decrypt. Only the MQTT
    /// output uses it (`publish_raw`: forwarded on `<prefix>/<meter>/raw` so that a `smarty`
    /// holding the key decrypts it elsewhere); decrypted frames travel in [`Event::Telegram`].
    RawFrame {
        /// The meter's configured name.
        meter: Arc<str>,
        /// The frame as received.
        frame: Arc<[u8]>,
    },
}

/// One accepted telegram of one meter.
#[derive(Debug, Clone)]
pub struct TelegramEvent {
    /// The meter's configured name (a slug: letters, digits, `_`, `-`).
    pub meter: Arc<str>,
    /// The meter id the telegram carries (`0-0:42.0.0` / `0-0:96.1.1`), if any.
    pub meter_id: Option<String>,
    /// The object of `smarty read --format json` (docs/formats.md).
    pub json: Json,
    /// The plaintext telegram, byte-exact (`/` … `!CRC` CR LF).
    pub telegram: Vec<u8>,
    /// The bytes as received: the encrypted frame, or the plaintext telegram.
    pub frame: Vec<u8>,
    /// Every named value, flattened (see [`NamedValue`]).
    pub values: Vec<NamedValue>,
    /// When the gateway accepted it.
    pub received: SystemTime,
}

/// One value of a telegram under its standard name (`energy_import_kwh`, `mbus1_gas_m3`).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedValue {
    /// The standard name, unit included.
    pub name: String,
    /// The OBIS code as sent.
    pub obis: String,
    /// The OBIS code, typed: `smarty_p1::registry::lookup` gives its registry entry.
    pub code: Obis,
    /// What it measures.
    pub kind: Kind,
    /// The M-Bus device the value belongs to, for the codes of an M-Bus channel (`0-n:…`).
    pub mbus: Option<MbusDevice>,
    /// The value.
    pub value: ValueData,
}

/// The M-Bus device on one channel of a telegram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbusDevice {
    /// The M-Bus channel (OBIS group B, 1–4 on P1).
    pub channel: u8,
    /// Its medium, from its device type `0-n:24.1.0`; `None` when the telegram does not say.
    pub medium: Option<Medium>,
}

/// The payload of a [`NamedValue`].
#[derive(Debug, Clone, PartialEq)]
pub enum ValueData {
    /// A number with its unit as sent (`None` when the meter sent none).
    Number {
        /// The value (exact decimals become the nearest `f64`).
        value: f64,
        /// The value exactly as a decimal string (`6.695`, `0.000`).
        text: String,
        /// The unit as sent.
        unit: Option<String>,
        /// The capture time of M-Bus readings, RFC 3339.
        timestamp: Option<String>,
    },
    /// Text (ids, version, messages), decoded.
    Text(String),
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

impl TelegramEvent {
    /// The snapshot of an accepted telegram of meter `meter`.
    pub fn new(meter: &Arc<str>, decoded: &Decoded<'_>) -> Self {
        let telegram = &decoded.telegram;
        let mut values = Vec::with_capacity(telegram.objects().len());
        for object in telegram.objects() {
            let (Some(name), Some(def)) = (telegram.name_of(object), object.def) else {
                continue;
            };
            let value = match object.value {
                Value::Number(q) | Value::TimedNumber { quantity: q, .. } => ValueData::Number {
                    value: q.value.to_f64(),
                    text: q.value.to_string(),
                    unit: q.unit.map(str::to_owned),
                    timestamp: match object.value {
                        Value::TimedNumber { time, .. } => time.as_ref().map(rfc3339),
                        _ => None,
                    },
                },
                Value::Text(t) => ValueData::Text(t.to_owned()),
                Value::OctetString(s) => match s.text() {
                    Some(text) => ValueData::Text(text),
                    None => continue,
                },
                Value::Timestamp(Some(t)) => ValueData::Text(rfc3339(&t)),
                _ => continue,
            };
            let mbus = (def.b == Channel::Mbus).then(|| MbusDevice {
                channel: object.obis.b,
                medium: telegram.medium(object.obis.b),
            });
            values.push(NamedValue {
                name: name.to_string(),
                obis: object.code.to_owned(),
                code: object.obis,
                kind: def.kind,
                mbus,
                value,
            });
        }
        TelegramEvent {
            meter: Arc::clone(meter),
            meter_id: telegram.meter_id(),
            json: telegram_json(decoded),
            telegram: telegram.raw().to_vec(),
            frame: decoded.raw.to_vec(),
            values,
            received: SystemTime::now(),
        }
    }

    /// The value named `name`.
    #[cfg(test)]
    pub fn value(&self, name: &str) -> Option<&NamedValue> {
        self.values.iter().find(|v| v.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smarty_p1::{Decoder, DecoderConfig};

    #[test]
    fn values_are_flattened_with_names_units_and_kinds() {
        let telegram = b"/Lux5\\253663629_D\r\n\r\n1-3:0.2.8(42)\r\n0-0:1.0.0(260403175431S)\r\n\
0-0:42.0.0(53414731303330373030313134303034)\r\n1-0:1.8.0(000006.695*kWh)\r\n\
1-0:3.7.0(00.000)\r\n0-1:24.1.0(003)\r\n0-1:24.2.1(260403174542S)(14239.771*m3)\r\n!";
        let mut decoder = Decoder::new(DecoderConfig::default());
        decoder.push(telegram);
        let decoded = decoder.finish().unwrap().unwrap();
        let event = TelegramEvent::new(&Arc::from("home"), &decoded);
        assert_eq!(event.meter_id.as_deref(), Some("SAG1030700114004"));
        let energy = event.value("energy_import_kwh").unwrap();
        assert_eq!(energy.kind, Kind::Energy);
        assert!(matches!(&energy.value, ValueData::Number { text, unit, .. }
            if text == "6.695" && unit.as_deref() == Some("kWh")));
        let gas = event.value("mbus1_gas_m3").unwrap();
        assert!(
            matches!(&gas.value, ValueData::Number { timestamp: Some(t), .. }
            if t == "2026-04-03T17:45:42+02:00")
        );
        assert_eq!(
            gas.mbus,
            Some(MbusDevice {
                channel: 1,
                medium: Some(Medium::Gas)
            })
        );
        assert_eq!(gas.code, Obis::new(0, 1, 24, 2, 1));
        assert_eq!(energy.mbus, None);
        assert!(event.value("reactive_power_import_kvar").is_some());
        assert_eq!(
            event.value("meter_id").unwrap().value,
            ValueData::Text("SAG1030700114004".into())
        );
        assert_eq!(event.json["objects"]["1-0:1.8.0"]["value"], 6.695);
    }
}
