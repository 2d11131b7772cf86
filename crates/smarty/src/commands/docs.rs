//! `smarty completions SHELL` and `smarty manpage`: shell completions and manual pages, made
//! from the command-line definitions themselves (`clap_complete`, `clap_mangen`), so that they
//! never disagree with `--help`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

/// Prints the completion script of `shell`.
///
/// # Errors
/// When standard output cannot be written.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut Cli::command(), "smarty", &mut out);
    out.flush().context("cannot write the completions")
}

/// Prints `smarty.1`, or with `dir` writes it and a page per command (`smarty-read.1`,
/// `smarty-fleet-ingest.1`, …) there.
///
/// # Errors
/// When a page cannot be written.
pub fn manpage(dir: Option<&Path>) -> Result<()> {
    let command = Cli::command();
    let Some(dir) = dir else {
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(command)
            .render(&mut out)
            .context("cannot write the manual page")?;
        return out.flush().context("cannot write the manual page");
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // clap_mangen names each page after the path of its command (`smarty-fleet-ingest`).
    clap_mangen::generate_to(command, dir)
        .with_context(|| format!("cannot write the manual pages into {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_completions_naming_the_commands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
            clap_complete::Shell::PowerShell,
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "smarty", &mut out);
            let text = String::from_utf8(out).unwrap();
            for command in ["read", "simulate", "demo", "fleet"] {
                assert!(text.contains(command), "{shell}: no {command}");
            }
        }
    }

    #[test]
    fn manual_pages_cover_every_command() {
        let dir = tempfile::tempdir().unwrap();
        manpage(Some(dir.path())).unwrap();
        for page in [
            "smarty.1",
            "smarty-read.1",
            "smarty-run.1",
            "smarty-fleet-ingest.1",
        ] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
            assert!(text.starts_with(".ie"), "{page}: {}", &text[..40]);
            assert!(text.contains(".SH NAME"), "{page}");
        }
    }
}
