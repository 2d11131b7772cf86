//! The `[mqtt]` section of the configuration, its check, and client ids.

use std::path::PathBuf;

use serde::Deserialize;

use super::endpoint::{Endpoint, UrlError};
use smarty_model::secret::Secret;

/// The MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
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
#[non_exhaustive]
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
    /// Keep the outgoing queue in this directory (file `mqtt-queue.db`), so that a restart
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

/// A setting of `[mqtt]` that cannot work. Each message starts with the setting it is about
/// (`mqtt.qos must be …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `qos` is not 0, 1 or 2.
    #[error("mqtt.qos must be 0, 1 or 2, not {0}")]
    Qos(u8),
    /// `keep_alive_s` is outside 5 s ..= 65,535 s.
    #[error("mqtt.keep_alive_s must be between 5 and {max} seconds, not {0}", max = u16::MAX)]
    KeepAlive(u64),
    /// `queue_max` is 0.
    #[error("mqtt.queue_max must be at least 1")]
    QueueMax,
    /// `prefix` or `discovery_prefix` is not a plain topic.
    #[error(
        "{setting} {prefix:?} must be a topic without wildcards and without leading or trailing /"
    )]
    Prefix {
        /// `mqtt.prefix` or `mqtt.discovery_prefix`.
        setting: &'static str,
        /// The value refused.
        prefix: String,
    },
    /// A password without a user name.
    #[error("mqtt.password is set but mqtt.username is not")]
    PasswordWithoutUser,
    /// An empty client id.
    #[error("mqtt.client_id must not be empty")]
    EmptyClientId,
    /// `url` is not a broker address (the URL is shown only when it holds no user or
    /// password).
    #[error(
        "mqtt.url{}: {reason} (expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT])",
        shown_url(url)
    )]
    Url {
        /// The URL refused.
        url: String,
        /// Why.
        reason: UrlError,
    },
    /// `url` names a user or password.
    #[error("mqtt.url must not contain a user or password: use mqtt.username and mqtt.password")]
    UrlUserinfo,
}

/// ` "mqtt://…"`, or nothing for a URL that may hold a password.
fn shown_url(url: &str) -> String {
    if url.contains('@') {
        String::new()
    } else {
        format!(" {url:?}")
    }
}

impl MqttConfig {
    /// Checks the settings; returns the broker's address.
    ///
    /// # Errors
    /// The first setting that cannot work.
    pub fn check(&self) -> Result<Endpoint, ConfigError> {
        if self.qos > 2 {
            return Err(ConfigError::Qos(self.qos));
        }
        if !(5..=u64::from(u16::MAX)).contains(&self.keep_alive_s) {
            return Err(ConfigError::KeepAlive(self.keep_alive_s));
        }
        if self.queue_max == 0 {
            return Err(ConfigError::QueueMax);
        }
        check_prefix("mqtt.prefix", &self.prefix)?;
        if self.discovery {
            check_prefix("mqtt.discovery_prefix", &self.discovery_prefix)?;
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(ConfigError::PasswordWithoutUser);
        }
        if self.client_id.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::EmptyClientId);
        }
        Endpoint::parse(&self.url).map_err(|reason| match reason {
            UrlError::Userinfo => ConfigError::UrlUserinfo,
            reason => ConfigError::Url {
                url: self.url.clone(),
                reason,
            },
        })
    }

    /// The client id to use: `client_id`, else `smarty-<hostname>`, else `smarty-<random>`.
    pub fn client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| match host_label(40) {
                Some(host) => format!("smarty-{host}"),
                None => format!("smarty-{:08x}", rand::random::<u32>()),
            })
    }

    /// The keep-alive interval in whole seconds, as MQTT carries it (16 bits).
    pub fn keep_alive_s(&self) -> u16 {
        u16::try_from(self.keep_alive_s).unwrap_or(u16::MAX)
    }
}

fn check_prefix(setting: &'static str, prefix: &str) -> Result<(), ConfigError> {
    if prefix.is_empty()
        || prefix.starts_with('/')
        || prefix.ends_with('/')
        || prefix.contains(['+', '#', '\0'])
    {
        return Err(ConfigError::Prefix {
            setting,
            prefix: prefix.to_owned(),
        });
    }
    Ok(())
}

