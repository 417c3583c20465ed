//! `emulator`: parse flags, install logging, run the fleet until a signal; or run one of the
//! measuring subcommands of the `measure` crate.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Emulates a network of Choria daemons, each with its own NATS connection.
#[derive(Debug, Parser)]
#[command(
    name = "emulator",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    fleet: emulator::cli::Args,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Discovery and RPC rounds against a whole fleet, every reply accounted.
    Measure(Box<measure::MeasureArgs>),
    /// Samples /debug/vars and nats-server monitoring into a time series and a page.
    Scrape(measure::ScrapeArgs),
}

fn install_tracing(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // async-nats logs every connection event at info; with thousands of connections that
        // is noise, so it only speaks up for warnings unless RUST_LOG says otherwise.
        EnvFilter::new(format!("{level},async_nats=warn"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Exit status of a configuration the emulator refuses (as for clap's usage errors).
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err((code, e)) => {
            // One line, whatever RUST_BACKTRACE says: these are the user's errors to fix.
            eprintln!("emulator: error: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, (u8, anyhow::Error)> {
    let failed = |e: anyhow::Error| (1, e);
    match cli.command {
        Some(Command::Measure(args)) => {
            install_tracing("warn");
            let result = runtime().map_err(failed)?.block_on(measure::measure(*args));
            return measured(result);
        }
        Some(Command::Scrape(args)) => {
            install_tracing("warn");
            let result = runtime().map_err(failed)?.block_on(measure::scrape(args));
            return measured(result);
        }
        None => {}
    }
    let config = emulator::Config::from_args(&cli.fleet)
        .context("invalid configuration")
        .map_err(|e| (USAGE, e))?;
    install_tracing(&config.loglevel);
    let report = runtime()
        .map_err(failed)?
        .block_on(emulator::run(config, natsproc::shutdown::signals()))
        .map_err(|e| failed(e.into()))?;
    Ok(if report.drained_cleanly {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A measuring subcommand's result: its exit code, or its error with the code it carries
/// (2 for usage errors).
fn measured(result: Result<i32, measure::MeasureError>) -> Result<ExitCode, (u8, anyhow::Error)> {
    match result {
        Ok(code) => Ok(exit_code(code)),
        Err(e) => Err((u8::try_from(e.exit_code()).unwrap_or(1), e.into())),
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
