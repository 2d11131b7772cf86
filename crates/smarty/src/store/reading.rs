//! One stored reading: the values of a telegram as integers in small units, and the M-Bus
//! readings it carries.

use std::sync::Arc;

use serde_json::Value as Json;

use crate::model::time::{unix, unix_of};
use crate::service::event::TelegramEvent;

/// What a column holds, which decides its unit and how it aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An energy register (Wh, varh): aggregated as the increase per period.
    Energy,
    /// An instantaneous value (W, var, 0.1 V, 0.01 A): aggregated as sum, count, min, max.
    Instant,
}

/// A column of [`Reading`]: its SQL name, the series name and unit it is shown with, and the
/// OBIS codes it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// The column name in the tables and in [`Reading`] (`energy_import_wh`).
    pub name: &'static str,
    /// How it aggregates.
    pub kind: Kind,
    /// The name in series and exports (`energy_import_kwh`, `voltage_l1_v`).
    pub series: &'static str,
    /// The unit of series and exports (`kWh`, `kW`, `V`, `A`).
    pub unit: &'static str,
    /// Stored integer units per output unit (1000 Wh per kWh, 10 per V, 100 per A).
    pub scale: f64,
    /// The OBIS codes summed into the column (tariff registers when the total is absent).
    pub obis: &'static [&'static str],
}

