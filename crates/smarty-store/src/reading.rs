//! One stored reading: the values of a telegram as integers in small units, and the M-Bus
//! readings it carries, from the telegram's typed values.

use std::sync::{Arc, LazyLock};

use smarty_p1::Obis;
use smarty_p1::registry::Medium;

use smarty_model::event::TelegramEvent;
use smarty_model::time::{unix, unix_of};
use smarty_model::unit::Unit;
use smarty_model::value::{TelegramValue, ValueData, ValueId, numbers_of};

/// What a column holds, which decides its unit and how it aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// An energy register (Wh, varh): aggregated as the increase per period.
    Energy,
    /// An instantaneous value (W, var, 0.1 V, 0.01 A): aggregated as sum, count, min, max.
    Instant,
}

/// A column of [`Reading`]: its SQL name, the OBIS code it stores, and the unit and scale it
/// is shown with.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// The column name in the tables and in [`Reading`] (`energy_import_wh`).
    pub name: &'static str,
    /// How it aggregates.
    pub aggregation: Aggregation,
    /// The OBIS code it stores (the totals fall back on the sum of the tariff registers).
    pub obis: Obis,
    /// The unit of series and exports (`kWh`, `kW`, `V`, `A`).
    pub unit: &'static str,
    /// Stored integer units per output unit (1000 Wh per kWh, 10 per V, 100 per A).
    pub scale: f64,
}

impl Column {
    /// What it stores: its code's value in its unit.
    pub fn id(&self) -> ValueId {
        ValueId::of_code(self.obis, Unit::parse(self.unit)).expect("columns store registry codes")
    }

    /// The name in series and exports: the standard name of its value
    /// (`energy_import_kwh`, `voltage_l1_v`).
    pub fn series(&self) -> &'static str {
        static NAMES: LazyLock<Vec<(&'static str, String)>> = LazyLock::new(|| {
            COLUMNS
                .iter()
                .map(|c| (c.name, c.id().name().to_string()))
                .collect()
        });
        NAMES
            .iter()
            .find(|(name, _)| *name == self.name)
            .map_or(self.name, |(_, series)| series.as_str())
    }
}

