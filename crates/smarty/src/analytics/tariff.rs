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
//! reference power is billed at the above-reference price *instead of* the network price:
//! 0.1139 against 0.0759 €/kWh in 2025, "50 % more per kilowatt-hour" (Paperjam,
//! <https://en.paperjam.lu/article/electricity-consumption-overru>). Sudstroum's sheet calls
//! the higher price a "Zuschlag" (surcharge); docs/tariff.md says how to configure the other
//! reading.
//!
//! # Prices change: validity periods
//!
//! Prices hold from a date on ([`BUILTIN`]: 2025, and Sudstroum's provisional 2026 network
//! prices, <https://www.sudstroum.lu/de/produkte/strom-fur-privatkunden>). Each day of a report
//! is priced with the prices in force that day ([`TariffConfig::schedule`]); the
//! configuration may override any price for the whole history (`[tariff]`) or from a date on
//! (`[[tariff.periods]]`).
//!
//! # What is computed
//!
//! - Energies are register differences per 15 minutes (exact watt-hours), shown in kWh with
//!   three decimals (exact); powers in kW with three decimals; money in the configured currency
//!   rounded to cents, each component separately, the totals as the sum of the rounded parts.
//! - Costs include VAT, except the export remuneration.
//! - The fixed monthly fee accrues per local day that has at least one interval: a day gets
//!   `monthly / days in its month`; a month row the sum of its days (the full fee when every
//!   day has data, a prorated fee for the current or a partial month).
//! - Days and months are local (Europe/Luxembourg): a DST day has 92 or 100 intervals.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use smarty_model::period::{INTERVAL_S, Interval, Period};
use smarty_model::time::meter_zone;

/// The prices of one validity period as published: what smarty assumes from `from` on until
/// the next period, where the configuration says nothing else.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Builtin {
    /// The first day (local) the prices hold: `2026-01-01`.
    pub from: &'static str,
    /// Reference powers and their fixed network fee, kW and € per month excluding VAT.
    pub network_fixed_eur_per_month: &'static [(f64, f64)],
    /// Meter rental ("complément à la redevance fixe") for a 40 or 50 A connection, € per
    /// month excluding VAT.
    pub metering_eur_per_month: f64,
    /// Network price per kWh within the reference power, € excluding VAT.
    pub network_price_eur_per_kwh: f64,
    /// Network price per kWh above the reference power, € excluding VAT.
    pub above_reference_price_eur_per_kwh: f64,
    /// An example supply price (Sudstroum TERRA ONLINE), € per kWh excluding VAT.
    pub energy_price_eur_per_kwh: f64,
    /// The same offer's fixed premium (21 € a year), per month.
    pub supplier_fixed_eur_per_month: f64,
    /// Electricity tax for households (category A), € per kWh.
    pub electricity_tax_eur_per_kwh: f64,
    /// Contribution to the compensation mechanism, € per kWh (0: not found in the sources).
    pub compensation_eur_per_kwh: f64,
    /// VAT on electricity.
    pub vat_rate: f64,
    /// An example feed-in tariff, € per kWh.
    pub export_price_eur_per_kwh: f64,
}

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

/// The reference powers of 2026 and their fixed network fee, € per month excluding VAT
/// (Sudstroum, "Strom für Privatkunden": the provisional 2026 network tariff).
pub const NETWORK_FIXED_2026_EUR_PER_MONTH: [(f64, f64); 10] = [
    (3.0, 7.42),
    (7.0, 12.84),
    (12.0, 19.61),
    (17.0, 26.39),
    (27.0, 39.94),
    (43.0, 61.62),
    (70.0, 98.20),
    (100.0, 138.85),
    (150.0, 206.60),
    (200.0, 274.35),
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

/// The published prices smarty knows, oldest first (docs/tariff.md, "Prices"): 2025 (final,
/// ILR-approved) and 2026 (Sudstroum's provisional network tariff and its 2026 energy price;
/// the electricity tax, the compensation contribution and VAT as in 2025, as no 2026 figure
/// was published).
pub const BUILTIN: [Builtin; 2] = [
    Builtin {
        from: "2025-01-01",
        network_fixed_eur_per_month: &NETWORK_FIXED_2025_EUR_PER_MONTH,
        metering_eur_per_month: METERING_2025_EUR_PER_MONTH,
        network_price_eur_per_kwh: NETWORK_PRICE_2025,
        above_reference_price_eur_per_kwh: ABOVE_REFERENCE_PRICE_2025,
        energy_price_eur_per_kwh: ENERGY_PRICE_2025,
        supplier_fixed_eur_per_month: SUPPLIER_FIXED_2025_EUR_PER_MONTH,
        electricity_tax_eur_per_kwh: ELECTRICITY_TAX_EUR_PER_KWH,
        compensation_eur_per_kwh: 0.0,
        vat_rate: VAT_RATE,
        export_price_eur_per_kwh: EXPORT_PRICE_EXAMPLE,
    },
    Builtin {
        from: "2026-01-01",
        network_fixed_eur_per_month: &NETWORK_FIXED_2026_EUR_PER_MONTH,
        metering_eur_per_month: 5.72,
        network_price_eur_per_kwh: 0.0510,
        above_reference_price_eur_per_kwh: 0.0765,
        energy_price_eur_per_kwh: 0.1229,
        supplier_fixed_eur_per_month: SUPPLIER_FIXED_2025_EUR_PER_MONTH,
        electricity_tax_eur_per_kwh: ELECTRICITY_TAX_EUR_PER_KWH,
        compensation_eur_per_kwh: 0.0,
        vat_rate: VAT_RATE,
        export_price_eur_per_kwh: EXPORT_PRICE_EXAMPLE,
    },
];

impl Builtin {
    /// Its first day.
    fn day(&self) -> Date {
        self.from
            .parse()
            .expect("the built-in periods start on valid dates")
    }

    /// The fixed fees per month for a reference power of its table: network fee, meter
    /// rental and the example supplier's premium; `None` for a power not in the table.
    fn fixed(&self, reference_power_kw: f64) -> Option<f64> {
        self.network_fixed_eur_per_month
            .iter()
            .find(|(kw, _)| *kw == reference_power_kw)
            .map(|(_, fee)| fee + self.metering_eur_per_month + self.supplier_fixed_eur_per_month)
    }

    /// Its value of a price.
    fn price(&self, price: Price, reference_power_kw: f64) -> Option<f64> {
        Some(match price {
            Price::Energy => self.energy_price_eur_per_kwh,
            Price::Network => self.network_price_eur_per_kwh,
            Price::AboveReference => self.above_reference_price_eur_per_kwh,
            Price::ElectricityTax => self.electricity_tax_eur_per_kwh,
            Price::Compensation => self.compensation_eur_per_kwh,
            Price::Fixed => return self.fixed(reference_power_kw),
            Price::Vat => self.vat_rate,
            Price::Export => self.export_price_eur_per_kwh,
        })
    }
}

/// The prices that change over time, in the order of [`PriceFields::values`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Price {
    Energy,
    Network,
    AboveReference,
    ElectricityTax,
    Compensation,
    Fixed,
    Vat,
    Export,
}

