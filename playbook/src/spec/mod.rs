//! The typed playbook (stage **spec**): what [`load`] produces from the positioned YAML tree
//! after checking every rule of the DSL. Sections that Choria templates at run time
//! (`data_stores`, `nodes`, `uses`, task properties) are kept as untemplated JSON values; the
//! properties of stores, node sets and tasks have already been checked here with their kind's
//! typed struct ([`crate::schema`]), and the runner deserialises them with the same struct
//! after expansion.

mod check;
mod inputs;
pub mod show;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use check::{Mode, load, load_file};

use crate::log::Level;
use crate::nodes::NodeSetKind;
use crate::store::StoreKind;
use crate::task::TaskKind;
use crate::validator::Validator;
use crate::yaml::Mark;

/// Top-level keys accepted in a playbook.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "version",
    "author",
    "description",
    "tags",
    "on_fail",
    "loglevel",
    "run_as",
    "uses",
    "inputs",
    "locks",
    "data_stores",
    "nodes",
    "tasks",
    "hooks",
    "macros",
    "$schema",
];

/// Items readable as `{{{ metadata.X }}}`.
pub const METADATA_ITEMS: &[&str] = &[
    "name",
    "version",
    "author",
    "description",
    "tags",
    "on_fail",
    "loglevel",
    "run_as",
];

/// Fields readable as `{{{ previous_task.X }}}`.
pub const PREVIOUS_TASK_FIELDS: &[&str] = &[
    "success",
    "msg",
    "message",
    "description",
    "data",
    "runtime",
];

/// A loaded and checked playbook.
#[derive(Debug, Clone)]
pub struct Playbook {
    /// The file it came from.
    pub file: PathBuf,
    /// Metadata.
    pub metadata: Metadata,
    /// `uses`: agent name to SemVer range (templated at run time).
    pub uses: Vec<(String, Value)>,
    /// Inputs in file order.
    pub inputs: Vec<InputSpec>,
    /// Data stores in file order.
    pub data_stores: Vec<StoreSpec>,
    /// Lock paths (`store` or `store/key`).
    pub locks: Vec<String>,
    /// Node sets in file order.
    pub nodes: Vec<NodeSetSpec>,
    /// The main task list.
    pub tasks: Vec<TaskSpec>,
    /// Hook lists.
    pub hooks: Hooks,
}

impl Playbook {
    /// The playbook's directory (for relative paths in messages).
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    /// Finds an input by name.
    pub fn input(&self, name: &str) -> Option<&InputSpec> {
        self.inputs.iter().find(|i| i.name == name)
    }
}

/// The metadata record.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// `name`.
    pub name: String,
    /// `version`.
    pub version: String,
    /// `author`.
    pub author: String,
    /// `description`.
    pub description: String,
    /// `tags`.
    pub tags: Vec<String>,
    /// `on_fail` (metadata only, no effect).
    pub on_fail: String,
    /// `loglevel`.
    pub loglevel: Level,
    /// `run_as`.
    pub run_as: String,
}

impl Metadata {
    /// The value of a metadata item for templates.
    pub fn get(&self, item: &str) -> Option<Value> {
        Some(match item {
            "name" => Value::from(self.name.clone()),
            "version" => Value::from(self.version.clone()),
            "author" => Value::from(self.author.clone()),
            "description" => Value::from(self.description.clone()),
            "tags" => Value::from(self.tags.clone()),
            "on_fail" => Value::from(self.on_fail.clone()),
            "loglevel" => Value::from(self.loglevel.name()),
            "run_as" => Value::from(self.run_as.clone()),
            _ => return None,
        })
    }
}

/// How an input's command-line value is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    /// `String`.
    String,
    /// `Integer` / `Fixnum`.
    Integer,
    /// `Float`.
    Float,
    /// `Numeric`.
    Numeric,
    /// `Array`: the flag may be repeated.
    Array,
    /// `Boolean`: a bare flag.
    Boolean,
}

