//! A private `nats-server` child process on free loopback ports.
//!
//! The emulator starts one when no `--server` is given, and the test harness uses the same code.
//! The server picks its own ports (`-p -1 -m -1`) and we read them back from its log, so there
//! is no race for a port. The process is stopped and its files removed on drop.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a private nats-server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error(
        "nats-server was not found (looked for {0}); install it with scripts/setup, or set NATS_SERVER_BIN"
    )]
    NotFound(String),
    #[error("could not start nats-server: {0}")]
    Spawn(std::io::Error),
    #[error("nats-server did not report its ports within {seconds}s; its log says:\n{log}")]
    NotReady { seconds: u64, log: String },
    #[error("nats-server exited at start ({status}); its log says:\n{log}")]
    Exited { status: String, log: String },
    #[error("could not create a directory for nats-server: {0}")]
    Dir(std::io::Error),
}

/// Options for [`LocalNatsServer::start`].
#[derive(Debug, Clone, Default)]
pub struct LocalNatsOptions {
    /// Extra command-line arguments, e.g. `["--max_payload", "2048"]`.
    pub extra_args: Vec<String>,
    /// Fixed client port instead of a random one.
    pub port: Option<u16>,
    /// A configuration file to pass with `-c`.
    pub config_file: Option<PathBuf>,
    /// Make the server a member of a cluster (routes on loopback).
    pub cluster: Option<ClusterOptions>,
    /// Enable JetStream with this store directory (`-js -sd DIR`); the directory is the
    /// caller's and survives the server, so a restart on the same port finds its streams.
    pub jetstream: Option<PathBuf>,
}

/// Cluster membership of one server.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// The cluster's name (`--cluster_name`).
    pub name: String,
    /// Fixed route port instead of a random one (a restarted member keeps its port).
    pub route_port: Option<u16>,
    /// Route URLs of members to join, e.g. `nats-route://127.0.0.1:6222`.
    pub routes: Vec<String>,
}

/// A running nats-server child, stopped on drop.
#[derive(Debug)]
pub struct LocalNatsServer {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
    monitor_port: u16,
    /// 0 unless the server is a cluster member.
    route_port: u16,
}

/// The binary to run: `$NATS_SERVER_BIN`, else `nats-server` on the PATH.
pub fn nats_server_binary() -> Result<PathBuf, NatsError> {
    if let Ok(bin) = std::env::var("NATS_SERVER_BIN")
        && !bin.is_empty()
    {
        let path = PathBuf::from(&bin);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(NatsError::NotFound(bin))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(NatsError::NotFound("nats-server on the PATH".into()))
}

impl LocalNatsServer {
    /// Starts nats-server on 127.0.0.1 and waits until it reports its ports.
    pub fn start(options: &LocalNatsOptions) -> Result<LocalNatsServer, NatsError> {
        let binary = nats_server_binary()?;
        remove_crashed_dirs();
        let dir =
            std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).map_err(NatsError::Dir)?;
        let log = dir.join("nats-server.log");
        let port = options
            .port
            .map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut command = Command::new(&binary);
        command
            .args(["-a", "127.0.0.1", "-p", &port, "-m", "-1", "-l"])
            .arg(&log)
            .args(&options.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(cfg) = &options.config_file {
            command.arg("-c").arg(cfg);
        }
        if let Some(store) = &options.jetstream {
            command.arg("-js").arg("-sd").arg(store);
        }
        if let Some(cluster) = &options.cluster {
            let route_port = cluster
                .route_port
                .map_or_else(|| "-1".to_owned(), |p| p.to_string());
            command
                .args(["--cluster_name", &cluster.name, "--cluster"])
                .arg(format!("nats://127.0.0.1:{route_port}"));
            if !cluster.routes.is_empty() {
                command.arg("--routes").arg(cluster.routes.join(","));
            }
        }
        let child = crate::process::spawn_tied(command).map_err(NatsError::Spawn)?;
        crate::process::register_cleanup(child.id(), Some(dir.clone()));
        let mut server = LocalNatsServer {
            child: Some(child),
            dir,
            client_port: 0,
            monitor_port: 0,
            route_port: 0,
        };
        server.wait_ready(&log, options.cluster.is_some(), Duration::from_secs(10))?;
        Ok(server)
    }

    fn wait_ready(
        &mut self,
        log: &Path,
        clustered: bool,
        limit: Duration,
    ) -> Result<(), NatsError> {
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let client = port_after(&text, "Listening for client connections on ");
            let monitor = port_after(&text, "Starting http monitor on ");
            let route = port_after(&text, "Listening for route connections on ");
            if let (Some(c), Some(m)) = (client, monitor)
                && text.contains("Server is ready")
                && (!clustered || route.is_some())
            {
                self.client_port = c;
                self.monitor_port = m;
                self.route_port = route.unwrap_or(0);
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut stderr);
                }
                return Err(NatsError::Exited {
                    status: status.to_string(),
                    log: format!("{text}{stderr}"),
                });
            }
            if started.elapsed() > limit {
                return Err(NatsError::NotReady {
                    seconds: limit.as_secs(),
                    log: text,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn client_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// The client port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// `http://127.0.0.1:<monitor port>`.
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    /// The monitoring port.
    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    /// `nats-route://127.0.0.1:<route port>`, when the server is a cluster member.
    pub fn route_url(&self) -> Option<String> {
        (self.route_port != 0).then(|| format!("nats-route://127.0.0.1:{}", self.route_port))
    }

    /// The route port (0 when not clustered).
    pub fn route_port(&self) -> u16 {
        self.route_port
    }

    /// Kills the server at once (SIGKILL), as a crash would; its directory stays until drop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            crate::process::unregister_cleanup(child.id());
        }
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Process id of the server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server: SIGTERM, then SIGKILL after two seconds.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::process::terminate(&mut child, Duration::from_secs(2));
            crate::process::unregister_cleanup(child.id());
        }
    }
}

impl Drop for LocalNatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Directories of private servers are `<temp>/emulator-nats-<pid>-<n>`.
const DIR_PREFIX: &str = "emulator-nats-";

/// Removes the directories that earlier runs, since crashed, left behind: those whose owning
/// pid is no longer alive.
pub fn remove_crashed_dirs() -> usize {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if owner != std::process::id()
            && !crate::process::is_alive(owner)
            && std::fs::remove_dir_all(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

fn port_after(text: &str, marker: &str) -> Option<u16> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let addr = rest.split_whitespace().next()?;
    addr.rsplit_once(':')?.1.parse().ok()
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (u64::from(nanos) << 16) | NEXT.fetch_add(1, Ordering::Relaxed)
}
