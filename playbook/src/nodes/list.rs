//! The `list` node set (an extension): `nodes: [a, b]` written inline.

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{NodeSetError, NodeSource, names_from};

pub(crate) struct ListSource {
    nodes: Vec<String>,
}

impl ListSource {
    pub(crate) fn new(props: &Map<String, Value>) -> Result<Self, NodeSetError> {
        match props.get("nodes") {
            Some(Value::Array(items)) => Ok(Self {
                nodes: names_from(items),
            }),
            Some(Value::String(s)) => Ok(Self {
                nodes: s
                    .split(',')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect(),
            }),
            _ => Err(NodeSetError::Failed(
                "A list node set needs a nodes list".to_string(),
            )),
        }
    }
}

#[async_trait]
impl NodeSource for ListSource {
    async fn discover(&self) -> Result<Vec<String>, NodeSetError> {
        Ok(self.nodes.clone())
    }
}
