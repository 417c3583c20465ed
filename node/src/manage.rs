//! The actions of the `emulator` management agent (DDL `agents/ddl/emulator.json`).
//!
//! Processes are started detached (their own process group) with their output in the work
//! directory and a pid file beside it, and are reaped by a background task. Programs are run
//! directly with an argument vector, never through a shell.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use agents::{RpcReply, StatusCode};
use rustix::process::Signal;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

/// Where the node daemon keeps downloads, logs and pid files, and how it reaches local services.
#[derive(Debug, Clone)]
pub struct Manager {
    pub workdir: PathBuf,
    /// The node's identity: the default name prefix of the fleets it starts.
    pub identity: String,
    /// The emulator binary `start` runs when the work directory has none.
    pub emulator_binary: PathBuf,
    http: reqwest::Client,
}

fn ok(data: Value) -> RpcReply {
    RpcReply::ok(data)
}

fn aborted(message: impl Into<String>, data: Value) -> RpcReply {
    let mut r = RpcReply::error(StatusCode::Aborted, message);
    r.data = data;
    r
}

fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // A zombie has exited; only its parent's wait is missing.
    !stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('Z'))
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// SIGTERM, then SIGKILL after `grace`; true when the process is gone.
async fn terminate(pid: u32, grace: Duration) -> bool {
    natsproc::send_signal(pid as i32, Signal::TERM);
    let started = Instant::now();
    while started.elapsed() < grace {
        if !pid_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    natsproc::send_signal(pid as i32, Signal::KILL);
    tokio::time::sleep(Duration::from_millis(200)).await;
    !pid_alive(pid)
}

impl Manager {
    pub fn new(workdir: PathBuf, identity: String, emulator_binary: PathBuf) -> Manager {
        Manager {
            workdir,
            identity,
            emulator_binary,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .no_proxy()
                .build()
                .unwrap_or_default(),
        }
    }

    fn ensure_workdir(&self) -> Result<(), String> {
        std::fs::create_dir_all(&self.workdir)
            .map_err(|e| format!("cannot create {}: {e}", self.workdir.display()))
    }

    /// Runs one validated action.
    pub async fn handle(&self, action: &str, input: &Map<String, Value>) -> RpcReply {
        if let Err(e) = self.ensure_workdir() {
            return aborted(e, json!({}));
        }
        let int = |k: &str| input.get(k).and_then(Value::as_i64).unwrap_or(0);
        let text = |k: &str| {
            input
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        match action {
            "download" => {
                self.download(
                    &text("url"),
                    &text("target"),
                    input.get("sha256").and_then(Value::as_str),
                )
                .await
            }
            "start" => self.start(input).await,
            "stop" => self.stop(int("port")).await,
            "status" => self.status(int("port")).await,
            "start_nats" => self.start_nats(int("port"), int("monitor_port")).await,
            "stop_nats" => self.stop_nats().await,
            other => RpcReply::error(
                StatusCode::UnknownAction,
                format!("Unknown action {other} for agent emulator"),
            ),
        }
    }

    async fn download(&self, url: &str, target: &str, sha256: Option<&str>) -> RpcReply {
        let path = self.workdir.join(target);
        let partial = self.workdir.join(format!(".{target}.partial"));
        let result = async {
            let response = self
                .http
                .get(url)
                .timeout(Duration::from_secs(600))
                .send()
                .await
                .map_err(|e| format!("cannot download {url}: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("cannot download {url}: HTTP {}", response.status()));
            }
            let bytes = response
                .bytes()
                .await
                .map_err(|e| format!("cannot download {url}: {e}"))?;
            let digest = Sha256::digest(&bytes);
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            if let Some(expected) = sha256
                && !expected.eq_ignore_ascii_case(&hex)
            {
                return Err(format!(
                    "checksum mismatch for {url}: expected {expected}, got {hex}"
                ));
            }
            std::fs::write(&partial, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
            std::fs::rename(&partial, &path)
                .map_err(|e| format!("cannot move into {}: {e}", path.display()))?;
            Ok((bytes.len(), hex))
        }
        .await;
        match result {
            Ok((size, hex)) => ok(
                json!({"success": true, "size": size, "sha256": hex, "path": path.display().to_string()}),
            ),
            Err(message) => {
                let _ = std::fs::remove_file(&partial);
                aborted(message, json!({"success": false}))
            }
        }
    }

    async fn vars(&self, port: i64) -> Option<Value> {
        let url = format!("http://127.0.0.1:{port}/debug/vars");
        self.http.get(url).send().await.ok()?.json().await.ok()
    }

    fn emulator_pid_file(&self, port: i64) -> PathBuf {
        self.workdir.join(format!("emulator-{port}.pid"))
    }

    async fn start(&self, input: &Map<String, Value>) -> RpcReply {
        let monitor = input.get("monitor").and_then(Value::as_i64).unwrap_or(8080);
        if !(1..=65535).contains(&monitor) {
            return RpcReply::error(
                StatusCode::InvalidData,
                format!("monitor port {monitor} is out of range"),
            );
        }
        for (k, min) in [("instances", 1), ("agents", 0), ("collectives", 1)] {
            let v = input.get(k).and_then(Value::as_i64).unwrap_or(0);
            if v < min || v > 1_000_000 {
                return RpcReply::error(
                    StatusCode::InvalidData,
                    format!("{k} must be between {min} and 1000000, got {v}"),
                );
            }
        }
        if let Some(vars) = self.vars(monitor).await {
            return aborted(
                format!(
                    "an emulator is already running on monitor port {monitor} (pid {})",
                    vars["config"]["pid"]
                ),
                json!({"status": true, "pid": vars["config"]["pid"]}),
            );
        }
        let downloaded = self.workdir.join("emulator");
        let binary = if downloaded.is_file() {
            downloaded
        } else {
            self.emulator_binary.clone()
        };
        let name = input
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| self.identity.clone());
        let mut args: Vec<String> = vec![
            "--instances".into(),
            input["instances"].to_string(),
            "--agents".into(),
            input["agents"].to_string(),
            "--collectives".into(),
            input["collectives"].to_string(),
            "--name".into(),
            name,
            "--http-port".into(),
            monitor.to_string(),
            "--config".into(),
            "/dev/null".into(),
        ];
        for server in input
            .get("servers")
            .and_then(Value::as_str)
            .unwrap_or("")
            .split(',')
        {
            args.push("--server".into());
            args.push(server.to_owned());
        }
        if input.get("tls").and_then(Value::as_bool).unwrap_or(false) {
            args.push("--tls".into());
        }
        let log = self.workdir.join(format!("emulator-{monitor}.log"));
        let pid = match spawn_detached(&binary, &args, &log) {
            Ok(pid) => pid,
            Err(e) => {
                return aborted(
                    format!("cannot start {}: {e}", binary.display()),
                    json!({"status": false}),
                );
            }
        };
        let _ = std::fs::write(self.emulator_pid_file(monitor), pid.to_string());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Some(vars) = self.vars(monitor).await
                && vars["config"]["pid"] == pid
            {
                return ok(
                    json!({"status": true, "pid": pid, "message": format!("started emulator pid {pid}")}),
                );
            }
            if !pid_alive(pid) {
                let tail = tail(&log);
                return aborted(
                    format!("the emulator exited at start: {tail}"),
                    json!({"status": false, "pid": pid}),
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        aborted(
            "the emulator did not answer /debug/vars within 60s",
            json!({"status": false, "pid": pid}),
        )
    }

    async fn stop(&self, port: i64) -> RpcReply {
        let pid = match self.vars(port).await {
            Some(vars) => vars["config"]["pid"].as_u64().map(|p| p as u32),
            None => read_pid(&self.emulator_pid_file(port)).filter(|p| pid_alive(*p)),
        };
        let Some(pid) = pid else {
            return ok(
                json!({"status": true, "message": format!("no emulator on monitor port {port}")}),
            );
        };
        let gone = terminate(pid, Duration::from_secs(20)).await;
        let answering = self.vars(port).await.is_some();
        if gone && !answering {
            let _ = std::fs::remove_file(self.emulator_pid_file(port));
            ok(json!({"status": true}))
        } else {
            aborted(
                format!("emulator pid {pid} did not stop"),
                json!({"status": false}),
            )
        }
    }

    async fn status(&self, port: i64) -> RpcReply {
        match self.vars(port).await {
            Some(v) => ok(json!({
                "running": true,
                "pid": v["config"]["pid"],
                "name": v["name"],
                "instances": v["config"]["instances"],
                "connected": v["emulator"]["instances"]["connected"],
                "tls": v["config"]["TLS"] == 1,
                "memory": v["memstats"]["Sys"],
                "message": "running",
            })),
            None => {
                let message = match read_pid(&self.emulator_pid_file(port)) {
                    Some(pid) if pid_alive(pid) => format!(
                        "emulator pid {pid} is alive but /debug/vars on port {port} does not answer"
                    ),
                    Some(pid) => format!(
                        "the emulator (pid {pid}) died; see {}",
                        self.workdir.join(format!("emulator-{port}.log")).display()
                    ),
                    None => "not running".to_owned(),
                };
                ok(
                    json!({"running": false, "pid": 0, "name": "", "instances": 0, "connected": 0, "tls": false, "memory": 0, "message": message}),
                )
            }
        }
    }

    fn nats_pid_file(&self) -> PathBuf {
        self.workdir.join("nats-server.pid")
    }

    async fn start_nats(&self, port: i64, monitor: i64) -> RpcReply {
        for p in [port, monitor] {
            if !(1..=65535).contains(&p) {
                return RpcReply::error(
                    StatusCode::InvalidData,
                    format!("port {p} is out of range"),
                );
            }
        }
        if let Some(pid) = read_pid(&self.nats_pid_file()).filter(|p| pid_alive(*p)) {
            return aborted(
                format!("nats-server is already running (pid {pid})"),
                json!({"running": true, "pid": pid}),
            );
        }
        let binary = match natsproc::nats_server_binary() {
            Ok(b) => b,
            Err(e) => return aborted(e.to_string(), json!({"running": false})),
        };
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
        let pid = match spawn_detached(&binary, &args, &log) {
            Ok(pid) => pid,
            Err(e) => {
                return aborted(
                    format!("cannot start nats-server: {e}"),
                    json!({"running": false}),
                );
            }
        };
        let _ = std::fs::write(self.nats_pid_file(), pid.to_string());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            let url = format!("http://127.0.0.1:{monitor}/varz");
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return ok(json!({"running": true, "pid": pid}));
            }
            if !pid_alive(pid) {
                return aborted(
                    format!("nats-server exited at start: {}", tail(&log)),
                    json!({"running": false, "pid": pid}),
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        aborted(
            "nats-server did not answer on its monitor port within 20s",
            json!({"running": false, "pid": pid}),
        )
    }

    async fn stop_nats(&self) -> RpcReply {
        let Some(pid) = read_pid(&self.nats_pid_file()) else {
            return ok(json!({"stopped": true}));
        };
        if pid_alive(pid) && !terminate(pid, Duration::from_secs(5)).await {
            return aborted(
                format!("nats-server pid {pid} did not stop"),
                json!({"stopped": false}),
            );
        }
        let _ = std::fs::remove_file(self.nats_pid_file());
        ok(json!({"stopped": true}))
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// Starts `binary` in its own process group with output to `log`; a background task reaps it.
fn spawn_detached(binary: &Path, args: &[String], log: &Path) -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt as _;
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    let mut child = std::process::Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()?;
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(pid)
}
