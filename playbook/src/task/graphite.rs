//! The `graphite_event` task: a webhook POST of `{what, tags, when, data}`.

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::webhook::{Method, WebhookTask, parse_uri};
use super::{Task, TaskContext, TaskError, TaskOutcome, required_str, string_map};

pub(crate) struct GraphiteTask {
    graphite: String,
    what: String,
    data: String,
    tags: Vec<String>,
    headers: Vec<(String, String)>,
}

impl GraphiteTask {
    pub(crate) fn new(props: &Map<String, Value>) -> Result<Self, TaskError> {
        let graphite = required_str(props, "graphite", "A graphite url is required")?;
        parse_uri(&graphite)?;
        let tags = match props.get("tags") {
            None | Some(Value::Null) => vec!["choria".to_string()],
            Some(Value::Array(items)) => items.iter().map(crate::template::stringify).collect(),
            Some(other) => vec![crate::template::stringify(other)],
        };
        Ok(Self {
            graphite,
            what: required_str(props, "what", "A what is required")?,
            data: required_str(props, "data", "A data is required")?,
            tags,
            headers: string_map(props, "headers")?,
        })
    }
}

#[async_trait]
impl Task for GraphiteTask {
    async fn run(&self, ctx: &TaskContext<'_>) -> TaskOutcome {
        let body = json!({
            "what": self.what,
            "tags": self.tags.join(","),
            "when": chrono::Utc::now().timestamp(),
            "data": self.data,
        });
        let uri = match parse_uri(&self.graphite) {
            Ok(u) => u,
            Err(e) => return TaskOutcome::failed(e.0, vec![]),
        };
        let hook = WebhookTask {
            uri,
            method: Method::Post,
            headers: self.headers.clone(),
            data: match body {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            verify_ssl: true,
        };
        hook.send(ctx).await
    }

    fn describe(&self) -> String {
        format!("graphite_event: {} to {}", self.what, self.graphite)
    }
}
