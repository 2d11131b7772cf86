//! Home Assistant MQTT discovery: one `sensor` config per value, retained on
//! `<discovery_prefix>/sensor/smarty_<device>/<name>/config`, naming the value's state topic,
//! unit, device class, state class, entity category, availability (the gateway's and the
//! meter's) and device (the meter, or its M-Bus device). Pure functions of the telegram.
//!
//! The reference-power guard's entities ([`guard_discovery_messages`]) belong to the meter's
//! device too: sensors of its figures, a `binary_sensor` "Will exceed reference power" and an
//! `event` entity of its alerts, announced with the meter's first guard event.

use serde_json::{Map, Value as Json, json};
pub use smarty_ha::Classes;
use smarty_ha::Entity;

use super::config::MqttConfig;
use super::topics;
use smarty_model::event::TelegramEvent;
use smarty_model::slug::slug;
use smarty_model::value::{TelegramValue, ValueData};
use smarty_store::queue::Publication;

/// The device key of a meter: its id (lower case, `[a-z0-9_]`), else its configured name.
pub fn device_key(event: &TelegramEvent) -> String {
    let id = event
        .meter_id
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(&event.meter);
    slug(id)
}

fn is_number(value: &TelegramValue) -> bool {
    matches!(value.data, ValueData::Number { .. })
}

/// The unit of a number in Home Assistant's spelling (the unit table's symbols: `kWh`,
/// `m³`): as sent, else the medium's usual one, else the specification's.
fn ha_unit(value: &TelegramValue) -> Option<String> {
    if !is_number(value) {
        return None;
    }
    value.id.unit().map(|u| u.symbol().to_owned())
}

/// The word a value's name carries for its unit: a unit that is not known, or the unit of a
/// value that is not a number.
fn unit_word(value: &TelegramValue) -> Option<String> {
    value
        .id
        .unit()
        .filter(|unit| !(is_number(value) && unit.known().is_some()))
        .map(|unit| unit.slug().into_owned())
}

/// Calls `f` with `value` as Home Assistant's discovery sees it.
fn with_entity<T>(value: &TelegramValue, f: impl FnOnce(&Entity<'_>) -> T) -> T {
    let (unit, word) = (ha_unit(value), unit_word(value));
    let id = &value.id;
    f(&Entity {
        name: id.def().name,
        channel: id.obis().b,
        kind: id.kind(),
        medium: id.reading_medium(),
        number: is_number(value),
        unit: unit.as_deref(),
        unit_word: word.as_deref(),
    })
}

/// A readable entity name ([`smarty_ha::display_name`]): the registry name in words with the
/// M-Bus channel and medium, the unit of a number left out (`voltage_l1_v` → `Voltage L1`,
/// `mbus1_gas_m3` → `M-Bus 1 gas`).
pub fn display_name(value: &TelegramValue) -> String {
    with_entity(value, smarty_ha::display_name)
}

/// `device_class`, `state_class`, unit and category of `value`, from its kind, unit and
/// M-Bus medium ([`smarty_ha::classes`]).
pub fn classes(value: &TelegramValue) -> Classes {
    with_entity(value, smarty_ha::classes)
}

/// The `device` block of a meter (or of the M-Bus device on `channel`): identifiers, name,
/// manufacturer, serial number, model (the telegram's identification line, or the M-Bus
/// device's medium), firmware version (the P1 version); an M-Bus device names the meter as
/// `via_device`.
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
            device.insert("model".into(), json!(event.header));
            if let Some(version) = &event.version {
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
            let on_channel = |v: &&TelegramValue| v.id.device_channel() == Some(n);
            // Its equipment identifier, `0-n:96.1.0` (`0-n:96.1.1` on e-MUCS).
            if let Some(ValueData::Text(id)) = event
                .values
                .iter()
                .filter(on_channel)
                .find(|v| {
                    let obis = v.id.obis();
                    (obis.c, obis.d) == (96, 1) && obis.e <= 1
                })
                .map(|v| &v.data)
            {
                device.insert("serial_number".into(), json!(id));
            }
            if let Some(medium) = event
                .values
                .iter()
                .filter(on_channel)
                .find_map(|v| v.id.reading_medium())
            {
                device.insert(
                    "model".into(),
                    json!(format!("M-Bus {} meter", medium.as_str())),
                );
            }
        }
    }
    Json::Object(device)
}

