//! The `list` node set (an extension): `nodes: [a, b]` written inline.

use async_trait::async_trait;

use super::{NodeSetError, NodeSource};
use crate::schema::nodes::ListProps;

pub(crate) struct ListSource {
    nodes: Vec<String>,
}

impl ListSource {
    pub(crate) fn new(props: &ListProps) -> Self {
        Self {
            nodes: props.nodes.0.clone(),
        }
    }
}

#[async_trait]
impl NodeSource for ListSource {
    async fn discover(&self) -> Result<Vec<String>, NodeSetError> {
        Ok(self.nodes.clone())
    }
}
