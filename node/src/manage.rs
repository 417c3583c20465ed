//! The actions of the `emulator` management agent (DDL `agents/ddl/emulator.json`).
//!
//! Processes are started detached (their own process group) with their output in the work
//! directory, and recorded in [`Processes`]: `stop` and `stop_nats` signal only processes this
//! daemon started, after checking each is still the process it started. Programs are run
//! directly with an argument vector, never through a shell.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agents::DebugVars;
use agents::{RpcReply, StatusCode};
use serde_json::{Value, json};

use crate::download::{self, DownloadError};
use crate::procs::{Liveness, Processes, Role, SpawnError, StopSignal, Stopped, Tracked};
use crate::request::{ActionName, Download, Request, Start, StartFederation};

/// How long `start` waits for the emulator's `/debug/vars`.
const START_WAIT: Duration = Duration::from_secs(60);
/// How long `start_nats` waits for nats-server's monitor port.
const NATS_START_WAIT: Duration = Duration::from_secs(20);
/// How long `start_federation` waits for every broker connection to be up.
const FEDERATION_START_WAIT: Duration = Duration::from_secs(20);
/// How long `stop_federation` waits after SIGHUP before SIGKILL: the broker passes on what
/// it has queued for up to 10 s after the first signal.
const FEDERATION_STOP_GRACE: Duration = Duration::from_secs(12);
/// The config file `start_federation` writes into the work directory.
pub const FEDERATION_CONFIG: &str = "federation.cfg";

/// The federation broker `start_federation` runs, and its default monitor port.
#[derive(Debug, Clone)]
pub struct FederationSettings {
    /// Used when the work directory has no `federation-broker`.
    pub binary: PathBuf,
    /// The broker's `/debug/vars` port when a request gives none.
    pub monitor: u16,
}

/// Where the node daemon keeps downloads, logs and its state, and how it reaches local services.
#[derive(Debug, Clone)]
pub struct Manager {
    pub workdir: PathBuf,
    /// The node's identity: the default name prefix of the fleets it starts.
    pub identity: String,
    /// The emulator binary `start` runs when the work directory has none.
    pub emulator_binary: PathBuf,
    pub federation: FederationSettings,
    processes: Processes,
    /// For local monitor ports: short timeouts.
    http: reqwest::Client,
    /// For downloads: only a connect timeout; the idle timeout is per request.
    downloads: reqwest::Client,
}

/// An action that could not be done; the reply's message is its chain of causes on one line.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{action}: cannot create the work directory {}", path.display())]
    Workdir {
        action: ActionName,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("download {url} into {target}")]
    Download {
        url: String,
        target: String,
        #[source]
        source: DownloadError,
    },
    #[error("start an emulator on monitor port {monitor}")]
    Start {
        monitor: u16,
        #[source]
        source: StartError,
    },
    #[error("stop the emulator on monitor port {port}")]
    Stop {
        port: u16,
        #[source]
        source: StopError,
    },
    #[error("start nats-server on port {port} (monitor port {monitor_port})")]
    StartNats {
        port: u16,
        monitor_port: u16,
        #[source]
        source: StartError,
    },
    #[error("stop nats-server")]
    StopNats {
        #[source]
        source: StopError,
    },
    #[error("start a federation broker (monitor port {monitor})")]
    StartFederation {
        monitor: u16,
        #[source]
        source: StartError,
    },
    #[error("stop the federation broker")]
    StopFederation {
        #[source]
        source: StopError,
    },
}

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error(
        "something this daemon did not start already answers /debug/vars there (naming pid {named})"
    )]
    PortTaken { named: String },
    #[error("it exited at start ({how}): {first_line} (log: {})", log.display())]
    ExitedAtStart {
        pid: u32,
        how: String,
        first_line: String,
        log: PathBuf,
    },
    #[error("pid {pid} was stopped by `stop` before it answered")]
    Stopped { pid: u32 },
    #[error("pid {pid} did not answer on its monitor port within {}s; it is still running and `stop` ends it", waited.as_secs())]
    NoAnswer { pid: u32, waited: Duration },
    #[error("cannot find nats-server")]
    NatsBinary(#[source] natsproc::NatsError),
    #[error("tls: the federation broker speaks plain NATS only; start it with tls=false")]
    Tls,
    #[error(
        "the cluster name {cluster:?} (the node identity) is not one subject token (letters, digits, _ and - only); give the name input"
    )]
    Cluster { cluster: String },
    #[error("cannot write the config file {}", path.display())]
    ConfigFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why a process could not be stopped.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error(
        "this daemon started no emulator there, and what answers /debug/vars there (naming pid {named}) was not started by it; signalled nothing"
    )]
    NotOurs { named: String },
    #[error("{0}")]
    Stuck(String),
}

