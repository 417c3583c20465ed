//! The HTTP listener: `/debug/vars` (expvar-style JSON, as the original emulator served),
//! `/metrics` (Prometheus text) and `/`, the live fleet page (`measure::live`) that polls
//! `/debug/vars`.

use std::net::SocketAddr;
use std::sync::Arc;

use agents::debug_vars::{DebugVars, FleetConfig, MemStats};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::shared::Shared;
use crate::stats::ProcessMemory;

/// Binds the listener; fails early (before any instance connects) when the port is taken.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves on a thread of its own with its own single-threaded runtime, so that `/debug/vars`
/// answers however busy the fleet's runtime is (a request storm, a hostile filter), until
/// `cancel`.
pub(crate) fn spawn(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("emulator-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, shared, cancel).await,
                    Err(e) => tracing::error!(error = %e, "HTTP listener failed"),
                }
            });
        })
}

/// Serves until `cancel`.
async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    let app = Router::new()
        .route("/", get(live_page))
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

/// The /debug/vars document.
pub(crate) fn debug_vars(shared: &Shared) -> DebugVars {
    let config = &shared.config;
    let memory = ProcessMemory::read();
    let tls = config.tls.as_ref();
    DebugVars {
        cmdline: config.cmdline.clone(),
        name: config.name.clone(),
        config: FleetConfig {
            instances: u64::from(config.instances),
            agents: u64::from(config.agents),
            collectives: config.collectives.len() as u64,
            pid: std::process::id(),
            tls: u8::from(tls.is_some()),
            tls_verify: u8::from(tls.is_some_and(|t| t.verify)),
        },
        memstats: MemStats {
            sys: memory.rss,
            rss: memory.rss,
            peak_rss: memory.peak_rss,
            vm_size: memory.virtual_size,
        },
        emulator: shared.stats.snapshot(shared.fault_counts()),
        brokers: shared.brokers.lock().map(|b| b.clone()).unwrap_or_default(),
        workers: Vec::new(),
    }
}

async fn serve_debug_vars(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    axum::Json(debug_vars(&shared))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::prometheus(
            &shared.stats.snapshot(shared.fault_counts()),
            ProcessMemory::read().rss,
        ),
    )
}

/// The live fleet page (static; it polls `/debug/vars` from the browser).
pub(crate) async fn live_page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        measure::live::PAGE,
    )
}
