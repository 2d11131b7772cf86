//! UART bytes → accepted telegrams → MQTT publications.
//!
//! A [`Reader`] takes the bytes of the P1 port in any chunks (noise, cut frames and all), runs
//! them through [`smarty_p1::Decoder`], and gives each accepted telegram as an owned
//! [`Snapshot`]: its values under the gateway's standard names (`energy_import_kwh`,
//! `power_import_kw`, `mbus1_gas_m3`: the core's [`smarty_p1::Telegram::name_of`], which the
//! gateway's `smarty-model` uses too), the gateway's JSON object of the telegram, and the raw
//! frame. It counts what it rejects, for the [`crate::diagnosis`].
//!
//! [`publications`] turns a snapshot into the gateway's MQTT layout (`smarty-mqtt`'s
//! `topics.rs`), under `<prefix>/<meter>/`:
//!
//! | topic | payload | retained |
//! |---|---|---|
//! | `<prefix>/<meter>/state` | the telegram's JSON object (compact), as `smarty read --format json` | `retain_state` |
//! | `<prefix>/<meter>/<name>` | one value: decimal text of a number (`6.695`), text, or RFC 3339 time | `retain_state` |
//! | `<prefix>/<meter>/raw` | the frame as received, upper-case hex (`publish_raw`) | no |
//! | `<prefix>/<meter>/availability` | `online`; `offline` is the dongle's last will ([`availability`]) | yes |
//! | `<prefix>/<meter>/status` | JSON: counters and the diagnosis ([`status_publication`]) | yes |
//!
//! Unlike the gateway the dongle has no `<prefix>/status` of its own: several dongles may share
//! a prefix, so each one's liveness is its meter's `availability` (its MQTT last will).

use alloc::borrow::ToOwned;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write;

use smarty_p1::registry::{Kind, Medium, ObisDef};
use smarty_p1::{
    AadHint, Decimal, Decoded, DecoderConfig, DecryptError, FrameInfo, Obis, RejectReason,
    Rejection, Stats, Telegram, Value,
};

use crate::diagnosis::{self, Diagnosis, Observation};
use crate::json::{self, Object};

/// MQTT quality of service of a publication. (QoS 2 is not offered: the client is built
/// without it, and nothing the dongle sends needs it.)
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum QoS {
    /// 0: at most once.
    #[default]
    AtMostOnce,
    /// 1: at least once.
    AtLeastOnce,
}

impl QoS {
    /// The QoS level as a number, 0 or 1.
    pub fn level(self) -> u8 {
        match self {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
        }
    }
}

/// One MQTT message to publish.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct Publication {
    /// The topic name (no wildcards).
    pub topic: String,
    /// The payload bytes (UTF-8 text or JSON for everything the dongle sends).
    pub payload: Vec<u8>,
    /// Whether the broker keeps it for later subscribers.
    pub retain: bool,
    /// Its quality of service.
    pub qos: QoS,
}

impl Publication {
    /// A message of `payload` on `topic`.
    pub fn new(topic: String, payload: Vec<u8>, retain: bool, qos: QoS) -> Self {
        Publication {
            topic,
            payload,
            retain,
            qos,
        }
    }

    /// Bytes it takes in memory: topic plus payload (what [`crate::ring::Ring`] budgets).
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// What to publish, and where.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct PublishConfig {
    /// Topic prefix (default `smarty`), without a trailing `/`.
    pub prefix: String,
    /// The meter's name in topics (`<prefix>/<meter>/…`): the device name of the settings.
    pub meter: String,
    /// Publish the telegram's JSON and its values (default `true`).
    pub decoded: bool,
    /// Publish the frame as received in hex on `…/raw` (default `false`), for the fleet.
    pub raw: bool,
    /// Retain the state and value messages (default `true`, as the gateway's `retain_state`).
    pub retain_state: bool,
    /// QoS of the data messages (default 0).
    pub qos: QoS,
}

impl PublishConfig {
    /// Decoded values, retained, QoS 0, no raw frames, under `<prefix>/<meter>/`.
    pub fn new(prefix: &str, meter: &str) -> Self {
        PublishConfig {
            prefix: prefix.trim_end_matches('/').to_owned(),
            meter: meter.to_owned(),
            decoded: true,
            raw: false,
            retain_state: true,
            qos: QoS::AtMostOnce,
        }
    }

