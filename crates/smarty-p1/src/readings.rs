//! A typed view of a telegram for the common questions.

use alloc::string::String;
use alloc::vec::Vec;

use crate::obis::Obis;
use crate::registry::{Kind, Medium};
use crate::telegram::{Telegram, Value};
use crate::value::{Decimal, Timestamp};

/// Values per phase L1, L2, L3.
pub type Phases = [Option<Decimal>; 3];

/// A sub-meter reading from an M-Bus channel (`0-n:24.2.1`, `0-n:24.2.3`, `0-n:24.3.0`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MbusReading {
    /// The channel 1–4.
    pub channel: u8,
    /// The medium from `0-n:24.1.0`; `None` when the meter did not send the device type.
    pub medium: Option<Medium>,
    /// The device's identifier `0-n:96.1.0` decoded to text, or its hex digits as sent when
    /// they are not printable text; `None` when not sent or empty.
    pub equipment_id: Option<String>,
    /// When the device was read; `None` for placeholders (a channel never read).
    pub time: Option<Timestamp>,
    /// The reading, exactly as sent.
    pub value: Decimal,
    /// The unit as sent (`m3`, `GJ`), `None` when the meter sent none.
    pub unit: Option<String>,
}

/// The common values of a telegram, normalised to kWh, kW, V and A.
///
/// Energy and power sent in Wh/W (Austrian T210-D-r) are converted exactly. Every field is
/// optional because every object is optional in a telegram (reference §5).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Readings {
    /// `0-0:42.0.0` (Smarty) or `0-0:96.1.1` (DSMR), decoded to text (hex digits as sent when
    /// not printable text); see [`Telegram::meter_id`].
    pub meter_id: Option<String>,
    /// `0-0:1.0.0`.
    pub timestamp: Option<Timestamp>,
    /// Total imported energy: `1-0:1.8.0`, or the sum of the tariff registers.
    pub energy_import_kwh: Option<Decimal>,
    /// Total exported energy: `1-0:2.8.0`, or the sum of the tariff registers.
    pub energy_export_kwh: Option<Decimal>,
    /// Imported energy per tariff `1-0:1.8.1` … `1-0:1.8.4`.
    pub energy_import_tariffs_kwh: [Option<Decimal>; 4],
    /// Exported energy per tariff `1-0:2.8.1` … `1-0:2.8.4`.
    pub energy_export_tariffs_kwh: [Option<Decimal>; 4],
    /// Imported active power `1-0:1.7.0`.
    pub power_import_kw: Option<Decimal>,
    /// Exported active power `1-0:2.7.0`.
    pub power_export_kw: Option<Decimal>,
    /// Tariff indicator `0-0:96.14.0`.
    pub tariff: Option<u8>,
    /// Voltage per phase `1-0:32.7.0`, `52.7.0`, `72.7.0`.
    pub voltage_v: Phases,
    /// Current per phase `1-0:31.7.0`, `51.7.0`, `71.7.0`.
    pub current_a: Phases,
    /// Imported power per phase `1-0:21.7.0`, `41.7.0`, `61.7.0`.
    pub power_import_phases_kw: Phases,
    /// Exported power per phase `1-0:22.7.0`, `42.7.0`, `62.7.0`.
    pub power_export_phases_kw: Phases,
    /// M-Bus sub-meters (gas, water, heat), by channel.
    pub mbus: Vec<MbusReading>,
}

/// Converts a quantity to k-units (kWh, kW) exactly; `None` for other units.
fn to_kilo(value: Decimal, unit: Option<&str>) -> Option<Decimal> {
    let unit = match unit {
        None => return Some(value),
        Some(u) => u,
    };
    let first = unit.as_bytes().first()?.to_ascii_lowercase();
    match first {
        b'k' => Some(value),
        b'w' => value.shift(3),
        b'm' if unit.len() > 1 && unit.as_bytes()[1].eq_ignore_ascii_case(&b'w') => value.shift(-3),
        _ => None,
    }
}

