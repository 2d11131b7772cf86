//! The live state as JSON: a telegram as `latest` and the stream's `telegram` events give it,
//! a meter's state as `/api/meters` entries and the stream's `status` events give it. Shared
//! by the API handlers ([`super::api`]) and the stream ([`super::stream`]).

use serde_json::{Value as JsonValue, json};
use smarty_p1::RejectReason;

use smarty_model::event::{MeterStatus, TelegramEvent};
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
