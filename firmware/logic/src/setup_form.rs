//! The captive portal's set-up form: the POST body (`application/x-www-form-urlencoded`)
//! parsed into [`Settings`], validated field by field, and the HTML of the set-up and status
//! pages.
//!
//! Form fields (names as in the HTML):
//!
//! | field | what | rule |
//! |---|---|---|
//! | `wifi_ssid` | Wi-Fi network | 1–32 bytes |
//! | `wifi_password` | Wi-Fi password | 8–63 characters, or empty for an open network |
//! | `meter_key` | the meter's key as printed on paper | 32 hex digits; spaces, `:`, `-`, any case; empty: none (plain DSMR) |
//! | `auth_key` | authentication key | 32 hex digits; empty: Luxembourg's public one |
//! | `mqtt_broker` | broker | `host`, `host:port` or `mqtt://host[:port]` |
//! | `mqtt_port` | port | 1–65535, default 1883 (a port in `mqtt_broker` wins) |
//! | `mqtt_user`, `mqtt_password` | credentials | optional |
//! | `mqtt_prefix` | topic prefix | 1–64 bytes, no `+`, `#`, NUL, leading `$` or `/` at either end |
//! | `mqtt_protocol` | `3.1.1` or `5` | |
//! | `publish_decoded`, `publish_raw`, `discovery` | check boxes | present (`on`) or absent |
//! | `device_name` | name in topics and on the network | 1–32 of `a-z 0-9 - _` |
//!
//! When the form edits existing settings, an empty password or key field keeps the stored one
//! (the pages never show secrets); the check boxes `clear_meter_key` and `clear_auth_key`
//! remove a stored key, `wifi_open` makes the network open.

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use percent_encoding::percent_decode;
use smarty_p1::Key;

use crate::settings::{MqttProtocol, Secret, SecretKey, Settings};

/// The form's fields, for error messages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Field {
    /// `wifi_ssid`.
    WifiSsid,
    /// `wifi_password`.
    WifiPassword,
    /// `meter_key`.
    MeterKey,
    /// `auth_key`.
    AuthKey,
    /// `mqtt_broker`.
    MqttBroker,
    /// `mqtt_port`.
    MqttPort,
    /// `mqtt_prefix`.
    MqttPrefix,
    /// `mqtt_protocol`.
    MqttProtocol,
    /// `device_name`.
    DeviceName,
}

impl Field {
    /// The field's name in the form.
    pub fn name(self) -> &'static str {
        match self {
            Field::WifiSsid => "wifi_ssid",
            Field::WifiPassword => "wifi_password",
            Field::MeterKey => "meter_key",
            Field::AuthKey => "auth_key",
            Field::MqttBroker => "mqtt_broker",
            Field::MqttPort => "mqtt_port",
            Field::MqttPrefix => "mqtt_prefix",
            Field::MqttProtocol => "mqtt_protocol",
            Field::DeviceName => "device_name",
        }
    }
}

/// What is wrong with one field.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct FieldError {
    /// The field.
    pub field: Field,
    /// What is wrong, in words for the page.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field.name(), self.message)
    }
}

/// Every field error of a submitted form (at least one).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct FormErrors {
    /// The errors, in field order.
    pub errors: Vec<FieldError>,
}

impl FormErrors {
    /// The error of `field`, if any.
    pub fn of(&self, field: Field) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }

    fn add(&mut self, field: Field, message: impl Into<String>) {
        self.errors.push(FieldError {
            field,
            message: message.into(),
        });
    }
}

impl fmt::Display for FormErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FormErrors {}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space, `%XX` a byte;
/// invalid UTF-8 becomes U+FFFD.
pub fn decode_component(text: &[u8]) -> String {
    let plus: Cow<'_, [u8]> = if text.contains(&b'+') {
        Cow::Owned(
            text.iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    };
    percent_decode(&plus).decode_utf8_lossy().into_owned()
}

