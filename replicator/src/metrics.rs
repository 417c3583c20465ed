//! Counters of every stage (read → sample/age → publish → target ack → source ack) and the
//! `/metrics` endpoint (Prometheus text) on `monitor_port`.
//!
//! Counters are relaxed atomics updated by the copiers and the adapter; the HTTP listener runs
//! on a thread of its own so that it answers whatever the copy load.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

/// The counters of one copied stream (or one adapter).
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Messages read from the source (redeliveries of messages already held excluded).
    pub received: AtomicU64,
    /// Messages the target acknowledged.
    pub copied: AtomicU64,
    /// Messages not copied because sampling had seen the sender recently.
    pub skipped_sampling: AtomicU64,
    /// Messages not copied because they were older than `max_age`.
    pub skipped_age: AtomicU64,
    /// Publishes that failed or timed out (each ends a session; the message is retried).
    pub failed: AtomicU64,
    /// Sessions restarted after a failure (resumed from the consumer's acknowledged floor).
    pub retried: AtomicU64,
    /// Messages on the source not yet delivered to us.
    pub lag_messages: AtomicU64,
    /// Age, in milliseconds, of the last message the target acknowledged when it was acknowledged.
    pub lag_millis: AtomicU64,
    /// Advisories published, by kind: new, timeout, recover, expire.
    pub advisories: [AtomicU64; 4],
    /// Messages the adapter dropped because its queue was full.
    pub dropped: AtomicU64,
}

/// One metric family: name, type, help, and how to read it from a stream's counters.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StreamStats) -> f64,
);

/// All counters, by stream label.
#[derive(Debug, Default)]
pub struct Registry {
    streams: std::sync::Mutex<Vec<(String, Arc<StreamStats>)>>,
}

impl Registry {
    /// The counters for `label`, created on first use.
    pub fn stream(&self, label: &str) -> Arc<StreamStats> {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, s)) = streams.iter().find(|(l, _)| l == label) {
            return s.clone();
        }
        let s = Arc::new(StreamStats::default());
        streams.push((label.to_owned(), s.clone()));
        s
    }

    /// Prometheus text exposition of every counter.
    pub fn to_prometheus(&self, replicator: &str) -> String {
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let families: [Family; 9] = [
            (
                "received_total",
                "counter",
                "Messages read from the source stream",
                |s| s.received.load(Relaxed) as f64,
            ),
            (
                "copied_total",
                "counter",
                "Messages the target acknowledged",
                |s| s.copied.load(Relaxed) as f64,
            ),
            (
                "skipped_sampling_total",
                "counter",
                "Messages not copied because of sampling",
                |s| s.skipped_sampling.load(Relaxed) as f64,
            ),
            (
                "skipped_age_total",
                "counter",
                "Messages not copied because they were older than max_age",
                |s| s.skipped_age.load(Relaxed) as f64,
            ),
            (
                "failed_total",
                "counter",
                "Publishes to the target that failed or timed out",
                |s| s.failed.load(Relaxed) as f64,
            ),
            (
                "retried_total",
                "counter",
                "Copy sessions restarted after a failure",
                |s| s.retried.load(Relaxed) as f64,
            ),
            (
                "dropped_total",
                "counter",
                "Messages the registration adapter dropped with a full queue",
                |s| s.dropped.load(Relaxed) as f64,
            ),
            (
                "lag_messages",
                "gauge",
                "Messages on the source not yet delivered to the replicator",
                |s| s.lag_messages.load(Relaxed) as f64,
            ),
            (
                "lag_seconds",
                "gauge",
                "Age of the last copied message when the target acknowledged it",
                |s| s.lag_millis.load(Relaxed) as f64 / 1000.0,
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP stream_replicator_{name} {help}");
            let _ = writeln!(out, "# TYPE stream_replicator_{name} {kind}");
            for (label, s) in streams.iter() {
                let _ = writeln!(
                    out,
                    "stream_replicator_{name}{{replicator=\"{}\",stream=\"{}\"}} {}",
                    escape(replicator),
                    escape(label),
                    value(s)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP stream_replicator_advisories_total Sampling advisories published"
        );
        let _ = writeln!(out, "# TYPE stream_replicator_advisories_total counter");
        for (label, s) in streams.iter() {
            for (i, kind) in ["new", "timeout", "recover", "expire"].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "stream_replicator_advisories_total{{replicator=\"{}\",stream=\"{}\",event=\"{kind}\"}} {}",
                    escape(replicator),
                    escape(label),
                    s.advisories[i].load(Relaxed)
                );
            }
        }
        out
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Shared {
    registry: Arc<Registry>,
    replicator: String,
}

/// Serves `/metrics` on `listener` from a thread of its own until `cancel`.
pub fn serve(
    listener: std::net::TcpListener,
    registry: Arc<Registry>,
    replicator: String,
    cancel: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "metrics listener failed");
                        return;
                    }
                };
                let app = Router::new()
                    .route("/metrics", get(metrics))
                    .with_state(Arc::new(Shared {
                        registry,
                        replicator,
                    }));
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { cancel.cancelled().await })
                    .await
                {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            });
        })
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.registry.to_prometheus(&shared.replicator),
    )
}
