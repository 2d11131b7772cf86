//! `smarty store migrate`: a history copied into another store and checked
//! ([`smarty_store::copy`]).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use smarty_store::config::{Location, StoreConfig};
use smarty_store::{Store, StoreError};

use crate::cli::StoreCommand;

/// Runs `smarty store …`.
///
/// # Errors
/// A location that is not one, a source that does not exist, a destination that cannot be
/// written (another process writes it), database errors, or a copy that does not match.
pub fn run(command: StoreCommand) -> Result<()> {
    match command {
        StoreCommand::Migrate { from, to, quiet } => migrate(&from, &to, quiet),
    }
}

fn migrate(from: &str, to: &str, quiet: bool) -> Result<()> {
    let source = Location::parse(from).context("--from")?;
    let destination = Location::parse(to).context("--to")?;
    if source == destination {
        bail!("--from and --to name the same store ({source})");
    }
    if let Some(path) = source.sqlite_path()
        && !path.exists()
    {
        bail!("--from: no store at {}", path.display());
    }
    let started = Instant::now();
    let from_store = Store::open_read_only(&StoreConfig::in_location(source.clone()))
        .with_context(|| format!("cannot open the store {source}"))?;
    let to_store = match Store::open(&StoreConfig::in_location(destination.clone())) {
        Ok(store) => store,
        Err(e @ StoreError::Locked { .. }) => {
            bail!("{e}: stop it while migrating, then point it at the new store")
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open the store {destination}")),
    };
    let mut last_meter = String::new();
    let report = smarty_store::copy::copy(&from_store, &to_store, |meter, _day| {
        if !quiet && meter != last_meter {
            crate::output::note(format_args!(
                "store: copying meter {meter:?} into {destination}"
            ));
            last_meter = meter.to_owned();
        }
    })
    .with_context(|| format!("cannot copy {source} into {destination}"))?;
    for (meter, counts) in &report.meters {
        let energy = counts
            .energy_sums
            .get("energy_import_wh")
            .map_or_else(String::new, |wh| {
                format!(", {:.3} kWh imported", *wh as f64 / 1000.0)
            });
        crate::output::note(format_args!(
            "store: meter {meter:?}: {} readings, {} 15-minute periods, {} days, {} M-Bus \
             captures{energy}: the same in {destination} as in {source}",
            counts.readings, counts.periods, counts.days, counts.captures
        ));
    }
    crate::output::note(format_args!(
        "store: {} meter(s) copied in {:.1} s",
        report.meters.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}