/// This machine's host name as it goes into a client id: its letters, digits and `-`, at most
/// `max` of them; `None` without a host name.
pub fn host_label(max: usize) -> Option<String> {
    #[cfg(unix)]
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    #[cfg(not(unix))]
    let name = std::env::var("COMPUTERNAME").ok()?;
    let label: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(max)
        .collect();
    (!label.is_empty()).then_some(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let ok = MqttConfig::default();
        assert_eq!(ok.check().unwrap().port, 1883);
        let v5 = MqttConfig {
            protocol: Protocol::V5,
            ..MqttConfig::default()
        };
        assert!(v5.check().is_ok());
        let check = |config: MqttConfig| config.check().unwrap_err().to_string();
        assert_eq!(
            check(MqttConfig {
                qos: 3,
                ..MqttConfig::default()
            }),
            "mqtt.qos must be 0, 1 or 2, not 3"
        );
        assert!(
            check(MqttConfig {
                keep_alive_s: 4,
                ..MqttConfig::default()
            })
            .starts_with("mqtt.keep_alive_s must be between 5 and 65535 seconds")
        );
        assert!(
            check(MqttConfig {
                queue_max: 0,
                ..MqttConfig::default()
            })
            .starts_with("mqtt.queue_max")
        );
        for prefix in ["a/#", "", "/a", "a/", "a/+/b"] {
            let message = check(MqttConfig {
                prefix: prefix.into(),
                ..MqttConfig::default()
            });
            assert!(message.starts_with("mqtt.prefix "), "{prefix}: {message}");
        }
        // The discovery prefix matters only with discovery on.
        let no_discovery = MqttConfig {
            discovery: false,
            discovery_prefix: "#".into(),
            ..MqttConfig::default()
        };
        assert!(no_discovery.check().is_ok());
        assert!(
            check(MqttConfig {
                discovery_prefix: "#".into(),
                ..MqttConfig::default()
            })
            .starts_with("mqtt.discovery_prefix ")
        );
        assert_eq!(
            check(MqttConfig {
                password: Some("p".into()),
                ..MqttConfig::default()
            }),
            "mqtt.password is set but mqtt.username is not"
        );
        assert!(
            check(MqttConfig {
                client_id: Some(String::new()),
                ..MqttConfig::default()
            })
            .starts_with("mqtt.client_id")
        );
        assert_eq!(
            check(MqttConfig {
                url: "mqtt://x:99999".into(),
                ..MqttConfig::default()
            }),
            "mqtt.url \"mqtt://x:99999\": invalid port number (expected mqtt://HOST[:PORT] or \
             mqtts://HOST[:PORT])"
        );
        // A URL with a password is not echoed.
        let message = check(MqttConfig {
            url: "mqtt://u:hunter2@x".into(),
            ..MqttConfig::default()
        });
        assert!(
            message.starts_with("mqtt.url must not contain a user"),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
        let message = check(MqttConfig {
            url: "mqtt://u:hunter2@x:0".into(),
            ..MqttConfig::default()
        });
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn the_section_is_read_from_toml_and_the_password_never_shown() {
        let c: MqttConfig = toml::from_str(
            "url = \"mqtts://h\"\nusername = \"u\"\npassword = \"secret\"\nprotocol = \"v4\"\nqos = 2",
        )
        .unwrap();
        assert_eq!(c.qos, 2);
        assert_eq!(c.prefix, "smarty");
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("secret"));
        assert!(!format!("{c:?}").contains("secret"));
        assert!(toml::from_str::<MqttConfig>("nope = 1").is_err());
        for (text, protocol) in [
            ("v5", Protocol::V5),
            ("5", Protocol::V5),
            ("mqttv5", Protocol::V5),
            ("3.1.1", Protocol::V4),
        ] {
            let c: MqttConfig = toml::from_str(&format!("protocol = {text:?}")).unwrap();
            assert_eq!(c.protocol, protocol, "{text}");
        }
    }

    #[test]
    fn client_ids_come_from_the_host_name() {
        let host = host_label(40).expect("this machine has a host name");
        assert!(host.len() <= 40);
        assert!(host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert_eq!(MqttConfig::default().client_id(), format!("smarty-{host}"));
        assert!(host_label(3).unwrap().len() <= 3);
        let given = MqttConfig {
            client_id: Some("mine".into()),
            ..MqttConfig::default()
        };
        assert_eq!(given.client_id(), "mine");
    }
}
