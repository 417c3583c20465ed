//! The `shell` task: a command line run by `sh -c`, with optional `cwd`, `environment`,
//! `timeout` and `nodes` (appended as ` --nodes a,b`). Output lines are logged at info.
//!
//! The command runs in its own process group. On a timeout, an interruption (SIGINT/SIGTERM of
//! the run) or when the task is dropped, the whole group is stopped: SIGTERM, then SIGKILL
//! after [`KILL_AFTER`].

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use rustix::process::{Pid, Signal, kill_process_group};

use super::{Task, TaskContext, TaskError, TaskOutcome, non_empty};
use crate::schema::tasks::ShellProps;
use crate::schema::values::{pairs, text};

/// How long a stopped command's process group has between SIGTERM and SIGKILL.
const KILL_AFTER: Duration = Duration::from_millis(500);

/// Process groups of running commands, so that an immediate exit can still kill them.
static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn live() -> std::sync::MutexGuard<'static, BTreeSet<i32>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// SIGKILLs the process group of every running shell task (used before exiting at once on a
/// second signal).
pub(crate) fn kill_running_groups() {
    for pgid in live().iter() {
        if let Some(pid) = Pid::from_raw(*pgid) {
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

/// The process group of a running command; dropping it kills the group unless disarmed.
struct Group(Option<Pid>);

impl Group {
    fn new(pid: Option<Pid>) -> Self {
        if let Some(p) = pid {
            live().insert(p.as_raw_nonzero().get());
        }
        Self(pid)
    }

    /// The command finished on its own: leave what it started alone.
    fn disarm(&mut self) {
        if let Some(p) = self.0.take() {
            live().remove(&p.as_raw_nonzero().get());
        }
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.0
            && let Err(e) = kill_process_group(pid, signal)
        {
            tracing::debug!(pgid = pid.as_raw_nonzero().get(), error = %e, "kill process group");
        }
    }

    /// SIGTERM to the group, up to [`KILL_AFTER`] for the leader to exit, then SIGKILL.
    async fn stop(&mut self, child: &mut tokio::process::Child) {
        self.signal(Signal::TERM);
        let _ = tokio::time::timeout(KILL_AFTER, child.wait()).await;
        self.signal(Signal::KILL);
        let _ = child.wait().await;
        self.disarm();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal(Signal::KILL);
        self.disarm();
    }
}

/// Why a command did not finish on its own.
enum Stop {
    Timeout(Duration),
    Cancelled,
}

pub(crate) struct ShellTask {
    command: String,
    cwd: Option<String>,
    environment: Vec<(String, String)>,
    timeout: Option<Duration>,
}

impl ShellTask {
    pub(crate) fn new(props: &ShellProps) -> Result<Self, TaskError> {
        let mut command = non_empty(&props.command, "command", "A command was not given")?;
        if let Some(nodes) = &props.nodes {
            command.push_str(&format!(" --nodes {}", nodes.0.join(",")));
        }
        Ok(Self {
            command,
            cwd: text(&props.cwd),
            environment: pairs(&props.environment),
            timeout: props.timeout.map(|s| crate::seconds(s.0)),
        })
    }
}

#[async_trait]
impl Task for ShellTask {
    async fn run(&self, ctx: &TaskContext<'_>) -> TaskOutcome {
        let mut cmd = tokio::process::Command::new("sh");
        ctx.env.apply(&mut cmd);
        cmd.arg("-c")
            .arg(&self.command)
            .env("LC_ALL", "C")
            .envs(self.environment.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return TaskOutcome::failed(format!("Could not run command: {e}"), vec![]),
        };
        let mut group = Group::new(
            child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(Pid::from_raw),
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = tx.send(line);
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let mut output = Vec::new();
        let collect = async {
            while let Some(line) = rx.recv().await {
                ctx.log.info(ctx.from, &line);
                output.push(Value::String(line));
            }
            child.wait().await
        };
        let limit = async {
            match self.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let finished = tokio::select! {
            status = collect => Ok(status),
            () = limit => Err(Stop::Timeout(self.timeout.unwrap_or_default())),
            () = ctx.cancel.cancelled() => Err(Stop::Cancelled),
        };
        let status = match finished {
            Ok(status) => {
                group.disarm();
                status
            }
            Err(stop) => {
                group.stop(&mut child).await;
                let msg = match stop {
                    Stop::Timeout(t) => format!(
                        "Command timed out after {}s; stopped its process group",
                        t.as_secs_f64()
                    ),
                    Stop::Cancelled => "stopped the command's process group".to_string(),
                };
                return TaskOutcome::failed(msg, output);
            }
        };
        match status {
            Ok(s) if s.success() => TaskOutcome::ok("Command completed successfully", output),
            Ok(s) => TaskOutcome::failed(
                format!("Command failed with code {}", s.code().unwrap_or(-1)),
                output,
            ),
            Err(e) => TaskOutcome::failed(format!("Could not run command: {e}"), output),
        }
    }

    fn describe(&self) -> String {
        match &self.cwd {
            Some(cwd) => format!("shell: {} (in {cwd})", self.command),
            None => format!("shell: {}", self.command),
        }
    }
}
