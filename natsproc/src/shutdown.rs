//! Operating-system signals: the first SIGINT, SIGTERM or SIGHUP asks for a graceful stop; a
//! second one stops every registered child at once ([`crate::process::emergency_cleanup`])
//! and exits with 130 (SIGINT) or 143 (SIGTERM, SIGHUP).

use tokio::signal::unix::{SignalKind, signal};

/// Which signal asked for the stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Interrupt,
    Terminate,
    Hangup,
}

impl Stop {
    /// The conventional exit status of a process stopped by this signal (128 + number).
    pub fn exit_code(self) -> i32 {
        match self {
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
            Stop::Hangup => 129,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Stop::Interrupt => "SIGINT",
            Stop::Terminate => "SIGTERM",
            Stop::Hangup => "SIGHUP",
        }
    }
}

/// Resolves at the first shutdown signal and arranges for a second to exit the process.
pub async fn signals() {
    first_signal().await;
}

/// Like [`signals`], but tells which signal it was.
pub async fn first_signal() -> Stop {
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    let first = tokio::select! {
        _ = int.recv() => Stop::Interrupt,
        _ = term.recv() => Stop::Terminate,
        _ = hup.recv() => Stop::Hangup,
    };
    tracing::info!(
        signal = first.name(),
        "shutting down; send another signal to exit at once"
    );
    tokio::spawn(async move {
        let second = tokio::select! {
            _ = int.recv() => Stop::Interrupt,
            _ = term.recv() => Stop::Terminate,
            _ = hup.recv() => Stop::Hangup,
        };
        let children = crate::process::emergency_cleanup();
        tracing::warn!(
            signal = second.name(),
            children,
            "second signal, exiting now"
        );
        std::process::exit(first.exit_code());
    });
    first
}
