//! The MQTT output: telegrams and meter states to an MQTT broker, with Home Assistant
//! discovery, and a queue (on disk if configured) so that nothing is lost while the broker is
//! down.
//!
//! # Topics (`<prefix>` defaults to `smarty`)
//!
//! | topic | payload | retained |
//! |---|---|---|
//! | `<prefix>/status` | `online` on connect, `offline` as the last will and on shutdown | yes |
//! | `<prefix>/<meter>/state` | the JSON object of `smarty read --format json` | `retain_state` |
//! | `<prefix>/<meter>/<name>` | one value: the decimal text of a number, or the text | `retain_state` |
//! | `<prefix>/<meter>/raw` | the frame as received, upper-case hex (`publish_raw`; also the frames a meter without a key cannot decrypt) | no |
//! | `<prefix>/<meter>/availability` | `online` / `offline`: the meter's source is connected | yes |
//! | `<prefix>/<meter>/status` | JSON: connected, last telegram, counters, last error | yes |
//! | `<discovery_prefix>/sensor/<node>/<name>/config` | Home Assistant discovery | yes |
//!
//! # Delivery
//!
//! Every message goes through a [`Queue`] and leaves it only when the broker acknowledged it
//! (QoS 1: PUBACK, QoS 2: PUBCOMP) or, at QoS 0, when it was written to the connection. At
//! most [`WINDOW`] messages are handed to rumqttc at a time (with `try_publish_tracked`, never
//! blocking); each comes with a notice of what became of it, so the queue learns the fate of
//! each message itself, whatever order the acknowledgements come in. When the connection
//! drops, rumqttc's own copies are given up and everything not acknowledged is sent again, in
//! queue order, after the reconnect: a message may arrive twice (as QoS 1 allows) but never
//! out of order and never not at all, unless the queue overflows (`queue_max`; the oldest are
//! dropped and counted). With a queue directory the queue is also on disk (see [`Queue`]:
//! a full disk is reported and retried, never silently given up).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use rumqttc::{
    AsyncClient, ConnectionError, Event as MqttEvent, EventLoop, Incoming, LastWill, MqttOptions,
    Outgoing, PublishOptions, QoS, TlsConfiguration, Transport,
};
use rumqttc5 as v5;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use smarty_p1::registry::Kind;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::event::{Event, MeterStatus, NamedValue, TelegramEvent, ValueData, slug};
use super::metrics::OutputHealth;
use super::queue::{Message, Queue};
use crate::output::time::rfc3339;
use crate::secret::Secret;

/// Messages handed to rumqttc and not yet acknowledged, at most.
pub const WINDOW: usize = 64;
/// rumqttc's in-flight limit with an MQTT 5 broker (which may ask for fewer in its CONNACK:
/// rumqttc honours its receive maximum).
const INFLIGHT: u16 = 100;
/// rumqttc's in-flight limit with an MQTT 3.1.1 broker, which cannot say how many it takes:
/// Mosquitto's default (`max_inflight_messages 20`). A broker past its limit drops QoS 2
/// messages while acknowledging them (Mosquitto does), so stay within it.
const INFLIGHT_V4: u16 = 20;
/// rumqttc's request channel: the window plus the few direct requests (status, subscribe).
const CHANNEL: usize = WINDOW + 16;
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// MQTT 3.1.1.
    #[default]
    #[serde(alias = "3.1.1", alias = "mqttv4")]
    V4,
    /// MQTT 5.
    #[serde(alias = "5", alias = "mqttv5")]
    V5,
}

/// The `[mqtt]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// The broker: `mqtt://host[:port]` (TCP, port 1883 by default) or `mqtts://host[:port]`
    /// (TLS, port 8883 by default, the server certificate checked against the system's
    /// certificate authorities or `ca_file`). `tcp://`, `ssl://` and `tls://` are accepted as
    /// synonyms. No user or password in the URL: use `username` and `password`.
    pub url: String,
    /// The user name, if the broker wants one.
    pub username: Option<String>,
    /// The password (the configuration layer reads `password_file`). Never logged.
    pub password: Option<Secret>,
    /// The MQTT client id (default `smarty-<hostname>`, or `smarty-<random>` without one).
    /// Must be unique on the broker: two clients with one id throw each other off.
    pub client_id: Option<String>,
    /// The first level of every topic (default `smarty`).
    pub prefix: String,
    /// QoS of every message: 0, 1 (default) or 2. At 0 a message is given up once written to
    /// the connection; at 1 and 2 only when the broker acknowledged it.
    pub qos: u8,
    /// Keep-alive interval in seconds (default 30; at least 5).
    pub keep_alive_s: u64,
    /// Retain the `state` and per-value topics (default `false`; availability, status and
    /// discovery are always retained).
    pub retain_state: bool,
    /// Also publish each frame as received, in hex, on `<prefix>/<meter>/raw` (default
    /// `false`), for another `smarty` that decrypts them.
    pub publish_raw: bool,
    /// Publish Home Assistant MQTT discovery (default `true`).
    pub discovery: bool,
    /// Home Assistant's discovery prefix (default `homeassistant`); Home Assistant's birth
    /// message is expected on `<discovery_prefix>/status`.
    pub discovery_prefix: String,
    /// `v4` (MQTT 3.1.1, default) or `v5` (MQTT 5).
    pub protocol: Protocol,
    /// Keep the outgoing queue in this directory (file `mqtt-queue.bin`), so that a restart
    /// of `smarty` loses nothing either. Without it the queue lives in memory only.
    pub queue_dir: Option<PathBuf>,
    /// The most messages the queue holds (default 100,000); when full the oldest are dropped
    /// and counted.
    pub queue_max: usize,
    /// A PEM file of certificate authorities for `mqtts://` instead of the system's (for a
    /// broker with a self-signed certificate).
    pub ca_file: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: "mqtt://127.0.0.1:1883".into(),
            username: None,
            password: None,
            client_id: None,
            prefix: "smarty".into(),
            qos: 1,
            keep_alive_s: 30,
            retain_state: false,
            publish_raw: false,
            discovery: true,
            discovery_prefix: "homeassistant".into(),
            protocol: Protocol::V4,
            queue_dir: None,
            queue_max: 100_000,
            ca_file: None,
        }
    }
}

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// TLS (`mqtts://`).
    pub tls: bool,
    /// Host name or address (IPv6 in brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Endpoint {
    /// The host without the brackets of an IPv6 address, as a socket address takes it.
    pub fn host_name(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl MqttConfig {
    /// Checks the settings; returns the broker's address.
    pub fn check(&self) -> anyhow::Result<Endpoint> {
        if self.qos > 2 {
            bail!("mqtt.qos must be 0, 1 or 2, not {}", self.qos);
        }
        if !(5..=u64::from(u16::MAX)).contains(&self.keep_alive_s) {
            bail!(
                "mqtt.keep_alive_s must be between 5 and {} seconds, not {}",
                u16::MAX,
                self.keep_alive_s
            );
        }
        if self.queue_max == 0 {
            bail!("mqtt.queue_max must be at least 1");
        }
        check_prefix("mqtt.prefix", &self.prefix)?;
        if self.discovery {
            check_prefix("mqtt.discovery_prefix", &self.discovery_prefix)?;
        }
        if self.password.is_some() && self.username.is_none() {
            bail!("mqtt.password is set but mqtt.username is not");
        }
        if self.client_id.as_deref().is_some_and(str::is_empty) {
            bail!("mqtt.client_id must not be empty");
        }
        parse_url(&self.url)
    }

    /// The client id to use.
    pub fn client_id(&self) -> String {
        self.client_id.clone().unwrap_or_else(default_client_id)
    }
}

fn check_prefix(what: &str, prefix: &str) -> anyhow::Result<()> {
    if prefix.is_empty()
        || prefix.starts_with('/')
        || prefix.ends_with('/')
        || prefix.contains(['+', '#', '\0'])
    {
        bail!(
            "{what} {prefix:?} must be a topic without wildcards and without leading or trailing /"
        );
    }
    Ok(())
}

/// Parses `mqtt://host:port` / `mqtts://host:port`.
pub fn parse_url(url: &str) -> anyhow::Result<Endpoint> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("mqtt.url {url:?} must start with mqtt:// or mqtts://");
    };
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" | "tls" => true,
        other => bail!("mqtt.url: unknown scheme {other:?} (use mqtt:// or mqtts://)"),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('@') {
        bail!("mqtt.url must not contain a user or password: use mqtt.username and mqtt.password");
    }
    if rest.contains(['/', '?', '#']) {
        bail!("mqtt.url {url:?}: a path or query is not supported");
    }
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            bail!("mqtt.url {url:?}: unclosed [");
        };
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => bail!("mqtt.url {url:?}: expected :port after ]"),
        };
        (format!("[{addr}]"), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (rest.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        bail!("mqtt.url {url:?} has no host");
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .with_context(|| format!("mqtt.url {url:?}: bad port {p:?}"))?,
        None => default_port,
    };
    Ok(Endpoint { tls, host, port })
}

fn default_client_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(40)
        .collect();
    if host.is_empty() {
        format!("smarty-{:08x}", rand::random::<u32>())
    } else {
        format!("smarty-{host}")
    }
}

