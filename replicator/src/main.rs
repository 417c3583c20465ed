//! `stream-replicator`: parse flags, load and check the configuration, install logging, run
//! the copiers (or the registration adapter) until a signal.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Copies JetStream streams between NATS servers, whole or sampled (Choria stream replicator
/// configuration).
#[derive(Debug, Parser)]
#[command(name = "stream-replicator", version, about, long_about = None)]
struct Cli {
    /// The configuration file (YAML, Choria stream replicator format).
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a configuration file and exit (0: valid, 2: refused, with positions).
    Validate { file: PathBuf },
    /// Ingest Choria registration requests from core NATS into a JetStream stream.
    Adapter {
        /// Where nodes publish registrations.
        #[arg(long)]
        source_url: String,
        #[arg(long, default_value = "mcollective")]
        collective: String,
        /// The JetStream server of the stream (default: the source).
        #[arg(long)]
        target_url: Option<String>,
        #[arg(long, default_value = "REGISTRATION")]
        stream: String,
        /// Registrations waiting to be stored before drops (counted) start.
        #[arg(long, default_value_t = 10_000)]
        queue: usize,
        #[arg(long)]
        monitor_port: Option<u16>,
        #[arg(long, default_value = "info")]
        loglevel: String,
    },
    /// Test publisher: Choria v1 registration requests for SENDERS identities, ROUNDS times.
    Register {
        #[arg(long)]
        server: String,
        #[arg(long, default_value = "mcollective")]
        collective: String,
        #[arg(long, default_value = "node")]
        prefix: String,
        #[arg(long, default_value_t = 100)]
        senders: usize,
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Seconds between rounds.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// Senders in a stream: one line per subject (count, age of the newest message), then a
    /// summary; exits 1 when fewer than --expect subjects are present.
    Senders {
        #[arg(long)]
        server: String,
        #[arg(long)]
        stream: String,
        #[arg(long, default_value = ">")]
        filter: String,
        #[arg(long, default_value_t = 0)]
        expect: usize,
        /// Print only the summary line.
        #[arg(long)]
        quiet: bool,
    },
}

/// Exit status of a refused configuration (as for clap's usage errors).
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("stream-replicator: error: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn install_tracing(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},async_nats=warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn runtime() -> Result<tokio::runtime::Runtime, (u8, anyhow::Error)> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(|e| (1, e))
}

fn run(cli: Cli) -> Result<(), (u8, anyhow::Error)> {
    let usage = |e: anyhow::Error| (USAGE, e);
    match cli.command {
        Some(Command::Validate { file }) => {
            let config = replicator::Config::load(&file).map_err(|e| usage(e.into()))?;
            println!(
                "{}: valid, {} stream(s)",
                file.display(),
                config.streams.len()
            );
            Ok(())
        }
        Some(Command::Adapter {
            source_url,
            collective,
            target_url,
            stream,
            queue,
            monitor_port,
            loglevel,
        }) => {
            install_tracing(&loglevel);
            let config = replicator::adapter::AdapterConfig {
                target_url: target_url.unwrap_or_else(|| source_url.clone()),
                source_url,
                collective,
                stream,
                queue,
                monitor_port,
            };
            runtime()?
                .block_on(replicator::adapter::run(
                    config,
                    natsproc::shutdown::signals(),
                ))
                .map_err(|e| (1, e.into()))
        }
        Some(Command::Register {
            server,
            collective,
            prefix,
            senders,
            rounds,
            interval,
        }) => {
            let interval = std::time::Duration::try_from_secs_f64(interval)
                .map_err(|e| usage(anyhow::anyhow!("--interval: {e}")))?;
            let sent = runtime()?
                .block_on(replicator::probe::register(
                    &server,
                    &collective,
                    &prefix,
                    senders,
                    rounds,
                    interval,
                ))
                .map_err(|e| (1, e.into()))?;
            println!("published {sent} registration requests");
            Ok(())
        }
        Some(Command::Senders {
            server,
            stream,
            filter,
            expect,
            quiet,
        }) => {
            let found = runtime()?
                .block_on(replicator::probe::senders(&server, &stream, &filter))
                .map_err(|e| (1, e.into()))?;
            if !quiet {
                for (subject, (n, age)) in &found {
                    println!("{subject} {n} {age:.1}s");
                }
            }
            let newest = found.values().map(|v| v.1).fold(f64::INFINITY, f64::min);
            let oldest = found.values().map(|v| v.1).fold(0.0, f64::max);
            println!(
                "{stream}: {} senders, {} messages, newest message {newest:.1}s old, stalest sender {oldest:.1}s",
                found.len(),
                found.values().map(|v| v.0).sum::<usize>()
            );
            if found.len() < expect {
                return Err((
                    1,
                    anyhow::anyhow!("{} senders in {stream}, expected {expect}", found.len()),
                ));
            }
            Ok(())
        }
        None => {
            let Some(file) = cli.config else {
                return Err(usage(anyhow::anyhow!(
                    "give --config FILE (or `validate FILE`, `adapter ...`)"
                )));
            };
            let config = replicator::Config::load(&file).map_err(|e| usage(e.into()))?;
            install_tracing(&config.loglevel);
            runtime()?
                .block_on(replicator::run(config, natsproc::shutdown::signals()))
                .map_err(|e| (1, e.into()))
        }
    }
}