impl Telegram<'_> {
    /// The typed view.
    ///
    /// # Example
    /// ```
    /// let t = smarty_p1::parse(b"/EST5\\253710000_A\r\n\r\n1-0:1.8.0(000195513*Wh)\r\n1-0:32.7.0(232.0*V)\r\n!").unwrap();
    /// let r = t.readings();
    /// assert_eq!(r.energy_import_kwh.unwrap().to_string(), "195.513");
    /// assert_eq!(r.voltage_v[0].unwrap().to_string(), "232.0");
    /// ```
    pub fn readings(&self) -> Readings {
        let mut r = Readings {
            meter_id: self.meter_id(),
            timestamp: self.timestamp(),
            ..Readings::default()
        };
        for object in self.objects() {
            let Some(def) = object.def else { continue };
            let quantity = object.value().quantity();
            let kilo = quantity.and_then(|q| to_kilo(q.value, q.unit));
            let plain = quantity.map(|q| q.value);
            let Obis { a, b, c, d, e } = object.obis;
            match (a, b, c, d, e) {
                (1, 0, 1, 8, 0) => r.energy_import_kwh = kilo,
                (1, 0, 2, 8, 0) => r.energy_export_kwh = kilo,
                (1, 0, 1, 8, t @ 1..=4) => r.energy_import_tariffs_kwh[usize::from(t - 1)] = kilo,
                (1, 0, 2, 8, t @ 1..=4) => r.energy_export_tariffs_kwh[usize::from(t - 1)] = kilo,
                (1, 0, 1, 7, 0) => r.power_import_kw = kilo,
                (1, 0, 2, 7, 0) => r.power_export_kw = kilo,
                (1, 0, 32 | 52 | 72, 7, 0) => r.voltage_v[phase(c)] = plain,
                (1, 0, 31 | 51 | 71, 7, 0) => r.current_a[phase(c)] = plain,
                (1, 0, 21 | 41 | 61, 7, 0) => r.power_import_phases_kw[phase(c)] = kilo,
                (1, 0, 22 | 42 | 62, 7, 0) => r.power_export_phases_kw[phase(c)] = kilo,
                (0, 0, 96, 14, 0) => {
                    if let Value::Text(t) = object.value() {
                        r.tariff = t.parse().ok();
                    }
                }
                _ if def.kind == Kind::MbusReading && a == 0 => {
                    if let Value::TimedNumber { time, quantity } = object.value() {
                        r.mbus.push(MbusReading {
                            channel: b,
                            medium: self.medium(b),
                            equipment_id: self.mbus_equipment_id(b),
                            time,
                            value: quantity.value,
                            unit: quantity.unit.map(String::from),
                        });
                    }
                }
                _ => {}
            }
        }
        if r.energy_import_kwh.is_none() {
            r.energy_import_kwh = sum(&r.energy_import_tariffs_kwh);
        }
        if r.energy_export_kwh.is_none() {
            r.energy_export_kwh = sum(&r.energy_export_tariffs_kwh);
        }
        r
    }

    fn mbus_equipment_id(&self, channel: u8) -> Option<String> {
        [
            Obis::new(0, channel, 96, 1, 0),
            Obis::new(0, channel, 96, 1, 1),
        ]
        .into_iter()
        .filter_map(|code| self.get_obis(code))
        .find_map(|o| match o.value() {
            Value::OctetString(s) if !s.is_empty() => Some(s.text_or_hex()),
            Value::Text(t) if !t.is_empty() => Some(String::from(t)),
            _ => None,
        })
    }
}

fn phase(c: u8) -> usize {
    match c {
        21..=40 => 0,
        41..=60 => 1,
        _ => 2,
    }
}

fn sum(values: &[Option<Decimal>]) -> Option<Decimal> {
    let mut present = values.iter().flatten();
    let first = *present.next()?;
    present.try_fold(first, |acc, v| acc.checked_add(*v))
}

impl Readings {
    /// The first M-Bus reading of a medium (for "the gas meter").
    pub fn mbus_by_medium(&self, medium: Medium) -> Option<&MbusReading> {
        self.mbus.iter().find(|m| m.medium == Some(medium))
    }
}
