//! Typed properties of data stores, node sets and tasks, used by the **spec** and **execute**
//! stages.
//!
//! Every kind has one serde struct with `deny_unknown_fields` ([`stores`], [`nodes`],
//! [`tasks`]); its fields use the value types of [`values`], which keep Choria's leniencies
//! (numbers read as text, seconds given as strings, comma-separated lists).
//!
//! * **spec**: [`check`] deserialises the literal values of the positioned tree with the kind's
//!   struct and reports every problem at its `file:line:column`. Unknown keys are errors with a
//!   suggestion (Choria ignored them, so a misspelt property silently did nothing). A problem inside a templated value (`{{ }}`) waits for run
//!   time, because the value's real type is only known after expansion.
//! * **execute**: the expanded map is deserialised with the same struct ([`parse`]); a problem
//!   then becomes a [`PropsError`] naming the declaration's position.

pub(crate) mod kinds;
pub(crate) mod nodes;
pub(crate) mod stores;
pub(crate) mod tasks;
pub(crate) mod values;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_json::{Map, Value};

use crate::diagnostic::{Diagnostics, did_you_mean};
use crate::yaml::{Kind, Mark, Node};

/// One step of the path to an offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// A mapping key.
    Key(String),
    /// A list index.
    Index(usize),
}

/// What is wrong with a property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProblemKind {
    /// A required property is absent.
    Missing(String),
    /// The value has the wrong type (`expected` is e.g. "a string").
    WrongType { expected: String },
    /// The value is not one of a closed set.
    UnknownValue {
        value: String,
        expected: Vec<String>,
    },
    /// Anything else (e.g. "should be a number of seconds, got string \"x\"").
    Invalid(String),
}

/// A property problem found by deserialising a property map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Path from the property map to the offending value (empty for a missing property).
    pub(crate) path: Vec<Segment>,
    /// The problem.
    pub(crate) kind: ProblemKind,
}

static INVALID_TYPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^invalid type: .*, expected (?P<exp>.*)$").expect("static regex is valid")
});
static INVALID_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^invalid value: (?P<got>.*), expected (?P<exp>.*)$")
        .expect("static regex is valid")
});
static MISSING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^missing field `(?P<f>[^`]*)`$").expect("static regex is valid"));
static UNKNOWN_VARIANT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^unknown variant `(?P<v>[^`]*)`, expected (?P<exp>.*)$")
        .expect("static regex is valid")
});
static QUOTED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"`([^`]*)`").expect("static regex is valid"));

impl ProblemKind {
    /// Classifies serde's message (the formats of `serde::de::Error`'s provided methods).
    fn from_message(message: &str) -> Self {
        if let Some(c) = MISSING.captures(message) {
            return Self::Missing(c["f"].to_string());
        }
        if let Some(c) = UNKNOWN_VARIANT.captures(message) {
            return Self::UnknownValue {
                value: c["v"].to_string(),
                expected: QUOTED
                    .captures_iter(&c["exp"])
                    .map(|q| q[1].to_string())
                    .collect(),
            };
        }
        if let Some(c) = INVALID_TYPE.captures(message) {
            return Self::WrongType {
                expected: c["exp"].to_string(),
            };
        }
        if let Some(c) = INVALID_VALUE.captures(message) {
            return Self::Invalid(format!("should be {}, got {}", &c["exp"], &c["got"]));
        }
        Self::Invalid(message.to_string())
    }
}

impl Problem {
    /// The first mapping key of the path: the top-level property concerned.
    fn property(&self) -> Option<&str> {
        match &self.kind {
            ProblemKind::Missing(name) if self.path.is_empty() => Some(name),
            ProblemKind::Missing(_)
            | ProblemKind::WrongType { .. }
            | ProblemKind::UnknownValue { .. }
            | ProblemKind::Invalid(_) => match self.path.first() {
                Some(Segment::Key(k)) => Some(k),
                Some(Segment::Index(_)) | None => None,
            },
        }
    }