/// The `name=value` pairs of a form body, decoded, in order (empty pieces skipped).
///
/// # Example
/// ```
/// use smarty_dongle::setup_form::parse_pairs;
/// let pairs = parse_pairs(b"wifi_ssid=My+Net%C3%A9&x=a%26b&&flag");
/// assert_eq!(pairs, [("wifi_ssid".into(), "My Neté".into()), ("x".into(), "a&b".into()),
///     ("flag".into(), String::new())]);
/// ```
pub fn parse_pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = match piece.iter().position(|&b| b == b'=') {
                Some(at) => (&piece[..at], &piece[at + 1..]),
                None => (piece, &b""[..]),
            };
            (decode_component(name), decode_component(value))
        })
        .collect()
}

/// A 16-byte key as printed on paper: 32 hex digits, upper or lower case, with spaces, tabs,
/// line breaks, `:` or `-` between them and an optional `0x`.
///
/// # Errors
/// The message for the page: how many digits it has, or which character is not a digit.
///
/// # Example
/// ```
/// use smarty_dongle::setup_form::parse_key;
/// let key = parse_key("d4 91 47 0f-47:12 63 32 B0 7D 19 23 B3 50 41 88").unwrap();
/// assert_eq!(key.expose()[0], 0xD4);
/// assert!(parse_key("D491").is_err());
/// ```
pub fn parse_key(text: &str) -> Result<SecretKey, String> {
    Key::from_hex(text)
        .map(|k| SecretKey::new(*k.as_bytes()))
        .map_err(|e| e.to_string())
}

/// A broker given as `host`, `host:port` or `mqtt://host[:port]`: (host, port if given).
fn parse_broker(text: &str) -> Result<(String, Option<u16>), String> {
    let text = text.trim();
    let rest = if let Some((scheme, rest)) = text.split_once("://") {
        match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => rest,
            "mqtts" | "ssl" | "tls" => {
                return Err("TLS (mqtts://) is not supported by the dongle: use mqtt://".into());
            }
            _ => return Err(format!("unknown scheme {scheme:?}: use mqtt://host:port")),
        }
    } else {
        text
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err("the broker's host name or IP address is needed".into());
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (rest, None),
    };
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        && !host.starts_with(['.', '-'])
        && !host.ends_with('-');
    if !valid {
        return Err(format!(
            "{host:?} is not a host name or IPv4 address (letters, digits, '.', '-')"
        ));
    }
    Ok((host.to_ascii_lowercase(), port))
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("{:?} is not a port (1–65535)", text.trim())),
    }
}

/// A topic prefix: 1–64 bytes, no wildcard, NUL, leading `$` or `/` at either end.
fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() {
        return Err("a topic prefix is needed (for example smarty)");
    }
    if prefix.len() > 64 {
        return Err("at most 64 bytes");
    }
    if prefix.contains(['+', '#']) {
        return Err("MQTT wildcards + and # are not allowed in topics");
    }
    if prefix.contains('\0') {
        return Err("NUL is not allowed in topics");
    }
    if prefix.starts_with('$') {
        return Err("topics starting with $ are the broker's");
    }
    if prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains("//") {
        return Err("no empty levels: no / at either end or twice in a row");
    }
    Ok(())
}

/// A device name: 1–32 of `a-z 0-9 - _` (it is a topic level and a host name).
fn check_device_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 32 {
        return Err("1 to 32 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err("lower-case letters, digits, - and _ only");
    }
    Ok(())
}

