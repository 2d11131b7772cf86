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
//! | `<discovery_prefix>/sensor/smarty_<device>/<name>/config` | Home Assistant discovery ([`super::discovery`]) | yes |
//!
//! Home Assistant's own status (its birth message `online`) is read on
//! `<discovery_prefix>/status`.

use serde_json::{Map, Value as Json, json};

use super::config::MqttConfig;
use smarty_model::event::{MeterStatus, TelegramEvent};
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

/// The discovery config of value `name` of the device `key`.
pub fn discovery(config: &MqttConfig, key: &str, name: &str) -> String {
    format!(
        "{}/sensor/smarty_{key}/{}/config",
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
