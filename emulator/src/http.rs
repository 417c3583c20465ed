//! The HTTP listener: `/debug/vars` (expvar-style JSON, as the original emulator served) and
//! `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::shared::Shared;
use crate::stats::ProcessMemory;

/// Binds the listener; fails early (before any instance connects) when the port is taken.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves until `cancel`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let app = Router::new()
        .route("/debug/vars", get(debug_vars))
        .route("/metrics", get(metrics))
        .with_state(shared);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP listener failed");
    }
}

/// The /debug/vars document.
pub(crate) fn debug_vars_json(shared: &Shared) -> serde_json::Value {
    let config = &shared.config;
    let memory = ProcessMemory::read();
    let tls = config.tls.as_ref();
    json!({
        "cmdline": config.cmdline,
        "name": config.name,
        "config": {
            "instances": config.instances,
            "agents": config.agents,
            "collectives": config.collectives.len(),
            "pid": std::process::id(),
            "TLS": u8::from(tls.is_some()),
            "tlsVerify": u8::from(tls.is_some_and(|t| t.verify)),
        },
        "memstats": {
            "Sys": memory.rss,
            "RSS": memory.rss,
            "PeakRSS": memory.peak_rss,
            "VmSize": memory.virtual_size,
        },
        "emulator": shared.stats.to_json(),
    })
}

async fn debug_vars(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        debug_vars_json(&shared).to_string(),
    )
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.stats.to_prometheus(ProcessMemory::read().rss),
    )
}