/// The discovery message of one value of `event`.
pub fn discovery_message(
    config: &MqttConfig,
    event: &TelegramEvent,
    value: &TelegramValue,
) -> Publication {
    let key = device_key(event);
    let classes = classes(value);
    let channel = value.id.device_channel();
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
    insert_classes(&mut c, &classes);
    finish(config, event, &key, channel, &mut c);
    Publication {
        topic: topics::discovery(config, &key, &value.name),
        payload: serde_json::to_vec(&Json::Object(c)).expect("JSON serialises"),
        qos: config.qos,
        retain: true,
    }
}

/// Unit, device class, state class and entity category, those that are set.
fn insert_classes(c: &mut Map<String, Json>, classes: &Classes) {
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
}

/// What every entity of a meter's device carries: availability (the gateway's and the
/// meter's), the device block (the meter's, or its M-Bus device's on `channel`) and origin.
fn finish(
    config: &MqttConfig,
    event: &TelegramEvent,
    key: &str,
    channel: Option<u8>,
    c: &mut Map<String, Json>,
) {
    c.insert(
        "availability".into(),
        json!([
            {"topic": topics::gateway_status(config)},
            {"topic": topics::availability(config, &event.meter)},
        ]),
    );
    c.insert("availability_mode".into(), json!("all"));
    c.insert("device".into(), device(event, key, channel));
    c.insert(
        "origin".into(),
        json!({
            "name": "smarty",
            "sw_version": env!("CARGO_PKG_VERSION"),
        }),
    );
}

/// A sensor of one of the guard's figures.
struct GuardSensor {
    /// The figure's name: its topic is `<prefix>/<meter>/guard/<figure>`.
    figure: &'static str,
    /// The entity's name.
    name: &'static str,
    /// `unit_of_measurement`.
    unit: &'static str,
    /// `state_class`.
    state_class: Option<&'static str>,
    /// `entity_category`.
    entity_category: Option<&'static str>,
}

impl GuardSensor {
    /// A kW sensor of device class `power`, a measurement.
    const fn power(figure: &'static str, name: &'static str) -> GuardSensor {
        GuardSensor {
            figure,
            name,
            unit: "kW",
            state_class: Some("measurement"),
            entity_category: None,
        }
    }

    fn classes(&self) -> Classes {
        Classes {
            unit: Some(self.unit.to_owned()),
            device_class: Some(if self.unit == "kWh" {
                "energy"
            } else {
                "power"
            }),
            state_class: self.state_class,
            entity_category: self.entity_category,
        }
    }
}

/// The sensors of the guard's numeric figures.
const GUARD_SENSORS: [GuardSensor; 6] = [
    // Resets to 0 every quarter hour: Home Assistant's statistics take a decrease of a
    // `total_increasing` sensor as the start of a new cycle.
    GuardSensor {
        figure: "energy_import_kwh",
        name: "Quarter-hour energy so far",
        unit: "kWh",
        state_class: Some("total_increasing"),
        entity_category: None,
    },
    GuardSensor::power("average_power_kw", "Quarter-hour average so far"),
    GuardSensor::power("projected_average_kw", "Quarter-hour projected average"),
    GuardSensor::power("headroom_kw", "Headroom"),
    // A setting, like the meter's power threshold: no statistics.
    GuardSensor {
        state_class: None,
        entity_category: Some("diagnostic"),
        ..GuardSensor::power("reference_power_kw", "Reference power")
    },
    GuardSensor::power("month_peak_kw", "Month's peak quarter hour"),
];

/// The kinds of the guard's alerts ([`smarty_model::guard::Alert::kind`]): the `event_types`
/// of its event entity.
const ALERT_KINDS: [&str; 3] = ["headroom_low", "will_exceed", "new_monthly_peak"];

