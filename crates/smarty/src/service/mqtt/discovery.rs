//! Home Assistant MQTT discovery: one `sensor` config per value, retained on
//! `<discovery_prefix>/sensor/smarty_<device>/<name>/config`, naming the value's state topic,
//! unit, device class, state class, entity category, availability (the gateway's and the
//! meter's) and device (the meter, or its M-Bus device). Pure functions of the telegram.

use serde_json::{Map, Value as Json, json};
use smarty_p1::registry::Kind;

use super::config::MqttConfig;
use super::queue::Publication;
use super::topics;
use crate::model::slug::slug;
use crate::service::event::{NamedValue, TelegramEvent, ValueData};

/// The device key of a meter: its id (lower case, `[a-z0-9_]`), else its configured name.
pub fn device_key(event: &TelegramEvent) -> String {
    let id = event
        .meter_id
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(&event.meter);
    slug(id)
}

/// Unit slugs as they end value names, with Home Assistant's spelling.
const UNITS: &[(&str, &str)] = &[
    ("kwh", "kWh"),
    ("wh", "Wh"),
    ("mwh", "MWh"),
    ("kvarh", "kvarh"),
    ("varh", "varh"),
    ("kw", "kW"),
    ("w", "W"),
    ("kvar", "kvar"),
    ("var", "var"),
    ("kva", "kVA"),
    ("va", "VA"),
    ("v", "V"),
    ("a", "A"),
    ("m3", "m³"),
    ("gj", "GJ"),
    ("mj", "MJ"),
    ("hz", "Hz"),
    ("s", "s"),
];

/// The unit of a value in Home Assistant's spelling: as sent, else from its name's suffix.
fn ha_unit(value: &NamedValue) -> Option<String> {
    let ValueData::Number { unit, .. } = &value.value else {
        return None;
    };
    match unit {
        Some(u) => {
            let key: String = u
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_lowercase();
            Some(
                UNITS
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or_else(|| u.clone(), |(_, ha)| (*ha).to_owned()),
            )
        }
        None => {
            let suffix = value.name.rsplit_once('_')?.1;
            UNITS
                .iter()
                .find(|(k, _)| *k == suffix)
                .map(|(_, ha)| (*ha).to_owned())
        }
    }
}

/// A readable entity name: `voltage_l1_v` → `Voltage L1`, `mbus1_gas_m3` → `M-Bus 1 gas`.
pub fn display_name(value: &NamedValue) -> String {
    let mut name = value.name.as_str();
    if matches!(value.value, ValueData::Number { .. })
        && let Some((stem, suffix)) = name.rsplit_once('_')
        && UNITS.iter().any(|(k, _)| *k == suffix)
    {
        name = stem;
    }
    let mut words = Vec::new();
    for word in name.split('_') {
        if let Some(n) = word
            .strip_prefix("mbus")
            .filter(|n| n.parse::<u8>().is_ok())
        {
            words.push(format!("M-Bus {n}"));
        } else if let Some(n) = word
            .strip_prefix('l')
            .filter(|n| n.len() == 1 && n.parse::<u8>().is_ok())
        {
            words.push(format!("L{n}"));
        } else if word == "id" || word == "p1" || word == "crc" {
            words.push(word.to_ascii_uppercase());
        } else {
            words.push(word.to_owned());
        }
    }
    let mut text = words.join(" ");
    if let Some(first) = text.get(..1) {
        text = first.to_ascii_uppercase() + &text[1..];
    }
    text
}

/// Home Assistant's classes of one value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Classes {
    /// `unit_of_measurement`.
    pub unit: Option<String>,
    /// `device_class`.
    pub device_class: Option<&'static str>,
    /// `state_class`.
    pub state_class: Option<&'static str>,
    /// `entity_category`.
    pub entity_category: Option<&'static str>,
}

/// The M-Bus channel of a value named `mbus<n>_…`.
fn mbus_channel(name: &str) -> Option<u8> {
    let rest = name.strip_prefix("mbus")?;
    let end = rest.find('_')?;
    rest[..end].parse().ok()
}

