//! Task types (`tasks:` and hook lists), run in the **execute** stage.
//!
//! A task's properties are templated on every attempt, then [`build`] turns them into a
//! [`Task`]: property errors there abort the run (as in Choria), while failures inside
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

use std::fmt;

use async_trait::async_trait;
use serde_json::{Map, Value};

pub(crate) use http::HttpClients;
pub(crate) use shell::kill_running_groups;

use crate::log::RunLog;
use crate::schema::{Prop, Shape, opt, req};
use crate::store::Stores;
use crate::store::{EnvOverlay, str_prop};

/// Every task type the DSL knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskKind {
    /// A Choria RPC request (`rpc` is accepted as an alias).
    Mcollective,
    /// The historical assertion task (removed from Choria in 2017; not available).
    McollectiveAssert,
    /// The historical Bolt task (removed from Choria in 2018; not available).
    Bolt,
    /// A local shell command.
    Shell,
    /// An HTTP GET or POST.
    Webhook,
    /// A Slack chat message.
    Slack,
    /// A Graphite event.
    GraphiteEvent,
    /// Writes or deletes a data store key.
    Data,
}

impl TaskKind {
    /// All kinds, for suggestions.
    pub const ALL: [TaskKind; 8] = [
        Self::Mcollective,
        Self::McollectiveAssert,
        Self::Bolt,
        Self::Shell,
        Self::Webhook,
        Self::Slack,
        Self::GraphiteEvent,
        Self::Data,
    ];

