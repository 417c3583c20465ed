//! The `data` task: `write` or `delete` a `store/key`.

use async_trait::async_trait;
use serde_json::Value;

use super::{Task, TaskContext, TaskError, TaskOutcome, non_empty};
use crate::schema::tasks::{DataAction as Action, DataProps};
use crate::store::split_path;

pub(crate) struct DataTask {
    action: Action,
    key: String,
    value: Value,
}

impl DataTask {
    pub(crate) fn new(props: &DataProps) -> Result<Self, TaskError> {
        let action = props.action;
        let key = non_empty(&props.key, "key", "A key is required")?;
        split_path(&key).map_err(|e| TaskError::invalid("key", e.to_string()))?;
        let value = props.value.clone().unwrap_or(Value::Null);
        if action == Action::Write && value.is_null() {
            return Err(TaskError::Missing {
                property: "value",
                message: "A value is required for the write action",
            });
        }
        Ok(Self { action, key, value })
    }
}

#[async_trait]
impl Task for DataTask {
    async fn run(&self, ctx: &TaskContext<'_>) -> TaskOutcome {
        let (store, key, _) = match ctx.stores.resolve(&self.key) {
            Ok(found) => found,
            Err(e) => return TaskOutcome::failed(e.to_string(), vec![]),
        };
        match self.action {
            Action::Write => match store.write(key, &self.value).await {
                Ok(()) => TaskOutcome::ok(format!("Wrote value to {}", self.key), vec![]),
                Err(e) => TaskOutcome::failed(format!("Could not write {}: {e}", self.key), vec![]),
            },
            Action::Delete => match store.delete(key).await {
                Ok(()) => TaskOutcome::ok(format!("Deleted data item {}", self.key), vec![]),
                Err(e) => {
                    TaskOutcome::failed(format!("Could not delete {}: {e}", self.key), vec![])
                }
            },
        }
    }

    fn describe(&self) -> String {
        match self.action {
            Action::Write => format!("data: write {} = {}", self.key, self.value),
            Action::Delete => format!("data: delete {}", self.key),
        }
    }
}
