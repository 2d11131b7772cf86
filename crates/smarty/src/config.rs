//! The service configuration: a TOML file, environment overrides, flags, secrets from files.
//!
//! `smarty config example` prints a commented example; `smarty config check FILE` validates one
//! and reports every mistake with its line and column. Three layers make the configuration,
//! each overriding the one before:
//!
//! 1. the file;
//! 2. the environment: `SMARTY_<SECTION>_<FIELD>` for the `[mqtt]`, `[proxy]`, `[http]`,
//!    `[store]`, `[tariff]`, `[guard]` and `[fleet]` sections (for example `SMARTY_MQTT_PASSWORD`),
//!    `SMARTY_METER_<NAME>_<FIELD>` for a meter (for example `SMARTY_METER_HOME_KEY` for the
//!    meter named `home`) and `SMARTY_STATE_DIR`. A value takes the type of its field (text
//!    stays text, even `123456`); an empty variable counts as unset;
//! 3. the flags of `smarty run` ([`Overrides`]).
//!
//! The sections are typed; values never appear in error messages, so that a secret never
//! does.

mod layers;
pub mod store;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

pub use layers::Origin;
use layers::{Mistake, Seg, Tree};

use crate::cli::SerialFormat;
use crate::service::fleet_feed::FleetFeedConfig;
use crate::service::guard::GuardSection;
use crate::service::proxy::ProxyConfig;
use smarty_model::secret::Secret;
use smarty_mqtt::MqttConfig;
use smarty_store::config::StoreSection;
use smarty_tariff::TariffConfig;
use smarty_web::HttpConfig;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the service keeps its state (history store, MQTT queue, replay counters).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The meters, one `[[meter]]` table each.
    #[serde(default, rename = "meter")]
    pub meters: Vec<MeterConfig>,
    /// MQTT output (`[mqtt]`), off when absent.
    #[serde(default)]
    pub mqtt: Option<MqttConfig>,
    /// `[mqtt] password_file`: read when the service starts, unless a password is given.
    #[serde(skip)]
    pub mqtt_password_file: Option<PathBuf>,
    /// Plain-telegram proxy (`[proxy]`), off when absent.
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
    /// The web server (`[http]`): dashboard, API, metrics and health; on (on loopback) when
    /// absent.
    #[serde(default)]
    pub http: Option<HttpConfig>,
    /// The history store (`[store]`); on by default, in the state directory.
    #[serde(default)]
    pub store: Option<StoreSection>,
    /// Grid tariff and prices for the cost analytics (`[tariff]`); Luxembourg's 2025 tariff
    /// with default prices when absent.
    #[serde(default)]
    pub tariff: Option<TariffConfig>,
    /// The live reference-power guard and its alerts (`[guard]`, docs/guard.md); on, with
    /// the tariff's reference power, when absent.
    #[serde(default)]
    pub guard: Option<GuardSection>,
    /// Feeding a fleet (`[fleet]`, `--publish-raw URL`): every encrypted frame, as received,
    /// to a fleet's NATS stream (natively or through NATS's MQTT listener); off when absent.
    #[serde(default)]
    pub fleet: Option<FleetFeedConfig>,
}

impl Config {
    /// The `[guard]` settings, the defaults when the section is absent.
    pub fn guard(&self) -> GuardSection {
        self.guard.clone().unwrap_or_default()
    }

    /// The live guard's settings when it is on: the reference power of `[guard]`, else of
    /// `[tariff]`.
    pub fn guard_config(&self) -> Option<smarty_model::guard::GuardConfig> {
        let guard = self.guard();
        let tariff = self.tariff.clone().unwrap_or_default();
        guard
            .enabled
            .then(|| guard.guard_config(tariff.reference_power_kw))
    }