/// The discovery messages of the reference-power guard of `event`'s meter (the meter's
/// device, announced when its first guard event arrives), retained:
///
/// - sensors on `<discovery_prefix>/sensor/smarty_<device>/guard_<figure>/config` for
///   "Quarter-hour energy so far" (kWh), "Quarter-hour average so far", "Quarter-hour
///   projected average", "Headroom", "Reference power" (diagnostic) and "Month's peak quarter
///   hour" (kW), each reading `<prefix>/<meter>/guard/<figure>`, and "Quarter-hour verdict"
///   (device class `enum`: `fine`, `will_exceed`, `exceeded`);
/// - the binary sensor "Will exceed reference power" (device class `problem`, `ON`/`OFF`) on
///   `<discovery_prefix>/binary_sensor/smarty_<device>/guard_will_exceed/config`;
/// - the event entity "Reference-power alert" (event types `headroom_low`, `will_exceed`,
///   `new_monthly_peak`) on `<discovery_prefix>/event/smarty_<device>/guard_alert/config`,
///   reading `<prefix>/<meter>/guard/alert`.
///
/// Unique ids are `smarty_<device>_guard_<figure>`, stable like those of the values.
pub fn guard_discovery_messages(config: &MqttConfig, event: &TelegramEvent) -> Vec<Publication> {
    let key = device_key(event);
    let meter = &event.meter;
    let entity = |component: &str, id: &str, name: &str, fields: Map<String, Json>| {
        let object_id = format!("guard_{id}");
        let mut c = Map::new();
        c.insert("name".into(), json!(name));
        c.insert(
            "unique_id".into(),
            json!(format!("smarty_{key}_{object_id}")),
        );
        c.extend(fields);
        finish(config, event, &key, None, &mut c);
        Publication {
            topic: topics::discovery_of(config, component, &key, &object_id),
            payload: serde_json::to_vec(&Json::Object(c)).expect("JSON serialises"),
            qos: config.qos,
            retain: true,
        }
    };
    let state_topic = |figure: &str| {
        let mut c = Map::new();
        c.insert(
            "state_topic".into(),
            json!(topics::guard_figure(config, meter, figure)),
        );
        c
    };
    let mut out = Vec::with_capacity(GUARD_SENSORS.len() + 3);
    for sensor in &GUARD_SENSORS {
        let mut c = state_topic(sensor.figure);
        insert_classes(&mut c, &sensor.classes());
        out.push(entity("sensor", sensor.figure, sensor.name, c));
    }
    let mut c = state_topic("verdict");
    c.insert("device_class".into(), json!("enum"));
    c.insert("options".into(), json!(["fine", "will_exceed", "exceeded"]));
    out.push(entity("sensor", "verdict", "Quarter-hour verdict", c));
    let mut c = state_topic("will_exceed");
    c.insert("device_class".into(), json!("problem"));
    c.insert("payload_on".into(), json!("ON"));
    c.insert("payload_off".into(), json!("OFF"));
    out.push(entity(
        "binary_sensor",
        "will_exceed",
        "Will exceed reference power",
        c,
    ));
    let mut c = state_topic("alert");
    c.insert("event_types".into(), json!(ALERT_KINDS));
    out.push(entity("event", "alert", "Reference-power alert", c));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::telegram_event;
    use smarty_model::guard::Alert;
    use smarty_model::value::values_of;

    /// The value named `name` of a telegram of `lines`.
    fn value(lines: &[&str], name: &str) -> TelegramValue {
        let mut text = String::from("/TST5\\test\r\n\r\n");
        for line in lines {
            text.push_str(line);
            text.push_str("\r\n");
        }
        text.push('!');
        let telegram = smarty_p1::parse(text.as_bytes()).unwrap();
        values_of(&telegram)
            .into_iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
    }

    const GAS: &str = "0-1:24.1.0(003)";
    const WATER: &str = "0-2:24.1.0(007)";
    const HEAT: &str = "0-3:24.1.0(004)";

    #[test]
    fn units_are_spelled_as_home_assistant_spells_them() {
        let unit = |line: &str, name: &str| classes(&value(&[GAS, line], name)).unit;
        assert_eq!(
            unit("1-0:1.8.0(000001.000*kWh)", "energy_import_kwh"),
            Some("kWh".into())
        );
        assert_eq!(
            unit("1-0:1.8.0(000001.000*KWH)", "energy_import_kwh"),
            Some("kWh".into())
        );
        assert_eq!(
            unit("0-1:24.2.1(260403174542S)(00001.000*m3)", "mbus1_gas_m3"),
            Some("m³".into())
        );
        assert_eq!(
            unit(
                "1-0:3.8.0(000001.000*kvarh)",
                "reactive_energy_import_kvarh"
            ),
            Some("kvarh".into())
        );
        // Unknown units are kept as sent.
        assert_eq!(
            unit("1-0:1.8.0(000001.000*furlong)", "energy_import_furlong"),
            Some("furlong".into())
        );
        // Without a unit: the specification's, or the medium's.
        assert_eq!(
            unit("1-0:1.7.0(00.461)", "power_import_kw"),
            Some("kW".into())
        );
        assert_eq!(
            unit("0-1:24.2.1(260403174542S)(00001.000)", "mbus1_gas_m3"),
            Some("m³".into())
        );
        assert_eq!(unit("0-0:96.7.21(00003)", "power_failures"), None);
        assert_eq!(
            unit(
                "0-0:96.1.1(4B384547303034303436333935353037)",
                "equipment_id"
            ),
            None
        );
    }

    #[test]
    fn names_are_readable() {
        let name = |line: &str, name: &str| display_name(&value(&[GAS, WATER, line], name));
        assert_eq!(
            name("1-0:1.8.0(000001.000*kWh)", "energy_import_kwh"),
            "Energy import"
        );
        assert_eq!(name("1-0:32.7.0(230.0*V)", "voltage_l1_v"), "Voltage L1");
        assert_eq!(
            name("0-2:24.2.1(260403174542S)(00001.000*m3)", "mbus2_water_m3"),
            "M-Bus 2 water"
        );
        assert_eq!(name("1-3:0.2.8(42)", "p1_version"), "P1 version");
        assert_eq!(
            name("0-1:24.1.0(003)", "mbus1_device_type"),
            "M-Bus 1 device type"
        );
        assert_eq!(
            name("1-0:1.8.1(000001.000*kWh)", "energy_import_tariff1_kwh"),
            "Energy import tariff1"
        );
        // An unknown unit stays: it may be part of what the value is.
        assert_eq!(
            name("1-0:1.8.0(000001.000*furlong)", "energy_import_furlong"),
            "Energy import furlong"
        );
        assert_eq!(
            name("0-0:42.0.0(53414731303330373030313134303034)", "meter_id"),
            "Meter ID"
        );
        assert_eq!(name("0-0:96.13.0(4869)", "text_message"), "Text message");
    }

    #[test]
    fn device_classes_follow_kind_unit_and_medium() {
        let c = |lines: &[&str], name: &str| {
            let c = classes(&value(lines, name));
            (c.device_class, c.state_class, c.entity_category)
        };
        let reading = |channel: u8, unit: &str| {
            format!("0-{channel}:24.2.1(260403174542S)(00001.000*{unit})")
        };
        assert_eq!(
            c(&[WATER, &reading(2, "m3")], "mbus2_water_m3"),
            (Some("water"), Some("total_increasing"), None)
        );
        assert_eq!(
            c(&[GAS, &reading(1, "m3")], "mbus1_gas_m3"),
            (Some("gas"), Some("total_increasing"), None)
        );
        assert_eq!(
            c(&[HEAT, &reading(3, "GJ")], "mbus3_heat_gj"),
            (Some("energy"), Some("total_increasing"), None)
        );
        // No device type: a volume of something.
        assert_eq!(
            c(&[&reading(4, "m3")], "mbus4_reading_m3"),
            (Some("volume"), Some("total_increasing"), None)
        );
        assert_eq!(
            c(&["1-0:13.7.0(0.999)"], "power_factor"),
            (Some("power_factor"), Some("measurement"), None)
        );
        assert_eq!(
            c(&["0-0:17.0.0(999.9*kW)"], "power_threshold_kw"),
            (Some("power"), None, Some("diagnostic"))
        );
        assert_eq!(
            c(&["0-0:96.7.21(00003)"], "power_failures"),
            (None, Some("total_increasing"), Some("diagnostic"))
        );
        assert_eq!(
            c(&["0-0:96.14.0(0002)"], "tariff_indicator"),
            (None, None, Some("diagnostic"))
        );
        assert_eq!(
            c(&["0-0:1.0.0(260403175431S)"], "timestamp"),
            (Some("timestamp"), None, Some("diagnostic"))
        );
        assert_eq!(
            c(&["0-0:96.13.0(4869)"], "text_message"),
            (None, None, None)
        );
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
                "model": event.header,
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

    /// A device without a device type and a reading without a unit: the model names the
    /// unknown medium ("M-Bus mbus1_reading meter" before the values were typed).
    #[test]
    fn an_m_bus_device_of_unknown_medium() {
        let mut event = (*telegram_event(1)).clone();
        event.values = vec![value(
            &["0-1:24.2.1(260403174542S)(00001.000)"],
            "mbus1_reading",
        )];
        let model = device(&event, "k", Some(1))["model"].clone();
        assert_eq!(model, "M-Bus reading meter");
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
    fn the_guard_entities_belong_to_the_meter_device() {
        let event = telegram_event(1);
        let config = MqttConfig::default();
        let messages = guard_discovery_messages(&config, &event);
        let key = "sag1030700012701";
        let topics: Vec<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
        let sensor = |id: &str| format!("homeassistant/sensor/smarty_{key}/guard_{id}/config");
        assert_eq!(
            topics,
            [
                sensor("energy_import_kwh"),
                sensor("average_power_kw"),
                sensor("projected_average_kw"),
                sensor("headroom_kw"),
                sensor("reference_power_kw"),
                sensor("month_peak_kw"),
                sensor("verdict"),
                format!("homeassistant/binary_sensor/smarty_{key}/guard_will_exceed/config"),
                format!("homeassistant/event/smarty_{key}/guard_alert/config"),
            ]
        );
        // Apart from the values' configs: no topic of a value is taken.
        for value in &event.values {
            assert!(!topics.contains(&topics::discovery(&config, key, &value.name).as_str()));
        }
        let configs: Vec<Json> = messages
            .iter()
            .map(|m| {
                assert!(m.retain);
                serde_json::from_slice(&m.payload).unwrap()
            })
            .collect();
        for c in &configs {
            assert_eq!(c["device"], device(&event, key, None));
            assert_eq!(c["availability_mode"], "all");
            let id = c["unique_id"].as_str().unwrap();
            assert!(id.starts_with("smarty_sag1030700012701_guard_"), "{id}");
        }
        let field = |c: &Json, name: &str| c[name].as_str().map(str::to_owned);
        let summary: Vec<[Option<String>; 5]> = configs
            .iter()
            .map(|c| {
                [
                    field(c, "state_topic"),
                    field(c, "unit_of_measurement"),
                    field(c, "device_class"),
                    field(c, "state_class"),
                    field(c, "entity_category"),
                ]
            })
            .collect();
        let row =
            |topic: &str, unit: Option<&str>, dc: &str, sc: Option<&str>, cat: Option<&str>| {
                [
                    Some(format!("smarty/home/guard/{topic}")),
                    unit.map(str::to_owned),
                    Some(dc.to_owned()),
                    sc.map(str::to_owned),
                    cat.map(str::to_owned),
                ]
            };
        let m = Some("measurement");
        assert_eq!(
            summary,
            [
                row(
                    "energy_import_kwh",
                    Some("kWh"),
                    "energy",
                    Some("total_increasing"),
                    None
                ),
                row("average_power_kw", Some("kW"), "power", m, None),
                row("projected_average_kw", Some("kW"), "power", m, None),
                row("headroom_kw", Some("kW"), "power", m, None),
                row(
                    "reference_power_kw",
                    Some("kW"),
                    "power",
                    None,
                    Some("diagnostic")
                ),
                row("month_peak_kw", Some("kW"), "power", m, None),
                row("verdict", None, "enum", None, None),
                row("will_exceed", None, "problem", None, None),
                [
                    Some("smarty/home/guard/alert".into()),
                    None,
                    None,
                    None,
                    None
                ],
            ]
        );
        assert_eq!(
            configs[6]["options"],
            json!(["fine", "will_exceed", "exceeded"])
        );
        assert_eq!(configs[7]["name"], "Will exceed reference power");
        assert_eq!(
            (&configs[7]["payload_on"], &configs[7]["payload_off"]),
            (&json!("ON"), &json!("OFF"))
        );
        assert_eq!(configs[8]["event_types"], json!(ALERT_KINDS));
        // The event types are the kinds of the model's alerts.
        let alerts = [
            Alert::HeadroomLow {
                headroom_kw: 0.5,
                threshold_kw: 1.0,
            },
            Alert::WillExceed {
                projected_average_kw: 4.0,
                reference_power_kw: 3.0,
            },
            Alert::NewMonthlyPeak {
                peak_kw: 5.0,
                previous_kw: 4.0,
            },
        ];
        assert_eq!(alerts.map(|a| a.kind()), ALERT_KINDS);
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