fn qos_of(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn qos5_of(level: u8) -> v5::QoS {
    match level {
        0 => v5::QoS::AtMostOnce,
        1 => v5::QoS::AtLeastOnce,
        _ => v5::QoS::ExactlyOnce,
    }
}

/// The keep-alive interval in whole seconds, as MQTT carries it (16 bits).
fn keep_alive_s(config: &MqttConfig) -> u16 {
    u16::try_from(config.keep_alive_s).unwrap_or(u16::MAX)
}

/// rumqttc's options for `config`.
fn mqtt_options(config: &MqttConfig, endpoint: &Endpoint) -> anyhow::Result<MqttOptions> {
    let mut options = MqttOptions::new(config.client_id(), (endpoint.host_name(), endpoint.port));
    options
        .set_keep_alive(keep_alive_s(config))
        .set_clean_session(true)
        .set_inflight(INFLIGHT_V4)
        .set_max_request_batch(WINDOW)
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_last_will(LastWill::new(
            status_topic(config),
            "offline",
            qos_of(config.qos),
            true,
        ));
    if let Some(user) = &config.username {
        options.set_credentials(
            user.clone(),
            config
                .password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default(),
        );
    }
    options.set_transport(transport(config, endpoint)?);
    Ok(options)
}

/// rumqttc's MQTT 5 options for `config`: those of [`mqtt_options`].
fn mqtt5_options(config: &MqttConfig, endpoint: &Endpoint) -> anyhow::Result<v5::MqttOptions> {
    let mut options =
        v5::MqttOptions::new(config.client_id(), (endpoint.host_name(), endpoint.port));
    options
        .set_keep_alive(keep_alive_s(config))
        .set_clean_start(true)
        .set_outgoing_inflight_upper_limit(INFLIGHT)
        .set_max_request_batch(WINDOW)
        .set_max_packet_size(Some(1 << 20))
        .set_last_will(v5::LastWill::new(
            status_topic(config),
            "offline",
            qos5_of(config.qos),
            true,
            None,
        ));
    if let Some(user) = &config.username {
        options.set_credentials(
            user.clone(),
            config
                .password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default(),
        );
    }
    options.set_transport(transport5(config, endpoint)?);
    Ok(options)
}

fn transport(config: &MqttConfig, endpoint: &Endpoint) -> anyhow::Result<Transport> {
    Ok(if endpoint.tls {
        let tls = tls_config(config.ca_file.as_deref())?;
        Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls)))
    } else {
        Transport::Tcp
    })
}

fn transport5(config: &MqttConfig, endpoint: &Endpoint) -> anyhow::Result<v5::Transport> {
    Ok(if endpoint.tls {
        let tls = tls_config(config.ca_file.as_deref())?;
        v5::Transport::tls_with_config(v5::TlsConfiguration::Rustls(Arc::new(tls)))
    } else {
        v5::Transport::Tcp
    })
}

/// A rustls client configuration (ring) trusting `ca_file`, or the system's authorities: the
/// file named by `SSL_CERT_FILE`, else the first of the usual bundle paths that exists.
pub(crate) fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    // Once per process; a second call fails harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let path = match ca_file {
        Some(p) => p.to_path_buf(),
        None => env
            .into_iter()
            .chain(
                [
                    "/etc/ssl/certs/ca-certificates.crt",
                    "/etc/pki/tls/certs/ca-bundle.crt",
                    "/etc/ssl/ca-bundle.pem",
                    "/etc/ssl/cert.pem",
                ]
                .map(PathBuf::from),
            )
            .find(|p| p.is_file())
            .context(
                "no system certificate bundle found for mqtts://; set mqtt.ca_file or SSL_CERT_FILE",
            )?,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&path)
        .with_context(|| format!("cannot read certificates from {}", path.display()))?
    {
        let cert = cert.with_context(|| format!("bad certificate in {}", path.display()))?;
        // Bundles carry the odd certificate rustls cannot use; skip those.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        bail!("no usable certificate in {}", path.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn status_topic(config: &MqttConfig) -> String {
    format!("{}/status", config.prefix)
}

// ---------------------------------------------------------------------------------------------
// Home Assistant discovery

/// The device key of a meter: its id (lower case, `[a-z0-9_]`), else its configured name.
pub fn device_key(event: &TelegramEvent) -> String {
    let id = event
        .meter_id
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(&event.meter);
    slug(id)
}

/// Unit slugs as they end value names, with Home Assistant's spelling.
const UNITS: &[(&str, &str)] = &[
    ("kwh", "kWh"),
    ("wh", "Wh"),
    ("mwh", "MWh"),
    ("kvarh", "kvarh"),
    ("varh", "varh"),
    ("kw", "kW"),
    ("w", "W"),
    ("kvar", "kvar"),
    ("var", "var"),
    ("kva", "kVA"),
    ("va", "VA"),
    ("v", "V"),
    ("a", "A"),
    ("m3", "m³"),
    ("gj", "GJ"),
    ("mj", "MJ"),
    ("hz", "Hz"),
    ("s", "s"),
];

/// The unit of a value in Home Assistant's spelling: as sent, else from its name's suffix.
fn ha_unit(value: &NamedValue) -> Option<String> {
    let ValueData::Number { unit, .. } = &value.value else {
        return None;
    };
    match unit {
        Some(u) => {
            let key: String = u
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_lowercase();
            Some(
                UNITS
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or_else(|| u.clone(), |(_, ha)| (*ha).to_owned()),
            )
        }
        None => {
            let suffix = value.name.rsplit_once('_')?.1;
            UNITS
                .iter()
                .find(|(k, _)| *k == suffix)
                .map(|(_, ha)| (*ha).to_owned())
        }
    }
}

/// A readable entity name: `voltage_l1_v` → `Voltage L1`, `mbus1_gas_m3` → `M-Bus 1 gas`.
pub fn display_name(value: &NamedValue) -> String {
    let mut name = value.name.as_str();
    if matches!(value.value, ValueData::Number { .. })
        && let Some((stem, suffix)) = name.rsplit_once('_')
        && UNITS.iter().any(|(k, _)| *k == suffix)
    {
        name = stem;
    }
    let mut words = Vec::new();
    for word in name.split('_') {
        if let Some(n) = word
            .strip_prefix("mbus")
            .filter(|n| n.parse::<u8>().is_ok())
        {
            words.push(format!("M-Bus {n}"));
        } else if let Some(n) = word
            .strip_prefix('l')
            .filter(|n| n.len() == 1 && n.parse::<u8>().is_ok())
        {
            words.push(format!("L{n}"));
        } else if word == "id" || word == "p1" || word == "crc" {
            words.push(word.to_ascii_uppercase());
        } else {
            words.push(word.to_owned());
        }
    }
    let mut text = words.join(" ");
    if let Some(first) = text.get(..1) {
        text = first.to_ascii_uppercase() + &text[1..];
    }
    text
}

/// Home Assistant's classes of one value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Classes {
    /// `unit_of_measurement`.
    pub unit: Option<String>,
    /// `device_class`.
    pub device_class: Option<&'static str>,
    /// `state_class`.
    pub state_class: Option<&'static str>,
    /// `entity_category`.
    pub entity_category: Option<&'static str>,
}

/// The M-Bus channel of a value named `mbus<n>_…`.
fn mbus_channel(name: &str) -> Option<u8> {
    let rest = name.strip_prefix("mbus")?;
    let end = rest.find('_')?;
    rest[..end].parse().ok()
}

/// `device_class`, `state_class`, unit and category of `value`.
pub fn classes(value: &NamedValue) -> Classes {
    let diagnostic = Some("diagnostic");
    if let ValueData::Text(_) = value.value {
        return Classes {
            device_class: (value.kind == Kind::Timestamp).then_some("timestamp"),
            entity_category: match value.kind {
                Kind::Message => None,
                _ => diagnostic,
            },
            ..Classes::default()
        };
    }
    let unit = ha_unit(value);
    let by_unit = |unit: Option<&str>| match unit {
        Some("kWh" | "Wh" | "MWh" | "GJ" | "MJ") => Some("energy"),
        Some("kvarh" | "varh") => Some("reactive_energy"),
        Some("kW" | "W") => Some("power"),
        Some("kvar" | "var") => Some("reactive_power"),
        Some("kVA" | "VA") => Some("apparent_power"),
        Some("V") => Some("voltage"),
        Some("A") => Some("current"),
        Some("Hz") => Some("frequency"),
        _ => None,
    };
    let (device_class, state_class, entity_category) = match value.kind {
        Kind::Energy | Kind::ReactiveEnergy => {
            (by_unit(unit.as_deref()), Some("total_increasing"), None)
        }
        Kind::Power
        | Kind::ReactivePower
        | Kind::ApparentPower
        | Kind::Voltage
        | Kind::Current
        | Kind::Frequency => (by_unit(unit.as_deref()), Some("measurement"), None),
        Kind::PowerFactor => (Some("power_factor"), Some("measurement"), None),
        Kind::Threshold => (by_unit(unit.as_deref()), None, diagnostic),
        Kind::Count => (None, Some("total_increasing"), diagnostic),
        Kind::MbusReading => {
            let name = &value.name;
            let class = match unit.as_deref() {
                Some("m³") if name.contains("_gas_") => Some("gas"),
                Some("m³") if name.contains("water") => Some("water"),
                Some("m³") => Some("volume"),
                other => by_unit(other),
            };
            (class, Some("total_increasing"), None)
        }
        Kind::Tariff => (None, None, None),
        _ => (None, None, diagnostic),
    };
    // Home Assistant rejects a unit its device class does not know; keep unknown units as
    // plain units without a class.
    Classes {
        unit,
        device_class,
        state_class,
        entity_category,
    }
}

/// The discovery topic of one value.
pub fn discovery_topic(config: &MqttConfig, key: &str, value: &NamedValue) -> String {
    format!(
        "{}/sensor/smarty_{key}/{}/config",
        config.discovery_prefix,
        slug(&value.name)
    )
}

