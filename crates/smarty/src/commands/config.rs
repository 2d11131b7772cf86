//! `smarty config check|example`.

use std::io::Write as _;

use crate::cli::ConfigCommand;

/// Runs `smarty config example` (prints the commented example) or `smarty config check FILE`
/// (validates a file and says what it starts).
///
/// # Errors
/// An unreadable or invalid file, or an output that cannot be written.
pub fn run(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Example => {
            let mut out = std::io::stdout().lock();
            out.write_all(crate::config::EXAMPLE.as_bytes())?;
            out.flush()?;
            Ok(())
        }
        ConfigCommand::Check { file } => {
            let config = crate::config::Config::load(&file)?;
            let outputs = crate::service::describe_outputs(&config)
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", file.display()))?;
            writeln!(
                std::io::stdout().lock(),
                "{}: ok, {} meter{}, {}",
                file.display(),
                config.meters.len(),
                if config.meters.len() == 1 { "" } else { "s" },
                outputs.join(", ")
            )?;
            Ok(())
        }
    }
}