macro_rules! columns {
    ($( $(#[doc = $doc:literal])* $field:ident: $kind:ident, ($a:literal, $b:literal, $c:literal, $d:literal, $e:literal), $unit:literal, $scale:literal; )*) => {
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
                aggregation: Aggregation::$kind,
                obis: Obis::new($a, $b, $c, $d, $e),
                unit: $unit,
                scale: $scale,
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
    energy_import_wh: Energy, (1, 0, 1, 8, 0), "kWh", 1000.0;
    /// Active energy exported, Wh (`1-0:2.8.0`, or the sum of the tariff registers).
    energy_export_wh: Energy, (1, 0, 2, 8, 0), "kWh", 1000.0;
    /// Active energy imported in tariff 1, Wh (`1-0:1.8.1`).
    energy_import_t1_wh: Energy, (1, 0, 1, 8, 1), "kWh", 1000.0;
    /// Active energy imported in tariff 2, Wh (`1-0:1.8.2`).
    energy_import_t2_wh: Energy, (1, 0, 1, 8, 2), "kWh", 1000.0;
    /// Active energy exported in tariff 1, Wh (`1-0:2.8.1`).
    energy_export_t1_wh: Energy, (1, 0, 2, 8, 1), "kWh", 1000.0;
    /// Active energy exported in tariff 2, Wh (`1-0:2.8.2`).
    energy_export_t2_wh: Energy, (1, 0, 2, 8, 2), "kWh", 1000.0;
    /// Reactive energy imported, varh (`1-0:3.8.0`).
    reactive_energy_import_varh: Energy, (1, 0, 3, 8, 0), "kvarh", 1000.0;
    /// Reactive energy exported, varh (`1-0:4.8.0`).
    reactive_energy_export_varh: Energy, (1, 0, 4, 8, 0), "kvarh", 1000.0;
    /// Active power imported, W (`1-0:1.7.0`).
    power_import_w: Instant, (1, 0, 1, 7, 0), "kW", 1000.0;
    /// Active power exported, W (`1-0:2.7.0`).
    power_export_w: Instant, (1, 0, 2, 7, 0), "kW", 1000.0;
    /// Active power imported on L1, W (`1-0:21.7.0`).
    power_import_l1_w: Instant, (1, 0, 21, 7, 0), "kW", 1000.0;
    /// Active power imported on L2, W (`1-0:41.7.0`).
    power_import_l2_w: Instant, (1, 0, 41, 7, 0), "kW", 1000.0;
    /// Active power imported on L3, W (`1-0:61.7.0`).
    power_import_l3_w: Instant, (1, 0, 61, 7, 0), "kW", 1000.0;
    /// Active power exported on L1, W (`1-0:22.7.0`).
    power_export_l1_w: Instant, (1, 0, 22, 7, 0), "kW", 1000.0;
    /// Active power exported on L2, W (`1-0:42.7.0`).
    power_export_l2_w: Instant, (1, 0, 42, 7, 0), "kW", 1000.0;
    /// Active power exported on L3, W (`1-0:62.7.0`).
    power_export_l3_w: Instant, (1, 0, 62, 7, 0), "kW", 1000.0;
    /// Reactive power imported, var (`1-0:3.7.0`).
    reactive_power_import_var: Instant, (1, 0, 3, 7, 0), "kvar", 1000.0;
    /// Reactive power exported, var (`1-0:4.7.0`).
    reactive_power_export_var: Instant, (1, 0, 4, 7, 0), "kvar", 1000.0;
    /// Voltage on L1, 0.1 V (`1-0:32.7.0`).
    voltage_l1_dv: Instant, (1, 0, 32, 7, 0), "V", 10.0;
    /// Voltage on L2, 0.1 V (`1-0:52.7.0`).
    voltage_l2_dv: Instant, (1, 0, 52, 7, 0), "V", 10.0;
    /// Voltage on L3, 0.1 V (`1-0:72.7.0`).
    voltage_l3_dv: Instant, (1, 0, 72, 7, 0), "V", 10.0;
    /// Current on L1, 0.01 A (`1-0:31.7.0`).
    current_l1_ca: Instant, (1, 0, 31, 7, 0), "A", 100.0;
    /// Current on L2, 0.01 A (`1-0:51.7.0`).
    current_l2_ca: Instant, (1, 0, 51, 7, 0), "A", 100.0;
    /// Current on L3, 0.01 A (`1-0:71.7.0`).
    current_l3_ca: Instant, (1, 0, 71, 7, 0), "A", 100.0;
}

/// The number of value columns.
pub const NCOL: usize = 24;

/// The tariff registers summed into the totals when a meter sends no `1-0:1.8.0` /
/// `1-0:2.8.0` (DSMR meters).
const TARIFF_REGISTERS: [(Obis, [Obis; 4]); 2] = {
    const fn tariffs(c: u8) -> (Obis, [Obis; 4]) {
        (
            Obis::new(1, 0, c, 8, 0),
            [
                Obis::new(1, 0, c, 8, 1),
                Obis::new(1, 0, c, 8, 2),
                Obis::new(1, 0, c, 8, 3),
                Obis::new(1, 0, c, 8, 4),
            ],
        )
    }
    [tariffs(1), tariffs(2)]
};

/// One M-Bus reading (gas, water, heat) with its capture time, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MbusRecord {
    /// The meter's configured name.
    pub meter: Arc<str>,
    /// The M-Bus channel 1–4.
    pub channel: u8,
    /// The medium ([`Medium::Other`] when the telegram does not say): stored as in value
    /// names, `gas`, `water`, `heat`, … (`reading` when unknown).
    pub medium: Medium,
    /// The unit, `None` when neither sent nor usual for the medium: stored as in value names,
    /// `m3`, `gj` (empty without one).
    pub unit: Option<Unit>,
    /// When the sub-meter was read (its capture time, not the telegram's): Unix seconds.
    pub ts: i64,
    /// The meter reading in `unit` (stored to 0.001).
    pub value: f64,
}

impl MbusRecord {
    /// The medium as stored: `gas`, `water`, … (`reading` when unknown).
    pub fn medium_name(&self) -> &'static str {
        self.medium.as_str()
    }

    /// The unit as stored: `m3`, `gj`, empty without one.
    pub fn unit_name(&self) -> String {
        self.unit
            .as_ref()
            .map(|u| u.slug().into_owned())
            .unwrap_or_default()
    }
}

/// Stored units per unit sent, for `column`; `None` for a unit that does not fit the column
/// (another quantity, or a unit that is not known).
fn factor(column: &Column, sent: Option<&Unit>) -> Option<f64> {
    let Some(sent) = sent else {
        return Some(column.scale);
    };
    Some(sent.factor_to(&Unit::parse(column.unit))? * column.scale)
}

/// A value sent in `unit` as an integer in the column's stored unit.
fn convert(column: &Column, value: f64, unit: Option<&Unit>) -> Option<i64> {
    factor(column, unit).map(|f| (value * f).round() as i64)
}

/// The values of every column, from `get(code, column)` (the value of an OBIS code in the
/// column's stored unit); the totals fall back on the sum of the tariff registers.
fn column_values(get: impl Fn(Obis, &Column) -> Option<i64>) -> [Option<i64>; NCOL] {
    let mut values = [None; NCOL];
    for (slot, column) in values.iter_mut().zip(COLUMNS) {
        *slot = get(column.obis, column);
        if slot.is_none()
            && let Some((_, tariffs)) = TARIFF_REGISTERS.iter().find(|(t, _)| column.obis == *t)
        {
            let parts: Vec<i64> = tariffs
                .iter()
                .filter_map(|code| get(*code, column))
                .collect();
            if !parts.is_empty() {
                *slot = Some(parts.iter().sum());
            }
        }
    }
    values
}

impl Reading {
    /// The reading and M-Bus readings of a telegram the service accepted: at the telegram's
    /// own time, else when it was received. The reading is `None` when the telegram carries
    /// none of the [`COLUMNS`].
    pub fn from_event(event: &TelegramEvent) -> (Option<Reading>, Vec<MbusRecord>) {
        let ts = event
            .timestamp
            .as_ref()
            .and_then(unix_of)
            .or(Some(unix(event.received)));
        Self::from_values(&event.meter, event.meter_id.as_deref(), ts, &event.values)
    }

    /// The same of a decoded telegram of `meter` received at `received`, without building a
    /// [`TelegramEvent`] (whose JSON nobody reads on the way to the store: the fleet's
    /// workers): the very rows [`Reading::from_event`] gives for the event of the same
    /// telegram.
    pub fn from_received(
        meter: &Arc<str>,
        telegram: &smarty_p1::Telegram<'_>,
        received: std::time::SystemTime,
    ) -> (Option<Reading>, Vec<MbusRecord>) {
        let ts = telegram
            .timestamp()
            .as_ref()
            .and_then(unix_of)
            .or(Some(unix(received)));
        Self::from_ids(
            meter,
            telegram.meter_id().as_deref(),
            ts,
            numbers_of(telegram).iter().map(|(id, data)| (id, data)),
        )
    }

    /// The same of a telegram of `meter` decoded outside the service (`smarty import` of
    /// frames, the demo's history): at its own time; without one there is no reading.
    pub fn from_telegram(
        meter: &Arc<str>,
        telegram: &smarty_p1::Telegram<'_>,
    ) -> (Option<Reading>, Vec<MbusRecord>) {
        Self::from_ids(
            meter,
            telegram.meter_id().as_deref(),
            telegram.timestamp().as_ref().and_then(unix_of),
            numbers_of(telegram).iter().map(|(id, data)| (id, data)),
        )
    }

    /// The reading and M-Bus readings of the values of one telegram of `meter` (from a
    /// telegram, or from a JSON line of `smarty import`), at `ts` (Unix seconds): without a
    /// time there is no reading (M-Bus readings carry their own time). The reading is `None`
    /// when the values hold none of the [`COLUMNS`].
    pub fn from_values(
        meter: &Arc<str>,
        meter_id: Option<&str>,
        ts: Option<i64>,
        values: &[TelegramValue],
    ) -> (Option<Reading>, Vec<MbusRecord>) {
        Self::from_ids(meter, meter_id, ts, values.iter().map(|v| (&v.id, &v.data)))
    }

    /// [`Reading::from_values`] of values given as their identities and data.
    fn from_ids<'v>(
        meter: &Arc<str>,
        meter_id: Option<&str>,
        ts: Option<i64>,
        values: impl Iterator<Item = (&'v ValueId, &'v ValueData)> + Clone,
    ) -> (Option<Reading>, Vec<MbusRecord>) {
        let number = |code: Obis| {
            let (id, data) = values.clone().find(|(id, _)| id.obis() == code)?;
            Some((data.number()?, id.unit()))
        };
        let reading = ts
            .map(|ts| {
                let mut reading = Reading::empty(Arc::clone(meter), ts);
                reading.meter_id = meter_id.map(str::to_owned);
                reading.set_values(column_values(|code, column| {
                    let (value, unit) = number(code)?;
                    convert(column, value, unit)
                }));
                reading
            })
            .filter(|r| r.values().iter().any(Option::is_some));
        let mbus = values
            .filter_map(|(id, data)| {
                let device = id.mbus()?;
                // Only the readings (`0-n:24.2.1`, `24.2.3`, `24.3.0`), not ids or valves.
                let medium = id.reading_medium()?;
                let ValueData::Number {
                    value,
                    captured: Some(captured),
                } = data
                else {
                    return None;
                };
                Some(MbusRecord {
                    meter: Arc::clone(meter),
                    channel: device.channel,
                    medium,
                    unit: id.unit().cloned(),
                    ts: captured.as_second(),
                    value: value.to_f64(),
                })
            })
            .collect();
        (reading, mbus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smarty_p1::{Decoder, DecoderConfig};
    use std::time::{Duration, SystemTime};

    #[test]
    fn columns_are_named_as_their_values() {
        assert_eq!(COLUMNS.len(), NCOL);
        // The series names are a contract (docs/storage.md, docs/api.md).
        let names: Vec<&str> = COLUMNS.iter().map(Column::series).collect();
        assert_eq!(
            names,
            [
                "energy_import_kwh",
                "energy_export_kwh",
                "energy_import_tariff1_kwh",
                "energy_import_tariff2_kwh",
                "energy_export_tariff1_kwh",
                "energy_export_tariff2_kwh",
                "reactive_energy_import_kvarh",
                "reactive_energy_export_kvarh",
                "power_import_kw",
                "power_export_kw",
                "power_import_l1_kw",
                "power_import_l2_kw",
                "power_import_l3_kw",
                "power_export_l1_kw",
                "power_export_l2_kw",
                "power_export_l3_kw",
                "reactive_power_import_kvar",
                "reactive_power_export_kvar",
                "voltage_l1_v",
                "voltage_l2_v",
                "voltage_l3_v",
                "current_l1_a",
                "current_l2_a",
                "current_l3_a",
            ]
        );
    }

    #[test]
    fn units_convert_to_small_integers() {
        let column = |name: &str| COLUMNS.iter().find(|c| c.name == name).unwrap();
        let factor =
            |column: &Column, unit: Option<&str>| factor(column, unit.map(Unit::parse).as_ref());
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

    fn event(telegram: &[u8], received: SystemTime) -> TelegramEvent {
        let mut decoder = Decoder::new(DecoderConfig::default());
        decoder.push(telegram);
        let decoded = decoder.finish().unwrap().unwrap();
        TelegramEvent::new(&Arc::from("home"), &decoded, received)
    }

    #[test]
    fn a_telegram_becomes_a_reading_and_m_bus_readings() {
        let telegram = b"/ISk5\\2MT382-1000\r\n\r\n1-3:0.2.8(50)\r\n0-0:1.0.0(260403175431S)\r\n\
0-0:96.1.1(4B384547303034303436333935353037)\r\n1-0:1.8.1(000123.456*kWh)\r\n\
1-0:1.8.2(000100.000*kWh)\r\n1-0:2.8.2(002000*Wh)\r\n1-0:1.7.0(00.461*kW)\r\n\
1-0:3.7.0(00.120)\r\n1-0:32.7.0(231.4*V)\r\n1-0:31.7.0(002*A)\r\n\
0-1:24.1.0(003)\r\n0-1:24.2.1(260403174542S)(14239.771*m3)\r\n0-1:24.4.0(1)\r\n\
0-2:24.1.0(006)\r\n0-2:24.2.1(632525252525S)(00003.500*m3)\r\n!";
        let (reading, mbus) = Reading::from_event(&event(telegram, SystemTime::UNIX_EPOCH));
        let r = reading.unwrap();
        assert_eq!(r.ts, 1_775_231_671);
        assert_eq!(r.meter_id.as_deref(), Some("K8EG004046395507"));
        // The total from the tariff registers.
        assert_eq!(r.energy_import_wh, Some(223_456));
        assert_eq!(r.energy_import_t1_wh, Some(123_456));
        assert_eq!(r.energy_export_wh, Some(2000));
        assert_eq!(r.energy_export_t2_wh, Some(2000));
        assert_eq!(r.power_import_w, Some(461));
        assert_eq!(r.reactive_power_import_var, Some(120));
        assert_eq!(r.voltage_l1_dv, Some(2314));
        assert_eq!(r.current_l1_ca, Some(200));
        assert_eq!(r.power_export_w, None);
        // The gas reading; not the valve, nor a reading without a capture time.
        assert_eq!(mbus.len(), 1, "{mbus:?}");
        assert_eq!(
            (mbus[0].channel, mbus[0].medium_name(), mbus[0].unit_name()),
            (1, "gas", "m3".to_owned())
        );
        assert_eq!(mbus[0].ts, 1_775_231_142);
        assert_eq!(mbus[0].value, 14239.771);

        // Without a time of its own the telegram takes the time it was received.
        let timeless = b"/ISk5\\2MT382-1000\r\n\r\n1-0:1.8.0(000006.695*kWh)\r\n!";
        let received = SystemTime::UNIX_EPOCH + Duration::from_secs(7);
        let (reading, _) = Reading::from_event(&event(timeless, received));
        assert_eq!(reading.unwrap().ts, 7);
        let values = smarty_model::value::values_of(&smarty_p1::parse(timeless).unwrap());
        // Built from the telegram directly: the same rows.
        for (telegram, received) in [
            (&telegram[..], SystemTime::UNIX_EPOCH),
            (&timeless[..], received),
        ] {
            let mut decoder = Decoder::new(DecoderConfig::default());
            decoder.push(telegram);
            let decoded = decoder.finish().unwrap().unwrap();
            let direct = Reading::from_received(&Arc::from("home"), &decoded.telegram, received);
            assert_eq!(direct, Reading::from_event(&event(telegram, received)));
            assert!(direct.0.is_some());
        }
        let (reading, mbus) = Reading::from_values(&Arc::from("home"), None, None, &values);
        assert!(reading.is_none() && mbus.is_empty());
    }
}
