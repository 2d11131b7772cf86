//! Luxembourg's low-voltage grid tariff (since 1 January 2025) applied to the stored 15-minute
//! intervals: energy within and above the reference power, and what it costs.
//!
//! # The rules (docs/tariff.md has them in full, with every source)
//!
//! Since 1 January 2025 the network part of a Luxembourg electricity bill has a fixed monthly
//! fee that depends on the household's *reference power* (3, 7, 12, 17, 27, 43, 70 or 100 kW),
//! a price per kWh for all energy drawn, and a higher price per kWh for the energy drawn above
//! the reference power (Creos, "New tariff structure",
//! <https://www.creos-net.lu/en/individuals/practical-info/new-tariff-structure>; Sudstroum's
//! 2025 price sheet, <https://www.sudstroum.lu/de/produkte/strom-fur-geschaftskunden>). The ILR sets one network
//! tariff for every operator at the same voltage level (myilr.lu FAQ). The operators assign the
//! reference power from the consumption history and check it every month
//! (<https://www.myilr.lu/questions/comment-connaitre-ma-categorie-mon-niveau-de-puissance-de-reference/>).
//!
//! smarty measures the overrun on the 15-minute periods of the store ([`INTERVAL_S`]): the
//! energy of a period above `P_ref × 0.25 h` ([`above_reference_kwh`]). Energy drawn above the
//! reference power is billed at [`TariffConfig::above_reference_price_eur_per_kwh`] *instead
//! of* [`TariffConfig::network_price_eur_per_kwh`]: 0.1139 against 0.0759 €/kWh in 2025,
//! "50 % more per kilowatt-hour" (Paperjam,
//! <https://en.paperjam.lu/article/electricity-consumption-overru>). Sudstroum's sheet calls
//! the higher price a "Zuschlag" (surcharge); docs/tariff.md says how to configure the other
//! reading.
//!
//! # What is computed
//!
//! - Energies are register differences per 15 minutes (exact watt-hours), shown in kWh with
//!   three decimals (exact); powers in kW with three decimals; money in the configured currency
//!   rounded to cents, each component separately, the totals as the sum of the rounded parts.
//! - Costs include VAT ([`TariffConfig::vat_rate`]), except the export remuneration.
//! - The fixed monthly fee accrues per local day that has at least one interval: a day gets
//!   `monthly / days in its month`; a month row the sum of its days (the full fee when every
//!   day has data, a prorated fee for the current or a partial month).
//! - Days and months are local (Europe/Luxembourg): a DST day has 92 or 100 intervals.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::output::time::meter_zone;
use crate::store::{INTERVAL_S, Interval, Period};

/// The reference powers of 2025 and their fixed network fee, € per month excluding VAT
/// (Sudstroum's 2025 price sheet; the same for every operator).
pub const NETWORK_FIXED_2025_EUR_PER_MONTH: [(f64, f64); 8] = [
    (3.0, 11.11),
    (7.0, 19.27),
    (12.0, 29.46),
    (17.0, 39.65),
    (27.0, 60.03),
    (43.0, 92.64),
    (70.0, 147.66),
    (100.0, 208.80),
];

/// The default reference power, kW: the lowest level, the one SUDenergie's price calculator
/// assumes; with the 2025 prices 7 kW only pays off above roughly 215 kWh a month drawn above
/// 3 kW (docs/tariff.md).
pub const DEFAULT_REFERENCE_POWER_KW: f64 = 3.0;
/// Network price per kWh within the reference power, 2025, € excluding VAT.
pub const NETWORK_PRICE_2025: f64 = 0.0759;
/// Network price per kWh above the reference power, 2025, € excluding VAT.
pub const ABOVE_REFERENCE_PRICE_2025: f64 = 0.1139;
/// Meter rental ("complément à la redevance fixe") for a 40 or 50 A connection, 2025,
/// € per month excluding VAT.
pub const METERING_2025_EUR_PER_MONTH: f64 = 5.90;
/// An example supply price: Sudstroum TERRA ONLINE, 2025, € per kWh.
pub const ENERGY_PRICE_2025: f64 = 0.1329;
/// The same offer's fixed premium, 21 € a year, per month.
pub const SUPPLIER_FIXED_2025_EUR_PER_MONTH: f64 = 1.75;
/// Electricity tax for households (category A), € per kWh, as Sudstroum lists it.
pub const ELECTRICITY_TAX_EUR_PER_KWH: f64 = 0.001;
/// VAT on electricity in Luxembourg.
pub const VAT_RATE: f64 = 0.08;
/// An example feed-in tariff: a PV installation up to 10 kW first injecting in 2022,
/// 150.59 €/MWh for 15 years (RTL, 2 October 2020).
pub const EXPORT_PRICE_EXAMPLE: f64 = 0.15059;

/// The `[tariff]` section: reference power and prices. Every field has a default (the 2025
/// figures, docs/tariff.md); prices are per kWh or per month, excluding VAT unless said.
///
/// Deserialized from [`RawTariff`] (the section as written), which rejects unknown fields and
/// values of the wrong type or range, naming the field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawTariff")]
pub struct TariffConfig {
    /// The reference power assigned by the grid operator (shown on the bill), kW.
    pub reference_power_kw: f64,
    /// The currency of every price, a label (`"EUR"`).
    pub currency: String,
    /// Supply price per kWh imported (the supplier's energy price).
    pub energy_price_eur_per_kwh: f64,
    /// Network price per kWh imported within the reference power.
    pub network_price_eur_per_kwh: f64,
    /// Network price per kWh imported above the reference power (instead of the one within).
    pub above_reference_price_eur_per_kwh: f64,
    /// Per kWh imported: the electricity tax.
    pub electricity_tax_eur_per_kwh: f64,
    /// Per kWh imported: the contribution to the compensation mechanism (negative while the
    /// state subsidises household prices).
    pub compensation_eur_per_kwh: f64,
    /// Fixed fees per month: the network fee of the reference power, the meter rental and
    /// the supplier's fixed premium. Default: the 2025 network fee of
    /// [`Self::reference_power_kw`] + 5.90 + 1.75.
    pub fixed_eur_per_month: f64,
    /// VAT rate applied to all of the above (0.08 = 8 %).
    pub vat_rate: f64,
    /// Remuneration per kWh exported (feed-in), a positive number, no VAT added.
    pub export_price_eur_per_kwh: f64,
}

