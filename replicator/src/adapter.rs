//! The registration adapter: subscribe (core NATS `<collective>.broadcast.agent.registration`)
//! → decode the Choria v1 request enough to name the sender → bounded queue → JetStream publish
//! to `choria.stream.input.registration.<sender>` (many in flight, each acknowledged).
//!
//! Core NATS cannot be slowed down, so a full queue drops the message and counts it
//! (`stream_replicator_dropped_total`), with a log line at most every 10 s; so do the client's
//! own slow-consumer events. Nothing is dropped without a count.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;

use crate::metrics::StreamStats;

/// The subject prefix registrations are published under.
pub const SUBJECT_PREFIX: &str = "choria.stream.input.registration";

/// What the adapter needs.
#[derive(Debug, Clone)]
pub struct AdapterConfig {
    /// Where the registration requests arrive (core NATS).
    pub source_url: String,
    pub collective: String,
    /// The JetStream server holding `stream`.
    pub target_url: String,
    /// Created, if missing, with subjects `choria.stream.input.registration.>` (file storage).
    pub stream: String,
    /// Messages waiting for the publisher before drops start.
    pub queue: usize,
    pub monitor_port: Option<u16>,
}

/// Why the adapter stopped.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error(transparent)]
    Session(#[from] crate::copier::SessionError),
    #[error("cannot subscribe to {subject}: {message}")]
    Subscribe { subject: String, message: String },
    #[error("stream {stream}: {message}")]
    Stream { stream: String, message: String },
    #[error(transparent)]
    Run(#[from] crate::Error),
}

/// The sender of a Choria v1 request: the transport's `mc_sender`, else the request envelope's
/// `senderid`.
pub fn sender_of(body: &[u8]) -> Option<String> {
    use agents::protocol::{Request, SecureRequest, Transport};
    let transport: Transport<'_> = serde_json::from_slice(body).ok()?;
    if let Some(s) = transport.headers.mc_sender.as_deref()
        && !s.is_empty()
    {
        return Some(s.to_owned());
    }
    let secure_bytes = agents::codec::decode_base64(&transport.data).ok()?;
    let secure: SecureRequest<'_> = serde_json::from_slice(&secure_bytes).ok()?;
    let request: Request<'_> = serde_json::from_str(&secure.message).ok()?;
    Some(request.envelope.senderid.into_owned()).filter(|s| !s.is_empty())
}

/// A sender as a subject tail: characters a subject cannot hold become `_`.
pub fn subject_for(sender: &str) -> String {
    let tail: String = sender
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '*' || c == '>' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let tail = tail
        .split('.')
        .map(|t| if t.is_empty() { "_" } else { t })
        .collect::<Vec<_>>()
        .join(".");
    format!("{SUBJECT_PREFIX}.{tail}")
}

/// Runs the adapter until `shutdown`.
pub async fn run(
    config: AdapterConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AdapterError> {
    let cancel = CancellationToken::new();
    let registry = Arc::new(crate::metrics::Registry::default());
    let stats = registry.stream(&format!("adapter:{}", config.stream));
    let _http = crate::start_metrics(config.monitor_port, &registry, "adapter", &cancel)?;
    let slow = stats.clone();
    let source = async_nats::ConnectOptions::new()
        .name("stream-replicator adapter")
        .subscription_capacity(config.queue.max(1024))
        .event_callback(move |event| {
            let slow = slow.clone();
            async move {
                if let async_nats::Event::SlowConsumer(_) = event {
                    slow.dropped.fetch_add(1, Relaxed);
                }
            }
        })
        .connect(&config.source_url)
        .await
        .map_err(|e| crate::copier::SessionError::Connect {
            role: "source",
            url: config.source_url.clone(),
            message: e.to_string(),
        })?;
    let target = crate::copier::connect("target", &config.target_url, None, true).await?;
    let js = jetstream::new(target);
    js.get_or_create_stream(jetstream::stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{SUBJECT_PREFIX}.>")],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| AdapterError::Stream {
        stream: config.stream.clone(),
        message: e.to_string(),
    })?;
    let subject = format!("{}.broadcast.agent.registration", config.collective);
    let mut subscription =
        source
            .subscribe(subject.clone())
            .await
            .map_err(|e| AdapterError::Subscribe {
                subject: subject.clone(),
                message: e.to_string(),
            })?;
    source.flush().await.ok();
    tracing::info!(subject = %subject, stream = %config.stream, "adapter listening");
    let (tx, rx) = tokio::sync::mpsc::channel::<(String, bytes::Bytes)>(config.queue.max(1));
    let publisher = tokio::spawn(publish(js, rx, stats.clone(), cancel.clone()));
    let mut last_warn: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            next = subscription.next() => {
                let Some(message) = next else { break };
                stats.received.fetch_add(1, Relaxed);
                let Some(sender) = sender_of(&message.payload) else {
                    stats.failed.fetch_add(1, Relaxed);
                    continue;
                };
                if tx.try_send((subject_for(&sender), message.payload)).is_err() {
                    stats.dropped.fetch_add(1, Relaxed);
                    if last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(dropped = stats.dropped.load(Relaxed), "adapter queue full, registrations dropped (counted)");
                        last_warn = Some(Instant::now());
                    }
                }
            }
        }
    }
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(10), publisher).await;
    cancel.cancel();
    Ok(())
}

async fn publish(
    js: jetstream::Context,
    mut rx: tokio::sync::mpsc::Receiver<(String, bytes::Bytes)>,
    stats: Arc<StreamStats>,
    cancel: CancellationToken,
) {
    const IN_FLIGHT: usize = 1024;
    let mut inflight = FuturesUnordered::new();
    let mut open = true;
    while open || !inflight.is_empty() {
        tokio::select! {
            _ = cancel.cancelled() => return,
            Some(result) = inflight.next(), if !inflight.is_empty() => {
                let result: Result<(), String> = result;
                match result {
                    Ok(()) => { stats.copied.fetch_add(1, Relaxed); }
                    Err(e) => {
                        stats.failed.fetch_add(1, Relaxed);
                        tracing::warn!(error = %e, "registration not stored");
                    }
                }
            }
            next = rx.recv(), if open && inflight.len() < IN_FLIGHT => {
                let Some((subject, payload)) = next else { open = false; continue };
                let js = js.clone();
                let stats = stats.clone();
                inflight.push(async move {
                    for attempt in 0..5u32 {
                        match js.publish(subject.clone(), payload.clone()).await {
                            Ok(ack) => match ack.await {
                                Ok(_) => return Ok(()),
                                Err(e) if attempt == 4 => return Err(e.to_string()),
                                Err(_) => {}
                            },
                            Err(e) if attempt == 4 => return Err(e.to_string()),
                            Err(_) => {}
                        }
                        stats.retried.fetch_add(1, Relaxed);
                        tokio::time::sleep(crate::copier::backoff(attempt)).await;
                    }
                    Err("retries exhausted".to_owned())
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_from_a_request() {
        let filter = agents::protocol::Filter::default();
        let body = agents::codec::encode_request(&agents::codec::RequestParts {
            requestid: "r1",
            senderid: "node1.example",
            callerid: "choria=reg",
            collective: "mcollective",
            agent: "registration",
            ttl: 60,
            time: 0,
            filter: &filter,
            message: "{}",
            reply_to: "",
        });
        assert_eq!(sender_of(&body).as_deref(), Some("node1.example"));
        assert_eq!(sender_of(b"not json"), None);
        assert_eq!(
            subject_for("a b.c"),
            "choria.stream.input.registration.a_b.c"
        );
    }
}