    fn dotted(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Segment::Key(k) if out.is_empty() => out.push_str(k),
                Segment::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    /// The message for the property map of `what` (e.g. "tasks webhook task"); `got` names the
    /// type of the offending value.
    pub(crate) fn message(&self, what: &str, got: &str) -> String {
        let name = self.dotted();
        match &self.kind {
            ProblemKind::Missing(field) if name.is_empty() => {
                format!("{what} needs the property {field}")
            }
            ProblemKind::Missing(field) => format!("{what} property {name} needs {field}"),
            ProblemKind::WrongType { expected } => {
                format!("{what} property {name} should be {expected}, got {got}")
            }
            ProblemKind::UnknownValue { value, expected } => format!(
                "{what} property {name} should be {}, got {value}{}",
                expected.join(" or "),
                did_you_mean(value, expected.iter().map(String::as_str))
            ),
            ProblemKind::Invalid(message) => format!("{what} property {name} {message}"),
        }
    }
}

/// Deserialises a property map into its typed struct.
pub(crate) fn parse<T: DeserializeOwned>(value: &Value) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        Problem {
            path,
            kind: ProblemKind::from_message(&e.into_inner().to_string()),
        }
    })
}

/// The field names of a struct deriving `Deserialize` (asked of the derived code itself, so the
/// struct is the only list of a kind's properties).
pub(crate) fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// Splits a property map into the keys of `fields` and the rest.
pub(crate) fn split(value: &Value, fields: &[&str]) -> (Value, Value) {
    let mut mine = Map::new();
    let mut rest = Map::new();
    if let Value::Object(map) = value {
        for (k, v) in map {
            if fields.contains(&k.as_str()) {
                mine.insert(k.clone(), v.clone());
            } else {
                rest.insert(k.clone(), v.clone());
            }
        }
    }
    (Value::Object(mine), Value::Object(rest))
}

/// Drops null-valued properties: `key: ~` means the property is absent, as in Choria.
pub(crate) fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

/// The name of a JSON value's type, as [`Node::type_name`] names YAML types.
pub(crate) fn value_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "hash",
    }
}

/// The value at a problem's path (as deep as the path resolves).
fn value_at<'a>(value: &'a Value, path: &[Segment]) -> &'a Value {
    let mut here = value;
    for seg in path {
        let next = match seg {
            Segment::Key(k) => here.get(k),
            Segment::Index(i) => here.get(*i),
        };
        match next {
            Some(v) => here = v,
            None => break,
        }
    }
    here
}

/// The node at a problem's path (as deep as the path resolves) and whether a templated string
/// was crossed on the way, in which case only the expanded value can be judged.
fn node_at<'a>(node: &'a Node, path: &[Segment]) -> (&'a Node, bool) {
    let mut here = node;
    let mut templated = false;
    for seg in path {
        let next = match seg {
            Segment::Key(k) => here.get(k),
            Segment::Index(i) => here.as_seq().and_then(|s| s.get(*i)),
        };
        match next {
            Some(n) => here = n,
            None => break,
        }
        templated |= here.as_str().is_some_and(|s| s.contains("{{"));
    }
    (here, templated)
}

/// A property map in the spec stage: where it is and how to name it.
pub(crate) struct Section<'a> {
    /// The mapping node (a task body, a store or node set declaration).
    pub(crate) body: &'a Node,
    /// How messages name it, e.g. "tasks webhook task" or "data store mem".
    pub(crate) what: &'a str,
    /// Every key the kind's structs accept.
    pub(crate) fields: &'a [&'a str],
    /// Keys handled elsewhere (a task's common properties): accepted, but not returned.
    pub(crate) elsewhere: &'a [&'a str],
}