impl Default for TariffConfig {
    fn default() -> Self {
        TariffConfig {
            reference_power_kw: DEFAULT_REFERENCE_POWER_KW,
            currency: "EUR".into(),
            energy_price_eur_per_kwh: ENERGY_PRICE_2025,
            network_price_eur_per_kwh: NETWORK_PRICE_2025,
            above_reference_price_eur_per_kwh: ABOVE_REFERENCE_PRICE_2025,
            electricity_tax_eur_per_kwh: ELECTRICITY_TAX_EUR_PER_KWH,
            compensation_eur_per_kwh: 0.0,
            fixed_eur_per_month: default_fixed(DEFAULT_REFERENCE_POWER_KW)
                .expect("the default reference power is in the 2025 table"),
            vat_rate: VAT_RATE,
            export_price_eur_per_kwh: EXPORT_PRICE_EXAMPLE,
        }
    }
}

/// The 2025 fixed fees for a reference power in the table, € per month excluding VAT.
fn default_fixed(reference_power_kw: f64) -> Option<f64> {
    NETWORK_FIXED_2025_EUR_PER_MONTH
        .iter()
        .find(|(kw, _)| *kw == reference_power_kw)
        .map(|(_, fee)| fee + METERING_2025_EUR_PER_MONTH + SUPPLIER_FIXED_2025_EUR_PER_MONTH)
}

/// The section as written: every field optional (the defaults depend on each other).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTariff {
    reference_power_kw: Option<f64>,
    currency: Option<String>,
    energy_price_eur_per_kwh: Option<f64>,
    network_price_eur_per_kwh: Option<f64>,
    above_reference_price_eur_per_kwh: Option<f64>,
    electricity_tax_eur_per_kwh: Option<f64>,
    compensation_eur_per_kwh: Option<f64>,
    fixed_eur_per_month: Option<f64>,
    vat_rate: Option<f64>,
    export_price_eur_per_kwh: Option<f64>,
}

/// The fields of `[tariff]`: all numbers but `currency`.
// The service deserializes the section (`TryFrom<RawTariff>`); tests read tables.
#[cfg(test)]
const FIELDS: [&str; 10] = [
    "reference_power_kw",
    "currency",
    "energy_price_eur_per_kwh",
    "network_price_eur_per_kwh",
    "above_reference_price_eur_per_kwh",
    "electricity_tax_eur_per_kwh",
    "compensation_eur_per_kwh",
    "fixed_eur_per_month",
    "vat_rate",
    "export_price_eur_per_kwh",
];

impl TariffConfig {
    /// Reads the `[tariff]` section; the defaults when it is absent.
    ///
    /// Integers are accepted for numbers (`reference_power_kw = 7`).
    ///
    /// # Errors
    /// An unknown field, a value of the wrong type, a number out of range (negative powers or
    /// prices, a VAT rate outside 0..1, not finite), or a reference power outside the 2025
    /// table without `fixed_eur_per_month`; each message names the field, like
    /// "\[tariff\]: unknown field `x`".
    // The service deserializes the section (`TryFrom<RawTariff>`); tests read tables.
    #[cfg(test)]
    pub fn from_table(table: Option<&toml::Table>) -> Result<TariffConfig> {
        let Some(table) = table else {
            return Ok(TariffConfig::default());
        };
        for (key, value) in table {
            if !FIELDS.contains(&key.as_str()) {
                bail!(
                    "[tariff]: unknown field `{key}`; the fields are {}",
                    FIELDS.map(|f| format!("`{f}`")).join(", ")
                );
            }
            let fits = match key.as_str() {
                "currency" => value.is_str(),
                _ => value.is_float() || value.is_integer(),
            };
            if !fits {
                let wanted = if key == "currency" {
                    "a string"
                } else {
                    "a number"
                };
                bail!(
                    "[tariff]: `{key}` must be {wanted}, not {} ({value})",
                    value.type_str()
                );
            }
        }
        let raw: RawTariff = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e| anyhow::anyhow!("[tariff]: {e}"))?;
        TariffConfig::try_from(raw)
    }
}

impl TryFrom<RawTariff> for TariffConfig {
    type Error = anyhow::Error;

    /// The defaults for what `raw` leaves out, checked.
    fn try_from(raw: RawTariff) -> Result<TariffConfig> {
        let defaults = TariffConfig::default();
        let reference_power_kw = raw
            .reference_power_kw
            .unwrap_or(defaults.reference_power_kw);
        let fixed_eur_per_month = match raw.fixed_eur_per_month {
            Some(fixed) => fixed,
            None => match default_fixed(reference_power_kw) {
                Some(fixed) => fixed,
                None => bail!(
                    "[tariff]: `reference_power_kw` = {reference_power_kw} is not a 2025 reference \
                     power ({}); set `fixed_eur_per_month` too",
                    NETWORK_FIXED_2025_EUR_PER_MONTH
                        .map(|(kw, _)| kw.to_string())
                        .join(", ")
                ),
            },
        };
        let config = TariffConfig {
            reference_power_kw,
            currency: raw.currency.unwrap_or(defaults.currency),
            energy_price_eur_per_kwh: raw
                .energy_price_eur_per_kwh
                .unwrap_or(defaults.energy_price_eur_per_kwh),
            network_price_eur_per_kwh: raw
                .network_price_eur_per_kwh
                .unwrap_or(defaults.network_price_eur_per_kwh),
            above_reference_price_eur_per_kwh: raw
                .above_reference_price_eur_per_kwh
                .unwrap_or(defaults.above_reference_price_eur_per_kwh),
            electricity_tax_eur_per_kwh: raw
                .electricity_tax_eur_per_kwh
                .unwrap_or(defaults.electricity_tax_eur_per_kwh),
            compensation_eur_per_kwh: raw
                .compensation_eur_per_kwh
                .unwrap_or(defaults.compensation_eur_per_kwh),
            fixed_eur_per_month,
            vat_rate: raw.vat_rate.unwrap_or(defaults.vat_rate),
            export_price_eur_per_kwh: raw
                .export_price_eur_per_kwh
                .unwrap_or(defaults.export_price_eur_per_kwh),
        };
        config.validate()?;
        Ok(config)
    }
}

