//! The topic layout, and the messages of telegrams and meter states.
//!
//! `<prefix>` is `mqtt.prefix` (default `smarty`); `<meter>` a meter's configured name.
//!
//! | topic | payload | retained |
//! |---|---|---|
//! | `<prefix>/status` | `online` on connect, `offline` as the last will and on shutdown | yes |
//! | `<prefix>/<meter>/state` | the JSON object of `smarty read --format json` | `retain_state` |
//! | `<prefix>/<meter>/<name>` | one value: the decimal text of a number, or the text | `retain_state` |
//! | `<prefix>/<meter>/raw` | the frame as received, upper-case hex (`publish_raw`; also the frames a meter without a key cannot decrypt) | no |
//! | `<prefix>/<meter>/availability` | `online` / `offline`: the meter's source is connected | yes |
//! | `<prefix>/<meter>/status` | JSON: connected, last telegram, counters, last error | yes |
//! | `<prefix>/<meter>/guard` | the reference-power guard after each telegram: JSON ([`guard_json`]) | `retain_state` |
//! | `<prefix>/<meter>/guard/<name>` | one figure of the guard ([`guard_figures`]): `energy_import_kwh`, `average_power_kw`, `projected_average_kw`, `headroom_kw`, `reference_power_kw`, `month_peak_kw` (decimal text, 3 decimals), `verdict` (`fine` / `will_exceed` / `exceeded`), `will_exceed` (`ON` / `OFF`) | `retain_state` |
//! | `<prefix>/<meter>/guard/alert` | one alert of the guard: JSON ([`guard_alert_json`]), at QoS 1 at least | no |
//! | `<prefix>/<meter>/guard/closed` | the quarter hour that just ended: JSON ([`guard_closed_json`]) | no |
//! | `<discovery_prefix>/sensor/smarty_<device>/<name>/config` | Home Assistant discovery ([`super::discovery`]) | yes |
//! | `<discovery_prefix>/binary_sensor/smarty_<device>/guard_will_exceed/config`, `<discovery_prefix>/event/smarty_<device>/guard_alert/config` | Home Assistant discovery of the guard's binary sensor and alert events | yes |
//!
//! Home Assistant's own status (its birth message `online`) is read on
//! `<discovery_prefix>/status`.
//!
//! In the guard's JSON, times are RFC 3339 in UTC (`2026-01-01T00:15:00Z`, as in the status
//! message), figures are numbers rounded to 3 decimals with their unit in the name, and a
//! figure that is not finite is `null`. A figure topic is not published while its figure is
//! unknown or not finite: it never carries `inf` or `NaN`.

use serde_json::{Map, Value as Json, json};

use super::config::MqttConfig;
use smarty_model::event::{GuardEvent, MeterStatus, TelegramEvent};
use smarty_model::guard::{Alert, Closed, GuardState, Verdict};
use smarty_model::period::INTERVAL_S;
use smarty_model::slug::slug;
use smarty_model::time::rfc3339_utc;
use smarty_store::queue::Publication;

/// The gateway's own status: `online`, or `offline` (the last will).
pub fn gateway_status(config: &MqttConfig) -> String {
    format!("{}/status", config.prefix)
}

/// One value of a meter: `<prefix>/<meter>/<name>`.
pub fn value(config: &MqttConfig, meter: &str, name: &str) -> String {
    format!("{}/{meter}/{name}", config.prefix)
}

/// A meter's telegrams as JSON: `<prefix>/<meter>/state`.
pub fn state(config: &MqttConfig, meter: &str) -> String {
    value(config, meter, "state")
}

/// A meter's frames in hex: `<prefix>/<meter>/raw`.
pub fn raw(config: &MqttConfig, meter: &str) -> String {
    value(config, meter, "raw")
}

/// Whether a meter's source is connected: `<prefix>/<meter>/availability`.
pub fn availability(config: &MqttConfig, meter: &str) -> String {
    value(config, meter, "availability")
}