/// `device_class`, `state_class`, unit and category of `value`.
pub fn classes(value: &NamedValue) -> Classes {
    let diagnostic = Some("diagnostic");
    if let ValueData::Text(_) = value.value {
        return Classes {
            device_class: (value.kind == Kind::Timestamp).then_some("timestamp"),
            entity_category: match value.kind {
                Kind::Message => None,
                _ => diagnostic,
            },
            ..Classes::default()
        };
    }
    let unit = ha_unit(value);
    let by_unit = |unit: Option<&str>| match unit {
        Some("kWh" | "Wh" | "MWh" | "GJ" | "MJ") => Some("energy"),
        Some("kvarh" | "varh") => Some("reactive_energy"),
        Some("kW" | "W") => Some("power"),
        Some("kvar" | "var") => Some("reactive_power"),
        Some("kVA" | "VA") => Some("apparent_power"),
        Some("V") => Some("voltage"),
        Some("A") => Some("current"),
        Some("Hz") => Some("frequency"),
        _ => None,
    };
    let (device_class, state_class, entity_category) = match value.kind {
        Kind::Energy | Kind::ReactiveEnergy => {
            (by_unit(unit.as_deref()), Some("total_increasing"), None)
        }
        Kind::Power
        | Kind::ReactivePower
        | Kind::ApparentPower
        | Kind::Voltage
        | Kind::Current
        | Kind::Frequency => (by_unit(unit.as_deref()), Some("measurement"), None),
        Kind::PowerFactor => (Some("power_factor"), Some("measurement"), None),
        Kind::Threshold => (by_unit(unit.as_deref()), None, diagnostic),
        Kind::Count => (None, Some("total_increasing"), diagnostic),
        Kind::MbusReading => {
            let name = &value.name;
            let class = match unit.as_deref() {
                Some("m³") if name.contains("_gas_") => Some("gas"),
                Some("m³") if name.contains("water") => Some("water"),
                Some("m³") => Some("volume"),
                other => by_unit(other),
            };
            (class, Some("total_increasing"), None)
        }
        Kind::Tariff => (None, None, None),
        _ => (None, None, diagnostic),
    };
    // Home Assistant rejects a unit its device class does not know; keep unknown units as
    // plain units without a class.
    Classes {
        unit,
        device_class,
        state_class,
        entity_category,
    }
}

/// The `device` block of a meter (or of the M-Bus device on `channel`): identifiers, name,
/// manufacturer, serial number, model, firmware version; an M-Bus device names the meter
/// as `via_device`.
pub fn device(event: &TelegramEvent, key: &str, channel: Option<u8>) -> Json {
    let main_id = format!("smarty_{key}");
    let mut device = Map::new();
    match channel {
        None => {
            device.insert("identifiers".into(), json!([main_id]));
            device.insert("name".into(), json!(format!("Smarty {}", event.meter)));
            if let Some(id) = &event.meter_id {
                if id.starts_with("SAG") {
                    device.insert("manufacturer".into(), json!("Sagemcom"));
                }
                device.insert("serial_number".into(), json!(id));
            }
            if let Some(model) = event.json.get("header").and_then(Json::as_str) {
                device.insert("model".into(), json!(model));
            }
            if let Some(version) = event.json.get("version").filter(|v| !v.is_null()) {
                let version = version
                    .as_str()
                    .map_or_else(|| version.to_string(), str::to_owned);
                device.insert("sw_version".into(), json!(version));
            }
        }
        Some(n) => {
            device.insert("identifiers".into(), json!([format!("{main_id}_mbus{n}")]));
            device.insert(
                "name".into(),
                json!(format!("Smarty {} M-Bus {n}", event.meter)),
            );
            device.insert("via_device".into(), json!(main_id));
            let prefix = format!("mbus{n}_");
            if let Some(ValueData::Text(id)) = event
                .values
                .iter()
                .find(|v| v.name == format!("{prefix}equipment_id"))
                .map(|v| &v.value)
            {
                device.insert("serial_number".into(), json!(id));
            }
            if let Some(reading) = event
                .values
                .iter()
                .find(|v| v.kind == Kind::MbusReading && v.name.starts_with(&prefix))
            {
                let medium = reading.name[prefix.len()..]
                    .rsplit_once('_')
                    .map_or(reading.name.as_str(), |(m, _)| m);
                device.insert("model".into(), json!(format!("M-Bus {medium} meter")));
            }
        }
    }
    Json::Object(device)
}

