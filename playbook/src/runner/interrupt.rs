//! Stopping a run on SIGINT or SIGTERM, following the emulator's shutdown model: the first
//! signal cancels a token (no further task starts, the running task is stopped), the cleanup
//! that follows (`on_fail`, `post_book`, lock release, report) runs under a deadline, and a
//! second signal exits at once.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long `on_fail` and `post_book` may run after an interruption before they are stopped too.
pub const CLEANUP_DEADLINE: Duration = Duration::from_secs(10);

/// How long a task may take to stop on its own after an interruption before it is dropped.
pub(crate) const TASK_GRACE: Duration = Duration::from_millis(1000);

/// The signal that interrupted a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl StopSignal {
    /// The signal's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
        }
    }

    /// The conventional exit code: 128 + the signal number.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Shared between the signal listener and the run: which signal arrived, and a token
/// cancelled when it did.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    token: CancellationToken,
    signal: Arc<OnceLock<StopSignal>>,
}

impl Interrupt {
    /// A fresh, untriggered interrupt.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the signal (the first one wins) and cancels the token.
    pub fn trigger(&self, signal: StopSignal) {
        let _ = self.signal.set(signal);
        self.token.cancel();
    }

    /// The signal that interrupted the run, if one did.
    pub fn signal(&self) -> Option<StopSignal> {
        self.signal.get().copied()
    }

    /// The token cancelled by [`Interrupt::trigger`].
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }
}

/// Listens for SIGINT and SIGTERM: the first triggers `interrupt`, a second kills the process
/// groups of running shell tasks and exits the process at once with its own exit code. Returns only if the handlers cannot be installed.
pub async fn listen(interrupt: Interrupt) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("could not install the SIGINT/SIGTERM handlers");
        return;
    };
    let first = tokio::select! {
        _ = int.recv() => StopSignal::Interrupt,
        _ = term.recv() => StopSignal::Terminate,
    };
    tracing::info!(signal = first.name(), "stopping the run");
    eprintln!(
        "playbook: {first} received, stopping: no further task starts, on_fail and post_book run, locks are released (send another signal to exit at once)"
    );
    interrupt.trigger(first);
    let second = tokio::select! {
        _ = int.recv() => StopSignal::Interrupt,
        _ = term.recv() => StopSignal::Terminate,
    };
    eprintln!("playbook: second signal ({second}), exiting at once");
    crate::task::kill_running_groups();
    std::process::exit(i32::from(second.exit_code()));
}
