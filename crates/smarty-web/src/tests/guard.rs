//! The live reference-power guard on every output of the web server: the `guard` of
//! `/api/meters` and `latest`, the stream's `guard` events and the `smarty_guard_*` metrics,
//! fed with real [`GuardEvent`]s of the model's [`Guard`]. The guard is live only (nothing of
//! it is stored), so these tests run on SQLite alone.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::{Backend, Fixture, first_event, get, json};
use crate::metrics::tests::{check_exposition, sample, telegram};
use crate::metrics::{openmetrics, prometheus_text};
use smarty_model::event::{GuardEvent, MeterEvent};
use smarty_model::guard::{Guard, GuardConfig, Reading};

/// 2026-01-01 00:00 UTC, the start of a quarter hour.
const QUARTER: i64 = 1_767_225_600;

/// A guard of 3 kW (750 Wh a quarter hour) fed three telegrams of meter `meter`: just before
/// the quarter, 0.4 kW; five minutes in, 250 Wh drawn and 5 kW now (it will exceed: 4.333 kW
/// projected, 3 kW of headroom); ten minutes in, 800 Wh drawn (exceeded). Their events.
fn guard_events(meter: &str) -> [GuardEvent; 3] {
    let meter: Arc<str> = Arc::from(meter);
    let mut guard = Guard::new(GuardConfig::new(3.0), jiff::tz::TimeZone::UTC);
    [
        Reading::new(QUARTER - 10, 1_000_000, Some(0.4)),
        Reading::new(QUARTER + 300, 1_000_250, Some(5.0)),
        Reading::new(QUARTER + 600, 1_000_800, Some(6.0)),
    ]
    .map(|reading| GuardEvent::new(&meter, guard.update(&reading)))
}

fn event(g: &GuardEvent) -> MeterEvent {
    MeterEvent::Guard(Arc::new(g.clone()))
}

/// The guard five minutes into the quarter, as the API gives it.
fn will_exceed_json() -> Value {
    json!({
        "quarter_start": QUARTER,
        "quarter_end": QUARTER + 900,
        "at": QUARTER + 300,
        "energy_import_kwh": 0.25,
        "average_power_kw": 3.0,
        "projected_average_kw": 4.333,
        "headroom_kw": 3.0,
        "reference_power_kw": 3.0,
        "verdict": "will_exceed",
        "will_exceed": true,
        "exceeded": false,
        "month_peak_kw": 1.0,
        "month_peak_start": QUARTER,
        "meter_demand_kw": null,
        "meter_month_max_demand_kw": null,
    })
}

/// The store plays no part: an empty SQLite store, meter `home` known.
fn live_fixture() -> Fixture {
    Fixture::new(Backend::Sqlite, None, |_| {})
}

