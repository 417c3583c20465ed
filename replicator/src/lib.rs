//! A JetStream stream replicator that reads the Choria stream replicator's configuration.
//!
//! Pipeline: `config` (load and check the YAML, before anything connects) → one `copier` per
//! stream (durable pull consumer on the source → `sampler` → pipelined publishes to the target
//! → target acknowledgements in order → source acknowledgement) → `metrics` (`/metrics`).
//! `adapter` is the Choria registration adapter: core NATS registration requests into a
//! JetStream stream.

pub mod adapter;
pub mod config;
pub mod copier;
pub mod metrics;
pub mod probe;
pub mod sampler;

use std::sync::Arc;

pub use config::{Config, ConfigError};
use tokio_util::sync::CancellationToken;

/// Why the replicator could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on monitor port {port}: {source}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the state store {path}: {source}")]
    StateStore {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Copies every configured stream until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let cancel = CancellationToken::new();
    let registry = Arc::new(metrics::Registry::default());
    let _http = start_metrics(config.monitor_port, &registry, &config.name, &cancel)?;
    if let Some(dir) = &config.state_store {
        std::fs::create_dir_all(dir).map_err(|source| Error::StateStore {
            path: dir.clone(),
            source,
        })?;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for stream in &config.streams {
        let label = match &stream.name {
            Some(n) => format!("{}:{n}", stream.stream),
            None => stream.stream.clone(),
        };
        let copier = copier::Copier::new(&config, stream.clone(), registry.stream(&label));
        tasks.spawn(copier.run(cancel.clone()));
    }
    tracing::info!(name = %config.name, streams = config.streams.len(), "replicating");
    shutdown.await;
    cancel.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Starts `/metrics` on `port` (loopback and every interface: `0.0.0.0`).
pub fn start_metrics(
    port: Option<u16>,
    registry: &Arc<metrics::Registry>,
    name: &str,
    cancel: &CancellationToken,
) -> Result<Option<std::thread::JoinHandle<()>>, Error> {
    let Some(port) = port else {
        return Ok(None);
    };
    let listen = |source| Error::Listen { port, source };
    let listener = std::net::TcpListener::bind(("0.0.0.0", port)).map_err(listen)?;
    metrics::serve(listener, registry.clone(), name.to_owned(), cancel.clone())
        .map(Some)
        .map_err(listen)
}
