//! The service configuration: a TOML file, environment overrides, secrets from files.
//!
//! `smarty config example` prints a commented example; `smarty config check FILE` validates one
//! and names the line of each mistake. Environment variables override the file:
//! `SMARTY_<SECTION>_<FIELD>` for the `[mqtt]`, `[proxy]` and `[http]` sections (for example
//! `SMARTY_MQTT_PASSWORD`), `SMARTY_METER_<NAME>_<FIELD>` for a meter (for example
//! `SMARTY_METER_HOME_KEY` for the meter named `home`) and `SMARTY_STATE_DIR`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::cli::SerialFormat;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the service keeps its state (MQTT queue, replay counters).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The meters, one `[[meter]]` table each.
    #[serde(default, rename = "meter")]
    pub meters: Vec<MeterConfig>,
    /// MQTT output (`[mqtt]`), off when absent.
    #[serde(default)]
    pub mqtt: Option<toml::Table>,
    /// Plain-telegram proxy (`[proxy]`), off when absent.
    #[serde(default)]
    pub proxy: Option<toml::Table>,
    /// The web server (`[http]`): dashboard, API, metrics and health; off when absent.
    #[serde(default)]
    pub http: Option<toml::Table>,
    /// The history store (`[store]`); on by default, in the state directory.
    #[serde(default)]
    pub store: Option<toml::Table>,
    /// Grid tariff and prices for the cost analytics (`[tariff]`); Luxembourg's 2025 tariff
    /// with default prices when absent.
    #[serde(default)]
    pub tariff: Option<toml::Table>,
}

impl Config {
    /// The state directory: `state_dir` of the file (or `SMARTY_STATE_DIR`), else
    /// [`default_state_dir`].
    pub fn state_dir(&self) -> Option<PathBuf> {
        self.state_dir.clone().or_else(default_state_dir)
    }
}

/// Where state lives when nothing says: `$STATE_DIRECTORY` (set by systemd's
/// `StateDirectory=`), else `$XDG_STATE_HOME/smarty`, else `~/.local/state/smarty`; `None`
/// without a home directory.
pub fn default_state_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("STATE_DIRECTORY") {
        // systemd passes a colon-separated list when several directories are configured.
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        return Some(PathBuf::from(first));
    }
    if let Some(dir) = var("XDG_STATE_HOME") {
        return Some(dir.join("smarty"));
    }
    var("HOME").map(|home| home.join(".local/state/smarty"))
}

/// One meter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterConfig {
    /// A short name: letters, digits, `_` and `-` (used in topics and labels).
    pub name: String,
    /// Where to read: a serial device, `tcp://HOST:PORT`, a file or `-`.
    pub source: String,
    /// The decryption key, 32 hex digits (prefer `key_file` or `SMARTY_METER_<NAME>_KEY`).
    #[serde(default)]
    pub key: Option<String>,
    /// A file holding the key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Authentication key for the AAD (default: Luxembourg's public key).
    #[serde(default)]
    pub auth_key: Option<String>,
    /// The whole AAD in hex, or `none`.
    #[serde(default)]
    pub aad: Option<String>,
    /// Verify the GCM tag (default true).
    #[serde(default = "yes")]
    pub verify_tag: bool,
    /// Reject frames whose counter does not grow (default false).
    #[serde(default)]
    pub reject_replay: bool,
    /// Serial speed (default 115200).
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Serial format (default `8N1`).
    #[serde(default = "default_serial")]
    pub serial: String,
    /// Seconds between telegrams (10 for Smarty, 1 for DSMR 5). With no telegram for three
    /// intervals the source is reopened.
    #[serde(default = "default_interval")]
    pub interval_s: f64,
}

fn yes() -> bool {
    true
}
fn default_baud() -> u32 {
    115_200
}
fn default_serial() -> String {
    "8N1".into()
}
fn default_interval() -> f64 {
    10.0
}

