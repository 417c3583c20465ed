//! `federation-broker`: parse flags and the config file, install logging, run the broker until
//! a signal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// A Choria federation broker: requests from the federation network to one collective network,
/// replies back to the clients.
#[derive(Debug, Parser)]
#[command(name = "federation-broker", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: federation::Args,
}

/// Exit status of a configuration the broker refuses (as for clap's usage errors).
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli.args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("federation-broker: error: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn install_tracing(level: &str, logfile: Option<&Path>) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},async_nats=warn")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match logfile {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    Ok(())
}

/// Removes the pid file when the broker ends.
struct PidFile(PathBuf);

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run(args: &federation::Args) -> Result<(), (u8, anyhow::Error)> {
    let failed = |e: anyhow::Error| (1, e);
    let config = federation::Config::from_args(args)
        .context("invalid configuration")
        .map_err(|e| (USAGE, e))?;
    install_tracing(&config.loglevel, config.logfile.as_deref()).map_err(failed)?;
    let _pid = match &args.pid {
        Some(path) => {
            std::fs::write(path, format!("{}\n", std::process::id()))
                .with_context(|| format!("cannot write pid file {}", path.display()))
                .map_err(failed)?;
            Some(PidFile(path.clone()))
        }
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(failed)?;
    runtime
        .block_on(federation::run(config, natsproc::shutdown::signals()))
        .map_err(|e| failed(e.into()))
}
