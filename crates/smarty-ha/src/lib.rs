//! Home Assistant's vocabulary for the values of a P1 telegram: the object-id slug, the
//! entity's readable name and its classes (`device_class`, `state_class`, unit,
//! `entity_category`). One definition for both places that announce values to Home Assistant
//! by MQTT discovery: the gateway (`smarty-mqtt`) and the dongle's firmware
//! (`firmware/logic`), so that a meter gets the same entities from either.
//!
//! `no_std` + `alloc`, no I/O. Each caller describes a value as an [`Entity`] from its own
//! typed model (the gateway's `ValueId`, the dongle's `NamedValue`).
//!
//! ```
//! use smarty_ha::{Entity, classes, display_name};
//! use smarty_p1::registry::Kind;
//! let voltage = Entity {
//!     name: "voltage_l{n}",
//!     channel: 0,
//!     kind: Kind::Voltage,
//!     medium: None,
//!     number: true,
//!     unit: Some("V"),
//!     unit_word: None,
//! };
//! assert_eq!(display_name(&Entity { name: "voltage_l1", ..voltage }), "Voltage L1");
//! let c = classes(&voltage);
//! assert_eq!((c.device_class, c.state_class), (Some("voltage"), Some("measurement")));
//! ```

#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString as _};
use alloc::vec::Vec;

use smarty_p1::registry::{Kind, Medium};

/// A name reduced to `[a-z0-9_]` (lower case, anything else becomes `_`), for MQTT object ids
/// and metric names: `SAG1030700012701` → `sag1030700012701`, `my-meter` → `my_meter`.
///
/// ```
/// assert_eq!(smarty_ha::slug(" My-Meter "), "my_meter");
/// ```
pub fn slug(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// One value as Home Assistant's discovery sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entity<'a> {
    /// The registry name of its OBIS code (`voltage_l1`, `mbus{n}_reading`).
    pub name: &'a str,
    /// The OBIS code's B group: the M-Bus channel of an M-Bus value, else 0.
    pub channel: u8,
    /// What it measures.
    pub kind: Kind,
    /// The medium of an M-Bus reading (gas, water, heat…), when known.
    pub medium: Option<Medium>,
    /// Whether it is a number (else text or a time).
    pub number: bool,
    /// Its unit in Home Assistant's spelling (`kWh`, `m³`), when it has one.
    pub unit: Option<&'a str>,
    /// A unit the entity's name must carry, as a word (`gj`): a unit that is not known, or
    /// the unit of a value that is not a number. `None` for a known unit of a number, which
    /// Home Assistant shows itself.
    pub unit_word: Option<&'a str>,
}

/// A readable entity name: the registry name in words with the M-Bus channel and medium, the
/// unit of a number left out (`voltage_l1` → `Voltage L1`, M-Bus 1 gas reading →
/// `M-Bus 1 gas`).
///
/// ```
/// use smarty_ha::{Entity, display_name};
/// use smarty_p1::registry::{Kind, Medium};
/// let gas = Entity {
///     name: "mbus{n}",
///     channel: 1,
///     kind: Kind::MbusReading,
///     medium: Some(Medium::Gas),
///     number: true,
///     unit: Some("m³"),
///     unit_word: None,
/// };
/// assert_eq!(display_name(&gas), "M-Bus 1 gas");
/// ```
pub fn display_name(entity: &Entity<'_>) -> String {
    let channel = entity.channel;
    let mut words: Vec<String> = entity
        .name
        .split('_')
        .map(|word| match word {
            "mbus{n}" => format!("M-Bus {channel}"),
            _ => word.replace("{n}", &channel.to_string()),
        })
        .collect();
    if let Some(medium) = entity.medium {
        words.extend(medium.as_str().split('_').map(String::from));
    }
    // A unit that is not known stays, as sent: it may be part of what the value is.
    if let Some(word) = entity.unit_word {
        words.push(String::from(word));
    }
    let words: Vec<String> = words
        .into_iter()
        .map(|word| {
            let phase = word
                .strip_prefix('l')
                .filter(|n| n.len() == 1 && n.parse::<u8>().is_ok());
            if let Some(n) = phase {
                format!("L{n}")
            } else if word == "id" || word == "p1" || word == "crc" {
                word.to_ascii_uppercase()
            } else {
                word
            }
        })
        .collect();
    let mut text = words.join(" ");
    if let Some(first) = text.get(..1) {
        text = first.to_ascii_uppercase() + &text[1..];
    }
    text
}