/// A meter's state as JSON: `<prefix>/<meter>/status`.
pub fn meter_status(config: &MqttConfig, meter: &str) -> String {
    value(config, meter, "status")
}

/// A meter's reference-power guard as JSON: `<prefix>/<meter>/guard`.
pub fn guard(config: &MqttConfig, meter: &str) -> String {
    value(config, meter, "guard")
}

/// One figure of a meter's guard: `<prefix>/<meter>/guard/<name>` (`name` one of
/// [`guard_figures`]'s, or `alert`, `closed`).
pub fn guard_figure(config: &MqttConfig, meter: &str, name: &str) -> String {
    format!("{}/{meter}/guard/{name}", config.prefix)
}

/// A meter's guard alerts: `<prefix>/<meter>/guard/alert`.
pub fn guard_alert(config: &MqttConfig, meter: &str) -> String {
    guard_figure(config, meter, "alert")
}

/// The quarter hours a meter's guard closed: `<prefix>/<meter>/guard/closed`.
pub fn guard_closed(config: &MqttConfig, meter: &str) -> String {
    guard_figure(config, meter, "closed")
}

/// The discovery config of value `name` of the device `key` (a `sensor`).
pub fn discovery(config: &MqttConfig, key: &str, name: &str) -> String {
    discovery_of(config, "sensor", key, name)
}

/// The discovery config of entity `name` of the device `key` on Home Assistant's platform
/// `component` (`sensor`, `binary_sensor`, `event`):
/// `<discovery_prefix>/<component>/smarty_<key>/<name>/config`.
pub fn discovery_of(config: &MqttConfig, component: &str, key: &str, name: &str) -> String {
    format!(
        "{}/{component}/smarty_{key}/{}/config",
        config.discovery_prefix,
        slug(name)
    )
}

/// Where Home Assistant announces itself (`online` after a start).
pub fn home_assistant_status(config: &MqttConfig) -> String {
    format!("{}/status", config.discovery_prefix)
}

/// A message of `config`'s QoS.
fn publication(config: &MqttConfig, topic: String, payload: Vec<u8>, retain: bool) -> Publication {
    Publication {
        topic,
        payload,
        qos: config.qos,
        retain,
    }
}

/// The data messages of one telegram, in publishing order: state, values, raw.
pub fn telegram_messages(config: &MqttConfig, event: &TelegramEvent) -> Vec<Publication> {
    let retain = config.retain_state;
    let mut out = Vec::with_capacity(event.values.len() + 2);
    out.push(publication(
        config,
        state(config, &event.meter),
        serde_json::to_vec(&event.rendered_json).expect("JSON serialises"),
        retain,
    ));
    for v in &event.values {
        out.push(publication(
            config,
            value(config, &event.meter, &v.name),
            v.data.to_string().into_bytes(),
            retain,
        ));
    }
    if config.publish_raw {
        out.push(raw_message(config, &event.meter, &event.frame));
    }
    out
}

/// The `<prefix>/<meter>/raw` message of a frame: upper-case hex.
pub fn raw_message(config: &MqttConfig, meter: &str, frame: &[u8]) -> Publication {
    let hex = smarty_p1::hex::upper(frame).to_string();
    publication(config, raw(config, meter), hex.into_bytes(), false)
}

/// The retained `<prefix>/<meter>/availability` message.
pub fn availability_message(config: &MqttConfig, meter: &str, online: bool) -> Publication {
    let payload = if online { "online" } else { "offline" };
    publication(
        config,
        availability(config, meter),
        payload.as_bytes().to_vec(),
        true,
    )
}

