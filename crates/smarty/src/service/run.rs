//! `smarty run`: starts the outputs, then every meter, and runs until interrupted.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::bus::Bus;
use super::meter::{self, Extras};
use crate::cli::RunArgs;
use crate::config::{Config, MeterConfig};
use crate::key::KEY_ENV;

/// The configuration of a `smarty run` without `--config`: one meter from the flags.
fn config_from_flags(args: &RunArgs) -> Result<Config> {
    let source = args.source.clone().context("give SOURCE or --config")?;
    let key = args
        .key
        .key
        .clone()
        .or_else(|| std::env::var(KEY_ENV).ok().filter(|k| !k.trim().is_empty()));
    let serial = args.serial.serial;
    let meter = MeterConfig {
        name: args.name.clone(),
        source,
        key: if args.key.key_file.is_some() {
            None
        } else {
            key
        },
        key_file: args.key.key_file.clone(),
        auth_key: args.key.auth_key.clone(),
        aad: args.key.aad.clone(),
        verify_tag: !args.key.no_verify_tag,
        reject_replay: args.key.reject_replay,
        baud: args.serial.baud,
        serial: format!("{}{}{}", serial.data_bits, serial.parity, serial.stop_bits),
        interval_s: args.interval,
    };
    let table = |field: &str, value: &Option<String>| {
        value.as_ref().map(|v| {
            let mut t = toml::Table::new();
            t.insert(field.into(), toml::Value::String(v.clone()));
            t
        })
    };
    let mut mqtt = table("url", &args.mqtt);
    if args.publish_raw {
        let mqtt = mqtt.as_mut().context("--publish-raw needs --mqtt")?;
        mqtt.insert("publish_raw".into(), toml::Value::Boolean(true));
    }
    let disabled = || {
        let mut t = toml::Table::new();
        t.insert("enabled".into(), toml::Value::Boolean(false));
        t
    };
    let mut http = if args.no_http {
        Some(disabled())
    } else {
        table("listen", &args.http)
    };
    // The API token comes from the environment only (never from the command line, where
    // other users could read it).
    if let Some(token) = std::env::var("SMARTY_HTTP_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        && !args.no_http
    {
        http.get_or_insert_with(toml::Table::new)
            .insert("token".into(), toml::Value::String(token));
    }
    Ok(Config {
        state_dir: args.state_dir.clone(),
        meters: vec![meter],
        mqtt,
        proxy: table("listen", &args.proxy),
        http,
        store: args.no_store.then(disabled),
        tariff: None,
    })
}

/// Runs `smarty run`.
///
/// # Errors
/// An invalid configuration, or an output that cannot start.
pub async fn run(args: RunArgs) -> Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => config_from_flags(&args)?,
    };
    serve(config, None).await
}

/// Runs the service of `config`. With `console`, the first meter also prints its telegrams
/// there and the service stops after `console.1` telegrams (`smarty demo`).
///
/// Every meter is checked before anything starts (a bad key or source is an error here);
/// after that, meters and outputs keep retrying what fails, and say so in the log and on
/// `/healthz`. A stop (Ctrl-C, SIGTERM) lets the meters log what they counted and hand over
/// what they hold, then gives the outputs [`SHUTDOWN_GRACE`] to deliver it.
///
/// # Errors
/// An invalid configuration, or an output that cannot start.
pub async fn serve(
    config: Config,
    console: Option<(Box<dyn crate::output::Sink + Send>, Option<u64>)>,
) -> Result<()> {
    let mut console = console;
    let prepared = config
        .meters
        .iter()
        .map(|m| meter::prepare(m.clone()).with_context(|| format!("meter {}", m.name)))
        .collect::<Result<Vec<_>>>()?;
    // Created by what uses it (the store, the MQTT queue, the replay counters), private to
    // this user: `main` sets the umask to 077 for the service.
    let state_dir = config.state_dir();
    let mut bus = Bus::new();
    let mut outputs = JoinSet::new();
    if super::outputs::start(&config, &mut bus, &mut outputs).await? == 0 {
        tracing::warn!(
            "no output configured: add [mqtt], [proxy], [http] or [store] to the configuration (or --mqtt, --proxy, --http)"
        );
    }
    let (stop, stopping) = watch::channel(false);
    let mut meters = JoinSet::new();
    let mut names = HashMap::new();
    for prepared in prepared {
        let name = prepared.name().to_owned();
        tracing::debug!(
            "meter {name}: source {}",
            crate::source::redact_password(&prepared.source())
        );
        let (console, limit) = match console.take() {
            Some((sink, limit)) => (Some(sink), limit),
            None => (None, None),
        };
        let extras = Extras {
            console,
            limit,
            state_dir: state_dir.clone(),
            stop: stopping.clone(),
        };
        let task = meters.spawn(
            meter::run(prepared, bus.publisher(), extras)
                .instrument(tracing::info_span!("meter", name = %name)),
        );
        names.insert(task.id(), name);
    }
    let result = tokio::select! {
        // Meters end only when their sources are finite (files); an output ends on error.
        finished = supervise(&mut meters, &names) => finished,
        failed = async {
            if outputs.is_empty() {
                std::future::pending::<()>().await;
            }
            join_all(&mut outputs).await
        } => failed.and(Err(anyhow::anyhow!("an output stopped"))),
        _ = shutdown_signal() => {
            tracing::info!("stopping");
            Ok(())
        }
    };
    // Stop the meters (they log their counts and hand over what they hold), close the
    // channels, and give the outputs a moment to deliver (the store commits, MQTT sends its
    // queue and publishes `offline`).
    let _ = stop.send(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, supervise(&mut meters, &names))
        .await
        .is_err()
    {
        meters.shutdown().await;
    }
    drop(bus);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, join_all(&mut outputs)).await;
    if drained.is_err() {
        tracing::warn!("outputs did not finish within {SHUTDOWN_GRACE:?}; stopping them");
    }
    outputs.shutdown().await;
    result
}

/// How long meters, then outputs, may take to deliver what they hold when the service stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Waits for every meter, logging each end as it happens (a meter that fails never waits
/// silently for the others); the first error (or panic) is the result.
async fn supervise(
    meters: &mut JoinSet<Result<()>>,
    names: &HashMap<tokio::task::Id, String>,
) -> Result<()> {
    let mut first_error = None;
    while let Some(done) = meters.join_next_with_id().await {
        let (id, error) = match done {
            Ok((id, Ok(()))) => {
                let name = names.get(&id).map_or("?", String::as_str);
                tracing::info!("meter {name}: stopped");
                continue;
            }
            Ok((id, Err(e))) => (id, e),
            Err(e) if e.is_panic() => (e.id(), anyhow::anyhow!("panicked: {e}")),
            Err(_) => continue,
        };
        let name = names.get(&id).map_or("?", String::as_str);
        tracing::error!("meter {name}: {error:#}");
        first_error.get_or_insert(error.context(format!("meter {name}")));
    }
    first_error.map_or(Ok(()), Err)
}

/// Waits for every task; the first error (or panic) wins.
async fn join_all(tasks: &mut JoinSet<Result<()>>) -> Result<()> {
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        let error = match done {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(e) if e.is_panic() => anyhow::anyhow!("a task panicked: {e}"),
            Err(_) => continue,
        };
        first_error.get_or_insert(error);
    }
    first_error.map_or(Ok(()), Err)
}

/// Ctrl-C or SIGTERM (systemd's stop).
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(term) => { term.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