impl TariffConfig {
    fn validate(&self) -> Result<()> {
        let numbers = [
            ("reference_power_kw", self.reference_power_kw),
            ("energy_price_eur_per_kwh", self.energy_price_eur_per_kwh),
            ("network_price_eur_per_kwh", self.network_price_eur_per_kwh),
            (
                "above_reference_price_eur_per_kwh",
                self.above_reference_price_eur_per_kwh,
            ),
            (
                "electricity_tax_eur_per_kwh",
                self.electricity_tax_eur_per_kwh,
            ),
            ("compensation_eur_per_kwh", self.compensation_eur_per_kwh),
            ("fixed_eur_per_month", self.fixed_eur_per_month),
            ("vat_rate", self.vat_rate),
            ("export_price_eur_per_kwh", self.export_price_eur_per_kwh),
        ];
        for (name, value) in numbers {
            if !value.is_finite() {
                bail!("[tariff]: `{name}` = {value} is not a finite number");
            }
            // Only the compensation contribution may be negative (a subsidy).
            if value < 0.0 && name != "compensation_eur_per_kwh" {
                bail!("[tariff]: `{name}` = {value} must not be negative");
            }
        }
        if self.reference_power_kw <= 0.0 {
            bail!("[tariff]: `reference_power_kw` must be more than 0 kW");
        }
        if self.vat_rate >= 1.0 {
            bail!(
                "[tariff]: `vat_rate` = {} is a fraction: 0.08 for 8 %",
                self.vat_rate
            );
        }
        if self.currency.trim().is_empty() {
            bail!("[tariff]: `currency` must not be empty");
        }
        Ok(())
    }

    /// The prices used, for the reports.
    pub fn prices(&self) -> Prices {
        Prices {
            energy_price_eur_per_kwh: self.energy_price_eur_per_kwh,
            network_price_eur_per_kwh: self.network_price_eur_per_kwh,
            above_reference_price_eur_per_kwh: self.above_reference_price_eur_per_kwh,
            electricity_tax_eur_per_kwh: self.electricity_tax_eur_per_kwh,
            compensation_eur_per_kwh: self.compensation_eur_per_kwh,
            fixed_eur_per_month: self.fixed_eur_per_month,
            vat_rate: self.vat_rate,
            export_price_eur_per_kwh: self.export_price_eur_per_kwh,
        }
    }

    /// The energy a 15-minute period may hold before it exceeds the reference power, Wh
    /// (`P_ref × 0.25 h`), rounded to a micro-watt-hour so that decimal powers compare exactly.
    fn threshold_wh(&self) -> f64 {
        threshold_wh(self.reference_power_kw)
    }
}

fn threshold_wh(reference_power_kw: f64) -> f64 {
    let hours = INTERVAL_S as f64 / 3600.0;
    (reference_power_kw * 1000.0 * hours * 1e6).round() / 1e6
}

/// The prices a report used, as configured (excluding VAT, per kWh or per month).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prices {
    /// Supply price per kWh imported.
    pub energy_price_eur_per_kwh: f64,
    /// Network price per kWh within the reference power.
    pub network_price_eur_per_kwh: f64,
    /// Network price per kWh above the reference power.
    pub above_reference_price_eur_per_kwh: f64,
    /// Electricity tax per kWh imported.
    pub electricity_tax_eur_per_kwh: f64,
    /// Compensation-mechanism contribution per kWh imported.
    pub compensation_eur_per_kwh: f64,
    /// Fixed fees per month.
    pub fixed_eur_per_month: f64,
    /// VAT rate on all of the above.
    pub vat_rate: f64,
    /// Feed-in remuneration per kWh exported.
    pub export_price_eur_per_kwh: f64,
}

/// Energy of one 15-minute interval above the reference power, kWh:
/// `max(0, E − P_ref × 0.25 h)`.
pub fn above_reference_kwh(interval: &Interval, reference_power_kw: f64) -> f64 {
    above_wh(interval, threshold_wh(reference_power_kw)) / 1000.0
}

fn above_wh(interval: &Interval, threshold_wh: f64) -> f64 {
    (interval.energy_import_wh as f64 - threshold_wh).max(0.0)
}

/// The cost of a period, in the configured currency, rounded to cents. VAT is included in
/// every part but `export_eur`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    /// Every imported kWh at the base rates: supply, network within the reference power,
    /// electricity tax and compensation contribution.
    pub energy_eur: f64,
    /// What the energy above the reference power costs on top: its kWh times the difference
    /// between the above-reference and the normal network price.
    pub above_reference_eur: f64,
    /// The fixed monthly fees accrued by the period's days with data.
    pub fixed_eur: f64,
    /// The export remuneration, negative (a credit; paid by the grid operator, not part of the
    /// supply bill).
    pub export_eur: f64,
    /// What the bill charges: `energy_eur + above_reference_eur + fixed_eur`.
    pub bill_eur: f64,
    /// The VAT contained in `bill_eur`.
    pub vat_eur: f64,
    /// `bill_eur + export_eur`: the net cost.
    pub total_eur: f64,
}

/// One local day or month of a [`TariffReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TariffRow {
    /// The local day (`2026-11-22`) or month (`2026-11`).
    pub period: String,
    /// Unix seconds of the local start of the period.
    pub start: i64,
    /// Its energies, periods and cost (serialised beside `period` and `start`).
    #[serde(flatten)]
    pub figures: TariffFigures,
}

