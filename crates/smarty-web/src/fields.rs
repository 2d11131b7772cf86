//! What the API says about each value a meter sends (`fields` of `/api/meters`): its label,
//! unit, quantity kind, phase, direction, M-Bus channel and medium, OBIS code and registry
//! description, so that a client never derives them from the value's name.
//!
//! Everything here comes from the typed identity of each value ([`ValueId`]): of a
//! telegram's value, of a store column, of a stored M-Bus channel.

use serde::Serialize;
use smarty_p1::registry::{Kind, Medium};

use smarty_model::value::{TelegramValue, ValueId};
use smarty_store::query::MbusChannel;
use smarty_store::reading::COLUMNS;

/// The metadata of one value, as `fields` of `/api/meters` give it (docs/api.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldMeta {
    /// The value's name in `values`, series and totals: `power_import_l1_kw`, `mbus1_gas_m3`.
    pub name: String,
    /// What to call it: `Power import L1`, `Gas`.
    pub label: String,
    /// Its unit as written for people (`kW`, `m³`, `GJ`), `None` for a number without one.
    pub unit: Option<String>,
    /// What it measures: the registry's kind in snake_case (`power`, `energy`, `voltage`,
    /// `current`, `reactive_power`, `mbus_reading`, …).
    pub kind: &'static str,
    /// `true` for a register that only grows (energy, M-Bus readings, counts): its series give
    /// the increase in each period, not an average.
    pub cumulative: bool,
    /// The phase, `L1` … `L3`, for per-phase values.
    pub phase: Option<&'static str>,
    /// `import` or `export` (energy and power flowing from or to the grid), when it is either.
    pub direction: Option<&'static str>,
    /// The M-Bus device, for the values of an M-Bus channel.
    pub mbus: Option<MbusMeta>,
    /// The OBIS code as the meter sends it; `None` for a stored M-Bus channel no telegram has
    /// shown since the start.
    pub obis: Option<String>,
    /// What the specifications call it (the registry's description), when the code is known.
    pub description: Option<&'static str>,
    /// `true` when `/api/meters/{meter}/series?field=NAME` takes it (the store keeps it).
    pub series: bool,
}

/// The M-Bus device of a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MbusMeta {
    /// The M-Bus channel, 1–4.
    pub channel: u8,
    /// `gas`, `water`, `warm_water`, `hot_water`, `heat`, `cooling`, `electricity`; `None`
    /// when the meter does not say (no or an unknown device type).
    pub medium: Option<&'static str>,
}

/// The metadata of the value named `name` with identity `id`. `code` is its OBIS code as
/// the meter sends it, when known: a stored M-Bus channel's is not (its name does not say
/// which code of readings it came from), and then neither is the registry's description.
fn describe(id: &ValueId, name: &str, code: Option<String>, series: bool) -> FieldMeta {
    FieldMeta {
        name: name.to_owned(),
        label: label(id),
        unit: id.unit().map(|u| u.symbol().to_owned()),
        kind: kind_name(id.kind()),
        cumulative: id.is_cumulative(),
        phase: id
            .phase()
            .map(|phase| ["L1", "L2", "L3"][usize::from(phase - 1)]),
        direction: id.direction().map(|d| d.as_str()),
        mbus: id.mbus().map(|m| MbusMeta {
            channel: m.channel,
            medium: m.medium.filter(is_known).map(|m| m.as_str()),
        }),
        description: code.is_some().then_some(id.def().description),
        obis: code,
        series,
    }
}

/// An M-Bus reading is called by its medium (`Gas`, `Warm water`); anything else by its
/// registry name in words (`power_import_l1` → `Power import L1`).
fn label(id: &ValueId) -> String {
    if id.kind() == Kind::MbusReading
        && let Some(device) = id.mbus()
    {
        return match device.medium.filter(is_known) {
            Some(medium) => sentence(&medium.as_str().replace('_', " ")),
            None => "M-Bus reading".to_owned(),
        };
    }
    words(id.def().name, id.obis().b)
}

/// The metadata of every value a meter's latest telegram carries (numbers only, as in
/// `values`), then of every series the store keeps for it that the telegram lacks: the
/// store's columns and its M-Bus channels. `stored` is `false` when the store is off (no
/// value is a series then).
pub fn fields(
    latest: Option<&[TelegramValue]>,
    stored: bool,
    mbus: &[MbusChannel],
) -> Vec<FieldMeta> {
    let columns = if stored { COLUMNS } else { &[] };
    let channels: Vec<(String, &MbusChannel)> = if stored {
        mbus.iter().map(|c| (c.name(), c)).collect()
    } else {
        Vec::new()
    };
    let is_series = |name: &str| {
        columns.iter().any(|c| c.series() == name) || channels.iter().any(|(n, _)| n == name)
    };
    let mut out: Vec<FieldMeta> = latest
        .unwrap_or_default()
        .iter()
        .filter(|v| v.data.number().is_some())
        .map(|v| describe(&v.id, &v.name, Some(v.code.clone()), is_series(&v.name)))
        .collect();
    for column in columns {
        if !out.iter().any(|f| f.name == column.series()) {
            let code = column.obis.to_string();
            out.push(describe(&column.id(), column.series(), Some(code), true));
        }
    }
    for (name, channel) in &channels {
        if !out.iter().any(|f| &f.name == name) {
            out.push(describe(&channel.id(), name, None, true));
        }
    }
    out
}

