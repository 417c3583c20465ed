//! A Choria federation broker.
//!
//! Clients on the *federation network* publish federated requests to
//! `choria.federation.<cluster>.federation`. The broker takes them from the queue group
//! `<cluster>_federation`, rewrites them ([`transform::request`]) and publishes one copy per
//! target on the *collective network*, with `reply-to` pointing at
//! `choria.federation.<cluster>.collective`. Nodes reply there with the federation header
//! copied; the broker takes replies from the queue group `<cluster>_collective`, rewrites them
//! ([`transform::reply`]) and publishes each to the client's original reply subject on the
//! federation network. Several brokers of one cluster share the work through the queue groups.
//!
//! Each of the configured workers has one connection to each network and runs both pipelines:
//!
//! ```text
//! federation ingest → [request_transform] → transformer → [collective_egest] → collective egest
//! collective ingest → [reply_transform]   → transformer → [federation_egest] → federation egest
//! ```
//!
//! The bracketed queues are bounded; their depths are reported at `/debug/vars` and `/metrics`
//! ([`http`]) with the other counters ([`stats`]).

pub mod bench;
pub mod config;
pub mod http;
pub mod stats;
pub mod transform;

mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::{Args, Config, ConfigError};
pub use stats::{Counters, DebugVars, Direction, Network, Stage};
pub use transform::Reject;

use stats::Stats;
use tokio_util::sync::CancellationToken;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid NATS server address {server:?}: {reason}")]
    BadServer { server: String, reason: String },
    #[error("cannot connect to the {network} network ({servers}): {reason}")]
    Connect {
        network: &'static str,
        servers: String,
        reason: String,
    },
    #[error("cannot subscribe to {subject} on the {network} network: {reason}")]
    Subscribe {
        network: &'static str,
        subject: String,
        reason: String,
    },
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// State every task of the broker shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) stats: Stats,
    /// `<identity> (<workers>)`: the processor of every `seen-by` hop this broker records.
    pub(crate) processor: String,
    pub(crate) federation_subject: String,
    pub(crate) collective_subject: String,
}

/// A running broker.
pub struct Broker {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    cancel: CancellationToken,
    http_cancel: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
    http_task: tokio::task::JoinHandle<()>,
}

/// Connects every worker to both networks, subscribes and starts serving. Returns once every
/// subscription is in place on the servers.
pub async fn start(config: Config) -> Result<Broker, Error> {
    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .map_err(|source| Error::Http {
            addr: config.http,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| Error::Http {
        addr: config.http,
        source,
    })?;
    let shared = Arc::new(Shared {
        processor: format!("{} ({})", config.identity, config.workers),
        federation_subject: config.federation_subject(),
        collective_subject: config.collective_subject(),
        stats: Stats::default(),
        config,
    });
    let cancel = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..shared.config.workers {
        let worker = worker::Worker::connect(Arc::clone(&shared), index).await?;
        worker.spawn(&mut tasks, cancel.clone());
    }
    let http_cancel = CancellationToken::new();
    let http_task = tokio::spawn(http::serve(
        listener,
        Arc::clone(&shared),
        http_cancel.clone(),
    ));
    tracing::info!(
        cluster = %shared.config.cluster,
        identity = %shared.config.identity,
        workers = shared.config.workers,
        federation = ?shared.config.federation_servers,
        collective = ?shared.config.collective_servers,
        http = %http_addr,
        "federation broker serving"
    );
    Ok(Broker {
        shared,
        http_addr,
        cancel,
        http_cancel,
        tasks,
        http_task,
    })
}

impl Broker {
    /// Where `/debug/vars` and `/metrics` are served.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The current counters.
    pub fn counters(&self) -> Counters {
        self.shared.stats.snapshot()
    }

    /// The current `/debug/vars` document.
    pub fn debug_vars(&self) -> DebugVars {
        http::debug_vars(&self.shared)
    }

    /// Stops taking messages, passes on what is queued (within `deadline`), flushes and
    /// closes every connection. Returns whether everything drained in time.
    pub async fn stop(mut self, deadline: Duration) -> bool {
        self.cancel.cancel();
        let tasks = &mut self.tasks;
        let drained = tokio::time::timeout(deadline, async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !drained {
            tracing::warn!(
                deadline_s = deadline.as_secs_f64(),
                "federation broker did not drain in time"
            );
            self.tasks.abort_all();
        }
        self.http_cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.http_task).await;
        let c = self.shared.stats.snapshot();
        tracing::info!(
            received = c.received,
            forwarded = c.forwarded,
            replies = c.replies,
            rejected = c.rejected_total(),
            drained,
            "federation broker stopped"
        );
        drained
    }
}

/// Starts the broker, serves until `shutdown` resolves, then stops it (10 s to drain).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let broker = start(config).await?;
    shutdown.await;
    broker.stop(Duration::from_secs(10)).await;
    Ok(())
}