    /// `<prefix>/<meter>/<name>`.
    pub fn topic(&self, name: &str) -> String {
        let mut topic =
            String::with_capacity(self.prefix.len() + self.meter.len() + name.len() + 2);
        let _ = write!(topic, "{}/{}/{name}", self.prefix, self.meter);
        topic
    }

    /// `<prefix>/<meter>/availability`: `online`/`offline`, the last will's topic.
    pub fn availability_topic(&self) -> String {
        self.topic("availability")
    }
}

/// What a value reads.
#[derive(Clone, PartialEq, Debug)]
#[non_exhaustive]
pub enum ValueData {
    /// A number exactly as sent (`6.695`).
    Number(Decimal),
    /// Text (ids, versions, messages), decoded from hex where the meter sends hex.
    Text(String),
    /// A time, RFC 3339 (`2018-01-30T10:21:22+01:00`; without offset when the meter sends no
    /// summer/winter flag: the gateway converts those in the meter's zone, the dongle cannot).
    Time(String),
}

impl core::fmt::Display for ValueData {
    /// The MQTT payload: decimal text of a number (`6.695`), the text, or the time.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ValueData::Number(d) => write!(f, "{d}"),
            ValueData::Text(t) | ValueData::Time(t) => f.write_str(t),
        }
    }
}

/// One value of a telegram under its standard name.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NamedValue {
    /// The standard name with its unit: `energy_import_kwh`, `voltage_l1_v`, `mbus1_gas_m3`.
    pub name: String,
    /// The OBIS code as sent (`1-0:1.8.0`).
    pub code: String,
    /// The OBIS code.
    pub obis: Obis,
    /// The registry entry: name template, kind, specification unit.
    pub def: &'static ObisDef,
    /// The unit as the name carries it: as sent (`kWh`, `m3`), else the medium's or the
    /// specification's; `None` when there is none.
    pub unit: Option<String>,
    /// The medium of an M-Bus reading ([`Medium::Other`] when the telegram does not say);
    /// `None` for every other value.
    pub medium: Option<Medium>,
    /// What it reads.
    pub data: ValueData,
}

impl PartialEq for NamedValue {
    fn eq(&self, other: &Self) -> bool {
        // The registry entry follows from the code.
        (
            &self.name,
            &self.code,
            self.obis,
            &self.unit,
            self.medium,
            &self.data,
        ) == (
            &other.name,
            &other.code,
            other.obis,
            &other.unit,
            other.medium,
            &other.data,
        )
    }
}

impl NamedValue {
    /// What it measures.
    pub fn kind(&self) -> Kind {
        self.def.kind
    }

    /// `true` for numbers.
    pub fn is_number(&self) -> bool {
        matches!(self.data, ValueData::Number(_))
    }

    /// The unit as people write it (`kWh`, `m³`: Home Assistant's spelling), for numbers;
    /// an unknown unit as sent.
    pub fn unit_symbol(&self) -> Option<&str> {
        if !self.is_number() {
            return None;
        }
        let unit = self.unit.as_deref()?;
        Some(known_unit(unit).map_or(unit, |u| u.1))
    }

    /// The channel of a value of an M-Bus device (the registry names them `mbus{n}_…`).
    pub fn device_channel(&self) -> Option<u8> {
        self.def.name.starts_with("mbus{n}").then_some(self.obis.b)
    }
}

/// The units the gateway knows (`smarty-model`'s unit table): (slug, symbol).
const UNITS: [(&str, &str); 30] = [
    ("wh", "Wh"),
    ("kwh", "kWh"),
    ("mwh", "MWh"),
    ("gwh", "GWh"),
    ("varh", "varh"),
    ("kvarh", "kvarh"),
    ("mvarh", "Mvarh"),
    ("w", "W"),
    ("kw", "kW"),
    ("mw", "MW"),
    ("gw", "GW"),
    ("var", "var"),
    ("kvar", "kvar"),
    ("mvar", "Mvar"),
    ("va", "VA"),
    ("kva", "kVA"),
    ("mva", "MVA"),
    ("v", "V"),
    ("kv", "kV"),
    ("mv", "mV"),
    ("a", "A"),
    ("ka", "kA"),
    ("ma", "mA"),
    ("hz", "Hz"),
    ("s", "s"),
    ("m3", "m³"),
    ("gj", "GJ"),
    ("mj", "MJ"),
    ("kj", "kJ"),
    ("j", "J"),
];

