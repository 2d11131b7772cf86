//! The report: the stored 15-minute intervals per local day or month, their energy within and
//! above the reference power and what it costs ([`report`]), and the dashboard's summaries
//! ([`summarize`]).

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;

use smarty_model::period::{INTERVAL_S, Interval, Period};
use smarty_model::time::meter_zone;

use crate::config::{PricePeriod, Prices, TariffConfig, price_index, threshold_wh};

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
pub(crate) fn cents(x: f64) -> f64 {
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