/// Parses and validates a submitted set-up form into settings. `existing`: the stored
/// settings the form edits (empty secret fields keep theirs), `None` on first set-up.
///
/// # Errors
/// [`FormErrors`] with a message for each field that is wrong.
///
/// # Example
/// ```
/// use smarty_dongle::setup_form::{Field, parse_form};
/// let body = b"wifi_ssid=Home&wifi_password=secret123&meter_key=D4+91+47+0F+47+12+63+32+\
///     B0+7D+19+23+B3+50+41+88&mqtt_broker=mqtt%3A%2F%2F192.168.1.5%3A1884&mqtt_prefix=smarty\
///     &mqtt_protocol=3.1.1&publish_decoded=on&device_name=home";
/// let settings = parse_form(body, None).unwrap();
/// assert_eq!((settings.mqtt.host.as_str(), settings.mqtt.port), ("192.168.1.5", 1884));
/// let errors = parse_form(b"wifi_ssid=&wifi_password=short", None).unwrap_err();
/// assert!(errors.of(Field::WifiSsid).is_some() && errors.of(Field::WifiPassword).is_some());
/// ```
pub fn parse_form(body: &[u8], existing: Option<&Settings>) -> Result<Settings, FormErrors> {
    let (settings, errors) = parse_form_as_typed(body, existing);
    if errors.errors.is_empty() {
        Ok(settings)
    } else {
        Err(errors)
    }
}

/// [`parse_form`], giving the settings as typed along with the errors: for showing the form
/// again with what was typed ([`setup_page`]) and the messages. The settings are valid only
/// when the errors are empty; a wrong key is left out (the stored one, or none), a wrong
/// broker kept as typed.
///
/// # Example
/// ```
/// use smarty_dongle::setup_form::{Field, parse_form_as_typed};
/// let (typed, errors) = parse_form_as_typed(b"wifi_ssid=Home&wifi_password=short&mqtt_broker=mqtt%3A%2F%2F", None);
/// assert_eq!(typed.wifi_ssid, "Home");
/// assert!(errors.of(Field::WifiPassword).is_some() && errors.of(Field::MqttBroker).is_some());
/// ```
pub fn parse_form_as_typed(body: &[u8], existing: Option<&Settings>) -> (Settings, FormErrors) {
    let pairs = parse_pairs(body);
    let get = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let text = |name: &str| get(name).unwrap_or("");
    let checked = |name: &str| get(name).is_some_and(|v| v != "off" && v != "0");
    let mut errors = FormErrors::default();
    let mut s = existing.cloned().unwrap_or_default();

    let ssid = text("wifi_ssid");
    if ssid.is_empty() || ssid.len() > 32 {
        errors.add(Field::WifiSsid, "the network name is 1 to 32 bytes long");
    }
    s.wifi_ssid = ssid.into();

    let password = text("wifi_password");
    let keep_password = password.is_empty() && existing.is_some() && !checked("wifi_open");
    if !keep_password {
        let n = password.chars().count();
        if !password.is_empty() && !(8..=63).contains(&n) {
            errors.add(
                Field::WifiPassword,
                format!(
                    "a WPA2 password has 8 to 63 characters (this one {n}); leave it empty for an open network"
                ),
            );
        }
        s.wifi_password = Secret::new(password);
    }

    for (field, name, clear, slot) in [
        (
            Field::MeterKey,
            "meter_key",
            "clear_meter_key",
            &mut s.meter_key,
        ),
        (
            Field::AuthKey,
            "auth_key",
            "clear_auth_key",
            &mut s.auth_key,
        ),
    ] {
        let given = text(name).trim();
        if checked(clear) {
            *slot = None;
        } else if !given.is_empty() {
            match parse_key(given) {
                Ok(key) => *slot = Some(key),
                Err(message) => errors.add(field, message),
            }
        } else if existing.is_none() {
            *slot = None;
        }
    }

    let port_field = text("mqtt_port").trim();
    let port = if port_field.is_empty() {
        Ok(1883)
    } else {
        parse_port(port_field)
    };
    match parse_broker(text("mqtt_broker")) {
        Ok((host, in_url)) => {
            s.mqtt.host = host;
            match (in_url, port) {
                (Some(p), _) => s.mqtt.port = p,
                (None, Ok(p)) => s.mqtt.port = p,
                (None, Err(message)) => errors.add(Field::MqttPort, message),
            }
        }
        Err(message) => {
            s.mqtt.host = text("mqtt_broker").trim().into();
            errors.add(Field::MqttBroker, message);
        }
    }
    s.mqtt.user = text("mqtt_user").into();
    let mqtt_password = text("mqtt_password");
    if !(mqtt_password.is_empty() && existing.is_some()) || s.mqtt.user.is_empty() {
        s.mqtt.password = Secret::new(mqtt_password);
    }

    let prefix = text("mqtt_prefix").trim();
    let prefix = if prefix.is_empty() { "smarty" } else { prefix };
    if let Err(message) = check_prefix(prefix) {
        errors.add(Field::MqttPrefix, message);
    }
    s.mqtt.prefix = prefix.into();

    s.mqtt.protocol = match text("mqtt_protocol").trim() {
        "" | "3.1.1" | "3" | "4" => MqttProtocol::V311,
        "5" | "5.0" => MqttProtocol::V5,
        other => {
            errors.add(
                Field::MqttProtocol,
                format!("{other:?} is not an MQTT version: 3.1.1 or 5"),
            );
            MqttProtocol::V311
        }
    };
    s.mqtt.publish_decoded = checked("publish_decoded");
    s.mqtt.publish_raw = checked("publish_raw");
    s.mqtt.discovery = checked("discovery");

    let name = text("device_name").trim();
    let name = if name.is_empty() { "home" } else { name };
    if let Err(message) = check_device_name(name) {
        errors.add(Field::DeviceName, message);
    }
    s.device_name = name.into();

    (s, errors)
}

