//! Task types that parse and validate but cannot run in this build (`mcollective_assert` and
//! `bolt` are historical).

use super::{Task, TaskContext, TaskError, TaskKind, TaskOutcome, non_empty};
use crate::schema::tasks::{AssertProps, BoltProps};
use async_trait::async_trait;

pub(crate) struct UnavailableTask {
    kind: TaskKind,
    action: String,
    nodes: usize,
}

impl UnavailableTask {
    /// The historical `mcollective_assert` task.
    pub(crate) fn assert(props: &AssertProps) -> Result<Self, TaskError> {
        let nodes = super::nodes(&props.nodes)?;
        let action = non_empty(&props.action, "action", "An action is required")?;
        if !action.contains('.') {
            return Err(TaskError::invalid(
                "action",
                format!("Action {action} should be in the form agent.action"),
            ));
        }
        Ok(Self {
            kind: TaskKind::McollectiveAssert,
            action,
            nodes: nodes.len(),
        })
    }

    /// The historical `bolt` task.
    pub(crate) fn bolt(props: &BoltProps) -> Self {
        Self {
            kind: TaskKind::Bolt,
            action: String::new(),
            nodes: props.nodes.as_ref().map_or(0, |n| n.0.len()),
        }
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
