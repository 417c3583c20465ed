//! `loadlab-node`: the node daemon for load-test hosts (see the `node` library).

use anyhow::Context as _;
use clap::Parser as _;
use node::NodeArgs;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let args = NodeArgs::parse();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},async_nats=warn", args.loglevel)));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(node::run(args, natsproc::shutdown::signals()))
}
