//! One value of a telegram: what it is ([`ValueId`]: OBIS code, registry entry, M-Bus device,
//! unit), and what it reads ([`ValueData`]).
//!
//! Every output derives what it shows from the typed identity, never from the value's name:
//! the standard name and JSON keys ([`ValueId::name`], `energy_import_kwh`, `mbus1_gas_m3`,
//! docs/formats.md), Home Assistant's classes and units, metric names and labels, the API's
//! field metadata and the store's columns.

use std::fmt;

use smarty_p1::registry::{self, Channel, Kind, Medium, ObisDef};
use smarty_p1::{DataObject, Decimal, Name, Obis, Telegram, Timestamp, Value};

use super::time::instant;
use super::unit::Unit;

/// The M-Bus device on one channel of a telegram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbusDevice {
    /// The M-Bus channel (OBIS group B, 1–4 on P1).
    pub channel: u8,
    /// Its medium, from its device type `0-n:24.1.0`; `None` when the telegram does not say.
    pub medium: Option<Medium>,
}

/// What a value is, independent of what it reads: its OBIS code and registry entry (name,
/// kind, description), the M-Bus device of an M-Bus channel's code, and its unit.
#[derive(Debug, Clone)]
pub struct ValueId {
    obis: Obis,
    def: &'static ObisDef,
    mbus: Option<MbusDevice>,
    /// The medium the name carries (M-Bus readings only; [`Medium::Other`] when unknown).
    name_medium: Option<Medium>,
    unit: Option<Unit>,
}

impl PartialEq for ValueId {
    fn eq(&self, other: &ValueId) -> bool {
        // The registry entry follows from the code.
        (self.obis, self.mbus, self.name_medium, &self.unit)
            == (other.obis, other.mbus, other.name_medium, &other.unit)
    }
}

/// The medium of an M-Bus reading in its name: the channel's, [`Medium::Other`] when the
/// telegram does not say; `None` for every other value (as `smarty_p1::Telegram::name_of`).
fn name_medium(def: &ObisDef, obis: Obis, channel_medium: Option<Medium>) -> Option<Medium> {
    (def.kind == Kind::MbusReading && obis.a == 0)
        .then(|| channel_medium.unwrap_or(Medium::Other(0)))
}

fn mbus_device(def: &ObisDef, obis: Obis, medium: Option<Medium>) -> Option<MbusDevice> {
    (def.b == Channel::Mbus).then_some(MbusDevice {
        channel: obis.b,
        medium,
    })
}

impl ValueId {
    /// The identity of a data line of `telegram`; `None` for codes the registry does not know.
    /// Its unit is the one sent, else the medium's usual one (M-Bus readings), else the
    /// registry's: the unit its name carries.
    pub fn of(telegram: &Telegram<'_>, object: &DataObject<'_>) -> Option<ValueId> {
        Self::of_value(telegram, object, &object.value())
    }

