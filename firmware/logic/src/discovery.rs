//! Home Assistant MQTT discovery, as the gateway announces it (`smarty-mqtt`'s
//! `discovery.rs`): one retained `sensor` config per value on
//! `<discovery_prefix>/sensor/smarty_<device>/<name>/config`, with the same names, unique ids
//! (`smarty_<device>_<name>`), units, device classes, state classes, entity categories and
//! device blocks (the meter, and each M-Bus device `via_device` the meter).
//!
//! One difference: availability. The gateway lists its own `<prefix>/status` and the meter's
//! `<prefix>/<meter>/availability`; the dongle is the meter's only source, so its configs list
//! the meter's availability alone (the dongle's last will, see [`crate::mqtt`]).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use smarty_ha::Entity;

use crate::json::{self, Object};
use crate::p1::{NamedValue, Publication, PublishConfig, QoS, Snapshot, ValueData, known_unit};

/// Home Assistant's default discovery prefix.
pub const DEFAULT_DISCOVERY_PREFIX: &str = "homeassistant";

pub use smarty_ha::{Classes, slug};

/// The device key of a meter: its id (slugged), else the meter's name.
pub fn device_key(snapshot: &Snapshot, config: &PublishConfig) -> String {
    let id = snapshot
        .meter_id
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(&config.meter);
    slug(id)
}

/// Calls `f` with `value` as Home Assistant's discovery sees it (the gateway's rules,
/// shared through `smarty-ha`).
fn with_entity<T>(value: &NamedValue, f: impl FnOnce(&Entity<'_>) -> T) -> T {
    let number = value.is_number();
    let unit = value.unit_symbol();
    let word: Option<String> = value
        .unit
        .as_deref()
        .filter(|unit| !(number && known_unit(unit).is_some()))
        .map(|unit| match known_unit(unit) {
            Some((slug, _)) => slug.into(),
            None => unit
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect(),
        });
    f(&Entity {
        name: value.def.name,
        channel: value.obis.b,
        kind: value.kind(),
        medium: value.medium,
        number,
        unit,
        unit_word: word.as_deref(),
    })
}

/// A readable entity name ([`smarty_ha::display_name`]): the registry name in words with the
/// M-Bus channel and medium, the unit of a number left out (`voltage_l1_v` → `Voltage L1`,
/// `mbus1_gas_m3` → `M-Bus 1 gas`).
pub fn display_name(value: &NamedValue) -> String {
    with_entity(value, smarty_ha::display_name)
}

/// `device_class`, `state_class`, unit and category of `value`, from its kind, unit and
/// M-Bus medium ([`smarty_ha::classes`], the gateway's rules).
pub fn classes(value: &NamedValue) -> Classes {
    with_entity(value, smarty_ha::classes)
}

/// The `device` block (JSON) of the meter, or of its M-Bus device on `channel`.
pub fn device_json(
    snapshot: &Snapshot,
    config: &PublishConfig,
    key: &str,
    channel: Option<u8>,
) -> String {
    let main_id = format!("smarty_{key}");
    let mut out = String::new();
    let mut d = Object::new(&mut out);
    match channel {
        None => {
            let ids = d.key("identifiers");
            ids.push('[');
            json::string(ids, &main_id);
            ids.push(']');
            d.str("name", &format!("Smarty {}", config.meter));
            if let Some(id) = &snapshot.meter_id {
                if id.starts_with("SAG") {
                    d.str("manufacturer", "Sagemcom");
                }
                d.str("serial_number", id);
            }
            d.str("model", &snapshot.header);
            if let Some(version) = &snapshot.version {
                d.str("sw_version", version);
            }
        }
        Some(n) => {
            let ids = d.key("identifiers");
            ids.push('[');
            json::string(ids, &format!("{main_id}_mbus{n}"));
            ids.push(']');
            d.str("name", &format!("Smarty {} M-Bus {n}", config.meter));
            d.str("via_device", &main_id);
            let on_channel = |v: &&NamedValue| v.device_channel() == Some(n);
            let serial = snapshot
                .values
                .iter()
                .filter(on_channel)
                .find(|v| (v.obis.c, v.obis.d) == (96, 1) && v.obis.e <= 1);
            if let Some(ValueData::Text(id)) = serial.map(|v| &v.data) {
                d.str("serial_number", id);
            }
            if let Some(medium) = snapshot
                .values
                .iter()
                .filter(on_channel)
                .find_map(|v| v.medium)
            {
                d.str("model", &format!("M-Bus {} meter", medium.as_str()));
            }
        }
    }
    d.end();
    out
}

/// The discovery message of one value of `snapshot`, retained, on
/// `<discovery_prefix>/sensor/smarty_<device>/<name>/config`.
pub fn discovery_message(
    snapshot: &Snapshot,
    config: &PublishConfig,
    discovery_prefix: &str,
    value: &NamedValue,
) -> Publication {
    let key = device_key(snapshot, config);
    let classes = classes(value);
    let mut out = String::with_capacity(512);
    let mut c = Object::new(&mut out);
    c.str("name", &display_name(value));
    c.str("unique_id", &format!("smarty_{key}_{}", slug(&value.name)));
    c.str("state_topic", &config.topic(&value.name));
    if let Some(unit) = &classes.unit {
        c.str("unit_of_measurement", unit);
    }
    if let Some(class) = classes.device_class {
        c.str("device_class", class);
    }
    if let Some(class) = classes.state_class {
        c.str("state_class", class);
    }
    if let Some(category) = classes.entity_category {
        c.str("entity_category", category);
    }
    {
        let a = c.key("availability");
        a.push('[');
        let mut item = Object::new(a);
        item.str("topic", &config.availability_topic());
        item.end();
        a.push(']');
    }
    c.str("availability_mode", "all");
    c.raw(
        "device",
        &device_json(snapshot, config, &key, value.device_channel()),
    );
    {
        let origin = c.key("origin");
        let mut o = Object::new(origin);
        o.str("name", "smarty-dongle");
        o.str("sw_version", crate::VERSION);
        o.end();
    }
    c.end();
    Publication::new(
        format!(
            "{}/sensor/smarty_{key}/{}/config",
            discovery_prefix.trim_end_matches('/'),
            slug(&value.name)
        ),
        out.into_bytes(),
        true,
        QoS::AtLeastOnce,
    )
}

/// The discovery messages of every value of `snapshot`, in value order.
pub fn discovery_messages(
    snapshot: &Snapshot,
    config: &PublishConfig,
    discovery_prefix: &str,
) -> Vec<Publication> {
    snapshot
        .values
        .iter()
        .map(|v| discovery_message(snapshot, config, discovery_prefix, v))
        .collect()
}