impl ActionError {
    /// The reply data for this error (its statuscode is always 1, aborted).
    fn reply_data(&self) -> Value {
        match self {
            ActionError::Workdir { action, .. } => match action {
                ActionName::Download => json!({"success": false}),
                ActionName::Start => json!({"status": false}),
                ActionName::Stop => json!({"status": false}),
                ActionName::Status => json!({"running": false}),
                ActionName::StartNats => json!({"running": false}),
                ActionName::StopNats => json!({"stopped": false}),
                ActionName::StartFederation => json!({"running": false}),
                ActionName::StopFederation => json!({"stopped": false}),
                ActionName::FederationStatus => json!({"running": false}),
            },
            ActionError::Download { .. } => json!({"success": false}),
            ActionError::Start { source, .. } => json!({"status": false, "pid": source.pid()}),
            ActionError::StartNats { source, .. } => json!({"running": false, "pid": source.pid()}),
            ActionError::Stop { .. } => json!({"status": false}),
            ActionError::StopNats { .. } => json!({"stopped": false}),
            ActionError::StartFederation { source, .. } => {
                json!({"running": false, "pid": source.pid()})
            }
            ActionError::StopFederation { .. } => json!({"stopped": false}),
        }
    }
}

impl StartError {
    fn pid(&self) -> u32 {
        match self {
            StartError::Spawn(SpawnError::AlreadyRunning { pid, .. })
            | StartError::ExitedAtStart { pid, .. }
            | StartError::NoAnswer { pid, .. }
            | StartError::Stopped { pid } => *pid,
            StartError::Spawn(SpawnError::Log { .. } | SpawnError::Exec { .. })
            | StartError::PortTaken { .. }
            | StartError::NatsBinary(_)
            | StartError::Tls
            | StartError::Cluster { .. }
            | StartError::ConfigFile { .. } => 0,
        }
    }
}

