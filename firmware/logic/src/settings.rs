//! The settings record kept in flash.
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic: the ASCII bytes `SMTY` |
//! | 4 | 2 | format version ([`VERSION`]) |
//! | 6 | 4 | `n`: length of the body in bytes |
//! | 10 | `n` | body: the fields as TLV, each `tag: u8`, `len: u16`, `len` bytes |
//! | 10 + `n` | 4 | CRC-32 (ISO-HDLC, the zlib one) of bytes 0 … 10 + `n` |
//!
//! Bytes after the record (the rest of a flash page) are ignored. Erased flash (all `0xFF`,
//! or nothing) reads as "not set" (`Ok(None)`); anything else that is not a valid record is
//! refused with a [`SettingsError`] (a flipped bit fails the CRC). A record of an older format
//! version is refused with [`SettingsError::OldVersion`] (version 1 is the first: there is
//! nothing to migrate yet; a future version adds its migration in [`Settings::decode`]), one
//! of a newer version with [`SettingsError::NewVersion`]. Within a version, an unknown tag is
//! refused and a missing optional field takes its default.
//!
//! Secrets (passwords, keys) are in [`Secret`] and [`SecretKey`], whose `Debug` prints
//! `<redacted>`; the record itself holds them in clear (flash encryption is the chip's job).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crc::{CRC_32_ISO_HDLC, Crc};
use smarty_p1::{Aad, DecoderConfig, Key, LUXEMBOURG_AUTH_KEY};

/// The magic bytes that start a record.
pub const MAGIC: [u8; 4] = *b"SMTY";

/// The format version written.
pub const VERSION: u16 = 1;

const HEADER_LEN: usize = 10;
const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// A secret text (a password). `Debug` redacts it; [`Secret::expose`] gives it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }

    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `true` when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(\"\")")
        } else {
            f.write_str("Secret(<redacted>)")
        }
    }
}

/// A 16-byte key (the meter's decryption key, an authentication key). `Debug` redacts it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretKey([u8; 16]);

impl SecretKey {
    /// Wraps key bytes.
    pub const fn new(bytes: [u8; 16]) -> Self {
        SecretKey(bytes)
    }

    /// The key bytes.
    pub fn expose(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// The MQTT protocol version to speak.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum MqttProtocol {
    /// MQTT 3.1.1 (the default: every broker speaks it, NATS's MQTT listener only it).
    #[default]
    V311,
    /// MQTT 5.
    V5,
}

impl MqttProtocol {
    /// `3.1.1` or `5`.
    pub fn as_str(self) -> &'static str {
        match self {
            MqttProtocol::V311 => "3.1.1",
            MqttProtocol::V5 => "5",
        }
    }
}

/// Where and how to publish.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct MqttSettings {
    /// Broker host name or IP address.
    pub host: String,
    /// Broker TCP port (default 1883).
    pub port: u16,
    /// User name; empty for none.
    pub user: String,
    /// Password; empty for none.
    pub password: Secret,
    /// Topic prefix (default `smarty`), no wildcards.
    pub prefix: String,
    /// Protocol version.
    pub protocol: MqttProtocol,
    /// Publish the decoded telegram (state JSON and values; default `true`).
    pub publish_decoded: bool,
    /// Publish the raw frames in hex (default `false`).
    pub publish_raw: bool,
    /// Publish Home Assistant discovery (default `true`).
    pub discovery: bool,
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            host: String::new(),
            port: 1883,
            user: String::new(),
            password: Secret::default(),
            prefix: String::from("smarty"),
            protocol: MqttProtocol::V311,
            publish_decoded: true,
            publish_raw: false,
            discovery: true,
        }
    }
}

/// Everything the user sets up.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct Settings {
    /// Wi-Fi network name (1–32 bytes).
    pub wifi_ssid: String,
    /// Wi-Fi password (WPA2: 8–63 characters); empty for an open network.
    pub wifi_password: Secret,
    /// The meter's decryption key; `None` for a meter that sends plaintext (plain DSMR).
    pub meter_key: Option<SecretKey>,
    /// The authentication key; `None` for Luxembourg's public one.
    pub auth_key: Option<SecretKey>,
    /// The MQTT output.
    pub mqtt: MqttSettings,
    /// The device's name: its host name and the meter's name in topics (default `home`).
    pub device_name: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            wifi_ssid: String::new(),
            wifi_password: Secret::default(),
            meter_key: None,
            auth_key: None,
            mqtt: MqttSettings::default(),
            device_name: String::from("home"),
        }
    }
}