/// The retained `<prefix>/<meter>/status` message: connected, last telegram (RFC 3339),
/// counters of frames, telegrams and rejections by reason, reconnects, last error.
pub fn status_message(config: &MqttConfig, status: &MeterStatus) -> Publication {
    let rejected: Map<String, Json> = status
        .stats
        .rejections()
        .map(|(reason, n)| (reason.as_str().to_owned(), json!(n)))
        .collect();
    let payload = json!({
        "connected": status.connected,
        "source": status.source,
        "last_telegram": status.last_telegram.map(rfc3339_utc),
        "frames": status.stats.frames,
        "telegrams": status.stats.telegrams,
        "rejected": rejected,
        "reconnects": status.reconnects,
        "last_error": status.last_error,
    });
    publication(
        config,
        meter_status(config, &status.meter),
        serde_json::to_vec(&payload).expect("JSON serialises"),
        true,
    )
}

/// `x` rounded to 3 decimals, when finite (`-0` becomes `0`).
fn round3(x: f64) -> Option<f64> {
    if !x.is_finite() {
        return None;
    }
    let rounded = (x * 1000.0).round() / 1000.0;
    // Rounding a huge number may overflow to infinity; `-0.0 + 0.0` is `0.0`.
    rounded.is_finite().then_some(rounded + 0.0)
}

/// `x` as decimal text with 3 decimals (`3.000`, `0.750`), when finite.
fn decimal(x: f64) -> Option<String> {
    round3(x).map(|x| format!("{x:.3}"))
}

/// `x` rounded to 3 decimals as a JSON number; `null` when not finite.
fn number(x: f64) -> Json {
    round3(x).map_or(Json::Null, |x| json!(x))
}

/// Unix seconds as RFC 3339 in UTC (`2026-01-01T00:15:00Z`); `null` when out of range.
fn utc(ts: i64) -> Json {
    jiff::Timestamp::from_second(ts).map_or(Json::Null, |t| json!(t.to_string()))
}

