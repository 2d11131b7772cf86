//! `smarty fleet …`: the meters' keys and the ingest workers ([`smarty_fleet`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, bail};
use smarty_fleet::ingest::{self, IngestConfig, IngestStats};
use smarty_fleet::keys::{self, MasterKey};
use smarty_store::Store;
use smarty_store::config::{Location, StoreConfig};

use crate::cli::{FleetCommand, FleetKeysCommand, FleetServeArgs, MasterKeyArgs};
use crate::config::{Config, Overrides};

/// Runs `smarty fleet …`.
///
/// # Errors
/// No master key or a wrong one, a database or NATS server that cannot be reached, a keys
/// file with mistakes (with their lines).
pub async fn run(command: FleetCommand) -> Result<()> {
    match command {
        FleetCommand::Keys { command } => keys_command(command),
        FleetCommand::Ingest {
            nats,
            database,
            master,
            batch,
            ack_wait_s,
            partitions,
            start_sequence,
            dead_letter_max_age,
            http,
        } => {
            let ack_wait = std::time::Duration::try_from_secs_f64(ack_wait_s)
                .ok()
                .filter(|d| !d.is_zero())
                .context("--ack-wait-s: a number of seconds above 0")?;
            let mut config = IngestConfig::default();
            config.batch_max = batch.max(1);
            config.ack_wait = ack_wait;
            config.partitions = partitions;
            config.start_sequence = start_sequence;
            config.dead_letters =
                smarty_fleet::stream::StreamConfig::dead_letters(dead_letter_max_age);
            ingest_command(&nats, &database, &master, config, http.as_deref()).await
        }
        FleetCommand::Serve(args) => serve_command(&args).await,
    }
}

/// The dashboard and API over the fleet's store (`smarty_web` with its fleet routes): the
/// meters are those the store holds, read page by page; there are no live telegrams. The
/// `[http]` settings come as for `smarty run` (configuration file, `SMARTY_HTTP_*`, `--http`):
/// an address other than loopback needs the access token.
async fn serve_command(args: &FleetServeArgs) -> Result<()> {
    let mut flags = Overrides::default();
    if let Some(listen) = &args.http {
        flags.flag("http.listen", listen, "--http");
    }
    let config = Config::load_for_web(args.config.as_deref(), &flags)?;
    let http = crate::service::outputs::http_config_with_token(&config)?;
    // Refused before the database is opened: no token, or too short a token, off loopback.
    http.check()?;
    let store = fleet_store(&args.database)?;
    let location = store.location().to_string();
    let server = smarty_web::bind(&http)
        .await?
        .fleet(smarty_web::FleetOptions::new(args.stale_after_s));
    // No live telegrams here: the channel stays open, and empty, while the server runs.
    let (events, _) = tokio::sync::broadcast::channel(1);
    let state = smarty_web::WebState {
        live: smarty_model::live::LiveState::new(Vec::<String>::new()),
        store: Some(store),
        tariff: Arc::new(config.tariff.clone().unwrap_or_default()),
        events: events.downgrade(),
        token: None,
    };
    crate::output::note(format_args!("fleet: serving the meters of {location}"));
    server
        .serve(state, crate::service::shutdown_signal())
        .await?;
    drop(events);
    Ok(())
}

/// The master key from its file or `SMARTY_MASTER_KEY`; never shown in an error.
fn master_key(args: &MasterKeyArgs) -> Result<MasterKey> {
    let (text, from) = match &args.master_key_file {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the master key file {}", path.display()))?,
            path.display().to_string(),
        ),
        None => match std::env::var("SMARTY_MASTER_KEY") {
            Ok(text) => (text, "SMARTY_MASTER_KEY".to_owned()),
            Err(_) => bail!(
                "no master key: give --master-key-file FILE or set SMARTY_MASTER_KEY (32 or 64 \
                 hex digits; make one with `head -c 16 /dev/urandom | xxd -p`)"
            ),
        },
    };
    text.trim()
        .parse::<MasterKey>()
        .with_context(|| format!("the master key of {from}"))
}

fn fleet_store(database: &str) -> Result<Store> {
    let location = Location::parse(database).context("--database")?;
    if !matches!(location, Location::Postgres(_)) {
        bail!("the fleet keeps its history and keys in PostgreSQL: --database postgres://…");
    }
    Store::open(&StoreConfig::in_location(location.clone()))
        .with_context(|| format!("cannot open the store {location}"))
}

fn keys_command(command: FleetKeysCommand) -> Result<()> {
    match command {
        FleetKeysCommand::Import {
            file,
            database,
            master,
        } => {
            let master = master_key(&master)?;
            let meters = read_keys(&file)?;
            let store = fleet_store(&database)?;
            let n = keys::import(&store, &master, &meters)?;
            crate::output::note(format_args!(
                "fleet: {n} meters and their keys (wrapped under the master key {}) in {}",
                master.check(),
                store.location()
            ));
            Ok(())
        }
        FleetKeysCommand::RotateMaster {
            database,
            master,
            new_master_key_file,
        } => {
            let old = master_key(&master)?;
            let new = master_key(&MasterKeyArgs {
                master_key_file: Some(new_master_key_file),
            })?;
            let store = fleet_store(&database)?;
            let n = keys::rotate_master(&store, &old, &new)?;
            crate::output::note(format_args!(
                "fleet: the keys of {n} meters are wrapped under the master key {} now (was {})",
                new.check(),
                old.check()
            ));
            Ok(())
        }
    }
}

fn read_keys(file: &Path) -> Result<Vec<smarty_fleet::keys_csv::MeterKeys>> {
    Ok(smarty_fleet::keys_csv::read_file(file)?)
}

async fn ingest_command(
    nats: &str,
    database: &str,
    master: &MasterKeyArgs,
    config: IngestConfig,
    http: Option<&str>,
) -> Result<()> {
    let master = master_key(master)?;
    let store = fleet_store(database)?;
    let client = smarty_fleet::nats::connect(nats, "smarty fleet ingest").await?;
    let stats = Arc::new(IngestStats::default());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    if let Some(listen) = http {
        let server = smarty_web::probe::bind(listen).await.context("--http")?;
        crate::output::note(format_args!(
            "fleet: metrics on http://{}/metrics",
            server.local_addr().context("--http")?
        ));
        let (metrics_stats, health_stats) = (Arc::clone(&stats), Arc::clone(&stats));
        let health_config = config.clone();
        let probe = smarty_web::probe::Probe {
            metrics: Arc::new(move || metrics_stats.render()),
            health: Arc::new(move || health_stats.health(&health_config)),
        };
        let mut stopped = stop.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.changed().await;
            };
            if let Err(e) = server.serve(probe, shutdown).await {
                tracing::error!("fleet: {e}");
            }
        });
    }
    let mut worker = tokio::spawn(ingest::run(
        client,
        store,
        master,
        config,
        Arc::clone(&stats),
        stop,
    ));
    tokio::select! {
        result = &mut worker => return result.context("the worker")?.map_err(Into::into),
        () = crate::service::shutdown_signal() => {}
    }
    // The batch in hand is stored and acknowledged before the worker ends.
    let _ = stop_tx.send(true);
    worker.await.context("the worker")??;
    crate::output::note(format_args!(
        "fleet: stopped after {} frames: {} readings stored, {} already stored, {} set aside",
        stats.frames.load(Ordering::Relaxed),
        stats.stored.load(Ordering::Relaxed),
        stats.duplicates.load(Ordering::Relaxed),
        stats
            .rejected
            .lock()
            .map(|r| r.values().sum::<u64>())
            .unwrap_or(0)
    ));
    Ok(())
}