impl Manager {
    pub fn new(
        workdir: PathBuf,
        identity: String,
        emulator_binary: PathBuf,
        federation: FederationSettings,
    ) -> Manager {
        let processes = Processes::load(&workdir);
        Manager {
            workdir,
            identity,
            emulator_binary,
            federation,
            processes,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .no_proxy()
                .build()
                .unwrap_or_default(),
            downloads: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Runs one decoded request.
    pub async fn handle(&self, request: Request) -> RpcReply {
        match self.run(request).await {
            Ok(data) => RpcReply::ok(data),
            Err(e) => {
                let message = crate::one_line(&e);
                tracing::warn!(error = %message, "emulator agent action failed");
                let mut reply = RpcReply::error(StatusCode::Aborted, message);
                reply.data = e.reply_data();
                reply
            }
        }
    }

    async fn run(&self, request: Request) -> Result<Value, ActionError> {
        std::fs::create_dir_all(&self.workdir).map_err(|source| ActionError::Workdir {
            action: request.action(),
            path: self.workdir.clone(),
            source,
        })?;
        match request {
            Request::Download(d) => self.download(d).await,
            Request::Start(s) => {
                let monitor = s.monitor;
                self.start(s)
                    .await
                    .map_err(|source| ActionError::Start { monitor, source })
            }
            Request::Stop { port } => self
                .stop(port)
                .await
                .map_err(|source| ActionError::Stop { port, source }),
            Request::Status { port } => Ok(self.status(port).await),
            Request::StartNats { port, monitor_port } => self
                .start_nats(port, monitor_port)
                .await
                .map_err(|source| ActionError::StartNats {
                    port,
                    monitor_port,
                    source,
                }),
            Request::StopNats => self
                .stop_nats()
                .await
                .map_err(|source| ActionError::StopNats { source }),
            Request::StartFederation(f) => {
                let monitor = f.monitor.unwrap_or(self.federation.monitor);
                self.start_federation(f, monitor)
                    .await
                    .map_err(|source| ActionError::StartFederation { monitor, source })
            }
            Request::StopFederation => self
                .stop_federation()
                .await
                .map_err(|source| ActionError::StopFederation { source }),
            Request::FederationStatus { monitor } => Ok(self
                .federation_status(monitor.unwrap_or(self.federation.monitor))
                .await),
        }
    }

    async fn download(&self, d: Download) -> Result<Value, ActionError> {
        match download::fetch(&self.downloads, &d, &self.workdir).await {
            Ok(f) => Ok(json!({
                "success": true,
                "size": f.size,
                "sha256": f.sha256,
                "path": f.path.display().to_string(),
            })),
            Err(source) => Err(ActionError::Download {
                url: d.url,
                target: d.target,
                source,
            }),
        }
    }

    async fn vars(&self, port: u16) -> Option<DebugVars> {
        let url = format!("http://127.0.0.1:{port}/debug/vars");
        self.http.get(url).send().await.ok()?.json().await.ok()
    }

    /// An informational pid file for people and scripts; the daemon never reads it.
    fn pid_file(&self, role: Role) -> PathBuf {
        match role {
            Role::Emulator { monitor } => self.workdir.join(format!("emulator-{monitor}.pid")),
            Role::Nats => self.workdir.join("nats-server.pid"),
            // Written (and removed at exit) by the broker itself, given `--pid`.
            Role::Federation => self.workdir.join("federation-broker.pid"),
        }
    }

    async fn start(&self, s: Start) -> Result<Value, StartError> {
        let role = Role::Emulator { monitor: s.monitor };
        if let Some(t) = self.processes.get(role)
            && t.liveness() == Liveness::Running
        {
            return Err(SpawnError::AlreadyRunning { role, pid: t.pid }.into());
        }
        if let Some(vars) = self.vars(s.monitor).await {
            return Err(StartError::PortTaken {
                named: vars.config.pid.to_string(),
            });
        }
        let downloaded = self.workdir.join("emulator");
        let binary = if downloaded.is_file() {
            downloaded
        } else {
            self.emulator_binary.clone()
        };
        let mut args: Vec<String> = vec![
            "--instances".into(),
            s.instances.to_string(),
            "--agents".into(),
            s.agents.to_string(),
            "--collectives".into(),
            s.collectives.to_string(),
            "--name".into(),
            s.name.unwrap_or_else(|| self.identity.clone()),
            "--http-port".into(),
            s.monitor.to_string(),
            "--config".into(),
            "/dev/null".into(),
            // The emulator gives up (and says why) when its fleet is not connected in time.
            "--connect-timeout".into(),
            START_WAIT.as_secs().to_string(),
        ];
        for server in s.servers {
            args.push("--server".into());
            args.push(server);
        }
        if s.tls {
            args.push("--tls".into());
        }
        let log = self.workdir.join(format!("emulator-{}.log", s.monitor));
        let tracked = self.processes.spawn(role, &binary, &args, &log)?;
        let pid = tracked.pid;
        let _ = std::fs::write(self.pid_file(role), pid.to_string());
        let started = Instant::now();
        while started.elapsed() < START_WAIT {
            // Started means every instance connected and subscribed, not only /debug/vars up.
            if let Some(vars) = self.vars(s.monitor).await
                && vars.config.pid == pid
                && vars.emulator.instances.connected >= vars.config.instances
            {
                return Ok(json!({
                    "status": true,
                    "pid": pid,
                    "message": format!(
                        "started emulator pid {pid}: {} instances connected",
                        vars.emulator.instances.connected
                    ),
                }));
            }
            self.still_starting(role, &tracked)?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(StartError::NoAnswer {
            pid,
            waited: START_WAIT,
        })
    }

    /// Whether the process `start`/`start_nats` launched is still running and tracked.
    fn still_starting(&self, role: Role, launched: &Tracked) -> Result<(), StartError> {
        match self.processes.get(role) {
            Some(t) if t.pid == launched.pid && t.start_time == launched.start_time => {
                match t.liveness() {
                    Liveness::Running => Ok(()),
                    Liveness::Exited(how) => Err(StartError::ExitedAtStart {
                        pid: t.pid,
                        how,
                        first_line: first_error_line(&t.log),
                        log: t.log,
                    }),
                }
            }
            // A `stop` ended and forgot it meanwhile.
            Some(_) | None => Err(StartError::Stopped { pid: launched.pid }),
        }
    }

    async fn stop(&self, port: u16) -> Result<Value, StopError> {
        let role = Role::Emulator { monitor: port };
        let stopped = self.processes.stop(role, Duration::from_secs(20)).await;
        self.stopped(role, stopped, "status").await
    }

    async fn stop_nats(&self) -> Result<Value, StopError> {
        let stopped = self
            .processes
            .stop(Role::Nats, Duration::from_secs(5))
            .await;
        self.stopped(Role::Nats, stopped, "stopped").await
    }

    /// The reply to `stop`/`stop_nats`: exactly what was done.
    async fn stopped(&self, role: Role, stopped: Stopped, key: &str) -> Result<Value, StopError> {
        let message = stopped.describe(role);
        tracing::info!(role = %role, what = %message, "stop");
        let pid = match &stopped {
            Stopped::NothingTracked => {
                if let Role::Emulator { monitor } = role
                    && let Some(vars) = self.vars(monitor).await
                {
                    return Err(StopError::NotOurs {
                        named: vars.config.pid.to_string(),
                    });
                }
                0
            }
            Stopped::AlreadyExited { pid, .. } | Stopped::Stopped { pid, .. } => *pid,
            Stopped::Stuck { .. } => return Err(StopError::Stuck(message)),
        };
        let _ = std::fs::remove_file(self.pid_file(role));
        Ok(json!({key: true, "pid": pid, "message": message}))
    }

    async fn status(&self, port: u16) -> Value {
        let role = Role::Emulator { monitor: port };
        let tracked = self.processes.get(role);
        match self.vars(port).await {
            Some(v) => {
                let ours = tracked
                    .as_ref()
                    .is_some_and(|t| v.config.pid == t.pid && t.liveness() == Liveness::Running);
                let message = if ours {
                    "running".to_owned()
                } else {
                    format!(
                        "running, but not started by this daemon (pid {} answers on port {port})",
                        v.config.pid
                    )
                };
                json!({
                    "running": true,
                    "pid": v.config.pid,
                    "name": v.name,
                    "instances": v.config.instances,
                    "connected": v.emulator.instances.connected,
                    "tls": v.config.tls == 1,
                    "memory": v.memstats.sys,
                    "message": message,
                })
            }
            None => {
                let message = silent_status("emulator", tracked.as_ref(), port);
                json!({"running": false, "pid": 0, "name": "", "instances": 0, "connected": 0, "tls": false, "memory": 0, "message": message})
            }
        }
    }

    async fn start_nats(&self, port: u16, monitor: u16) -> Result<Value, StartError> {
        let role = Role::Nats;
        if let Some(t) = self.processes.get(role)
            && t.liveness() == Liveness::Running
        {
            return Err(SpawnError::AlreadyRunning { role, pid: t.pid }.into());
        }
        let binary = natsproc::nats_server_binary().map_err(StartError::NatsBinary)?;
        let log = self.workdir.join(format!("nats-server-{port}.log"));
        let mut args: Vec<String> = Vec::new();
        // A cluster configuration (routes) written by the host's provisioning, if any; the
        // port flags below override its listen ports.
        if let Ok(config) = std::env::var("LOADLAB_NATS_CONFIG")
            && Path::new(&config).is_file()
        {
            args.extend(["-c".into(), config]);
        }
        args.extend([
            "-a".into(),
            "0.0.0.0".into(),
            "-p".into(),
            port.to_string(),
            "-m".into(),
            monitor.to_string(),
        ]);
        let tracked = self.processes.spawn(role, &binary, &args, &log)?;
        let pid = tracked.pid;
        let _ = std::fs::write(self.pid_file(role), pid.to_string());
        let started = Instant::now();
        let url = format!("http://127.0.0.1:{monitor}/varz");
        while started.elapsed() < NATS_START_WAIT {
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(json!({"running": true, "pid": pid}));
            }
            self.still_starting(role, &tracked)?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(StartError::NoAnswer {
            pid,
            waited: NATS_START_WAIT,
        })
    }
}

impl Manager {
    async fn federation_vars(&self, port: u16) -> Option<federation::DebugVars> {
        let url = format!("http://127.0.0.1:{port}/debug/vars");
        self.http.get(url).send().await.ok()?.json().await.ok()
    }

    /// Writes `<workdir>/federation.cfg` with the keys the 2017 agent wrote and starts
    /// `federation-broker --config` with it; replies once every connection is up.
    async fn start_federation(
        &self,
        f: StartFederation,
        monitor: u16,
    ) -> Result<Value, StartError> {
        use federation::config::keys;
        let role = Role::Federation;
        if let Some(t) = self.processes.get(role)
            && t.liveness() == Liveness::Running
        {
            return Err(SpawnError::AlreadyRunning { role, pid: t.pid }.into());
        }
        if f.tls {
            return Err(StartError::Tls);
        }
        let cluster = f.name.unwrap_or_else(|| self.identity.clone());
        if cluster.is_empty()
            || !cluster
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(StartError::Cluster { cluster });
        }
        if let Some(vars) = self.federation_vars(monitor).await {
            return Err(StartError::PortTaken {
                named: vars.config.pid.to_string(),
            });
        }
        let config = self.workdir.join(FEDERATION_CONFIG);
        let text = format!(
            "# written by loadlab-node start_federation\n\
             {} = {}\n{} = {}\n{} = info\n{} = true\n{} = {}\n{} = {}\n{} = {}\n",
            keys::IDENTITY,
            self.identity,
            keys::LOGFILE,
            self.workdir.join("federation.log").display(),
            keys::LOGLEVEL,
            keys::ENABLED,
            keys::FEDERATION_SERVERS,
            f.federation_servers.join(","),
            keys::COLLECTIVE_SERVERS,
            f.collective_servers.join(","),
            keys::CLUSTER_2017,
            cluster,
        );
        std::fs::write(&config, text).map_err(|source| StartError::ConfigFile {
            path: config.clone(),
            source,
        })?;
        let downloaded = self.workdir.join("federation-broker");
        let binary = if downloaded.is_file() {
            downloaded
        } else {
            self.federation.binary.clone()
        };
        let args: Vec<String> = vec![
            "--config".into(),
            config.display().to_string(),
            "--pid".into(),
            self.pid_file(role).display().to_string(),
            "--http".into(),
            format!("0.0.0.0:{monitor}"),
            "--disable-tls".into(),
        ];
        // The broker's own log is `logfile` in the config; this one holds what it prints
        // before logging starts (a refused configuration, an unreachable server).
        let log = self.workdir.join("federation-broker.out");
        let tracked = self.processes.spawn(role, &binary, &args, &log)?;
        let pid = tracked.pid;
        let started = Instant::now();
        while started.elapsed() < FEDERATION_START_WAIT {
            if let Some(vars) = self.federation_vars(monitor).await
                && vars.config.pid == pid
                && ["federation", "collective"].iter().all(|n| {
                    vars.federation.connected.get(*n).copied().unwrap_or(0) >= vars.config.workers
                })
            {
                return Ok(json!({
                    "running": true,
                    "pid": pid,
                    "cluster": cluster,
                    "config": config.display().to_string(),
                    "message": format!(
                        "started federation broker pid {pid} for cluster {cluster}: {} workers connected to both networks",
                        vars.config.workers
                    ),
                }));
            }
            self.still_starting(role, &tracked)?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(StartError::NoAnswer {
            pid,
            waited: FEDERATION_START_WAIT,
        })
    }

    /// SIGHUP, then SIGKILL after [`FEDERATION_STOP_GRACE`], as the 2017 agent did.
    async fn stop_federation(&self) -> Result<Value, StopError> {
        let stopped = self
            .processes
            .stop_with(Role::Federation, StopSignal::Hup, FEDERATION_STOP_GRACE)
            .await;
        self.stopped(Role::Federation, stopped, "stopped").await
    }

    async fn federation_status(&self, port: u16) -> Value {
        let tracked = self.processes.get(Role::Federation);
        match self.federation_vars(port).await {
            Some(v) => {
                let ours = tracked
                    .as_ref()
                    .is_some_and(|t| v.config.pid == t.pid && t.liveness() == Liveness::Running);
                let message = if ours {
                    "running".to_owned()
                } else {
                    format!(
                        "running, but not started by this daemon (pid {} answers on port {port})",
                        v.config.pid
                    )
                };
                json!({
                    "running": true,
                    "pid": v.config.pid,
                    "cluster": v.config.cluster,
                    "federation_servers": v.config.federation_servers.join(","),
                    "collective_servers": v.config.collective_servers.join(","),
                    "connected": v.federation.connected.values().sum::<u64>(),
                    "received": v.federation.received,
                    "forwarded": v.federation.forwarded,
                    "replies": v.federation.replies,
                    "message": message,
                })
            }
            None => {
                let message = silent_status("federation broker", tracked.as_ref(), port);
                json!({"running": false, "pid": 0, "cluster": "", "federation_servers": "",
                       "collective_servers": "", "connected": 0, "received": 0, "forwarded": 0,
                       "replies": 0, "message": message})
            }
        }
    }
}

/// The first line of the error a program printed before exiting, from the end of its log:
/// the line after `Error: ` (anyhow's report; what follows, causes and a backtrace, is left
/// to the log), else a panic's message, else the last non-empty line.
/// What `status` says of a process whose `/debug/vars` on `port` does not answer.
fn silent_status(what: &str, tracked: Option<&Tracked>, port: u16) -> String {
    match tracked {
        Some(t) => match t.liveness() {
            Liveness::Running => format!(
                "{what} pid {} is alive but /debug/vars on port {port} does not answer",
                t.pid
            ),
            Liveness::Exited(how) => format!(
                "the {what} (pid {}) died ({how}): {}; see {}",
                t.pid,
                first_error_line(&t.log),
                t.log.display()
            ),
        },
        None => "not running".to_owned(),
    }
}

pub fn first_error_line(log: &Path) -> String {
    const TAIL: u64 = 64 * 1024;
    let text = read_tail(log, TAIL).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    // `emulator: error: ...` (this workspace's programs) or `Error: ...` (anyhow's default).
    if let Some(line) = lines.iter().rev().find_map(|l| {
        l.split_once(": error: ")
            .map(|(_, e)| e)
            .or_else(|| l.strip_prefix("Error: "))
    }) {
        return line.trim().to_owned();
    }
    if let Some(i) = lines.iter().rposition(|l| l.contains("panicked at")) {
        let message = lines.get(i + 1).map(|m| m.trim()).unwrap_or_default();
        return format!("{} {message}", lines[i].trim()).trim().to_owned();
    }
    match lines.iter().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => line.trim().to_owned(),
        None => "it printed nothing".to_owned(),
    }
}

fn read_tail(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        std::fs::write(&log, text).unwrap();
        first_error_line(&log)
    }

    #[test]
    fn the_first_line_of_an_error_not_the_end_of_its_backtrace() {
        let anyhow_report = "2026-01-01T00:00:00Z  INFO emulator: starting\n\
            Error: cannot bind HTTP on 0.0.0.0:8080\n\n\
            Caused by:\n    Address already in use (os error 98)\n\n\
            Stack backtrace:\n   0: anyhow::error::<impl anyhow::Error>::msg\n\
             at /root/.cargo/registry/src/anyhow-1.0/src/error.rs:83:36\n\
               1: emulator::main\n             at ./src/main.rs:70:5\n\
               2: core::ops::function::FnOnce::call_once\n";
        assert_eq!(line_of(anyhow_report), "cannot bind HTTP on 0.0.0.0:8080");
        assert_eq!(
            line_of(
                "thread 'main' panicked at src/main.rs:3:5:\nboom\nnote: run with RUST_BACKTRACE=1\n"
            ),
            "thread 'main' panicked at src/main.rs:3:5: boom"
        );
        assert_eq!(line_of("one\ntwo\n\n"), "two");
        assert_eq!(line_of(""), "it printed nothing");
    }
}
