//! Starts the configured outputs, each as its own task fed by the event channel.

use anyhow::{Context, Result};
use serde::Deserialize;
use tokio::task::JoinSet;

use super::bus::{Accepts, Bus};
use super::{metrics, mqtt, proxy};
use crate::analytics::tariff::TariffConfig;
use crate::config::{Config, read_secret};
use crate::store::{Store, StoreConfig};
use crate::web::{self, HttpConfig, WebState};

/// Deserialises an output section, naming it in errors.
fn section<T: for<'de> Deserialize<'de>>(name: &str, table: &toml::Table) -> Result<T> {
    T::deserialize(toml::Value::Table(table.clone()))
        .map_err(|e| anyhow::anyhow!("[{name}]: {}", e.message()))
}

/// The `[mqtt]` settings, with `password_file` read and the queue in the state directory.
///
/// # Errors
/// Unknown fields, an unreadable password file, or settings `MqttConfig::check` rejects.
pub fn mqtt_config(config: &Config, read_secrets: bool) -> Result<Option<mqtt::MqttConfig>> {
    let Some(table) = &config.mqtt else {
        return Ok(None);
    };
    let mut table = table.clone();
    if let Some(file) = table.remove("password_file") {
        let path = file
            .as_str()
            .context("[mqtt]: password_file must be a path")?
            .to_owned();
        // A password from the environment (SMARTY_MQTT_PASSWORD) wins over the file.
        if !table.contains_key("password") {
            let password = if read_secrets {
                read_secret(path.as_ref())?
            } else {
                String::from("(checked when the service starts)")
            };
            table.insert("password".into(), toml::Value::String(password));
        }
    }
    let mut mqtt: mqtt::MqttConfig = section("mqtt", &table)?;
    if mqtt.queue_dir.is_none() {
        mqtt.queue_dir = config.state_dir.clone();
    }
    mqtt.check().map_err(|e| anyhow::anyhow!("[mqtt]: {e:#}"))?;
    Ok(Some(mqtt))
}

/// Validates the output sections without starting anything (`smarty config check`).
///
/// # Errors
/// The first invalid setting, naming its section.
pub fn check(config: &Config) -> Result<()> {
    mqtt_config(config, false)?;
    if let Some(table) = &config.proxy {
        let settings: proxy::ProxyConfig = section("proxy", table)?;
        check_meter(config, "proxy", settings.meter.as_deref())?;
    }
    http_config(config)?.check()?;
    TariffConfig::from_table(config.tariff.as_ref())?;
    StoreConfig::from_config(config)?;
    Ok(())
}

/// The outputs `config` starts, in words (`smarty config check`): `mqtt`, `proxy`,
/// `dashboard on http://…`, `history in …`.
///
/// # Errors
/// Invalid `[http]` or `[store]` settings.
pub fn describe(config: &Config) -> Result<Vec<String>> {
    let mut parts = Vec::new();
    if config.mqtt.is_some() {
        parts.push("mqtt".to_owned());
    }
    if config.proxy.is_some() {
        parts.push("proxy".to_owned());
    }
    let http = http_config(config)?;
    if http.enabled {
        parts.push(format!("dashboard on http://{}/", http.listen));
    }
    parts.push(match StoreConfig::from_config(config)? {
        Some(store) => format!("history in {}", store.path.display()),
        None => "no history".to_owned(),
    });
    Ok(parts)
}

/// The `[http]` settings; the defaults (on, loopback) when the section is absent.
fn http_config(config: &Config) -> Result<HttpConfig> {
    match &config.http {
        Some(table) => section("http", table),
        None => Ok(HttpConfig::default()),
    }
}

fn check_meter(config: &Config, section: &str, meter: Option<&str>) -> Result<()> {
    if let Some(name) = meter
        && !config.meters.iter().any(|m| m.name == name)
    {
        anyhow::bail!("[{section}]: meter {name:?} is not configured");
    }
    Ok(())
}

/// Starts every configured output, subscribed to `bus` (the store and MQTT lossless, the
/// others lossy); returns how many were started.
///
/// # Errors
/// An output whose settings are invalid or that cannot bind its address.
pub async fn start(
    config: &Config,
    bus: &mut Bus,
    tasks: &mut JoinSet<Result<()>>,
) -> Result<usize> {
    check(config)?;
    let mut started = 0;
    // The metrics state first: the MQTT output reports its queue depth into it.
    let live = metrics::MetricsState::new(config.meters.iter().map(|m| m.name.as_str()));
    let store = match StoreConfig::from_config(config)? {
        Some(settings) => {
            let store = Store::open(&settings)
                .with_context(|| format!("cannot open the store {}", settings.path.display()))?;
            tasks.spawn(crate::store::follow(
                store.clone(),
                bus.lossless("store", Accepts::TELEGRAMS),
                live.output("store"),
            ));
            started += 1;
            Some(store)
        }
        None => {
            tracing::info!("history: off");
            None
        }
    };
    if let Some(mqtt) = mqtt_config(config, true)? {
        tasks.spawn(mqtt::run_reporting(
            mqtt,
            bus.lossless("MQTT", Accepts::ALL),
            Some(live.mqtt_queue_depth()),
        ));
        started += 1;
    }
    if let Some(table) = &config.proxy {
        let settings: proxy::ProxyConfig = section("proxy", table)?;
        let server = proxy::bind(&settings).await?;
        tasks.spawn(server.serve(bus.lossy()));
        started += 1;
    }
    let http = http_config(config)?;
    if http.enabled {
        let server = match web::bind(&http).await {
            Ok(server) => Some(server),
            // The default address is a convenience: if it is taken, run without it.
            Err(e) if config.http.is_none() => {
                tracing::warn!("{e:#}: no dashboard (set [http] listen, or --http ADDR)");
                None
            }
            Err(e) => return Err(e),
        };
        if let Some(server) = server {
            let state = WebState {
                live: std::sync::Arc::clone(&live),
                store,
                tariff: std::sync::Arc::new(TariffConfig::from_table(config.tariff.as_ref())?),
                events: bus.lossy_weak(),
                token: None,
            };
            let follower = metrics::follow(std::sync::Arc::clone(&live), bus.lossy());
            tasks.spawn(server.serve(state, follower));
            started += 1;
        }
    }
    Ok(started)
}
