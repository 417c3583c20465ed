//! Task types that parse and validate but cannot run in this build (`mcollective_assert` and
//! `bolt` are historical).

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{Task, TaskContext, TaskError, TaskKind, TaskOutcome, node_list, required_str};

pub(crate) struct UnavailableTask {
    kind: TaskKind,
    action: String,
    nodes: usize,
}

impl UnavailableTask {
    pub(crate) fn new(kind: TaskKind, props: &Map<String, Value>) -> Result<Self, TaskError> {
        let (action, nodes) = match kind {
            TaskKind::Mcollective | TaskKind::McollectiveAssert => {
                let nodes = node_list(props)?.unwrap_or_default();
                if nodes.is_empty() {
                    return Err(TaskError(
                        "Nodes need to be supplied, refusing to run against empty node list"
                            .to_string(),
                    ));
                }
                let action = required_str(props, "action", "An action is required")?;
                if !action.contains('.') {
                    return Err(TaskError(format!(
                        "Action {action} should be in the form agent.action"
                    )));
                }
                (action, nodes.len())
            }
            TaskKind::Bolt => (String::new(), node_list(props)?.unwrap_or_default().len()),
            TaskKind::Shell
            | TaskKind::Webhook
            | TaskKind::Slack
            | TaskKind::GraphiteEvent
            | TaskKind::Data => (String::new(), 0),
        };
        Ok(Self {
            kind,
            action,
            nodes,
        })
    }
}

#[async_trait]
impl Task for UnavailableTask {
    async fn run(&self, _ctx: &TaskContext<'_>) -> TaskOutcome {
        TaskOutcome::failed(
            format!(
                "the {} task type is not available in this build yet",
                self.kind
            ),
            Vec::new(),
        )
    }

    fn describe(&self) -> String {
        format!(
            "{} {} against {} node(s) (not available in this build yet)",
            self.kind, self.action, self.nodes
        )
    }
}
