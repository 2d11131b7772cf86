//! The live state as JSON: a telegram as `latest` and the stream's `telegram` events give it,
//! a meter's state as `/api/meters` entries and the stream's `status` events give it, a
//! meter's live guard as their `guard` and the stream's `guard` events give it. Shared by the
//! API handlers ([`super::api`]) and the stream ([`super::stream`]).

use serde_json::{Value as JsonValue, json};
use smarty_p1::RejectReason;

use smarty_model::event::{GuardEvent, MeterStatus, TelegramEvent};
use smarty_model::guard::Verdict;
use smarty_model::time::{rfc3339, unix};

/// The numbers of a telegram under their standard names.
pub fn values_json(event: &TelegramEvent) -> JsonValue {
    let mut values = serde_json::Map::new();
    for v in &event.values {
        if let Some(value) = v.data.number() {
            values.insert(v.name.clone(), json!(value));
        }
    }
    JsonValue::Object(values)
}

/// A telegram as the live stream and `latest` give it.
pub fn telegram_json(event: &TelegramEvent, with_telegram: bool) -> JsonValue {
    let mut out = json!({
        "meter": &*event.meter,
        "received": unix(event.received),
        "timestamp": event.timestamp.as_ref().map(rfc3339),
        "values": values_json(event),
    });
    if with_telegram {
        out["telegram"] = event.rendered_json.clone();
    }
    out
}

/// A meter's live state, as `/api/meters` entries and `status` events give it.
pub fn status_json(
    name: &str,
    status: Option<&MeterStatus>,
    latest: Option<&TelegramEvent>,
) -> JsonValue {
    let rejections: serde_json::Map<String, JsonValue> = RejectReason::ALL
        .iter()
        .map(|r| {
            let n = status.map_or(0, |s| s.stats.rejected(*r));
            (r.as_str().to_owned(), json!(n))
        })
        .collect();
    let last_telegram = status
        .and_then(|s| s.last_telegram)
        .or(latest.map(|t| t.received))
        .map(unix);
    json!({
        "name": name,
        "meter_id": latest.and_then(|t| t.meter_id.clone()),
        "source": status.map(|s| s.source.clone()),
        "connected": status.is_some_and(|s| s.connected),
        "last_telegram": last_telegram,
        "telegrams": status.map_or(0, |s| s.stats.telegrams),
        "rejections": rejections,
        "reconnects": status.map_or(0, |s| s.reconnects),
        "last_error": status.and_then(|s| s.last_error.clone()),
    })
}

/// A number of the JSON, or `null` when it is not finite (JSON has no infinity; a client
/// never sees one).
fn finite(x: f64) -> JsonValue {
    if x.is_finite() {
        json!(x)
    } else {
        JsonValue::Null
    }
}

/// A meter's live guard as the `guard` of `/api/meters` entries and `latest` gives it: where
/// the quarter hour in progress stands against the reference power (docs/api.md). Times are
/// Unix seconds; energies kWh, powers kW; a figure that is not finite is `null`.
pub fn guard_json(event: &GuardEvent) -> JsonValue {
    let s = &event.state;
    json!({
        "quarter_start": s.quarter_start,
        "quarter_end": s.quarter_end,
        "at": s.at,
        "energy_import_kwh": s.energy_import_wh as f64 / 1000.0,
        "average_power_kw": finite(s.average_power_kw),
        "projected_average_kw": finite(s.projected_average_kw),
        "headroom_kw": finite(s.headroom_kw),
        "reference_power_kw": finite(s.reference_power_kw),
        "verdict": s.verdict.as_str(),
        "will_exceed": will_exceed(s.verdict),
        "exceeded": s.verdict == Verdict::Exceeded,
        "month_peak_kw": s.month_peak_kw.map_or(JsonValue::Null, finite),
        "month_peak_start": s.month_peak_start,
        "meter_demand_kw": s.meter_demand_kw.map_or(JsonValue::Null, finite),
        "meter_month_max_demand_kw": s.meter_month_max_demand_kw.map_or(JsonValue::Null, finite),
    })
}

/// The quarter hour ends above the reference power at the present power: the verdict
/// "will exceed", or "exceeded" (already over: it cannot end below).
pub fn will_exceed(verdict: Verdict) -> bool {
    verdict != Verdict::Fine
}

/// A guard event as the stream's `guard` events give it: the meter's name, the figures of
/// [`guard_json`] and, when this telegram crossed a threshold, `alerts` (each with its `kind`,
/// its figures, a `title` and a `message`).
pub fn guard_event_json(event: &GuardEvent) -> JsonValue {
    let mut out = guard_json(event);
    out["meter"] = json!(&*event.meter);
    if !event.alerts.is_empty() {
        let alerts: Vec<JsonValue> = event
            .alerts
            .iter()
            .map(|alert| {
                let mut a = serde_json::to_value(alert).unwrap_or_else(|_| json!({}));
                // Figures that are not finite: `null`, as everywhere in the API.
                if let JsonValue::Object(map) = &mut a {
                    for value in map.values_mut() {
                        if value.is_number() && value.as_f64().is_some_and(|x| !x.is_finite()) {
                            *value = JsonValue::Null;
                        }
                    }
                }
                a["kind"] = json!(alert.kind());
                a["title"] = json!(alert.title(&event.meter));
                a["message"] = json!(alert.message());
                a
            })
            .collect();
        out["alerts"] = JsonValue::Array(alerts);
    }
    out
}