/// The energies, 15-minute periods and cost of a [`TariffRow`] or of a report's whole range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TariffFigures {
    /// Energy imported, kWh.
    pub energy_import_kwh: f64,
    /// Energy exported, kWh.
    pub energy_export_kwh: f64,
    /// Energy imported within the reference power, kWh.
    pub energy_within_reference_kwh: f64,
    /// Energy imported above the reference power, kWh.
    pub energy_above_reference_kwh: f64,
    /// 15-minute intervals with data.
    pub intervals: u32,
    /// Intervals whose energy exceeded the reference power.
    pub intervals_above_reference: u32,
    /// The highest 15-minute average import power, kW.
    pub peak_15min_kw: f64,
    /// What it costs.
    pub cost: Cost,
}

/// The grid-tariff report of `GET /api/meters/{meter}/tariff`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TariffReport {
    /// The currency of every amount.
    pub currency: String,
    /// The reference power the overruns are measured against, kW.
    pub reference_power_kw: f64,
    /// The prices used.
    pub prices: Prices,
    /// One row per local day or month that has intervals, oldest first.
    pub rows: Vec<TariffRow>,
    /// All rows together.
    pub total: TariffFigures,
}

/// What the dashboard's header shows for one range (`summary` in docs/api.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodSummary {
    /// Energy imported, kWh.
    pub energy_import_kwh: f64,
    /// Energy exported, kWh.
    pub energy_export_kwh: f64,
    /// What the bill charges for it ([`Cost::bill_eur`]: VAT included, export remuneration
    /// not deducted).
    pub cost_eur: f64,
}

/// The sums of a period, exact where the input is (watt-hours).
#[derive(Debug, Default, Clone, Copy)]
struct Acc {
    import_wh: i64,
    export_wh: i64,
    above_wh: f64,
    intervals: u32,
    intervals_above: u32,
    peak_wh: i64,
    /// The fixed fee accrued, in months (a day: 1 / days in its month).
    months: f64,
}

impl Acc {
    fn add(&mut self, interval: &Interval, threshold_wh: f64) {
        let above = above_wh(interval, threshold_wh);
        self.import_wh += interval.energy_import_wh;
        self.export_wh += interval.energy_export_wh;
        self.above_wh += above;
        self.intervals += 1;
        if above > 0.0 {
            self.intervals_above += 1;
        }
        self.peak_wh = self.peak_wh.max(interval.energy_import_wh);
    }

    fn merge(&mut self, other: &Acc) {
        self.import_wh += other.import_wh;
        self.export_wh += other.export_wh;
        self.above_wh += other.above_wh;
        self.intervals += other.intervals;
        self.intervals_above += other.intervals_above;
        self.peak_wh = self.peak_wh.max(other.peak_wh);
        self.months += other.months;
    }

    fn total(&self, config: &TariffConfig) -> TariffFigures {
        let import_kwh = self.import_wh as f64 / 1000.0;
        let export_kwh = self.export_wh as f64 / 1000.0;
        let above_kwh = self.above_wh / 1000.0;
        TariffFigures {
            energy_import_kwh: kwh(import_kwh),
            energy_export_kwh: kwh(export_kwh),
            energy_within_reference_kwh: kwh(import_kwh - above_kwh),
            energy_above_reference_kwh: kwh(above_kwh),
            intervals: self.intervals,
            intervals_above_reference: self.intervals_above,
            peak_15min_kw: kwh(self.peak_wh as f64 / 1000.0 * 3600.0 / INTERVAL_S as f64),
            cost: self.cost(config, import_kwh, above_kwh, export_kwh),
        }
    }

    fn cost(&self, c: &TariffConfig, import_kwh: f64, above_kwh: f64, export_kwh: f64) -> Cost {
        let gross = 1.0 + c.vat_rate;
        let base = c.energy_price_eur_per_kwh
            + c.network_price_eur_per_kwh
            + c.electricity_tax_eur_per_kwh
            + c.compensation_eur_per_kwh;
        let energy = import_kwh * base * gross;
        let above =
            above_kwh * (c.above_reference_price_eur_per_kwh - c.network_price_eur_per_kwh) * gross;
        let fixed = c.fixed_eur_per_month * self.months * gross;
        let export = -(export_kwh * c.export_price_eur_per_kwh);
        let (energy, above, fixed, export) =
            (cents(energy), cents(above), cents(fixed), cents(export));
        let bill = cents(energy + above + fixed);
        Cost {
            energy_eur: energy,
            above_reference_eur: above,
            fixed_eur: fixed,
            export_eur: export,
            bill_eur: bill,
            vat_eur: cents(bill * c.vat_rate / gross),
            total_eur: cents(bill + export),
        }
    }
}

/// kWh or kW to three decimals (watt-hours, exact for energies).
fn kwh(x: f64) -> f64 {
    let r = (x * 1000.0).round() / 1000.0;
    if r == 0.0 { 0.0 } else { r }
}

/// Money to cents.
fn cents(x: f64) -> f64 {
    let r = (x * 100.0).round() / 100.0;
    if r == 0.0 { 0.0 } else { r }
}

/// The local day holding Unix second `t`: its date, start and end (Unix seconds).
fn local_day(t: i64, tz: &TimeZone) -> Option<(Date, i64, i64)> {
    let date = jiff::Timestamp::from_second(t)
        .ok()?
        .to_zoned(tz.clone())
        .date();
    let start = date.to_zoned(tz.clone()).ok()?.timestamp().as_second();
    let end = date
        .tomorrow()
        .ok()?
        .to_zoned(tz.clone())
        .ok()?
        .timestamp()
        .as_second();
    Some((date, start, end))
}

/// The intervals summed per local day, keyed by the day's start; each day accrues its share
/// of the monthly fee.
fn days(intervals: &[Interval], threshold_wh: f64) -> BTreeMap<i64, (Date, Acc)> {
    let tz = meter_zone();
    let mut days: BTreeMap<i64, (Date, Acc)> = BTreeMap::new();
    let mut current: Option<(Date, i64, i64)> = None;
    for interval in intervals {
        let day = match current {
            Some(day @ (_, start, end)) if (start..end).contains(&interval.start) => day,
            _ => match local_day(interval.start, &tz) {
                Some(day) => day,
                None => continue, // out of the representable range
            },
        };
        current = Some(day);
        let (date, start, _) = day;
        let entry = days.entry(start).or_insert_with(|| {
            let acc = Acc {
                months: 1.0 / f64::from(date.days_in_month()),
                ..Acc::default()
            };
            (date, acc)
        });
        entry.1.add(interval, threshold_wh);
    }
    days
}

