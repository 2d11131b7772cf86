//! `smarty export` and `smarty import`.

use anyhow::Result;

use crate::cli::{ExportArgs, ImportArgs};

/// Runs `smarty export` (docs/storage.md): the history of one meter as CSV or JSON.
///
/// # Errors
/// No store, an unknown meter, or an output that cannot be written.
pub async fn export(args: ExportArgs) -> Result<()> {
    super::export::run(&args)
}

/// Runs `smarty import` (docs/storage.md): backfills the store from a capture of frames or a
/// `smarty read --format json` file.
///
/// # Errors
/// No store, an unreadable file, or a wrong key.
pub async fn import(args: ImportArgs) -> Result<()> {
    super::import::run(args).await
}
