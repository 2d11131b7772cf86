//! `smarty`: a gateway for the P1 port of smart electricity meters.
//!
//! Sources ([`source`]) → the core decoder (`smarty-p1`) → sinks ([`output`]), driven by the
//! [`pipeline`]; the commands are `read`, `simulate` and `demo`.

mod analytics;
mod cli;
mod config;
mod demo;
mod key;
mod output;
mod pipeline;
mod read;
mod secret;
mod service;
mod simulate;
mod source;
mod store;
mod web;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

/// `smarty config check|example`.
fn config_command(command: cli::ConfigCommand) -> anyhow::Result<()> {
    match command {
        cli::ConfigCommand::Example => {
            print!("{}", config::EXAMPLE);
            Ok(())
        }
        cli::ConfigCommand::Check { file } => {
            let config = config::Config::load(&file)?;
            let outputs = service::describe_outputs(&config)
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", file.display()))?;
            println!(
                "{}: ok, {} meter{}, {}",
                file.display(),
                config.meters.len(),
                if config.meters.len() == 1 { "" } else { "s" },
                outputs.join(", ")
            );
            Ok(())
        }
    }
}

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
        .init();

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("smarty: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Read(args) => read::run(args).await,
            Command::Simulate(args) => simulate::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Run(args) => service::run(args).await,
            Command::Export(args) => store::cli::export(args).await,
            Command::Import(args) => store::cli::import(args).await,
            Command::Config { command } => config_command(command),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smarty: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