/// The `device` block of a meter (or of the M-Bus device on `channel`).
fn device(event: &TelegramEvent, key: &str, channel: Option<u8>) -> Json {
    let main_id = format!("smarty_{key}");
    let mut device = Map::new();
    match channel {
        None => {
            device.insert("identifiers".into(), json!([main_id]));
            device.insert("name".into(), json!(format!("Smarty {}", event.meter)));
            if let Some(id) = &event.meter_id {
                if id.starts_with("SAG") {
                    device.insert("manufacturer".into(), json!("Sagemcom"));
                }
                device.insert("serial_number".into(), json!(id));
            }
            if let Some(model) = event.json.get("header").and_then(Json::as_str) {
                device.insert("model".into(), json!(model));
            }
            if let Some(version) = event.json.get("version").filter(|v| !v.is_null()) {
                let version = version
                    .as_str()
                    .map_or_else(|| version.to_string(), str::to_owned);
                device.insert("sw_version".into(), json!(version));
            }
        }
        Some(n) => {
            device.insert("identifiers".into(), json!([format!("{main_id}_mbus{n}")]));
            device.insert(
                "name".into(),
                json!(format!("Smarty {} M-Bus {n}", event.meter)),
            );
            device.insert("via_device".into(), json!(main_id));
            let prefix = format!("mbus{n}_");
            if let Some(ValueData::Text(id)) = event
                .values
                .iter()
                .find(|v| v.name == format!("{prefix}equipment_id"))
                .map(|v| &v.value)
            {
                device.insert("serial_number".into(), json!(id));
            }
            if let Some(reading) = event
                .values
                .iter()
                .find(|v| v.kind == Kind::MbusReading && v.name.starts_with(&prefix))
            {
                let medium = reading.name[prefix.len()..]
                    .rsplit_once('_')
                    .map_or(reading.name.as_str(), |(m, _)| m);
                device.insert("model".into(), json!(format!("M-Bus {medium} meter")));
            }
        }
    }
    Json::Object(device)
}

/// The discovery message of one value of `event`.
pub fn discovery_message(
    config: &MqttConfig,
    event: &TelegramEvent,
    value: &NamedValue,
) -> Message {
    let key = device_key(event);
    let classes = classes(value);
    let channel = mbus_channel(&value.name);
    let mut c = Map::new();
    c.insert("name".into(), json!(display_name(value)));
    c.insert(
        "unique_id".into(),
        json!(format!("smarty_{key}_{}", slug(&value.name))),
    );
    c.insert(
        "state_topic".into(),
        json!(value_topic(config, &event.meter, &value.name)),
    );
    if let Some(unit) = &classes.unit {
        c.insert("unit_of_measurement".into(), json!(unit));
    }
    if let Some(class) = classes.device_class {
        c.insert("device_class".into(), json!(class));
    }
    if let Some(class) = classes.state_class {
        c.insert("state_class".into(), json!(class));
    }
    if let Some(category) = classes.entity_category {
        c.insert("entity_category".into(), json!(category));
    }
    c.insert(
        "availability".into(),
        json!([
            {"topic": status_topic(config)},
            {"topic": availability_topic(config, &event.meter)},
        ]),
    );
    c.insert("availability_mode".into(), json!("all"));
    c.insert("device".into(), device(event, &key, channel));
    c.insert(
        "origin".into(),
        json!({
            "name": "smarty",
            "sw_version": env!("CARGO_PKG_VERSION"),
        }),
    );
    Message {
        topic: discovery_topic(config, &key, value),
        payload: serde_json::to_vec(&Json::Object(c)).expect("JSON serialises"),
        qos: config.qos,
        retain: true,
    }
}

fn value_topic(config: &MqttConfig, meter: &str, name: &str) -> String {
    format!("{}/{meter}/{name}", config.prefix)
}

fn availability_topic(config: &MqttConfig, meter: &str) -> String {
    format!("{}/{meter}/availability", config.prefix)
}

/// The data messages of one telegram, in publishing order: state, values, raw.
pub fn telegram_messages(config: &MqttConfig, event: &TelegramEvent) -> Vec<Message> {
    let retain = config.retain_state;
    let mut out = Vec::with_capacity(event.values.len() + 2);
    out.push(Message {
        topic: format!("{}/{}/state", config.prefix, event.meter),
        payload: serde_json::to_vec(&event.json).expect("JSON serialises"),
        qos: config.qos,
        retain,
    });
    for value in &event.values {
        let payload = match &value.value {
            ValueData::Number { text, .. } => text.clone(),
            ValueData::Text(text) => text.clone(),
        };
        out.push(Message {
            topic: value_topic(config, &event.meter, &value.name),
            payload: payload.into_bytes(),
            qos: config.qos,
            retain,
        });
    }
    if config.publish_raw {
        out.push(raw_message(config, &event.meter, &event.frame));
    }
    out
}

/// The `<prefix>/<meter>/raw` message of a frame: upper-case hex.
pub fn raw_message(config: &MqttConfig, meter: &str, frame: &[u8]) -> Message {
    let mut hex = String::with_capacity(frame.len() * 2);
    for b in frame {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02X}");
    }
    Message {
        topic: format!("{}/{meter}/raw", config.prefix),
        payload: hex.into_bytes(),
        qos: config.qos,
        retain: false,
    }
}

fn status_json(status: &MeterStatus) -> Json {
    let rejected: Map<String, Json> = status
        .stats
        .rejections()
        .map(|(reason, n)| (reason.as_str().to_owned(), json!(n)))
        .collect();
    json!({
        "connected": status.connected,
        "source": status.source,
        "last_telegram": status.last_telegram.map(system_time_rfc3339),
        "frames": status.stats.frames,
        "telegrams": status.stats.telegrams,
        "rejected": rejected,
        "reconnects": status.reconnects,
        "last_error": status.last_error,
    })
}

fn system_time_rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t).map_or_else(|_| String::new(), |t| t.to_string())
}

// ---------------------------------------------------------------------------------------------
// The connection

/// What the event-loop task tells the output.
enum Notice {
    Event(Note),
    /// The connection failed or dropped; the output answers once it stopped handing messages
    /// to rumqttc, so that nothing stale is left in rumqttc's channel on reconnect.
    Down(String, oneshot::Sender<()>),
}

/// The events of rumqttc's event loop (either protocol) the output cares about.
enum Note {
    ConnAck,
    /// An incoming message (only Home Assistant's status is subscribed to).
    Publish {
        topic: String,
        payload: Vec<u8>,
    },
    Disconnect,
    Other,
}

impl From<MqttEvent> for Note {
    fn from(event: MqttEvent) -> Note {
        match event {
            MqttEvent::Incoming(Incoming::ConnAck(_)) => Note::ConnAck,
            MqttEvent::Incoming(Incoming::Publish(p)) => Note::Publish {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload.to_vec(),
            },
            MqttEvent::Outgoing(Outgoing::Disconnect) => Note::Disconnect,
            _ => Note::Other,
        }
    }
}

impl From<v5::Event> for Note {
    fn from(event: v5::Event) -> Note {
        match event {
            v5::Event::Incoming(v5::Packet::ConnAck(_)) => Note::ConnAck,
            v5::Event::Incoming(v5::Packet::Publish(p)) => Note::Publish {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload.to_vec(),
            },
            v5::Event::Outgoing(v5::Outgoing::Disconnect) => Note::Disconnect,
            _ => Note::Other,
        }
    }
}

/// What became of one message handed to rumqttc.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The broker is done with it (QoS 1: PUBACK; QoS 2: PUBCOMP, or a PUBREC refusing it
    /// for good) or, at QoS 0, it was written to the connection.
    Delivered,
    /// The connection went before that: send it again.
    Lost(String),
    /// The broker will never take it (an MQTT 5 broker without retained messages): give up.
    Refused(String),
}

impl From<Result<rumqttc::PublishResult, rumqttc::PublishNoticeError>> for Outcome {
    fn from(result: Result<rumqttc::PublishResult, rumqttc::PublishNoticeError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Delivered,
            Err(e) => Outcome::Lost(e.to_string()),
        }
    }
}

impl From<Result<v5::PublishResult, v5::PublishNoticeError>> for Outcome {
    fn from(result: Result<v5::PublishResult, v5::PublishNoticeError>) -> Outcome {
        use v5::PublishNoticeError as E;
        match result {
            Ok(_) => Outcome::Delivered,
            Err(
                e @ (E::RetainNotSupported | E::V5PubAck(_) | E::V5PubRec(_) | E::V5PubComp(_)),
            ) => Outcome::Refused(e.to_string()),
            Err(e) => Outcome::Lost(e.to_string()),
        }
    }
}

/// The outcome of a message handed to rumqttc, once it is known.
type Delivery = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Why rumqttc did not take a message.
enum NotTaken {
    /// Its request channel is full: try again once it took some.
    Full,
    /// The message itself is unusable (a topic MQTT forbids).
    Invalid(String),
}

/// rumqttc's client, MQTT 3.1.1 or 5.
enum Client {
    V4(AsyncClient),
    V5(v5::AsyncClient),
}

impl Client {
    /// Hands a publish to rumqttc without waiting; returns what becomes of it.
    fn try_publish(&self, message: &Message) -> Result<Delivery, NotTaken> {
        let topic = message.topic.clone();
        let payload = message.payload.clone();
        match self {
            Client::V4(c) => {
                let options = PublishOptions::new(qos_of(message.qos)).retain(message.retain);
                match c.try_publish_tracked(topic, payload, options) {
                    Ok(notice) => Ok(Box::pin(async move { notice.wait_async().await.into() })),
                    Err(rumqttc::ClientError::RequestChannelFull(_)) => Err(NotTaken::Full),
                    Err(e) => Err(NotTaken::Invalid(e.to_string())),
                }
            }
            Client::V5(c) => {
                let options = v5::PublishOptions::new(qos5_of(message.qos)).retain(message.retain);
                match c.try_publish_tracked(topic, payload, options) {
                    Ok(notice) => Ok(Box::pin(async move { notice.wait_async().await.into() })),
                    Err(v5::ClientError::RequestChannelFull(_)) => Err(NotTaken::Full),
                    Err(e) => Err(NotTaken::Invalid(e.to_string())),
                }
            }
        }
    }