/// Why a record in flash was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum SettingsError {
    /// The bytes do not start with [`MAGIC`].
    NotARecord,
    /// The record is longer than the bytes read.
    Truncated,
    /// The CRC-32 does not match: the record is damaged.
    Crc {
        /// The CRC stored.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// A record of an older format version this firmware no longer reads.
    OldVersion {
        /// Its version.
        found: u16,
    },
    /// A record of a newer format version (written by newer firmware).
    NewVersion {
        /// Its version.
        found: u16,
    },
    /// A field is malformed (unknown tag, wrong length, not UTF-8).
    BadField {
        /// Its tag.
        tag: u8,
    },
    /// A required field is missing.
    Missing {
        /// Its tag.
        tag: u8,
    },
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::NotARecord => f.write_str("no settings record in flash"),
            SettingsError::Truncated => f.write_str("the settings record is cut short"),
            SettingsError::Crc { stored, computed } => write!(
                f,
                "the settings record is damaged (CRC-32 {stored:08X} stored, {computed:08X} computed)"
            ),
            SettingsError::OldVersion { found } => write!(
                f,
                "the settings record is of format version {found}, older than this firmware reads ({VERSION}): set the dongle up again"
            ),
            SettingsError::NewVersion { found } => write!(
                f,
                "the settings record is of format version {found}, newer than this firmware reads ({VERSION}): update the firmware or set the dongle up again"
            ),
            SettingsError::BadField { tag } => {
                write!(f, "the settings record has a malformed field (tag {tag})")
            }
            SettingsError::Missing { tag } => {
                write!(f, "the settings record lacks a required field (tag {tag})")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SettingsError {}

// Field tags of version 1.
const T_WIFI_SSID: u8 = 1;
const T_WIFI_PASSWORD: u8 = 2;
const T_METER_KEY: u8 = 3;
const T_AUTH_KEY: u8 = 4;
const T_MQTT_HOST: u8 = 5;
const T_MQTT_PORT: u8 = 6;
const T_MQTT_USER: u8 = 7;
const T_MQTT_PASSWORD: u8 = 8;
const T_MQTT_PREFIX: u8 = 9;
const T_MQTT_PROTOCOL: u8 = 10;
const T_FLAGS: u8 = 11;
const T_DEVICE_NAME: u8 = 12;

const F_DECODED: u8 = 1;
const F_RAW: u8 = 2;
const F_DISCOVERY: u8 = 4;

fn field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    // Every field is far below 64 KiB: texts are validated to short lengths.
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.push(tag);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&bytes[..usize::from(len)]);
}

fn text(tag: u8, bytes: &[u8]) -> Result<String, SettingsError> {
    core::str::from_utf8(bytes)
        .map(String::from)
        .map_err(|_| SettingsError::BadField { tag })
}

fn key(tag: u8, bytes: &[u8]) -> Result<SecretKey, SettingsError> {
    <[u8; 16]>::try_from(bytes)
        .map(SecretKey)
        .map_err(|_| SettingsError::BadField { tag })
}