    /// The state directory: `state_dir` of the file (or `SMARTY_STATE_DIR`, `--state-dir`),
    /// else [`default_state_dir`].
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
    /// Where to read: a serial device, `tcp://HOST:PORT`, `mqtt://HOST/TOPIC`, a file or `-`.
    pub source: String,
    /// The decryption key, 32 hex digits (prefer `key_file` or `SMARTY_METER_<NAME>_KEY`).
    #[serde(default)]
    pub key: Option<Secret>,
    /// A file holding the key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Authentication key for the AAD (default: Luxembourg's public key).
    #[serde(default)]
    pub auth_key: Option<Secret>,
    /// The whole AAD in hex (it holds the authentication key), or `none`.
    #[serde(default)]
    pub aad: Option<Secret>,
    /// Verify the GCM tag (default true).
    #[serde(default = "yes")]
    pub verify_tag: bool,
    /// Reject frames whose counter does not grow (default false).
    #[serde(default)]
    pub reject_replay: bool,
    /// Serial speed in baud (default 115200), within [`BAUD`].
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Serial format (default `8N1`).
    #[serde(default = "default_serial")]
    pub serial: String,
    /// Seconds between telegrams (10 for Smarty, 1 for DSMR 5), within
    /// [`METER_INTERVAL_S`]. With no telegram for three intervals the source is reopened.
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

/// The serial speeds accepted, in baud.
pub const BAUD: RangeInclusive<u32> = 50..=4_000_000;

/// The meter intervals accepted, in seconds: from 0.1 s to a day.
pub const METER_INTERVAL_S: RangeInclusive<f64> = 0.1..=86_400.0;

/// The longest MQTT keep-alive: the protocol carries it in 16 bits.
const MQTT_KEEP_ALIVE_MAX_S: u64 = 65_535;

/// The `/healthz` limits accepted, in seconds: from 1 s to a year.
const HEALTHY_WITHIN_S: RangeInclusive<u64> = 1..=31_536_000;

/// A commented example configuration (`smarty config example`).
pub const EXAMPLE: &str = include_str!("../smarty.example.toml");

/// Checks a meter name as `smarty run` takes it: letters, digits, `_` and `-`.
///
/// # Errors
/// In words, naming the rule.
pub fn check_meter_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(
            "a meter name is 1 to 64 letters (a-z, A-Z), digits, '_' and '-' (it is used in \
             MQTT topics and metric labels)"
                .to_owned(),
        );
    }
    Ok(())
}

/// Settings from the command line, applied over the file and the environment.
///
/// Each names its flag, which error messages show.
#[derive(Debug, Clone, Default)]
pub struct Overrides(Vec<Override>);

#[derive(Debug, Clone)]
struct Override {
    /// `mqtt.url`, `meter[0].name`.
    path: String,
    value: String,
    at: Origin,
    /// Applies only to a section that exists (`--publish-raw` needs `[mqtt]`): refused
    /// otherwise, with this explanation.
    needs_section: Option<String>,
}

impl Overrides {
    /// `path` (`http.listen`, `meter[0].baud`) set to `value` by `flag`.
    pub fn flag(&mut self, path: &str, value: impl ToString, flag: &str) {
        self.push(path, value, Origin::Flag(flag.to_owned()), None);
    }

    /// `path` set to `value` by the environment variable `name` (where a flag stands in for
    /// it, like `SMARTY_KEY` for `--key`).
    pub fn env(&mut self, path: &str, value: impl ToString, name: &str) {
        self.push(path, value, Origin::Env(name.to_owned()), None);
    }

    /// Like [`Overrides::flag`], for a setting of a section that must be there already (from
    /// the file, the environment or another flag); refused with `needs` otherwise.
    pub fn flag_in_section(&mut self, path: &str, value: impl ToString, flag: &str, needs: &str) {
        self.push(
            path,
            value,
            Origin::Flag(flag.to_owned()),
            Some(needs.to_owned()),
        );
    }

    fn push(&mut self, path: &str, value: impl ToString, at: Origin, needs: Option<String>) {
        self.0.push(Override {
            path: path.to_owned(),
            value: value.to_string(),
            at,
            needs_section: needs,
        });
    }
}

/// `mqtt.url` → `[Key("mqtt"), Key("url")]`; `meter[0].name` → `[Key("meter"), Index(0),
/// Key("name")]`.
fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        match part.split_once('[') {
            Some((key, index)) => {
                out.push(Seg::Key(key));
                if let Ok(i) = index.trim_end_matches(']').parse() {
                    out.push(Seg::Index(i));
                }
            }
            None => out.push(Seg::Key(part)),
        }
    }
    out
}