    fn try_subscribe(&self, topic: String) {
        let _ = match self {
            Client::V4(c) => c.try_subscribe(topic, QoS::AtLeastOnce).is_ok(),
            Client::V5(c) => c.try_subscribe(topic, v5::QoS::AtLeastOnce).is_ok(),
        };
    }

    fn try_disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.try_disconnect().is_ok(),
            Client::V5(c) => c.try_disconnect().is_ok(),
        };
    }
}

/// rumqttc's event loop, MQTT 3.1.1 or 5.
enum Loop {
    V4(Box<EventLoop>),
    V5(Box<v5::EventLoop>),
}

impl Loop {
    /// The next event, or the error and whether the client is gone.
    async fn poll(&mut self) -> Result<Note, (String, bool)> {
        match self {
            Loop::V4(l) => l.poll().await.map(Note::from).map_err(|e| {
                let done = matches!(e, ConnectionError::RequestsDone);
                (e.to_string(), done)
            }),
            Loop::V5(l) => l.poll().await.map(Note::from).map_err(|e| {
                let done = matches!(e, v5::ConnectionError::RequestsDone);
                (e.to_string(), done)
            }),
        }
    }

    /// Gives up every request rumqttc still holds from before the connection dropped (the
    /// output sends them again from its queue, in order): its copies of unacknowledged
    /// messages and what was handed to it since fail with "session reset".
    fn discard_pending(&mut self) {
        match self {
            Loop::V4(l) => {
                l.clean();
                l.drain_pending_as_failed(rumqttc::NoticeFailureReason::SessionReset);
            }
            Loop::V5(l) => {
                l.clean();
                l.drain_pending_as_failed(v5::NoticeFailureReason::SessionReset);
            }
        }
    }
}