    /// [`ValueId::of`] for an object whose value is at hand (`value` is `object.value()`), so
    /// that it is not converted again.
    pub fn of_value<'a>(
        telegram: &Telegram<'a>,
        object: &DataObject<'a>,
        value: &Value<'a>,
    ) -> Option<ValueId> {
        let def = object.def?;
        let name = telegram.name_of_value(object, value)?;
        Some(ValueId {
            obis: object.obis,
            def,
            mbus: mbus_device(def, object.obis, telegram.medium(object.obis.b)),
            name_medium: name.medium(),
            unit: name.unit().map(Unit::parse),
        })
    }

    /// The identity of code `obis` with the unit `sent` (`None` when none was sent) in a
    /// telegram whose channel `obis.b` has the medium `channel_medium`: the same as
    /// [`ValueId::of`] of such a line, for values that come without their telegram (the JSON
    /// lines of `smarty import`); `None` for codes the registry does not know.
    pub fn from_parts(
        obis: Obis,
        channel_medium: Option<Medium>,
        sent: Option<&str>,
    ) -> Option<ValueId> {
        let def = registry::lookup(obis)?;
        let name_medium = name_medium(def, obis, channel_medium);
        let unit = sent
            .or_else(|| name_medium.and_then(|m| m.default_unit()))
            .or(def.unit);
        Some(ValueId {
            obis,
            def,
            mbus: mbus_device(def, obis, channel_medium),
            name_medium,
            unit: unit.map(Unit::parse),
        })
    }

    /// The value of code `obis` in `unit` (the store's columns); `None` for codes the
    /// registry does not know.
    pub fn of_code(obis: Obis, unit: Unit) -> Option<ValueId> {
        let def = registry::lookup(obis)?;
        Some(ValueId {
            obis,
            def,
            mbus: mbus_device(def, obis, None),
            name_medium: name_medium(def, obis, None),
            unit: Some(unit),
        })
    }

    /// The reading of the M-Bus device on `channel` (1–9), of `medium` (`None`: unknown), in
    /// `unit` (a stored M-Bus channel). Its code is taken to be `0-n:24.2.1`, the reading of
    /// DSMR and Smarty (e-MUCS sends `0-n:24.2.3`, DSMR 2.2 `0-n:24.3.0`: the same name).
    pub fn mbus_reading(channel: u8, medium: Option<Medium>, unit: Option<Unit>) -> ValueId {
        let obis = Obis::new(0, channel, 24, 2, 1);
        let def = registry::lookup(obis).expect("0-n:24.2.1 is in the registry");
        ValueId {
            obis,
            def,
            mbus: mbus_device(def, obis, medium),
            name_medium: name_medium(def, obis, medium),
            unit,
        }
    }

    /// The OBIS code.
    pub fn obis(&self) -> Obis {
        self.obis
    }

    /// The registry entry: name template, kind, the specification's unit and description.
    pub fn def(&self) -> &'static ObisDef {
        self.def
    }

    /// What it measures.
    pub fn kind(&self) -> Kind {
        self.def.kind
    }

    /// The M-Bus device, for the codes of an M-Bus channel (`0-n:…`).
    pub fn mbus(&self) -> Option<MbusDevice> {
        self.mbus
    }

    /// The medium of an M-Bus reading ([`Medium::Other`] when the telegram does not say);
    /// `None` for any other value.
    pub fn reading_medium(&self) -> Option<Medium> {
        self.name_medium
    }

    /// The unit: as sent, else the medium's usual one (M-Bus readings), else the
    /// specification's; `None` when there is none.
    pub fn unit(&self) -> Option<&Unit> {
        self.unit.as_ref()
    }

    /// The standard name, unit included: `energy_import_kwh`, `voltage_l1_v`,
    /// `mbus1_gas_m3` (docs/formats.md).
    pub fn name(&self) -> Name<'_> {
        Name::new(
            self.def.name,
            self.obis.b,
            self.name_medium,
            self.unit.as_ref().map(Unit::as_name_part),
        )
    }

    /// The channel of a value of an M-Bus device: the registry names them `mbus{n}_…`
    /// (readings, device types, ids, valves; not the relays `0-n:96.3.10`).
    pub fn device_channel(&self) -> Option<u8> {
        self.def
            .name
            .starts_with(MBUS_PREFIX)
            .then_some(self.obis.b)
    }

    /// The name of a value of an M-Bus device without its channel (`mbus_gas_m3`,
    /// `mbus_device_type`), to go with the channel as a separate label; `None` for other
    /// values.
    pub fn name_without_channel(&self) -> Option<String> {
        let rest = self.def.name.strip_prefix(MBUS_PREFIX)?;
        let rest = Name::new(
            rest,
            self.obis.b,
            self.name_medium,
            self.unit.as_ref().map(Unit::as_name_part),
        );
        Some(format!("mbus{rest}"))
    }

    /// `true` for a register that only grows (energy, reactive energy, event counts, M-Bus
    /// readings): its changes over a period are increases, not averages.
    pub fn is_cumulative(&self) -> bool {
        matches!(
            self.kind(),
            Kind::Energy | Kind::ReactiveEnergy | Kind::Count | Kind::MbusReading
        )
    }

    /// The phase of an electricity code, 1–3: group C 21–40 is L1, 41–60 L2, 61–80 L3
    /// (IEC 62056-61).
    pub fn phase(&self) -> Option<u8> {
        if self.obis.a != 1 {
            return None;
        }
        match self.obis.c {
            21..=40 => Some(1),
            41..=60 => Some(2),
            61..=80 => Some(3),
            _ => None,
        }
    }

    /// Whether energy or power flows from the grid (import) or to it (export): group C
    /// (within its phase's block of 20) 1, 3, 9 are active, reactive and apparent import (+),
    /// 2, 4, 10 their export (−) (IEC 62056-61).
    pub fn direction(&self) -> Option<Direction> {
        if self.obis.a != 1 {
            return None;
        }
        let c = self.obis.c;
        let quantity = if (21..=80).contains(&c) {
            (c - 1) % 20 + 1
        } else {
            c
        };
        match quantity {
            1 | 3 | 9 => Some(Direction::Import),
            2 | 4 | 10 => Some(Direction::Export),
            _ => None,
        }
    }
}