/// What a configuration is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// `smarty run`: everything must make sense.
    Service,
    /// `smarty export` and `import`: where the store is.
    Store,
    /// `smarty fleet serve`: the web server and the tariff.
    Web,
}

/// Every mistake of a configuration, each with its place; shown one per line.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The file (or "the command line").
    origin: String,
    mistakes: Vec<Mistake>,
}

impl ConfigError {
    /// The mistakes, one line each: `smarty.toml:12:7: mqtt.qos: …`.
    pub fn lines(&self) -> Vec<String> {
        self.mistakes
            .iter()
            .map(|m| format!("{}: {}", m.at.describe(&self.origin), m.message))
            .collect()
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines = self.lines();
        match lines.as_slice() {
            [one] => f.write_str(one),
            _ => write!(
                f,
                "{} mistakes in {}:\n{}",
                lines.len(),
                self.origin,
                lines.join("\n")
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A mistake in settings that each parsed: the settings it concerns (the first is where it
/// is shown) and a message naming them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `mqtt.qos`, `meter[1].source` (the position among the meters deserialized).
    pub paths: Vec<String>,
    /// What is wrong, in words, without secret values.
    pub message: String,
}

impl Config {
    /// Reads a file, overrides it from the environment and validates it.
    ///
    /// # Errors
    /// An unreadable file, or a [`ConfigError`] with every mistake.
    pub fn load(path: &Path) -> Result<Config> {
        Self::load_with(Some(path), &Overrides::default())
    }

    /// Reads a file (if any), overrides it from the environment and then from `flags`, and
    /// validates the result.
    ///
    /// # Errors
    /// An unreadable file, or a [`ConfigError`] with every mistake.
    pub fn load_with(path: Option<&Path>, flags: &Overrides) -> Result<Config> {
        Self::load_scoped(path, flags, Scope::Service)
    }

    /// Reads a file for where its history store is (`smarty export` and `import`): every
    /// value must parse, but only the `[store]` settings must make sense here (the
    /// service's environment, its token for instance, may not be this shell's).
    ///
    /// # Errors
    /// An unreadable file, or a [`ConfigError`].
    pub fn load_for_store(path: &Path) -> Result<Config> {
        Self::load_scoped(Some(path), &Overrides::default(), Scope::Store)
    }

    /// Reads a file (if any) for the web server's settings (`smarty fleet serve`): `[http]`
    /// and `[tariff]`, overridden from the environment (`SMARTY_HTTP_TOKEN`, …) and then
    /// from `flags`; only those sections must make sense (the file may be a household's,
    /// with meters, or hold nothing else).
    ///
    /// # Errors
    /// An unreadable file, or a [`ConfigError`].
    pub fn load_for_web(path: Option<&Path>, flags: &Overrides) -> Result<Config> {
        Self::load_scoped(path, flags, Scope::Web)
    }

    fn load_scoped(path: Option<&Path>, flags: &Overrides, scope: Scope) -> Result<Config> {
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                name.starts_with("SMARTY_")
                    .then(|| (name, value.to_string_lossy().into_owned()))
            })
            .collect();
        let config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                // Editors on Windows start files with a byte-order mark.
                let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
                let name = path.display().to_string();
                Self::build(Some((text, &name)), &env, flags, scope)?
            }
            None => Self::build(None, &env, flags, scope)?,
        };
        Ok(config)
    }

    /// Parses `text` (named `origin` in messages) with the environment `env`.
    ///
    /// # Errors
    /// As [`Config::from_layers`].
    #[cfg(test)]
    pub fn parse(text: &str, origin: &str, env: &[(String, String)]) -> Result<Config> {
        Ok(Self::from_layers(
            Some((text, origin)),
            env,
            &Overrides::default(),
        )?)
    }

    /// The configuration of a file (`(text, name)`, or none), the environment `env` and the
    /// command line `flags`, validated.
    ///
    /// # Errors
    /// Every mistake: syntax errors (then only those), values of the wrong type or unknown
    /// fields, and invalid settings, each with its place.
    #[cfg(test)]
    pub fn from_layers(
        file: Option<(&str, &str)>,
        env: &[(String, String)],
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        Self::build(file, env, flags, Scope::Service)
    }

