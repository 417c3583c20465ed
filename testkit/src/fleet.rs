//! Emulated fleets in the test process, child processes killed on drop, and ports for servers
//! that a child process will bind.

use std::process::Child;
use std::time::Duration;

use clap::Parser as _;

/// Starts `instances` emulated daemons named `<name>-<i>` on `url` in this process and waits
/// until every one is connected and subscribed. `extra` are more `emulator` flags.
pub async fn start_fleet(
    url: &str,
    name: &str,
    instances: u32,
    extra: &[&str],
) -> emulator::Running {
    let instances_text = instances.to_string();
    let mut argv = vec![
        "emulator",
        "--name",
        name,
        "-i",
        &instances_text,
        "--server",
        url,
        "-p",
        "0",
        "--http-address",
        "127.0.0.1",
    ];
    argv.extend_from_slice(extra);
    let args = emulator::cli::Args::try_parse_from(argv).expect("valid emulator flags");
    let config = emulator::Config::from_args(&args).expect("valid emulator config");
    let running = emulator::start(config).await.expect("emulator starts");
    tokio::time::timeout(Duration::from_secs(30), running.wait_ready())
        .await
        .expect("every instance connects within 30s");
    running
}

/// A child process that is killed and reaped when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port for a server that another process will bind later.
///
/// Taken below the ephemeral range (32768-60999 by default), because concurrent tests' outgoing
/// connections take ephemeral ports at any moment and could grab one between this check and the
/// server's bind. Ports our own process binds should use `127.0.0.1:0` instead.
pub fn port_for_child() -> u16 {
    use rand::RngExt as _;
    loop {
        let port = rand::rng().random_range(20_000..32_000);
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}