/// The medium whose [`Medium::as_str`] is `name` (as value names and the store write it);
/// `None` for `reading` (an unknown medium) or anything else.
pub fn medium_named(name: &str) -> Option<Medium> {
    (0..=u8::MAX)
        .map(Medium::from_device_type)
        .filter(|m| !matches!(m, Medium::Other(_)))
        .find(|m| m.as_str() == name)
}

/// The registry names the values of an M-Bus device `mbus{n}_…`.
const MBUS_PREFIX: &str = "mbus{n}";

/// Which way energy flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the grid to the household (`+`).
    Import,
    /// From the household to the grid (`−`).
    Export,
}

impl Direction {
    /// `import` or `export`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Import => "import",
            Direction::Export => "export",
        }
    }
}

/// What a value reads.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueData {
    /// A number exactly as sent (`6.695`), with its capture time for an M-Bus reading.
    Number {
        /// The number.
        value: Decimal,
        /// When an M-Bus device was read (not when the telegram was sent); `None` for other
        /// values and for placeholder times.
        captured: Option<jiff::Timestamp>,
    },
    /// Text (ids, versions, messages), decoded.
    Text(String),
    /// A time: the telegram's own (`0-0:1.0.0`).
    Time(Timestamp),
}

impl ValueData {
    /// The number, when it is one (exact decimals become the nearest `f64`).
    pub fn number(&self) -> Option<f64> {
        match self {
            ValueData::Number { value, .. } => Some(value.to_f64()),
            _ => None,
        }
    }
}

impl fmt::Display for ValueData {
    /// The decimal text of a number (`6.695`), the text, or a time as RFC 3339 with its offset.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueData::Number { value, .. } => write!(f, "{value}"),
            ValueData::Text(text) => f.write_str(text),
            ValueData::Time(t) => f.write_str(&super::time::rfc3339(t)),
        }
    }
}

/// One value of a telegram under its standard name.
#[derive(Debug, Clone, PartialEq)]
pub struct TelegramValue {
    /// What it is.
    pub id: ValueId,
    /// Its standard name ([`ValueId::name`], computed once): `energy_import_kwh`.
    pub name: String,
    /// The OBIS code as sent (`1-0:1.8.0`), the key of the value in the JSON object of
    /// docs/formats.md.
    pub code: String,
    /// What it reads.
    pub data: ValueData,
}

impl TelegramValue {
    /// A value of `id` reading `data`, its code as sent `code`.
    pub fn new(id: ValueId, code: String, data: ValueData) -> TelegramValue {
        TelegramValue {
            name: id.name().to_string(),
            id,
            code,
            data,
        }
    }
}