    fn build(
        file: Option<(&str, &str)>,
        env: &[(String, String)],
        flags: &Overrides,
        scope: Scope,
    ) -> Result<Config, ConfigError> {
        let origin = file.map_or("the command line", |(_, name)| name).to_owned();
        let fail = |mistakes: Vec<Mistake>| ConfigError {
            origin: origin.clone(),
            mistakes,
        };
        let mut tree = match file {
            Some((text, _)) => Tree::parse(text).map_err(|errors| {
                fail(
                    errors
                        .into_iter()
                        .map(|(at, message)| Mistake {
                            at,
                            path: String::new(),
                            message,
                        })
                        .collect(),
                )
            })?,
            None => Tree::empty(),
        };
        let mut mistakes = Vec::new();
        // Flags first, so that the environment finds the meter the flags make (the tree
        // keeps the value of the higher layer whatever the order); flags that need their
        // section last, when every layer had its say about it.
        for o in flags.0.iter().filter(|o| o.needs_section.is_none()) {
            tree.set(&segments(&o.path), &o.value, &o.at);
        }
        apply_env(&mut tree, env);
        for o in flags.0.iter().filter(|o| o.needs_section.is_some()) {
            let path = segments(&o.path);
            if tree.has_table(&path[..path.len().saturating_sub(1)]) {
                tree.set(&path, &o.value, &o.at);
            } else {
                mistakes.push(Mistake {
                    at: o.at.clone(),
                    path: o.path.clone(),
                    message: o.needs_section.clone().unwrap_or_default(),
                });
            }
        }
        let password_file = tree
            .take(&[Seg::Key("mqtt"), Seg::Key("password_file")])
            .and_then(|node| match layers::deserialize_one::<PathBuf>(&node) {
                Ok(path) => Some(path),
                Err(mistake) => {
                    mistakes.push(mistake);
                    None
                }
            });
        let (config, found) = layers::deserialize_all::<Config>(&mut tree);
        let failed: Vec<String> = found.iter().map(|m| m.path.clone()).collect();
        mistakes.extend(found);
        if let Some(mut config) = config {
            config.mqtt_password_file = password_file;
            let kept = tree.kept_items("meter");
            for problem in config.problems() {
                if scope == Scope::Store
                    && !problem
                        .paths
                        .iter()
                        .any(|p| within(p, "store") || p == "state_dir")
                {
                    continue;
                }
                if scope == Scope::Web
                    && !problem
                        .paths
                        .iter()
                        .any(|p| within(p, "http") || within(p, "tariff"))
                {
                    continue;
                }
                let paths: Vec<String> = problem.paths.iter().map(|p| remap(p, &kept)).collect();
                let overlaps = |p: &String| failed.iter().any(|f| !f.is_empty() && within(p, f));
                if paths.iter().any(overlaps) {
                    continue; // a consequence of a mistake reported already
                }
                let first = paths.first().map_or("", String::as_str);
                mistakes.push(Mistake {
                    at: tree.locate(first),
                    path: first.to_owned(),
                    message: problem.message,
                });
            }
            if mistakes.is_empty() {
                return Ok(config);
            }
        }
        mistakes.sort_by_key(|m| match &m.at {
            Origin::File { line, column } => (0, *line, *column),
            Origin::Env(_) => (1, 0, 0),
            Origin::Flag(_) => (2, 0, 0),
            Origin::Nowhere => (3, 0, 0),
        });
        Err(fail(mistakes))
    }

