//! The JSON of the local read-only HTTP API: rendering only (the firmware's HTTP server calls
//! these).
//!
//! - `GET /api/status` → [`status_json`]: firmware version, uptime, Wi-Fi, broker, the
//!   connection state, the reader's counters, the queue, the diagnosis.
//! - `GET /api/telegram` → [`telegram_json`]: the latest telegram's values and JSON object.

use alloc::string::String;

use smarty_p1::Stats;

use crate::diagnosis::Diagnosis;
use crate::json::{self, Object};
use crate::p1::{Snapshot, ValueData, rejected_json};
use crate::provisioning::State;

/// The broker connection as the status shows it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum BrokerState {
    /// Not configured or not started.
    Disconnected,
    /// Connecting.
    Connecting,
    /// Connected.
    Connected,
}

impl BrokerState {
    /// `disconnected`, `connecting` or `connected`.
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerState::Disconnected => "disconnected",
            BrokerState::Connecting => "connecting",
            BrokerState::Connected => "connected",
        }
    }
}

/// What `/api/status` reports.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Status<'a> {
    /// Firmware version ([`crate::VERSION`] by default).
    pub firmware: &'a str,
    /// Milliseconds since boot.
    pub uptime_ms: u64,
    /// The Wi-Fi network, when joined.
    pub wifi_ssid: Option<&'a str>,
    /// Signal strength in dBm, when joined.
    pub wifi_rssi_dbm: Option<i8>,
    /// The connection state machine's state.
    pub state: State,
    /// The broker connection.
    pub broker: BrokerState,
    /// The reader's counters.
    pub stats: &'a Stats,
    /// Bytes received from the P1 port.
    pub bytes_received: u64,
    /// Milliseconds since the last accepted telegram, if any.
    pub last_telegram_ms_ago: Option<u64>,
    /// Publications queued for the broker.
    pub queued: usize,
    /// Publications dropped from the queue since boot.
    pub dropped: u64,
    /// The diagnosis.
    pub diagnosis: Diagnosis,
}

impl<'a> Status<'a> {
    /// A status with everything but the essentials unknown or zero.
    pub fn new(uptime_ms: u64, state: State, stats: &'a Stats, diagnosis: Diagnosis) -> Self {
        Status {
            firmware: crate::VERSION,
            uptime_ms,
            wifi_ssid: None,
            wifi_rssi_dbm: None,
            state,
            broker: BrokerState::Disconnected,
            stats,
            bytes_received: 0,
            last_telegram_ms_ago: None,
            queued: 0,
            dropped: 0,
            diagnosis,
        }
    }
}

fn opt<T: core::fmt::Display>(o: &mut Object<'_>, key: &str, value: Option<T>) {
    match value {
        Some(v) => o.display(key, v),
        None => o.raw(key, "null"),
    }
}

/// `/api/status`:
///
/// ```json
/// {"firmware":"0.1.0","uptime_s":3600,"wifi":{"ssid":"home","rssi_dbm":-61},
///  "state":"online","broker":"connected",
///  "p1":{"bytes":123456,"frames":360,"telegrams":359,"rejected":{"crc":1},"noise_bytes":0,
///        "last_telegram_s_ago":4},
///  "queue":{"queued":0,"dropped":0},
///  "diagnosis":{"code":"working","ok":true,"message":"Telegrams arrive and are decoded."}}
/// ```
pub fn status_json(s: &Status<'_>) -> String {
    let mut out = String::with_capacity(512);
    let mut o = Object::new(&mut out);
    o.str("firmware", s.firmware);
    o.display("uptime_s", s.uptime_ms / 1000);
    {
        let mut w = Object::new(o.key("wifi"));
        w.opt_str("ssid", s.wifi_ssid);
        opt(&mut w, "rssi_dbm", s.wifi_rssi_dbm);
        w.end();
    }
    o.str("state", s.state.as_str());
    o.str("broker", s.broker.as_str());
    {
        let mut p = Object::new(o.key("p1"));
        p.display("bytes", s.bytes_received);
        p.display("frames", s.stats.frames);
        p.display("telegrams", s.stats.telegrams);
        rejected_json(p.key("rejected"), s.stats);
        p.display("noise_bytes", s.stats.noise_bytes);
        opt(
            &mut p,
            "last_telegram_s_ago",
            s.last_telegram_ms_ago.map(|t| t / 1000),
        );
        p.end();
    }
    {
        let mut q = Object::new(o.key("queue"));
        q.display("queued", s.queued);
        q.display("dropped", s.dropped);
        q.end();
    }
    {
        let mut d = Object::new(o.key("diagnosis"));
        d.str("code", s.diagnosis.code());
        d.display("ok", s.diagnosis.is_ok());
        d.str("message", &alloc::string::ToString::to_string(&s.diagnosis));
        d.end();
    }
    o.end();
    out
}

/// `/api/telegram`: the latest telegram, `now_ms` the present time: its age, its values by
/// name (numbers as numbers with their unit, texts and times as strings) and its JSON object
/// (the `state` message's); `{"telegram":null}` before the first.
///
/// ```json
/// {"age_s":4,"values":{"energy_import_kwh":{"value":6.695,"unit":"kWh"},
///  "meter_id":{"text":"SAG1030700114004"}},"telegram":{…}}
/// ```
pub fn telegram_json(latest: Option<&Snapshot>, now_ms: u64) -> String {
    let Some(t) = latest else {
        return String::from("{\"telegram\":null}");
    };
    let mut out = String::with_capacity(t.state_json.len() + 64 * t.values.len() + 64);
    let mut o = Object::new(&mut out);
    o.display("age_s", now_ms.saturating_sub(t.received_ms) / 1000);
    {
        let mut values = Object::new(o.key("values"));
        for v in &t.values {
            let mut e = Object::new(values.key(&v.name));
            match &v.data {
                ValueData::Number(d) => {
                    json::decimal(e.key("value"), *d);
                    e.opt_str("unit", v.unit_symbol());
                }
                ValueData::Text(text) => e.str("text", text),
                ValueData::Time(time) => e.str("time", time),
            }
            e.end();
        }
        values.end();
    }
    o.raw("telegram", &t.state_json);
    o.end();
    out
}
