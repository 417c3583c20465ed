//! The `playbook` command: a thin wrapper over [`playbook::run`].

use std::process::ExitCode;

fn main() -> anyhow::Result<ExitCode> {
    playbook::cli::init_tracing();
    let code = playbook::run(std::env::args_os().collect())?;
    Ok(ExitCode::from(code))
}