/// The known unit `text` is (whatever its case: `KWH` is kWh): (slug, symbol).
pub(crate) fn known_unit(text: &str) -> Option<(&'static str, &'static str)> {
    let mut slug = [0u8; 16];
    let mut len = 0;
    for b in text.bytes().filter(u8::is_ascii_alphanumeric) {
        if len == slug.len() {
            return None;
        }
        slug[len] = b.to_ascii_lowercase();
        len += 1;
    }
    UNITS
        .iter()
        .find(|(s, _)| s.as_bytes() == &slug[..len])
        .copied()
}

/// An accepted telegram, owned: what the publications, discovery and the API are made of.
#[derive(Clone, PartialEq, Debug)]
#[non_exhaustive]
pub struct Snapshot {
    /// The meter id (`0-0:42.0.0` or `0-0:96.1.1` as text), when sent.
    pub meter_id: Option<String>,
    /// The identification line without `/` (`Lux5\253663629_D`).
    pub header: String,
    /// The P1 version (`42` on Smarty, `50` on DSMR 5), when sent.
    pub version: Option<String>,
    /// The telegram's time, RFC 3339, when sent.
    pub timestamp: Option<String>,
    /// Frame details; `None` for a plaintext telegram.
    pub frame: Option<FrameInfo>,
    /// Every value with a standard name and a number, text or time, in line order (as the
    /// gateway's `values_of`).
    pub values: Vec<NamedValue>,
    /// The telegram's JSON object, compact: the gateway's schema (docs/formats.md).
    pub state_json: String,
    /// The bytes as received: the encrypted frame, or the plaintext telegram.
    pub raw: Vec<u8>,
    /// The plaintext telegram, `/` through the CRC line: what DSMR tools read from a network
    /// P1 port (the firmware's telegram stream on TCP port 2001).
    pub telegram: Vec<u8>,
    /// When it was accepted (the `now_ms` of the last [`Reader::push`]).
    pub received_ms: u64,
}

impl Snapshot {
    /// The value named `name`.
    pub fn value(&self, name: &str) -> Option<&NamedValue> {
        self.values.iter().find(|v| v.name == name)
    }

    /// Whether the telegram carries per-phase values (voltage or active power of L1). Smarty
    /// meters send them only with the full read-out list, which the grid operator enables.
    pub fn has_per_phase_values(&self) -> bool {
        self.values.iter().any(|v| {
            v.obis.a == 1
                && matches!(v.obis.c, 21..=80)
                && matches!(v.kind(), Kind::Voltage | Kind::Power)
        })
    }

    /// Builds the snapshot of a decoded telegram received at `now_ms`.
    pub fn of(decoded: &Decoded<'_>, now_ms: u64) -> Snapshot {
        let telegram = &decoded.telegram;
        Snapshot {
            meter_id: telegram.meter_id(),
            header: telegram.header_str().into_owned(),
            version: telegram.version().map(ToOwned::to_owned),
            timestamp: telegram.timestamp().map(|t| t.to_string()),
            frame: decoded.frame,
            values: values_of(telegram),
            state_json: telegram_json(decoded),
            raw: decoded.raw.to_vec(),
            telegram: telegram.raw().to_vec(),
            received_ms: now_ms,
        }
    }
}

/// Every value of `telegram` with a standard name and a number, text or time, in line order:
/// the gateway's `smarty_model::value::values_of`.
pub fn values_of(telegram: &Telegram<'_>) -> Vec<NamedValue> {
    let mut values = Vec::with_capacity(telegram.objects().len());
    for object in telegram.objects() {
        let value = object.value();
        let data = match value {
            Value::Number(q) | Value::TimedNumber { quantity: q, .. } => ValueData::Number(q.value),
            Value::Text(t) => ValueData::Text(t.to_owned()),
            Value::OctetString(s) => match s.text() {
                Some(text) => ValueData::Text(text),
                None => continue,
            },
            Value::Timestamp(Some(t)) => ValueData::Time(t.to_string()),
            _ => continue,
        };
        let (Some(def), Some(name)) = (object.def, telegram.name_of_value(object, &value)) else {
            continue;
        };
        values.push(NamedValue {
            name: name.to_string(),
            code: object.code.to_owned(),
            obis: object.obis,
            def,
            unit: name.unit().map(ToOwned::to_owned),
            medium: name.medium(),
            data,
        });
    }
    values
}

