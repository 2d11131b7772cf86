//! The JSON object of a telegram: what `smarty read --format json` writes (one per line), the
//! MQTT output publishes on `<prefix>/<meter>/state` and the API gives as `telegram`. The
//! schema is a contract, documented in docs/formats.md.

use serde_json::{Map, Value as Json, json};
use smarty_p1::{Decimal, Decoded, Quantity, Telegram, Value};

use super::time::rfc3339;

/// A decimal as a JSON number: integers stay integers.
fn number(d: Decimal) -> Json {
    if d.is_integer() {
        Json::from(d.mantissa())
    } else {
        Json::from(d.to_f64())
    }
}

fn quantity(q: Quantity<'_>) -> Map<String, Json> {
    let mut map = Map::new();
    map.insert("value".into(), number(q.value));
    map.insert("unit".into(), q.unit.map_or(Json::Null, Json::from));
    map
}

fn timestamp(t: Option<smarty_p1::Timestamp>) -> Json {
    t.map_or(Json::Null, |t| Json::from(rfc3339(&t)))
}

/// The JSON object of one telegram (schema in docs/formats.md).
pub fn telegram_json(decoded: &Decoded<'_>) -> Json {
    let telegram = &decoded.telegram;
    let mut objects = Map::new();
    for object in telegram.objects() {
        let mut entry = Map::new();
        let value = object.value();
        entry.insert(
            "name".into(),
            telegram
                .name_of_value(object, &value)
                .map_or(Json::Null, |n| Json::from(n.to_string())),
        );
        value_fields(telegram, &value, &mut entry);
        objects.insert(object.code.to_owned(), Json::Object(entry));
    }
    let frame = decoded.frame.as_ref();
    json!({
        "meter_id": telegram.meter_id(),
        "timestamp": timestamp(telegram.timestamp()),
        "header": telegram.header_str(),
        "version": telegram.version(),
        "system_title": frame.map(|f| smarty_p1::hex::upper(&f.system_title).to_string()),
        "frame_counter": frame.map(|f| f.frame_counter),
        "authenticated": frame.map(|f| f.authenticated),
        "crc": telegram.crc().as_str(),
        "objects": objects,
        "unknown_lines": telegram
            .unknown_lines()
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect::<Vec<_>>(),
    })
}

fn value_fields(_telegram: &Telegram<'_>, value: &Value<'_>, entry: &mut Map<String, Json>) {
    match *value {
        Value::Empty => {
            entry.insert("value".into(), Json::Null);
            entry.insert("unit".into(), Json::Null);
        }
        Value::Number(q) => entry.extend(quantity(q)),
        Value::Text(t) => {
            entry.insert("text".into(), Json::from(t));
        }
        Value::OctetString(s) => {
            entry.insert("text".into(), s.text().map_or(Json::Null, Json::from));
            entry.insert("hex".into(), Json::from(s.hex()));
        }
        Value::Timestamp(t) => {
            entry.insert("timestamp".into(), timestamp(t));
        }
        Value::TimedNumber { time, quantity: q } => {
            entry.extend(quantity(q));
            entry.insert("timestamp".into(), timestamp(time));
        }
        Value::Numbers(_) => {
            let values: Vec<Json> = value.numbers().map(|q| Json::Object(quantity(q))).collect();
            entry.insert("values".into(), Json::from(values));
        }
        Value::FailureLog(_) => {
            let events: Vec<Json> = value
                .failure_events()
                .map(|e| {
                    json!({
                        "end": timestamp(e.end),
                        "duration_s": number(e.duration.value),
                    })
                })
                .collect();
            entry.insert("events".into(), Json::from(events));
        }
        Value::History(_) => {
            let entries: Vec<Json> = value
                .history()
                .map(|h| {
                    let mut map = Map::new();
                    map.insert("period".into(), timestamp(h.period));
                    map.insert("timestamp".into(), timestamp(h.time));
                    map.extend(quantity(h.quantity));
                    Json::Object(map)
                })
                .collect();
            entry.insert("entries".into(), Json::from(entries));
        }
        Value::Raw(groups) => {
            entry.insert("raw".into(), Json::from(groups.as_str()));
        }
        // A kind of value newer than this program: the object is listed without its value.
        _ => {
            entry.insert("value".into(), Json::Null);
        }
    }
}
