//! `emulator`: parse flags, install logging, run the fleet until a signal.

use anyhow::Context as _;
use clap::Parser as _;
use emulator::cli::Args;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = emulator::Config::from_args(&args).context("invalid configuration")?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // async-nats logs every connection event at info; with thousands of connections that
        // is noise, so it only speaks up for warnings unless RUST_LOG says otherwise.
        EnvFilter::new(format!("{},async_nats=warn", config.loglevel))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(emulator::run(config, emulator::shutdown::signals()))?;
    if !report.drained_cleanly {
        std::process::exit(1);
    }
    Ok(())
}
