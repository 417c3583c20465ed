//! Child processes killed on drop, the workspace's binaries, and ports for servers that a
//! child process will bind.

use std::path::PathBuf;
use std::process::Child;
use std::sync::Mutex;

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

/// The path of a binary of this workspace (`emulator`, `loadlab-node`, `playbook`, ...), built
/// on first use with `cargo build` when it is missing beside the test executable, so that a
/// test crate can run the programs of other crates.
pub fn workspace_binary(name: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    let path = dir.join(name);
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    if !path.is_file() {
        let package = match name {
            "loadlab-node" => "node",
            "emulator-bench" => "bench",
            "federation-broker" | "federation-bench" => "federation",
            "stream-replicator" => "replicator",
            other => other,
        };
        let mut cargo =
            std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
        cargo.args(["build", "-p", package, "--bin", name]);
        if dir.file_name().is_some_and(|p| p == "release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("run cargo build");
        assert!(
            status.success(),
            "cargo build -p {package} --bin {name} failed"
        );
    }
    path
}
