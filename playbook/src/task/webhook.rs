//! The `webhook` task: GET (data as query string) or POST (data as JSON); 200 and 201 succeed.

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::http::USER_AGENT;
use super::{Task, TaskContext, TaskError, TaskOutcome, non_empty};
pub(crate) use crate::schema::tasks::Method;
use crate::schema::tasks::WebhookProps;
use crate::schema::values::{flag, pairs};

pub(crate) struct WebhookTask {
    pub(crate) uri: reqwest::Url,
    pub(crate) method: Method,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) data: Map<String, Value>,
    pub(crate) verify_ssl: bool,
}

/// Parses an http(s) URL.
pub(crate) fn parse_uri(uri: &str) -> Result<reqwest::Url, TaskError> {
    let url = reqwest::Url::parse(uri)
        .map_err(|e| TaskError::invalid("uri", format!("Invalid uri {uri}: {e}")))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(TaskError::invalid(
            "uri",
            format!("Invalid uri {uri}: scheme {other} is not http or https"),
        )),
    }
}

impl WebhookTask {
    pub(crate) fn new(props: &WebhookProps) -> Result<Self, TaskError> {
        let uri = parse_uri(&non_empty(&props.uri, "uri", "A uri is required")?)?;
        Ok(Self {
            uri,
            method: props.method.unwrap_or(Method::Post),
            headers: pairs(&props.headers),
            data: props.data.clone().map(|h| h.0).unwrap_or_default(),
            verify_ssl: flag(props.verify_ssl, true),
        })
    }

    /// Sends the request and maps the answer to an outcome (also used by graphite events).
    pub(crate) async fn send(&self, ctx: &TaskContext<'_>) -> TaskOutcome {
        let client = match ctx.http.get(self.verify_ssl) {
            Ok(c) => c,
            Err(e) => return TaskOutcome::failed(e.to_string(), vec![]),
        };
        let mut headers: Vec<(String, String)> = vec![
            ("User-Agent".into(), USER_AGENT.into()),
            (
                "X-Choria-Request-ID".into(),
                uuid::Uuid::new_v4().to_string(),
            ),
        ];
        if self.method == Method::Post {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        for (k, v) in &self.headers {
            headers.retain(|(d, _)| !d.eq_ignore_ascii_case(k));
            headers.push((k.clone(), v.clone()));
        }
        let mut request = match self.method {
            Method::Get => {
                let mut url = self.uri.clone();
                if !self.data.is_empty() {
                    let mut pairs = url.query_pairs_mut();
                    for (k, v) in &self.data {
                        pairs.append_pair(k, &crate::template::stringify(v));
                    }
                }
                client.get(url)
            }
            Method::Post => client
                .post(self.uri.clone())
                .body(Value::Object(self.data.clone()).to_string()),
        };
        for (k, v) in &headers {
            request = request.header(k.as_str(), v.as_str());
        }
        match request.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                if status == 200 || status == 201 {
                    TaskOutcome::ok(
                        format!(
                            "Successfully sent {} request to {}",
                            self.method_name(),
                            self.uri
                        ),
                        vec![Value::String(body)],
                    )
                } else {
                    TaskOutcome::failed(
                        format!(
                            "Failed to send {} request to {}: HTTP {status}",
                            self.method_name(),
                            self.uri
                        ),
                        vec![Value::String(body)],
                    )
                }
            }
            Err(e) => TaskOutcome::failed(
                format!(
                    "Failed to send {} request to {}: {e}",
                    self.method_name(),
                    self.uri
                ),
                vec![],
            ),
        }
    }

    fn method_name(&self) -> &'static str {
        match self.method {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

#[async_trait]
impl Task for WebhookTask {
    async fn run(&self, ctx: &TaskContext<'_>) -> TaskOutcome {
        self.send(ctx).await
    }

    fn describe(&self) -> String {
        format!(
            "webhook: {} {} data {}",
            self.method_name(),
            self.uri,
            Value::Object(self.data.clone())
        )
    }
}
