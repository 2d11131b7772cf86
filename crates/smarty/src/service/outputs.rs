//! Starts the configured outputs, each as its own task fed by the event channel.

use anyhow::{Context, Result};
use tokio::task::JoinSet;

use super::bus::{Accepts, Bus};
use super::{live, proxy};
use crate::config::{Config, read_secret};
use smarty_model::live::LiveState;
use smarty_store::Store;
use smarty_web::{HttpConfig, WebState};

/// The `[mqtt]` settings, with `password_file` read and the queue in the state directory.
///
/// # Errors
/// An unreadable password file.
pub fn mqtt_config(config: &Config) -> Result<Option<smarty_mqtt::MqttConfig>> {
    let Some(mqtt) = &config.mqtt else {
        return Ok(None);
    };
    let mut mqtt = mqtt.clone();
    // A password given itself (or from SMARTY_MQTT_PASSWORD) wins over the file.
    if mqtt.password.is_none()
        && let Some(file) = &config.mqtt_password_file
    {
        mqtt.password = Some(read_secret(file).context("[mqtt]: password_file")?);
    }
    if mqtt.queue_dir.is_none() {
        mqtt.queue_dir = config.state_dir.clone();
    }
    Ok(Some(mqtt))
}

/// Validates a configuration without starting anything; a [`Config`] read by
/// [`Config::load`] was checked already, one made by the program (`smarty demo`) is here.
///
/// # Errors
/// Every invalid setting, one per line.
pub fn check(config: &Config) -> Result<()> {
    let problems = config.problems();
    if problems.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{}",
        problems
            .into_iter()
            .map(|p| p.message)
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// The outputs `config` starts, in words (`smarty config check`): `mqtt`, `proxy`,
/// `dashboard on http://…`, `history in …`.
///
/// # Errors
/// Invalid `[store]` settings.
pub fn describe(config: &Config) -> Result<Vec<String>> {
    let mut parts = Vec::new();
    if config.mqtt.is_some() {
        parts.push("mqtt".to_owned());
    }
    let guard = config.guard();
    if let Some(guard_config) = config.guard_config() {
        let mut to = Vec::new();
        if guard.notify_url.is_some() {
            to.push("a notify URL");
        }
        if guard.command.is_some() {
            to.push("a command");
        }
        parts.push(format!(
            "guard at {} kW{}",
            guard_config.reference_power_kw,
            if to.is_empty() {
                String::new()
            } else {
                format!(" (alerts to {})", to.join(" and "))
            }
        ));
    }
    if let Some(fleet) = &config.fleet {
        parts.push(format!("raw frames to the fleet at {}", fleet.shown_url()));
    }
    if let Some(proxy) = &config.proxy {
        parts.push(format!("proxy on {}", proxy.listen));
    }
    let http = http_config(config);
    if http.enabled {
        parts.push(format!("dashboard on http://{}/", http.listen));
    }
    parts.push(match crate::config::store::from_config(config)? {
        Some(store) => format!("history in {}", store.location),
        None => "no history".to_owned(),
    });
    Ok(parts)
}

/// The `[http]` settings; the defaults (on, loopback) when the section is absent.
fn http_config(config: &Config) -> HttpConfig {
    config.http.clone().unwrap_or_default()
}

/// The `[http]` settings with `token_file` read into `token` (a token given itself, or by
/// `SMARTY_HTTP_TOKEN`, wins over the file).
///
/// # Errors
/// An unreadable token file.
pub(crate) fn http_config_with_token(config: &Config) -> Result<HttpConfig> {
    let mut http = http_config(config);
    if http.token.is_none()
        && let Some(file) = &http.token_file
    {
        http.token = Some(read_secret(file)?);
    }
    Ok(http)
}

/// Starts every configured output, subscribed to `bus` (the store and MQTT lossless, the
/// others lossy); returns how many were started, and the store when there is one (the
/// meters keep their replay counters in it).
///
/// # Errors
/// An output whose settings are invalid or that cannot bind its address.
pub async fn start(
    config: &Config,
    bus: &mut Bus,
    tasks: &mut JoinSet<Result<()>>,
) -> Result<(usize, Option<Store>)> {
    check(config)?;
    let mut started = 0;
    // The live state first: the store and MQTT report their health into it.
    let live = LiveState::new(config.meters.iter().map(|m| m.name.as_str()));
    let store = match crate::config::store::from_config(config)? {
        Some(settings) => {
            let store = Store::open(&settings)
                .with_context(|| format!("cannot open the store {}", settings.location))?;
            tasks.spawn(super::store_follow::follow(
                store.clone(),
                bus.lossless("store", Accepts::TELEGRAMS),
                live.output("store"),
                config.state_dir(),
            ));
            started += 1;
            Some(store)
        }
        None => {
            tracing::info!("history: off");
            None
        }
    };
    if let Some(mqtt) = mqtt_config(config)? {
        let output = smarty_mqtt::run_reporting(
            mqtt,
            bus.lossless("MQTT", Accepts::ALL),
            Some(live.mqtt_queue()),
            Some(live.output("mqtt")),
        );
        tasks.spawn(async move { Ok(output.await?) });
        started += 1;
    }
    let guard = config.guard();
    if guard.delivers() {
        // A token given itself (or by SMARTY_GUARD_NOTIFY_TOKEN) wins over the file.
        let token = match (&guard.notify_token, &guard.notify_token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(file)) => Some(read_secret(file).context("[guard]: notify_token_file")?),
            (None, None) => None,
        };
        let targets = super::guard_alerts::Targets::new(&guard, token)?;
        tasks.spawn(super::guard_alerts::run(
            targets,
            bus.lossless("alerts", Accepts::GUARDS),
            live.output("alerts"),
        ));
        started += 1;
    }
    if let Some(fleet) = &config.fleet {
        // Lossless from the bus: the feed holds frames in a queue of its own (bounded by
        // `queue_max`) while the server is away, so that it takes every event at once.
        tasks.spawn(super::fleet_feed::run(
            fleet.clone(),
            bus.lossless("fleet", Accepts::ALL),
        ));
        started += 1;
    }
    if let Some(settings) = &config.proxy {
        let server = proxy::bind(settings).await?;
        tasks.spawn(server.serve(bus.lossy()));
        started += 1;
    }
    let http = http_config(config);
    if http.enabled {
        let http = http_config_with_token(config)?;
        let server = match smarty_web::bind(&http).await.map_err(anyhow::Error::from) {
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
                store: store.clone(),
                tariff: std::sync::Arc::new(config.tariff.clone().unwrap_or_default()),
                events: bus.lossy_weak(),
                token: None,
            };
            let follower = live::follow(std::sync::Arc::clone(&live), bus.lossy());
            tasks.spawn(async move { Ok(server.serve(state, follower).await?) });
            started += 1;
        }
    }
    Ok((started, store))
}