/// The grid-tariff report of `intervals` per local day or month: rows only for periods that
/// have intervals, oldest first, and their total.
///
/// `intervals` are normally sorted by start (they are grouped faster then), but need not be.
pub fn report(intervals: &[Interval], config: &TariffConfig, period: Period) -> TariffReport {
    let tz = meter_zone();
    let days = days(intervals, config.threshold_wh());
    let mut periods: BTreeMap<i64, (String, Acc)> = BTreeMap::new();
    for (start, (date, acc)) in &days {
        match period {
            Period::Day => {
                periods.insert(*start, (date.to_string(), *acc));
            }
            Period::Month => {
                let first = date.first_of_month();
                let month_start = first
                    .to_zoned(tz.clone())
                    .map_or(*start, |z| z.timestamp().as_second());
                let label = format!("{:04}-{:02}", first.year(), first.month());
                periods
                    .entry(month_start)
                    .or_insert_with(|| (label, Acc::default()))
                    .1
                    .merge(acc);
            }
        }
    }
    let mut all = Acc::default();
    let rows = periods
        .into_iter()
        .map(|(start, (period, acc))| {
            all.merge(&acc);
            TariffRow {
                period,
                start,
                figures: acc.total(config),
            }
        })
        .collect();
    TariffReport {
        currency: config.currency.clone(),
        reference_power_kw: config.reference_power_kw,
        prices: config.prices(),
        rows,
        total: all.total(config),
    }
}

