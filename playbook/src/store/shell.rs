//! The `shell` store: `<command> --read|--write|--delete` with the key, action and value in
//! `CHORIA_DATA_KEY`, `CHORIA_DATA_ACTION` and `CHORIA_DATA_VALUE`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::{DataStore, EnvOverlay, StoreError, StoreKind, check_simple_key};
use crate::schema::stores::ShellProps;
use crate::schema::values::{pairs, text};
use crate::template::stringify;

pub(crate) struct ShellStore {
    command: PathBuf,
    timeout: Duration,
    cwd: PathBuf,
    environment: Vec<(String, String)>,
    env: EnvOverlay,
}

impl ShellStore {
    pub(crate) fn open(
        props: &ShellProps,
        timeout: Option<f64>,
        env: EnvOverlay,
    ) -> Result<Self, StoreError> {
        let command = PathBuf::from(props.command.as_str());
        // The store runs in its own cwd, so make a relative command absolute now.
        let command = std::path::absolute(&command).unwrap_or(command);
        if !is_executable(&command) {
            return Err(StoreError::Config(format!(
                "Command {} is not executable",
                command.display()
            )));
        }
        let timeout = timeout.unwrap_or(10.0);
        let cwd = text(&props.cwd)
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        if !cwd.is_dir() {
            return Err(StoreError::Config(format!(
                "Working directory {} does not exist",
                cwd.display()
            )));
        }
        let environment = pairs(&props.environment);
        Ok(Self {
            command,
            timeout: crate::seconds(timeout),
            cwd,
            environment,
            env,
        })
    }

    async fn call(
        &self,
        action: &str,
        key: &str,
        value: Option<&Value>,
    ) -> Result<String, StoreError> {
        check_simple_key(key)?;
        let mut cmd = tokio::process::Command::new(&self.command);
        self.env.apply(&mut cmd);
        cmd.arg(format!("--{action}"))
            .current_dir(&self.cwd)
            .envs(self.environment.iter().map(|(k, v)| (k, v)))
            .env("CHORIA_DATA_KEY", key)
            .env("CHORIA_DATA_ACTION", action)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(v) = value {
            cmd.env("CHORIA_DATA_VALUE", stringify(v));
        }
        let child = cmd.spawn().map_err(|e| {
            StoreError::Failed(format!("Could not run {}: {e}", self.command.display()))
        })?;
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                StoreError::Failed(format!(
                    "Could not {action} key {key}, timed out after {}s",
                    self.timeout.as_secs_f64()
                ))
            })?
            .map_err(|e| StoreError::Failed(format!("Could not {action} key {key}: {e}")))?;
        if !output.status.success() {
            let code = output.status.code().unwrap_or(-1);
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(StoreError::Failed(format!(
                "Could not {action} key {key}, got exitcode {code}: {}",
                stderr.trim()
            )));
        }
        let mut out = String::from_utf8_lossy(&output.stdout).into_owned();
        if out.ends_with('\n') {
            out.pop();
        }
        Ok(out)
    }
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[async_trait]
impl DataStore for ShellStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Shell
    }

    async fn read(&self, key: &str) -> Result<Value, StoreError> {
        self.call("read", key, None).await.map(Value::String)
    }

    async fn write(&self, key: &str, value: &Value) -> Result<(), StoreError> {
        self.call("write", key, Some(value)).await.map(|_| ())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.call("delete", key, None).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn protocol_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("store.sh");
        let data = dir.path().join("value");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncase \"$1\" in\n--read) [ \"$CHORIA_DATA_KEY\" = force_fail ] && exit 3; cat {d} ;;\n--write) printf '%s' \"$CHORIA_DATA_VALUE\" > {d} ;;\n--delete) rm -f {d} ;;\nesac\n",
                d = data.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let props = crate::schema::parse(&json!({"command": script.to_string_lossy()}))
            .expect("valid properties");
        let store = ShellStore::open(&props, None, EnvOverlay::default()).expect("open");
        store.write("k", &json!("hello")).await.expect("write");
        assert_eq!(store.read("k").await.expect("read"), json!("hello"));
        let err = store.read("force_fail").await.expect_err("fails");
        assert!(err.to_string().contains("got exitcode 3"), "{err}");
        let err = store.read("bad key").await.expect_err("bad key");
        assert!(err.to_string().contains("Valid keys must match"), "{err}");
    }
}
