//! `emulator`: parse flags, install logging, run the fleet until a signal.
//!
//! `emulator measure ...` and `emulator scrape ...` run the measuring client and the scraper.

use anyhow::Context as _;
use clap::Parser as _;
use emulator::cli::Args;
use emulator::measure::MeasureArgs;
use emulator::scrape::ScrapeArgs;
use tracing_subscriber::EnvFilter;

fn install_tracing(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // async-nats logs every connection event at info; with thousands of connections that
        // is noise, so it only speaks up for warnings unless RUST_LOG says otherwise.
        EnvFilter::new(format!("{level},async_nats=warn"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn main() -> anyhow::Result<()> {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match argv.get(1).and_then(|a| a.to_str()) {
        Some("measure") => {
            argv.remove(0);
            let args = MeasureArgs::parse_from(argv);
            install_tracing("warn");
            let code = runtime()?.block_on(emulator::measure::run(args))?;
            std::process::exit(code);
        }
        Some("scrape") => {
            argv.remove(0);
            let args = ScrapeArgs::parse_from(argv);
            install_tracing("warn");
            let code = runtime()?.block_on(emulator::scrape::run(args))?;
            std::process::exit(code);
        }
        _ => {}
    }
    let args = Args::parse_from(argv);
    let config = emulator::Config::from_args(&args).context("invalid configuration")?;
    install_tracing(&config.loglevel);
    let report = runtime()?.block_on(emulator::run(config, emulator::shutdown::signals()))?;
    if !report.drained_cleanly {
        std::process::exit(1);
    }
    Ok(())
}
