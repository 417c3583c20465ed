//! How many messages per second one broker forwards: two private nats-servers (federation and
//! collective), one broker, publishers of federated requests on the federation network and a
//! sink on the collective network counting what the broker published.
//!
//! Run by the `federation-bench` binary; build it with `--release` for a meaningful figure.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agents::codec::{self, RequestParts};
use agents::protocol::{Federation, Filter, Transport};
use futures::StreamExt as _;
use natsproc::{LocalNatsOptions, LocalNatsServer};

use crate::Config;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Requests to publish in all.
    pub messages: u64,
    /// Publishing connections.
    pub publishers: usize,
    /// Broker workers.
    pub workers: usize,
    /// Most requests published but not yet seen by the sink (keeps queues from overflowing).
    pub window: u64,
}

impl Default for BenchOptions {
    fn default() -> BenchOptions {
        BenchOptions {
            messages: 200_000,
            publishers: 2,
            workers: crate::config::DEFAULT_WORKERS,
            window: 20_000,
        }
    }
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub published: u64,
    /// Messages the sink received on the collective network; fewer than `published` when
    /// some were dropped (the sink waits 30 s after the last one before it gives up).
    pub forwarded: u64,
    pub elapsed: Duration,
    pub body_bytes: usize,
    pub counters: crate::Counters,
}

impl BenchReport {
    /// Whether every published message arrived.
    pub fn complete(&self) -> bool {
        self.forwarded == self.published
    }

    /// Forwarded messages per second.
    pub fn rate(&self) -> f64 {
        self.forwarded as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot start nats-server: {0}")]
    Nats(#[from] natsproc::NatsError),
    #[error(transparent)]
    Broker(#[from] crate::Error),
    #[error("NATS client: {0}")]
    Client(String),
}

fn client_error(e: impl std::fmt::Display) -> BenchError {
    BenchError::Client(e.to_string())
}

/// A federated discovery request as a Go client publishes it.
pub fn sample_request(cluster_collective: &str) -> Vec<u8> {
    let requestid = "0123456789abcdef0123456789abcdef";
    let reply_to =
        agents::subject::reply(cluster_collective, "choria=bench.mcollective", requestid);
    let plain = codec::encode_request(&RequestParts {
        requestid,
        senderid: "bench.client",
        callerid: "choria=bench.mcollective",
        collective: cluster_collective,
        agent: "discovery",
        ttl: 60,
        time: 0,
        filter: &Filter::default(),
        message: "cGluZw==",
        reply_to: &reply_to,
    });
    let Ok(mut transport) = serde_json::from_slice::<Transport<'_>>(&plain) else {
        return plain;
    };
    transport.headers.federation = Some(Federation {
        req: Cow::Borrowed(requestid),
        reply_to: None,
        target: vec![Cow::Owned(agents::subject::broadcast(
            cluster_collective,
            "discovery",
        ))],
    });
    serde_json::to_vec(&transport).unwrap_or(plain)
}

/// Runs the benchmark.
pub async fn run(options: &BenchOptions) -> Result<BenchReport, BenchError> {
    let start_server = || LocalNatsServer::start(&LocalNatsOptions::default());
    let (fed, coll) = tokio::task::spawn_blocking(move || (start_server(), start_server()))
        .await
        .map_err(client_error)?;
    let (mut fed, mut coll) = (fed?, coll?);
    let mut config = Config::new("bench", &[fed.client_url()], &[coll.client_url()]);
    config.workers = options.workers;
    let broker = crate::start(config).await?;

    let target = agents::subject::broadcast("mcollective", "discovery");
    let sink = async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(coll.client_url())
        .await
        .map_err(client_error)?;
    let mut sub = sink.subscribe(target).await.map_err(client_error)?;
    sink.flush().await.map_err(client_error)?;
    let received = Arc::new(AtomicU64::new(0));
    let counting = Arc::clone(&received);
    let total = options.messages;
    let sink_task = tokio::spawn(async move {
        let mut last = Instant::now();
        while counting.load(Ordering::Relaxed) < total {
            match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
                Ok(Some(_)) => {
                    counting.fetch_add(1, Ordering::Relaxed);
                    last = Instant::now();
                }
                Ok(None) | Err(_) => break,
            }
        }
        last
    });

    let body = bytes::Bytes::from(sample_request("mcollective"));
    let body_bytes = body.len();
    let publishers = options.publishers.max(1);
    let mut clients = Vec::new();
    for _ in 0..publishers {
        clients.push(
            async_nats::connect(fed.client_url())
                .await
                .map_err(client_error)?,
        );
    }
    let published = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let share = total / publishers as u64 + u64::from((i as u64) < total % publishers as u64);
        let body = body.clone();
        let published = Arc::clone(&published);
        let received = Arc::clone(&received);
        let window = options.window.max(1);
        tasks.push(tokio::spawn(async move {
            for n in 0..share {
                while published.load(Ordering::Relaxed) >= received.load(Ordering::Relaxed) + window
                {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                client
                    .publish("choria.federation.bench.federation", body.clone())
                    .await
                    .map_err(client_error)?;
                published.fetch_add(1, Ordering::Relaxed);
                if n % 1024 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            client.flush().await.map_err(client_error)
        }));
    }
    for t in tasks {
        t.await.map_err(client_error)??;
    }
    let finished = sink_task.await.map_err(client_error)?;
    let forwarded = received.load(Ordering::Relaxed);
    let counters = broker.counters();
    broker.stop(Duration::from_secs(5)).await;
    tokio::task::spawn_blocking(move || {
        fed.stop();
        coll.stop();
    })
    .await
    .ok();
    Ok(BenchReport {
        published: published.load(Ordering::Relaxed),
        forwarded,
        elapsed: finished.duration_since(started),
        body_bytes,
        counters,
    })
}
