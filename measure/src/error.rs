//! What can go wrong in `emulator measure` and `emulator scrape`: usage errors (exit 2) and
//! run failures (exit 1).

use std::path::PathBuf;

use agents::BadFactFilter;
use agents::client::ClientError;
use agents::compound::CompoundError;
use agents::config::ConfigFileError;
use agents::servers::BadServer;

/// An error of `emulator measure` or `emulator scrape`.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// A flag has a value that cannot be used.
    #[error("{flag} {reason}")]
    BadFlag { flag: &'static str, reason: String },
    /// `--compound` is not an expression of the supported subset.
    #[error("invalid --compound filter at column {}: {}\n  {expr}\n  {caret}^", .error.position, .error.message, caret = " ".repeat(.error.position.saturating_sub(1)))]
    Compound { expr: String, error: CompoundError },
    /// A `--fact` filter that does not parse.
    #[error("invalid --fact filter: {0}")]
    Fact(#[from] BadFactFilter),
    /// A server address that does not parse.
    #[error(transparent)]
    Server(#[from] BadServer),
    /// The `-c` Choria client configuration file.
    #[error(transparent)]
    Config(#[from] ConfigFileError),
    /// A federation network name that cannot be used.
    #[error("{from}: {reason}")]
    BadFederation { from: &'static str, reason: String },
    /// No broker address anywhere.
    #[error(
        "no broker configured: use --server HOST:PORT, -c FILE (plugin.choria.middleware_hosts), CHORIA_SERVERS or NATS_URL"
    )]
    NoServers,
    /// The output directory cannot be written (checked before anything is measured).
    #[error("--out {}: cannot write there: {source}", .path.display())]
    OutNotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The broker did not answer in time.
    #[error("timed out connecting to {servers}")]
    ConnectTimeout { servers: String },
    /// Talking to the broker failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Discovery found nothing, so there is nothing to measure.
    #[error(
        "discovery found no nodes matching the filter within {seconds}s (is the fleet running and connected to {servers}?)"
    )]
    NoNodes { seconds: f64, servers: String },
    /// Writing a result file failed (the summary has been printed).
    #[error("writing results to {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An input file given by flag (`--scrape-samples`, a results directory of `compare`)
    /// cannot be read.
    #[error("{flag} {}: {source}", .path.display())]
    ReadInput {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// An input file that is not what the flag needs.
    #[error("{flag} {}: {reason}", .path.display())]
    BadInput {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// Signal handlers could not be installed.
    #[error("cannot listen for SIGINT/SIGTERM: {0}")]
    Signals(std::io::Error),
    /// A request task panicked or was cancelled.
    #[error("a request task failed: {0}")]
    Task(String),
    /// The HTTP client for scraping could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

impl MeasureError {
    /// True for errors in how the command was called (exit 2).
    pub fn is_usage(&self) -> bool {
        match self {
            MeasureError::BadFlag { .. }
            | MeasureError::Compound { .. }
            | MeasureError::BadFederation { .. }
            | MeasureError::Fact(_)
            | MeasureError::Server(_)
            | MeasureError::Config(_)
            | MeasureError::NoServers
            | MeasureError::OutNotWritable { .. }
            | MeasureError::ReadInput { .. }
            | MeasureError::BadInput { .. } => true,
            MeasureError::ConnectTimeout { .. }
            | MeasureError::Client(_)
            | MeasureError::NoNodes { .. }
            | MeasureError::Write { .. }
            | MeasureError::Signals(_)
            | MeasureError::Task(_)
            | MeasureError::Http(_) => false,
        }
    }

    /// The process exit code for this error: 2 for usage errors, else 1.
    pub fn exit_code(&self) -> i32 {
        if self.is_usage() { 2 } else { 1 }
    }

    pub(crate) fn flag(flag: &'static str, reason: impl Into<String>) -> MeasureError {
        MeasureError::BadFlag {
            flag,
            reason: reason.into(),
        }
    }
}

/// Turns a usage error into exit code 2 after printing it; other errors are returned.
///
/// The `emulator` binary returns errors from `main`, which exits 1; this keeps usage errors
/// at 2 as the documentation says.
pub(crate) fn usage_exits_2(result: Result<i32, MeasureError>) -> Result<i32, MeasureError> {
    match result {
        Err(e) if e.is_usage() => {
            eprintln!("error: {e}");
            Ok(2)
        }
        other => other,
    }
}