#[cfg(test)]
mod tests {
    use smarty_model::secret::Secret;

    use super::*;

    #[test]
    fn the_token_comes_from_its_file_unless_given_itself() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
        let mut http = HttpConfig::default();
        http.listen = "0.0.0.0:8080".into();
        http.token_file = Some(file);
        let mut config = Config {
            http: Some(http),
            ..Config::default()
        };
        let http = http_config_with_token(&config).unwrap();
        http.check().unwrap();
        assert_eq!(
            http.token().unwrap().as_ref().map(Secret::expose),
            Some("0123456789abcdef0123")
        );
        // A token given itself (SMARTY_HTTP_TOKEN) wins.
        if let Some(http) = config.http.as_mut() {
            http.token = Some(Secret::from("fedcba9876543210fedc".to_owned()));
        }
        let http = http_config_with_token(&config).unwrap();
        assert_eq!(
            http.token().unwrap().as_ref().map(Secret::expose),
            Some("fedcba9876543210fedc")
        );
        // An unreadable file names itself.
        if let Some(http) = config.http.as_mut() {
            http.token = None;
            http.token_file = Some(dir.path().join("missing"));
        }
        let err = format!("{:#}", http_config_with_token(&config).unwrap_err());
        assert!(err.contains("missing"), "{err}");
    }
}