/// Home Assistant's classes of one value (plain data: the gateway's own entities, the
/// reference-power guard's, build theirs too).
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

/// `device_class`, `state_class`, unit and category of `entity`, from its kind, unit and
/// M-Bus medium. Home Assistant rejects a unit its device class does not know: an unknown
/// unit stays a plain unit without a class.
pub fn classes(entity: &Entity<'_>) -> Classes {
    let diagnostic = Some("diagnostic");
    let kind = entity.kind;
    if !entity.number {
        return Classes {
            device_class: (kind == Kind::Timestamp).then_some("timestamp"),
            entity_category: match kind {
                Kind::Message => None,
                _ => diagnostic,
            },
            ..Classes::default()
        };
    }
    let unit = entity.unit;
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
    let (device_class, state_class, entity_category) = match kind {
        Kind::Energy | Kind::ReactiveEnergy => (by_unit(unit), Some("total_increasing"), None),
        Kind::Power
        | Kind::ReactivePower
        | Kind::ApparentPower
        | Kind::Voltage
        | Kind::Current
        | Kind::Frequency => (by_unit(unit), Some("measurement"), None),
        Kind::PowerFactor => (Some("power_factor"), Some("measurement"), None),
        Kind::Threshold => (by_unit(unit), None, diagnostic),
        Kind::Count => (None, Some("total_increasing"), diagnostic),
        Kind::MbusReading => {
            let class = match unit {
                Some("m³") => match entity.medium {
                    Some(Medium::Gas) => Some("gas"),
                    Some(Medium::Water | Medium::WarmWater | Medium::HotWater) => Some("water"),
                    _ => Some("volume"),
                },
                other => by_unit(other),
            };
            (class, Some("total_increasing"), None)
        }
        Kind::Tariff => (None, None, None),
        _ => (None, None, diagnostic),
    };
    Classes {
        unit: unit.map(String::from),
        device_class,
        state_class,
        entity_category,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(name: &'static str, kind: Kind, unit: Option<&'static str>) -> Entity<'static> {
        Entity {
            name,
            channel: 0,
            kind,
            medium: None,
            number: true,
            unit,
            unit_word: None,
        }
    }

    #[test]
    fn classes_follow_the_kind_the_unit_and_the_medium() {
        let energy = classes(&number("energy_import", Kind::Energy, Some("kWh")));
        assert_eq!(energy.device_class, Some("energy"));
        assert_eq!(energy.state_class, Some("total_increasing"));
        assert_eq!(energy.unit.as_deref(), Some("kWh"));
        let pf = classes(&number("power_factor", Kind::PowerFactor, None));
        assert_eq!(pf.device_class, Some("power_factor"));
        let water = Entity {
            medium: Some(Medium::Water),
            channel: 2,
            ..number("mbus{n}", Kind::MbusReading, Some("m³"))
        };
        assert_eq!(classes(&water).device_class, Some("water"));
        assert_eq!(display_name(&water), "M-Bus 2 water");
        // An unknown unit: no class, the unit kept, and in the name.
        let odd = Entity {
            unit_word: Some("pulses"),
            ..number("mbus{n}", Kind::MbusReading, Some("pulses"))
        };
        assert_eq!(classes(&odd).device_class, None);
        assert_eq!(display_name(&odd), "M-Bus 0 pulses");
        let text = Entity {
            number: false,
            ..number("equipment_id", Kind::Identifier, None)
        };
        assert_eq!(classes(&text).entity_category, Some("diagnostic"));
        assert_eq!(display_name(&text), "Equipment ID");
    }
}
