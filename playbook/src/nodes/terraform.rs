//! The `terraform` node set: a list output of a state file.
//!
//! With a `terraform` property the binary is run as `terraform output -state F -json NAME`;
//! otherwise the outputs are read straight from the JSON state file (no binary needed), falling
//! back to `terraform` from `PATH` when the file is not a JSON state.

use std::process::Stdio;

use async_trait::async_trait;
use serde_json::Value;

use super::{NodeSetError, NodeSource, check_hostnames, names_from};
use crate::schema::nodes::TerraformProps;
use crate::schema::values::Text;
use crate::validator::Validator;

pub(crate) struct TerraformSource {
    statefile: String,
    output: String,
    binary: Option<String>,
}

impl TerraformSource {
    pub(crate) fn new(props: &TerraformProps) -> Result<Self, NodeSetError> {
        let safe = |key: &str, v: &Text| -> Result<String, NodeSetError> {
            Validator::Shellsafe
                .check(&Value::String(v.0.clone()))
                .map_err(|e| NodeSetError::Failed(format!("terraform {key}: {e}")))?;
            Ok(v.0.clone())
        };
        Ok(Self {
            statefile: safe("statefile", &props.statefile)?,
            output: safe("output", &props.output)?,
            binary: props
                .terraform
                .as_ref()
                .map(|t| safe("terraform", t))
                .transpose()?,
        })
    }

    async fn run_binary(&self, binary: &str) -> Result<Value, NodeSetError> {
        let output = tokio::process::Command::new(binary)
            .args(["output", "-state", &self.statefile, "-json", &self.output])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| NodeSetError::Failed(format!("Could not run {binary}: {e}")))?;
        if !output.status.success() {
            return Err(NodeSetError::Failed(format!(
                "terraform output failed with code {}: {}",
                output.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|e| NodeSetError::Failed(format!("terraform output is not JSON: {e}")))
    }
}

/// Extracts the node list from `terraform output -json` data or a state output entry.
fn list_from(value: &Value) -> Result<Vec<String>, NodeSetError> {
    let unsupported =
        || NodeSetError::Failed("Only terraform outputs of type list is supported".to_string());
    match value {
        Value::Array(items) => Ok(names_from(items)),
        Value::Object(map) if map.contains_key("value") => {
            let list_type = match map.get("type") {
                None => true,
                Some(Value::String(t)) => t == "list" || t == "tuple" || t == "set",
                Some(Value::Array(t)) => t
                    .first()
                    .and_then(Value::as_str)
                    .is_some_and(|t| t == "list" || t == "tuple" || t == "set"),
                Some(_) => false,
            };
            match map.get("value") {
                Some(Value::Array(items)) if list_type => Ok(names_from(items)),
                _ => Err(unsupported()),
            }
        }
        _ => Err(unsupported()),
    }
}

#[async_trait]
impl NodeSource for TerraformSource {
    async fn discover(&self) -> Result<Vec<String>, NodeSetError> {
        let data = match &self.binary {
            Some(binary) => self.run_binary(binary).await?,
            None => {
                let text = tokio::fs::read_to_string(&self.statefile)
                    .await
                    .map_err(|e| {
                        NodeSetError::Failed(format!("Cannot read {}: {e}", self.statefile))
                    })?;
                let state: Option<Value> = serde_json::from_str(&text).ok();
                match state.as_ref().and_then(|s| s.get("outputs")) {
                    Some(outputs) => outputs.get(&self.output).cloned().ok_or_else(|| {
                        NodeSetError::Failed(format!(
                            "terraform state {} has no output {}",
                            self.statefile, self.output
                        ))
                    })?,
                    None => self.run_binary("terraform").await?,
                }
            }
        };
        let nodes = list_from(&data)?;
        check_hostnames(&nodes)?;
        Ok(nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn output_shapes() {
        let list = json!({"sensitive": false, "type": "list", "value": ["a.example", "b"]});
        assert_eq!(list_from(&list).expect("list"), vec!["a.example", "b"]);
        let string = json!({"sensitive": false, "type": "string", "value": "a"});
        let err = list_from(&string).expect_err("string");
        assert_eq!(
            err.to_string(),
            "Only terraform outputs of type list is supported"
        );
        let modern = json!({"type": ["list", "string"], "value": ["x"]});
        assert_eq!(list_from(&modern).expect("list"), vec!["x"]);
    }
}
