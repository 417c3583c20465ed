//! Builds a [`Playbook`] from YAML text, collecting every problem with its position.

use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::inputs::{check_data_path, check_input};
use super::{
    HookList, Hooks, InputSpec, METADATA_ITEMS, Metadata, NodeSetSpec, PREVIOUS_TASK_FIELDS,
    Playbook, StoreSpec, TOP_LEVEL_KEYS, TaskSpec,
};
use crate::diagnostic::{Diagnostics, did_you_mean};
use crate::log::Level;
use crate::nodes::NodeSetKind;
use crate::schema::nodes::NodeSetProps;
use crate::schema::stores::StoreProps;
use crate::schema::tasks::{COMMON as TASK_COMMON, TaskProps};
use crate::schema::{Section, check as check_props};
use crate::store::StoreKind;
use crate::task::TaskKind;
use crate::template::{Expr, Group};
use crate::yaml::{Kind, Mark, Node};

/// Whether the text is a whole playbook or a documentation fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A complete playbook: metadata is required, unknown top-level keys are errors and
    /// template references are checked against the playbook's own names.
    Playbook,
    /// A fragment (e.g. a documentation snippet): only the sections present are checked; a
    /// top-level list is read as a task list and top-level hook names as hook lists.
    Fragment,
}

/// One comparator of a Puppet-style SemVer range, e.g. `~1.0.0`, `>= 1.2`, `1.x`.
static VERSION_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*(?:(?:~>|~|\^|>=|<=|>|<|=)?\s*v?\d+(?:\.(?:\d+|x|X|\*)){0,2}(?:-[0-9A-Za-z.-]+)?\s*(?:\|\||-\s|\s|$)\s*)+$",
    )
    .expect("static regex is valid")
});

static CALLERID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\w+=[\w.-]+$").expect("static regex is valid"));

/// Reads and checks a playbook file.
pub fn load_file(path: &Path) -> (Option<Playbook>, Diagnostics) {
    match std::fs::read_to_string(path) {
        Ok(text) => load(&text, path, Mode::Playbook),
        Err(e) => {
            let mut diags = Diagnostics::new(path);
            diags.error(
                Mark { line: 1, column: 1 },
                format!("Cannot read playbook: {e}"),
            );
            (None, diags)
        }
    }
}

/// Checks playbook text. The playbook is returned only when there are no errors.
pub fn load(text: &str, path: &Path, mode: Mode) -> (Option<Playbook>, Diagnostics) {
    let mut diags = Diagnostics::new(path);
    let root = match crate::yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            diags.error(e.mark, format!("YAML syntax error: {}", e.message));
            return (None, diags);
        }
    };
    let mut checker = Checker {
        diags,
        source: Source::new(text),
        mode,
        input_names: Vec::new(),
        node_names: Vec::new(),
        unavailable: Vec::new(),
        store_names: None,
    };
    let playbook = checker.playbook(&root, path);
    let diags = checker.diags;
    if diags.has_errors() {
        (None, diags)
    } else {
        (playbook, diags)
    }
}

struct Checker {
    diags: Diagnostics,
    source: Source,
    mode: Mode,
    input_names: Vec<String>,
    node_names: Vec<String>,
    /// Kinds already reported as unavailable (one warning per kind and file).
    unavailable: Vec<String>,
    /// Declared data store names (playbook mode only).
    store_names: Option<Vec<String>>,
}

fn empty_metadata() -> Metadata {
    Metadata {
        name: String::new(),
        version: String::new(),
        author: String::new(),
        description: String::new(),
        tags: Vec::new(),
        on_fail: "fail".to_string(),
        loglevel: Level::Info,
        run_as: String::new(),
    }
}

