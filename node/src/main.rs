//! `loadlab-node`: the node daemon for load-test hosts (see the `node` library).
//!
//! A failure is printed as one line, `loadlab-node: <error>: <cause>...`, never as a
//! backtrace (whatever `RUST_BACKTRACE` says), and the exit status is 1 (2 for a flag clap
//! refuses). Logs go to stderr,
//! coloured only when stderr is a terminal.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use node::NodeArgs;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = match NodeArgs::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("loadlab-node: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadlab-node: {}", node::one_line(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(args: NodeArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},async_nats=warn", args.loglevel)));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(node::run(args, natsproc::shutdown::signals()))?;
    Ok(())
}
