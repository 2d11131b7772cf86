//! The numbers of the answers have the resolution of their units: no float noise, no `-0`.

use axum::http::StatusCode;
use serde_json::Value;

use super::household::telegram_event;
use super::{Backend, first_telegram_event, get, history, json};

/// Decimals of a unit, as docs/api.md ("Numbers") gives them.
fn unit_decimals(unit: &str) -> Option<u32> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "kwh" | "kvarh" | "kw" | "kvar" | "kva" | "m3" | "gj" => 3,
        "v" => 1,
        "a" | "hz" => 2,
        "eur" => 2,
        "wh" | "varh" | "w" | "var" | "va" | "s" => 0,
        _ => return None,
    })
}

/// Decimals of a number named `key`, as docs/api.md gives them: from the unit at the end of
/// the name; prices and rates 6.
fn name_decimals(key: &str) -> Option<u32> {
    if key.contains("_per_") || key.ends_with("_rate") {
        return Some(6);
    }
    unit_decimals(key.rsplit_once('_')?.1)
}

/// Decimals in the JSON text of a number (`1.25` 2, `1e-7` 7, `12` 0).
fn decimals_of(text: &str) -> u32 {
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().unwrap()),
        None => (text, 0),
    };
    let fraction = mantissa.split_once('.').map_or(0, |(_, f)| {
        // `2.0` has no decimal that matters.
        f.trim_end_matches('0').len() as i64
    });
    (fraction - exponent).max(0) as u32
}

/// Checks every number in `value` (at `path`): never `-0.0`, and no more decimals than the
/// resolution of its unit (from its name, or from a `unit` beside `value`/`min`/`max`);
/// numbers without a unit are integers or carry no float noise (at most 6 decimals).
/// Returns how many numbers with a unit were checked.
fn check_numbers(path: &str, value: &Value, decimals: Option<u32>, exact: bool) -> usize {
    match value {
        Value::Number(n) => {
            let text = n.to_string();
            assert!(
                !text.starts_with("-0") || n.as_f64() != Some(0.0),
                "{path}: {text}"
            );
            assert!(
                !(n.as_f64() == Some(0.0) && n.as_f64().unwrap().is_sign_negative()),
                "{path}: -0.0"
            );
            if exact {
                return 0;
            }
            match decimals {
                Some(d) => {
                    assert!(
                        decimals_of(&text) <= d,
                        "{path}: {text} has more than {d} decimals"
                    );
                    1
                }
                None => {
                    assert!(
                        decimals_of(&text) <= 6,
                        "{path}: {text} carries float noise"
                    );
                    0
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| check_numbers(&format!("{path}[{i}]"), item, decimals, exact))
            .sum(),
        Value::Object(map) => {
            let unit = map
                .get("unit")
                .and_then(Value::as_str)
                .and_then(unit_decimals);
            map.iter()
                .map(|(key, item)| {
                    let exact = exact || key == "telegram";
                    let inner = name_decimals(key).or(match key.as_str() {
                        "value" | "min" | "max" => unit.or(decimals),
                        _ if item.is_number() => None,
                        _ => decimals,
                    });
                    check_numbers(&format!("{path}.{key}"), item, inner, exact)
                })
                .sum()
        }
        _ => 0,
    }
}

/// Every number of every answer and of the live stream: never `-0`, and no more decimals than
/// the resolution of its unit (docs/api.md, "Numbers").
async fn every_number_has_the_resolution_of_its_unit(backend: Backend) {
    let (f, last) = history(backend, None);
    let app = &f.app;
    let t = crate::range::now();
    let mut paths = vec![
        "/api/meters".to_owned(),
        "/api/meters/home/latest".to_owned(),
        "/api/meters/home/summary".to_owned(),
        format!("/api/meters/home/intervals?from={}", t - 2 * 86_400),
    ];
    for period in ["day", "month"] {
        for endpoint in ["totals", "tariff"] {
            paths.push(format!(
                "/api/meters/home/{endpoint}?period={period}&from={}",
                t - 4 * 86_400
            ));
        }
    }
    let latest = json(app, "/api/meters/home/latest").await;
    let fields: Vec<String> = latest["values"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|name| {
            // The fields a series knows: the store's columns and the M-Bus channels.
            name.starts_with("mbus")
                || ["power_", "reactive_", "voltage_l", "current_l", "energy_"]
                    .iter()
                    .any(|p| name.starts_with(p))
        })
        .cloned()
        .collect();
    assert!(fields.len() >= 20, "{fields:?}");
    for field in &fields {
        for (resolution, from) in [
            ("raw", t - 3 * 3600),
            ("15m", t - 86_400),
            ("hour", t - 3 * 86_400),
            ("day", t - 4 * 86_400),
            ("month", t - 4 * 86_400),
        ] {
            paths.push(format!(
                "/api/meters/home/series?field={field}&resolution={resolution}&from={from}"
            ));
        }
    }
    let mut checked = 0;
    for path in &paths {
        let (status, body) = get(app, false, path, None).await;
        if status == StatusCode::BAD_REQUEST && path.contains("series") {
            // A value the meter sends that the store does not keep as a series.
            assert!(body.contains("unknown field"), "{path}: {body}");
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}"));
        checked += check_numbers(path, &answer, None, false);
    }
    // The live stream's events too.
    let event = first_telegram_event(
        &f,
        "/api/stream?meter=home",
        None,
        telegram_event("home", &last),
    )
    .await;
    checked += check_numbers("stream", &event, None, false);
    assert!(
        checked > 10_000,
        "only {checked} numbers with a unit were checked"
    );
}

on_both!(every_number_has_the_resolution_of_its_unit,);
