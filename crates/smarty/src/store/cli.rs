//! `smarty export` and `smarty import`.

use anyhow::Result;

use crate::cli::{ExportArgs, ImportArgs};

/// Runs `smarty export`.
///
/// # Errors
/// No store, an unknown meter, or an output that cannot be written.
pub async fn export(_args: ExportArgs) -> Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Runs `smarty import`.
///
/// # Errors
/// No store, an unreadable file, or a wrong key.
pub async fn import(_args: ImportArgs) -> Result<()> {
    anyhow::bail!("not implemented yet")
}
