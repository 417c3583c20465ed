//! The `shell` task: a command line run by `sh -c`, with optional `cwd`, `environment`,
//! `timeout` and `nodes` (appended as ` --nodes a,b`). Output lines are logged at info.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{Task, TaskContext, TaskError, TaskOutcome, non_empty};
use crate::schema::tasks::ShellProps;
use crate::schema::values::{pairs, text};

pub(crate) struct ShellTask {
    command: String,
    cwd: Option<String>,
    environment: Vec<(String, String)>,
    timeout: Option<Duration>,
}

impl ShellTask {
    pub(crate) fn new(props: &ShellProps) -> Result<Self, TaskError> {
        let mut command = non_empty(&props.command, "A command was not given")?;
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
            .kill_on_drop(true);
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return TaskOutcome::failed(format!("Could not run command: {e}"), vec![]),
        };
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
        let status = match self.timeout {
            Some(t) => match tokio::time::timeout(t, collect).await {
                Ok(status) => status,
                Err(_) => {
                    return TaskOutcome::failed(
                        format!("Command timed out after {}s", t.as_secs_f64()),
                        output,
                    );
                }
            },
            None => collect.await,
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
