//! The run log (stage **execute**): every line is kept for the report, printed to stderr in
//! Choria's format when it passes the log level, mirrored to `tracing`, and masked so that the
//! values of `sensitive` inputs never appear.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::console::Console;

/// Text that replaces sensitive values.
pub const MASK: &str = "*****";

/// Log levels of the DSL (`loglevel:` and `--loglevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Everything.
    Debug,
    /// Normal progress (the default).
    Info,
    /// Warnings.
    Warn,
    /// Errors.
    Error,
    /// Fatal errors only.
    Fatal,
}

impl Level {
    /// All levels in order.
    pub const ALL: [Level; 5] = [
        Self::Debug,
        Self::Info,
        Self::Warn,
        Self::Error,
        Self::Fatal,
    ];

    /// The DSL name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
            Self::Fatal => "fatal",
        }
    }

    /// Parses a DSL name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }

    fn letter(self) -> char {
        match self {
            Self::Debug => 'D',
            Self::Info => 'I',
            Self::Warn => 'W',
            Self::Error => 'E',
            Self::Fatal => 'F',
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One log line as stored in the report.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    /// UTC time.
    pub time: DateTime<Utc>,
    /// Level.
    pub level: Level,
    /// Context, e.g. `tasks.shell`.
    pub from: String,
    /// Message (masked).
    pub msg: String,
}

/// The run's log sink.
pub(crate) struct RunLog {
    playbook: String,
    threshold: Level,
    console: Console,
    entries: Mutex<Vec<LogEntry>>,
    secrets: Mutex<Vec<String>>,
}

impl RunLog {
    pub(crate) fn new(playbook: &str, threshold: Level, console: Console) -> Self {
        Self {
            playbook: playbook.to_string(),
            threshold,
            console,
            entries: Mutex::new(Vec::new()),
            secrets: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn console(&self) -> &Console {
        &self.console
    }

    /// Registers a value that must never be printed.
    pub(crate) fn add_secret(&self, secret: &str) {
        if !secret.is_empty() {
            let mut s = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
            s.push(secret.to_string());
            // Longest first so that overlapping secrets are fully masked.
            s.sort_by_key(|x| std::cmp::Reverse(x.len()));
        }
    }

    /// Replaces every registered secret in `text`.
    pub(crate) fn mask(&self, text: &str) -> String {
        let secrets = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = text.to_string();
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }

    pub(crate) fn log(&self, level: Level, from: &str, msg: impl AsRef<str>) {
        if level < self.threshold {
            return;
        }
        let msg = self.mask(msg.as_ref());
        match level {
            Level::Debug => tracing::debug!(from, "{msg}"),
            Level::Info => tracing::info!(from, "{msg}"),
            Level::Warn => tracing::warn!(from, "{msg}"),
            Level::Error | Level::Fatal => tracing::error!(from, "{msg}"),
        }
        let time = Utc::now();
        let line = format!(
            "{} {}: {}#{:<25} {}",
            level.letter(),
            time.format("%H:%M:%S"),
            self.playbook,
            from,
            msg
        );
        self.console.log_line(&line);
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(LogEntry {
                time,
                level,
                from: from.to_string(),
                msg,
            });
    }

    pub(crate) fn debug(&self, from: &str, msg: impl AsRef<str>) {
        self.log(Level::Debug, from, msg);
    }

    pub(crate) fn info(&self, from: &str, msg: impl AsRef<str>) {
        self.log(Level::Info, from, msg);
    }

    pub(crate) fn warn(&self, from: &str, msg: impl AsRef<str>) {
        self.log(Level::Warn, from, msg);
    }

    pub(crate) fn error(&self, from: &str, msg: impl AsRef<str>) {
        self.log(Level::Error, from, msg);
    }

    pub(crate) fn entries(&self) -> Vec<LogEntry> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_levels_filter() {
        let log = RunLog::new("pb", Level::Info, Console::silent());
        log.add_secret("hunter2");
        log.info("x", "password is hunter2");
        log.debug("x", "hidden");
        let entries = log.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].msg, "password is *****");
    }
}