/// `false` for [`Medium::Other`]: a device type without a name.
fn is_known(medium: &Medium) -> bool {
    !matches!(medium, Medium::Other(_))
}

/// The registry's kind as the API names it (snake_case): a word of the API, kept here so
/// that renaming a Rust variant never changes an answer.
fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Energy => "energy",
        Kind::ReactiveEnergy => "reactive_energy",
        Kind::Power => "power",
        Kind::ReactivePower => "reactive_power",
        Kind::ApparentPower => "apparent_power",
        Kind::Voltage => "voltage",
        Kind::Current => "current",
        Kind::PowerFactor => "power_factor",
        Kind::Frequency => "frequency",
        Kind::Threshold => "threshold",
        Kind::Count => "count",
        Kind::State => "state",
        Kind::Identifier => "identifier",
        Kind::Message => "message",
        Kind::Version => "version",
        Kind::Timestamp => "timestamp",
        Kind::Tariff => "tariff",
        Kind::MbusReading => "mbus_reading",
        Kind::MbusDeviceType => "mbus_device_type",
        Kind::Log => "log",
        // A kind added to the core later: named here once it is known.
        _ => "other",
    }
}

/// A registry name in words: `power_import_l1` → `Power import L1`, `mbus{n}_valve_state`
/// on channel 2 → `M-Bus 2 valve state`, `energy_import_tariff1` → `Energy import tariff 1`.
fn words(template: &str, channel: u8) -> String {
    let name = template.replace("{n}", &channel.to_string());
    let words: Vec<String> = name
        .split('_')
        .map(|word| {
            let digits = word.trim_start_matches(|c: char| c.is_ascii_alphabetic());
            let letters = &word[..word.len() - digits.len()];
            match (letters, digits) {
                ("mbus", n) if !n.is_empty() => format!("M-Bus {n}"),
                ("l" | "q" | "p", n) if !n.is_empty() => word.to_ascii_uppercase(),
                ("id" | "ean", "") => word.to_ascii_uppercase(),
                (letters, n) if !letters.is_empty() && !n.is_empty() => format!("{letters} {n}"),
                _ => word.to_owned(),
            }
        })
        .collect();
    sentence(&words.join(" "))
}