    /// Every mistake in settings that each parsed (ranges, addresses, sources, settings that
    /// exclude each other, two listeners on one address, two meters on one source).
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut problem = |paths: &[&str], message: String| {
            out.push(Problem {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                message,
            });
        };
        if self.meters.is_empty() {
            problem(&["meter"], "no [[meter]] configured".to_owned());
        }
        let mut names = BTreeSet::new();
        let mut sources: Vec<(String, String)> = Vec::new();
        for (i, meter) in self.meters.iter().enumerate() {
            let at = |field: &str| format!("meter[{i}].{field}");
            let name = &meter.name;
            let who = format!("meter {name:?}");
            if let Err(rule) = check_meter_name(name) {
                problem(&[&at("name")], format!("{who}: {rule}"));
            } else if !names.insert(name.to_ascii_lowercase()) {
                problem(&[&at("name")], format!("two meters are named {name:?}"));
            }
            if meter.key.is_some() && meter.key_file.is_some() {
                problem(
                    &[&at("key_file"), &at("key")],
                    format!("{who}: give key or key_file, not both"),
                );
            }
            if let Some(key) = &meter.key
                && let Err(e) = smarty_p1::Key::from_hex(key.expose())
            {
                problem(&[&at("key")], format!("{who}: invalid key: {e}"));
            }
            if meter.auth_key.is_some() && meter.aad.is_some() {
                problem(
                    &[&at("aad"), &at("auth_key")],
                    format!("{who}: give auth_key or aad, not both"),
                );
            } else if let Err(e) = crate::key::load_aad(
                meter.auth_key.as_ref().map(Secret::expose),
                meter.aad.as_ref().map(Secret::expose),
                crate::key::Settings::Meter,
            ) {
                let field = if meter.aad.is_some() {
                    "aad"
                } else {
                    "auth_key"
                };
                problem(&[&at(field)], format!("{who}: {e:#}"));
            }
            if let Err(e) = meter.serial_format() {
                problem(&[&at("serial")], format!("{who}: {e}"));
            }
            if !METER_INTERVAL_S.contains(&meter.interval_s) {
                problem(
                    &[&at("interval_s")],
                    format!(
                        "{who}: interval_s must be from {} to {} seconds",
                        METER_INTERVAL_S.start(),
                        METER_INTERVAL_S.end()
                    ),
                );
            }
            if !BAUD.contains(&meter.baud) {
                problem(
                    &[&at("baud")],
                    format!(
                        "{who}: baud must be from {} to {}",
                        BAUD.start(),
                        BAUD.end()
                    ),
                );
            }
            if let Err(e) = check_source(&meter.source) {
                problem(&[&at("source")], format!("{who}: source: {e:#}"));
            } else {
                let same = same_source_key(&meter.source);
                if let Some((other, _)) = sources.iter().find(|(_, s)| *s == same) {
                    problem(
                        &[&at("source"), other],
                        format!(
                            "{who} reads the same source as another meter ({}): two readers \
                             of one source each get part of its bytes",
                            crate::source::redact_password(&meter.source)
                        ),
                    );
                } else {
                    sources.push((at("source"), same));
                }
            }
        }
        if let Some(mqtt) = &self.mqtt {
            if let Err(e) = mqtt.check() {
                let message = format!("{e:#}");
                let field = mentioned_field("mqtt", &message);
                problem(&[&field], message);
            }
            if mqtt.keep_alive_s > MQTT_KEEP_ALIVE_MAX_S {
                problem(
                    &["mqtt.keep_alive_s"],
                    format!(
                        "[mqtt]: keep_alive_s must be at most {MQTT_KEEP_ALIVE_MAX_S} seconds \
                         (MQTT's limit)"
                    ),
                );
            }
        }
        if let Some(fleet) = &self.fleet {
            for (field, message) in fleet.problems() {
                problem(&[field], message);
            }
        }
        if let Some(guard) = &self.guard {
            for (field, message) in guard.problems() {
                problem(&[&format!("guard.{field}")], message);
            }
        }
        if let Some(tariff) = &self.tariff
            && let Err(e) = tariff.check()
        {
            // Shown at the period, or the setting, it concerns.
            let field = match (e.period(), e.field()) {
                (Some(_), _) => "tariff.periods".to_owned(),
                (None, Some(field)) => format!("tariff.{field}"),
                (None, None) => "tariff".to_owned(),
            };
            problem(&[&field], e.to_string());
        }
        let mut listeners: Vec<(&str, &str, Vec<SocketAddr>)> = Vec::new();
        let http = self.http.clone().unwrap_or_default();
        if http.enabled {
            match http.check() {
                Ok(()) => {
                    if let Ok(addrs) = resolve(&http.listen) {
                        listeners.push(("http.listen", "[http]", addrs));
                    }
                }
                Err(e) => {
                    let field = format!("http.{}", e.field());
                    problem(&[&field], format!("{:#}", anyhow::Error::from(e)));
                }
            }
        }
        if let Some(proxy) = &self.proxy {
            match resolve(&proxy.listen) {
                Ok(addrs) => listeners.push(("proxy.listen", "[proxy]", addrs)),
                Err(e) => problem(&["proxy.listen"], format!("[proxy]: listen: {e}")),
            }
            if let Some(name) = &proxy.meter
                && !self.meters.iter().any(|m| &m.name == name)
            {
                problem(
                    &["proxy.meter"],
                    format!("[proxy]: meter {name:?} is not configured"),
                );
            }
        }
        if !HEALTHY_WITHIN_S.contains(&http.healthy_within_s) {
            problem(
                &["http.healthy_within_s"],
                format!(
                    "[http]: healthy_within_s must be from {} to {} seconds",
                    HEALTHY_WITHIN_S.start(),
                    HEALTHY_WITHIN_S.end()
                ),
            );
        }
        if let Some(token) = &http.token
            && token.expose().trim().chars().count() < smarty_web::config::MIN_TOKEN_LEN
        {
            problem(
                &["http.token"],
                format!(
                    "[http]: the token is too short (use at least {} characters, e.g. from \
                     `openssl rand -hex 16`)",
                    smarty_web::config::MIN_TOKEN_LEN
                ),
            );
        }
        for (i, (path, section, addrs)) in listeners.iter().enumerate() {
            for (other_path, other_section, other) in &listeners[..i] {
                if let Some(addr) = addrs.iter().find(|a| other.iter().any(|o| overlap(a, o))) {
                    problem(
                        &[path, other_path],
                        format!(
                            "{section} listens on {addr}, where {other_section} listens too: \
                             give each its own port"
                        ),
                    );
                }
            }
        }
        if let Some(store) = &self.store {
            for (field, message) in store.problems() {
                problem(&[&format!("store.{field}")], format!("[store]: {message}"));
            }
        }
        out
    }
}

