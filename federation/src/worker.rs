//! One worker: a connection to each network and the six tasks of the two pipelines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Event, ServerAddr, Subscriber};
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::stats::{Direction, Network, Stage};
use crate::transform::{self, Forward, Hop, Reject};
use crate::{Error, Shared};

/// How long a cached server URL (for `seen-by` hops) is used before asking the client again.
const URL_REFRESH: Duration = Duration::from_secs(1);

/// Messages the client library holds per subscription before it drops them.
const SUBSCRIPTION_CAPACITY: usize = 64 * 1024;

pub(crate) struct Worker {
    shared: Arc<Shared>,
    index: usize,
    federation: Client,
    collective: Client,
    requests: Subscriber,
    replies: Subscriber,
}

fn server_url(client: &Client) -> String {
    let info = client.server_info();
    format!("nats://{}:{}", info.host, info.port)
}

/// A server URL of a client, refreshed at most every [`URL_REFRESH`].
struct CachedUrl {
    client: Client,
    url: String,
    at: Instant,
}

impl CachedUrl {
    fn new(client: Client) -> CachedUrl {
        CachedUrl {
            url: server_url(&client),
            client,
            at: Instant::now(),
        }
    }

    fn get(&mut self) -> &str {
        if self.at.elapsed() >= URL_REFRESH {
            self.url = server_url(&self.client);
            self.at = Instant::now();
        }
        &self.url
    }
}