impl InputType {
    /// The canonical spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "String",
            Self::Integer => "Integer",
            Self::Float => "Float",
            Self::Numeric => "Numeric",
            Self::Array => "Array",
            Self::Boolean => "Boolean",
        }
    }
}

/// One input.
#[derive(Debug, Clone)]
pub struct InputSpec {
    /// Name (and flag name).
    pub name: String,
    /// Help text.
    pub description: String,
    /// Type; absent only for `dynamic: true` inputs.
    pub ty: Option<InputType>,
    /// Whether a command-line value is demanded.
    pub required: bool,
    /// Fallback value (never validated or templated).
    pub default: Option<Value>,
    /// Validator for command-line and data-store values.
    pub validation: Option<Validator>,
    /// Data-store binding `store/key`.
    pub data: Option<String>,
    /// Only ever read from the data store.
    pub dynamic: bool,
    /// Save a command-line value to the data store before the run.
    pub save: bool,
    /// Never print the value (extension).
    pub sensitive: bool,
    /// Where the input is declared.
    pub mark: Mark,
}

/// One data store declaration (properties templated at run time).
#[derive(Debug, Clone)]
pub struct StoreSpec {
    /// Store name.
    pub name: String,
    /// Store type.
    pub kind: StoreKind,
    /// All properties, untemplated.
    pub props: Map<String, Value>,
    /// Where it is declared.
    pub mark: Mark,
}

/// One node set declaration (properties templated at run time).
#[derive(Debug, Clone)]
pub struct NodeSetSpec {
    /// Set name.
    pub name: String,
    /// Source type.
    pub kind: NodeSetKind,
    /// All properties, untemplated.
    pub props: Map<String, Value>,
    /// Where it is declared.
    pub mark: Mark,
}

/// One task declaration.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Task type.
    pub kind: TaskKind,
    /// Description (templated when the task starts); defaults to `"<type> task"`.
    pub description: Option<String>,
    /// Total attempts.
    pub tries: u32,
    /// Seconds between failed attempts.
    pub try_sleep: f64,
    /// Seconds before the first attempt.
    pub pre_sleep: f64,
    /// Treat a failure as success (only when `tries` is 1).
    pub fail_ok: bool,
    /// The type's own properties, untemplated.
    pub props: Map<String, Value>,
    /// Where the task is declared.
    pub mark: Mark,
}

impl TaskSpec {
    /// The raw description or the default one.
    pub fn raw_description(&self) -> String {
        self.description
            .clone()
            .unwrap_or_else(|| format!("{} task", self.kind))
    }
}

/// The hook lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookList {
    /// Before the main tasks.
    PreBook,
    /// Before each main task.
    PreTask,
    /// After each main task.
    PostTask,
    /// After the main tasks when all passed.
    OnSuccess,
    /// After the main tasks when one failed.
    OnFail,
    /// At the very end.
    PostBook,
}

impl HookList {
    /// All lists.
    pub const ALL: [HookList; 6] = [
        Self::PreBook,
        Self::PreTask,
        Self::PostTask,
        Self::OnSuccess,
        Self::OnFail,
        Self::PostBook,
    ];

    /// The DSL name.
    pub fn name(self) -> &'static str {
        match self {
            Self::PreBook => "pre_book",
            Self::PreTask => "pre_task",
            Self::PostTask => "post_task",
            Self::OnSuccess => "on_success",
            Self::OnFail => "on_fail",
            Self::PostBook => "post_book",
        }
    }

    /// Parses a DSL name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.name() == name)
    }
}

/// All hook lists of a playbook.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    lists: Vec<(HookList, Vec<TaskSpec>)>,
}

impl Hooks {
    /// The tasks of one list (empty when absent).
    pub fn get(&self, list: HookList) -> &[TaskSpec] {
        self.lists
            .iter()
            .find(|(l, _)| *l == list)
            .map(|(_, t)| t.as_slice())
            .unwrap_or(&[])
    }

    pub(crate) fn set(&mut self, list: HookList, tasks: Vec<TaskSpec>) {
        self.lists.retain(|(l, _)| *l != list);
        self.lists.push((list, tasks));
    }
}
