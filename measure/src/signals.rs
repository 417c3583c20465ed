//! SIGINT and SIGTERM: the first asks the run to stop (no new requests, collect what is in,
//! write results marked interrupted, exit 130 or 143); a second exits at once.

use std::sync::{Arc, OnceLock};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::error::MeasureError;

/// The signal that interrupted a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Int,
    Term,
}

impl Interrupt {
    /// `SIGINT` or `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Interrupt::Int => "SIGINT",
            Interrupt::Term => "SIGTERM",
        }
    }

    /// 128 + the signal number, as a shell reports it.
    pub fn exit_code(self) -> i32 {
        match self {
            Interrupt::Int => 130,
            Interrupt::Term => 143,
        }
    }
}

/// Whether, and by what, the run was asked to stop.
#[derive(Debug, Clone)]
pub(crate) struct Interrupts {
    /// Turns true at the first signal.
    pub(crate) stop: watch::Receiver<bool>,
    which: Arc<OnceLock<Interrupt>>,
}

impl Interrupts {
    /// The first signal received, if any.
    pub(crate) fn received(&self) -> Option<Interrupt> {
        self.which.get().copied()
    }

    /// Resolves at the first signal (at once if one came already); never without one.
    pub(crate) async fn wait(&self) {
        let mut stop = self.stop.clone();
        if stop.wait_for(|v| *v).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Installs the handlers; they live as long as the runtime.
pub(crate) fn listen(what: &'static str) -> Result<Interrupts, MeasureError> {
    let mut int = signal(SignalKind::interrupt()).map_err(MeasureError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(MeasureError::Signals)?;
    let (tx, rx) = watch::channel(false);
    let which = Arc::new(OnceLock::new());
    let set = Arc::clone(&which);
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = int.recv() => Interrupt::Int,
            _ = term.recv() => Interrupt::Term,
        };
        let _ = set.set(first);
        let _ = tx.send(true);
        tracing::warn!(
            signal = first.name(),
            "{what} interrupted: stopping, writing what is in; send another signal to exit at once"
        );
        let second = tokio::select! {
            _ = int.recv() => Interrupt::Int,
            _ = term.recv() => Interrupt::Term,
        };
        tracing::warn!(signal = second.name(), "second signal, exiting now");
        std::process::exit(second.exit_code());
    });
    Ok(Interrupts { stop: rx, which })
}