/// rumqttc's client and event loop for `config`.
fn connect(config: &MqttConfig, endpoint: &Endpoint) -> anyhow::Result<(Client, Loop)> {
    Ok(match config.protocol {
        Protocol::V4 => {
            let (client, eventloop) = AsyncClient::builder(mqtt_options(config, endpoint)?)
                .capacity(CHANNEL)
                .try_build()?;
            (Client::V4(client), Loop::V4(Box::new(eventloop)))
        }
        Protocol::V5 => {
            let (client, eventloop) = v5::AsyncClient::builder(mqtt5_options(config, endpoint)?)
                .capacity(CHANNEL)
                .try_build()?;
            (Client::V5(client), Loop::V5(Box::new(eventloop)))
        }
    })
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Drives rumqttc's event loop: forwards its events, and after each failure waits for the
/// output's go-ahead, gives up rumqttc's copies of unacknowledged messages (the output
/// resends from its queue) and reconnects after a back-off.
async fn drive(mut eventloop: Loop, notices: mpsc::Sender<Notice>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        match eventloop.poll().await {
            Ok(note) => {
                if matches!(note, Note::ConnAck) {
                    backoff = BACKOFF_MIN;
                }
                if notices.send(Notice::Event(note)).await.is_err() {
                    return;
                }
            }
            Err((error, done)) => {
                let (tx, rx) = oneshot::channel();
                if notices.send(Notice::Down(error, tx)).await.is_err() {
                    return;
                }
                let _ = rx.await;
                eventloop.discard_pending();
                if done {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// What we know of one meter.
#[derive(Default)]
struct MeterState {
    /// The last telegram, to re-announce discovery.
    last: Option<Arc<TelegramEvent>>,
    /// The device key discovery was announced under.
    key: String,
    /// Values announced under `key`.
    announced: HashSet<String>,
    /// The availability last published.
    available: Option<bool>,
}

/// The MQTT output task's state.
struct Output {
    /// Where the queue's state is reported (the metrics' `smarty_mqtt_queue_depth` and
    /// `/healthz`).
    report: Option<Arc<QueueReport>>,
    /// Where the broker connection's state is reported (`/healthz`).
    health: Option<OutputHealth>,
    config: MqttConfig,
    client: Client,
    queue: Queue,
    meters: HashMap<Arc<str>, MeterState>,
    ha_status_topic: String,
    connected: bool,
    /// A failure to connect was logged since the last state change.
    failure_logged: bool,
    /// Messages handed to rumqttc whose outcome is not known yet: their queue sequence
    /// numbers (`None` for the gateway's own `online`/`offline`) and outcomes.
    in_flight: JoinSet<(Option<u64>, Outcome)>,
    /// The queue sequence numbers in `in_flight`.
    in_flight_seqs: HashSet<u64>,
    /// The next queue sequence number to hand to rumqttc.
    next: u64,
    dropped_logged: u64,
    url: String,
}

/// The state of the MQTT output's queue, for `/metrics` and `/healthz`.
#[derive(Debug, Default)]
pub struct QueueReport {
    /// Messages waiting (`smarty_mqtt_queue_depth`).
    pub depth: std::sync::atomic::AtomicI64,
    /// Why the queue's file cannot be written (`None` while it can, or without one).
    not_persisting: std::sync::Mutex<Option<String>>,
}

impl QueueReport {
    /// Why the queue's file cannot be written, while it cannot: the messages queued since are
    /// in memory only (writing is retried). `None` when all is well, or without a file.
    pub fn not_persisting(&self) -> Option<String> {
        self.not_persisting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, depth: usize, not_persisting: Option<&str>) {
        self.depth.store(
            i64::try_from(depth).unwrap_or(i64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut current = self
            .not_persisting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.as_deref() != not_persisting {
            *current = not_persisting.map(str::to_owned);
        }
    }
}

/// Runs the MQTT output until `events` closes (then publishes `offline` and disconnects).
///
/// Fails only on bad settings; broker outages are waited out, and a queue directory that
/// cannot be written is retried (the queue carries on in memory meanwhile).
///
/// # Errors
/// Bad settings (see [`MqttConfig::check`]), or rumqttc's event loop stopping.
pub async fn run(config: MqttConfig, events: mpsc::Receiver<Event>) -> anyhow::Result<()> {
    run_reporting(config, events, None, None).await
}

/// [`run`], storing the queue's state into `report` every second.
///
/// # Errors
/// As [`run`].
pub async fn run_reporting(
    config: MqttConfig,
    events: mpsc::Receiver<Event>,
    report: Option<Arc<QueueReport>>,
    health: Option<OutputHealth>,
) -> anyhow::Result<()> {
    let endpoint = config.check()?;
    let queue = match &config.queue_dir {
        Some(dir) => Queue::open(dir, config.queue_max),
        None => Queue::in_memory(config.queue_max),
    };
    if !queue.is_empty() {
        tracing::info!(
            messages = queue.len(),
            "MQTT: {} messages queued by a previous run will be sent",
            queue.len()
        );
    }
    let (client, eventloop) = connect(&config, &endpoint)?;
    let (notice_tx, notice_rx) = mpsc::channel(256);
    let _driver = AbortOnDrop(tokio::spawn(drive(eventloop, notice_tx)));
    let mut output = Output {
        report,
        health,
        ha_status_topic: format!("{}/status", config.discovery_prefix),
        url: format!(
            "{}://{}:{}",
            if endpoint.tls { "mqtts" } else { "mqtt" },
            endpoint.host,
            endpoint.port
        ),
        next: queue.first_seq(),
        config,
        client,
        queue,
        meters: HashMap::new(),
        connected: false,
        failure_logged: false,
        in_flight: JoinSet::new(),
        in_flight_seqs: HashSet::new(),
        dropped_logged: 0,
    };
    tracing::info!(url = %output.url, client_id = %output.config.client_id(), "MQTT output starting");
    output.report();
    output.run(events, notice_rx).await
}

/// Spawns [`run`] on the current runtime.
pub fn spawn(config: MqttConfig, events: mpsc::Receiver<Event>) -> JoinHandle<anyhow::Result<()>> {
    tokio::spawn(run(config, events))
}

impl Output {
    async fn run(
        &mut self,
        mut events: mpsc::Receiver<Event>,
        mut notices: mpsc::Receiver<Notice>,
    ) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // A lossless channel (service::bus): the meters wait while it is full.
                event = events.recv() => match event {
                    Some(event) => self.event(event),
                    None => break,
                },
                notice = notices.recv() => match notice {
                    Some(notice) => self.notice(notice),
                    None => bail!("the MQTT event loop stopped"),
                },
                Some(done) = self.in_flight.join_next() => self.delivered(done),
                _ = tick.tick() => {
                    self.report_drops();
                    self.report();
                }
            }
            self.queue.flush();
            self.pump();
        }
        self.shutdown(&mut notices).await;
        Ok(())
    }

    /// Takes one event of the service.
    fn event(&mut self, event: Event) {
        match event {
            Event::Telegram(t) => self.telegram(&t),
            Event::Status(s) => self.status(&s),
            Event::RawFrame { meter, frame } => self.raw_frame(&meter, &frame),
        }
    }

    /// Stores the queue's state where `/metrics` and `/healthz` read it.
    fn report(&self) {
        if let Some(report) = &self.report {
            report.set(self.queue.len(), self.queue.write_error());
        }
    }

    /// Sends what is queued (for a few seconds at most), `offline`, and disconnects.
    async fn shutdown(&mut self, notices: &mut mpsc::Receiver<Notice>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while self.connected && !self.queue.is_empty() {
            tokio::select! {
                notice = tokio::time::timeout_at(deadline, notices.recv()) => match notice {
                    Ok(Some(notice)) => self.notice(notice),
                    _ => break,
                },
                Some(done) = self.in_flight.join_next() => self.delivered(done),
            }
            self.queue.flush();
            self.pump();
        }
        if self.connected {
            self.direct(&status_topic(&self.config), "offline");
            // Wait for the acknowledgements: a broker drops a QoS 2 message whose PUBREL did
            // not come before the DISCONNECT.
            while self.connected && !self.in_flight.is_empty() {
                tokio::select! {
                    notice = tokio::time::timeout_at(deadline, notices.recv()) => match notice {
                        Ok(Some(notice)) => self.notice(notice),
                        _ => break,
                    },
                    Some(done) = self.in_flight.join_next() => self.delivered(done),
                }
            }
            self.client.try_disconnect();
            while let Ok(Some(notice)) = tokio::time::timeout_at(deadline, notices.recv()).await {
                let disconnected =
                    matches!(notice, Notice::Event(Note::Disconnect) | Notice::Down(..));
                self.notice(notice);
                if disconnected {
                    break;
                }
            }
        }
        self.queue.flush();
        self.report();
        if self.queue.is_empty() {
            return;
        }
        let waiting = self.queue.len();
        if self.config.queue_dir.is_none() {
            tracing::warn!(
                messages = waiting,
                "MQTT: {waiting} messages not delivered (no mqtt.queue_dir: they are lost)"
            );
            return;
        }
        let kept = self.queue.persisted_len();
        if kept == waiting {
            tracing::info!(
                messages = waiting,
                "MQTT: {waiting} messages not delivered, kept for the next run"
            );
        } else {
            tracing::error!(
                messages = waiting,
                kept,
                lost = waiting - kept,
                "MQTT: {waiting} messages not delivered: {kept} kept for the next run, {} lost \
                 because the queue directory cannot be written ({})",
                waiting - kept,
                self.queue.write_error().unwrap_or("unknown error")
            );
        }
    }

    fn push(&mut self, message: Message) {
        self.queue.push(message);
    }

    fn telegram(&mut self, event: &Arc<TelegramEvent>) {
        let meter = self.meters.entry(Arc::clone(&event.meter)).or_default();
        meter.last = Some(Arc::clone(event));
        let mut messages = Vec::new();
        if meter.available != Some(true) {
            meter.available = Some(true);
            messages.push(Message {
                topic: availability_topic(&self.config, &event.meter),
                payload: b"online".to_vec(),
                qos: self.config.qos,
                retain: true,
            });
        }
        if self.config.discovery {
            let key = device_key(event);
            if meter.key != key {
                meter.key = key;
                meter.announced.clear();
            }
            for value in &event.values {
                if !meter.announced.contains(&value.name) {
                    meter.announced.insert(value.name.clone());
                    messages.push(discovery_message(&self.config, event, value));
                }
            }
        }
        messages.extend(telegram_messages(&self.config, event));
        for message in messages {
            self.push(message);
        }
    }

    /// A frame its meter could not decrypt (no key): forwarded on the raw topic when
    /// `publish_raw` is on, for a `smarty` that has the key.
    fn raw_frame(&mut self, meter: &str, frame: &[u8]) {
        if self.config.publish_raw {
            self.push(raw_message(&self.config, meter, frame));
        }
    }

    fn status(&mut self, status: &MeterStatus) {
        let meter = self.meters.entry(Arc::clone(&status.meter)).or_default();
        let mut messages = Vec::new();
        if meter.available != Some(status.connected) {
            meter.available = Some(status.connected);
            messages.push(Message {
                topic: availability_topic(&self.config, &status.meter),
                payload: if status.connected {
                    "online"
                } else {
                    "offline"
                }
                .into(),
                qos: self.config.qos,
                retain: true,
            });
        }
        messages.push(Message {
            topic: format!("{}/{}/status", self.config.prefix, status.meter),
            payload: serde_json::to_vec(&status_json(status)).expect("JSON serialises"),
            qos: self.config.qos,
            retain: true,
        });
        for message in messages {
            self.push(message);
        }
    }

    /// Home Assistant (re)started: announce everything again.
    fn rediscover(&mut self) {
        if !self.config.discovery {
            return;
        }
        let mut messages = Vec::new();
        for meter in self.meters.values_mut() {
            let Some(last) = &meter.last else { continue };
            meter.key = device_key(last);
            meter.announced.clear();
            for value in &last.values {
                meter.announced.insert(value.name.clone());
                messages.push(discovery_message(&self.config, last, value));
            }
        }
        tracing::info!(
            entities = messages.len(),
            "Home Assistant came online: discovery sent again"
        );
        for message in messages {
            self.push(message);
        }
    }

    fn notice(&mut self, notice: Notice) {
        match notice {
            Notice::Event(event) => self.mqtt_event(event),
            Notice::Down(error, ack) => {
                if self.connected {
                    tracing::warn!(
                        url = %self.url,
                        queued = self.queue.len(),
                        "MQTT connection lost ({error}); queueing and reconnecting"
                    );
                    self.failure_logged = true;
                } else if !self.failure_logged {
                    tracing::warn!(
                        url = %self.url,
                        "cannot connect to the MQTT broker ({error}); queueing and retrying"
                    );
                    self.failure_logged = true;
                } else {
                    tracing::debug!(url = %self.url, "MQTT connect failed again: {error}");
                }
                self.connected = false;
                if let Some(health) = &self.health {
                    health.failing(format!(
                        "MQTT broker {} unreachable ({error}); messages are queued",
                        self.url
                    ));
                }
                self.forget_in_flight();
                let _ = ack.send(());
            }
        }
    }

    /// Forgets what was handed to rumqttc: after a reconnect everything not acknowledged is
    /// sent again from the queue, in order.
    fn forget_in_flight(&mut self) {
        self.in_flight.abort_all();
        self.in_flight = JoinSet::new();
        self.in_flight_seqs.clear();
        self.next = self.queue.first_seq();
    }

    fn mqtt_event(&mut self, note: Note) {
        match note {
            Note::ConnAck => {
                tracing::info!(
                    url = %self.url,
                    queued = self.queue.len(),
                    "connected to the MQTT broker"
                );
                self.connected = true;
                if let Some(health) = &self.health {
                    health.ok();
                }
                self.failure_logged = false;
                self.forget_in_flight();
                self.direct(&status_topic(&self.config), "online");
                // A broker without persistence forgot the retained availability.
                let availability: Vec<(String, &str)> = self
                    .meters
                    .iter()
                    .filter_map(|(name, meter)| {
                        let payload = if meter.available? {
                            "online"
                        } else {
                            "offline"
                        };
                        Some((availability_topic(&self.config, name), payload))
                    })
                    .collect();
                for (topic, payload) in availability {
                    self.direct(&topic, payload);
                }
                if self.config.discovery {
                    self.client.try_subscribe(self.ha_status_topic.clone());
                }
            }
            Note::Publish { topic, payload }
                if topic == self.ha_status_topic && payload.trim_ascii() == b"online" =>
            {
                self.rediscover();
            }
            _ => {}
        }
    }

    /// The outcome of a message handed to rumqttc.
    fn delivered(&mut self, done: Result<(Option<u64>, Outcome), tokio::task::JoinError>) {
        // A task only fails when aborted, and aborted tasks were forgotten already.
        let Ok((seq, outcome)) = done else { return };
        let Some(seq) = seq else { return };
        if !self.in_flight_seqs.remove(&seq) {
            return;
        }
        match outcome {
            Outcome::Delivered => self.queue.ack(seq),
            Outcome::Refused(why) => {
                tracing::warn!(
                    topic = self.queue.get(seq).map(|(m, _)| m.topic.as_str()),
                    "the MQTT broker refused a message ({why}); dropped"
                );
                self.queue.ack(seq);
            }
            Outcome::Lost(why) => {
                // Sent again, in order, once rumqttc takes messages again.
                tracing::debug!("MQTT message {seq} not delivered ({why}); sending it again");
                self.next = self.next.min(seq);
            }
        }
    }

    /// Publishes outside the queue (the gateway's own `online`/`offline`).
    fn direct(&mut self, topic: &str, payload: &str) {
        let message = Message {
            topic: topic.to_owned(),
            payload: payload.as_bytes().to_vec(),
            qos: self.config.qos,
            retain: true,
        };
        if let Ok(delivery) = self.client.try_publish(&message) {
            self.in_flight.spawn(async move { (None, delivery.await) });
        }
    }

    /// Hands queued messages to rumqttc, in order, up to the window.
    fn pump(&mut self) {
        if !self.connected {
            return;
        }
        let mut seq = self.next.max(self.queue.first_seq());
        while self.in_flight.len() < WINDOW && seq < self.queue.end_seq() {
            let Some((message, done)) = self.queue.get(seq) else {
                break;
            };
            if done || self.in_flight_seqs.contains(&seq) {
                seq += 1;
                continue;
            }
            match self.client.try_publish(message) {
                Ok(delivery) => {
                    self.in_flight
                        .spawn(async move { (Some(seq), delivery.await) });
                    self.in_flight_seqs.insert(seq);
                }
                // Go on when rumqttc took some.
                Err(NotTaken::Full) => break,
                Err(NotTaken::Invalid(why)) => {
                    tracing::error!(
                        topic = %message.topic,
                        "an MQTT message rumqttc refuses ({why}); dropped"
                    );
                    self.queue.ack(seq);
                }
            }
            seq += 1;
        }
        self.next = seq;
    }

    fn report_drops(&mut self) {
        let dropped = self.queue.dropped();
        if dropped > self.dropped_logged {
            tracing::warn!(
                dropped = dropped - self.dropped_logged,
                total = dropped,
                "MQTT queue full (mqtt.queue_max = {}): oldest messages dropped",
                self.config.queue_max
            );
            self.dropped_logged = dropped;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    use smarty_p1::{Aad, Decoder, DecoderConfig, Key, encrypt_frame};

    const CORPUS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../smarty-p1/tests/data/telegrams/meterlogger_lux5_253663629_d_2026.txt"
    );
    const KEY: &str = "000102030405060708090A0B0C0D0E0F";

    /// The corpus telegram in an encrypted frame with frame counter `fc`, decoded.
    fn telegram_event(fc: u32) -> Arc<TelegramEvent> {
        let text =
            std::fs::read(CORPUS).unwrap_or_else(|e| panic!("test data missing: {CORPUS}: {e}"));
        let key: Key = KEY.parse().unwrap();
        let frame = encrypt_frame(
            &key,
            &Aad::default(),
            *b"SAG\x10\x30\x70\x01\x27",
            fc,
            &text,
        );
        let mut decoder = Decoder::new(DecoderConfig::new(key));
        decoder.push(&frame);
        let decoded = match decoder.next() {
            Some(d) => d.unwrap(),
            None => decoder.finish().unwrap().unwrap(),
        };
        assert_eq!(decoded.frame.unwrap().frame_counter, fc);
        Arc::new(TelegramEvent::new(&Arc::from("home"), &decoded))
    }

    fn meter_status(connected: bool) -> Arc<MeterStatus> {
        Arc::new(MeterStatus {
            meter: Arc::from("home"),
            source: "/dev/ttyUSB0".into(),
            connected,
            last_telegram: Some(SystemTime::now()),
            stats: Default::default(),
            reconnects: 0,
            last_error: None,
        })
    }

    /// A Mosquitto on a loopback port, stopped on drop.
    struct Broker {
        dir: tempfile::TempDir,
        port: u16,
        child: Option<Child>,
    }

    impl Broker {
        /// `persistent`: keep sessions across restarts (SIGTERM saves them).
        fn start(persistent: bool) -> Broker {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let dir = tempfile::tempdir().unwrap();
            // Mosquitto drops to its own user when started as root.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
            let mut conf = format!("listener {port} 127.0.0.1\nallow_anonymous true\n");
            if persistent {
                conf += &format!(
                    "persistence true\npersistence_location {}/\nautosave_interval 0\n",
                    dir.path().display()
                );
            } else {
                conf += "persistence false\n";
            }
            let path = dir.path().join("mosquitto.conf");
            std::fs::write(&path, conf).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let mut broker = Broker {
                dir,
                port,
                child: None,
            };
            broker.restart();
            broker
        }

        fn restart(&mut self) {
            assert!(self.child.is_none());
            let child = Command::new("/usr/sbin/mosquitto")
                .arg("-c")
                .arg(self.dir.path().join("mosquitto.conf"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mosquitto runs");
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                assert!(Instant::now() < deadline, "mosquitto did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        /// SIGTERM (so a persistent broker saves its sessions), then wait.
        fn stop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(child.id().to_string())
                    .status();
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    if child.try_wait().unwrap().is_some() {
                        break;
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }

        fn url(&self) -> String {
            format!("mqtt://127.0.0.1:{}", self.port)
        }
    }

    impl Drop for Broker {
        fn drop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    #[derive(Debug, Clone)]
    struct Received {
        topic: String,
        payload: String,
        retain: bool,
    }

    /// A subscriber on `filters`, forwarding everything it receives.
    struct Subscriber {
        rx: mpsc::UnboundedReceiver<Received>,
        _task: AbortOnDrop,
    }

    impl Subscriber {
        async fn start(broker: &Broker, id: &str, persistent: bool, filters: &[&str]) -> Self {
            let mut options = MqttOptions::new(id, ("127.0.0.1", broker.port));
            options.set_clean_session(!persistent);
            options.set_keep_alive(5);
            let (client, mut eventloop) = AsyncClient::builder(options).capacity(100).build();
            let (tx, rx) = mpsc::unbounded_channel();
            let (ready_tx, ready_rx) = oneshot::channel();
            let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
            let task = tokio::spawn(async move {
                let mut ready = Some(ready_tx);
                loop {
                    match eventloop.poll().await {
                        Ok(MqttEvent::Incoming(Incoming::ConnAck(_))) => {
                            for f in &filters {
                                client.subscribe(f.clone(), QoS::AtLeastOnce).await.unwrap();
                            }
                        }
                        Ok(MqttEvent::Incoming(Incoming::SubAck(_))) => {
                            if let Some(r) = ready.take() {
                                let _ = r.send(());
                            }
                        }
                        Ok(MqttEvent::Incoming(Incoming::Publish(p))) => {
                            let _ = tx.send(Received {
                                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                                payload: String::from_utf8_lossy(&p.payload).into_owned(),
                                retain: p.retain,
                            });
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            });
            tokio::time::timeout(Duration::from_secs(10), ready_rx)
                .await
                .expect("subscribed")
                .unwrap();
            Subscriber {
                rx,
                _task: AbortOnDrop(task),
            }
        }

        /// Collects until `done` holds for what was collected (or panics after `secs`).
        async fn until(
            &mut self,
            secs: u64,
            mut done: impl FnMut(&[Received]) -> bool,
        ) -> Vec<Received> {
            let mut got = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
            while !done(&got) {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(r)) => got.push(r),
                    _ => panic!(
                        "timed out; got {:?}",
                        got.iter().map(|r| &r.topic).collect::<Vec<_>>()
                    ),
                }
            }
            got
        }
    }

    fn config(broker: &Broker) -> MqttConfig {
        MqttConfig {
            url: broker.url(),
            client_id: Some("smarty-test".into()),
            ..MqttConfig::default()
        }
    }

    fn discovery(got: &[Received]) -> HashMap<String, Json> {
        got.iter()
            .filter(|r| r.topic.starts_with("homeassistant/sensor/"))
            .map(|r| (r.topic.clone(), serde_json::from_str(&r.payload).unwrap()))
            .collect()
    }

    #[test]
    fn urls_and_settings_are_checked() {
        let ep = parse_url("mqtt://broker.lan").unwrap();
        assert_eq!(
            (ep.tls, ep.host.as_str(), ep.port),
            (false, "broker.lan", 1883)
        );
        let ep = parse_url("mqtts://broker.lan:9000/").unwrap();
        assert_eq!(
            (ep.tls, ep.host.as_str(), ep.port),
            (true, "broker.lan", 9000)
        );
        assert_eq!(parse_url("mqtts://[::1]").unwrap().host, "[::1]");
        assert_eq!(parse_url("mqtts://[::1]").unwrap().port, 8883);
        for bad in [
            "broker:1883",
            "http://x",
            "mqtt://u:p@x",
            "mqtt://x:0",
            "mqtt://x:99999",
            "mqtt://",
            "mqtt://x/topic",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let v5 = MqttConfig {
            protocol: Protocol::V5,
            ..MqttConfig::default()
        };
        assert!(v5.check().is_ok());
        let qos = MqttConfig {
            qos: 3,
            ..MqttConfig::default()
        };
        assert!(qos.check().is_err());
        let prefix = MqttConfig {
            prefix: "a/#".into(),
            ..MqttConfig::default()
        };
        assert!(prefix.check().is_err());
        let c: MqttConfig = toml::from_str(
            "url = \"mqtts://h\"\nusername = \"u\"\npassword = \"secret\"\nprotocol = \"v4\"\nqos = 2",
        )
        .unwrap();
        assert_eq!(c.qos, 2);
        assert_eq!(c.prefix, "smarty");
        assert!(!format!("{c:?}").contains("secret"));
        assert!(toml::from_str::<MqttConfig>("nope = 1").is_err());
        assert!(MqttConfig::default().client_id().starts_with("smarty-"));
    }

    #[test]
    fn tls_config_loads_the_system_roots() {
        if Path::new("/etc/ssl/certs/ca-certificates.crt").is_file() {
            tls_config(None).unwrap();
        }
        assert!(tls_config(Some(Path::new("/nonexistent.pem"))).is_err());
    }

    #[test]
    fn classes_suit_home_assistant() {
        let event = telegram_event(1);
        let c = |name: &str| classes(event.value(name).unwrap_or_else(|| panic!("{name}")));
        let check = |name: &str, unit: Option<&str>, dc: Option<&str>, sc: Option<&str>| {
            let got = c(name);
            assert_eq!(
                (got.unit.as_deref(), got.device_class, got.state_class),
                (unit, dc, sc),
                "{name}"
            );
        };
        check(
            "energy_import_kwh",
            Some("kWh"),
            Some("energy"),
            Some("total_increasing"),
        );
        check(
            "energy_export_kwh",
            Some("kWh"),
            Some("energy"),
            Some("total_increasing"),
        );
        check(
            "reactive_energy_import_kvarh",
            Some("kvarh"),
            Some("reactive_energy"),
            Some("total_increasing"),
        );
        check(
            "power_import_kw",
            Some("kW"),
            Some("power"),
            Some("measurement"),
        );
        check(
            "reactive_power_export_kvar",
            Some("kvar"),
            Some("reactive_power"),
            Some("measurement"),
        );
        check(
            "voltage_l1_v",
            Some("V"),
            Some("voltage"),
            Some("measurement"),
        );
        check(
            "current_l2_a",
            Some("A"),
            Some("current"),
            Some("measurement"),
        );
        check(
            "mbus1_gas_m3",
            Some("m³"),
            Some("gas"),
            Some("total_increasing"),
        );
        check("meter_id", None, None, None);
        assert_eq!(c("meter_id").entity_category, Some("diagnostic"));
        assert_eq!(
            display_name(event.value("voltage_l1_v").unwrap()),
            "Voltage L1"
        );
        assert_eq!(
            display_name(event.value("mbus1_gas_m3").unwrap()),
            "M-Bus 1 gas"
        );
    }

    #[tokio::test]
    async fn discovery_state_values_availability_and_last_will() {
        let broker = Broker::start(false);
        let mut sub = Subscriber::start(&broker, "sub-1", false, &["#"]).await;
        let event = telegram_event(7);
        let cfg = MqttConfig {
            publish_raw: true,
            ..config(&broker)
        };

        let mut unique_ids = Vec::new();
        for _ in 0..2 {
            let (tx, rx) = mpsc::channel(16);
            let task = spawn(cfg.clone(), rx);
            tx.try_send(Event::Status(meter_status(true))).unwrap();
            tx.try_send(Event::Telegram(Arc::clone(&event))).unwrap();
            let got = sub
                .until(10, |g| g.iter().any(|r| r.topic == "smarty/home/raw"))
                .await;
            let disc = discovery(&got);
            assert_eq!(disc.len(), event.values.len(), "one config per value");
            let mut ids: Vec<String> = disc
                .values()
                .map(|c| c["unique_id"].as_str().unwrap().to_owned())
                .collect();
            ids.sort();
            unique_ids.push(ids);
            let energy =
                &disc["homeassistant/sensor/smarty_sag1030700012701/energy_import_kwh/config"];
            assert_eq!(
                energy["unique_id"],
                "smarty_sag1030700012701_energy_import_kwh"
            );
            assert_eq!(energy["state_topic"], "smarty/home/energy_import_kwh");
            assert_eq!(energy["device_class"], "energy");
            assert_eq!(energy["state_class"], "total_increasing");
            assert_eq!(energy["unit_of_measurement"], "kWh");
            assert_eq!(energy["availability_mode"], "all");
            assert_eq!(energy["availability"][0]["topic"], "smarty/status");
            assert_eq!(
                energy["availability"][1]["topic"],
                "smarty/home/availability"
            );
            assert_eq!(energy["device"]["manufacturer"], "Sagemcom");
            assert_eq!(
                energy["device"]["identifiers"][0],
                "smarty_sag1030700012701"
            );
            assert_eq!(energy["device"]["sw_version"], "42");
            assert_eq!(energy["origin"]["name"], "smarty");
            let gas = &disc["homeassistant/sensor/smarty_sag1030700012701/mbus1_gas_m3/config"];
            assert_eq!(gas["device_class"], "gas");
            assert_eq!(gas["unit_of_measurement"], "m³");
            assert_eq!(gas["device"]["via_device"], "smarty_sag1030700012701");
            let kvarh = &disc["homeassistant/sensor/smarty_sag1030700012701/reactive_energy_import_kvarh/config"];
            assert_eq!(kvarh["device_class"], "reactive_energy");
            let payload = |topic: &str| {
                got.iter()
                    .rev()
                    .find(|r| r.topic == topic)
                    .unwrap_or_else(|| panic!("{topic}"))
                    .payload
                    .clone()
            };
            assert_eq!(payload("smarty/status"), "online");
            assert_eq!(payload("smarty/home/availability"), "online");
            assert_eq!(payload("smarty/home/energy_import_kwh"), "273.764");
            assert_eq!(payload("smarty/home/voltage_l1_v"), "231.0");
            assert_eq!(payload("smarty/home/meter_id"), "SAG1030700012701");
            let state: Json = serde_json::from_str(&payload("smarty/home/state")).unwrap();
            assert_eq!(state["frame_counter"], 7);
            assert_eq!(state, event.json);
            let status: Json = serde_json::from_str(&payload("smarty/home/status")).unwrap();
            assert_eq!(status["connected"], true);
            assert!(payload("smarty/home/raw").starts_with("DB08534147"));
            // The values come after discovery, the state before the values.
            let pos = |t: &str| got.iter().position(|r| r.topic == t).unwrap();
            assert!(pos(&energy_topic()) < pos("smarty/home/state"));
            assert!(pos("smarty/home/state") < pos("smarty/home/energy_import_kwh"));

            // Killing the task drops the connection: the broker sends the last will.
            task.abort();
            let _ = task.await;
            sub.until(10, |g| {
                g.iter()
                    .any(|r| r.topic == "smarty/status" && r.payload == "offline")
            })
            .await;
        }
        assert_eq!(
            unique_ids[0], unique_ids[1],
            "unique ids stable across runs"
        );
        // Discovery, availability and status are retained: a newcomer gets them.
        let mut late = Subscriber::start(&broker, "late", false, &["#"]).await;
        let got = late
            .until(10, |g| {
                discovery(g).len() == event.values.len()
                    && g.iter().any(|r| r.topic == "smarty/home/availability")
                    && g.iter().any(|r| r.topic == "smarty/home/status")
            })
            .await;
        assert!(
            got.iter()
                .filter(|r| r.topic.starts_with("homeassistant/") || r.topic.ends_with("status"))
                .all(|r| r.retain)
        );

        // Home Assistant's birth message brings the discovery again; a clean shutdown
        // publishes offline itself.
        let (tx, rx) = mpsc::channel(16);
        let task = spawn(cfg.clone(), rx);
        tx.try_send(Event::Telegram(Arc::clone(&event))).unwrap();
        sub.until(10, |g| g.iter().any(|r| r.topic == "smarty/home/state"))
            .await;
        let (ha_client, mut ha_loop) =
            AsyncClient::builder(MqttOptions::new("ha-pub", ("127.0.0.1", broker.port)))
                .capacity(10)
                .build();
        ha_client
            .publish(
                "homeassistant/status",
                "online",
                PublishOptions::new(QoS::AtLeastOnce),
            )
            .await
            .unwrap();
        let _ha_task = AbortOnDrop(tokio::spawn(async move {
            while ha_loop.poll().await.is_ok() {}
        }));
        let got = sub
            .until(10, |g| discovery(g).len() == event.values.len())
            .await;
        assert_eq!(discovery(&got).len(), event.values.len());
        drop(tx);
        task.await.unwrap().unwrap();
        let got = sub
            .until(10, |g| g.iter().any(|r| r.topic == "smarty/status"))
            .await;
        assert_eq!(got.last().unwrap().payload, "offline");
    }

    #[tokio::test]
    async fn mqtt5_state_discovery_availability_and_last_will() {
        let broker = Broker::start(false);
        let mut sub = Subscriber::start(&broker, "sub-5", false, &["#"]).await;
        let event = telegram_event(9);
        for qos in [1, 2] {
            let cfg = MqttConfig {
                protocol: Protocol::V5,
                qos,
                ..config(&broker)
            };
            let (tx, rx) = mpsc::channel(16);
            let task = spawn(cfg, rx);
            tx.try_send(Event::Status(meter_status(true))).unwrap();
            tx.try_send(Event::Telegram(Arc::clone(&event))).unwrap();
            let got = sub
                .until(10, |g| {
                    discovery(g).len() == event.values.len()
                        && g.iter().any(|r| r.topic == "smarty/home/state")
                        && g.iter().any(|r| r.topic == "smarty/home/energy_import_kwh")
                        && g.iter().any(|r| r.topic == "smarty/home/availability")
                        && g.iter().any(|r| r.topic == "smarty/status")
                })
                .await;
            let payload = |topic: &str| {
                got.iter()
                    .rev()
                    .find(|r| r.topic == topic)
                    .unwrap_or_else(|| panic!("{topic}"))
                    .payload
                    .clone()
            };
            assert_eq!(payload("smarty/status"), "online");
            assert_eq!(payload("smarty/home/availability"), "online");
            assert_eq!(payload("smarty/home/energy_import_kwh"), "273.764");
            let state: Json = serde_json::from_str(&payload("smarty/home/state")).unwrap();
            assert_eq!(state, event.json);
            let pos = |t: &str| got.iter().position(|r| r.topic == t).unwrap();
            assert!(pos(&energy_topic()) < pos("smarty/home/state"));

            if qos == 1 {
                // Home Assistant's birth message (an incoming MQTT 5 publish) brings the
                // discovery again; the last will arrives when the connection just drops.
                let (ha_client, mut ha_loop) =
                    AsyncClient::builder(MqttOptions::new("ha-pub-5", ("127.0.0.1", broker.port)))
                        .capacity(10)
                        .build();
                ha_client
                    .publish(
                        "homeassistant/status",
                        "online",
                        PublishOptions::new(QoS::AtLeastOnce),
                    )
                    .await
                    .unwrap();
                let _ha_task = AbortOnDrop(tokio::spawn(async move {
                    while ha_loop.poll().await.is_ok() {}
                }));
                sub.until(10, |g| discovery(g).len() == event.values.len())
                    .await;
                task.abort();
                let _ = task.await;
                sub.until(10, |g| {
                    g.iter()
                        .any(|r| r.topic == "smarty/status" && r.payload == "offline")
                })
                .await;
            } else {
                // A clean shutdown publishes offline itself.
                drop(tx);
                task.await.unwrap().unwrap();
                let got = sub
                    .until(10, |g| g.iter().any(|r| r.topic == "smarty/status"))
                    .await;
                assert_eq!(got.last().unwrap().payload, "offline");
            }
        }
    }

    fn energy_topic() -> String {
        "homeassistant/sensor/smarty_sag1030700012701/energy_import_kwh/config".into()
    }

    fn frame_counters(got: &[Received]) -> Vec<u64> {
        got.iter()
            .filter(|r| r.topic == "smarty/home/state")
            .map(|r| {
                let state: Json = serde_json::from_str(&r.payload).unwrap();
                state["frame_counter"].as_u64().unwrap()
            })
            .collect()
    }

    /// Every counter of `expected` arrived, first arrivals in order; repeats are only
    /// duplicates of counters already seen.
    fn assert_in_order_once(counters: &[u64], expected: &[u64]) {
        let mut firsts = Vec::new();
        for &c in counters {
            if !firsts.contains(&c) {
                firsts.push(c);
            }
        }
        assert_eq!(firsts, expected, "arrivals: {counters:?}");
    }

    /// Waits until `report` shows at least `depth` queued messages.
    async fn until_queued(report: &QueueReport, depth: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while report.depth.load(std::sync::atomic::Ordering::Relaxed) < depth {
            assert!(Instant::now() < deadline, "never {depth} messages queued");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every telegram arrives once, in order, through broker outages and a restart of the
    /// output with the broker down (its queue on disk).
    async fn nothing_is_lost(protocol: Protocol, qos: u8) {
        let mut broker = Broker::start(true);
        let queue_dir = tempfile::tempdir().unwrap();
        let cfg = MqttConfig {
            queue_dir: Some(queue_dir.path().to_path_buf()),
            discovery: false,
            protocol,
            qos,
            ..config(&broker)
        };
        let mut sub = Subscriber::start(&broker, "sub-outage", true, &["smarty/+/state"]).await;
        let (tx, rx) = mpsc::channel(64);
        let report = Arc::new(QueueReport::default());
        let task = tokio::spawn(run_reporting(
            cfg.clone(),
            rx,
            Some(Arc::clone(&report)),
            None,
        ));
        tx.try_send(Event::Telegram(telegram_event(1))).unwrap();
        let got = sub.until(10, |g| frame_counters(g).contains(&1)).await;
        let mut counters = frame_counters(&got);

        // The broker goes away; telegrams keep coming.
        broker.stop();
        for fc in 2..=6 {
            tx.try_send(Event::Telegram(telegram_event(fc))).unwrap();
        }
        until_queued(&report, 5).await;
        broker.restart();
        for fc in 7..=8 {
            tx.try_send(Event::Telegram(telegram_event(fc))).unwrap();
        }
        let got = sub.until(30, |g| frame_counters(g).contains(&8)).await;
        counters.extend(frame_counters(&got));
        assert_in_order_once(&counters, &(1..=8).collect::<Vec<_>>());

        // smarty stops while the broker is down: the queue waits on disk for the next run.
        broker.stop();
        for fc in 9..=11 {
            tx.try_send(Event::Telegram(telegram_event(fc))).unwrap();
        }
        until_queued(&report, 3).await;
        drop(tx);
        task.await.unwrap().unwrap();
        broker.restart();
        let (_tx, rx) = mpsc::channel::<Event>(4);
        let task = spawn(cfg.clone(), rx);
        let got = sub.until(30, |g| frame_counters(g).contains(&11)).await;
        // A message whose acknowledgement the broker's stop cut off comes again: a duplicate.
        counters.extend(frame_counters(&got));
        assert_in_order_once(&counters, &(1..=11).collect::<Vec<_>>());
        task.abort();
    }

    #[tokio::test]
    async fn nothing_is_lost_while_the_broker_is_down_or_smarty_restarts() {
        nothing_is_lost(Protocol::V4, 1).await;
    }

    #[tokio::test]
    async fn nothing_is_lost_at_qos_2() {
        nothing_is_lost(Protocol::V4, 2).await;
    }

    #[tokio::test]
    async fn nothing_is_lost_with_mqtt5() {
        nothing_is_lost(Protocol::V5, 1).await;
    }

    #[tokio::test]
    async fn nothing_is_lost_with_mqtt5_at_qos_2() {
        nothing_is_lost(Protocol::V5, 2).await;
    }

    /// At QoS 0 a message leaves the queue once written: everything arrives while the broker
    /// is up.
    #[tokio::test]
    async fn qos_0_delivers_in_order() {
        for protocol in [Protocol::V4, Protocol::V5] {
            let broker = Broker::start(false);
            let mut sub = Subscriber::start(&broker, "sub-qos0", false, &["smarty/+/state"]).await;
            let cfg = MqttConfig {
                discovery: false,
                protocol,
                qos: 0,
                ..config(&broker)
            };
            let (tx, rx) = mpsc::channel(64);
            let task = spawn(cfg, rx);
            for fc in 1..=20 {
                tx.try_send(Event::Telegram(telegram_event(fc))).unwrap();
            }
            let got = sub.until(10, |g| frame_counters(g).len() >= 20).await;
            assert_eq!(frame_counters(&got), (1..=20).collect::<Vec<u64>>());
            drop(tx);
            task.await.unwrap().unwrap();
        }
    }

    /// A queue directory that cannot be written: the output carries on in memory and delivers,
    /// and `/healthz` says the queue is not persisting.
    #[tokio::test]
    async fn a_queue_that_cannot_be_written_shows_on_healthz() {
        let broker = Broker::start(false);
        let disk = crate::service::queue::test_disk::SmallDisk::mount("64k");
        disk.remount("ro");
        let mut sub = Subscriber::start(&broker, "sub-ro", false, &["smarty/+/state"]).await;
        let cfg = MqttConfig {
            queue_dir: Some(disk.path().join("queue")),
            discovery: false,
            ..config(&broker)
        };
        let live = super::super::metrics::MetricsState::new(["home"]);
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(run_reporting(cfg, rx, Some(live.mqtt_queue()), None));
        let event = telegram_event(1);
        tx.try_send(Event::Telegram(Arc::clone(&event))).unwrap();
        live.update(&Event::Telegram(event));
        sub.until(10, |g| frame_counters(g).contains(&1)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let body = loop {
            let (healthy, body) = live.health(SystemTime::now(), Duration::from_secs(60));
            if !healthy {
                break body;
            }
            assert!(Instant::now() < deadline, "still healthy: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(body["meters"]["home"]["healthy"], true);
        assert_eq!(body["mqtt_queue"]["persisting"], false, "{body}");
        let reason = body["mqtt_queue"]["reason"].as_str().unwrap();
        assert!(reason.contains("Read-only"), "{reason}");

        // Writable again: healthy again.
        disk.remount("rw");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (healthy, body) = live.health(SystemTime::now(), Duration::from_secs(60));
            if healthy {
                assert!(body.get("mqtt_queue").is_none(), "{body}");
                break;
            }
            assert!(Instant::now() < deadline, "still unhealthy: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(tx);
        task.await.unwrap().unwrap();
    }

    /// A broker that goes away shows on `/healthz` with the reason (the output queues and
    /// retries meanwhile); once it is back the output is healthy again.
    #[tokio::test]
    async fn a_broker_outage_shows_on_healthz() {
        let mut broker = Broker::start(false);
        let mut sub = Subscriber::start(&broker, "sub-health", false, &["smarty/+/state"]).await;
        let live = super::super::metrics::MetricsState::new(["home"]);
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(run_reporting(
            config(&broker),
            rx,
            Some(live.mqtt_queue()),
            Some(live.output("mqtt")),
        ));
        let health_until = |want: bool| {
            let live = Arc::clone(&live);
            async move {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let (healthy, body) = live.health(SystemTime::now(), Duration::from_secs(60));
                    if healthy == want {
                        return body;
                    }
                    assert!(Instant::now() < deadline, "healthy is not {want}: {body}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let event = telegram_event(1);
        tx.try_send(Event::Telegram(Arc::clone(&event))).unwrap();
        live.update(&Event::Telegram(event));
        sub.until(10, |g| frame_counters(g).contains(&1)).await;
        let body = health_until(true).await;
        assert_eq!(body["outputs"]["mqtt"]["healthy"], true, "{body}");

        broker.stop();
        let body = health_until(false).await;
        assert_eq!(body["meters"]["home"]["healthy"], true, "{body}");
        let reason = body["outputs"]["mqtt"]["reason"].as_str().unwrap();
        assert!(reason.contains("unreachable"), "{reason}");

        broker.restart();
        let body = health_until(true).await;
        assert_eq!(body["outputs"]["mqtt"]["healthy"], true, "{body}");
        drop(tx);
        task.await.unwrap().unwrap();
    }

    /// A queue file that is empty or not a queue at all does not keep the output from
    /// starting: it is set aside and the output delivers.
    #[tokio::test]
    async fn a_damaged_queue_file_does_not_stop_the_output() {
        let broker = Broker::start(false);
        let mut sub = Subscriber::start(&broker, "sub-damaged", false, &["smarty/+/state"]).await;
        for (n, content) in [&b""[..], b"SMARTYQ1M\x01garbage", b"not a database"]
            .into_iter()
            .enumerate()
        {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(super::super::queue::FILE_NAME), content).unwrap();
            let cfg = MqttConfig {
                queue_dir: Some(dir.path().to_path_buf()),
                discovery: false,
                ..config(&broker)
            };
            let (tx, rx) = mpsc::channel(16);
            let task = spawn(cfg, rx);
            let fc = u32::try_from(n).unwrap() + 1;
            tx.try_send(Event::Telegram(telegram_event(fc))).unwrap();
            sub.until(10, |g| frame_counters(g).contains(&u64::from(fc)))
                .await;
            drop(tx);
            task.await.unwrap().unwrap();
        }
    }
}
