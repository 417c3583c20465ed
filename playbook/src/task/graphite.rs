//! The `graphite_event` task: a webhook POST of `{what, tags, when, data}`.

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::webhook::{Method, WebhookTask, parse_uri};
use super::{Task, TaskContext, TaskError, TaskOutcome, non_empty};
use crate::schema::tasks::GraphiteProps;
use crate::schema::values::pairs;

pub(crate) struct GraphiteTask {
    graphite: String,
    what: String,
    data: String,
    tags: Vec<String>,
    headers: Vec<(String, String)>,
}

impl GraphiteTask {
    pub(crate) fn new(props: &GraphiteProps) -> Result<Self, TaskError> {
        let graphite = non_empty(&props.graphite, "graphite", "A graphite url is required")?;
        parse_uri(&graphite)?;
        Ok(Self {
            graphite,
            what: non_empty(&props.what, "what", "A what is required")?,
            data: non_empty(&props.data, "data", "A data is required")?,
            tags: props
                .tags
                .clone()
                .map_or_else(|| vec!["choria".to_string()], |t| t.0),
            headers: pairs(&props.headers),
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
            Err(e) => return TaskOutcome::failed(e.to_string(), vec![]),
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