/// The discovery message of one value of `event`.
pub fn discovery_message(
    config: &MqttConfig,
    event: &TelegramEvent,
    value: &NamedValue,
) -> Publication {
    let key = device_key(event);
    let classes = classes(value);
    let channel = mbus_channel(&value.name);
    let mut c = Map::new();
    c.insert("name".into(), json!(display_name(value)));
    c.insert(
        "unique_id".into(),
        json!(format!("smarty_{key}_{}", slug(&value.name))),
    );
    c.insert(
        "state_topic".into(),
        json!(topics::value(config, &event.meter, &value.name)),
    );
    if let Some(unit) = &classes.unit {
        c.insert("unit_of_measurement".into(), json!(unit));
    }
    if let Some(class) = classes.device_class {
        c.insert("device_class".into(), json!(class));
    }
    if let Some(class) = classes.state_class {
        c.insert("state_class".into(), json!(class));
    }
    if let Some(category) = classes.entity_category {
        c.insert("entity_category".into(), json!(category));
    }
    c.insert(
        "availability".into(),
        json!([
            {"topic": topics::gateway_status(config)},
            {"topic": topics::availability(config, &event.meter)},
        ]),
    );
    c.insert("availability_mode".into(), json!("all"));
    c.insert("device".into(), device(event, &key, channel));
    c.insert(
        "origin".into(),
        json!({
            "name": "smarty",
            "sw_version": env!("CARGO_PKG_VERSION"),
        }),
    );
    Publication {
        topic: topics::discovery(config, &key, &value.name),
        payload: serde_json::to_vec(&Json::Object(c)).expect("JSON serialises"),
        qos: config.qos,
        retain: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::mqtt::tests::telegram_event;

    fn number(name: &str, kind: Kind, unit: Option<&str>) -> NamedValue {
        NamedValue {
            name: name.into(),
            obis: "1-0:1.8.0".into(),
            code: smarty_p1::Obis::new(1, 0, 1, 8, 0),
            mbus: None,
            kind,
            value: ValueData::Number {
                value: 1.0,
                text: "1.000".into(),
                unit: unit.map(str::to_owned),
                timestamp: None,
            },
        }
    }

    fn text(name: &str, kind: Kind) -> NamedValue {
        NamedValue {
            name: name.into(),
            obis: "0-0:96.1.1".into(),
            code: smarty_p1::Obis::new(0, 0, 96, 1, 1),
            mbus: None,
            kind,
            value: ValueData::Text("x".into()),
        }
    }

    #[test]
    fn units_are_spelled_as_home_assistant_spells_them() {
        let unit = |unit: Option<&str>, name: &str| classes(&number(name, Kind::Energy, unit)).unit;
        assert_eq!(unit(Some("kWh"), "x"), Some("kWh".into()));
        assert_eq!(unit(Some("KWH"), "x"), Some("kWh".into()));
        assert_eq!(unit(Some("m3"), "x"), Some("m³".into()));
        assert_eq!(unit(Some("kvarh"), "x"), Some("kvarh".into()));
        // Unknown units are kept as sent.
        assert_eq!(unit(Some("furlong"), "x"), Some("furlong".into()));
        // Without a unit: from the name's suffix, if it is a unit.
        assert_eq!(unit(None, "power_import_kw"), Some("kW".into()));
        assert_eq!(unit(None, "mbus1_gas_m3"), Some("m³".into()));
        assert_eq!(unit(None, "something_else"), None);
        assert_eq!(classes(&text("meter_id", Kind::Identifier)).unit, None);
    }

    #[test]
    fn names_are_readable() {
        let name = |n: &str| display_name(&number(n, Kind::Energy, None));
        assert_eq!(name("energy_import_kwh"), "Energy import");
        assert_eq!(name("voltage_l1_v"), "Voltage L1");
        assert_eq!(name("mbus2_water_m3"), "M-Bus 2 water");
        assert_eq!(name("p1_version"), "P1 version");
        assert_eq!(name("crc"), "CRC");
        // A text keeps its last word: it is not a unit.
        assert_eq!(
            display_name(&text("meter_id", Kind::Identifier)),
            "Meter ID"
        );
        assert_eq!(display_name(&text("message_a", Kind::Message)), "Message a");
    }

    #[test]
    fn device_classes_follow_kind_and_unit() {
        let c = |value: NamedValue| {
            let c = classes(&value);
            (c.device_class, c.state_class, c.entity_category)
        };
        assert_eq!(
            c(number("mbus1_water_m3", Kind::MbusReading, Some("m3"))),
            (Some("water"), Some("total_increasing"), None)
        );
        assert_eq!(
            c(number("mbus1_heat_gj", Kind::MbusReading, Some("GJ"))),
            (Some("energy"), Some("total_increasing"), None)
        );
        assert_eq!(
            c(number("mbus3_thing_m3", Kind::MbusReading, Some("m3"))),
            (Some("volume"), Some("total_increasing"), None)
        );
        assert_eq!(
            c(number("power_factor", Kind::PowerFactor, None)),
            (Some("power_factor"), Some("measurement"), None)
        );
        assert_eq!(
            c(number("limiter_threshold_kw", Kind::Threshold, Some("kW"))),
            (Some("power"), None, Some("diagnostic"))
        );
        assert_eq!(
            c(number("power_failures", Kind::Count, None)),
            (None, Some("total_increasing"), Some("diagnostic"))
        );
        assert_eq!(c(number("tariff", Kind::Tariff, None)), (None, None, None));
        assert_eq!(
            c(text("timestamp", Kind::Timestamp)),
            (Some("timestamp"), None, Some("diagnostic"))
        );
        assert_eq!(c(text("message_text", Kind::Message)), (None, None, None));
    }

    #[test]
    fn classes_suit_home_assistant() {
        let event = telegram_event(1);
        let c = |name: &str| classes(event.value(name).unwrap_or_else(|| panic!("{name}")));
        let check = |name: &str, unit: Option<&str>, dc: Option<&str>, sc: Option<&str>| {
            let got = c(name);
            assert_eq!(
                (got.unit.as_deref(), got.device_class, got.state_class),
                (unit, dc, sc),
                "{name}"
            );
        };
        check(
            "energy_import_kwh",
            Some("kWh"),
            Some("energy"),
            Some("total_increasing"),
        );
        check(
            "energy_export_kwh",
            Some("kWh"),
            Some("energy"),
            Some("total_increasing"),
        );
        check(
            "reactive_energy_import_kvarh",
            Some("kvarh"),
            Some("reactive_energy"),
            Some("total_increasing"),
        );
        check(
            "power_import_kw",
            Some("kW"),
            Some("power"),
            Some("measurement"),
        );
        check(
            "reactive_power_export_kvar",
            Some("kvar"),
            Some("reactive_power"),
            Some("measurement"),
        );
        check(
            "voltage_l1_v",
            Some("V"),
            Some("voltage"),
            Some("measurement"),
        );
        check(
            "current_l2_a",
            Some("A"),
            Some("current"),
            Some("measurement"),
        );
        check(
            "mbus1_gas_m3",
            Some("m³"),
            Some("gas"),
            Some("total_increasing"),
        );
        check("meter_id", None, None, None);
        assert_eq!(c("meter_id").entity_category, Some("diagnostic"));
        assert_eq!(
            display_name(event.value("voltage_l1_v").unwrap()),
            "Voltage L1"
        );
        assert_eq!(
            display_name(event.value("mbus1_gas_m3").unwrap()),
            "M-Bus 1 gas"
        );
    }

    #[test]
    fn devices_are_the_meter_and_its_m_bus_devices() {
        let event = telegram_event(1);
        let key = device_key(&event);
        assert_eq!(key, "sag1030700012701");
        assert_eq!(
            device(&event, &key, None),
            json!({
                "identifiers": ["smarty_sag1030700012701"],
                "name": "Smarty home",
                "manufacturer": "Sagemcom",
                "serial_number": "SAG1030700012701",
                "model": event.json["header"],
                "sw_version": "42",
            })
        );
        assert_eq!(
            device(&event, &key, Some(1)),
            json!({
                "identifiers": ["smarty_sag1030700012701_mbus1"],
                "name": "Smarty home M-Bus 1",
                "via_device": "smarty_sag1030700012701",
                "serial_number": "FLO182370120350",
                "model": "M-Bus gas meter",
            })
        );
    }

    #[test]
    fn a_discovery_message_names_state_availability_and_device() {
        let event = telegram_event(1);
        let config = MqttConfig {
            qos: 2,
            ..MqttConfig::default()
        };
        let m = discovery_message(&config, &event, event.value("energy_import_kwh").unwrap());
        assert_eq!(
            m.topic,
            "homeassistant/sensor/smarty_sag1030700012701/energy_import_kwh/config"
        );
        assert_eq!((m.qos, m.retain), (2, true));
        let config_json: Json = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(
            config_json,
            json!({
                "name": "Energy import",
                "unique_id": "smarty_sag1030700012701_energy_import_kwh",
                "state_topic": "smarty/home/energy_import_kwh",
                "unit_of_measurement": "kWh",
                "device_class": "energy",
                "state_class": "total_increasing",
                "availability": [
                    {"topic": "smarty/status"},
                    {"topic": "smarty/home/availability"},
                ],
                "availability_mode": "all",
                "device": device(&event, "sag1030700012701", None),
                "origin": {"name": "smarty", "sw_version": env!("CARGO_PKG_VERSION")},
            })
        );
        let gas = discovery_message(&config, &event, event.value("mbus1_gas_m3").unwrap());
        let gas: Json = serde_json::from_slice(&gas.payload).unwrap();
        assert_eq!(
            gas["device"]["identifiers"][0],
            "smarty_sag1030700012701_mbus1"
        );
        assert_eq!(gas["device_class"], "gas");
    }

    #[test]
    fn a_meter_without_an_id_is_keyed_by_its_name() {
        let mut event = (*telegram_event(1)).clone();
        event.meter_id = None;
        assert_eq!(device_key(&event), "home");
        event.meter_id = Some("  ".into());
        assert_eq!(device_key(&event), "home");
    }
}