const PRICES: [(Price, &str); 8] = [
    (Price::Energy, "energy_price_eur_per_kwh"),
    (Price::Network, "network_price_eur_per_kwh"),
    (Price::AboveReference, "above_reference_price_eur_per_kwh"),
    (Price::ElectricityTax, "electricity_tax_eur_per_kwh"),
    (Price::Compensation, "compensation_eur_per_kwh"),
    (Price::Fixed, "fixed_eur_per_month"),
    (Price::Vat, "vat_rate"),
    (Price::Export, "export_price_eur_per_kwh"),
];

/// The `[tariff]` section: the household's reference power and currency, prices for the
/// whole history, and `periods` of prices from a date on. Every field may be left out:
/// prices not given anywhere are the published ones in force each day ([`BUILTIN`]). Prices
/// are per kWh or per month, excluding VAT unless said.
///
/// A price at a time is, first found: the one of the latest of `periods` that starts on or
/// before that day and sets it, the one of the section itself, the published one of that day
/// (docs/tariff.md, "Configuration").
///
/// ```toml
/// [tariff]
/// reference_power_kw = 7
/// energy_price_eur_per_kwh = 0.1450        # the whole history
///
/// [[tariff.periods]]
/// from = "2027-01-01"                       # from that day on
/// network_price_eur_per_kwh = 0.0530
/// ```
///
/// Check a deserialised section with [`TariffConfig::check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TariffConfig {
    /// The reference power assigned by the grid operator (shown on the bill), kW.
    pub reference_power_kw: f64,
    /// The currency of every price, a label (`"EUR"`).
    pub currency: String,
    /// Supply price per kWh imported (the supplier's energy price).
    pub energy_price_eur_per_kwh: Option<f64>,
    /// Network price per kWh imported within the reference power.
    pub network_price_eur_per_kwh: Option<f64>,
    /// Network price per kWh imported above the reference power (instead of the one within).
    pub above_reference_price_eur_per_kwh: Option<f64>,
    /// Per kWh imported: the electricity tax.
    pub electricity_tax_eur_per_kwh: Option<f64>,
    /// Per kWh imported: the contribution to the compensation mechanism (negative while the
    /// state subsidises household prices).
    pub compensation_eur_per_kwh: Option<f64>,
    /// Fixed fees per month: the network fee of the reference power, the meter rental and the
    /// supplier's fixed premium. Default: the published network fee of
    /// [`Self::reference_power_kw`] + meter rental (40/50 A) + 1.75.
    pub fixed_eur_per_month: Option<f64>,
    /// VAT rate applied to all of the above (0.08 = 8 %).
    pub vat_rate: Option<f64>,
    /// Remuneration per kWh exported (feed-in), a positive number, no VAT added.
    pub export_price_eur_per_kwh: Option<f64>,
    /// Prices from a date on (`[[tariff.periods]]`), in any order.
    pub periods: Vec<TariffPeriod>,
}