async fn connect(shared: &Arc<Shared>, network: Network, index: usize) -> Result<Client, Error> {
    let servers = match network {
        Network::Federation => &shared.config.federation_servers,
        Network::Collective => &shared.config.collective_servers,
    };
    let addrs = servers
        .iter()
        .map(|s| {
            s.parse::<ServerAddr>().map_err(|e| Error::BadServer {
                server: s.clone(),
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let events = Arc::clone(shared);
    let seen = Arc::new(AtomicBool::new(false));
    let options = ConnectOptions::new()
        .name(format!(
            "federation-broker {} {} {} {index}",
            shared.config.cluster,
            shared.config.identity,
            network.as_str()
        ))
        .no_echo()
        .connection_timeout(Duration::from_secs(5))
        // The client buffers this many messages per subscription before it drops (and reports
        // a slow consumer); buffers are allocated as they fill.
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .event_callback(move |event| {
            let shared = Arc::clone(&events);
            let seen = Arc::clone(&seen);
            async move {
                let stats = &shared.stats;
                match event {
                    Event::Connected => {
                        stats.connected(network, 1);
                        if seen.swap(true, Ordering::Relaxed) {
                            stats.reconnect(network);
                            tracing::info!(network = network.as_str(), index, "reconnected");
                        }
                    }
                    Event::Disconnected => {
                        stats.connected(network, -1);
                        tracing::warn!(network = network.as_str(), index, "disconnected");
                    }
                    Event::SlowConsumer(_) => stats.slow_consumer(network),
                    Event::LameDuckMode | Event::Draining | Event::Closed => {}
                    Event::ServerError(e) => {
                        tracing::warn!(network = network.as_str(), index, error = %e, "server error");
                    }
                    Event::ClientError(e) => {
                        tracing::warn!(network = network.as_str(), index, error = %e, "client error");
                    }
                }
            }
        });
    let connecting = options.connect(addrs);
    match tokio::time::timeout(Duration::from_secs(15), connecting).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(Error::Connect {
            network: network.as_str(),
            servers: servers.join(","),
            reason: e.to_string(),
        }),
        Err(_) => Err(Error::Connect {
            network: network.as_str(),
            servers: servers.join(","),
            reason: "timed out after 15 s".to_owned(),
        }),
    }
}

async fn queue_subscribe(
    client: &Client,
    network: Network,
    subject: &str,
    group: String,
) -> Result<Subscriber, Error> {
    let failed = |reason: String| Error::Subscribe {
        network: network.as_str(),
        subject: subject.to_owned(),
        reason,
    };
    let sub = client
        .queue_subscribe(subject.to_owned(), group)
        .await
        .map_err(|e| failed(e.to_string()))?;
    client.flush().await.map_err(|e| failed(e.to_string()))?;
    Ok(sub)
}

impl Worker {
    pub(crate) async fn connect(shared: Arc<Shared>, index: usize) -> Result<Worker, Error> {
        let federation = connect(&shared, Network::Federation, index).await?;
        let collective = connect(&shared, Network::Collective, index).await?;
        let cluster = &shared.config.cluster;
        let requests = queue_subscribe(
            &federation,
            Network::Federation,
            &shared.federation_subject,
            format!("{cluster}_federation"),
        )
        .await?;
        let replies = queue_subscribe(
            &collective,
            Network::Collective,
            &shared.collective_subject,
            format!("{cluster}_collective"),
        )
        .await?;
        Ok(Worker {
            shared,
            index,
            federation,
            collective,
            requests,
            replies,
        })
    }

    /// Spawns the six tasks; ingest stops at `cancel`, the rest finish what is queued.
    pub(crate) fn spawn(self, tasks: &mut JoinSet<()>, cancel: CancellationToken) {
        let capacity = self.shared.config.queue;
        let Worker {
            shared,
            index,
            federation,
            collective,
            requests,
            replies,
        } = self;

        let (request_in, request_out) = mpsc::channel(capacity);
        let (egest_in, egest_out) = mpsc::channel(capacity);
        tasks.spawn(ingest(
            Arc::clone(&shared),
            requests,
            Stage::RequestTransform,
            request_in,
            cancel.clone(),
        ));
        tasks.spawn(transformer(
            Arc::clone(&shared),
            Direction::Request,
            request_out,
            egest_in,
            // Requests come in on the federation network and go out on the collective one.
            CachedUrl::new(federation.clone()),
            CachedUrl::new(collective.clone()),
        ));
        tasks.spawn(egest(
            Arc::clone(&shared),
            Network::Collective,
            collective.clone(),
            egest_out,
            index,
        ));

        let (reply_in, reply_out) = mpsc::channel(capacity);
        let (back_in, back_out) = mpsc::channel(capacity);
        tasks.spawn(ingest(
            Arc::clone(&shared),
            replies,
            Stage::ReplyTransform,
            reply_in,
            cancel,
        ));
        tasks.spawn(transformer(
            Arc::clone(&shared),
            Direction::Reply,
            reply_out,
            back_in,
            CachedUrl::new(collective),
            CachedUrl::new(federation.clone()),
        ));
        tasks.spawn(egest(
            shared,
            Network::Federation,
            federation,
            back_out,
            index,
        ));
    }
}

/// Takes messages off a subscription until `cancel`, then unsubscribes and passes on what the
/// client had already buffered.
async fn ingest(
    shared: Arc<Shared>,
    mut sub: Subscriber,
    stage: Stage,
    out: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
) {
    let stats = &shared.stats;
    let mut unsubscribed = false;
    loop {
        let next = if unsubscribed {
            sub.next().await
        } else {
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    unsubscribed = true;
                    if let Err(e) = sub.unsubscribe().await {
                        tracing::debug!(error = %e, "unsubscribe failed");
                        break;
                    }
                    continue;
                }
                next = sub.next() => next,
            }
        };
        let Some(msg) = next else { break };
        match stage {
            Stage::RequestTransform => stats.received.inc(),
            Stage::ReplyTransform => stats.replies_received.inc(),
            Stage::CollectiveEgest | Stage::FederationEgest => {}
        }
        stats.depth(stage, 1);
        if out.send(msg.payload).await.is_err() {
            stats.depth(stage, -1);
            break;
        }
    }
}

async fn transformer(
    shared: Arc<Shared>,
    direction: Direction,
    mut input: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Forward>,
    mut inbound: CachedUrl,
    mut outbound: CachedUrl,
) {
    let stats = &shared.stats;
    let (stage, next) = match direction {
        Direction::Request => (Stage::RequestTransform, Stage::CollectiveEgest),
        Direction::Reply => (Stage::ReplyTransform, Stage::FederationEgest),
    };
    let max = shared.config.max_message;
    while let Some(body) = input.recv().await {
        stats.depth(stage, -1);
        let hop = Hop {
            inbound: inbound.get(),
            processor: &shared.processor,
            outbound: outbound.get(),
        };
        let result = match direction {
            Direction::Request => transform::request(&body, max, &shared.collective_subject, hop),
            Direction::Reply => transform::reply(&body, max, hop),
        };
        match result {
            Ok(forward) => {
                stats.depth(next, 1);
                if out.send(forward).await.is_err() {
                    stats.depth(next, -1);
                    break;
                }
            }
            Err(reason) => rejected(&shared, direction, reason, &body),
        }
    }
}

fn rejected(shared: &Shared, direction: Direction, reason: Reject, body: &[u8]) {
    shared.stats.reject(direction, reason);
    tracing::debug!(
        direction = direction.as_str(),
        reason = reason.as_str(),
        bytes = body.len(),
        "rejected a message"
    );
}

async fn egest(
    shared: Arc<Shared>,
    network: Network,
    client: Client,
    mut input: mpsc::Receiver<Forward>,
    index: usize,
) {
    let stats = &shared.stats;
    let stage = match network {
        Network::Collective => Stage::CollectiveEgest,
        Network::Federation => Stage::FederationEgest,
    };
    while let Some(forward) = input.recv().await {
        stats.depth(stage, -1);
        let body = Bytes::from(forward.body);
        for target in forward.targets {
            match client.publish(target, body.clone()).await {
                Ok(()) => match network {
                    Network::Collective => stats.forwarded.inc(),
                    Network::Federation => stats.replies.inc(),
                },
                Err(e) => {
                    stats.publish_error(network);
                    tracing::warn!(network = network.as_str(), index, error = %e, "publish failed");
                }
            }
        }
    }
    if let Err(e) = client.flush().await {
        tracing::debug!(network = network.as_str(), index, error = %e, "final flush failed");
    }
}
