//! Operating-system signals: the first SIGINT, SIGTERM or SIGHUP asks for a graceful stop; a
//! second one exits at once.

use tokio::signal::unix::{SignalKind, signal};

/// Resolves at the first shutdown signal and arranges for a second to exit the process.
pub async fn signals() {
    let Ok(mut int) = signal(SignalKind::interrupt()) else {
        return std::future::pending().await;
    };
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    };
    tracing::info!(
        signal = name,
        "shutting down; send another signal to exit at once"
    );
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
        };
        tracing::warn!(signal = name, "second signal, exiting now");
        std::process::exit(130);
    });
}
