//! `smarty`: a gateway for the P1 port of smart electricity meters.
//!
//! The commands (`smarty --help`; [`cli`] declares them):
//!
//! | command | what | where |
//! |---|---|---|
//! | `read` | read, decrypt and decode one P1 stream (serial device, TCP, MQTT, file, stdin) and print it as text, JSON, DSMR or raw frames | [`commands::read`], [`output`] |
//! | `simulate` | a virtual Smarty meter sending realistic encrypted frames | [`simulate`] |
//! | `demo` | the whole job without hardware: a virtual meter, its history and the service with the dashboard | [`commands::demo`] |
//! | `run` | the service: any number of meters, the history store, MQTT with Home Assistant discovery, the plain-telegram proxy, the dashboard, API, metrics and health check | [`service`] (wiring), `smarty-store`, `smarty-mqtt`, `smarty-web` |
//! | `export` | the stored history as CSV or JSON | [`commands::export`] over `smarty-store` |
//! | `import` | backfill the store from a capture of frames or `read --format json` lines | [`commands::import`] over `smarty-store` |
//! | `config check`, `config example` | validate a configuration file, print a commented example | [`commands::config`], [`config`] |
//!
//! This crate is the top of the workspace: the command line, the typed configuration
//! ([`config`]: file, environment, flags), the commands, the sources and the service's wiring.
//! What it drives lives in the library crates below it, each using only those before it:
//! `smarty-p1` (the core decoder) ← `smarty-model` (the vocabulary: events, typed values,
//! units, time and periods, the live state; no I/O) ← `smarty-store` (history, SQLite),
//! `smarty-tariff` (grid tariff), `smarty-mqtt` (MQTT output) ← `smarty-web` (dashboard, API,
//! metrics, health).
//!
//! Data flows from the sources ([`source`]) through the core decoder (driven by the
//! [`pipeline`]) to the sinks: the formats of `read` ([`output`]), or in the service the
//! meters' events ([`smarty_model::event`]) on the bus ([`service::bus`]) to every output.
//! `ARCHITECTURE.md` at the repository root draws that flow, gives each crate's rules
//! (checked by `scripts/check-layers`) and says where a new source, output, OBIS code, API
//! endpoint, setting or command goes.
//!
//! Nothing writes to standard output or error with `print!`/`eprintln!` (they panic when the
//! reader of a pipe goes away): output goes through `io::Write` and its errors, notes through
//! [`output::note`]; a closed pipe ends a command quietly ([`output::is_broken_pipe`]).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;
mod config;
mod key;
mod output;
mod pipeline;
mod service;
mod simulate;
mod source;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.verbose {
        0 => "smarty=info",
        1 => "smarty=debug,smarty_p1=debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        // Its fallback for a failed write is `eprintln!`, which panics when standard error
        // is a closed pipe: a log line that cannot be written is dropped instead.
        .log_internal_errors(false)
        .init();

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            output::note(format_args!("smarty: cannot start: {e}"));
            return std::process::ExitCode::FAILURE;
        }
    };
    if matches!(
        cli.command,
        Command::Run(_) | Command::Demo(_) | Command::Import(_)
    ) {
        // The history, the MQTT queue and the replay counters hold a household's consumption:
        // whatever this process creates is its user's alone (0600 files, 0700 directories),
        // as systemd's UMask=0077 does for the unit.
        // (Windows has no umask: files there take the folder's access list.)
        #[cfg(unix)]
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    }
    let result = runtime.block_on(async {
        match cli.command {
            Command::Read(args) => commands::read::run(args).await,
            Command::Simulate(args) => simulate::run(args).await,
            Command::Demo(args) => commands::demo::run(args).await,
            Command::Run(args) => service::run(args).await,
            Command::Export(args) => commands::export::run(&args),
            Command::Import(args) => commands::import::run(args).await,
            Command::Config { command } => commands::config::run(command),
            Command::Store { command } => commands::store::run(command),
            Command::Fleet { command } => commands::fleet::run(command).await,
            Command::Completions { shell } => commands::docs::completions(shell),
            Command::Manpage { dir } => commands::docs::manpage(dir.as_deref()),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `smarty … | head`: the reader has what it wanted.
        Err(e) if output::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            output::note(format_args!("smarty: error: {e:#}"));
            std::process::ExitCode::FAILURE
        }
    }
}
