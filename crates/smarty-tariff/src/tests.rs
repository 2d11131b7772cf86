//! The report against hand-computed figures (docs/tariff.md's worked example), the published
//! prices of each year, and the checks of the section.

use jiff::civil::Date;
use serde::Deserialize;
use smarty_model::period::{INTERVAL_S, Interval, Period};
use smarty_model::time::meter_zone;

use crate::config::price_index;
use crate::report::cents;
use crate::*;

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
            cents(1.5 * (p.above_reference_price_eur_per_kwh - p.network_price_eur_per_kwh) * 1.08),
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

/// The error says which period and setting it concerns, for the configuration to show it
/// at its line.
#[test]
fn check_errors_locate_their_setting() {
    let checked = |text: &str| {
        let config: TariffConfig = toml::from_str(text).unwrap();
        config.check().unwrap_err()
    };
    let err = checked("vat_rate = 8");
    assert_eq!((err.period(), err.field()), (None, Some("vat_rate")));
    assert_eq!(
        err.to_string(),
        "[tariff]: `vat_rate` = 8 is a fraction: 0.08 for 8 %"
    );
    let err = checked("reference_power_kw = 5.0");
    assert_eq!(err.field(), Some("reference_power_kw"));
    let err = checked(
        "[[periods]]\nfrom = \"2026-01-01\"\n[[periods]]\nfrom = \"2027-01-01\"\nenergy_price_eur_per_kwh = -1",
    );
    assert_eq!(
        (err.period(), err.field()),
        (Some(1), Some("energy_price_eur_per_kwh"))
    );
    assert!(
        err.to_string()
            .starts_with("[tariff] periods[1] (from 2027-01-01): "),
        "{err}"
    );
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
fn reports_serialize_as_the_api_shows() {
    let list = range(
        "2026-11-22",
        "2026-11-23",
        |i| if i == 40 { 1200 } else { 150 },
    );
    let value = serde_json::to_value(report(&list, &TariffConfig::default(), Period::Day)).unwrap();
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
