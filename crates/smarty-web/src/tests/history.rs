//! Every endpoint over three days of a household's history and its live meter: the meters,
//! the latest telegram, series at every resolution, the daily totals, the tariff report and
//! the 15-minute view agreeing with each other, the summary, the errors, the live stream, the
//! description and the dashboard's files.

use axum::http::StatusCode;
use serde_json::Value;

use super::household::{METER_ID, telegram_event};
use super::{Backend, error, first_telegram_event, get, history, json};

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() < 1e-6 * a.abs().max(1.0),
        "{what}: {a} != {b}"
    );
}

async fn every_endpoint_over_a_history(backend: Backend) {
    let (f, last) = history(backend, None);
    let app = &f.app;
    let t = crate::range::now();

    // Meters: the live status and the stored history.
    let meters = json(app, "/api/meters").await;
    let home = &meters["meters"][0];
    assert_eq!(meters["meters"].as_array().unwrap().len(), 1, "{meters}");
    assert_eq!(home["name"], "home");
    assert_eq!(home["connected"], true);
    assert_eq!(home["meter_id"], METER_ID);
    assert!(home["telegrams"].as_u64().unwrap() >= 1);
    assert_eq!(home["rejections"]["wrong_key"], 0);
    let first = home["first_reading"].as_i64().unwrap();
    assert!((first - (t - 3 * 86_400)).abs() < 600, "{home}");
    assert!(home["last_reading"].as_i64().unwrap() >= first);
    let media: Vec<&str> = home["mbus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["medium"].as_str().unwrap())
        .collect();
    assert!(media.contains(&"gas") && media.contains(&"water"), "{home}");

    // Latest telegram.
    let latest = json(app, "/api/meters/home/latest").await;
    assert!(latest["values"]["power_import_kw"].is_number(), "{latest}");
    assert!(latest["values"]["mbus1_gas_m3"].is_number(), "{latest}");
    assert_eq!(latest["telegram"]["meter_id"], home["meter_id"]);

    // Series: the default (24 h, 15-minute) and raw points of the last hours.
    let series = json(app, "/api/meters/home/series?field=power_import_kw").await;
    assert_eq!(series["resolution"], "15m");
    assert_eq!(series["meter"], "home");
    assert_eq!(series["unit"], "kW");
    let ts = series["t"].as_array().unwrap();
    assert!((90..=98).contains(&ts.len()), "{} points", ts.len());
    let (value, min, max) = (
        numbers(&series["value"]),
        numbers(&series["min"]),
        numbers(&series["max"]),
    );
    assert_eq!(value.len(), ts.len());
    for i in 0..value.len() {
        assert!(
            min[i] <= value[i] + 1e-9 && value[i] <= max[i] + 1e-9,
            "point {i}"
        );
        assert_eq!(ts[i].as_i64().unwrap() % 900, 0);
    }
    let from = t - 6 * 3600;
    let raw = json(
        app,
        &format!("/api/meters/home/series?field=voltage_l1_v&from={from}&resolution=auto"),
    )
    .await;
    assert_eq!(raw["resolution"], "raw");
    let n = raw["t"].as_array().unwrap().len();
    assert!(n >= 300, "6 hours of 60-s history: {n} points");
    assert!(
        numbers(&raw["value"])
            .iter()
            .all(|v| (200.0..260.0).contains(v))
    );

    // Daily energy: the series, the totals and the tariff report agree.
    let from = t - 4 * 86_400;
    let daily = json(
        app,
        &format!("/api/meters/home/series?field=energy_import_kwh&from={from}&resolution=day"),
    )
    .await;
    assert_eq!(daily["unit"], "kWh");
    let series_sum: f64 = numbers(&daily["value"]).iter().sum();
    assert!(series_sum > 1.0, "{daily}");
    let totals = json(
        app,
        &format!("/api/meters/home/totals?period=day&from={from}"),
    )
    .await;
    let rows = totals["rows"].as_array().unwrap();
    assert!((3..=5).contains(&rows.len()), "{totals}");
    let totals_sum: f64 = rows
        .iter()
        .map(|r| r["energy_import_kwh"].as_f64().unwrap())
        .sum();
    close(series_sum, totals_sum, "daily series vs totals");
    assert!(rows.iter().all(|r| r["cost_eur"].as_f64().unwrap() > 0.0));
    assert!(
        rows.iter()
            .any(|r| r["mbus"]["mbus1_gas_m3"].as_f64().unwrap_or(0.0) > 0.0),
        "{totals}"
    );
    let tariff = json(
        app,
        &format!("/api/meters/home/tariff?period=day&from={from}"),
    )
    .await;
    let tariff_rows = tariff["rows"].as_array().unwrap();
    assert_eq!(tariff_rows.len(), rows.len());
    let tariff_sum: f64 = tariff_rows
        .iter()
        .map(|r| r["energy_import_kwh"].as_f64().unwrap())
        .sum();
    close(tariff_sum, totals_sum, "tariff vs totals");
    close(
        tariff["total"]["energy_import_kwh"].as_f64().unwrap(),
        tariff_sum,
        "tariff total",
    );
    assert!(tariff["reference_power_kw"].as_f64().unwrap() > 0.0);

    // The 15-minute view of yesterday: 96 periods (92/100 on DST days), power = energy / 0.25 h.
    let intervals = json(
        app,
        &format!(
            "/api/meters/home/intervals?from={}&to={}",
            from + 86_400,
            from + 2 * 86_400
        ),
    )
    .await;
    let it = intervals["t"].as_array().unwrap();
    assert!((90..=100).contains(&it.len()), "{} periods", it.len());
    let (power, energy, above) = (
        numbers(&intervals["power_import_kw"]),
        numbers(&intervals["energy_import_kwh"]),
        numbers(&intervals["energy_above_reference_kwh"]),
    );
    let reference = intervals["reference_power_kw"].as_f64().unwrap();
    for i in 0..it.len() {
        assert!((power[i] - energy[i] * 4.0).abs() < 0.002, "period {i}");
        let expected = (energy[i] - reference * 0.25).max(0.0);
        assert!((above[i] - expected).abs() < 0.002, "period {i}");
    }
    assert!(
        above.iter().any(|a| *a > 0.0),
        "the household's cooking peak is above the reference power"
    );

    // The dashboard's summary: today equals today's totals row.
    let summary = json(app, "/api/meters/home/summary").await;
    let today = rows.last().unwrap();
    assert!(summary["today"]["energy_import_kwh"].as_f64().unwrap() >= 0.0);
    assert!(
        (summary["today"]["energy_import_kwh"].as_f64().unwrap()
            - today["energy_import_kwh"].as_f64().unwrap())
        .abs()
            < 0.05,
        "{summary} vs {today}"
    );
    assert!(summary["month"]["cost_eur"].is_number());

    // Errors are JSON with the right status.
    let bad = StatusCode::BAD_REQUEST;
    let missing = StatusCode::NOT_FOUND;
    assert!(
        error(
            app,
            "/api/meters/nobody/series?field=power_import_kw",
            missing
        )
        .await
        .contains("nobody")
    );
    assert!(
        error(app, "/api/meters/home/series?field=nonsense", bad)
            .await
            .contains("nonsense")
    );
    assert!(
        error(app, "/api/meters/home/series", bad)
            .await
            .contains("field")
    );
    let far = t - 40 * 86_400;
    error(
        app,
        &format!("/api/meters/home/series?field=power_import_kw&from={far}&resolution=raw"),
        bad,
    )
    .await;
    assert!(
        error(app, "/api/meters/home/totals?from=yesterday", bad)
            .await
            .contains("from")
    );
    error(app, "/api/meters/home/totals?period=week", bad).await;
    // A query string that does not even parse gets the same JSON error.
    assert!(
        error(app, "/api/meters/home/totals?period=day&period=month", bad)
            .await
            .contains("period")
    );
    error(app, "/api/nothing", missing).await;

    // The live stream delivers the next telegram.
    let event = first_telegram_event(
        &f,
        "/api/stream?meter=home",
        None,
        telegram_event("home", &last),
    )
    .await;
    assert_eq!(event["meter"], "home");
    assert!(event["values"]["power_import_kw"].is_number());

    // The description names every endpoint used here.
    let openapi = json(app, "/api/openapi.json").await;
    assert_eq!(openapi["openapi"], "3.1.0");
    for path in [
        "/api/meters",
        "/api/meters/{meter}/latest",
        "/api/meters/{meter}/series",
        "/api/meters/{meter}/totals",
        "/api/meters/{meter}/tariff",
        "/api/meters/{meter}/intervals",
        "/api/meters/{meter}/summary",
        "/api/stream",
        "/api/openapi.json",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} not in openapi.json"
        );
    }

    // The dashboard, metrics and health on the same server.
    let (status, page) = get(app, false, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("uPlot"), "the page loads uPlot");
    assert_eq!(get(app, false, "/app.js", None).await.0, StatusCode::OK);
    assert_eq!(
        get(app, false, "/vendor/uPlot.iife.min.js", None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(app, false, "/nothing.js", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, metrics) = get(app, false, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(metrics.contains("smarty_telegrams_total{meter=\"home\"}"));
    assert_eq!(get(app, false, "/healthz", None).await.0, StatusCode::OK);
}

on_both!(every_endpoint_over_a_history,);
