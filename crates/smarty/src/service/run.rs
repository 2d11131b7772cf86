//! `smarty run`: starts the outputs, then every meter, and runs until interrupted.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::bus::Bus;
use super::guard::MeterGuard;
use super::meter::{self, Extras};
use crate::cli::RunArgs;
use crate::config::{Config, Overrides};
use crate::key::KEY_ENV;

/// The command line of `smarty run` as overrides of the configuration (flags over the
/// environment over the file): the outputs' flags always, and without `--config` the one
/// meter's (with `--config`, clap refuses them: the file may hold several meters).
fn overrides(args: &RunArgs) -> Overrides {
    let mut o = Overrides::default();
    if args.config.is_none() {
        if let Some(source) = &args.source {
            o.flag("meter[0].source", source, "SOURCE");
        }
        o.flag("meter[0].name", &args.name, "--name");
        let key = &args.key;
        match (&key.key, &key.key_file) {
            (Some(hex), _) => o.flag("meter[0].key", hex, "--key"),
            (None, Some(file)) => o.flag("meter[0].key_file", file.display(), "--key-file"),
            (None, None) => {
                if let Some(hex) = std::env::var(KEY_ENV).ok().filter(|k| !k.trim().is_empty()) {
                    o.env("meter[0].key", hex, KEY_ENV);
                }
            }
        }
        if let Some(auth_key) = &key.auth_key {
            o.flag("meter[0].auth_key", auth_key, "--auth-key");
        }
        if let Some(aad) = &key.aad {
            o.flag("meter[0].aad", aad, "--aad");
        }
        if key.no_verify_tag {
            o.flag("meter[0].verify_tag", false, "--no-verify-tag");
        }
        if key.reject_replay {
            o.flag("meter[0].reject_replay", true, "--reject-replay");
        }
        o.flag("meter[0].baud", args.serial.baud, "--baud");
        let serial = args.serial.serial;
        o.flag(
            "meter[0].serial",
            format!("{}{}{}", serial.data_bits, serial.parity, serial.stop_bits),
            "--serial",
        );
        o.flag(
            "meter[0].interval_s",
            args.interval.as_secs_f64(),
            "--interval",
        );
    }
    if let Some(dir) = &args.state_dir {
        o.flag("state_dir", dir.display(), "--state-dir");
    }
    if let Some(url) = &args.mqtt {
        o.flag("mqtt.url", url, "--mqtt");
    }
    match &args.publish_raw {
        Some(Some(url)) => o.flag("fleet.url", url, "--publish-raw"),
        Some(None) => o.flag_in_section(
            "mqtt.publish_raw",
            true,
            "--publish-raw",
            "--publish-raw needs --mqtt URL or an [mqtt] section (or a fleet's URL: \
             --publish-raw nats://HOST:PORT or mqtt://HOST:PORT)",
        ),
        None => {}
    }
    if let Some(listen) = &args.proxy {
        o.flag("proxy.listen", listen, "--proxy");
    }
    if let Some(listen) = &args.http {
        o.flag("http.listen", listen, "--http");
        o.flag("http.enabled", true, "--http");
    }
    if args.no_http {
        o.flag("http.enabled", false, "--no-http");
    }
    if args.no_store {
        o.flag("store.enabled", false, "--no-store");
    }
    o
}