fn quantity(o: &mut Object<'_>, q: smarty_p1::Quantity<'_>) {
    json::decimal(o.key("value"), q.value);
    o.opt_str("unit", q.unit);
}

fn timestamp(out: &mut String, t: Option<smarty_p1::Timestamp>) {
    match t {
        Some(t) => json::string(out, &t.to_string()),
        None => out.push_str("null"),
    }
}

/// The telegram's JSON object, compact, in the gateway's schema and key order
/// (`smarty_model::json::telegram_json`, docs/formats.md): `meter_id`, `timestamp`, `header`,
/// `version`, `system_title`, `frame_counter`, `authenticated`, `crc`, `objects` (by code:
/// `name` and the value's fields), `unknown_lines`.
pub fn telegram_json(decoded: &Decoded<'_>) -> String {
    let telegram = &decoded.telegram;
    let mut out = String::with_capacity(128 + 96 * telegram.objects().len());
    let mut o = Object::new(&mut out);
    o.opt_str("meter_id", telegram.meter_id().as_deref());
    timestamp(o.key("timestamp"), telegram.timestamp());
    o.str("header", &telegram.header_str());
    o.opt_str("version", telegram.version());
    let frame = decoded.frame.as_ref();
    o.opt_str(
        "system_title",
        frame
            .map(|f| smarty_p1::hex::upper(&f.system_title).to_string())
            .as_deref(),
    );
    match frame {
        Some(f) => {
            o.display("frame_counter", f.frame_counter);
            o.display("authenticated", f.authenticated);
        }
        None => {
            o.raw("frame_counter", "null");
            o.raw("authenticated", "null");
        }
    }
    o.str("crc", telegram.crc().as_str());
    {
        let objects = o.key("objects");
        let mut map = Object::new(objects);
        for object in telegram.objects() {
            let value = object.value();
            let entry = map.key(object.code);
            let mut e = Object::new(entry);
            let name = telegram
                .name_of_value(object, &value)
                .map(|n| n.to_string());
            e.opt_str("name", name.as_deref());
            value_fields(&mut e, &value);
            e.end();
        }
        map.end();
    }
    {
        let lines = o.key("unknown_lines");
        lines.push('[');
        for (i, line) in telegram.unknown_lines().iter().enumerate() {
            if i > 0 {
                lines.push(',');
            }
            json::string(lines, &String::from_utf8_lossy(line));
        }
        lines.push(']');
    }
    o.end();
    out
}

fn value_fields(e: &mut Object<'_>, value: &Value<'_>) {
    match *value {
        Value::Empty => {
            e.raw("value", "null");
            e.raw("unit", "null");
        }
        Value::Number(q) => quantity(e, q),
        Value::Text(t) => e.str("text", t),
        Value::OctetString(s) => {
            e.opt_str("text", s.text().as_deref());
            e.str("hex", s.hex());
        }
        Value::Timestamp(t) => timestamp(e.key("timestamp"), t),
        Value::TimedNumber { time, quantity: q } => {
            quantity(e, q);
            timestamp(e.key("timestamp"), time);
        }
        Value::Numbers(_) => {
            let out = e.key("values");
            out.push('[');
            for (i, q) in value.numbers().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let mut item = Object::new(out);
                quantity(&mut item, q);
                item.end();
            }
            out.push(']');
        }
        Value::FailureLog(_) => {
            let out = e.key("events");
            out.push('[');
            for (i, event) in value.failure_events().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let mut item = Object::new(out);
                timestamp(item.key("end"), event.end);
                json::decimal(item.key("duration_s"), event.duration.value);
                item.end();
            }
            out.push(']');
        }
        Value::History(_) => {
            let out = e.key("entries");
            out.push('[');
            for (i, h) in value.history().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let mut item = Object::new(out);
                timestamp(item.key("period"), h.period);
                timestamp(item.key("timestamp"), h.time);
                quantity(&mut item, h.quantity);
                item.end();
            }
            out.push(']');
        }
        Value::Raw(groups) => e.str("raw", groups.as_str()),
        // A kind of value newer than this firmware: listed without its value.
        _ => e.raw("value", "null"),
    }
}