/// Checks a property map with the kind's `parse` function; returns the properties kept for run
/// time (known keys with non-null values, untemplated).
pub(crate) fn check(
    diags: &mut Diagnostics,
    section: &Section<'_>,
    parse: &dyn Fn(&Value) -> Result<(), Problem>,
) -> Map<String, Value> {
    let Section {
        body,
        what,
        fields,
        elsewhere,
    } = *section;
    let Some(pairs) = body.as_map() else {
        diags.error(
            body.mark,
            format!("{what} should be a hash, got {}", body.type_name()),
        );
        return Map::new();
    };
    let mut kept = Map::new();
    for (key, value) in pairs {
        let name = key.key_text();
        if elsewhere.contains(&name.as_str()) {
            continue;
        }
        if !fields.contains(&name.as_str()) {
            diags.error(
                key.mark,
                format!(
                    "unknown property {name} in {what}{}",
                    did_you_mean(&name, fields.iter().chain(elsewhere.iter()).copied())
                ),
            );
            continue;
        }
        if !matches!(value.kind, Kind::Null) {
            kept.insert(name, value.to_value());
        }
    }
    // serde stops at the first problem: report it, drop the property and try again, so that
    // every property is judged once.
    let mut trial = kept.clone();
    let mut dropped: Vec<String> = Vec::new();
    for _ in 0..=kept.len() + fields.len() {
        let Err(problem) = parse(&Value::Object(trial.clone())) else {
            break;
        };
        let Some(property) = problem.property().map(str::to_string) else {
            diags.error(body.mark, problem.message(what, body.type_name()));
            break;
        };
        if let ProblemKind::Missing(_) = problem.kind
            && problem.path.is_empty()
        {
            if !dropped.contains(&property) {
                diags.error(body.mark, problem.message(what, "nothing"));
            }
            // serde names one missing property at a time: stand a value in for this one so
            // that the next missing one is found too (stop when no stand-in fits).
            let Some(stand_in) = stand_in(parse, &trial, &property) else {
                break;
            };
            trial.insert(property.clone(), stand_in);
            dropped.push(property);
            continue;
        }
        let (node, templated) = node_at(body, &problem.path);
        if !templated {
            diags.error(node.mark, problem.message(what, node.type_name()));
        }
        trial.remove(&property);
        dropped.push(property);
    }
    kept
}

/// A value of some type that `parse` accepts for `property`, if one of a few simple ones does.
fn stand_in(
    parse: &dyn Fn(&Value) -> Result<(), Problem>,
    trial: &Map<String, Value>,
    property: &str,
) -> Option<Value> {
    let candidates = [
        Value::from("x"),
        Value::Array(Vec::new()),
        Value::Object(Map::new()),
        Value::from(0),
    ];
    candidates.into_iter().find(|candidate| {
        let mut attempt = trial.clone();
        attempt.insert(property.to_string(), candidate.clone());
        match parse(&Value::Object(attempt)) {
            Ok(()) => true,
            Err(p) => p.property() != Some(property),
        }
    })
}

/// A property error found at run time, after templating: it aborts the run and names the
/// position of the declaration whose properties are wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}:{}: {message}", file.display(), mark)]
pub struct PropsError {
    /// The playbook file.
    pub file: PathBuf,
    /// Where the store, node set or task is declared.
    pub mark: Mark,
    /// What is wrong.
    pub message: String,
    /// Which section the declaration is in.
    pub section: PropsSection,
}

/// The section holding a declaration with wrong properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropsSection {
    /// `data_stores`.
    Store,
    /// `nodes`.
    NodeSet,
    /// A task list.
    Task,
}

impl fmt::Display for PropsSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Store => "data store",
            Self::NodeSet => "node set",
            Self::Task => "task",
        })
    }
}

impl PropsError {
    /// An error with a message of its own (e.g. from a task constructor).
    pub(crate) fn new(
        file: &Path,
        mark: Mark,
        section: PropsSection,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_path_buf(),
            mark,
            message: message.into(),
            section,
        }
    }

    /// The error for a problem found in the expanded properties `value`.
    pub(crate) fn from_problem(
        file: &Path,
        mark: Mark,
        section: PropsSection,
        what: &str,
        value: &Value,
        problem: &Problem,
    ) -> Self {
        let got = value_type(value_at(value, &problem.path));
        Self::new(file, mark, section, problem.message(what, got))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: values::Text,
        count: Option<values::Int>,
    }

    #[test]
    fn fields_come_from_the_struct() {
        assert_eq!(fields_of::<Sample>(), &["name", "count"]);
    }

    #[test]
    fn problems_have_paths_and_kinds() {
        let err = parse::<Sample>(&serde_json::json!({"count": 1})).expect_err("missing");
        assert_eq!(err.kind, ProblemKind::Missing("name".into()));
        assert_eq!(err.message("t", "x"), "t needs the property name");
        let err = parse::<Sample>(&serde_json::json!({"name": [1], "count": 1})).expect_err("type");
        assert_eq!(err.path, vec![Segment::Key("name".into())]);
        assert_eq!(
            err.message("t", "array"),
            "t property name should be a string, got array"
        );
    }
}
