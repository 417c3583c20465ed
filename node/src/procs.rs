//! The processes this daemon started, and only those.
//!
//! Every process `start`/`start_nats` launches is recorded with its pid and its start time
//! (field 22 of `/proc/<pid>/stat`, clock ticks since boot) in memory and in
//! `<workdir>/node-state.json`, so a restarted daemon still knows them. Before any signal the
//! record is checked against `/proc`: a pid that now belongs to another process (a different
//! start time) or has exited is never signalled. Nothing else (an HTTP server naming a pid, a
//! pid file) decides what gets signalled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use natsproc::process::Signal;
use serde::{Deserialize, Serialize};

/// What a tracked process is for; at most one process per role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Role {
    /// An emulator fleet with its `/debug/vars` on `monitor`.
    Emulator { monitor: u16 },
    /// The nats-server of `start_nats`.
    Nats,
    /// The federation broker of `start_federation`.
    Federation,
}

/// The first signal `stop` sends; SIGKILL follows after the grace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    /// What the 2017 agent sent to brokers (`stop_nats`, `stop_federation`).
    Hup,
}

impl StopSignal {
    fn signal(self) -> Signal {
        match self {
            StopSignal::Term => Signal::TERM,
            StopSignal::Hup => Signal::HUP,
        }
    }

    fn name(self) -> &'static str {
        match self {
            StopSignal::Term => "SIGTERM",
            StopSignal::Hup => "SIGHUP",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Emulator { monitor } => write!(f, "the emulator on monitor port {monitor}"),
            Role::Nats => f.write_str("nats-server"),
            Role::Federation => f.write_str("the federation broker"),
        }
    }
}

/// A process this daemon started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    pub role: Role,
    pub pid: u32,
    /// Clock ticks after boot at which the process started (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
    pub binary: PathBuf,
    /// Its stdout and stderr.
    pub log: PathBuf,
    /// How it ended, once the daemon saw it end (not persisted).
    #[serde(skip)]
    pub exit: Option<String>,
}

/// Whether a tracked process is still the one that was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    Running,
    /// It ended: how, as far as known.
    Exited(String),
}

impl Tracked {
    /// Checks the record against `/proc`: the pid must be alive with the recorded start time.
    pub fn liveness(&self) -> Liveness {
        if let Some(exit) = &self.exit {
            return Liveness::Exited(exit.clone());
        }
        match proc_stat(self.pid) {
            Some(stat) if stat.start_time == self.start_time && !stat.zombie => Liveness::Running,
            Some(stat) if stat.start_time == self.start_time => Liveness::Exited("exited".into()),
            Some(_) => Liveness::Exited("exited (its pid now belongs to another process)".into()),
            None => Liveness::Exited("exited".into()),
        }
    }
}

/// Could not start a process.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{role} is already running (pid {pid}, started by this daemon)")]
    AlreadyRunning { role: Role, pid: u32 },
    #[error("cannot create the log file {}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {}", binary.display())]
    Exec {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What `stop` did, to be reported exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// This daemon started nothing in this role (or already forgot it).
    NothingTracked,
    /// The tracked process had already ended; nothing was signalled.
    AlreadyExited { pid: u32, how: String },
    /// Signals were sent and the process ended.
    Stopped {
        pid: u32,
        signals: Vec<&'static str>,
        after: Duration,
    },
    /// Signals were sent and the process is still running.
    Stuck {
        pid: u32,
        signals: Vec<&'static str>,
    },
}

