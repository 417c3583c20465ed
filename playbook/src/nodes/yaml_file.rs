//! The `yaml` node set: a top-level group (a non-empty list) in a YAML file.

use async_trait::async_trait;
use serde_json::Value;

use super::{NodeSetError, NodeSource, names_from};
use crate::schema::nodes::YamlProps;

pub(crate) struct YamlSource {
    source: String,
    group: String,
}

impl YamlSource {
    pub(crate) fn new(props: &YamlProps) -> Result<Self, NodeSetError> {
        if props.source.as_str().is_empty() {
            return Err(NodeSetError::Failed(
                "No node group YAML source file specified".to_string(),
            ));
        }
        if props.group.as_str().is_empty() {
            return Err(NodeSetError::Failed("No node group specified".to_string()));
        }
        Ok(Self {
            source: props.source.0.clone(),
            group: props.group.0.clone(),
        })
    }
}

#[async_trait]
impl NodeSource for YamlSource {
    async fn discover(&self) -> Result<Vec<String>, NodeSetError> {
        let text = tokio::fs::read_to_string(&self.source).await.map_err(|e| {
            NodeSetError::Failed(format!("Cannot read node source {}: {e}", self.source))
        })?;
        let data = crate::yaml::parse(&text)
            .map_err(|e| NodeSetError::Failed(format!("{}:{}: {e}", self.source, e.mark)))?
            .to_value();
        match data.get(&self.group) {
            Some(Value::Array(items)) if !items.is_empty() => Ok(names_from(items)),
            Some(Value::Array(_)) => Err(NodeSetError::Failed(format!(
                "Data group {} is empty",
                self.group
            ))),
            Some(_) => Err(NodeSetError::Failed(format!(
                "Data group {} is not an array",
                self.group
            ))),
            None => Err(NodeSetError::Failed(format!(
                "Node source {} has no data group {}",
                self.source, self.group
            ))),
        }
    }
}
