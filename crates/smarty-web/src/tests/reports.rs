//! The reports (`totals`, `tariff`, `summary`): their ranges are bounded, and each day is
//! priced with the prices in force that day.

use axum::http::StatusCode;

use super::{Backend, Fixture, fixture, get, household, json};

async fn report_ranges_are_bounded(backend: Backend) {
    let f = fixture(backend, 10, None);
    let (status, body) = get(
        &f.app,
        false,
        "/api/meters/home/totals?from=1970-01-02",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("at most"), "{body}");
    let (status, _) = get(
        &f.app,
        false,
        "/api/meters/home/tariff?period=month&from=2020-01-01",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// The costs across a change of prices: over New Year 2025/2026, the tariff report prices
/// each day with the prices in force that day (the 2025 tariff, then the 2026 one); the
/// summary says which part of a cost is the fixed fees' share.
async fn costs_use_the_prices_of_their_own_days(backend: Backend) {
    // 2025-12-30 00:00 +01:00, four days at a telegram a minute.
    let start = jiff::civil::date(2025, 12, 30)
        .to_zoned(smarty_model::time::meter_zone())
        .unwrap()
        .timestamp()
        .as_second();
    let f = Fixture::new(backend, None, |store| {
        household::fill(store, "home", start, 5760, 60);
    });

    let report = json(
        &f.app,
        "/api/meters/home/tariff?period=day&from=2025-12-30&to=2026-01-03",
    )
    .await;
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{report}");
    // Per kWh imported, VAT included: supply + network + electricity tax (docs/tariff.md).
    let per_kwh_2025 = (0.1329 + 0.0759 + 0.001) * 1.08;
    let per_kwh_2026 = (0.1229 + 0.0510 + 0.001) * 1.08;
    for row in rows {
        let day = row["period"].as_str().unwrap();
        let kwh = row["energy_import_kwh"].as_f64().unwrap();
        let eur = row["cost"]["energy_eur"].as_f64().unwrap();
        assert!(kwh > 1.0, "{day}: {kwh} kWh");
        let (per_kwh, fixed) = if day.starts_with("2025") {
            (per_kwh_2025, 0.65) // (11.11 + 5.90 + 1.75) × 1.08 / 31
        } else {
            (per_kwh_2026, 0.52) // (7.42 + 5.72 + 1.75) × 1.08 / 31
        };
        assert!(
            (eur / kwh - per_kwh).abs() < 0.002,
            "{day}: {eur} € for {kwh} kWh is not {per_kwh} €/kWh"
        );
        assert_eq!(row["cost"]["fixed_eur"], fixed, "{day}");
    }
    let periods = report["price_periods"].as_array().unwrap();
    assert_eq!(periods.len(), 2, "{report}");
    assert_eq!(periods[1]["from"], "2026-01-01");
    assert_eq!(periods[1]["prices"]["network_price_eur_per_kwh"], 0.051);

    // The summary: the fixed fees' share of each cost.
    let summary = json(&f.app, "/api/meters/home/summary").await;
    for key in ["today", "month", "last_month"] {
        let part = &summary[key];
        let (cost, fixed) = (part["cost_eur"].as_f64(), part["fixed_eur"].as_f64());
        let (Some(cost), Some(fixed)) = (cost, fixed) else {
            panic!("{key}: no cost or no fixed_eur: {summary}");
        };
        assert!(fixed <= cost, "{key}: {summary}");
    }
}

on_both!(
    report_ranges_are_bounded,
    costs_use_the_prices_of_their_own_days,
);