/// Runs `smarty run`.
///
/// # Errors
/// An invalid configuration, or an output that cannot start.
pub async fn run(args: RunArgs) -> Result<()> {
    let mut config = Config::load_with(args.config.as_deref(), &overrides(&args))?;
    if let Some(database) = &args.database {
        let section = config.store.get_or_insert_with(Default::default);
        match smarty_store::config::Location::parse(database).context("--database")? {
            smarty_store::config::Location::Sqlite(path) => {
                section.path = Some(path);
                section.url = None;
            }
            _ => {
                section.url = Some(database.clone());
                section.path = None;
            }
        }
        section.enabled = true;
    }
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
    let (started, store) = super::outputs::start(&config, &mut bus, &mut outputs).await?;
    if started == 0 {
        tracing::warn!(
            "no output configured: add [mqtt], [proxy], [http] or [store] to the configuration (or --mqtt, --proxy, --http)"
        );
    }
    let (stop, stopping) = watch::channel(false);
    let mut meters = JoinSet::new();
    let mut names = HashMap::new();
    let guard_settings = std::sync::Arc::new(config.guard());
    let guard_config = config.guard_config();
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
            store: store.clone(),
            stop: stopping.clone(),
            guard: guard_config.map(|c| MeterGuard::new(c, std::sync::Arc::clone(&guard_settings))),
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

/// Ctrl-C or SIGTERM (systemd's stop; Windows has Ctrl-C only).
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(not(unix))]
    let mut term: Option<Never> = None;
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    const KEY: &str = "000102030405060708090A0B0C0D0E0F";

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let argv = ["smarty", "run"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Run(args) => Ok(args),
            other => panic!("not run: {other:?}"),
        }
    }

    fn config(text: Option<&str>, args: &[&str]) -> Config {
        let args = parse(args).unwrap();
        Config::from_layers(text.map(|t| (t, "smarty.toml")), &[], &overrides(&args)).unwrap()
    }

    const FILE: &str = "state_dir = \"/var/lib/a\"\n\
        [[meter]]\nname = \"home\"\nsource = \"/dev/ttyUSB0\"\n\
        [mqtt]\nurl = \"mqtt://a:1883\"\n\
        [proxy]\nlisten = \"127.0.0.1:2001\"\n\
        [http]\nlisten = \"127.0.0.1:8080\"\nenabled = false\n\
        [store]\nenabled = true\n";

    #[test]
    fn every_output_flag_applies_over_the_file() {
        let file = config(Some(FILE), &["--config", "f"]);
        assert_eq!(file.mqtt.as_ref().unwrap().url, "mqtt://a:1883");
        assert!(!file.mqtt.as_ref().unwrap().publish_raw);
        let c = config(
            Some(FILE),
            &[
                "--config",
                "f",
                "--mqtt",
                "mqtt://b:1884",
                "--publish-raw",
                "--proxy",
                "127.0.0.1:2002",
                "--http",
                "127.0.0.1:8081",
                "--state-dir",
                "/var/lib/b",
                "--no-store",
            ],
        );
        let mqtt = c.mqtt.unwrap();
        assert_eq!(mqtt.url, "mqtt://b:1884");
        assert!(mqtt.publish_raw);
        assert_eq!(c.proxy.unwrap().listen, "127.0.0.1:2002");
        let http = c.http.unwrap();
        assert_eq!(http.listen, "127.0.0.1:8081");
        assert!(http.enabled, "--http turns on what the file turned off");
        assert_eq!(c.state_dir, Some(PathBuf::from("/var/lib/b")));
        assert!(!c.store.unwrap().enabled);
        // The meter stays the file's.
        assert_eq!(c.meters.len(), 1);
        assert_eq!(c.meters[0].name, "home");

        let c = config(
            Some(FILE.replace("enabled = false", "").as_str()),
            &["-c", "f", "--no-http"],
        );
        assert!(!c.http.unwrap().enabled);
    }

    #[test]
    fn without_a_file_the_flags_make_the_meter() {
        let c = config(
            None,
            &[
                "tcp://127.0.0.1:2001",
                "--name",
                "garage",
                "--key",
                KEY,
                "--auth-key",
                KEY,
                "--no-verify-tag",
                "--reject-replay",
                "--baud",
                "9600",
                "--serial",
                "7E1",
                "--interval",
                "500ms",
                "--no-store",
                "--no-http",
            ],
        );
        let meter = &c.meters[0];
        assert_eq!(meter.name, "garage");
        assert_eq!(meter.source, "tcp://127.0.0.1:2001");
        assert_eq!(meter.key.as_ref().unwrap().expose(), KEY);
        assert_eq!(meter.auth_key.as_ref().unwrap().expose(), KEY);
        assert!(!meter.verify_tag);
        assert!(meter.reject_replay);
        assert_eq!((meter.baud, meter.serial.as_str()), (9600, "7E1"));
        assert_eq!(meter.interval_s, 0.5);
        let c = config(
            None,
            &["/dev/ttyUSB0", "--key-file", "/etc/key", "--aad", "none"],
        );
        let meter = &c.meters[0];
        assert_eq!(meter.key_file, Some(PathBuf::from("/etc/key")));
        assert_eq!(meter.aad.as_ref().unwrap().expose(), "none");
        assert_eq!((meter.name.as_str(), meter.interval_s), ("meter", 10.0));
        assert_eq!(
            parse(&["-", "--interval", "10"]).unwrap().interval,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn the_meter_flags_are_refused_next_to_a_file() {
        for flag in [
            &["SOURCE"][..],
            &["--name", "x"],
            &["--key", KEY],
            &["--key-file", "k"],
            &["--auth-key", KEY],
            &["--aad", "none"],
            &["--no-verify-tag"],
            &["--reject-replay"],
            &["--baud", "9600"],
            &["--serial", "7E1"],
            &["--interval", "1s"],
        ] {
            let err = parse(&[&["--config", "f"], flag].concat()).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{flag:?}: {err}"
            );
        }
    }

    #[test]
    fn publish_raw_needs_mqtt() {
        let args = parse(&["-", "--publish-raw"]).unwrap();
        let err = Config::from_layers(None, &[], &overrides(&args)).unwrap_err();
        assert!(
            err.to_string()
                .contains("--publish-raw: --publish-raw needs --mqtt URL"),
            "{err}"
        );
    }

    #[test]
    fn publish_raw_with_a_url_feeds_a_fleet() {
        let args = parse(&["-", "--publish-raw", "nats://127.0.0.1:4222"]).unwrap();
        let c = Config::from_layers(None, &[], &overrides(&args)).unwrap();
        assert_eq!(c.fleet.unwrap().url, "nats://127.0.0.1:4222");
        assert!(c.mqtt.is_none(), "the fleet form needs no [mqtt]");
        let args = parse(&["--publish-raw", "mqtt://h:1883", "/dev/ttyUSB0"]).unwrap();
        let c = Config::from_layers(None, &[], &overrides(&args)).unwrap();
        assert_eq!(c.fleet.unwrap().url, "mqtt://h:1883");
        // Over the file's [fleet] url.
        let file = format!("{FILE}[fleet]\nurl = \"nats://file:4222\"\nreplicas = 3\n");
        let c = config(Some(&file), &["--config", "f"]);
        assert_eq!(c.fleet.as_ref().unwrap().url, "nats://file:4222");
        let c = config(
            Some(&file),
            &["--config", "f", "--publish-raw", "nats://flag:4222"],
        );
        let fleet = c.fleet.unwrap();
        assert_eq!(
            (fleet.url.as_str(), fleet.replicas),
            ("nats://flag:4222", 3)
        );
        // A source where the URL goes says how to write it.
        let err = parse(&["--publish-raw", "/dev/ttyUSB0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("without a URL after SOURCE"), "{err}");
    }
}

/// No SIGTERM to wait for, where there is none.
#[cfg(not(unix))]
enum Never {}

#[cfg(not(unix))]
impl Never {
    async fn recv(&mut self) -> Option<()> {
        match *self {}
    }
}