/// One `[[tariff.periods]]` entry: prices that hold from `from` (a local date) until the next
/// period that sets them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TariffPeriod {
    /// The first day the prices hold: `"2026-01-01"` (a string or a TOML date).
    #[serde(deserialize_with = "date", serialize_with = "date_text")]
    pub from: Date,
    /// See [`TariffConfig::energy_price_eur_per_kwh`].
    #[serde(default)]
    pub energy_price_eur_per_kwh: Option<f64>,
    /// See [`TariffConfig::network_price_eur_per_kwh`].
    #[serde(default)]
    pub network_price_eur_per_kwh: Option<f64>,
    /// See [`TariffConfig::above_reference_price_eur_per_kwh`].
    #[serde(default)]
    pub above_reference_price_eur_per_kwh: Option<f64>,
    /// See [`TariffConfig::electricity_tax_eur_per_kwh`].
    #[serde(default)]
    pub electricity_tax_eur_per_kwh: Option<f64>,
    /// See [`TariffConfig::compensation_eur_per_kwh`].
    #[serde(default)]
    pub compensation_eur_per_kwh: Option<f64>,
    /// See [`TariffConfig::fixed_eur_per_month`].
    #[serde(default)]
    pub fixed_eur_per_month: Option<f64>,
    /// See [`TariffConfig::vat_rate`].
    #[serde(default)]
    pub vat_rate: Option<f64>,
    /// See [`TariffConfig::export_price_eur_per_kwh`].
    #[serde(default)]
    pub export_price_eur_per_kwh: Option<f64>,
}

/// The price fields a section or a period sets, in [`PRICES`] order.
trait PriceFields {
    fn values(&self) -> [Option<f64>; 8];
}

impl PriceFields for TariffConfig {
    fn values(&self) -> [Option<f64>; 8] {
        [
            self.energy_price_eur_per_kwh,
            self.network_price_eur_per_kwh,
            self.above_reference_price_eur_per_kwh,
            self.electricity_tax_eur_per_kwh,
            self.compensation_eur_per_kwh,
            self.fixed_eur_per_month,
            self.vat_rate,
            self.export_price_eur_per_kwh,
        ]
    }
}

impl PriceFields for TariffPeriod {
    fn values(&self) -> [Option<f64>; 8] {
        [
            self.energy_price_eur_per_kwh,
            self.network_price_eur_per_kwh,
            self.above_reference_price_eur_per_kwh,
            self.electricity_tax_eur_per_kwh,
            self.compensation_eur_per_kwh,
            self.fixed_eur_per_month,
            self.vat_rate,
            self.export_price_eur_per_kwh,
        ]
    }
}

/// A date from `"2026-01-01"` or a TOML date (`2026-01-01`).
fn date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
    use serde::de::Error;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        String(String),
        Toml(toml::value::Datetime),
    }
    let text = match Text::deserialize(deserializer)
        .map_err(|_| D::Error::custom("`from` must be a date like \"2026-01-01\""))?
    {
        Text::String(text) => text,
        Text::Toml(datetime) => datetime.to_string(),
    };
    text.parse().map_err(|_| {
        D::Error::custom(format!(
            "`from` = {text:?} is not a date like \"2026-01-01\""
        ))
    })
}

fn date_text<S: Serializer>(date: &Date, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(date)
}

impl Default for TariffConfig {
    fn default() -> Self {
        TariffConfig {
            reference_power_kw: DEFAULT_REFERENCE_POWER_KW,
            currency: "EUR".into(),
            energy_price_eur_per_kwh: None,
            network_price_eur_per_kwh: None,
            above_reference_price_eur_per_kwh: None,
            electricity_tax_eur_per_kwh: None,
            compensation_eur_per_kwh: None,
            fixed_eur_per_month: None,
            vat_rate: None,
            export_price_eur_per_kwh: None,
            periods: Vec::new(),
        }
    }
}

/// The prices in force from a day on, every one known: a step of [`TariffConfig::schedule`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PricePeriod {
    /// Its first day (`2026-01-01`), `None` for the first period of a schedule (it holds for
    /// everything before the second one).
    #[serde(serialize_with = "optional_date_text")]
    pub from: Option<Date>,
    /// Its start, local midnight, Unix seconds (`i64::MIN` for the first period).
    #[serde(skip)]
    pub start: i64,
    /// Its prices.
    pub prices: Prices,
}

fn optional_date_text<S: Serializer>(
    date: &Option<Date>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match date {
        Some(date) => serializer.collect_str(date),
        None => serializer.serialize_none(),
    }
}

