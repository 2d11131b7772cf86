//! The `[tariff]` section ([`TariffConfig`], [`TariffPeriod`]), its check ([`TariffError`])
//! and the prices in force over time it gives ([`TariffConfig::schedule`]: [`PricePeriod`]s
//! of [`Prices`]).

use jiff::civil::Date;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use smarty_model::period::INTERVAL_S;
use smarty_model::time::meter_zone;

use crate::prices::{BUILTIN, Builtin, DEFAULT_REFERENCE_POWER_KW, PRICES, Price};

/// A mistake in a `[tariff]` section, found by [`TariffConfig::check`]. Its message names the
/// place and the setting: ``[tariff] periods[1] (from 2026-01-01): `vat_rate` = 8 is a
/// fraction: 0.08 for 8 %``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {message}")]
pub struct TariffError {
    /// `[tariff]`, or `[tariff] periods[1] (from 2026-01-01)`.
    place: String,
    period: Option<usize>,
    field: Option<&'static str>,
    /// What is wrong, naming the setting in backquotes.
    message: String,
}

impl TariffError {
    /// A mistake of the section itself, in its setting `field` (if one).
    fn section(field: Option<&'static str>, message: String) -> TariffError {
        TariffError {
            place: "[tariff]".to_owned(),
            period: None,
            field,
            message,
        }
    }

    /// The position of the `[[tariff.periods]]` entry concerned (as written), `None` for a
    /// mistake of the section itself.
    pub fn period(&self) -> Option<usize> {
        self.period
    }

    /// The setting concerned (`reference_power_kw`, `vat_rate`), when the mistake is about
    /// one.
    pub fn field(&self) -> Option<&'static str> {
        self.field
    }
}

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
#[non_exhaustive]
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
#[non_exhaustive]
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
    pub(crate) fn from_table(table: Option<&toml::Table>) -> Result<TariffConfig, String> {
        let Some(table) = table else {
            return Ok(TariffConfig::default());
        };
        let config: TariffConfig = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| format!("[tariff]: {}", e.message()))?;
        config.check().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// Checks the ranges of every value and that every day has every price: numbers are finite
    /// and not negative (only the compensation contribution may be), a VAT rate is a fraction,
    /// the reference power is positive and, where no `fixed_eur_per_month` is given, one of
    /// the published levels; no two periods start on the same day.
    ///
    /// # Errors
    /// The first mistake, naming the field and, in a period, its position and date.
    pub fn check(&self) -> Result<(), TariffError> {
        if !(self.reference_power_kw.is_finite() && self.reference_power_kw > 0.0) {
            return Err(TariffError::section(
                Some("reference_power_kw"),
                format!(
                    "`reference_power_kw` = {} must be more than 0 kW",
                    self.reference_power_kw
                ),
            ));
        }
        if self.currency.trim().is_empty() {
            return Err(TariffError::section(
                Some("currency"),
                "`currency` must not be empty".to_owned(),
            ));
        }
        check_values("[tariff]", None, &self.values())?;
        let mut days: Vec<Date> = Vec::new();
        for (i, period) in self.periods.iter().enumerate() {
            let place = format!("[tariff] periods[{i}] (from {})", period.from);
            if days.contains(&period.from) {
                return Err(TariffError {
                    place,
                    period: Some(i),
                    field: Some("from"),
                    message: "another period starts on the same day".to_owned(),
                });
            }
            days.push(period.from);
            check_values(&place, Some(i), &period.values())?;
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
    pub fn schedule(&self) -> Result<Vec<PricePeriod>, TariffError> {
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
                        None => {
                            return Err(TariffError::section(
                                Some("reference_power_kw"),
                                format!(
                                    "`reference_power_kw` = {} is not a reference power of the \
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
                            ));
                        }
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
    pub(crate) fn schedule_or_published(&self) -> Vec<PricePeriod> {
        self.schedule().unwrap_or_else(|_| {
            TariffConfig::default()
                .schedule()
                .expect("the built-in periods price the default reference power")
        })
    }

    /// The energy a 15-minute period may hold before it exceeds the reference power, Wh
    /// (`P_ref × 0.25 h`), rounded to a micro-watt-hour so that decimal powers compare exactly.
    pub(crate) fn threshold_wh(&self) -> f64 {
        threshold_wh(self.reference_power_kw)
    }
}

/// The index of the period of `schedule` in force at `t`.
pub(crate) fn price_index(schedule: &[PricePeriod], t: i64) -> Option<usize> {
    schedule.iter().rposition(|p| p.start <= t)
}

/// Checks the ranges of the prices a section or period (the one at `period`) sets.
fn check_values(
    place: &str,
    period: Option<usize>,
    values: &[Option<f64>; 8],
) -> Result<(), TariffError> {
    for ((price, name), value) in PRICES.iter().zip(values) {
        let Some(value) = *value else { continue };
        let problem = if !value.is_finite() {
            "is not a finite number"
        } else if value < 0.0 && *price != Price::Compensation {
            // Only the compensation contribution may be negative (a subsidy).
            "must not be negative"
        } else if *price == Price::Vat && value >= 1.0 {
            "is a fraction: 0.08 for 8 %"
        } else {
            continue;
        };
        return Err(TariffError {
            place: place.to_owned(),
            period,
            field: Some(name),
            message: format!("`{name}` = {value} {problem}"),
        });
    }
    Ok(())
}

/// The energy a 15-minute period at `reference_power_kw` holds, Wh, rounded to a
/// micro-watt-hour.
pub(crate) fn threshold_wh(reference_power_kw: f64) -> f64 {
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
    pub(crate) fn from_values(v: [f64; 8]) -> Prices {
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
