//! The `playbook` command: a thin wrapper over [`playbook::run`].

use std::process::ExitCode;

fn main() -> ExitCode {
    playbook::cli::init_tracing();
    match playbook::run(std::env::args_os().collect()) {
        Ok(code) => ExitCode::from(code),
        // One line, never a backtrace (even with RUST_BACKTRACE=1).
        Err(e) => {
            eprintln!("playbook: {e}");
            ExitCode::from(playbook::cli::EXIT_FAILURE)
        }
    }
}