/// A commented example configuration (`smarty config example`).
pub const EXAMPLE: &str = include_str!("../smarty.example.toml");

impl Config {
    /// Reads, overrides from the environment and validates a file.
    ///
    /// # Errors
    /// Unreadable file, TOML errors (with the line), or invalid settings (naming the meter
    /// or section).
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(
            &text,
            &path.display().to_string(),
            &std::env::vars().collect::<Vec<_>>(),
        )
    }

    /// Parses `text` (named `origin` in messages) with the environment `env`.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(text: &str, origin: &str, env: &[(String, String)]) -> Result<Config> {
        let mut table: toml::Table = match text.parse() {
            Ok(table) => table,
            Err(e) => bail!("{}", located(origin, text, &e)),
        };
        apply_env(&mut table, env)?;
        let config = match Config::deserialize(toml::Value::Table(table.clone())) {
            Ok(config) => config,
            Err(e) => {
                // Parse the text again without the overrides to point at a line.
                let located_error = toml::from_str::<Config>(text)
                    .err()
                    .map(|e| located(origin, text, &e));
                bail!(
                    "{}",
                    located_error.unwrap_or_else(|| format!("{origin}: {e}"))
                )
            }
        };
        config.validate(origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<()> {
        if self.meters.is_empty() {
            bail!("{origin}: no [[meter]] configured");
        }
        let mut names = std::collections::BTreeSet::new();
        for meter in &self.meters {
            let name = &meter.name;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                bail!(
                    "{origin}: meter name {name:?}: use letters, digits, '_' and '-' (it is used in MQTT topics)"
                );
            }
            if !names.insert(name.to_ascii_lowercase()) {
                bail!("{origin}: two meters are named {name:?}");
            }
            if meter.key.is_some() && meter.key_file.is_some() {
                bail!("{origin}: meter {name:?}: give key or key_file, not both");
            }
            if let Some(key) = &meter.key {
                smarty_p1::Key::from_hex(key)
                    .map_err(|e| anyhow::anyhow!("{origin}: meter {name:?}: invalid key: {e}"))?;
            }
            if meter.auth_key.is_some() && meter.aad.is_some() {
                bail!("{origin}: meter {name:?}: give auth_key or aad, not both");
            }
            crate::key::load_aad(meter.auth_key.as_deref(), meter.aad.as_deref())
                .map_err(|e| anyhow::anyhow!("{origin}: meter {name:?}: {e:#}"))?;
            meter
                .serial_format()
                .map_err(|e| anyhow::anyhow!("{origin}: meter {name:?}: {e}"))?;
            if !(meter.interval_s > 0.0 && meter.interval_s.is_finite()) {
                bail!("{origin}: meter {name:?}: interval_s must be a positive number of seconds");
            }
        }
        Ok(())
    }
}

impl MeterConfig {
    /// The serial format.
    ///
    /// # Errors
    /// When `serial` is not like `8N1`.
    pub fn serial_format(&self) -> Result<SerialFormat, String> {
        crate::cli::parse_serial_format(&self.serial)
    }
}

fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// `file:LINE:COLUMN: message` for a TOML error.
fn located(origin: &str, text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{origin}:{line}:{column}: {message}")
        }
        None => format!("{origin}: {message}"),
    }
}