    /// The DSL name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mcollective => "mcollective",
            Self::McollectiveAssert => "mcollective_assert",
            Self::Bolt => "bolt",
            Self::Shell => "shell",
            Self::Webhook => "webhook",
            Self::Slack => "slack",
            Self::GraphiteEvent => "graphite_event",
            Self::Data => "data",
        }
    }

    /// Parses a DSL name.
    pub fn from_name(name: &str) -> Option<Self> {
        if name == "rpc" {
            return Some(Self::Mcollective);
        }
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this build can run the task type.
    pub fn available(self) -> bool {
        match self {
            Self::Mcollective
            | Self::Shell
            | Self::Webhook
            | Self::Slack
            | Self::GraphiteEvent
            | Self::Data => true,
            Self::McollectiveAssert | Self::Bolt => false,
        }
    }

    /// Whether the type is historical (removed from Choria before YAML playbooks ended).
    pub fn historical(self) -> bool {
        match self {
            Self::McollectiveAssert | Self::Bolt => true,
            Self::Mcollective
            | Self::Shell
            | Self::Webhook
            | Self::Slack
            | Self::GraphiteEvent
            | Self::Data => false,
        }
    }

    pub(crate) fn props(self) -> &'static [Prop] {
        match self {
            Self::Mcollective => {
                const P: &[Prop] = &[
                    req("nodes", Shape::Any),
                    req("action", Shape::Str),
                    opt("properties", Shape::Map),
                    opt("batch_size", Shape::Int),
                    opt("batch_sleep_time", Shape::Number),
                    opt("silent", Shape::Bool),
                    opt("post", Shape::StrList),
                    opt("assert", Shape::Str),
                ];
                P
            }
            Self::McollectiveAssert => {
                const P: &[Prop] = &[
                    req("nodes", Shape::Any),
                    req("action", Shape::Str),
                    opt("properties", Shape::Map),
                    req("expression", Shape::List),
                ];
                P
            }
            Self::Bolt => {
                const P: &[Prop] = &[
                    opt("task", Shape::Str),
                    opt("plan", Shape::Str),
                    opt("command", Shape::Str),
                    opt("user", Shape::Str),
                    opt("password", Shape::Str),
                    opt("modules", Shape::Str),
                    opt("tty", Shape::Bool),
                    opt("parameters", Shape::Map),
                    opt("nodes", Shape::Any),
                    opt("transport", Shape::Str),
                ];
                P
            }
            Self::Shell => {
                const P: &[Prop] = &[
                    req("command", Shape::Str),
                    opt("cwd", Shape::Str),
                    opt("environment", Shape::Map),
                    opt("timeout", Shape::Number),
                    opt("nodes", Shape::Any),
                ];
                P
            }
            Self::Webhook => {
                const P: &[Prop] = &[
                    req("uri", Shape::Str),
                    opt("method", Shape::Str),
                    opt("headers", Shape::Map),
                    opt("data", Shape::Map),
                    opt("verify_ssl", Shape::Bool),
                ];
                P
            }
            Self::Slack => {
                const P: &[Prop] = &[
                    req("token", Shape::Str),
                    req("channel", Shape::Str),
                    req("text", Shape::Str),
                    opt("color", Shape::Str),
                    opt("username", Shape::Str),
                ];
                P
            }
            Self::GraphiteEvent => {
                const P: &[Prop] = &[
                    req("graphite", Shape::Str),
                    req("what", Shape::Str),
                    req("data", Shape::Str),
                    opt("tags", Shape::StrList),
                    opt("headers", Shape::Map),
                ];
                P
            }
            Self::Data => {
                const P: &[Prop] = &[
                    req("action", Shape::Str),
                    req("key", Shape::Str),
                    opt("value", Shape::Any),
                ];
                P
            }
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Properties every task accepts (the runner's bookkeeping; never templated except
/// `description`).
pub(crate) const COMMON_PROPS: &[Prop] = &[
    opt("description", Shape::Str),
    opt("tries", Shape::Int),
    opt("try_sleep", Shape::Number),
    opt("pre_sleep", Shape::Number),
    opt("fail_ok", Shape::Bool),
];

/// A task property error found after templating; it aborts the run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TaskError(pub String);

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

/// Builds a task from its templated properties.
pub(crate) fn build(
    kind: TaskKind,
    props: &Map<String, Value>,
) -> Result<Box<dyn Task>, TaskError> {
    match kind {
        TaskKind::Shell => Ok(Box::new(shell::ShellTask::new(props)?)),
        TaskKind::Webhook => Ok(Box::new(webhook::WebhookTask::new(props)?)),
        TaskKind::Slack => Ok(Box::new(slack::SlackTask::new(props)?)),
        TaskKind::GraphiteEvent => Ok(Box::new(graphite::GraphiteTask::new(props)?)),
        TaskKind::Data => Ok(Box::new(data::DataTask::new(props)?)),
        TaskKind::Mcollective => Ok(Box::new(rpc::RpcTask::new(props)?)),
        TaskKind::McollectiveAssert | TaskKind::Bolt => {
            Ok(Box::new(unavailable::UnavailableTask::new(kind, props)?))
        }
    }
}

/// A required, non-empty string property.
pub(crate) fn required_str(
    props: &Map<String, Value>,
    key: &str,
    message: &str,
) -> Result<String, TaskError> {
    match str_prop(props, key) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(TaskError(message.to_string())),
    }
}

/// A string map property (headers, environment).
pub(crate) fn string_map(
    props: &Map<String, Value>,
    key: &str,
) -> Result<Vec<(String, String)>, TaskError> {
    match props.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => Ok(m
            .iter()
            .map(|(k, v)| (k.clone(), crate::template::stringify(v)))
            .collect()),
        Some(other) => Err(TaskError(format!("{key} should be a hash, got {other}"))),
    }
}

/// A list of node names (`nodes:`), if given.
pub(crate) fn node_list(props: &Map<String, Value>) -> Result<Option<Vec<String>>, TaskError> {
    match props.get("nodes") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => {
            Ok(Some(items.iter().map(crate::template::stringify).collect()))
        }
        Some(Value::String(s)) => Ok(Some(
            s.split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect(),
        )),
        Some(other) => Err(TaskError(format!("nodes should be a list, got {other}"))),
    }
}