macro_rules! columns {
    ($( $(#[doc = $doc:literal])* $field:ident: $kind:ident, $series:literal, $unit:literal, $scale:literal, [$($obis:literal),+]; )*) => {
        /// One telegram of one meter, as stored: integers in small units (Wh, varh, W, var,
        /// 0.1 V, 0.01 A), `None` for what the meter does not send.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Reading {
            /// The meter's configured name.
            pub meter: Arc<str>,
            /// The id the meter sends (`0-0:42.0.0` / `0-0:96.1.1`), if any.
            pub meter_id: Option<String>,
            /// The telegram's own time (`0-0:1.0.0`), else when it was received: Unix seconds.
            pub ts: i64,
            $( $(#[doc = $doc])* pub $field: Option<i64>, )*
        }

        /// Every value column of [`Reading`], in storage order.
        pub const COLUMNS: &[Column] = &[
            $( Column {
                name: stringify!($field),
                kind: Kind::$kind,
                series: $series,
                unit: $unit,
                scale: $scale,
                obis: &[$($obis),+],
            }, )*
        ];

        impl Reading {
            /// A reading without values.
            pub fn empty(meter: Arc<str>, ts: i64) -> Reading {
                Reading { meter, meter_id: None, ts, $( $field: None, )* }
            }

            /// The values in [`COLUMNS`] order.
            pub fn values(&self) -> [Option<i64>; NCOL] {
                [ $( self.$field, )* ]
            }

            /// Sets the values from an array in [`COLUMNS`] order.
            pub fn set_values(&mut self, values: [Option<i64>; NCOL]) {
                let [ $( $field, )* ] = values;
                $( self.$field = $field; )*
            }
        }
    };
}

columns! {
    /// Active energy imported, Wh (`1-0:1.8.0`, or the sum of the tariff registers).
    energy_import_wh: Energy, "energy_import_kwh", "kWh", 1000.0, ["1-0:1.8.0"];
    /// Active energy exported, Wh (`1-0:2.8.0`, or the sum of the tariff registers).
    energy_export_wh: Energy, "energy_export_kwh", "kWh", 1000.0, ["1-0:2.8.0"];
    /// Active energy imported in tariff 1, Wh (`1-0:1.8.1`).
    energy_import_t1_wh: Energy, "energy_import_tariff1_kwh", "kWh", 1000.0, ["1-0:1.8.1"];
    /// Active energy imported in tariff 2, Wh (`1-0:1.8.2`).
    energy_import_t2_wh: Energy, "energy_import_tariff2_kwh", "kWh", 1000.0, ["1-0:1.8.2"];
    /// Active energy exported in tariff 1, Wh (`1-0:2.8.1`).
    energy_export_t1_wh: Energy, "energy_export_tariff1_kwh", "kWh", 1000.0, ["1-0:2.8.1"];
    /// Active energy exported in tariff 2, Wh (`1-0:2.8.2`).
    energy_export_t2_wh: Energy, "energy_export_tariff2_kwh", "kWh", 1000.0, ["1-0:2.8.2"];
    /// Reactive energy imported, varh (`1-0:3.8.0`).
    reactive_energy_import_varh: Energy, "reactive_energy_import_kvarh", "kvarh", 1000.0, ["1-0:3.8.0"];
    /// Reactive energy exported, varh (`1-0:4.8.0`).
    reactive_energy_export_varh: Energy, "reactive_energy_export_kvarh", "kvarh", 1000.0, ["1-0:4.8.0"];
    /// Active power imported, W (`1-0:1.7.0`).
    power_import_w: Instant, "power_import_kw", "kW", 1000.0, ["1-0:1.7.0"];
    /// Active power exported, W (`1-0:2.7.0`).
    power_export_w: Instant, "power_export_kw", "kW", 1000.0, ["1-0:2.7.0"];
    /// Active power imported on L1, W (`1-0:21.7.0`).
    power_import_l1_w: Instant, "power_import_l1_kw", "kW", 1000.0, ["1-0:21.7.0"];
    /// Active power imported on L2, W (`1-0:41.7.0`).
    power_import_l2_w: Instant, "power_import_l2_kw", "kW", 1000.0, ["1-0:41.7.0"];
    /// Active power imported on L3, W (`1-0:61.7.0`).
    power_import_l3_w: Instant, "power_import_l3_kw", "kW", 1000.0, ["1-0:61.7.0"];
    /// Active power exported on L1, W (`1-0:22.7.0`).
    power_export_l1_w: Instant, "power_export_l1_kw", "kW", 1000.0, ["1-0:22.7.0"];
    /// Active power exported on L2, W (`1-0:42.7.0`).
    power_export_l2_w: Instant, "power_export_l2_kw", "kW", 1000.0, ["1-0:42.7.0"];
    /// Active power exported on L3, W (`1-0:62.7.0`).
    power_export_l3_w: Instant, "power_export_l3_kw", "kW", 1000.0, ["1-0:62.7.0"];
    /// Reactive power imported, var (`1-0:3.7.0`).
    reactive_power_import_var: Instant, "reactive_power_import_kvar", "kvar", 1000.0, ["1-0:3.7.0"];
    /// Reactive power exported, var (`1-0:4.7.0`).
    reactive_power_export_var: Instant, "reactive_power_export_kvar", "kvar", 1000.0, ["1-0:4.7.0"];
    /// Voltage on L1, 0.1 V (`1-0:32.7.0`).
    voltage_l1_dv: Instant, "voltage_l1_v", "V", 10.0, ["1-0:32.7.0"];
    /// Voltage on L2, 0.1 V (`1-0:52.7.0`).
    voltage_l2_dv: Instant, "voltage_l2_v", "V", 10.0, ["1-0:52.7.0"];
    /// Voltage on L3, 0.1 V (`1-0:72.7.0`).
    voltage_l3_dv: Instant, "voltage_l3_v", "V", 10.0, ["1-0:72.7.0"];
    /// Current on L1, 0.01 A (`1-0:31.7.0`).
    current_l1_ca: Instant, "current_l1_a", "A", 100.0, ["1-0:31.7.0"];
    /// Current on L2, 0.01 A (`1-0:51.7.0`).
    current_l2_ca: Instant, "current_l2_a", "A", 100.0, ["1-0:51.7.0"];
    /// Current on L3, 0.01 A (`1-0:71.7.0`).
    current_l3_ca: Instant, "current_l3_a", "A", 100.0, ["1-0:71.7.0"];
}

/// The number of value columns.
pub const NCOL: usize = 24;

/// The tariff registers summed into the totals when a meter sends no `1-0:1.8.0` /
/// `1-0:2.8.0` (DSMR meters).
const TARIFF_REGISTERS: [(&str, [&str; 4]); 2] = [
    (
        "1-0:1.8.0",
        ["1-0:1.8.1", "1-0:1.8.2", "1-0:1.8.3", "1-0:1.8.4"],
    ),
    (
        "1-0:2.8.0",
        ["1-0:2.8.1", "1-0:2.8.2", "1-0:2.8.3", "1-0:2.8.4"],
    ),
];

/// One M-Bus reading (gas, water, heat) with its capture time.
#[derive(Debug, Clone, PartialEq)]
pub struct MbusReading {
    /// The meter's configured name.
    pub meter: Arc<str>,
    /// The M-Bus channel 1–4.
    pub channel: u8,
    /// The medium as in value names: `gas`, `water`, `heat`, … (`reading` when unknown).
    pub medium: String,
    /// The unit as in value names, lower case: `m3`, `gj`.
    pub unit: String,
    /// When the sub-meter was read (its capture time, not the telegram's): Unix seconds.
    pub ts: i64,
    /// The meter reading in `unit` (stored to 0.001).
    pub value: f64,
}

/// The media of value names (`mbus1_warm_water_m3`), longest first.
const MEDIA: [&str; 8] = [
    "electricity",
    "warm_water",
    "hot_water",
    "cooling",
    "reading",
    "water",
    "heat",
    "gas",
];

/// Stored units per unit sent, for a column stored in `base` units (`w`, `var`, `wh`, `varh`,
/// `v`, `a` after the prefix); `None` for a unit that does not fit the column.
fn factor(column: &Column, sent: Option<&str>) -> Option<f64> {
    let unit = match sent {
        None => return Some(column.scale),
        Some(u) => u.to_ascii_lowercase(),
    };
    let base = column.unit.to_ascii_lowercase();
    let base = base.strip_prefix('k').unwrap_or(&base);
    let per_base = column.scale
        / if column.unit.starts_with('k') {
            1000.0
        } else {
            1.0
        };
    let prefix = unit.strip_suffix(base)?;
    let multiple = match prefix {
        "" => 1.0,
        "k" => 1e3,
        "m" if base != "a" && base != "v" => 1e6,
        "m" => 1e-3,
        "g" => 1e9,
        _ => return None,
    };
    Some(multiple * per_base)
}

/// A value sent in `unit` as an integer in the column's stored unit.
fn convert(column: &Column, value: f64, unit: Option<&str>) -> Option<i64> {
    factor(column, unit).map(|f| (value * f).round() as i64)
}

/// The values of every column, from `get(code, column)` (the value of an OBIS code in the
/// column's stored unit); the totals fall back on the sum of the tariff registers.
fn column_values(get: impl Fn(&str, &Column) -> Option<i64>) -> [Option<i64>; NCOL] {
    let mut values = [None; NCOL];
    for (slot, column) in values.iter_mut().zip(COLUMNS) {
        *slot = column.obis.iter().find_map(|code| get(code, column));
        if slot.is_none()
            && let Some((_, tariffs)) = TARIFF_REGISTERS.iter().find(|(t, _)| column.obis[0] == *t)
        {
            let parts: Vec<i64> = tariffs
                .iter()
                .filter_map(|code| get(code, column))
                .collect();
            if !parts.is_empty() {
                *slot = Some(parts.iter().sum());
            }
        }
    }
    values
}

/// The number and unit of an object of `smarty read --format json`.
fn quantity(object: &Json) -> Option<(f64, Option<&str>)> {
    let value = object.get("value")?.as_f64()?;
    Some((value, object.get("unit").and_then(Json::as_str)))
}

/// Unix seconds of an RFC 3339 text.
fn unix_text(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

impl Reading {
    /// The reading and M-Bus readings of a telegram the service accepted. The reading is
    /// `None` when the telegram carries none of the [`COLUMNS`].
    pub fn from_event(event: &TelegramEvent) -> (Option<Reading>, Vec<MbusReading>) {
        Self::from_json(&event.meter, &event.json, Some(unix(event.received)))
    }

    /// The same from an object of `smarty read --format json` (docs/formats.md). Its time is
    /// the telegram's `timestamp`, else `received`; without either there is no reading (M-Bus
    /// readings carry their own time).
    pub fn from_json(
        meter: &Arc<str>,
        json: &Json,
        received: Option<i64>,
    ) -> (Option<Reading>, Vec<MbusReading>) {
        let Some(objects) = json.get("objects").and_then(Json::as_object) else {
            return (None, Vec::new());
        };
        let ts = json
            .get("timestamp")
            .and_then(Json::as_str)
            .and_then(unix_text)
            .or(received);
        let mut reading = ts.map(|ts| Reading::empty(Arc::clone(meter), ts));
        if let Some(reading) = &mut reading {
            reading.meter_id = json
                .get("meter_id")
                .and_then(Json::as_str)
                .map(str::to_owned);
            reading.set_values(column_values(|code, column| {
                let (value, unit) = quantity(objects.get(code)?)?;
                convert(column, value, unit)
            }));
        }
        let reading = reading.filter(|r| r.values().iter().any(Option::is_some));
        let mut mbus = Vec::new();
        for (code, object) in objects {
            let Some(name) = object.get("name").and_then(Json::as_str) else {
                continue;
            };
            let Some(rest) = name.strip_prefix("mbus") else {
                continue;
            };
            let Some((channel, rest)) = rest.split_once('_') else {
                continue;
            };
            let (Ok(channel), Some(medium)) = (
                channel.parse::<u8>(),
                MEDIA.iter().find(|m| {
                    rest.strip_prefix(**m)
                        .is_some_and(|after| after.is_empty() || after.starts_with('_'))
                }),
            ) else {
                continue;
            };
            // Only the readings (`0-n:24.2.1`, `24.2.3`, `24.3.0`), not ids or valve states.
            if !(code.contains(":24.2.") || code.contains(":24.3.0")) {
                continue;
            }
            let unit = rest[medium.len()..].trim_start_matches('_').to_owned();
            let (Some(value), Some(ts)) = (
                object.get("value").and_then(Json::as_f64),
                object
                    .get("timestamp")
                    .and_then(Json::as_str)
                    .and_then(unix_text),
            ) else {
                continue;
            };
            mbus.push(MbusReading {
                meter: Arc::clone(meter),
                channel,
                medium: (*medium).to_owned(),
                unit,
                ts,
                value,
            });
        }
        (reading, mbus)
    }
}

impl Reading {
    /// The same from a decoded telegram, without building its JSON first (`smarty import`
    /// of frames): the same values as [`Reading::from_json`] of its JSON.
    pub fn from_telegram(
        meter: &Arc<str>,
        telegram: &smarty_p1::Telegram<'_>,
        received: Option<i64>,
    ) -> (Option<Reading>, Vec<MbusReading>) {
        let ts = telegram.timestamp().as_ref().and_then(unix_of).or(received);
        let reading = ts
            .map(|ts| {
                let mut reading = Reading::empty(Arc::clone(meter), ts);
                reading.meter_id = telegram.meter_id();
                reading.set_values(column_values(|code, column| {
                    let q = telegram.get(code)?.value.quantity()?;
                    convert(column, q.value.to_f64(), q.unit)
                }));
                reading
            })
            .filter(|r| r.values().iter().any(Option::is_some));
        let mbus = telegram
            .readings()
            .mbus
            .into_iter()
            .filter_map(|m| {
                let medium = m.medium.unwrap_or(smarty_p1::registry::Medium::Other(0));
                let unit = m
                    .unit
                    .as_deref()
                    .or_else(|| medium.default_unit())
                    .unwrap_or_default()
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .map(|c| c.to_ascii_lowercase())
                    .collect();
                Some(MbusReading {
                    meter: Arc::clone(meter),
                    channel: m.channel,
                    medium: medium.as_str().to_owned(),
                    unit,
                    ts: m.time.as_ref().and_then(unix_of)?,
                    value: m.value.to_f64(),
                })
            })
            .collect();
        (reading, mbus)
    }
}

/// The value name of an M-Bus channel: `mbus1_gas_m3` (`mbus1_gas` without a unit).
pub fn mbus_name(channel: u8, medium: &str, unit: &str) -> String {
    if unit.is_empty() {
        format!("mbus{channel}_{medium}")
    } else {
        format!("mbus{channel}_{medium}_{unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn column_count_matches() {
        assert_eq!(COLUMNS.len(), NCOL);
        let names: std::collections::BTreeSet<_> = COLUMNS.iter().map(|c| c.series).collect();
        assert_eq!(names.len(), NCOL);
    }

    #[test]
    fn units_convert_to_small_integers() {
        let column = |name: &str| COLUMNS.iter().find(|c| c.name == name).unwrap();
        let energy = column("energy_import_wh");
        assert_eq!(factor(energy, Some("kWh")), Some(1000.0));
        assert_eq!(factor(energy, Some("Wh")), Some(1.0));
        assert_eq!(factor(energy, Some("MWh")), Some(1e6));
        assert_eq!(factor(energy, None), Some(1000.0));
        assert_eq!(factor(energy, Some("m3")), None);
        let power = column("reactive_power_import_var");
        assert_eq!(factor(power, Some("kvar")), Some(1000.0));
        assert_eq!(factor(power, Some("var")), Some(1.0));
        let volt = column("voltage_l1_dv");
        assert_eq!(factor(volt, Some("V")), Some(10.0));
        assert_eq!(factor(volt, Some("kV")), Some(10_000.0));
        let amp = column("current_l2_ca");
        assert_eq!(factor(amp, Some("A")), Some(100.0));
        assert_eq!(factor(amp, Some("mA")), Some(0.1));
    }

    #[test]
    fn telegrams_and_their_json_give_the_same_readings() {
        use crate::cli::{Firmware, MeterArgs};
        let zone = crate::model::time::meter_zone();
        for firmware in [Firmware::Full, Firmware::Basic, Firmware::Early] {
            let args = MeterArgs {
                interval: std::time::Duration::from_secs(10),
                count: None,
                key: None,
                key_file: None,
                auth_key: None,
                plain: true,
                gas: true,
                water: true,
                firmware,
                solar_kwp: 4.0,
                frame_counter: None,
                start: None,
                seed: Some(3),
            };
            let (mut meter, _) = crate::simulate::Meter::new(&args).unwrap();
            let meter_name: Arc<str> = Arc::from("home");
            let mut mbus_seen = 0;
            for i in 0..100 {
                let now = jiff::Timestamp::from_second(1_790_000_000 + 10 * i)
                    .unwrap()
                    .to_zoned(zone.clone());
                let bytes = meter.next_frame(&now);
                let telegram = smarty_p1::parse(&bytes).unwrap();
                let mut decoder = smarty_p1::Decoder::new(smarty_p1::DecoderConfig::default());
                decoder.push(&bytes);
                let decoded = decoder.finish().unwrap().unwrap();
                let json = crate::output::json::telegram_json(&decoded);
                let direct = Reading::from_telegram(&meter_name, &telegram, None);
                let via_json = Reading::from_json(&meter_name, &json, None);
                assert_eq!(direct, via_json, "{firmware:?}");
                let reading = direct.0.unwrap();
                assert_eq!(reading.ts, 1_790_000_000 + 10 * i);
                assert!(reading.energy_import_wh.is_some());
                mbus_seen += direct.1.len();
            }
            if firmware == Firmware::Full {
                assert!(mbus_seen >= 100, "{mbus_seen}");
            }
        }
    }

    #[test]
    fn a_json_telegram_becomes_a_reading() {
        let json = json!({
            "meter_id": "SAG1030700114004",
            "timestamp": "2026-04-03T17:54:31+02:00",
            "objects": {
                "1-0:1.8.0": {"name": "energy_import_kwh", "value": 11742.449, "unit": "kWh"},
                "1-0:2.8.1": {"name": "energy_export_tariff1_kwh", "value": 1.5, "unit": "kWh"},
                "1-0:2.8.2": {"name": "energy_export_tariff2_kwh", "value": 2000, "unit": "Wh"},
                "1-0:1.7.0": {"name": "power_import_kw", "value": 0.461, "unit": "kW"},
                "1-0:3.7.0": {"name": "reactive_power_import_kvar", "value": 0.12, "unit": null},
                "1-0:32.7.0": {"name": "voltage_l1_v", "value": 231.4, "unit": "V"},
                "1-0:31.7.0": {"name": "current_l1_a", "value": 2, "unit": "A"},
                "0-1:24.1.0": {"name": "mbus1_device_type", "value": 3, "unit": null},
                "0-1:24.2.1": {"name": "mbus1_gas_m3", "value": 14239.771, "unit": "m3",
                               "timestamp": "2026-04-03T17:45:42+02:00"},
                "0-2:24.2.1": {"name": "mbus2_warm_water_m3", "value": 3.5, "unit": "m3",
                               "timestamp": null}
            }
        });
        let (reading, mbus) = Reading::from_json(&Arc::from("home"), &json, Some(1));
        let r = reading.unwrap();
        assert_eq!(r.ts, 1_775_231_671);
        assert_eq!(r.meter_id.as_deref(), Some("SAG1030700114004"));
        assert_eq!(r.energy_import_wh, Some(11_742_449));
        assert_eq!(r.energy_export_wh, Some(3500));
        assert_eq!(r.energy_export_t1_wh, Some(1500));
        assert_eq!(r.energy_export_t2_wh, Some(2000));
        assert_eq!(r.power_import_w, Some(461));
        assert_eq!(r.reactive_power_import_var, Some(120));
        assert_eq!(r.voltage_l1_dv, Some(2314));
        assert_eq!(r.current_l1_ca, Some(200));
        assert_eq!(r.power_export_w, None);
        assert_eq!(mbus.len(), 1, "{mbus:?}");
        assert_eq!(
            mbus_name(mbus[0].channel, &mbus[0].medium, &mbus[0].unit),
            "mbus1_gas_m3"
        );
        assert_eq!(mbus[0].ts, 1_775_231_142);
        assert_eq!(mbus[0].value, 14239.771);
        // Without a time of its own the telegram takes the time it was received.
        let mut no_time = json.clone();
        no_time["timestamp"] = Json::Null;
        let (reading, _) = Reading::from_json(&Arc::from("home"), &no_time, Some(7));
        assert_eq!(reading.unwrap().ts, 7);
        let (reading, mbus) = Reading::from_json(&Arc::from("home"), &no_time, None);
        assert!(reading.is_none());
        assert_eq!(mbus.len(), 1);
    }
}