impl Stopped {
    /// One sentence saying what was done.
    pub fn describe(&self, role: Role) -> String {
        match self {
            Stopped::NothingTracked => {
                format!("this daemon has not started {role}; signalled nothing")
            }
            Stopped::AlreadyExited { pid, how } => {
                format!("{role} (pid {pid}) had already ended ({how}); signalled nothing")
            }
            Stopped::Stopped {
                pid,
                signals,
                after,
            } => format!(
                "sent {} to {role} (pid {pid}); it exited after {:.1}s",
                signals.join(" then "),
                after.as_secs_f64()
            ),
            Stopped::Stuck { pid, signals } => format!(
                "sent {} to {role} (pid {pid}) but it is still running",
                signals.join(" then ")
            ),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    tracked: BTreeMap<Role, Tracked>,
}

/// The registry of started processes, shared by every request task.
#[derive(Debug, Clone)]
pub struct Processes {
    state: Arc<Mutex<State>>,
    file: PathBuf,
}

impl Processes {
    /// The registry persisted in `<workdir>/node-state.json`; records whose process is gone
    /// or whose pid was reused are dropped.
    pub fn load(workdir: &Path) -> Processes {
        let file = workdir.join("node-state.json");
        let mut state = State::default();
        if let Ok(text) = std::fs::read_to_string(&file) {
            match serde_json::from_str::<Vec<Tracked>>(&text) {
                Ok(list) => {
                    for t in list {
                        if t.liveness() == Liveness::Running {
                            tracing::info!(pid = t.pid, role = %t.role, "still tracking a process started before a restart");
                            state.tracked.insert(t.role, t);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "ignoring an unreadable state file")
                }
            }
        }
        Processes {
            state: Arc::new(Mutex::new(state)),
            file,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, state: &State) {
        let list: Vec<&Tracked> = state.tracked.values().collect();
        let text = serde_json::to_string_pretty(&list).unwrap_or_default();
        let tmp = self.file.with_extension("json.tmp");
        let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.file));
        if let Err(e) = written {
            tracing::warn!(file = %self.file.display(), error = %e, "cannot save the state file");
        }
    }

    /// The record for `role`, if this daemon started one.
    pub fn get(&self, role: Role) -> Option<Tracked> {
        self.lock().tracked.get(&role).cloned()
    }

    /// Starts `binary` in its own process group with output to `log`, unless a process this
    /// daemon started for `role` is still running. Must be called inside the Tokio runtime.
    pub fn spawn(
        &self,
        role: Role,
        binary: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Tracked, SpawnError> {
        let mut state = self.lock();
        if let Some(t) = state.tracked.get(&role)
            && t.liveness() == Liveness::Running
        {
            return Err(SpawnError::AlreadyRunning { role, pid: t.pid });
        }
        let out = std::fs::File::create(log).map_err(|source| SpawnError::Log {
            path: log.to_owned(),
            source,
        })?;
        let err = out.try_clone().map_err(|source| SpawnError::Log {
            path: log.to_owned(),
            source,
        })?;
        let exec = |source| SpawnError::Exec {
            binary: binary.to_owned(),
            source,
        };
        let mut child = tokio::process::Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(exec)?;
        let pid = child
            .id()
            .ok_or_else(|| exec(std::io::Error::other("the process exited at once")))?;
        // The child cannot be reaped before `child.wait()` below, so its /proc entry exists.
        let start_time = proc_stat(pid).map(|s| s.start_time).unwrap_or_default();
        let tracked = Tracked {
            role,
            pid,
            start_time,
            binary: binary.to_owned(),
            log: log.to_owned(),
            exit: None,
        };
        state.tracked.insert(role, tracked.clone());
        self.persist(&state);
        drop(state);
        tracing::info!(pid, role = %role, binary = %binary.display(), "started a process");
        let registry = self.clone();
        tokio::spawn(async move {
            let how = match child.wait().await {
                Ok(status) => describe_exit(status),
                Err(e) => format!("ended (cannot wait for it: {e})"),
            };
            tracing::info!(pid, role = %role, how = %how, "a started process ended");
            let mut state = registry.lock();
            if let Some(t) = state.tracked.get_mut(&role)
                && t.pid == pid
                && t.start_time == start_time
            {
                t.exit = Some(how);
            }
        });
        Ok(tracked)
    }

    /// Sends `signal` to the process tracked for `role` if it is still the one started.
    /// Returns the pid signalled, or how it ended when it is not running.
    fn signal(&self, role: Role, signal: Signal) -> Result<u32, Option<(u32, String)>> {
        let state = self.lock();
        let Some(t) = state.tracked.get(&role) else {
            return Err(None);
        };
        match t.liveness() {
            Liveness::Running => {
                natsproc::send_signal(t.pid as i32, signal);
                Ok(t.pid)
            }
            Liveness::Exited(how) => Err(Some((t.pid, how))),
        }
    }

    fn forget(&self, role: Role) {
        let mut state = self.lock();
        if state.tracked.remove(&role).is_some() {
            self.persist(&state);
        }
    }

    /// SIGTERM, then SIGKILL after `grace`, to the process tracked for `role`, each after
    /// checking it is still the process started.
    pub async fn stop(&self, role: Role, grace: Duration) -> Stopped {
        self.stop_with(role, StopSignal::Term, grace).await
    }

    /// `first`, then SIGKILL after `grace`, to the process tracked for `role`, each after
    /// checking it is still the process started.
    pub async fn stop_with(&self, role: Role, first: StopSignal, grace: Duration) -> Stopped {
        let started = Instant::now();
        let pid = match self.signal(role, first.signal()) {
            Ok(pid) => pid,
            Err(None) => return Stopped::NothingTracked,
            Err(Some((pid, how))) => {
                self.forget(role);
                return Stopped::AlreadyExited { pid, how };
            }
        };
        tracing::info!(pid, role = %role, signal = first.name(), "sent the stop signal");
        let mut signals = vec![first.name()];
        let mut deadline = started + grace;
        loop {
            if self.is_gone(role) {
                self.forget(role);
                return Stopped::Stopped {
                    pid,
                    signals,
                    after: started.elapsed(),
                };
            }
            if Instant::now() >= deadline {
                if signals.len() == 2 {
                    return Stopped::Stuck { pid, signals };
                }
                match self.signal(role, Signal::KILL) {
                    Ok(_) => {
                        tracing::warn!(pid, role = %role, "sent SIGKILL");
                        signals.push("SIGKILL");
                    }
                    Err(_) => continue,
                }
                deadline = Instant::now() + Duration::from_secs(2);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn is_gone(&self, role: Role) -> bool {
        self.get(role)
            .is_none_or(|t| matches!(t.liveness(), Liveness::Exited(_)))
    }
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "exited".to_owned(),
    }
}

/// The fields of `/proc/<pid>/stat` the registry needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub start_time: u64,
    pub zombie: bool,
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces and `)`.
    let (_, rest) = stat.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); start time is field 22.
    let start_time = fields.get(19)?.parse().ok()?;
    Some(ProcStat {
        start_time,
        zombie: fields.first() == Some(&"Z"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_start_time() {
        let me = proc_stat(std::process::id()).unwrap();
        assert!(me.start_time > 0);
        assert!(!me.zombie);
        assert_eq!(proc_stat(u32::MAX), None);
    }

    #[tokio::test]
    async fn stops_only_what_it_started_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let procs = Processes::load(dir.path());
        let role = Role::Emulator { monitor: 1 };
        assert_eq!(
            procs.stop(role, Duration::from_secs(1)).await,
            Stopped::NothingTracked
        );
        let t = procs
            .spawn(
                role,
                Path::new("sleep"),
                &["30".into()],
                &dir.path().join("sleep.log"),
            )
            .unwrap();
        assert!(matches!(
            procs.spawn(role, Path::new("sleep"), &["30".into()], &dir.path().join("x.log")),
            Err(SpawnError::AlreadyRunning { pid, .. }) if pid == t.pid
        ));
        // A restarted daemon still knows it.
        let reloaded = Processes::load(dir.path());
        assert_eq!(reloaded.get(role).map(|r| r.pid), Some(t.pid));
        match procs.stop(role, Duration::from_secs(5)).await {
            Stopped::Stopped { pid, signals, .. } => {
                assert_eq!(pid, t.pid);
                assert_eq!(signals, ["SIGTERM"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(procs.get(role).is_none());
        // The reloaded registry sees the process is gone and signals nothing.
        assert!(matches!(
            reloaded.stop(role, Duration::from_secs(1)).await,
            Stopped::AlreadyExited { pid, .. } if pid == t.pid
        ));
    }

    #[tokio::test]
    async fn a_process_ignoring_sigterm_gets_sigkill_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let procs = Processes::load(dir.path());
        // An ignored signal stays ignored across exec: this `sleep` ignores SIGTERM.
        let t = procs
            .spawn(
                Role::Nats,
                Path::new("sh"),
                &["-c".into(), "trap '' TERM; exec sleep 30".into()],
                &dir.path().join("stubborn.log"),
            )
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        match procs.stop(Role::Nats, Duration::from_millis(500)).await {
            Stopped::Stopped {
                pid,
                signals,
                after,
            } => {
                assert_eq!(pid, t.pid);
                assert_eq!(signals, ["SIGTERM", "SIGKILL"]);
                assert!(after >= Duration::from_millis(500), "{after:?}");
                assert_eq!(
                    Stopped::Stopped {
                        pid,
                        signals,
                        after: Duration::from_millis(520)
                    }
                    .describe(Role::Nats),
                    format!(
                        "sent SIGTERM then SIGKILL to nats-server (pid {pid}); it exited after 0.5s"
                    )
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(proc_stat(t.pid), None, "reaped");
    }

    #[tokio::test]
    async fn stop_with_sighup_then_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let procs = Processes::load(dir.path());
        // Ends on SIGHUP (the default action), so SIGKILL is never needed.
        let t = procs
            .spawn(
                Role::Federation,
                Path::new("sleep"),
                &["30".into()],
                &dir.path().join("hup.log"),
            )
            .unwrap();
        match procs
            .stop_with(Role::Federation, StopSignal::Hup, Duration::from_secs(5))
            .await
        {
            Stopped::Stopped { pid, signals, .. } => {
                assert_eq!(pid, t.pid);
                assert_eq!(signals, ["SIGHUP"]);
            }
            other => panic!("{other:?}"),
        }
        // Ignores SIGHUP: SIGKILL after the grace.
        let t = procs
            .spawn(
                Role::Federation,
                Path::new("sh"),
                &["-c".into(), "trap '' HUP; exec sleep 30".into()],
                &dir.path().join("stubborn.log"),
            )
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        match procs
            .stop_with(
                Role::Federation,
                StopSignal::Hup,
                Duration::from_millis(300),
            )
            .await
        {
            Stopped::Stopped { pid, signals, .. } => {
                assert_eq!(pid, t.pid);
                assert_eq!(signals, ["SIGHUP", "SIGKILL"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(proc_stat(t.pid), None, "reaped");
    }

    #[tokio::test]
    async fn a_reused_pid_is_not_signalled() {
        let dir = tempfile::tempdir().unwrap();
        // A record naming a live process (this test) with another start time, as after pid
        // reuse: it is dropped at load and never signalled.
        let me = proc_stat(std::process::id()).unwrap();
        let forged = vec![Tracked {
            role: Role::Nats,
            pid: std::process::id(),
            start_time: me.start_time + 1,
            binary: "nats-server".into(),
            log: "x".into(),
            exit: None,
        }];
        std::fs::write(
            dir.path().join("node-state.json"),
            serde_json::to_string(&forged).unwrap(),
        )
        .unwrap();
        let procs = Processes::load(dir.path());
        assert_eq!(
            procs.stop(Role::Nats, Duration::from_secs(1)).await,
            Stopped::NothingTracked
        );
    }
}
