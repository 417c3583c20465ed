//! The `slack` task: `chat.postMessage` with one attachment, POSTed as JSON with a Bearer
//! token. The API base URL defaults to `https://slack.com/api` and can be changed with the
//! `PLAYBOOK_SLACK_API` environment variable (tests point it at a local server).

use async_trait::async_trait;
use serde_json::{Value, json};

use super::http::USER_AGENT;
use super::{Task, TaskContext, TaskError, TaskOutcome, non_empty};
use crate::schema::tasks::SlackProps;
use crate::schema::values::text;

/// Default Slack Web API base URL.
const SLACK_API: &str = "https://slack.com/api";

pub(crate) struct SlackTask {
    token: String,
    channel: String,
    text: String,
    color: String,
    username: String,
}

impl SlackTask {
    pub(crate) fn new(props: &SlackProps) -> Result<Self, TaskError> {
        Ok(Self {
            channel: non_empty(&props.channel, "channel", "A channel is required")?,
            text: non_empty(&props.text, "text", "Message text is required")?,
            token: non_empty(&props.token, "token", "A bot token is required")?,
            color: text(&props.color).unwrap_or_else(|| "#ffa449".to_string()),
            username: text(&props.username).unwrap_or_else(|| "Choria".to_string()),
        })
    }
}

#[async_trait]
impl Task for SlackTask {
    async fn run(&self, ctx: &TaskContext<'_>) -> TaskOutcome {
        let base = std::env::var("PLAYBOOK_SLACK_API").unwrap_or_else(|_| SLACK_API.to_string());
        let url = format!("{}/chat.postMessage", base.trim_end_matches('/'));
        let body = json!({
            "channel": self.channel,
            "username": self.username,
            "icon_url": "https://choria.io/img/slack-48x48.png",
            "attachments": [{
                "fallback": self.text,
                "text": self.text,
                "pretext": format!("Task: {}", ctx.description),
                "color": self.color,
                "mrkdwn_in": ["text"],
                "footer": "Choria Playbooks",
                "fields": [
                    {"title": "user", "value": ctx.run_as, "short": true},
                    {"title": "playbook", "value": ctx.playbook, "short": true},
                ],
            }],
        });
        let client = match ctx.http.get(true) {
            Ok(c) => c,
            Err(e) => return TaskOutcome::failed(e.to_string(), vec![]),
        };
        let response = client
            .post(&url)
            .header("User-Agent", USER_AGENT)
            .header("Content-Type", "application/json; charset=utf-8")
            .bearer_auth(&self.token)
            .body(body.to_string())
            .send()
            .await;
        match response {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                let ok = parsed.get("ok").and_then(Value::as_bool) == Some(true);
                if status == 200 && ok {
                    TaskOutcome::ok(
                        format!("Message submitted to slack channel {}", self.channel),
                        vec![parsed],
                    )
                } else {
                    let error = parsed
                        .get("error")
                        .map(crate::template::stringify)
                        .unwrap_or_else(|| format!("HTTP {status}"));
                    TaskOutcome::failed(
                        format!(
                            "Failed to send message to slack channel {}: {error}",
                            self.channel
                        ),
                        vec![parsed],
                    )
                }
            }
            Err(e) => TaskOutcome::failed(format!("Failed to send message to slack: {e}"), vec![]),
        }
    }

    fn describe(&self) -> String {
        format!(
            "slack: to {} as {}: {}",
            self.channel, self.username, self.text
        )
    }
}
