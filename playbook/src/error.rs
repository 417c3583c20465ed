//! Library errors that end a command before or outside a playbook run.

use std::path::PathBuf;

use crate::diagnostic::Diagnostics;

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The playbook failed to load or check; every problem is listed.
    #[error("{}playbook {} is not valid", .0, .1.display())]
    Invalid(Diagnostics, PathBuf),
    /// The command line was wrong.
    #[error("{0}")]
    Usage(String),
    /// A report or output file could not be written.
    #[error("{0}")]
    Output(String),
    /// The async runtime could not start.
    #[error("could not start the async runtime: {0}")]
    Runtime(#[from] std::io::Error),
}