/// The figures of the guard's state, each published on `<prefix>/<meter>/guard/<name>`, as
/// `(name, payload)` in publishing order:
///
/// | name | payload |
/// |---|---|
/// | `energy_import_kwh` | energy imported in the quarter hour so far, kWh |
/// | `average_power_kw` | average import power since the quarter began, kW |
/// | `projected_average_kw` | the quarter's average at its end if the present power holds, kW |
/// | `headroom_kw` | average power that may still be drawn until the quarter's end, kW |
/// | `reference_power_kw` | the reference power, kW |
/// | `month_peak_kw` | the month's highest quarter-hour average so far, kW (only when known) |
/// | `verdict` | `fine`, `will_exceed` or `exceeded` |
/// | `will_exceed` | `ON` when the verdict is not `fine`, else `OFF` |
///
/// Numbers are decimal text with 3 decimals; a figure that is unknown or not finite is left
/// out (its topic keeps its last value). The meter's own demand registers (e-MUCS
/// `1-0:1.4.0`, `1-0:1.6.0`) are telegram values with topics of their own, not repeated here.
///
/// # Example
/// ```
/// use smarty_model::guard::{Guard, GuardConfig, Reading};
/// let mut guard = Guard::new(GuardConfig::new(3.0), jiff::tz::TimeZone::UTC);
/// let start = 1_767_225_600; // 2026-01-01 00:00 UTC
/// guard.update(&Reading::new(start - 10, 1_000_000, Some(0.4)));
/// let state = guard.update(&Reading::new(start + 300, 1_000_250, Some(5.0))).state;
/// let figures = smarty_mqtt::topics::guard_figures(&state);
/// assert_eq!(figures[0], ("energy_import_kwh", "0.250".to_owned()));
/// assert!(figures.contains(&("headroom_kw", "3.000".to_owned())));
/// assert!(figures.contains(&("will_exceed", "ON".to_owned())));
/// ```
pub fn guard_figures(state: &GuardState) -> Vec<(&'static str, String)> {
    let numbers = [
        (
            "energy_import_kwh",
            Some(state.energy_import_wh as f64 / 1000.0),
        ),
        ("average_power_kw", Some(state.average_power_kw)),
        ("projected_average_kw", Some(state.projected_average_kw)),
        ("headroom_kw", Some(state.headroom_kw)),
        ("reference_power_kw", Some(state.reference_power_kw)),
        ("month_peak_kw", state.month_peak_kw),
    ];
    let mut out: Vec<(&'static str, String)> = numbers
        .into_iter()
        .filter_map(|(name, x)| Some((name, decimal(x?)?)))
        .collect();
    out.push(("verdict", state.verdict.as_str().to_owned()));
    let on = if state.verdict == Verdict::Fine {
        "OFF"
    } else {
        "ON"
    };
    out.push(("will_exceed", on.to_owned()));
    out
}

/// The JSON of the guard's state, on `<prefix>/<meter>/guard`:
///
/// ```json
/// {"quarter_start":"2026-01-01T00:00:00Z","quarter_end":"2026-01-01T00:15:00Z",
///  "at":"2026-01-01T00:05:00Z","energy_import_wh":250,"energy_import_kwh":0.25,
///  "average_power_kw":3.0,"projected_average_kw":4.333,"headroom_kw":3.0,
///  "reference_power_kw":3.0,"verdict":"will_exceed","will_exceed":true,
///  "month_peak_kw":1.0,"month_peak_start":"2026-01-01T00:00:00Z",
///  "meter_demand_kw":null,"meter_month_max_demand_kw":null}
/// ```
///
/// Times RFC 3339 in UTC; figures rounded to 3 decimals, `null` when unknown or not finite;
/// `meter_demand_kw` and `meter_month_max_demand_kw` are the meter's own e-MUCS demand
/// registers (`1-0:1.4.0`, `1-0:1.6.0`), `null` when it does not send them.
pub fn guard_json(state: &GuardState) -> Json {
    json!({
        "quarter_start": utc(state.quarter_start),
        "quarter_end": utc(state.quarter_end),
        "at": utc(state.at),
        "energy_import_wh": state.energy_import_wh,
        "energy_import_kwh": number(state.energy_import_wh as f64 / 1000.0),
        "average_power_kw": number(state.average_power_kw),
        "projected_average_kw": number(state.projected_average_kw),
        "headroom_kw": number(state.headroom_kw),
        "reference_power_kw": number(state.reference_power_kw),
        "verdict": state.verdict.as_str(),
        "will_exceed": state.verdict != Verdict::Fine,
        "month_peak_kw": state.month_peak_kw.map_or(Json::Null, number),
        "month_peak_start": state.month_peak_start.map_or(Json::Null, utc),
        "meter_demand_kw": state.meter_demand_kw.map_or(Json::Null, number),
        "meter_month_max_demand_kw": state.meter_month_max_demand_kw.map_or(Json::Null, number),
    })
}

/// The JSON of one alert of `meter`'s guard in `state`, on `<prefix>/<meter>/guard/alert`:
/// the meter, the alert's kind (also as `event_type`, for Home Assistant's MQTT event entity),
/// a title and a message for a notification, the alert's figures (by kind: `headroom_kw` and
/// `threshold_kw`; `projected_average_kw` and `reference_power_kw`; `peak_kw` and
/// `previous_kw`; kW, 3 decimals), the quarter's start and the reading's time (RFC 3339 UTC):
///
/// ```json
/// {"meter":"home","kind":"will_exceed","event_type":"will_exceed",
///  "title":"Smarty home: reference power will be exceeded","message":"At the present power …",
///  "projected_average_kw":4.333,"reference_power_kw":3.0,
///  "quarter_start":"2026-01-01T00:00:00Z","at":"2026-01-01T00:05:00Z"}
/// ```
pub fn guard_alert_json(meter: &str, state: &GuardState, alert: &Alert) -> Json {
    let mut object = Map::new();
    object.insert("meter".into(), json!(meter));
    object.insert("kind".into(), json!(alert.kind()));
    object.insert("event_type".into(), json!(alert.kind()));
    object.insert("title".into(), json!(alert.title(meter)));
    object.insert("message".into(), json!(alert.message()));
    // The alert's figures, by their serde names (the kind's tag left out: it is above).
    if let Ok(Json::Object(figures)) = serde_json::to_value(alert) {
        for (name, figure) in figures {
            if name == "kind" {
                continue;
            }
            let figure = match figure.as_f64() {
                Some(x) => number(x),
                None => figure,
            };
            object.insert(name, figure);
        }
    }
    object.insert("quarter_start".into(), utc(state.quarter_start));
    object.insert("at".into(), utc(state.at));
    Json::Object(object)
}

/// The JSON of a quarter hour that ended, on `<prefix>/<meter>/guard/closed`: its start and
/// end (RFC 3339 UTC), its energy (kWh, as the store's 15-minute interval records it) and its
/// average power (kW), 3 decimals:
///
/// ```json
/// {"meter":"home","start":"2026-01-01T00:00:00Z","end":"2026-01-01T00:15:00Z",
///  "energy_import_kwh":0.6,"average_power_kw":2.4}
/// ```
pub fn guard_closed_json(meter: &str, closed: &Closed) -> Json {
    let energy_kwh = closed.energy_import_wh as f64 / 1000.0;
    json!({
        "meter": meter,
        "start": utc(closed.start),
        "end": utc(closed.start.saturating_add(INTERVAL_S)),
        "energy_import_kwh": number(energy_kwh),
        "average_power_kw": number(energy_kwh * 3600.0 / INTERVAL_S as f64),
    })
}

/// The data messages of one guard event, in publishing order: the closed quarter (if any,
/// not retained), the state's JSON and its figures (retained as `retain_state`), then each
/// alert (not retained, at QoS 1 at least so that none is lost to QoS 0). Every alert of the
/// event is published: the service passes on only those the user asked for.
pub fn guard_messages(config: &MqttConfig, event: &GuardEvent) -> Vec<Publication> {
    let meter = &event.meter;
    let retain = config.retain_state;
    let figures = guard_figures(&event.state);
    let mut out = Vec::with_capacity(figures.len() + event.alerts.len() + 2);
    if let Some(closed) = &event.closed {
        out.push(publication(
            config,
            guard_closed(config, meter),
            serde_json::to_vec(&guard_closed_json(meter, closed)).expect("JSON serialises"),
            false,
        ));
    }
    out.push(publication(
        config,
        guard(config, meter),
        serde_json::to_vec(&guard_json(&event.state)).expect("JSON serialises"),
        retain,
    ));
    for (name, payload) in figures {
        out.push(publication(
            config,
            guard_figure(config, meter, name),
            payload.into_bytes(),
            retain,
        ));
    }
    for alert in &event.alerts {
        out.push(Publication {
            topic: guard_alert(config, meter),
            payload: serde_json::to_vec(&guard_alert_json(meter, &event.state, alert))
                .expect("JSON serialises"),
            qos: config.qos.max(1),
            retain: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::SystemTime;

    #[test]
    fn the_layout_follows_the_prefixes() {
        let config = MqttConfig {
            prefix: "p1/home".into(),
            discovery_prefix: "ha".into(),
            ..MqttConfig::default()
        };
        assert_eq!(gateway_status(&config), "p1/home/status");
        assert_eq!(state(&config, "m"), "p1/home/m/state");
        assert_eq!(
            value(&config, "m", "voltage_l1_v"),
            "p1/home/m/voltage_l1_v"
        );
        assert_eq!(raw(&config, "m"), "p1/home/m/raw");
        assert_eq!(availability(&config, "m"), "p1/home/m/availability");
        assert_eq!(meter_status(&config, "m"), "p1/home/m/status");
        assert_eq!(
            discovery(&config, "sag1", "energy_import_kwh"),
            "ha/sensor/smarty_sag1/energy_import_kwh/config"
        );
        assert_eq!(home_assistant_status(&config), "ha/status");
        assert_eq!(guard(&config, "m"), "p1/home/m/guard");
        assert_eq!(
            guard_figure(&config, "m", "headroom_kw"),
            "p1/home/m/guard/headroom_kw"
        );
        assert_eq!(guard_alert(&config, "m"), "p1/home/m/guard/alert");
        assert_eq!(guard_closed(&config, "m"), "p1/home/m/guard/closed");
        assert_eq!(
            discovery_of(&config, "binary_sensor", "sag1", "guard_will_exceed"),
            "ha/binary_sensor/smarty_sag1/guard_will_exceed/config"
        );
    }

    fn pairs<'a>(figures: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        figures.iter().map(|(n, p)| (*n, p.as_str())).collect()
    }

    #[test]
    fn guard_figures_are_rounded_decimals_and_on_off() {
        let events = crate::tests::guard_events();
        assert_eq!(
            pairs(&guard_figures(&events[1].state)),
            [
                ("energy_import_kwh", "0.250"),
                ("average_power_kw", "3.000"),
                ("projected_average_kw", "4.333"),
                ("headroom_kw", "3.000"),
                ("reference_power_kw", "3.000"),
                ("month_peak_kw", "1.000"),
                ("verdict", "will_exceed"),
                ("will_exceed", "ON"),
            ]
        );
        let exceeded = guard_figures(&events[3].state);
        assert!(exceeded.contains(&("verdict", "exceeded".into())));
        assert!(exceeded.contains(&("will_exceed", "ON".into())));
        assert!(exceeded.contains(&("headroom_kw", "0.000".into())));
        let fine = guard_figures(&events[4].state);
        assert!(fine.contains(&("verdict", "fine".into())));
        assert!(fine.contains(&("will_exceed", "OFF".into())));
        assert!(fine.contains(&("month_peak_kw", "3.200".into())));
        for event in &events {
            for (name, payload) in guard_figures(&event.state) {
                if let Ok(x) = payload.parse::<f64>() {
                    assert!(x.is_finite() && x >= 0.0, "{name}: {payload}");
                    assert_eq!(payload.split('.').nth(1).map(str::len), Some(3));
                }
            }
        }
    }

    #[test]
    fn figures_that_are_not_finite_or_unknown_are_left_out() {
        let mut state = crate::tests::guard_events()[1].state;
        state.headroom_kw = f64::INFINITY;
        state.average_power_kw = f64::NAN;
        state.projected_average_kw = f64::MAX; // overflows when rounded
        state.month_peak_kw = None;
        state.reference_power_kw = -0.0001;
        let figures = guard_figures(&state);
        let names: Vec<&str> = figures.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "energy_import_kwh",
                "reference_power_kw",
                "verdict",
                "will_exceed"
            ]
        );
        assert_eq!(figures[1].1, "0.000", "no -0.000");
        let json = guard_json(&state);
        assert_eq!(json["headroom_kw"], Json::Null);
        assert_eq!(json["average_power_kw"], Json::Null);
        assert_eq!(json["projected_average_kw"], Json::Null);
        assert_eq!(json["month_peak_kw"], Json::Null);
        let text = String::from_utf8(serde_json::to_vec(&json).unwrap()).unwrap();
        assert!(!text.contains("inf") && !text.contains("NaN"), "{text}");
    }

    #[test]
    fn the_guard_json_has_units_in_names_and_rfc3339_times() {
        let events = crate::tests::guard_events();
        assert_eq!(
            guard_json(&events[1].state),
            json!({
                "quarter_start": "2026-01-01T00:00:00Z",
                "quarter_end": "2026-01-01T00:15:00Z",
                "at": "2026-01-01T00:05:00Z",
                "energy_import_wh": 250,
                "energy_import_kwh": 0.25,
                "average_power_kw": 3.0,
                "projected_average_kw": 4.333,
                "headroom_kw": 3.0,
                "reference_power_kw": 3.0,
                "verdict": "will_exceed",
                "will_exceed": true,
                "month_peak_kw": 1.0,
                "month_peak_start": "2026-01-01T00:00:00Z",
                "meter_demand_kw": null,
                "meter_month_max_demand_kw": null,
            })
        );
        let alert = &events[3].alerts[0];
        assert_eq!(
            guard_alert_json("home", &events[3].state, alert),
            json!({
                "meter": "home",
                "kind": "headroom_low",
                "event_type": "headroom_low",
                "title": "Smarty home: headroom 0.0 kW",
                "message": alert.message(),
                "headroom_kw": 0.0,
                "threshold_kw": 1.0,
                "quarter_start": "2026-01-01T00:00:00Z",
                "at": "2026-01-01T00:13:20Z",
            })
        );
    }

    #[test]
    fn guard_states_follow_retain_state_and_alerts_and_closed_quarters_are_never_retained() {
        let events = crate::tests::guard_events();
        for (retain_state, qos) in [(false, 0), (true, 2)] {
            let config = MqttConfig {
                retain_state,
                qos,
                ..MqttConfig::default()
            };
            // The event that closes December's last quarter and alerts.
            let m = guard_messages(&config, &events[1]);
            let summary: Vec<(&str, u8, bool)> = m
                .iter()
                .map(|p| (p.topic.as_str(), p.qos, p.retain))
                .collect();
            let r = retain_state;
            assert_eq!(
                summary,
                [
                    ("smarty/home/guard/closed", qos, false),
                    ("smarty/home/guard", qos, r),
                    ("smarty/home/guard/energy_import_kwh", qos, r),
                    ("smarty/home/guard/average_power_kw", qos, r),
                    ("smarty/home/guard/projected_average_kw", qos, r),
                    ("smarty/home/guard/headroom_kw", qos, r),
                    ("smarty/home/guard/reference_power_kw", qos, r),
                    ("smarty/home/guard/month_peak_kw", qos, r),
                    ("smarty/home/guard/verdict", qos, r),
                    ("smarty/home/guard/will_exceed", qos, r),
                    ("smarty/home/guard/alert", qos.max(1), false),
                ]
            );
            let closed: Json = serde_json::from_slice(&m[0].payload).unwrap();
            assert_eq!(closed["start"], "2025-12-31T23:45:00Z");
            assert_eq!(closed["energy_import_kwh"], 0.0);
            // Without a closed quarter or alerts: the state and its figures only.
            let m = guard_messages(&config, &events[2]);
            assert_eq!(m.len(), 9);
            assert_eq!(m[0].topic, "smarty/home/guard");
        }
    }

    #[test]
    fn raw_frames_are_upper_case_hex_and_never_retained() {
        let config = MqttConfig {
            retain_state: true,
            qos: 2,
            ..MqttConfig::default()
        };
        let m = raw_message(&config, "home", &[0xDB, 0x08, 0x0a]);
        assert_eq!(
            m,
            Publication {
                topic: "smarty/home/raw".into(),
                payload: b"DB080A".to_vec(),
                qos: 2,
                retain: false,
            }
        );
    }

    #[test]
    fn availability_and_status_are_retained() {
        let config = MqttConfig::default();
        let m = availability_message(&config, "home", false);
        assert_eq!(
            (m.topic.as_str(), &m.payload[..], m.retain),
            ("smarty/home/availability", &b"offline"[..], true)
        );
        let status = MeterStatus {
            meter: Arc::from("home"),
            source: "/dev/ttyUSB0".into(),
            connected: true,
            last_telegram: Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1)),
            stats: Default::default(),
            reconnects: 2,
            last_error: Some("lost".into()),
        };
        let m = status_message(&config, &status);
        assert_eq!(m.topic, "smarty/home/status");
        assert!(m.retain);
        let json: Json = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(
            json,
            json!({
                "connected": true,
                "source": "/dev/ttyUSB0",
                "last_telegram": "1970-01-01T00:00:01Z",
                "frames": 0,
                "telegrams": 0,
                "rejected": {},
                "reconnects": 2,
                "last_error": "lost",
            })
        );
    }
}
