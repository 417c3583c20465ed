//! Properties of tasks: one struct per task type. The common properties (`description`,
//! `tries`, `try_sleep`, `pre_sleep`, `fail_ok`) are the runner's bookkeeping and are read by
//! the spec stage itself.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::kinds::TaskKind;
use super::values::{Flag, Hash, Int, ListOf, Names, Seconds, Text, TextMap, one_of};
use super::{Problem, fields_of, parse};

/// Properties every task accepts, read by the spec stage (never templated except
/// `description`).
pub(crate) const COMMON: &[&str] = &["description", "tries", "try_sleep", "pre_sleep", "fail_ok"];

/// A `post` processing step of an `mcollective` task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PostStep {
    Summarize,
}

impl<'de> Deserialize<'de> for PostStep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_of(d, &["summarize"], &[Self::Summarize], false)
    }
}

/// `mcollective` (alias `rpc`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RpcProps {
    pub(crate) nodes: Names,
    pub(crate) action: Text,
    pub(crate) properties: Option<Hash>,
    pub(crate) batch_size: Option<Int>,
    pub(crate) batch_sleep_time: Option<Seconds>,
    pub(crate) silent: Option<Flag>,
    pub(crate) post: Option<ListOf<PostStep>>,
    pub(crate) assert: Option<Text>,
}

/// `mcollective_assert` (historical).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssertProps {
    pub(crate) nodes: Names,
    pub(crate) action: Text,
    #[allow(dead_code)]
    pub(crate) properties: Option<Hash>,
    #[allow(dead_code)]
    pub(crate) expression: ListOf<Value>,
}

/// `bolt` (historical).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct BoltProps {
    pub(crate) task: Option<Text>,
    pub(crate) plan: Option<Text>,
    pub(crate) command: Option<Text>,
    pub(crate) user: Option<Text>,
    pub(crate) password: Option<Text>,
    pub(crate) modules: Option<Text>,
    pub(crate) tty: Option<Flag>,
    pub(crate) parameters: Option<Hash>,
    pub(crate) nodes: Option<Names>,
    pub(crate) transport: Option<Text>,
}

/// `shell`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShellProps {
    pub(crate) command: Text,
    pub(crate) cwd: Option<Text>,
    pub(crate) environment: Option<TextMap>,
    pub(crate) timeout: Option<Seconds>,
    pub(crate) nodes: Option<Names>,
}

/// A webhook's HTTP method (case-insensitive in the playbook).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_of(d, &["GET", "POST"], &[Self::Get, Self::Post], true)
    }
}

/// `webhook`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookProps {
    pub(crate) uri: Text,
    pub(crate) method: Option<Method>,
    pub(crate) headers: Option<TextMap>,
    pub(crate) data: Option<Hash>,
    pub(crate) verify_ssl: Option<Flag>,
}

/// `slack`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SlackProps {
    pub(crate) token: Text,
    pub(crate) channel: Text,
    pub(crate) text: Text,
    pub(crate) color: Option<Text>,
    pub(crate) username: Option<Text>,
}

/// `graphite_event`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GraphiteProps {
    pub(crate) graphite: Text,
    pub(crate) what: Text,
    pub(crate) data: Text,
    pub(crate) tags: Option<Names>,
    pub(crate) headers: Option<TextMap>,
}

/// The action of a `data` task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataAction {
    Write,
    Delete,
}

impl<'de> Deserialize<'de> for DataAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_of(d, &["write", "delete"], &[Self::Write, Self::Delete], false)
    }
}

/// `data`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DataProps {
    pub(crate) action: DataAction,
    pub(crate) key: Text,
    pub(crate) value: Option<Value>,
}

/// The properties of one task.
#[derive(Debug, Clone)]
pub(crate) enum TaskProps {
    Mcollective(RpcProps),
    McollectiveAssert(AssertProps),
    Bolt(BoltProps),
    Shell(ShellProps),
    Webhook(WebhookProps),
    Slack(SlackProps),
    GraphiteEvent(GraphiteProps),
    Data(DataProps),
}

impl TaskProps {
    /// Deserialises a task's (expanded) property map, without the common properties.
    pub(crate) fn parse(kind: TaskKind, value: &Value) -> Result<Self, Problem> {
        Ok(match kind {
            TaskKind::Mcollective => Self::Mcollective(parse(value)?),
            TaskKind::McollectiveAssert => Self::McollectiveAssert(parse(value)?),
            TaskKind::Bolt => Self::Bolt(parse(value)?),
            TaskKind::Shell => Self::Shell(parse(value)?),
            TaskKind::Webhook => Self::Webhook(parse(value)?),
            TaskKind::Slack => Self::Slack(parse(value)?),
            TaskKind::GraphiteEvent => Self::GraphiteEvent(parse(value)?),
            TaskKind::Data => Self::Data(parse(value)?),
        })
    }

    /// The property names of a task type (without the common ones).
    pub(crate) fn fields(kind: TaskKind) -> &'static [&'static str] {
        match kind {
            TaskKind::Mcollective => fields_of::<RpcProps>(),
            TaskKind::McollectiveAssert => fields_of::<AssertProps>(),
            TaskKind::Bolt => fields_of::<BoltProps>(),
            TaskKind::Shell => fields_of::<ShellProps>(),
            TaskKind::Webhook => fields_of::<WebhookProps>(),
            TaskKind::Slack => fields_of::<SlackProps>(),
            TaskKind::GraphiteEvent => fields_of::<GraphiteProps>(),
            TaskKind::Data => fields_of::<DataProps>(),
        }
    }
}