#[tokio::test]
async fn meters_and_latest_carry_the_guard() {
    let f = live_fixture();
    let live = &f.app.web.live;
    live.update(&telegram("home", SystemTime::now()));
    // No guard yet (off, or before its first telegram): `null`.
    let meters = json(&f.app, "/api/meters").await;
    assert_eq!(meters["meters"][0]["name"], "home");
    assert_eq!(meters["meters"][0]["guard"], Value::Null, "{meters}");
    assert_eq!(
        json(&f.app, "/api/meters/home/latest").await["guard"],
        Value::Null
    );

    let [_, will, exceeded] = guard_events("home");
    live.update(&event(&will));
    let meters = json(&f.app, "/api/meters").await;
    assert_eq!(meters["meters"][0]["guard"], will_exceed_json(), "{meters}");
    let one = json(&f.app, "/api/meters?name=home").await;
    assert_eq!(one["meters"][0]["guard"], will_exceed_json());
    let latest = json(&f.app, "/api/meters/home/latest").await;
    assert_eq!(latest["guard"], will_exceed_json());
    assert!(latest["values"]["power_import_kw"].is_number());

    // Over the allowance: exceeded, no headroom left.
    live.update(&event(&exceeded));
    let guard = &json(&f.app, "/api/meters").await["meters"][0]["guard"];
    assert_eq!(guard["verdict"], "exceeded");
    assert_eq!(guard["will_exceed"], true);
    assert_eq!(guard["exceeded"], true);
    assert_eq!(guard["headroom_kw"], 0.0);
    assert_eq!(guard["energy_import_kwh"], 0.8);
    assert_eq!(guard["month_peak_kw"], 3.2);
    assert_eq!(guard["at"], QUARTER + 600);

    // A figure that is not finite is `null`, never a number JSON does not have.
    let mut odd = exceeded.clone();
    odd.state.headroom_kw = f64::INFINITY;
    odd.state.projected_average_kw = f64::NAN;
    live.update(&event(&odd));
    let (_, body) = get(&f.app, false, "/api/meters", None).await;
    let meters: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let guard = &meters["meters"][0]["guard"];
    assert_eq!(guard["headroom_kw"], Value::Null, "{body}");
    assert_eq!(guard["projected_average_kw"], Value::Null, "{body}");
    assert_eq!(guard["average_power_kw"], 4.8, "{body}");

    // openapi.json describes the guard, every key of it required.
    let openapi: Value = serde_json::from_str(crate::OPENAPI).unwrap();
    let schemas = &openapi["components"]["schemas"];
    assert_eq!(
        schemas["Meter"]["properties"]["guard"]["anyOf"][0]["$ref"],
        "#/components/schemas/Guard"
    );
    assert!(
        schemas["Telegram"]["properties"]["guard"].is_object(),
        "Telegram.guard is not in openapi.json"
    );
    let mut keys: Vec<&str> = guard
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut required: Vec<&str> = schemas["Guard"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    keys.sort_unstable();
    required.sort_unstable();
    assert_eq!(keys, required, "Guard in openapi.json");
    for key in keys {
        assert!(
            schemas["Guard"]["properties"][key].is_object(),
            "Guard.{key} is not described"
        );
    }
}

#[tokio::test]
async fn the_stream_sends_the_guard_of_the_meter_asked_for() {
    let f = live_fixture();
    let [_, will, exceeded] = guard_events("home");
    let [_, garage, _] = guard_events("garage");
    // The garage's event comes first: `?meter=home` must skip it.
    let data = first_event(
        &f,
        "/api/stream?meter=home",
        None,
        vec![event(&garage), event(&will)],
        "guard",
    )
    .await;
    assert_eq!(data["meter"], "home", "{data}");
    let mut expected = will_exceed_json();
    expected["meter"] = json!("home");
    // The telegram that made the projection go over the reference power alerts once.
    expected["alerts"] = json!([{
        "kind": "will_exceed",
        "projected_average_kw": 4.333,
        "reference_power_kw": 3.0,
        "title": "Smarty home: reference power will be exceeded",
        "message": "At the present power this quarter hour averages 4.33 kW, above the \
                    reference power of 3.00 kW.",
    }]);
    assert_eq!(data, expected);

    // Without alerts, no `alerts`; every key is described in openapi.json.
    assert!(exceeded.alerts.is_empty(), "{:?}", exceeded.alerts);
    let data = first_event(&f, "/api/stream", None, vec![event(&exceeded)], "guard").await;
    assert_eq!(data["verdict"], "exceeded", "{data}");
    assert!(data.get("alerts").is_none(), "{data}");
    let openapi: Value = serde_json::from_str(crate::OPENAPI).unwrap();
    let guard = &openapi["components"]["schemas"]["Guard"]["properties"];
    for key in expected.as_object().unwrap().keys() {
        assert!(guard[key].is_object(), "Guard.{key} is not in openapi.json");
    }
    let description = openapi["paths"]["/api/stream"]["get"]["description"]
        .as_str()
        .unwrap();
    assert!(description.contains("event: guard"), "{description}");
}

#[tokio::test]
async fn metrics_carry_the_guard_of_meters_that_have_one() {
    let f = live_fixture();
    let live = &f.app.web.live;
    let now = SystemTime::now();
    live.update(&telegram("home", now));
    live.update(&telegram("garage", now));
    let [_, will, _] = guard_events("home");
    live.update(&event(&will));

    let (status, text) = get(&f.app, false, "/metrics", None).await;
    assert_eq!(status, axum::http::StatusCode::OK);
    for (series, value) in [
        ("smarty_guard_energy_import_kwh{meter=\"home\"}", 0.25),
        ("smarty_guard_average_power_kw{meter=\"home\"}", 3.0),
        ("smarty_guard_headroom_kw{meter=\"home\"}", 3.0),
        ("smarty_guard_reference_power_kw{meter=\"home\"}", 3.0),
        ("smarty_guard_will_exceed{meter=\"home\"}", 1.0),
        ("smarty_guard_exceeded{meter=\"home\"}", 0.0),
        ("smarty_guard_month_peak_kw{meter=\"home\"}", 1.0),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    let projected = sample(&text, "smarty_guard_projected_average_kw{meter=\"home\"}").unwrap();
    assert!((projected - 13.0 / 3.0).abs() < 1e-9, "{projected}");
    for family in [
        "smarty_guard_energy_import_kwh",
        "smarty_guard_average_power_kw",
        "smarty_guard_projected_average_kw",
        "smarty_guard_headroom_kw",
        "smarty_guard_reference_power_kw",
        "smarty_guard_will_exceed",
        "smarty_guard_exceeded",
        "smarty_guard_month_peak_kw",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} gauge\n")),
            "{family} in\n{text}"
        );
        assert!(text.contains(&format!("# HELP {family} ")), "{family}");
    }
    // Only meters with a guard state.
    assert!(
        !text.contains("smarty_guard_headroom_kw{meter=\"garage\"}"),
        "{text}"
    );
    check_exposition(&text, false);
    check_exposition(&openmetrics(live), true);

    // Exceeded; a figure that is not finite is left out, the others stay.
    let [_, _, exceeded] = guard_events("home");
    let mut odd = exceeded.clone();
    odd.state.headroom_kw = f64::INFINITY;
    live.update(&event(&odd));
    let text = prometheus_text(live);
    assert_eq!(
        sample(&text, "smarty_guard_exceeded{meter=\"home\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "smarty_guard_will_exceed{meter=\"home\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "smarty_guard_headroom_kw{meter=\"home\"}"),
        None,
        "{text}"
    );
    assert!(!text.contains("Inf") && !text.contains("NaN"), "{text}");
    check_exposition(&text, false);
}