/// Every value of `telegram` that has a standard name and a number, text or time, in the order
/// of its lines (lines the registry does not know, empty values and placeholders are
/// left out: the JSON object of docs/formats.md has them all).
pub fn values_of(telegram: &Telegram<'_>) -> Vec<TelegramValue> {
    let mut values = Vec::with_capacity(telegram.objects().len());
    each_value(telegram, true, |id, object, data| {
        values.push(TelegramValue::new(id, object.code.to_owned(), data));
    });
    values
}

/// The numbers of [`values_of`] (texts and times left out), without their names and codes
/// as strings: what the store keeps of a telegram, at a fraction of the cost (a fleet worker
/// builds one per frame).
pub fn numbers_of(telegram: &Telegram<'_>) -> Vec<(ValueId, ValueData)> {
    let mut values = Vec::with_capacity(telegram.objects().len());
    each_value(telegram, false, |id, _, data| values.push((id, data)));
    values
}

/// Calls `f` with each value of `telegram` as [`values_of`] gives them; `texts`: texts and
/// times too, not only numbers.
fn each_value<'a>(
    telegram: &Telegram<'a>,
    texts: bool,
    mut f: impl FnMut(ValueId, &DataObject<'a>, ValueData),
) {
    for object in telegram.objects() {
        let value = object.value();
        let data = match value {
            Value::Number(q) => ValueData::Number {
                value: q.value,
                captured: None,
            },
            Value::TimedNumber { quantity, time } => ValueData::Number {
                value: quantity.value,
                captured: time.as_ref().and_then(instant),
            },
            _ if !texts => continue,
            Value::Text(t) => ValueData::Text(t.to_owned()),
            Value::OctetString(s) => match s.text() {
                Some(text) => ValueData::Text(text),
                None => continue,
            },
            Value::Timestamp(Some(t)) => ValueData::Time(t),
            _ => continue,
        };
        let Some(id) = ValueId::of_value(telegram, object, &value) else {
            continue;
        };
        f(id, object, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smarty_p1::{Decoder, DecoderConfig};

    const TELEGRAM: &[u8] =
        b"/Lux5\\253663629_D\r\n\r\n1-3:0.2.8(42)\r\n0-0:1.0.0(260403175431S)\r\n\
0-0:42.0.0(53414731303330373030313134303034)\r\n1-0:1.8.0(000006.695*kWh)\r\n\
1-0:3.7.0(00.000)\r\n1-0:22.7.0(00.120*kW)\r\n0-1:24.1.0(003)\r\n\
0-1:24.2.1(260403174542S)(14239.771*m3)\r\n0-1:96.1.0(3232323241424344313233343536373839)\r\n\
0-2:24.2.1(260403174542S)(00001.250)\r\n!";

    fn values() -> Vec<TelegramValue> {
        values_of(&smarty_p1::parse(TELEGRAM).unwrap())
    }

    fn find<'a>(values: &'a [TelegramValue], name: &str) -> &'a TelegramValue {
        values
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn values_carry_their_identity_and_reading() {
        let values = values();
        let energy = find(&values, "energy_import_kwh");
        assert_eq!(energy.id.kind(), Kind::Energy);
        assert_eq!(energy.id.obis(), Obis::new(1, 0, 1, 8, 0));
        assert_eq!(energy.id.unit().unwrap().symbol(), "kWh");
        assert_eq!(energy.data.to_string(), "6.695");
        assert_eq!(energy.id.direction(), Some(Direction::Import));
        assert!(energy.id.is_cumulative());
        // Without a unit sent, the registry's.
        let reactive = find(&values, "reactive_power_import_kvar");
        assert_eq!(reactive.id.unit().unwrap().symbol(), "kvar");
        let l1 = find(&values, "power_export_l1_kw");
        assert_eq!(
            (l1.id.phase(), l1.id.direction()),
            (Some(1), Some(Direction::Export))
        );
        let gas = find(&values, "mbus1_gas_m3");
        assert_eq!(gas.code, "0-1:24.2.1");
        assert_eq!(
            gas.id.mbus(),
            Some(MbusDevice {
                channel: 1,
                medium: Some(Medium::Gas)
            })
        );
        assert_eq!(gas.id.device_channel(), Some(1));
        assert_eq!(
            gas.id.name_without_channel().as_deref(),
            Some("mbus_gas_m3")
        );
        let ValueData::Number { captured, .. } = gas.data else {
            panic!("a number")
        };
        assert_eq!(
            captured.map(|t| t.to_string()).as_deref(),
            Some("2026-04-03T15:45:42Z")
        );
        // A channel without a device type: the medium is unknown, and so is the unit.
        let other = find(&values, "mbus2_reading");
        assert_eq!(other.id.reading_medium(), Some(Medium::Other(0)));
        assert_eq!(other.id.unit(), None);
        let id = find(&values, "mbus1_equipment_id");
        assert_eq!(id.data, ValueData::Text("2222ABCD123456789".into()));
        assert_eq!(id.id.reading_medium(), None);
        assert_eq!(
            find(&values, "timestamp").data.to_string(),
            "2026-04-03T17:54:31+02:00"
        );
        assert_eq!(
            find(&values, "meter_id").data,
            ValueData::Text("SAG1030700114004".into())
        );
    }

    #[test]
    fn identities_from_parts_are_those_of_the_telegram() {
        let telegram = smarty_p1::parse(TELEGRAM).unwrap();
        for object in telegram.objects() {
            let Some(id) = ValueId::of(&telegram, object) else {
                continue;
            };
            let sent = object.value().quantity().and_then(|q| q.unit);
            let from_parts =
                ValueId::from_parts(object.obis, telegram.medium(object.obis.b), sent).unwrap();
            assert_eq!(from_parts, id, "{}", object.code);
        }
    }

    /// Every name the application derives is the core's name of the line, for every
    /// telegram of the test data.
    #[test]
    fn names_are_the_cores_names() {
        let data = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../smarty-p1/tests/data/telegrams"
        );
        let mut checked = 0;
        for entry in std::fs::read_dir(data).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "txt") {
                continue;
            }
            let mut decoder = Decoder::new(DecoderConfig::default());
            decoder.push(&std::fs::read(&path).unwrap());
            while let Some(result) = decoder.finish() {
                let Ok(decoded) = result else { continue };
                let telegram = &decoded.telegram;
                for object in telegram.objects() {
                    let Some(name) = telegram.name_of(object) else {
                        continue;
                    };
                    let id = ValueId::of(telegram, object).unwrap();
                    assert_eq!(id.name().to_string(), name.to_string());
                    let value = object.value();
                    let sent = value
                        .quantity()
                        .and_then(|q| q.unit)
                        .or_else(|| value.numbers().next().and_then(|q| q.unit));
                    let parts =
                        ValueId::from_parts(object.obis, telegram.medium(object.obis.b), sent);
                    assert_eq!(parts.unwrap().name().to_string(), name.to_string());
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "{checked}");
    }

    #[test]
    fn a_stored_channel_is_named_as_its_readings() {
        let gas = ValueId::mbus_reading(1, Some(Medium::Gas), Some(Unit::parse("m3")));
        assert_eq!(gas.name().to_string(), "mbus1_gas_m3");
        let unknown = ValueId::mbus_reading(4, None, Some(Unit::parse("gj")));
        assert_eq!(unknown.name().to_string(), "mbus4_reading_gj");
        let energy = ValueId::of_code(Obis::new(1, 0, 1, 8, 1), Unit::parse("kWh")).unwrap();
        assert_eq!(energy.name().to_string(), "energy_import_tariff1_kwh");
    }
}
