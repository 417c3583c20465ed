//! The run report (stage **report**): the YAML document of Choria's `--report`, also printed
//! as JSON with `--json`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::log::LogEntry;

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Outcome header.
    pub report: ReportHeader,
    /// Playbook identity.
    pub playbook: PlaybookInfo,
    /// Input values.
    pub inputs: InputsInfo,
    /// Discovered node sets.
    pub nodes: BTreeMap<String, Vec<String>>,
    /// One entry per task attempt and per hook execution.
    pub tasks: Vec<TaskRecord>,
    /// Timing and counts.
    pub metrics: Metrics,
    /// Every log line that passed the log level.
    pub logs: Vec<LogEntry>,
}

/// `report:` section.
#[derive(Debug, Clone, Serialize)]
pub struct ReportHeader {
    /// Report format version (1).
    pub version: u32,
    /// When the run started (UTC).
    pub timestamp: DateTime<Utc>,
    /// Overall outcome.
    pub success: bool,
    /// `success`, `failed` or `interrupted` (by SIGINT or SIGTERM).
    pub outcome: Outcome,
    /// `Playbook X failed: Class: message` when the run aborted.
    pub playbook_error: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every task list passed.
    Success,
    /// A task or hook failed, or the run aborted.
    Failed,
    /// SIGINT or SIGTERM stopped the run.
    Interrupted,
}

impl Outcome {
    /// The name printed on the console and written to the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
}

/// `playbook:` section.
#[derive(Debug, Clone, Serialize)]
pub struct PlaybookInfo {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
}

/// `inputs:` section.
#[derive(Debug, Clone, Serialize, Default)]
pub struct InputsInfo {
    /// Resolved values of non-dynamic inputs (sensitive ones masked).
    #[serde(rename = "static")]
    pub static_values: BTreeMap<String, Value>,
    /// Names of dynamic inputs.
    pub dynamic: Vec<String>,
}

/// One task attempt.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRecord {
    /// Task type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The list it ran in (`tasks`, `pre_book`, ...).
    pub set: String,
    /// Templated description.
    pub description: String,
    /// Start (UTC).
    pub start_time: DateTime<Utc>,
    /// End (UTC).
    pub end_time: DateTime<Utc>,
    /// Seconds.
    pub run_time: f64,
    /// Whether the task actually ran.
    pub ran: bool,
    /// Status message.
    pub msg: String,
    /// Outcome.
    pub success: bool,
}

/// `metrics:` section.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    /// Run start (UTC).
    pub start_time: DateTime<Utc>,
    /// Run end (UTC).
    pub end_time: DateTime<Utc>,
    /// Seconds.
    pub run_time: f64,
    /// Number of task entries.
    pub task_count: usize,
    /// Per task type counts.
    pub task_types: BTreeMap<String, TypeMetrics>,
}

/// Per task type counts.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TypeMetrics {
    /// Entries.
    pub count: usize,
    /// Seconds spent.
    pub total_time: f64,
    /// Passed entries.
    pub pass: usize,
    /// Failed entries.
    pub fail: usize,
}

impl Report {
    /// Computes per-type metrics from the task records.
    pub(crate) fn task_types(tasks: &[TaskRecord]) -> BTreeMap<String, TypeMetrics> {
        let mut out: BTreeMap<String, TypeMetrics> = BTreeMap::new();
        for t in tasks {
            let m = out.entry(t.kind.clone()).or_default();
            m.count += 1;
            m.total_time += t.run_time;
            if t.success {
                m.pass += 1;
            } else {
                m.fail += 1;
            }
        }
        out
    }

    /// The report as a JSON value.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The report as YAML text.
    pub fn to_yaml(&self) -> Result<String, String> {
        crate::yaml::to_yaml_string(self)
    }
}