impl Settings {
    /// The record of these settings, to write to flash.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(256);
        field(&mut body, T_WIFI_SSID, self.wifi_ssid.as_bytes());
        field(&mut body, T_WIFI_PASSWORD, self.wifi_password.0.as_bytes());
        if let Some(k) = &self.meter_key {
            field(&mut body, T_METER_KEY, &k.0);
        }
        if let Some(k) = &self.auth_key {
            field(&mut body, T_AUTH_KEY, &k.0);
        }
        let m = &self.mqtt;
        field(&mut body, T_MQTT_HOST, m.host.as_bytes());
        field(&mut body, T_MQTT_PORT, &m.port.to_le_bytes());
        field(&mut body, T_MQTT_USER, m.user.as_bytes());
        field(&mut body, T_MQTT_PASSWORD, m.password.0.as_bytes());
        field(&mut body, T_MQTT_PREFIX, m.prefix.as_bytes());
        let protocol = match m.protocol {
            MqttProtocol::V311 => 4,
            MqttProtocol::V5 => 5,
        };
        field(&mut body, T_MQTT_PROTOCOL, &[protocol]);
        let mut flags = 0;
        for (on, bit) in [
            (m.publish_decoded, F_DECODED),
            (m.publish_raw, F_RAW),
            (m.discovery, F_DISCOVERY),
        ] {
            if on {
                flags |= bit;
            }
        }
        field(&mut body, T_FLAGS, &[flags]);
        field(&mut body, T_DEVICE_NAME, self.device_name.as_bytes());

        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = CRC32.checksum(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// The settings in `flash` (a record, then anything): `Ok(None)` for erased flash (all
    /// `0xFF`) or no bytes.
    ///
    /// # Errors
    /// A [`SettingsError`] when the bytes are not a valid record of this format version.
    ///
    /// # Example
    /// ```
    /// use smarty_dongle::settings::Settings;
    /// let mut settings = Settings::default();
    /// settings.wifi_ssid = "home".into();
    /// let mut record = settings.encode();
    /// assert_eq!(Settings::decode(&record), Ok(Some(settings)));
    /// assert_eq!(Settings::decode(&[0xFF; 4096]), Ok(None));
    /// record[20] ^= 1;
    /// assert!(Settings::decode(&record).is_err());
    /// ```
    pub fn decode(flash: &[u8]) -> Result<Option<Settings>, SettingsError> {
        if flash.iter().all(|&b| b == 0xFF) {
            return Ok(None);
        }
        if flash.len() < HEADER_LEN || flash[..4] != MAGIC {
            return Err(SettingsError::NotARecord);
        }
        let version = u16::from_le_bytes([flash[4], flash[5]]);
        let len = u32::from_le_bytes([flash[6], flash[7], flash[8], flash[9]]) as usize;
        let end = HEADER_LEN
            .checked_add(len)
            .filter(|&end| end.checked_add(4).is_some_and(|e| e <= flash.len()))
            .ok_or(SettingsError::Truncated)?;
        let stored =
            u32::from_le_bytes([flash[end], flash[end + 1], flash[end + 2], flash[end + 3]]);
        let computed = CRC32.checksum(&flash[..end]);
        if stored != computed {
            return Err(SettingsError::Crc { stored, computed });
        }
        match version {
            VERSION => Self::decode_v1(&flash[HEADER_LEN..end]).map(Some),
            // Where a future version migrates the older ones.
            found if found < VERSION => Err(SettingsError::OldVersion { found }),
            found => Err(SettingsError::NewVersion { found }),
        }
    }

    fn decode_v1(mut body: &[u8]) -> Result<Settings, SettingsError> {
        let mut s = Settings::default();
        let mut ssid = false;
        while !body.is_empty() {
            if body.len() < 3 {
                return Err(SettingsError::Truncated);
            }
            let tag = body[0];
            let len = usize::from(u16::from_le_bytes([body[1], body[2]]));
            let value = body.get(3..3 + len).ok_or(SettingsError::Truncated)?;
            body = &body[3 + len..];
            let one = |v: &[u8]| match v {
                [b] => Ok(*b),
                _ => Err(SettingsError::BadField { tag }),
            };
            match tag {
                T_WIFI_SSID => {
                    s.wifi_ssid = text(tag, value)?;
                    ssid = true;
                }
                T_WIFI_PASSWORD => s.wifi_password = Secret(text(tag, value)?),
                T_METER_KEY => s.meter_key = Some(key(tag, value)?),
                T_AUTH_KEY => s.auth_key = Some(key(tag, value)?),
                T_MQTT_HOST => s.mqtt.host = text(tag, value)?,
                T_MQTT_PORT => {
                    let port: [u8; 2] = value
                        .try_into()
                        .map_err(|_| SettingsError::BadField { tag })?;
                    s.mqtt.port = u16::from_le_bytes(port);
                }
                T_MQTT_USER => s.mqtt.user = text(tag, value)?,
                T_MQTT_PASSWORD => s.mqtt.password = Secret(text(tag, value)?),
                T_MQTT_PREFIX => s.mqtt.prefix = text(tag, value)?,
                T_MQTT_PROTOCOL => {
                    s.mqtt.protocol = match one(value)? {
                        4 => MqttProtocol::V311,
                        5 => MqttProtocol::V5,
                        _ => return Err(SettingsError::BadField { tag }),
                    }
                }
                T_FLAGS => {
                    let flags = one(value)?;
                    s.mqtt.publish_decoded = flags & F_DECODED != 0;
                    s.mqtt.publish_raw = flags & F_RAW != 0;
                    s.mqtt.discovery = flags & F_DISCOVERY != 0;
                }
                T_DEVICE_NAME => s.device_name = text(tag, value)?,
                _ => return Err(SettingsError::BadField { tag }),
            }
        }
        if !ssid {
            return Err(SettingsError::Missing { tag: T_WIFI_SSID });
        }
        Ok(s)
    }

    /// The decoder settings: the meter key (none: plaintext), and the AAD of the
    /// authentication key (Luxembourg's public one when none is set).
    pub fn decoder_config(&self) -> DecoderConfig {
        let auth = self.auth_key.map_or(LUXEMBOURG_AUTH_KEY, |k| k.0);
        DecoderConfig::default()
            .with_key(self.meter_key.map(|k| Key::from_bytes(k.0)))
            .with_aad(Aad::AuthKey(auth))
    }

    /// The publishing settings: prefix, the device name as meter name, decoded/raw.
    pub fn publish_config(&self) -> crate::p1::PublishConfig {
        let mut config = crate::p1::PublishConfig::new(&self.mqtt.prefix, &self.device_name);
        config.decoded = self.mqtt.publish_decoded;
        config.raw = self.mqtt.publish_raw;
        config
    }
}