/// Energy and cost of the intervals starting in `from..to` (Unix seconds, `to` exclusive),
/// for the dashboard's header: today, this month, last month.
///
/// The cost is the report's: the fixed fee accrues per local day with data.
pub fn summarize(
    intervals: &[Interval],
    config: &TariffConfig,
    from: i64,
    to: i64,
) -> PeriodSummary {
    let within: Vec<Interval> = intervals
        .iter()
        .filter(|i| (from..to).contains(&i.start))
        .copied()
        .collect();
    let total = report(&within, config, Period::Day).total;
    PeriodSummary {
        energy_import_kwh: total.energy_import_kwh,
        energy_export_kwh: total.energy_export_kwh,
        cost_eur: total.cost.bill_eur,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a local (Europe/Luxembourg) time, `2026-11-22T10:00`.
    fn local(text: &str) -> i64 {
        text.parse::<jiff::civil::DateTime>()
            .unwrap()
            .to_zoned(meter_zone())
            .unwrap()
            .timestamp()
            .as_second()
    }

    /// Every 15-minute interval of the local days `from..to` (dates), importing `wh(i)` in the
    /// `i`-th interval of the range and exporting nothing.
    fn range(from: &str, to: &str, wh: impl Fn(usize) -> i64) -> Vec<Interval> {
        let (from, to) = (
            local(&format!("{from}T00:00")),
            local(&format!("{to}T00:00")),
        );
        (from..to)
            .step_by(INTERVAL_S as usize)
            .enumerate()
            .map(|(i, start)| Interval {
                start,
                energy_import_wh: wh(i),
                energy_export_wh: 0,
            })
            .collect()
    }

    fn at(start: i64, import_wh: i64, export_wh: i64) -> Interval {
        Interval {
            start,
            energy_import_wh: import_wh,
            energy_export_wh: export_wh,
        }
    }

    /// Simple prices, no VAT, no taxes: costs are easy to work out by hand.
    fn simple(reference_power_kw: f64) -> TariffConfig {
        TariffConfig {
            reference_power_kw,
            currency: "EUR".into(),
            energy_price_eur_per_kwh: 0.10,
            network_price_eur_per_kwh: 0.05,
            above_reference_price_eur_per_kwh: 0.08,
            electricity_tax_eur_per_kwh: 0.0,
            compensation_eur_per_kwh: 0.0,
            fixed_eur_per_month: 30.0,
            vat_rate: 0.0,
            export_price_eur_per_kwh: 0.12,
        }
    }

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    fn parse_error(text: &str) -> String {
        TariffConfig::from_table(Some(&table(text)))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn exactly_at_the_reference_is_not_above() {
        let t = local("2026-11-22T10:00");
        for (kw, wh) in [(3.0, 750), (7.0, 1750), (12.0, 3000), (3.3, 825), (0.1, 25)] {
            assert_eq!(above_reference_kwh(&at(t, wh, 0), kw), 0.0, "{kw} kW");
            let row = &report(&[at(t, wh, 0)], &simple(kw), Period::Day).rows[0];
            assert_eq!(row.figures.intervals_above_reference, 0, "{kw} kW");
            assert_eq!(row.figures.energy_above_reference_kwh, 0.0, "{kw} kW");
            assert_eq!(row.figures.energy_within_reference_kwh, wh as f64 / 1000.0);
        }
    }

    #[test]
    fn one_watt_hour_above_counts() {
        let t = local("2026-11-22T10:00");
        assert_eq!(above_reference_kwh(&at(t, 751, 0), 3.0), 0.001);
        assert_eq!(above_reference_kwh(&at(t, 1751, 0), 7.0), 0.001);
        assert_eq!(above_reference_kwh(&at(t, 2000, 0), 7.0), 0.25);
        assert_eq!(above_reference_kwh(&at(t, 0, 500), 3.0), 0.0);
        let row = &report(&[at(t, 751, 0)], &simple(3.0), Period::Day).rows[0];
        assert_eq!(row.figures.intervals_above_reference, 1);
        assert_eq!(row.figures.energy_above_reference_kwh, 0.001);
        assert_eq!(row.figures.energy_within_reference_kwh, 0.75);
    }

    #[test]
    fn a_mixed_day() {
        // 3 kW: 750 Wh per period. 90 periods of 200 Wh, 4 of 1000 Wh (250 above each), 2 of
        // 2000 Wh (1250 above each, 8 kW), and 1.5 kWh exported in the first period.
        let mut day = range("2026-11-22", "2026-11-23", |i| match i {
            10..=13 => 1000,
            70 | 71 => 2000,
            _ => 200,
        });
        day[0].energy_export_wh = 1500;
        let report = report(&day, &simple(3.0), Period::Day);
        assert_eq!(report.rows.len(), 1);
        let row = &report.rows[0];
        assert_eq!(row.period, "2026-11-22");
        assert_eq!(row.start, local("2026-11-22T00:00"));
        assert_eq!(row.figures.intervals, 96);
        assert_eq!(row.figures.intervals_above_reference, 6);
        assert_eq!(row.figures.energy_import_kwh, 26.0);
        assert_eq!(row.figures.energy_above_reference_kwh, 3.5);
        assert_eq!(row.figures.energy_within_reference_kwh, 22.5);
        assert_eq!(row.figures.energy_export_kwh, 1.5);
        assert_eq!(row.figures.peak_15min_kw, 8.0);
        // 26 kWh × (0.10 + 0.05) = 3.90; 3.5 kWh × (0.08 − 0.05) = 0.105, 0.10 or 0.11 after
        // binary rounding; fixed 30 € / 30 days = 1.00; export −1.5 × 0.12 = −0.18.
        let cost = &row.figures.cost;
        assert_eq!(cost.energy_eur, 3.9);
        assert!(
            (cost.above_reference_eur - 0.105).abs() <= 0.0051,
            "{cost:?}"
        );
        assert_eq!(cost.fixed_eur, 1.0);
        assert_eq!(cost.export_eur, -0.18);
        assert_eq!(
            cost.bill_eur,
            cents(cost.energy_eur + cost.above_reference_eur + cost.fixed_eur)
        );
        assert_eq!(cost.total_eur, cents(cost.bill_eur + cost.export_eur));
        assert_eq!(cost.vat_eur, 0.0);
        assert_eq!(report.total, {
            let r = row.clone();
            TariffFigures {
                energy_import_kwh: r.figures.energy_import_kwh,
                energy_export_kwh: r.figures.energy_export_kwh,
                energy_within_reference_kwh: r.figures.energy_within_reference_kwh,
                energy_above_reference_kwh: r.figures.energy_above_reference_kwh,
                intervals: r.figures.intervals,
                intervals_above_reference: r.figures.intervals_above_reference,
                peak_15min_kw: r.figures.peak_15min_kw,
                cost: r.figures.cost,
            }
        });
    }

    /// docs/tariff.md, "A worked example".
    #[test]
    fn the_worked_example_of_the_docs() {
        // 2 periods of 2.0 kWh, 3 of 1.0 kWh, 90 of 50 Wh and one of 500 Wh: 12 kWh; 5 kWh
        // exported in 10 periods of 500 Wh.
        let mut day = range("2026-11-22", "2026-11-23", |i| match i {
            70 | 71 => 2000,
            72..=74 => 1000,
            80 => 500,
            _ => 50,
        });
        for interval in &mut day[40..50] {
            interval.energy_export_wh = 500;
        }
        let row = report(&day, &TariffConfig::default(), Period::Day).total;
        assert_eq!(row.energy_import_kwh, 12.0);
        assert_eq!(row.energy_above_reference_kwh, 3.25);
        assert_eq!(row.energy_within_reference_kwh, 8.75);
        assert_eq!(row.intervals_above_reference, 5);
        assert_eq!(row.peak_15min_kw, 8.0);
        let cost = row.cost;
        assert_eq!(
            (cost.energy_eur, cost.above_reference_eur, cost.fixed_eur),
            (2.72, 0.13, 0.68)
        );
        assert_eq!((cost.bill_eur, cost.vat_eur), (3.53, 0.26));
        assert_eq!((cost.export_eur, cost.total_eur), (-0.75, 2.78));
        let seven = TariffConfig::from_table(Some(&table("reference_power_kw = 7"))).unwrap();
        let row = report(&day, &seven, Period::Day).total;
        assert_eq!(row.energy_above_reference_kwh, 0.5);
        assert_eq!(
            (row.cost.above_reference_eur, row.cost.fixed_eur),
            (0.02, 0.97)
        );
    }

    #[test]
    fn vat_and_per_kwh_levies_are_applied() {
        let config = TariffConfig {
            electricity_tax_eur_per_kwh: 0.01,
            compensation_eur_per_kwh: -0.02,
            vat_rate: 0.08,
            ..simple(3.0)
        };
        // 10 periods of 1000 Wh: 10 kWh, 2.5 kWh above 3 kW.
        let day = range(
            "2026-11-22",
            "2026-11-23",
            |i| if i < 10 { 1000 } else { 0 },
        );
        let cost = report(&day, &config, Period::Day).total.cost;
        // 10 × (0.10 + 0.05 + 0.01 − 0.02) × 1.08 = 1.512
        assert_eq!(cost.energy_eur, 1.51);
        // 2.5 × 0.03 × 1.08 = 0.081
        assert_eq!(cost.above_reference_eur, 0.08);
        // 30 / 30 × 1.08
        assert_eq!(cost.fixed_eur, 1.08);
        assert_eq!(cost.bill_eur, 2.67);
        // 2.67 × 0.08 / 1.08 = 0.1978
        assert_eq!(cost.vat_eur, 0.2);
    }

    /// A month of varied data: day rows add up to the month row.
    #[test]
    fn day_rows_add_up_to_the_month_row() {
        let pattern = |i: usize| ((i * 7919) % 2600) as i64; // 0..2600 Wh, often above 3 kW
        let mut list = range("2026-11-01", "2026-12-01", pattern);
        for (i, interval) in list.iter_mut().enumerate() {
            interval.energy_export_wh = ((i * 104_729) % 900) as i64;
        }
        let config = TariffConfig::default();
        let days = report(&list, &config, Period::Day);
        let months = report(&list, &config, Period::Month);
        assert_eq!(days.rows.len(), 30);
        assert_eq!(months.rows.len(), 1);
        let month = &months.rows[0];
        assert_eq!(month.period, "2026-11");
        assert_eq!(month.start, local("2026-11-01T00:00"));
        assert_eq!(month.figures.intervals, 30 * 96);
        let sum = |f: fn(&TariffRow) -> f64| days.rows.iter().map(f).sum::<f64>();
        let close = |a: f64, b: f64, tolerance: f64| (a - b).abs() <= tolerance;
        // Energies are exact watt-hours.
        assert!(close(
            sum(|r| r.figures.energy_import_kwh),
            month.figures.energy_import_kwh,
            1e-6
        ));
        assert!(close(
            sum(|r| r.figures.energy_export_kwh),
            month.figures.energy_export_kwh,
            1e-6
        ));
        assert!(close(
            sum(|r| r.figures.energy_above_reference_kwh),
            month.figures.energy_above_reference_kwh,
            1e-6
        ));
        assert!(close(
            sum(|r| r.figures.energy_within_reference_kwh),
            month.figures.energy_within_reference_kwh,
            1e-6
        ));
        assert!(
            month.figures.energy_above_reference_kwh > 10.0,
            "the pattern exceeds 3 kW often"
        );
        assert_eq!(
            days.rows
                .iter()
                .map(|r| r.figures.intervals_above_reference)
                .sum::<u32>(),
            month.figures.intervals_above_reference
        );
        assert_eq!(
            days.rows
                .iter()
                .map(|r| r.figures.peak_15min_kw)
                .fold(0.0, f64::max),
            month.figures.peak_15min_kw
        );
        // Money: each row is rounded to cents, so 30 rows may drift by half a cent each.
        let cents_30 = 30.0 * 0.005 + 1e-9;
        assert!(close(
            sum(|r| r.figures.cost.energy_eur),
            month.figures.cost.energy_eur,
            cents_30
        ));
        assert!(close(
            sum(|r| r.figures.cost.above_reference_eur),
            month.figures.cost.above_reference_eur,
            cents_30
        ));
        assert!(close(
            sum(|r| r.figures.cost.export_eur),
            month.figures.cost.export_eur,
            cents_30
        ));
        assert!(close(
            sum(|r| r.figures.cost.fixed_eur),
            month.figures.cost.fixed_eur,
            cents_30
        ));
        // A month with data every day pays the whole monthly fee.
        assert_eq!(
            month.figures.cost.fixed_eur,
            cents(config.fixed_eur_per_month * 1.08)
        );
        assert_eq!(months.total.cost, month.figures.cost);
    }

    #[test]
    fn a_partial_month_pays_its_days() {
        let list = range("2026-11-21", "2026-12-01", |_| 100);
        let month = &report(&list, &simple(3.0), Period::Month).rows[0];
        assert_eq!(month.figures.cost.fixed_eur, 10.0); // 10 of 30 days of 30 € (no VAT)
        // One interval is enough for a day's share; February has 28 days.
        let one = [at(local("2026-02-10T12:00"), 100, 0)];
        assert_eq!(
            report(&one, &simple(3.0), Period::Month).rows[0]
                .figures
                .cost
                .fixed_eur,
            cents(30.0 / 28.0)
        );
    }

    #[test]
    fn dst_days_group_into_their_local_day() {
        // Spring forward on 2026-03-29 (92 periods), fall back on 2026-10-25 (100).
        for (from, to, day, count) in [
            ("2026-03-28", "2026-03-31", "2026-03-29", 92),
            ("2026-10-24", "2026-10-27", "2026-10-25", 100),
        ] {
            let list = range(from, to, |_| 100);
            let rows = report(&list, &simple(3.0), Period::Day).rows;
            assert_eq!(rows.len(), 3);
            let counts: Vec<(String, u32)> = rows
                .iter()
                .map(|r| (r.period.clone(), r.figures.intervals))
                .collect();
            let dst = rows.iter().find(|r| r.period == day).unwrap();
            assert_eq!(dst.figures.intervals, count, "{counts:?}");
            assert_eq!(dst.start, local(&format!("{day}T00:00")));
            assert_eq!(rows[0].figures.intervals, 96, "{counts:?}");
            assert_eq!(rows[2].figures.intervals, 96, "{counts:?}");
            // A DST day still accrues one day of the monthly fee.
            assert_eq!(dst.figures.cost.fixed_eur, cents(30.0 / 31.0));
        }
    }

    #[test]
    fn the_last_quarter_hour_belongs_to_its_local_month() {
        // The last period of a month (23:45 local) and the first of the next (00:00 local,
        // still the previous day in UTC: 23:00 in winter, 22:00 in summer).
        for (last, first, month, next) in [
            ("2026-11-30T23:45", "2026-12-01T00:00", "2026-11", "2026-12"),
            ("2026-08-31T23:45", "2026-09-01T00:00", "2026-08", "2026-09"),
            ("2026-12-31T23:45", "2027-01-01T00:00", "2026-12", "2027-01"),
        ] {
            let list = [at(local(last), 100, 0), at(local(first), 200, 0)];
            let months = report(&list, &simple(3.0), Period::Month).rows;
            assert_eq!(months.len(), 2);
            assert_eq!(
                (
                    months[0].period.as_str(),
                    months[0].figures.energy_import_kwh
                ),
                (month, 0.1)
            );
            assert_eq!(
                (
                    months[1].period.as_str(),
                    months[1].figures.energy_import_kwh
                ),
                (next, 0.2)
            );
            let days = report(&list, &simple(3.0), Period::Day).rows;
            assert_eq!(days[0].period, last[..10]);
            assert_eq!(days[1].period, first[..10]);
        }
    }

    #[test]
    fn unsorted_input_gives_the_same_report() {
        let list = range("2026-11-20", "2026-11-24", |i| (i as i64 * 37) % 1500);
        let mut shuffled = list.clone();
        shuffled.reverse();
        shuffled.swap(3, 200);
        let config = TariffConfig::default();
        for period in [Period::Day, Period::Month] {
            assert_eq!(
                report(&list, &config, period),
                report(&shuffled, &config, period)
            );
        }
        assert!(report(&[], &config, Period::Day).rows.is_empty());
    }

    #[test]
    fn summaries_take_their_range() {
        let list = range("2026-10-31", "2026-11-03", |_| 100); // 9.6 kWh a day
        let config = simple(3.0);
        let today = summarize(
            &list,
            &config,
            local("2026-11-02T00:00"),
            local("2026-11-02T12:00"),
        );
        assert_eq!(today.energy_import_kwh, 4.8);
        // 4.8 × 0.15 + 30 / 30
        assert_eq!(today.cost_eur, 1.72);
        let month = summarize(
            &list,
            &config,
            local("2026-11-01T00:00"),
            local("2026-11-03T00:00"),
        );
        assert_eq!(month.energy_import_kwh, 19.2);
        assert_eq!(month.cost_eur, cents(19.2 * 0.15 + 2.0));
        let empty = summarize(
            &list,
            &config,
            local("2026-12-01T00:00"),
            local("2027-01-01T00:00"),
        );
        assert_eq!((empty.energy_import_kwh, empty.cost_eur), (0.0, 0.0));
    }

    #[test]
    fn defaults_are_the_2025_figures() {
        let config = TariffConfig::from_table(None).unwrap();
        assert_eq!(config, TariffConfig::default());
        assert_eq!(config.reference_power_kw, 3.0);
        assert_eq!(config.network_price_eur_per_kwh, 0.0759);
        assert_eq!(config.above_reference_price_eur_per_kwh, 0.1139);
        assert!((config.fixed_eur_per_month - (11.11 + 5.90 + 1.75)).abs() < 1e-9);
        let empty = TariffConfig::from_table(Some(&toml::Table::new())).unwrap();
        assert_eq!(empty, config);
        // The fixed fee follows the reference power unless set.
        let seven = TariffConfig::from_table(Some(&table("reference_power_kw = 7"))).unwrap();
        assert!((seven.fixed_eur_per_month - (19.27 + 5.90 + 1.75)).abs() < 1e-9);
        let set = table("reference_power_kw = 12.0\nfixed_eur_per_month = 40");
        assert_eq!(
            TariffConfig::from_table(Some(&set))
                .unwrap()
                .fixed_eur_per_month,
            40.0
        );
    }

    #[test]
    fn configuration_errors_name_the_field() {
        let err = parse_error("reference_power = 7.0");
        assert!(
            err.starts_with("[tariff]: unknown field `reference_power`"),
            "{err}"
        );
        let err = parse_error("reference_power_kw = \"seven\"");
        assert!(
            err.contains("`reference_power_kw` must be a number"),
            "{err}"
        );
        let err = parse_error("currency = 3");
        assert!(err.contains("`currency` must be a string"), "{err}");
        let err = parse_error("energy_price_eur_per_kwh = -0.1");
        assert!(
            err.contains("`energy_price_eur_per_kwh`") && err.contains("negative"),
            "{err}"
        );
        let err = parse_error("vat_rate = 8");
        assert!(err.contains("`vat_rate`"), "{err}");
        let err = parse_error("reference_power_kw = 0");
        assert!(err.contains("`reference_power_kw`"), "{err}");
        let err = parse_error("reference_power_kw = 5.0");
        assert!(
            err.contains("`reference_power_kw`") && err.contains("`fixed_eur_per_month`"),
            "{err}"
        );
        let err = parse_error("export_price_eur_per_kwh = nan");
        assert!(err.contains("`export_price_eur_per_kwh`"), "{err}");
        // A negative compensation contribution is a subsidy, not a mistake.
        let ok = TariffConfig::from_table(Some(&table("compensation_eur_per_kwh = -0.1146")));
        assert_eq!(ok.unwrap().compensation_eur_per_kwh, -0.1146);
    }

    #[test]
    fn the_example_configuration_parses() {
        let example: toml::Table = crate::config::EXAMPLE.parse().unwrap();
        let section = example.get("tariff").and_then(toml::Value::as_table);
        let section = section.expect("the example has a [tariff] section");
        let config = TariffConfig::from_table(Some(section)).unwrap();
        assert_eq!(config.currency, "EUR");
        // Through the whole configuration, with an environment override as the service reads it.
        let env = [(
            "SMARTY_TARIFF_REFERENCE_POWER_KW".to_owned(),
            "7".to_owned(),
        )];
        let whole = crate::config::Config::parse(crate::config::EXAMPLE, "example", &env).unwrap();
        let config = whole.tariff.unwrap();
        assert_eq!(config.reference_power_kw, 7.0);
    }

    #[test]
    fn reports_serialize_as_the_api_shows() {
        let list = range(
            "2026-11-22",
            "2026-11-23",
            |i| if i == 40 { 1200 } else { 150 },
        );
        let value =
            serde_json::to_value(report(&list, &TariffConfig::default(), Period::Day)).unwrap();
        for key in ["currency", "reference_power_kw", "prices", "rows", "total"] {
            assert!(value.get(key).is_some(), "{key}: {value}");
        }
        let row = &value["rows"][0];
        for key in [
            "period",
            "start",
            "energy_import_kwh",
            "energy_within_reference_kwh",
            "energy_above_reference_kwh",
            "intervals",
            "intervals_above_reference",
            "peak_15min_kw",
            "energy_export_kwh",
            "cost",
        ] {
            assert!(row.get(key).is_some(), "{key}: {row}");
        }
        for key in [
            "energy_eur",
            "above_reference_eur",
            "fixed_eur",
            "export_eur",
            "total_eur",
        ] {
            assert!(row["cost"][key].is_number(), "{key}: {row}");
        }
        assert_eq!(row["energy_above_reference_kwh"], 0.45);
        assert!(value["total"].get("period").is_none());
        assert_eq!(value["prices"]["above_reference_price_eur_per_kwh"], 0.1139);
    }
}