/// The data messages of one telegram, in publishing order (the gateway's): the state JSON and
/// each value (when `decoded`), then the raw frame (when `raw`).
pub fn publications(snapshot: &Snapshot, config: &PublishConfig) -> Vec<Publication> {
    let mut out = Vec::with_capacity(snapshot.values.len() + 2);
    if config.decoded {
        out.push(Publication::new(
            config.topic("state"),
            snapshot.state_json.as_bytes().to_vec(),
            config.retain_state,
            config.qos,
        ));
        for v in &snapshot.values {
            out.push(Publication::new(
                config.topic(&v.name),
                v.data.to_string().into_bytes(),
                config.retain_state,
                config.qos,
            ));
        }
    }
    if config.raw {
        out.push(raw_publication(&snapshot.raw, config));
    }
    out
}

/// The `<prefix>/<meter>/raw` message of a frame: upper-case hex, never retained.
pub fn raw_publication(frame: &[u8], config: &PublishConfig) -> Publication {
    let hex = smarty_p1::hex::upper(frame).to_string();
    Publication::new(config.topic("raw"), hex.into_bytes(), false, config.qos)
}

/// The retained `<prefix>/<meter>/availability` message: `online`, or `offline` (the payload
/// of the last will, see [`crate::mqtt`]).
pub fn availability(config: &PublishConfig, online: bool) -> Publication {
    let payload: &[u8] = if online { b"online" } else { b"offline" };
    Publication::new(
        config.availability_topic(),
        payload.to_vec(),
        true,
        QoS::AtLeastOnce,
    )
}

/// The retained `<prefix>/<meter>/status` message: the counters as the gateway's status
/// message has them (`frames`, `telegrams`, `rejected` by reason) and the diagnosis (`code`
/// and `message`).
pub fn status_publication(
    config: &PublishConfig,
    stats: &Stats,
    diagnosis: &Diagnosis,
) -> Publication {
    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.display("connected", true);
    o.display("frames", stats.frames);
    o.display("telegrams", stats.telegrams);
    rejected_json(o.key("rejected"), stats);
    o.str("diagnosis", diagnosis.code());
    o.str("message", &diagnosis.to_string());
    o.end();
    Publication::new(
        config.topic("status"),
        out.into_bytes(),
        true,
        QoS::AtLeastOnce,
    )
}

/// `{"wrong_key":3,…}`: the non-zero rejection counters by reason.
pub(crate) fn rejected_json(out: &mut String, stats: &Stats) {
    let mut o = Object::new(out);
    for (reason, n) in stats.rejections() {
        o.display(reason.as_str(), n);
    }
    o.end();
}

/// Rejections per reason ([`RejectReason::ALL`] order) since a point in time.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct RejectionCounts {
    counts: [u64; RejectReason::ALL.len()],
}

impl RejectionCounts {
    fn index(reason: RejectReason) -> usize {
        RejectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0)
    }

    /// Counts one rejection.
    pub fn add(&mut self, reason: RejectReason) {
        self.counts[Self::index(reason)] += 1;
    }

    /// Rejections for `reason`.
    pub fn get(&self, reason: RejectReason) -> u64 {
        self.counts[Self::index(reason)]
    }

    /// All rejections.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Non-zero counters.
    pub fn iter(&self) -> impl Iterator<Item = (RejectReason, u64)> + '_ {
        RejectReason::ALL
            .into_iter()
            .map(|r| (r, self.get(r)))
            .filter(|(_, n)| *n > 0)
    }
}

/// UART bytes in, [`Snapshot`]s and [`Rejection`]s out, with what the diagnosis needs.
///
/// # Example
/// ```
/// use smarty_dongle::p1::Reader;
/// use smarty_p1::DecoderConfig;
/// let mut reader = Reader::new(DecoderConfig::default());
/// reader.push(b"noise/ISK5\\2M550T-1012\r\n\r\n1-0:1.8.1(000001.000*kWh)\r\n!", 10);
/// reader.push(b"\r\n", 20);
/// let snapshot = reader.poll().unwrap().unwrap();
/// assert_eq!(snapshot.value("energy_import_tariff1_kwh").unwrap().data.to_string(), "1.000");
/// assert_eq!(reader.stats().noise_bytes, 5);
/// ```
#[derive(Debug)]
pub struct Reader {
    decoder: smarty_p1::Decoder,
    key_configured: bool,
    now_ms: u64,
    started_ms: Option<u64>,
    bytes: u64,
    last_byte_ms: Option<u64>,
    last_telegram_ms: Option<u64>,
    last_rejection: Option<Rejection>,
    last_hint: Option<AadHint>,
    since_telegram: RejectionCounts,
    per_phase: Option<bool>,
}