/// `text` with `&`, `<`, `>`, `"` and `'` escaped, for HTML text and attribute values.
///
/// # Example
/// ```
/// use smarty_dongle::setup_form::escape_html;
/// assert_eq!(escape_html("<a href=\"x\">Tom & Jerry's</a>"),
///     "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;");
/// ```
pub fn escape_html(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

const PAGE_HEAD: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>smarty dongle</title>\
<style>body{font-family:sans-serif;max-width:36em;margin:1em auto;padding:0 1em}\
label{display:block;margin-top:.8em}input,select{width:100%;box-sizing:border-box}\
input[type=checkbox]{width:auto}.err{color:#b00}.hint{color:#555;font-size:.9em}</style></head><body>";
const PAGE_FOOT: &str = "</body></html>";

fn input(
    out: &mut String,
    label: &str,
    name: &str,
    kind: &str,
    value: &str,
    hint: &str,
    error: Option<&str>,
) {
    out.push_str(&format!(
        "<label>{}<input type=\"{kind}\" name=\"{name}\" value=\"{}\"></label>",
        escape_html(label),
        escape_html(value)
    ));
    if !hint.is_empty() {
        out.push_str(&format!("<div class=\"hint\">{}</div>", escape_html(hint)));
    }
    if let Some(error) = error {
        out.push_str(&format!("<div class=\"err\">{}</div>", escape_html(error)));
    }
}

fn checkbox(out: &mut String, label: &str, name: &str, checked: bool) {
    out.push_str(&format!(
        "<label><input type=\"checkbox\" name=\"{name}\"{}> {}</label>",
        if checked { " checked" } else { "" },
        escape_html(label)
    ));
}

/// The set-up page: the form, filled in with `settings` (secrets never shown), with the
/// messages of `errors` under their fields. It posts to `/setup`.
pub fn setup_page(settings: &Settings, errors: &FormErrors, has_stored: bool) -> String {
    let e = |f: Field| errors.of(f);
    let keep = if has_stored {
        "Leave empty to keep the stored one."
    } else {
        ""
    };
    let mut out = String::with_capacity(4096);
    out.push_str(PAGE_HEAD);
    out.push_str("<h1>smarty dongle set-up</h1><form method=\"post\" action=\"/setup\">");
    out.push_str("<h2>Wi-Fi</h2>");
    input(
        &mut out,
        "Network (SSID)",
        "wifi_ssid",
        "text",
        &settings.wifi_ssid,
        "",
        e(Field::WifiSsid),
    );
    input(
        &mut out,
        "Password",
        "wifi_password",
        "password",
        "",
        "Empty for an open network.",
        e(Field::WifiPassword),
    );
    if has_stored {
        checkbox(&mut out, "Open network (no password)", "wifi_open", false);
    }
    out.push_str("<h2>Meter</h2>");
    input(
        &mut out,
        "Key from the grid operator",
        "meter_key",
        "password",
        "",
        "32 hex digits as printed, spaces allowed. Empty for a meter that does not encrypt (DSMR).",
        e(Field::MeterKey),
    );
    if has_stored && settings.meter_key.is_some() {
        checkbox(&mut out, "Remove the stored key", "clear_meter_key", false);
    }
    input(
        &mut out,
        "Authentication key",
        "auth_key",
        "password",
        "",
        "Empty for Luxembourg's public one (every Smarty).",
        e(Field::AuthKey),
    );
    if has_stored && settings.auth_key.is_some() {
        checkbox(
            &mut out,
            "Use Luxembourg's public authentication key",
            "clear_auth_key",
            false,
        );
    }
    out.push_str("<h2>MQTT</h2>");
    input(
        &mut out,
        "Broker",
        "mqtt_broker",
        "text",
        &settings.mqtt.host,
        "Host name or IP address, or mqtt://host:port.",
        e(Field::MqttBroker),
    );
    input(
        &mut out,
        "Port",
        "mqtt_port",
        "number",
        &settings.mqtt.port.to_string(),
        "",
        e(Field::MqttPort),
    );
    input(
        &mut out,
        "User",
        "mqtt_user",
        "text",
        &settings.mqtt.user,
        "",
        None,
    );
    input(
        &mut out,
        "Password",
        "mqtt_password",
        "password",
        "",
        keep,
        None,
    );
    input(
        &mut out,
        "Topic prefix",
        "mqtt_prefix",
        "text",
        &settings.mqtt.prefix,
        "",
        e(Field::MqttPrefix),
    );
    let v5 = settings.mqtt.protocol == MqttProtocol::V5;
    out.push_str(&format!(
        "<label>Protocol<select name=\"mqtt_protocol\"><option value=\"3.1.1\"{}>MQTT 3.1.1</option>\
<option value=\"5\"{}>MQTT 5</option></select></label>",
        if v5 { "" } else { " selected" },
        if v5 { " selected" } else { "" }
    ));
    if let Some(error) = e(Field::MqttProtocol) {
        out.push_str(&format!("<div class=\"err\">{}</div>", escape_html(error)));
    }
    checkbox(
        &mut out,
        "Publish the decoded values",
        "publish_decoded",
        settings.mqtt.publish_decoded,
    );
    checkbox(
        &mut out,
        "Publish the raw frames (hex)",
        "publish_raw",
        settings.mqtt.publish_raw,
    );
    checkbox(
        &mut out,
        "Home Assistant discovery",
        "discovery",
        settings.mqtt.discovery,
    );
    out.push_str("<h2>Device</h2>");
    input(
        &mut out,
        "Name",
        "device_name",
        "text",
        &settings.device_name,
        "In topics (prefix/name/…) and on the network.",
        e(Field::DeviceName),
    );
    out.push_str("<p><button type=\"submit\">Save and connect</button></p></form>");
    out.push_str(PAGE_FOOT);
    out
}

/// The status page: the diagnosis, then `rows` of (label, value), all escaped.
pub fn status_page(diagnosis: &crate::diagnosis::Diagnosis, rows: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(2048);
    out.push_str(PAGE_HEAD);
    out.push_str("<h1>smarty dongle</h1>");
    let class = if diagnosis.is_ok() {
        ""
    } else {
        " class=\"err\""
    };
    out.push_str(&format!(
        "<p{class}>{}</p><table>",
        escape_html(&diagnosis.to_string())
    ));
    for (label, value) in rows {
        out.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            escape_html(label),
            escape_html(value)
        ));
    }
    out.push_str(
        "</table><p><a href=\"/setup\">Settings</a> · <a href=\"/api/status\">/api/status</a> · \
<a href=\"/api/telegram\">/api/telegram</a></p>",
    );
    out.push_str(PAGE_FOOT);
    out
}