impl Checker {
    fn playbook(&mut self, root: &Node, path: &Path) -> Option<Playbook> {
        if let (Mode::Fragment, Kind::Seq(_)) = (self.mode, &root.kind) {
            let tasks = self.task_list(root, "tasks");
            return Some(Playbook {
                file: path.to_path_buf(),
                metadata: empty_metadata(),
                uses: Vec::new(),
                inputs: Vec::new(),
                data_stores: Vec::new(),
                locks: Vec::new(),
                nodes: Vec::new(),
                tasks,
                hooks: Hooks::default(),
            });
        }
        let Some(pairs) = root.as_map() else {
            self.diags.error(
                root.mark,
                format!("A playbook should be a hash, got {}", root.type_name()),
            );
            return None;
        };
        if self.mode == Mode::Playbook {
            for (k, _) in pairs {
                let key = k.key_text();
                if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                    self.diags.error(
                        k.mark,
                        format!(
                            "Invalid playbook data items {key} found{}",
                            did_you_mean(&key, TOP_LEVEL_KEYS.iter().copied())
                        ),
                    );
                }
            }
        }
        let metadata = self.metadata(root);
        let store_names: Vec<String> = match root.get("data_stores").and_then(Node::as_map) {
            Some(m) => m.iter().map(|(k, _)| k.key_text()).collect(),
            None => Vec::new(),
        };
        let known_stores = match self.mode {
            Mode::Playbook => Some(store_names.as_slice()),
            Mode::Fragment => None,
        };
        self.store_names = known_stores.map(<[String]>::to_vec);
        let uses = self.uses(root);
        let inputs = self.inputs(root, known_stores);
        self.input_names = inputs.iter().map(|i| i.name.clone()).collect();
        if let Some(m) = root.get("nodes").and_then(Node::as_map) {
            self.node_names = m.iter().map(|(k, _)| k.key_text()).collect();
        }
        let data_stores = self.stores(root);
        let locks = self.locks(root, known_stores);
        let nodes = self.node_sets(root);
        let tasks = match root.get("tasks") {
            Some(node) => self.task_list(node, "tasks"),
            None => Vec::new(),
        };
        let hooks = self.hooks(root);
        for section in ["uses", "data_stores", "nodes"] {
            if let Some(node) = root.get(section) {
                self.check_templates(node);
            }
        }
        Some(Playbook {
            file: path.to_path_buf(),
            metadata,
            uses,
            inputs,
            data_stores,
            locks,
            nodes,
            tasks,
            hooks,
        })
    }

    fn first_unavailable(&mut self, what: &str) -> bool {
        if self.unavailable.iter().any(|w| w == what) {
            return false;
        }
        self.unavailable.push(what.to_string());
        true
    }

    fn expect_kind(&mut self, root: &Node, key: &str, map: bool) -> Option<Node> {
        let node = root.get(key)?;
        if matches!(node.kind, Kind::Null) {
            return None;
        }
        let ok = if map {
            node.as_map().is_some()
        } else {
            node.as_seq().is_some()
        };
        if !ok && self.mode == Mode::Fragment {
            // In a fragment the key may belong to something else (e.g. a task's `nodes`).
            return None;
        }
        if !ok {
            let want = if map { "hash" } else { "array" };
            self.diags
                .error(node.mark, format!("{key} should be a {want}"));
            return None;
        }
        Some(node.clone())
    }

    fn scalar(&mut self, root: &Node, key: &str) -> Option<(String, Mark)> {
        let node = root.get(key)?;
        match &node.kind {
            Kind::Null => None,
            Kind::Seq(_) | Kind::Map(_) => {
                self.diags.error(
                    node.mark,
                    format!("{key} should be a string, got {}", node.type_name()),
                );
                None
            }
            Kind::Str { .. } | Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) => {
                Some((node.key_text(), node.mark))
            }
        }
    }

    fn metadata(&mut self, root: &Node) -> Metadata {
        let mut meta = empty_metadata();
        let playbook = self.mode == Mode::Playbook;
        for key in ["name", "version", "author", "description"] {
            match self.scalar(root, key) {
                Some((value, _)) if !value.is_empty() => match key {
                    "name" => meta.name = value,
                    "version" => meta.version = value,
                    "author" => meta.author = value,
                    _ => meta.description = value,
                },
                _ if playbook => self
                    .diags
                    .error(root.mark, format!("A playbook {key} is needed")),
                _ => {}
            }
        }
        if let Some((level, mark)) = self.scalar(root, "loglevel") {
            match Level::from_name(&level) {
                Some(l) => meta.loglevel = l,
                None => self.diags.error(
                    mark,
                    format!(
                        "Invalid log level {level}, valid levels are debug, info, warn, error, fatal"
                    ),
                ),
            }
        }
        match self.scalar(root, "run_as") {
            Some((run_as, mark)) => {
                if !CALLERID.is_match(&run_as) {
                    // Choria refused this; run_as is unused, so it is only a warning here.
                    self.diags.warning(
                        mark,
                        format!("Invalid callerid {run_as}, expected a form like choria=user"),
                    );
                }
                meta.run_as = run_as;
            }
            None if playbook => self
                .diags
                .warning(root.mark, "run_as is not set (it is only informational)"),
            None => {}
        }
        let on_fail_is_hook = root.get("on_fail").is_some_and(|n| n.as_seq().is_some());
        if !(on_fail_is_hook && self.mode == Mode::Fragment)
            && let Some((on_fail, _)) = self.scalar(root, "on_fail")
        {
            meta.on_fail = on_fail;
        }
        if let Some(tags) = root.get("tags") {
            match &tags.kind {
                Kind::Seq(items) => meta.tags = items.iter().map(Node::key_text).collect(),
                Kind::Null => {}
                Kind::Str { text, .. } => meta.tags = vec![text.clone()],
                Kind::Bool(_) | Kind::Int(_) | Kind::Float(_) | Kind::Map(_) => {
                    self.diags.error(tags.mark, "tags should be a array");
                }
            }
        }
        if let Some(schema) = root.get("$schema")
            && schema.as_str().is_none()
        {
            self.diags.error(schema.mark, "$schema should be a string");
        }
        meta
    }

    fn uses(&mut self, root: &Node) -> Vec<(String, Value)> {
        let Some(node) = self.expect_kind(root, "uses", true) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in node.as_map().unwrap_or(&[]) {
            match &v.kind {
                Kind::Str { .. } | Kind::Int(_) | Kind::Float(_) => {
                    let range = v.key_text();
                    if !range.contains("{{") && !VERSION_RANGE.is_match(&range) {
                        self.diags.warning(
                            v.mark,
                            format!(
                                "uses: cannot understand the version range {range} of agent {}",
                                k.key_text()
                            ),
                        );
                    }
                    out.push((k.key_text(), Value::String(range)));
                }
                _ => self.diags.error(
                    v.mark,
                    format!("uses: version range of {} should be a string", k.key_text()),
                ),
            }
        }
        out
    }

    fn inputs(&mut self, root: &Node, stores: Option<&[String]>) -> Vec<InputSpec> {
        let Some(node) = self.expect_kind(root, "inputs", true) else {
            return Vec::new();
        };
        let inputs: Vec<InputSpec> = node
            .as_map()
            .unwrap_or(&[])
            .iter()
            .filter_map(|(k, v)| check_input(&mut self.diags, k, v, stores))
            .collect();
        for (i, input) in inputs.iter().enumerate() {
            let flag = input.name.to_ascii_lowercase();
            if inputs[..i]
                .iter()
                .any(|other| other.name.to_ascii_lowercase() == flag)
            {
                self.diags.error(
                    input.mark,
                    format!("Input {} would give a second --{flag} flag", input.name),
                );
            }
        }
        inputs
    }

    fn stores(&mut self, root: &Node) -> Vec<StoreSpec> {
        let Some(node) = self.expect_kind(root, "data_stores", true) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in node.as_map().unwrap_or(&[]) {
            let name = k.key_text();
            if crate::store::split_path(&format!("{name}/x")).is_err() {
                self.diags.error(
                    k.mark,
                    format!("Data store name {name} must match [a-zA-Z0-9_-]+"),
                );
            }
            let Some(type_name) = self.type_of(v, &format!("data store {name}")) else {
                continue;
            };
            let Some(kind) = StoreKind::from_name(&type_name) else {
                self.diags.error(
                    v.get("type").map_or(v.mark, |t| t.mark),
                    format!(
                        "Cannot find a handler for Data Store type {type_name}{}",
                        did_you_mean(&type_name, StoreKind::ALL.iter().map(|k| k.name()))
                    ),
                );
                continue;
            };
            let fields = StoreProps::fields(kind);
            let props = check_props(
                &mut self.diags,
                &Section {
                    body: v,
                    what: &format!("data store {name}"),
                    fields: &fields,
                    elsewhere: &[],
                },
                &|value| StoreProps::parse(kind, value).map(|_| ()),
            );
            if !kind.available() && self.first_unavailable(&format!("store {kind}")) {
                self.diags.warning(
                    v.mark,
                    format!(
                        "the {kind} data store is not available in this build yet; runs using it will fail"
                    ),
                );
            }
            out.push(StoreSpec {
                name,
                kind,
                props,
                mark: k.mark,
            });
        }
        out
    }

    fn type_of(&mut self, v: &Node, what: &str) -> Option<String> {
        if v.as_map().is_none() {
            self.diags.error(
                v.mark,
                format!("{what} should be a hash, got {}", v.type_name()),
            );
            return None;
        }
        match v.get("type") {
            Some(t) if t.as_str().is_some() => t.as_str().map(str::to_string),
            Some(t) => {
                self.diags
                    .error(t.mark, format!("type of {what} should be a string"));
                None
            }
            None => {
                self.diags.error(v.mark, format!("{what} needs a type"));
                None
            }
        }
    }

    fn locks(&mut self, root: &Node, stores: Option<&[String]>) -> Vec<String> {
        let Some(node) = self.expect_kind(root, "locks", false) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in node.as_seq().unwrap_or(&[]) {
            let Some(text) = item.as_str() else {
                self.diags.error(item.mark, "locks should be strings");
                continue;
            };
            let with_key = if text.contains('/') {
                text.to_string()
            } else {
                format!("{text}/lock")
            };
            check_data_path(&mut self.diags, item, &with_key, stores);
            out.push(text.to_string());
        }
        out
    }

    fn node_sets(&mut self, root: &Node) -> Vec<NodeSetSpec> {
        let Some(node) = self.expect_kind(root, "nodes", true) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in node.as_map().unwrap_or(&[]) {
            let name = k.key_text();
            let Some(type_name) = self.type_of(v, &format!("node set {name}")) else {
                continue;
            };
            let Some(kind) = NodeSetKind::from_name(&type_name) else {
                self.diags.error(
                    v.get("type").map_or(v.mark, |t| t.mark),
                    format!(
                        "Cannot find a handler for Node Set type {type_name}{}",
                        did_you_mean(&type_name, NodeSetKind::ALL.iter().map(|k| k.name()))
                    ),
                );
                continue;
            };
            let fields = NodeSetProps::fields(kind);
            let props = check_props(
                &mut self.diags,
                &Section {
                    body: v,
                    what: &format!("node set {name}"),
                    fields: &fields,
                    elsewhere: &[],
                },
                &|value| NodeSetProps::parse(kind, value).map(|_| ()),
            );
            if kind == NodeSetKind::Pql
                && let Some(query) = v.get("query")
                && let Some(text) = query.as_str()
                && text.trim().is_empty()
            {
                self.diags.error(
                    query.mark,
                    format!("query of node set {name} must not be empty"),
                );
            }
            if !kind.available() && self.first_unavailable(&format!("nodes {kind}")) {
                self.diags.warning(
                    v.mark,
                    format!(
                        "the {kind} node set type is not available in this build yet; runs using it will fail"
                    ),
                );
            }
            out.push(NodeSetSpec {
                name,
                kind,
                props,
                mark: k.mark,
            });
        }
        out
    }

    fn hooks(&mut self, root: &Node) -> Hooks {
        let mut hooks = Hooks::default();
        let lists: Vec<(Node, Node)> = match self.mode {
            Mode::Playbook => match self.expect_kind(root, "hooks", true) {
                Some(node) => node.as_map().unwrap_or(&[]).to_vec(),
                None => return hooks,
            },
            Mode::Fragment => {
                let mut lists: Vec<(Node, Node)> = match root.get("hooks") {
                    Some(node) => node.as_map().unwrap_or(&[]).to_vec(),
                    None => Vec::new(),
                };
                for (k, v) in root.as_map().unwrap_or(&[]) {
                    if HookList::from_name(&k.key_text()).is_some() && v.as_seq().is_some() {
                        lists.push((k.clone(), v.clone()));
                    }
                }
                lists
            }
        };
        for (k, v) in &lists {
            let name = k.key_text();
            match HookList::from_name(&name) {
                Some(list) => {
                    let tasks = self.task_list(v, &name);
                    hooks.set(list, tasks);
                }
                None => self.diags.error(
                    k.mark,
                    format!(
                        "Unknown hook list {name}{}",
                        did_you_mean(&name, HookList::ALL.iter().map(|h| h.name()))
                    ),
                ),
            }
        }
        hooks
    }

    fn task_list(&mut self, node: &Node, list: &str) -> Vec<TaskSpec> {
        let Some(items) = node.as_seq() else {
            if !matches!(node.kind, Kind::Null) {
                self.diags
                    .error(node.mark, format!("{list} should be a array"));
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let Some(pairs) = item.as_map() else {
                self.diags.error(
                    item.mark,
                    format!(
                        "each item of {list} should be a hash like `- shell: {{...}}`, got {}",
                        item.type_name()
                    ),
                );
                continue;
            };
            for (k, v) in pairs {
                if let Some(task) = self.task(k, v, list) {
                    out.push(task);
                }
            }
        }
        out
    }

    fn task(&mut self, key: &Node, body: &Node, list: &str) -> Option<TaskSpec> {
        let type_name = key.key_text();
        let Some(kind) = TaskKind::from_name(&type_name) else {
            self.diags.error(
                key.mark,
                format!(
                    "Cannot find a handler for Task type {type_name}{}",
                    did_you_mean(&type_name, TaskKind::ALL.iter().map(|k| k.name()))
                ),
            );
            return None;
        };
        let what = format!("{list} {type_name} task");
        let props = check_props(
            &mut self.diags,
            &Section {
                body,
                what: &what,
                fields: TaskProps::fields(kind),
                elsewhere: TASK_COMMON,
            },
            &|value| TaskProps::parse(kind, value).map(|_| ()),
        );
        if kind.historical() {
            self.diags.warning(
                key.mark,
                format!("the {kind} task type is historical and cannot run in this build"),
            );
        } else if !kind.available() && self.first_unavailable(&format!("task {kind}")) {
            self.diags.warning(
                key.mark,
                format!("the {kind} task type is not available in this build yet; runs reaching this task will fail it"),
            );
        }
        self.check_templates(body);
        if kind == TaskKind::Data
            && let Some(key) = body.get("key")
            && let Some(path) = key.as_str()
            && !path.contains("{{")
        {
            let stores = self.store_names.clone();
            check_data_path(&mut self.diags, key, path, stores.as_deref());
        }
        let mut common: Map<String, Value> = TASK_COMMON
            .iter()
            .filter_map(|name| Some((name.to_string(), body.get(name)?.to_value())))
            .collect();
        let description = common.remove("description").map(|d| match d {
            Value::String(s) => s,
            other => crate::template::stringify(&other),
        });
        let tries = match common.remove("tries") {
            None | Some(Value::Null) => 1,
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => u32::try_from(n).unwrap_or(u32::MAX),
                _ => {
                    self.diags.error(
                        body.get("tries").map_or(body.mark, |n| n.mark),
                        format!("tries of {what} should be an integer of at least 1"),
                    );
                    1
                }
            },
        };
        let mut seconds = |name: &str, default: f64| match common.remove(name) {
            None | Some(Value::Null) => default,
            Some(v) => match v.as_f64() {
                Some(f) if f >= 0.0 && f.is_finite() => f,
                _ => {
                    self.diags.error(
                        body.get(name).map_or(body.mark, |n| n.mark),
                        format!("{name} of {what} should be a number of seconds"),
                    );
                    default
                }
            },
        };
        let try_sleep = seconds("try_sleep", 10.0);
        let pre_sleep = seconds("pre_sleep", 0.0);
        let fail_ok = matches!(common.remove("fail_ok"), Some(Value::Bool(true)));
        Some(TaskSpec {
            kind,
            description,
            tries,
            try_sleep,
            pre_sleep,
            fail_ok,
            props,
            mark: key.mark,
        })
    }

    /// Checks every template in the string values under `node`.
    fn check_templates(&mut self, node: &Node) {
        match &node.kind {
            Kind::Str { text, .. } => self.check_template(node.mark, text),
            Kind::Seq(items) => {
                for item in items {
                    self.check_templates(item);
                }
            }
            Kind::Map(pairs) => {
                for (_, v) in pairs {
                    self.check_templates(v);
                }
            }
            Kind::Null | Kind::Bool(_) | Kind::Int(_) | Kind::Float(_) => {}
        }
    }

    /// Checks the templates of one string starting at `mark`; each problem points at its
    /// `{{` in the source when it can be found there, else at the string.
    fn check_template(&mut self, mark: Mark, text: &str) {
        let check_names = self.mode == Mode::Playbook;
        let mut cursor = self.source.offset(mark);
        let limit = cursor.map(|c| c + 2 * text.len() + 256);
        for (_, whole, group) in crate::template::groups(text) {
            let at = match (cursor, limit) {
                (Some(from), Some(limit)) => match self.source.find(whole, from, limit) {
                    Some(found) => {
                        cursor = Some(found + whole.len());
                        self.source.mark(found)
                    }
                    None => mark,
                },
                _ => mark,
            };
            let expr = match group {
                Err(e) => {
                    self.diags.error(at, e.to_string());
                    continue;
                }
                Ok(Group::Malformed(body)) => {
                    self.diags.error(
                        at,
                        format!(
                            "Invalid template expression `{body}`: expected inputs.NAME, nodes.SET, metadata.ITEM, previous_task.FIELD, date(FMT), utc_date(FMT), elapsed_time or uuid"
                        ),
                    );
                    continue;
                }
                Ok(Group::Unknown { root, body }) => {
                    let hint = did_you_mean(&root, crate::template::ROOTS.iter().copied());
                    if hint.is_empty() {
                        self.diags.warning(
                            at,
                            format!("`{whole}` is not a template expression ({root} is unknown) and is left as text"),
                        );
                    } else {
                        self.diags.error(
                            at,
                            format!(
                                "Unknown template expression `{body}`: {root} is unknown{hint}"
                            ),
                        );
                    }
                    continue;
                }
                Ok(Group::Expr(expr)) => expr,
            };
            match &expr {
                Expr::Input(name) if check_names && !self.input_names.contains(name) => {
                    self.diags.error(
                        at,
                        format!(
                            "Unknown input {name}{}",
                            did_you_mean(name, self.input_names.iter().map(String::as_str))
                        ),
                    );
                }
                Expr::Nodes(name) if check_names && !self.node_names.contains(name) => {
                    self.diags.error(
                        at,
                        format!(
                            "Unknown node set {name}{}",
                            did_you_mean(name, self.node_names.iter().map(String::as_str))
                        ),
                    );
                }
                Expr::Metadata(item) if !METADATA_ITEMS.contains(&item.as_str()) => {
                    self.diags.error(
                        at,
                        format!(
                            "Unknown playbook metadata {item}{}",
                            did_you_mean(item, METADATA_ITEMS.iter().copied())
                        ),
                    );
                }
                Expr::PreviousTask(field) if !PREVIOUS_TASK_FIELDS.contains(&field.as_str()) => {
                    self.diags.error(
                        at,
                        format!(
                            "Cannot retrieve {field} for the last task outcome{}",
                            did_you_mean(field, PREVIOUS_TASK_FIELDS.iter().copied())
                        ),
                    );
                }
                Expr::Input(_)
                | Expr::Nodes(_)
                | Expr::Metadata(_)
                | Expr::PreviousTask(_)
                | Expr::Date { .. }
                | Expr::ElapsedTime
                | Expr::Uuid => {}
            }
        }
    }
}