impl Reader {
    /// A reader decoding with `config` (its key, AAD, framing).
    pub fn new(config: DecoderConfig) -> Self {
        Reader {
            key_configured: config.key.is_some(),
            decoder: smarty_p1::Decoder::new(config),
            now_ms: 0,
            started_ms: None,
            bytes: 0,
            last_byte_ms: None,
            last_telegram_ms: None,
            last_rejection: None,
            last_hint: None,
            since_telegram: RejectionCounts::default(),
            per_phase: None,
        }
    }

    /// Marks the start of reading at `now_ms` (monotonic milliseconds): the diagnosis waits
    /// for the first frame from then. Without it the first [`Reader::push`] or
    /// [`Reader::observe`] starts the clock.
    pub fn start(&mut self, now_ms: u64) {
        self.started_ms = Some(now_ms);
    }

    /// Appends bytes received at `now_ms`; an empty slice only advances the clock (a partial
    /// frame stalled for longer than the framing gap is dropped).
    pub fn push(&mut self, bytes: &[u8], now_ms: u64) {
        self.started_ms.get_or_insert(now_ms);
        self.now_ms = now_ms;
        if bytes.is_empty() {
            self.decoder.check_gap(now_ms);
            return;
        }
        self.bytes += bytes.len() as u64;
        self.last_byte_ms = Some(now_ms);
        self.decoder.push_at(bytes, now_ms);
    }

    /// The next accepted telegram or rejection; `None` when more bytes are needed. Call until
    /// `None` after each [`Reader::push`].
    pub fn poll(&mut self) -> Option<Result<Snapshot, Rejection>> {
        let now_ms = self.now_ms;
        match self.decoder.next()? {
            Ok(decoded) => {
                let snapshot = Snapshot::of(&decoded, now_ms);
                self.last_telegram_ms = Some(now_ms);
                self.since_telegram = RejectionCounts::default();
                self.per_phase = Some(snapshot.has_per_phase_values());
                Some(Ok(snapshot))
            }
            Err(rejection) => {
                if let Rejection::Decrypt(DecryptError::Authentication { hint }) = rejection {
                    self.last_hint = Some(hint);
                }
                self.since_telegram.add(rejection.reason());
                self.last_rejection = Some(rejection);
                Some(Err(rejection))
            }
        }
    }

    /// The decoder's counters since the start.
    pub fn stats(&self) -> &Stats {
        self.decoder.stats()
    }

    /// Bytes received since the start.
    pub fn bytes_received(&self) -> u64 {
        self.bytes
    }

    /// The last rejection, if any.
    pub fn last_rejection(&self) -> Option<&Rejection> {
        self.last_rejection.as_ref()
    }

    /// Rejections since the last accepted telegram (since the start before the first).
    pub fn rejected_since_telegram(&self) -> &RejectionCounts {
        &self.since_telegram
    }

    /// What the diagnosis looks at, as of `now_ms`.
    pub fn observe(&mut self, now_ms: u64) -> Observation {
        let started = *self.started_ms.get_or_insert(now_ms);
        let age = |t: Option<u64>| t.map(|t| now_ms.saturating_sub(t));
        Observation {
            stats: *self.decoder.stats(),
            key_configured: self.key_configured,
            bytes_received: self.bytes,
            running_ms: now_ms.saturating_sub(started),
            since_last_byte_ms: age(self.last_byte_ms),
            since_last_telegram_ms: age(self.last_telegram_ms),
            rejected_since_telegram: self.since_telegram,
            last_rejection: self.last_rejection,
            authentication_hint: self.last_hint,
            per_phase_values: self.per_phase,
        }
    }

    /// The diagnosis as of `now_ms` ([`diagnosis::diagnose`] of [`Reader::observe`]).
    pub fn diagnose(&mut self, now_ms: u64) -> Diagnosis {
        diagnosis::diagnose(&self.observe(now_ms))
    }
}
