//! Task types (`tasks:` and hook lists), run in the **execute** stage.
//!
//! A task's properties are templated on every attempt and checked with the type's properties
//! struct ([`crate::schema::tasks`]), then [`build`] turns them into a [`Task`]: property errors
//! there abort the run (as in Choria), while failures inside
//! [`Task::run`] only fail the task. `mcollective` (alias `rpc`) sends Choria RPC requests; the
//! historical `mcollective_assert` and `bolt` parse and validate but fail at run time.

mod data;
mod graphite;
mod http;
pub mod jgrep;
mod rpc;
mod shell;
mod slack;
mod unavailable;
mod webhook;

pub use crate::schema::kinds::TaskKind;

use async_trait::async_trait;
use serde_json::Value;

pub(crate) use http::{HttpClients, USER_AGENT};
pub(crate) use shell::kill_running_groups;

use crate::log::RunLog;
use crate::schema::tasks::TaskProps;
use crate::schema::values::{Names, Text};
use crate::store::{EnvOverlay, Stores};

/// A task whose properties it cannot run with (found after templating); it aborts the run.
/// The runner adds the task's position. Messages keep Choria's wording.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A required property is missing or empty.
    #[error("{message}")]
    Missing {
        property: &'static str,
        message: &'static str,
    },
    /// A property has a value the task cannot use.
    #[error("{message}")]
    Invalid {
        property: &'static str,
        message: String,
    },
    /// An HTTP client could not be built (the cause is in the message, printed once).
    #[error("Could not create an HTTP client: {error}")]
    HttpClient { error: reqwest::Error },
}

impl TaskError {
    pub(crate) fn invalid(property: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            property,
            message: message.into(),
        }
    }

    /// The property at fault, when there is one.
    pub fn property(&self) -> Option<&'static str> {
        match self {
            Self::Missing { property, .. } | Self::Invalid { property, .. } => Some(property),
            Self::HttpClient { .. } => None,
        }
    }
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOutcome {
    /// Whether the attempt succeeded.
    pub success: bool,
    /// Status message.
    pub msg: String,
    /// Result data (command output, HTTP bodies...).
    pub data: Vec<Value>,
}

impl TaskOutcome {
    pub(crate) fn ok(msg: impl Into<String>, data: Vec<Value>) -> Self {
        Self {
            success: true,
            msg: msg.into(),
            data,
        }
    }

    pub(crate) fn failed(msg: impl Into<String>, data: Vec<Value>) -> Self {
        Self {
            success: false,
            msg: msg.into(),
            data,
        }
    }
}

/// What a running task may use.
pub struct TaskContext<'a> {
    /// Playbook name.
    pub playbook: &'a str,
    /// The playbook's `run_as` (shown in Slack messages).
    pub run_as: &'a str,
    /// The task's templated description.
    pub description: &'a str,
    /// Log context, e.g. `tasks.shell`.
    pub(crate) from: &'a str,
    pub(crate) log: &'a RunLog,
    pub(crate) stores: &'a Stores,
    pub(crate) env: &'a EnvOverlay,
    pub(crate) http: &'a HttpClients,
    pub(crate) broker: &'a crate::choria::Broker,
    /// Cancelled when the run is interrupted: the task should stop what it started.
    pub(crate) cancel: &'a tokio_util::sync::CancellationToken,
}

/// One runnable task attempt.
#[async_trait]
pub trait Task: Send + Sync {
    /// Runs the attempt. Failures are reported in the outcome, never as panics.
    async fn run(&self, ctx: &TaskContext<'_>) -> TaskOutcome;
    /// One line saying what the task would do (used by `--dry-run`).
    fn describe(&self) -> String;
}

/// Builds a task from its templated and checked properties.
pub(crate) fn build(props: &TaskProps) -> Result<Box<dyn Task>, TaskError> {
    match props {
        TaskProps::Shell(p) => Ok(Box::new(shell::ShellTask::new(p)?)),
        TaskProps::Webhook(p) => Ok(Box::new(webhook::WebhookTask::new(p)?)),
        TaskProps::Slack(p) => Ok(Box::new(slack::SlackTask::new(p)?)),
        TaskProps::GraphiteEvent(p) => Ok(Box::new(graphite::GraphiteTask::new(p)?)),
        TaskProps::Data(p) => Ok(Box::new(data::DataTask::new(p)?)),
        TaskProps::Mcollective(p) => Ok(Box::new(rpc::RpcTask::new(p)?)),
        TaskProps::McollectiveAssert(p) => Ok(Box::new(unavailable::UnavailableTask::assert(p)?)),
        TaskProps::Bolt(p) => Ok(Box::new(unavailable::UnavailableTask::bolt(p))),
    }
}

/// A required property that must not be empty.
pub(crate) fn non_empty(
    value: &Text,
    property: &'static str,
    message: &'static str,
) -> Result<String, TaskError> {
    if value.as_str().is_empty() {
        Err(TaskError::Missing { property, message })
    } else {
        Ok(value.as_str().to_string())
    }
}

/// A required, non-empty node list.
pub(crate) fn nodes(value: &Names) -> Result<Vec<String>, TaskError> {
    if value.0.is_empty() {
        Err(TaskError::Missing {
            property: "nodes",
            message: "Nodes need to be supplied, refusing to run against empty node list",
        })
    } else {
        Ok(value.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_errors_name_their_property_and_keep_choria_s_wording() {
        let empty: Text = serde_json::from_value(Value::String(String::new())).expect("text");
        let e = non_empty(&empty, "command", "A command was not given").unwrap_err();
        assert_eq!(e.property(), Some("command"));
        assert_eq!(e.to_string(), "A command was not given");
        let e = nodes(&Names(Vec::new())).unwrap_err();
        assert_eq!(e.property(), Some("nodes"));
        let e = webhook::parse_uri("ftp://x/").unwrap_err();
        assert_eq!(e.property(), Some("uri"));
        assert!(
            e.to_string().contains("scheme ftp is not http or https"),
            "{e}"
        );
    }
}