/// The first letter in upper case.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use smarty_p1::{Decoder, DecoderConfig};

    use super::*;
    use smarty_model::event::TelegramEvent;
    use smarty_model::unit::Unit;
    use smarty_model::value::medium_named;

    fn event(telegram: &[u8]) -> TelegramEvent {
        let mut decoder = Decoder::new(DecoderConfig::default());
        decoder.push(telegram);
        let decoded = decoder.finish().unwrap().unwrap();
        TelegramEvent::new(&Arc::from("home"), &decoded, std::time::SystemTime::now())
    }

    const TELEGRAM: &[u8] = b"/Lux5\\253663629_D\r\n\r\n1-3:0.2.8(42)\r\n\
0-0:1.0.0(260403175431S)\r\n0-0:42.0.0(53414731303330373030313134303034)\r\n\
1-0:1.8.0(000006.695*kWh)\r\n1-0:2.7.0(00.000*kW)\r\n1-0:22.7.0(00.120*kW)\r\n\
1-0:52.7.0(231.0*V)\r\n1-0:3.7.0(00.000*kvar)\r\n0-0:96.7.21(00003)\r\n\
0-1:24.1.0(003)\r\n0-1:24.2.1(260403174542S)(14239.771*m3)\r\n0-2:24.1.0(007)\r\n\
0-2:24.2.1(260403174542S)(00012.345*m3)\r\n0-3:24.1.0(004)\r\n\
0-3:24.2.1(260403174542S)(00001.250*GJ)\r\n!";

    fn find<'a>(fields: &'a [FieldMeta], name: &str) -> &'a FieldMeta {
        fields
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no {name} in {fields:#?}"))
    }

    #[test]
    fn telegram_values_are_described_from_their_codes() {
        let event = event(TELEGRAM);
        let fields = fields(Some(&event.values), false, &[]);
        let energy = find(&fields, "energy_import_kwh");
        assert_eq!(energy.label, "Energy import");
        assert_eq!(energy.unit.as_deref(), Some("kWh"));
        assert_eq!(energy.kind, "energy");
        assert!(energy.cumulative && !energy.series);
        assert_eq!(energy.direction, Some("import"));
        assert_eq!(energy.phase, None);
        assert_eq!(energy.obis.as_deref(), Some("1-0:1.8.0"));
        assert!(
            energy
                .description
                .unwrap()
                .contains("imported active energy")
        );

        let l1 = find(&fields, "power_export_l1_kw");
        assert_eq!(
            (l1.label.as_str(), l1.phase, l1.direction, l1.kind),
            ("Power export L1", Some("L1"), Some("export"), "power")
        );
        assert!(!l1.cumulative);
        let voltage = find(&fields, "voltage_l2_v");
        assert_eq!(
            (
                voltage.label.as_str(),
                voltage.unit.as_deref(),
                voltage.phase
            ),
            ("Voltage L2", Some("V"), Some("L2"))
        );
        assert_eq!(voltage.direction, None);
        let reactive = find(&fields, "reactive_power_import_kvar");
        assert_eq!(reactive.kind, "reactive_power");
        assert_eq!(reactive.direction, Some("import"));
        let failures = find(&fields, "power_failures");
        assert_eq!(
            (failures.unit.as_deref(), failures.cumulative),
            (None, true)
        );

        let gas = find(&fields, "mbus1_gas_m3");
        assert_eq!(gas.label, "Gas");
        assert_eq!(gas.unit.as_deref(), Some("m³"));
        assert_eq!(gas.kind, "mbus_reading");
        assert_eq!(
            gas.mbus,
            Some(MbusMeta {
                channel: 1,
                medium: Some("gas")
            })
        );
        assert_eq!(gas.obis.as_deref(), Some("0-1:24.2.1"));
        assert_eq!(find(&fields, "mbus2_water_m3").label, "Water");
        let heat = find(&fields, "mbus3_heat_gj");
        assert_eq!(
            (heat.label.as_str(), heat.unit.as_deref()),
            ("Heat", Some("GJ"))
        );
        // The device type is a number of the channel too, with its channel but no unit.
        let device = find(&fields, "mbus1_device_type");
        assert_eq!(device.label, "M-Bus 1 device type");
        assert_eq!(device.mbus.as_ref().unwrap().channel, 1);
        // Texts are not values.
        assert!(fields.iter().all(|f| f.name != "meter_id"));
    }

    #[test]
    fn stored_series_are_described_without_a_telegram() {
        let mbus = [
            MbusChannel {
                channel: 1,
                medium: "gas".into(),
                unit: "m3".into(),
            },
            MbusChannel {
                channel: 4,
                medium: "reading".into(),
                unit: "gj".into(),
            },
        ];
        let fields = fields(None, true, &mbus);
        assert_eq!(fields.len(), COLUMNS.len() + 2);
        assert!(fields.iter().all(|f| f.series));
        let power = find(&fields, "power_import_l3_kw");
        assert_eq!(
            (power.label.as_str(), power.unit.as_deref(), power.phase),
            ("Power import L3", Some("kW"), Some("L3"))
        );
        assert_eq!(power.obis.as_deref(), Some("1-0:61.7.0"));
        let tariff = find(&fields, "energy_export_tariff2_kwh");
        assert_eq!(tariff.label, "Energy export tariff 2");
        assert_eq!(tariff.direction, Some("export"));
        let gas = find(&fields, "mbus1_gas_m3");
        assert_eq!(
            (gas.label.as_str(), gas.unit.as_deref(), gas.obis.as_deref()),
            ("Gas", Some("m³"), None)
        );
        assert_eq!(gas.mbus.as_ref().unwrap().medium, Some("gas"));
        let unknown = find(&fields, "mbus4_reading_gj");
        assert_eq!(unknown.label, "M-Bus reading");
        assert_eq!(unknown.unit.as_deref(), Some("GJ"));
        assert_eq!(unknown.mbus.as_ref().unwrap().medium, None);
    }

    #[test]
    fn live_and_stored_values_are_listed_once() {
        let event = event(TELEGRAM);
        let mbus = [MbusChannel {
            channel: 1,
            medium: "gas".into(),
            unit: "m3".into(),
        }];
        let fields = fields(Some(&event.values), true, &mbus);
        for name in ["energy_import_kwh", "mbus1_gas_m3", "voltage_l1_v"] {
            assert_eq!(
                fields.iter().filter(|f| f.name == name).count(),
                1,
                "{name}"
            );
            assert!(find(&fields, name).series, "{name}");
        }
        // From the telegram: the code as sent.
        assert_eq!(
            find(&fields, "mbus1_gas_m3").obis.as_deref(),
            Some("0-1:24.2.1")
        );
        // Sent but not stored.
        assert!(!find(&fields, "mbus2_water_m3").series);
        assert!(!find(&fields, "power_failures").series);
    }

    #[test]
    fn every_medium_and_kind_has_its_name() {
        for code in [3, 7, 4, 6, 0x15, 0x0A, 2] {
            let medium = Medium::from_device_type(code);
            assert_eq!(medium_named(medium.as_str()), Some(medium));
        }
        assert_eq!(medium_named("reading"), None);
        assert_eq!(kind_name(Kind::MbusDeviceType), "mbus_device_type");
        assert_eq!(kind_name(Kind::Power), "power");
        assert_eq!(Unit::parse("m3").symbol(), "m³");
        assert_eq!(Unit::parse("kWh").symbol(), "kWh");
        assert_eq!(Unit::parse("l/h").symbol(), "l/h");
        assert_eq!(words("reactive_energy_q1", 0), "Reactive energy Q1");
        assert_eq!(words("p1_version", 0), "P1 version");
        assert_eq!(words("relay{n}_state", 2), "Relay 2 state");
    }
}