impl TariffConfig {
    /// Reads a `[tariff]` table as the configuration does (tests only: the service reads the
    /// section through the typed configuration, then [`TariffConfig::check`]).
    #[cfg(test)]
    pub fn from_table(table: Option<&toml::Table>) -> Result<TariffConfig> {
        let Some(table) = table else {
            return Ok(TariffConfig::default());
        };
        let config: TariffConfig = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("[tariff]: {}", e.message()))?;
        config.check()?;
        Ok(config)
    }

    /// Checks the ranges of every value and that every day has every price: numbers are finite
    /// and not negative (only the compensation contribution may be), a VAT rate is a fraction,
    /// the reference power is positive and, where no `fixed_eur_per_month` is given, one of
    /// the published levels; no two periods start on the same day.
    ///
    /// # Errors
    /// The first mistake, naming the field and, in a period, its position and date.
    pub fn check(&self) -> Result<()> {
        if !(self.reference_power_kw.is_finite() && self.reference_power_kw > 0.0) {
            bail!(
                "[tariff]: `reference_power_kw` = {} must be more than 0 kW",
                self.reference_power_kw
            );
        }
        if self.currency.trim().is_empty() {
            bail!("[tariff]: `currency` must not be empty");
        }
        check_values("[tariff]".into(), &self.values())?;
        let mut days: Vec<Date> = Vec::new();
        for (i, period) in self.periods.iter().enumerate() {
            let place = format!("[tariff] periods[{i}] (from {})", period.from);
            if days.contains(&period.from) {
                bail!("{place}: another period starts on the same day");
            }
            days.push(period.from);
            check_values(place, &period.values())?;
        }
        self.schedule().map(|_| ())
    }

    /// The prices in force over time, oldest first: one [`PricePeriod`] per day on which a
    /// built-in or configured period starts (merged when nothing changes), the first one also
    /// holding for everything before it.
    ///
    /// # Errors
    /// A day without a fixed fee: a reference power that is not a published level while
    /// `fixed_eur_per_month` is not configured.
    pub fn schedule(&self) -> Result<Vec<PricePeriod>> {
        let zone = meter_zone();
        let builtin: Vec<(Date, &Builtin)> = BUILTIN.iter().map(|b| (b.day(), b)).collect();
        let mut periods: Vec<&TariffPeriod> = self.periods.iter().collect();
        periods.sort_by_key(|p| p.from);
        let mut days: Vec<Date> = builtin
            .iter()
            .map(|(day, _)| *day)
            .chain(periods.iter().map(|p| p.from))
            .collect();
        days.sort();
        days.dedup();
        let top = self.values();
        let mut schedule: Vec<PricePeriod> = Vec::new();
        for (n, day) in days.iter().enumerate() {
            // The published prices of the day: the latest built-in period started, else the
            // first one.
            let published = builtin
                .iter()
                .rev()
                .find(|(from, _)| from <= day)
                .unwrap_or(&builtin[0])
                .1;
            let mut values = [0.0; 8];
            for (i, (price, name)) in PRICES.iter().enumerate() {
                let configured = periods
                    .iter()
                    .rev()
                    .filter(|p| p.from <= *day)
                    .find_map(|p| p.values()[i])
                    .or(top[i]);
                values[i] =
                    match configured.or_else(|| published.price(*price, self.reference_power_kw)) {
                        Some(value) => value,
                        None => bail!(
                            "[tariff]: `reference_power_kw` = {} is not a reference power of the \
                         tariff from {} ({} kW); set `{name}` too",
                            self.reference_power_kw,
                            published.from,
                            published
                                .network_fixed_eur_per_month
                                .iter()
                                .map(|(kw, _)| kw.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
            }
            let prices = Prices::from_values(values);
            if schedule.last().is_some_and(|last| last.prices == prices) {
                continue;
            }
            let (from, start) = if n == 0 {
                (None, i64::MIN)
            } else {
                let start = day
                    .to_zoned(zone.clone())
                    .map_or(i64::MIN, |z| z.timestamp().as_second());
                (Some(*day), start)
            };
            schedule.push(PricePeriod {
                from,
                start,
                prices,
            });
        }
        Ok(schedule)
    }

    /// [`TariffConfig::schedule`], or for a configuration that [`TariffConfig::check`] would
    /// refuse, the published prices at the lowest reference power (never used by a service,
    /// which checks its configuration when it starts).
    fn schedule_or_published(&self) -> Vec<PricePeriod> {
        self.schedule().unwrap_or_else(|_| {
            TariffConfig::default()
                .schedule()
                .expect("the built-in periods price the default reference power")
        })
    }

    /// The energy a 15-minute period may hold before it exceeds the reference power, Wh
    /// (`P_ref × 0.25 h`), rounded to a micro-watt-hour so that decimal powers compare exactly.
    fn threshold_wh(&self) -> f64 {
        threshold_wh(self.reference_power_kw)
    }
}

/// The index of the period of `schedule` in force at `t`.
fn price_index(schedule: &[PricePeriod], t: i64) -> Option<usize> {
    schedule.iter().rposition(|p| p.start <= t)
}

/// Checks the ranges of the prices a section or period sets.
fn check_values(place: String, values: &[Option<f64>; 8]) -> Result<()> {
    for ((price, name), value) in PRICES.iter().zip(values) {
        let Some(value) = *value else { continue };
        if !value.is_finite() {
            bail!("{place}: `{name}` = {value} is not a finite number");
        }
        // Only the compensation contribution may be negative (a subsidy).
        if value < 0.0 && *price != Price::Compensation {
            bail!("{place}: `{name}` = {value} must not be negative");
        }
        if *price == Price::Vat && value >= 1.0 {
            bail!("{place}: `{name}` = {value} is a fraction: 0.08 for 8 %");
        }
    }
    Ok(())
}

fn threshold_wh(reference_power_kw: f64) -> f64 {
    let hours = INTERVAL_S as f64 / 3600.0;
    (reference_power_kw * 1000.0 * hours * 1e6).round() / 1e6
}

/// The prices of a period, every one known (excluding VAT, per kWh or per month).
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

impl Prices {
    /// From values in [`PRICES`] order.
    fn from_values(v: [f64; 8]) -> Prices {
        Prices {
            energy_price_eur_per_kwh: v[0],
            network_price_eur_per_kwh: v[1],
            above_reference_price_eur_per_kwh: v[2],
            electricity_tax_eur_per_kwh: v[3],
            compensation_eur_per_kwh: v[4],
            fixed_eur_per_month: v[5],
            vat_rate: v[6],
            export_price_eur_per_kwh: v[7],
        }
    }
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
/// every part but `export_eur`. Each day is priced with the prices in force that day.
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
    /// The prices in force at the end of the report (of its last row; now, without rows).
    pub prices: Prices,
    /// The price periods the rows use, oldest first: a report across a change of prices has
    /// two or more, each applied to its own days.
    pub price_periods: Vec<PricePeriod>,
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
    /// The part of `cost_eur` that is the fixed monthly fees' share of the range's days
    /// ([`Cost::fixed_eur`]): paid whatever the consumption.
    pub fixed_eur: f64,
}

/// Money of a period before rounding, VAT included (but in `export`): summed over days that
/// may have different prices.
#[derive(Debug, Default, Clone, Copy)]
struct Money {
    energy: f64,
    above: f64,
    fixed: f64,
    export: f64,
    vat: f64,
}

impl Money {
    fn add(&mut self, other: &Money) {
        self.energy += other.energy;
        self.above += other.above;
        self.fixed += other.fixed;
        self.export += other.export;
        self.vat += other.vat;
    }
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
    /// What it costs, each day at its prices.
    money: Money,
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
        self.money.add(&other.money);
    }

    /// Prices the sums (of one day, all at the same prices).
    fn price(&mut self, c: &Prices) {
        let import_kwh = self.import_wh as f64 / 1000.0;
        let above_kwh = self.above_wh / 1000.0;
        let gross = 1.0 + c.vat_rate;
        let base = c.energy_price_eur_per_kwh
            + c.network_price_eur_per_kwh
            + c.electricity_tax_eur_per_kwh
            + c.compensation_eur_per_kwh;
        let energy = import_kwh * base * gross;
        let above =
            above_kwh * (c.above_reference_price_eur_per_kwh - c.network_price_eur_per_kwh) * gross;
        let fixed = c.fixed_eur_per_month * self.months * gross;
        self.money = Money {
            energy,
            above,
            fixed,
            export: -(self.export_wh as f64 / 1000.0 * c.export_price_eur_per_kwh),
            vat: (energy + above + fixed) * c.vat_rate / gross,
        };
    }

    fn total(&self) -> TariffFigures {
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
            cost: self.cost(),
        }
    }

    fn cost(&self) -> Cost {
        let m = &self.money;
        let (energy, above, fixed, export) = (
            cents(m.energy),
            cents(m.above),
            cents(m.fixed),
            cents(m.export),
        );
        let bill = cents(energy + above + fixed);
        Cost {
            energy_eur: energy,
            above_reference_eur: above,
            fixed_eur: fixed,
            export_eur: export,
            bill_eur: bill,
            vat_eur: cents(m.vat),
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
/// of the monthly fee and is priced with the prices of `schedule` in force that day (price
/// periods start at local midnight). Also returns which periods of `schedule` were used.
fn days(
    intervals: &[Interval],
    threshold_wh: f64,
    schedule: &[PricePeriod],
) -> (BTreeMap<i64, (Date, Acc)>, Vec<bool>) {
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
    let mut used = vec![false; schedule.len()];
    for (start, (_, acc)) in &mut days {
        if let Some(i) = price_index(schedule, *start) {
            used[i] = true;
            acc.price(&schedule[i].prices);
        }
    }
    (days, used)
}

/// The grid-tariff report of `intervals` per local day or month: rows only for periods that
/// have intervals, oldest first, and their total. Each day is priced with the prices in force
/// that day ([`TariffConfig::schedule`]), so a report across a change of prices applies each
/// period's prices to its own days.
///
/// `intervals` are normally sorted by start (they are grouped faster then), but need not be.
pub fn report(intervals: &[Interval], config: &TariffConfig, period: Period) -> TariffReport {
    let tz = meter_zone();
    let schedule = config.schedule_or_published();
    let (days, used) = days(intervals, config.threshold_wh(), &schedule);
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
    let rows: Vec<TariffRow> = periods
        .into_iter()
        .map(|(start, (period, acc))| {
            all.merge(&acc);
            TariffRow {
                period,
                start,
                figures: acc.total(),
            }
        })
        .collect();
    let end = days
        .keys()
        .next_back()
        .copied()
        .unwrap_or_else(|| jiff::Timestamp::now().as_second());
    let prices = price_index(&schedule, end).map_or_else(
        || schedule[0].prices.clone(),
        |i| schedule[i].prices.clone(),
    );
    TariffReport {
        currency: config.currency.clone(),
        reference_power_kw: config.reference_power_kw,
        prices,
        price_periods: schedule
            .into_iter()
            .zip(used)
            .filter_map(|(p, used)| used.then_some(p))
            .collect(),
        rows,
        total: all.total(),
    }
}

/// Energy and cost of the intervals starting in `from..to` (Unix seconds, `to` exclusive),
/// for the dashboard's header: today, this month, last month.
///
/// The cost is the report's: the fixed fee accrues per local day with data, and `fixed_eur`
/// says how much of `cost_eur` it is.
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
        fixed_eur: total.cost.fixed_eur,
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

    /// Simple prices for the whole history, no VAT, no taxes: costs are easy to work out by
    /// hand.
    fn simple(reference_power_kw: f64) -> TariffConfig {
        TariffConfig {
            reference_power_kw,
            currency: "EUR".into(),
            energy_price_eur_per_kwh: Some(0.10),
            network_price_eur_per_kwh: Some(0.05),
            above_reference_price_eur_per_kwh: Some(0.08),
            electricity_tax_eur_per_kwh: Some(0.0),
            compensation_eur_per_kwh: Some(0.0),
            fixed_eur_per_month: Some(30.0),
            vat_rate: Some(0.0),
            export_price_eur_per_kwh: Some(0.12),
            periods: Vec::new(),
        }
    }

    /// The prices of `config` in force at local time `text`.
    fn prices_at(config: &TariffConfig, text: &str) -> Prices {
        let schedule = config.schedule().unwrap();
        schedule[price_index(&schedule, local(text)).unwrap()]
            .prices
            .clone()
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

    /// docs/tariff.md, "A worked example": a day of 2025, at the 2025 prices.
    #[test]
    fn the_worked_example_of_the_docs() {
        // 2 periods of 2.0 kWh, 3 of 1.0 kWh, 90 of 50 Wh and one of 500 Wh: 12 kWh; 5 kWh
        // exported in 10 periods of 500 Wh.
        let mut day = range("2025-11-22", "2025-11-23", |i| match i {
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
        // The same day a year later, at the 2026 prices.
        for interval in &mut day {
            interval.start += local("2026-11-22T00:00") - local("2025-11-22T00:00");
        }
        let cost = report(&day, &TariffConfig::default(), Period::Day)
            .total
            .cost;
        assert_eq!(
            (cost.energy_eur, cost.above_reference_eur, cost.fixed_eur),
            (2.27, 0.09, 0.54)
        );
    }

    #[test]
    fn vat_and_per_kwh_levies_are_applied() {
        let config = TariffConfig {
            electricity_tax_eur_per_kwh: Some(0.01),
            compensation_eur_per_kwh: Some(-0.02),
            vat_rate: Some(0.08),
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
        let fixed = prices_at(&config, "2026-11-01T00:00").fixed_eur_per_month;
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
        assert_eq!(month.figures.cost.fixed_eur, cents(fixed * 1.08));
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
        // 4.8 × 0.15 + 30 / 30, of which the day's share of the fixed fees 1.00
        assert_eq!(today.cost_eur, 1.72);
        assert_eq!(today.fixed_eur, 1.0);
        let month = summarize(
            &list,
            &config,
            local("2026-11-01T00:00"),
            local("2026-11-03T00:00"),
        );
        assert_eq!(month.energy_import_kwh, 19.2);
        assert_eq!(month.cost_eur, cents(19.2 * 0.15 + 2.0));
        assert_eq!(month.fixed_eur, 2.0);
        let empty = summarize(
            &list,
            &config,
            local("2026-12-01T00:00"),
            local("2027-01-01T00:00"),
        );
        assert_eq!((empty.energy_import_kwh, empty.cost_eur), (0.0, 0.0));
    }

    #[test]
    fn defaults_are_the_published_figures_of_each_year() {
        let config = TariffConfig::from_table(None).unwrap();
        assert_eq!(config, TariffConfig::default());
        assert_eq!(config.reference_power_kw, 3.0);
        let empty = TariffConfig::from_table(Some(&toml::Table::new())).unwrap();
        assert_eq!(empty, config);
        // 2025 (and everything before), then 2026.
        let schedule = config.schedule().unwrap();
        assert_eq!(schedule.len(), 2);
        assert_eq!(schedule[0].from, None);
        assert_eq!(schedule[1].from, Some("2026-01-01".parse().unwrap()));
        assert_eq!(schedule[1].start, local("2026-01-01T00:00"));
        for day in ["2024-06-01T12:00", "2025-12-31T23:59"] {
            let prices = prices_at(&config, day);
            assert_eq!(prices.network_price_eur_per_kwh, 0.0759, "{day}");
            assert_eq!(prices.above_reference_price_eur_per_kwh, 0.1139, "{day}");
            assert_eq!(prices.energy_price_eur_per_kwh, 0.1329, "{day}");
            assert!((prices.fixed_eur_per_month - (11.11 + 5.90 + 1.75)).abs() < 1e-9);
        }
        let prices = prices_at(&config, "2026-01-01T00:00");
        assert_eq!(prices.network_price_eur_per_kwh, 0.0510);
        assert_eq!(prices.above_reference_price_eur_per_kwh, 0.0765);
        assert_eq!(prices.energy_price_eur_per_kwh, 0.1229);
        assert!((prices.fixed_eur_per_month - (7.42 + 5.72 + 1.75)).abs() < 1e-9);
        assert_eq!(prices.vat_rate, 0.08);
        // The fixed fee follows the reference power of each year's table unless set.
        let seven = TariffConfig::from_table(Some(&table("reference_power_kw = 7"))).unwrap();
        let fixed = |config: &TariffConfig, day: &str| prices_at(config, day).fixed_eur_per_month;
        assert!((fixed(&seven, "2025-06-01T00:00") - (19.27 + 5.90 + 1.75)).abs() < 1e-9);
        assert!((fixed(&seven, "2026-06-01T00:00") - (12.84 + 5.72 + 1.75)).abs() < 1e-9);
        let set = table("reference_power_kw = 12.0\nfixed_eur_per_month = 40");
        let set = TariffConfig::from_table(Some(&set)).unwrap();
        assert_eq!(fixed(&set, "2025-06-01T00:00"), 40.0);
        assert_eq!(fixed(&set, "2026-06-01T00:00"), 40.0);
        // 150 kW is a level from 2026 on only.
        let err = parse_error("reference_power_kw = 150");
        assert!(
            err.contains("`reference_power_kw` = 150")
                && err.contains("2025-01-01")
                && err.contains("`fixed_eur_per_month`"),
            "{err}"
        );
    }

    /// A report across a change of prices applies each period's prices to its own days: the
    /// built-in change of 1 January 2026, a configured period from the middle of a month, a
    /// configured price for the whole history.
    #[test]
    fn a_report_across_a_change_of_prices_prices_each_day_with_its_own() {
        // Four days at 9.6 kWh a day (100 Wh a period) around New Year, 1.5 kWh above 3 kW
        // on each day (two periods of 1500 Wh), 1 kWh exported.
        let list: Vec<Interval> = range("2025-12-30", "2026-01-03", |i| match i % 96 {
            40 | 41 => 1500,
            _ => 100,
        })
        .into_iter()
        .map(|mut i| {
            if (i.start - local("2025-12-30T12:00")) % 86_400 == 0 {
                i.energy_export_wh = 1000;
            }
            i
        })
        .collect();
        let config = TariffConfig::default();
        let report = report(&list, &config, Period::Day);
        assert_eq!(report.rows.len(), 4);
        // import 94 × 0.1 + 2 × 1.5 = 12.4 kWh, above 2 × 0.75 = 1.5 kWh a day.
        let day_cost = |p: &Prices, days_in_month: f64| {
            let base = p.energy_price_eur_per_kwh
                + p.network_price_eur_per_kwh
                + p.electricity_tax_eur_per_kwh
                + p.compensation_eur_per_kwh;
            (
                cents(12.4 * base * 1.08),
                cents(
                    1.5 * (p.above_reference_price_eur_per_kwh - p.network_price_eur_per_kwh)
                        * 1.08,
                ),
                cents(p.fixed_eur_per_month / days_in_month * 1.08),
                cents(-p.export_price_eur_per_kwh),
            )
        };
        let old = prices_at(&config, "2025-12-30T00:00");
        let new = prices_at(&config, "2026-01-02T00:00");
        assert_ne!(old, new);
        for row in &report.rows {
            let prices = if row.period.starts_with("2025") {
                &old
            } else {
                &new
            };
            let cost = &row.figures.cost;
            assert_eq!(row.figures.energy_import_kwh, 12.4, "{}", row.period);
            assert_eq!(
                row.figures.energy_above_reference_kwh, 1.5,
                "{}",
                row.period
            );
            assert_eq!(
                (
                    cost.energy_eur,
                    cost.above_reference_eur,
                    cost.fixed_eur,
                    cost.export_eur
                ),
                day_cost(prices, 31.0),
                "{}",
                row.period
            );
        }
        assert!(report.rows[0].figures.cost.energy_eur > report.rows[3].figures.cost.energy_eur);
        // The report names both periods and shows the prices of its end.
        assert_eq!(report.price_periods.len(), 2);
        assert_eq!(report.price_periods[0].prices, old);
        assert_eq!(report.price_periods[1].prices, new);
        assert_eq!(report.prices, new);
        // The total is the sum of the days (exact before rounding).
        let sum = |f: fn(&Cost) -> f64| report.rows.iter().map(|r| f(&r.figures.cost)).sum::<f64>();
        assert!((sum(|c| c.energy_eur) - report.total.cost.energy_eur).abs() <= 0.02);
        assert!((sum(|c| c.fixed_eur) - report.total.cost.fixed_eur).abs() <= 0.02);
        // Month rows: December at the old prices, January at the new ones.
        let months = super::report(&list, &config, Period::Month);
        assert_eq!(months.rows.len(), 2);
        assert_eq!(
            months.rows[0].figures.cost.fixed_eur,
            cents(2.0 * old.fixed_eur_per_month / 31.0 * 1.08)
        );
        assert_eq!(
            months.rows[1].figures.cost.fixed_eur,
            cents(2.0 * new.fixed_eur_per_month / 31.0 * 1.08)
        );

        // Configured: an energy price for the whole history, another network price from
        // 2 January on (the middle of January), and from 2026 on the published 2026 network
        // prices where the configuration says nothing.
        let configured = TariffConfig::from_table(Some(&table(
            "energy_price_eur_per_kwh = 0.15\n\
             [[periods]]\nfrom = \"2026-01-02\"\nnetwork_price_eur_per_kwh = 0.06\n\
             [[periods]]\nfrom = 2025-12-31\nvat_rate = 0.17\n",
        )))
        .unwrap();
        let schedule = configured.schedule().unwrap();
        let froms: Vec<Option<String>> = schedule
            .iter()
            .map(|p| p.from.map(|d| d.to_string()))
            .collect();
        assert_eq!(
            froms,
            [
                None,
                Some("2025-12-31".into()),
                Some("2026-01-01".into()),
                Some("2026-01-02".into())
            ]
        );
        let at = |day: &str| prices_at(&configured, &format!("{day}T10:00"));
        assert_eq!(at("2025-12-30").energy_price_eur_per_kwh, 0.15);
        assert_eq!(at("2025-12-30").network_price_eur_per_kwh, 0.0759);
        assert_eq!(at("2025-12-30").vat_rate, 0.08);
        assert_eq!(at("2025-12-31").vat_rate, 0.17);
        assert_eq!(at("2025-12-31").network_price_eur_per_kwh, 0.0759);
        assert_eq!(at("2026-01-01").network_price_eur_per_kwh, 0.0510);
        assert_eq!(at("2026-01-01").energy_price_eur_per_kwh, 0.15);
        assert_eq!(at("2026-01-01").vat_rate, 0.17);
        assert_eq!(at("2026-01-02").network_price_eur_per_kwh, 0.06);
        assert_eq!(at("2026-01-02").above_reference_price_eur_per_kwh, 0.0765);
        let days = super::report(&list, &configured, Period::Day);
        let months = super::report(&list, &configured, Period::Month);
        assert_eq!(days.price_periods.len(), 4);
        // January's row is its two days, each at its own prices.
        let january: f64 = days.rows[2..]
            .iter()
            .map(|r| r.figures.cost.energy_eur)
            .sum();
        assert!((months.rows[1].figures.cost.energy_eur - january).abs() <= 0.01);
        let (first, second) = (&days.rows[2].figures.cost, &days.rows[3].figures.cost);
        assert_eq!(
            first.energy_eur,
            cents(12.4 * (0.15 + 0.0510 + 0.001) * 1.17)
        );
        assert_eq!(
            second.energy_eur,
            cents(12.4 * (0.15 + 0.06 + 0.001) * 1.17)
        );
    }

    #[test]
    fn configuration_errors_name_the_field() {
        let err = parse_error("reference_power = 7.0");
        assert!(
            err.starts_with("[tariff]: unknown field `reference_power`"),
            "{err}"
        );
        // Types are refused by serde; the configuration layer adds the field and its line
        // (config/tests.rs).
        let err = parse_error("reference_power_kw = \"seven\"");
        assert!(err.contains("invalid type"), "{err}");
        let err = parse_error("currency = 3");
        assert!(err.contains("invalid type"), "{err}");
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
        assert_eq!(ok.unwrap().compensation_eur_per_kwh, Some(-0.1146));
        // Periods: each mistake names the period.
        let err = parse_error("[[periods]]\nfrom = \"2026-01-01\"\nvat_rate = 8");
        assert!(
            err.contains("periods[0] (from 2026-01-01)") && err.contains("`vat_rate` = 8"),
            "{err}"
        );
        let err = parse_error("[[periods]]\nfrom = \"2026-01-01\"\nnetwork_price = 0.05");
        assert!(err.contains("unknown field `network_price`"), "{err}");
        let err = parse_error("[[periods]]\nfrom = \"January\"\nvat_rate = 0.1");
        assert!(
            err.contains("`from`") && err.contains("\"January\""),
            "{err}"
        );
        let err = parse_error("[[periods]]\nvat_rate = 0.1");
        assert!(err.contains("`from`"), "{err}");
        let err = parse_error(
            "[[periods]]\nfrom = \"2026-01-01\"\n[[periods]]\nfrom = 2026-01-01\nvat_rate = 0.1",
        );
        assert!(
            err.contains("periods[1]") && err.contains("same day"),
            "{err}"
        );
        let err = parse_error("periods = 3");
        assert!(err.contains("invalid type"), "{err}");
    }

    /// The section as a plain serde struct, deserialised straight from TOML text (as a typed
    /// configuration reads it), then checked.
    #[test]
    fn the_section_deserializes_with_serde() {
        #[derive(Deserialize)]
        struct File {
            tariff: TariffConfig,
        }
        let text = "[tariff]\nreference_power_kw = 7\nvat_rate = 0.08\n\
                    [[tariff.periods]]\nfrom = \"2026-01-01\"\nenergy_price_eur_per_kwh = 0.14\n\
                    [[tariff.periods]]\nfrom = 2027-01-01\nenergy_price_eur_per_kwh = 0.15\n";
        let config = toml::from_str::<File>(text).unwrap().tariff;
        config.check().unwrap();
        assert_eq!(config.reference_power_kw, 7.0);
        assert_eq!(config.currency, "EUR");
        assert_eq!(config.vat_rate, Some(0.08));
        assert_eq!(config.periods.len(), 2);
        assert_eq!(
            config.periods[1].from,
            "2027-01-01".parse::<Date>().unwrap()
        );
        assert_eq!(
            prices_at(&config, "2027-03-01T00:00").energy_price_eur_per_kwh,
            0.15
        );
        let err = toml::from_str::<File>("[tariff]\n[[tariff.periods]]\nfrom = \"soon\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("`from` = \"soon\" is not a date"), "{err}");
        let err = toml::from_str::<File>("[tariff]\nreference_power = 7\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("reference_power"), "{err}");
        // Serialised back, the dates are text.
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["periods"][0]["from"], "2026-01-01");
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
        config.check().unwrap();
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
        assert_eq!(value["prices"]["above_reference_price_eur_per_kwh"], 0.0765);
        assert_eq!(value["price_periods"][0]["from"], "2026-01-01");
        assert_eq!(
            value["price_periods"][0]["prices"]["network_price_eur_per_kwh"],
            0.0510
        );
    }
}