/// `meter[1].x` → `meter[3].x` when the deserialized meter 1 is the table at position 3.
fn remap(path: &str, kept: &[usize]) -> String {
    let Some(rest) = path.strip_prefix("meter[") else {
        return path.to_owned();
    };
    let Some((index, tail)) = rest.split_once(']') else {
        return path.to_owned();
    };
    match index.parse::<usize>().ok().and_then(|i| kept.get(i)) {
        Some(original) => format!("meter[{original}]{tail}"),
        None => path.to_owned(),
    }
}

/// Whether one of two paths holds the other (`meter` holds `meter[1].key`).
fn within(a: &str, b: &str) -> bool {
    let holds = |outer: &str, inner: &str| {
        inner == outer
            || inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with(['.', '[']))
    };
    holds(a, b) || holds(b, a)
}

/// The field of `section` a message names (`mqtt.qos must be …` → `mqtt.qos`), else the
/// section.
fn mentioned_field(section: &str, message: &str) -> String {
    let prefix = format!("{section}.");
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .find_map(|word| word.strip_prefix(&prefix))
        .map_or_else(|| section.to_owned(), |field| format!("{section}.{field}"))
}

/// The socket addresses of `host:port`.
fn resolve(address: &str) -> Result<Vec<SocketAddr>, String> {
    use std::net::ToSocketAddrs as _;
    address
        .to_socket_addrs()
        .map(Iterator::collect)
        .map_err(|_| format!("{address:?} is not host:port (e.g. 127.0.0.1:2001)"))
}

/// Whether two listeners on `a` and `b` would take the same port: the same address, or a
/// wildcard address covering the other (`[::]` covers IPv4 too on Linux).
fn overlap(a: &SocketAddr, b: &SocketAddr) -> bool {
    use std::net::IpAddr;
    let covers = |wild: &SocketAddr, other: &SocketAddr| match wild.ip() {
        IpAddr::V6(ip) => ip.is_unspecified(),
        IpAddr::V4(ip) => ip.is_unspecified() && other.is_ipv4(),
    };
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}