/// The playbook text, to point problems at places inside strings.
struct Source {
    text: String,
    /// Byte offset of the start of each line.
    lines: Vec<usize>,
}

impl Source {
    fn new(text: &str) -> Self {
        let mut lines = vec![0];
        lines.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            text: text.to_string(),
            lines,
        }
    }

    /// The byte offset of a position.
    fn offset(&self, mark: Mark) -> Option<usize> {
        let start = *self.lines.get(mark.line.checked_sub(1)?)?;
        let line = self.text.get(start..)?;
        let column = line
            .char_indices()
            .nth(mark.column.checked_sub(1)?)
            .map(|(i, _)| i)?;
        Some(start + column)
    }

    /// The first offset of `needle` in `from..limit`.
    fn find(&self, needle: &str, from: usize, limit: usize) -> Option<usize> {
        let end = limit.min(self.text.len());
        let hay = self.text.get(from..end)?;
        hay.find(needle).map(|i| from + i)
    }

    /// The position of a byte offset.
    fn mark(&self, offset: usize) -> Mark {
        let line = self.lines.partition_point(|&start| start <= offset);
        let start = self.lines[line.saturating_sub(1)];
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        Mark {
            line,
            column: column + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (Option<Playbook>, Vec<String>) {
        let (pb, diags) = load(text, Path::new("t.yaml"), Mode::Playbook);
        (pb, diags.items().iter().map(ToString::to_string).collect())
    }

    const HEAD: &str = "name: t\nversion: 1.0.0\nauthor: me\ndescription: d\nrun_as: choria=me\n";

    #[test]
    fn minimal_playbook_loads() {
        let (pb, diags) = check(&format!(
            "{HEAD}tasks:\n  - shell:\n      command: 'true'\n"
        ));
        assert!(diags.is_empty(), "{diags:?}");
        let pb = pb.expect("loads");
        assert_eq!(pb.tasks.len(), 1);
        assert_eq!(pb.tasks[0].tries, 1);
        assert_eq!(pb.tasks[0].try_sleep, 10.0);
    }

    #[test]
    fn misspellings_point_at_the_line() {
        let text = format!(
            "{HEAD}inputs:\n  cluster:\n    descripton: x\n    type: String\ntaks: []\ntasks:\n  - shel:\n      command: x\n  - shell:\n      comand: '{{{{{{ inputs.clustr }}}}}}'\n"
        );
        let (pb, diags) = check(&text);
        assert!(pb.is_none());
        let all = diags.join("\n");
        assert!(all.contains("t.yaml:8:5: warning: unknown property descripton in input cluster, it will be ignored (did you mean `description`?)"), "{all}");
        assert!(
            all.contains(
                "t.yaml:10:1: error: Invalid playbook data items taks found (did you mean `tasks`?)"
            ),
            "{all}"
        );
        assert!(all.contains("t.yaml:12:5: error: Cannot find a handler for Task type shel (did you mean `shell`?)"), "{all}");
        assert!(all.contains("did you mean `command`?"), "{all}");
        assert!(
            all.contains("Unknown input clustr (did you mean `cluster`?)"),
            "{all}"
        );
        assert!(all.contains("needs the property command"), "{all}");
    }

    #[test]
    fn every_missing_property_is_named() {
        let (pb, diags) = check(&format!(
            "{HEAD}tasks:\n  - slack:\n      color: good\n  - data:\n      value: 1\n"
        ));
        assert!(pb.is_none());
        let all = diags.join("\n");
        for name in ["token", "channel", "text"] {
            assert!(
                all.contains(&format!(
                    "t.yaml:8:7: error: tasks slack task needs the property {name}"
                )),
                "{all}"
            );
        }
        assert!(
            all.contains("t.yaml:10:7: error: tasks data task needs the property action"),
            "{all}"
        );
    }

    #[test]
    fn template_problems_point_inside_the_string() {
        let (_, diags) = check(&format!(
            "{HEAD}tasks:\n  - shell:\n      command: \"été {{{{{{ nodez.n }}}}}} {{{{ nodez.n }}}}\"\n  - shell: {{command: 'x {{{{ uuids }}}}'}}\n"
        ));
        let all = diags.join("\n");
        assert!(
            all.contains("t.yaml:8:21: error: Unknown template expression `nodez.n`"),
            "{all}"
        );
        assert!(
            all.contains("t.yaml:8:37: error: Unknown template expression `nodez.n`"),
            "{all}"
        );
        assert!(
            all.contains("t.yaml:9:25: error: Unknown template expression `uuids`: uuids is unknown (did you mean `uuid`?)"),
            "{all}"
        );
    }

    #[test]
    fn version_ranges() {
        for ok in [
            "~1.0.0",
            ">= 0.0.1",
            "~ 1.0.0",
            "1.x",
            "^1.2.3",
            ">=1.0 <2.0",
            "1.0 || 2.x",
        ] {
            assert!(VERSION_RANGE.is_match(ok), "{ok}");
        }
        for bad in ["latest", "~one", ""] {
            assert!(!VERSION_RANGE.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn fragments_accept_bare_task_lists() {
        let (pb, diags) = load(
            "- webhook:\n    uri: http://x\n",
            Path::new("f.yaml"),
            Mode::Fragment,
        );
        assert!(!diags.has_errors(), "{diags}");
        assert_eq!(pb.expect("loads").tasks.len(), 1);
    }
}
