//! Human console output (stage **execute** and **report**): one line per task, a live spinner
//! on a terminal, and a final summary. Without a terminal the output is plain and quiet; with
//! `--json` human lines move to stderr so stdout carries only JSON.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Where human output goes and whether a spinner runs.
pub(crate) struct Console {
    bar: Option<ProgressBar>,
    human_to_stderr: bool,
    silent: bool,
}

impl Console {
    /// A console for a run; the spinner only appears when stderr is a terminal.
    pub(crate) fn new(json: bool) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed}] {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            Some(bar)
        } else {
            None
        };
        Self {
            bar,
            human_to_stderr: json,
            silent: false,
        }
    }

    /// A console that prints nothing (unit tests).
    #[cfg(test)]
    pub(crate) fn silent() -> Self {
        Self {
            bar: None,
            human_to_stderr: true,
            silent: true,
        }
    }

    fn print(&self, to_stderr: bool, line: &str) {
        if self.silent {
            return;
        }
        let write = || {
            if to_stderr {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            } else {
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
        };
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    /// A log line (always stderr).
    pub(crate) fn log_line(&self, line: &str) {
        self.print(true, line);
    }

    /// A human line (stdout, or stderr with `--json`).
    pub(crate) fn say(&self, line: &str) {
        self.print(self.human_to_stderr, line);
    }

    /// Updates the spinner for a starting task.
    pub(crate) fn task_started(&self, index: usize, total: usize, description: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("task {index} of {total}: {description}"));
        }
    }

    /// Prints the one line that records a finished task; `seconds` is the run time of its
    /// last attempt, the value the report records.
    pub(crate) fn task_finished(
        &self,
        list: &str,
        kind: &str,
        description: &str,
        success: bool,
        seconds: f64,
    ) {
        let status = if success { "ok  " } else { "FAIL" };
        let what = format!("{list}.{kind}");
        self.say(&format!(
            "{status} {what:<24} {seconds:>7.2}s  {description}"
        ));
    }

    /// Stops the spinner.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.finish();
    }
}
