//! `/debug/vars` (JSON) and `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::stats::{self, DebugVars, Settings};

/// Serves until `cancel`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let app = Router::new()
        .route("/debug/vars", get(serve_debug_vars))
        .route("/metrics", get(metrics))
        .with_state(shared);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP listener failed");
    }
}

pub(crate) fn debug_vars(shared: &Shared) -> DebugVars {
    let config = &shared.config;
    DebugVars {
        cmdline: config.cmdline.clone(),
        config: Settings {
            cluster: config.cluster.clone(),
            identity: config.identity.clone(),
            workers: config.workers as u64,
            federation_servers: config.federation_servers.clone(),
            collective_servers: config.collective_servers.clone(),
            pid: std::process::id(),
        },
        federation: shared.stats.snapshot(),
    }
}

async fn serve_debug_vars(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    axum::Json(debug_vars(&shared))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let text = stats::to_prometheus(&shared.stats.snapshot(), &shared.config.cluster);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
