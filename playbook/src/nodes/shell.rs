//! The `shell` node set: a command printing one host name per line (10 second timeout).
//!
//! Unlike the original, the script is run through `sh -c`, so arguments work as documented.

use std::process::Stdio;
use std::time::Duration;

use super::{NodeSetError, NodeSource, check_hostnames};
use crate::schema::nodes::ShellProps;
use crate::store::EnvOverlay;
use async_trait::async_trait;

const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct ShellSource {
    script: String,
    env: EnvOverlay,
}

impl ShellSource {
    pub(crate) fn new(props: &ShellProps, env: EnvOverlay) -> Self {
        Self {
            script: props.script.0.clone(),
            env,
        }
    }
}

#[async_trait]
impl NodeSource for ShellSource {
    async fn discover(&self) -> Result<Vec<String>, NodeSetError> {
        let mut cmd = tokio::process::Command::new("sh");
        self.env.apply(&mut cmd);
        cmd.arg("-c")
            .arg(&self.script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| NodeSetError::Failed(format!("Could not run {}: {e}", self.script)))?;
        let output = tokio::time::timeout(TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| NodeSetError::Failed(format!("{} timed out", self.script)))?
            .map_err(|e| NodeSetError::Failed(format!("Could not run {}: {e}", self.script)))?;
        if !output.status.success() {
            return Err(NodeSetError::Failed(format!(
                "Node source script {} failed with code {}: {}",
                self.script,
                output.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let nodes: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if nodes.is_empty() {
            return Err(NodeSetError::Failed(
                "Node source script produced no results".to_string(),
            ));
        }
        check_hostnames(&nodes)?;
        Ok(nodes)
    }
}
