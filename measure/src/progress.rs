//! Progress bars on a terminal, nothing otherwise.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps; hidden when `quiet` or when stderr is not a terminal.
pub(crate) fn progress(len: u64, quiet: bool, message: &str) -> ProgressBar {
    if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message.to_owned());
    bar
}