/// Applies `SMARTY_…` overrides to the parsed table.
fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> Result<()> {
    const SECTIONS: [&str; 5] = ["mqtt", "proxy", "http", "store", "tariff"];
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("SMARTY_") else {
            continue;
        };
        if rest == "KEY" {
            continue; // the key of `smarty read`, not a config setting
        }
        if rest == "STATE_DIR" {
            table.insert("state_dir".into(), toml::Value::String(value.clone()));
            continue;
        }
        let value = parse_scalar(value);
        if let Some(section) = SECTIONS
            .iter()
            .find(|s| rest.starts_with(&format!("{}_", s.to_ascii_uppercase())))
        {
            let field = rest[section.len() + 1..].to_ascii_lowercase();
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(section) = entry {
                section.insert(field, value);
            }
        } else if let Some(rest) = rest.strip_prefix("METER_") {
            let Some(toml::Value::Array(meters)) = table.get_mut("meter") else {
                continue;
            };
            for meter in meters.iter_mut().filter_map(toml::Value::as_table_mut) {
                let Some(meter_name) = meter.get("name").and_then(toml::Value::as_str) else {
                    continue;
                };
                let prefix = format!("{}_", env_name(meter_name));
                if let Some(field) = rest.strip_prefix(&prefix) {
                    let field = field.to_ascii_lowercase();
                    if field == "key" {
                        meter.remove("key_file"); // the environment wins over the file
                    }
                    meter.insert(field, value.clone());
                }
            }
        }
    }
    Ok(())
}

/// An environment value as TOML: booleans and numbers as such, anything else as a string.
fn parse_scalar(text: &str) -> toml::Value {
    if let Ok(b) = text.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = text.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = text.parse::<f64>()
        && text.contains('.')
    {
        return toml::Value::Float(f);
    }
    toml::Value::String(text.to_owned())
}

/// Reads a secret file: its content without the final line break.
///
/// # Errors
/// When the file cannot be read.
pub fn read_secret(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret file {}", path.display()))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, "smarty.toml", &[])
    }

    #[test]
    fn the_example_is_valid() {
        let config = parse(EXAMPLE).unwrap();
        assert!(!config.meters.is_empty());
        assert!(config.mqtt.is_some());
    }

    #[test]
    fn mistakes_name_their_line() {
        let err = parse("[[meter]]\nname = \"home\"\nsource = \"/dev/ttyUSB0\"\nbaud = \"fast\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("smarty.toml:4:"), "{err}");
        let err = parse("[[meter]]\nname = \"home\"\nsourc = \"/dev/ttyUSB0\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("smarty.toml:3:"), "{err}");
        assert!(err.contains("unknown field"), "{err}");
        let err = parse("[[meter]\n").unwrap_err().to_string();
        assert!(err.starts_with("smarty.toml:1:"), "{err}");
    }

    #[test]
    fn semantic_mistakes_name_the_meter() {
        let two =
            "[[meter]]\nname = \"a\"\nsource = \"-\"\n[[meter]]\nname = \"A\"\nsource = \"-\"\n";
        assert!(
            parse(two)
                .unwrap_err()
                .to_string()
                .contains("two meters are named")
        );
        let bad_key = "[[meter]]\nname = \"a\"\nsource = \"-\"\nkey = \"0011\"\n";
        let err = parse(bad_key).unwrap_err().to_string();
        assert!(
            err.contains("meter \"a\": invalid key: a key is 32 hex digits"),
            "{err}"
        );
        assert!(!err.contains("0011"));
        assert!(parse("").unwrap_err().to_string().contains("no [[meter]]"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let text =
            "[[meter]]\nname = \"home-1\"\nsource = \"/dev/ttyUSB0\"\n[mqtt]\nurl = \"mqtt://a\"\n";
        let env = vec![
            ("SMARTY_MQTT_URL".to_owned(), "mqtt://b:1884".to_owned()),
            ("SMARTY_MQTT_QOS".to_owned(), "0".to_owned()),
            (
                "SMARTY_METER_HOME_1_KEY".to_owned(),
                "000102030405060708090A0B0C0D0E0F".to_owned(),
            ),
            (
                "SMARTY_METER_HOME_1_VERIFY_TAG".to_owned(),
                "false".to_owned(),
            ),
        ];
        let config = Config::parse(text, "f", &env).unwrap();
        let mqtt = config.mqtt.unwrap();
        assert_eq!(mqtt["url"].as_str(), Some("mqtt://b:1884"));
        assert_eq!(mqtt["qos"].as_integer(), Some(0));
        assert!(config.meters[0].key.is_some());
        assert!(!config.meters[0].verify_tag);
    }
}