/// Checks a meter's source without opening it: a network address must be complete; devices
/// and files may appear after the service starts.
fn check_source(spec: &str) -> Result<()> {
    let scheme = spec.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        _ if spec.trim().is_empty() => {
            anyhow::bail!("empty: give a serial device, tcp://HOST:PORT, a file or -")
        }
        Some("tcp") => crate::source::TcpSource::new(&spec["tcp://".len()..]).map(drop),
        Some("mqtt" | "mqtts") => crate::source::MqttSource::new(spec).map(drop),
        Some(_) => anyhow::bail!(
            "unknown kind of source: use a serial device, tcp://HOST:PORT, \
             mqtt://HOST[:PORT]/TOPIC, a file or -"
        ),
        None => Ok(()),
    }
}

/// What two sources have in common when they are one: a network address in lower case, a
/// path with its links resolved.
fn same_source_key(spec: &str) -> String {
    if spec.contains("://") {
        return crate::source::redact_password(spec).to_ascii_lowercase();
    }
    std::fs::canonicalize(spec).map_or_else(|_| spec.to_owned(), |p| p.display().to_string())
}

/// Applies the `SMARTY_…` variables of `env` to the tree.
fn apply_env(tree: &mut Tree, env: &[(String, String)]) {
    const SECTIONS: [&str; 7] = ["mqtt", "proxy", "http", "store", "tariff", "guard", "fleet"];
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("SMARTY_") else {
            continue;
        };
        if value.is_empty() {
            continue; // set but empty counts as unset (systemd's Environment=X=)
        }
        let at = Origin::Env(name.clone());
        if rest == "STATE_DIR" {
            tree.set(&[Seg::Key("state_dir")], value, &at);
            continue;
        }
        if let Some(section) = SECTIONS
            .iter()
            .find(|s| rest.starts_with(&format!("{}_", s.to_ascii_uppercase())))
        {
            let field = rest[section.len() + 1..].to_ascii_lowercase();
            tree.set(&[Seg::Key(section), Seg::Key(&field)], value, &at);
        } else if let Some(rest) = rest.strip_prefix("METER_") {
            // The meter whose name (upper case, '-' as '_') starts the rest; the longest wins.
            let names = tree.item_names("meter");
            let found = names
                .iter()
                .enumerate()
                .filter_map(|(i, name)| {
                    let prefix = format!("{}_", env_name(name.as_deref()?));
                    let field = rest.strip_prefix(&prefix)?;
                    Some((prefix.len(), i, field.to_ascii_lowercase()))
                })
                .max();
            match found {
                Some((_, i, field)) => {
                    tree.set(
                        &[Seg::Key("meter"), Seg::Index(i), Seg::Key(&field)],
                        value,
                        &at,
                    );
                }
                None => tracing::warn!("{name}: no meter of this name is configured; ignored"),
            }
        }
        // Other SMARTY_ variables (SMARTY_KEY of `smarty read`, SMARTY_SOURCE_MQTT_PASSWORD of
        // an MQTT source) are not settings of this file.
    }
}

fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
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

/// Reads a secret file (a key, a password, a token): its content without a byte-order mark
/// and the final line break. Warns when other users of the machine can read the file.
///
/// # Errors
/// When the file cannot be read (the message names the file, never its content).
pub fn read_secret(path: &Path) -> Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret file {}", path.display()))?;
    warn_if_readable_by_others(path);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    Ok(Secret::from(text.trim_end_matches(['\r', '\n']).to_owned()))
}

/// Warns when the secret file `path` (a key, a password) can be read by every user of the
/// machine: its mode gives "others" access. Files of a group (`0640 root:smarty`) are fine.
#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Warns when the secret file `path` (a key, a password) can be read by every user of the
/// machine: its mode gives "others" access. Files of a group (`0640 root:smarty`) are fine.
#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o007 != 0
    {
        tracing::warn!(
            "{} is readable by other users of this machine (mode {:o}): chmod o-rwx {}",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        );
    }
}

#[cfg(test)]
mod tests;
