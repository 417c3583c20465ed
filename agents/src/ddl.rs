//! Agent descriptions (DDL), shipped as JSON files under `agents/ddl/` and compiled in.
//!
//! A DDL is typed: [`Ddl`] → [`Action`] → [`Input`]. The node daemon checks every request
//! against [`Action::validate`] before an action runs, and clients take the reply timeout of a
//! built-in agent from [`timeout`].

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `metadata` block of a DDL, as `rpcutil.agent_inventory` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
    pub description: String,
    pub author: String,
    pub license: String,
    pub version: String,
    pub url: String,
    pub timeout: u64,
}

/// One DDL document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ddl {
    pub metadata: Metadata,
    #[serde(default)]
    pub actions: Vec<Action>,
}

/// One action of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub action: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub display: String,
    /// Inputs by name, in name order.
    #[serde(default)]
    pub input: BTreeMap<String, Input>,
    /// Outputs by name, kept as described (only shown to people).
    #[serde(default)]
    pub output: BTreeMap<String, Value>,
}

/// The type of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Integer,
    Boolean,
    Float,
    Number,
    #[serde(alias = "array")]
    List,
    Hash,
    Any,
}

/// One input of an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    #[serde(default)]
    pub prompt: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "type")]
    pub kind: InputType,
    #[serde(default)]
    pub optional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxlength: Option<u64>,
}

/// Why a request's inputs do not fit an action; the text is the reply's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("Unknown input {input} for action {action}")]
    Unknown { action: String, input: String },
    #[error("Input {0} is required")]
    Missing(String),
    #[error("Input {input} must be {expected}, got {got}")]
    Type {
        input: String,
        expected: &'static str,
        got: String,
    },
    #[error("Input {input} is longer than {max} characters")]
    TooLong { input: String, max: u64 },
    #[error("Input {input} does not match {pattern}")]
    Pattern { input: String, pattern: String },
    #[error("DDL pattern for {input} is invalid: {reason}")]
    BadPattern { input: String, reason: String },
}

impl Ddl {
    /// The action called `name`.
    pub fn action(&self, name: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.action == name)
    }
}

impl Action {
    /// Checks `data` against this action's inputs and returns them with defaults filled in.
    ///
    /// An empty string for an optional input means "not given" (playbooks template unset
    /// optional inputs to `""`). Integers and Booleans given as strings are converted, as
    /// Choria's DDL validation does for CLI and playbook input.
    pub fn validate(&self, data: &Map<String, Value>) -> Result<Map<String, Value>, InputError> {
        for key in data.keys() {
            if key != "process_results" && !self.input.contains_key(key) {
                return Err(InputError::Unknown {
                    action: self.action.clone(),
                    input: key.clone(),
                });
            }
        }
        let mut out = Map::new();
        for (name, rule) in &self.input {
            let given = match data.get(name) {
                Some(Value::String(s)) if s.is_empty() && rule.optional => None,
                Some(Value::Null) => None,
                other => other,
            };
            let value = match (given, &rule.default) {
                (Some(v), _) => v.clone(),
                (None, Some(d)) => d.clone(),
                (None, None) if rule.optional => continue,
                (None, None) => return Err(InputError::Missing(name.clone())),
            };
            out.insert(name.clone(), rule.check(name, value)?);
        }
        Ok(out)
    }
}

impl Input {
    fn check(&self, name: &str, value: Value) -> Result<Value, InputError> {
        let wrong = |expected: &'static str, got: &Value| InputError::Type {
            input: name.to_owned(),
            expected,
            got: match got {
                Value::String(s) => format!("{s:?}"),
                other => other.to_string(),
            },
        };
        match self.kind {
            InputType::Integer => match &value {
                Value::Number(n) if n.is_i64() => Ok(value),
                Value::String(s) => s
                    .trim()
                    .parse::<i64>()
                    .map(Value::from)
                    .map_err(|_| wrong("an integer", &value)),
                other => Err(wrong("an integer", other)),
            },
            InputType::Float | InputType::Number => match &value {
                Value::Number(_) => Ok(value),
                Value::String(s) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| wrong("a number", &value)),
                other => Err(wrong("a number", other)),
            },
            InputType::Boolean => match &value {
                Value::Bool(_) => Ok(value),
                Value::String(s) if matches!(s.as_str(), "true" | "yes" | "1") => {
                    Ok(Value::Bool(true))
                }
                Value::String(s) if matches!(s.as_str(), "false" | "no" | "0") => {
                    Ok(Value::Bool(false))
                }
                other => Err(wrong("a boolean", other)),
            },
            InputType::String => match &value {
                Value::String(s) => {
                    self.check_text(name, s)?;
                    Ok(value)
                }
                other => Err(wrong("a string", other)),
            },
            InputType::List => match &value {
                Value::Array(_) => Ok(value),
                other => Err(wrong("a list", other)),
            },
            InputType::Hash => match &value {
                Value::Object(_) => Ok(value),
                other => Err(wrong("a hash", other)),
            },
            InputType::Any => Ok(value),
        }
    }

    fn check_text(&self, name: &str, text: &str) -> Result<(), InputError> {
        if let Some(max) = self.maxlength
            && text.chars().count() as u64 > max
        {
            return Err(InputError::TooLong {
                input: name.to_owned(),
                max,
            });
        }
        if let Some(pattern) = &self.validation {
            let re = regex::Regex::new(pattern).map_err(|e| InputError::BadPattern {
                input: name.to_owned(),
                reason: e.to_string(),
            })?;
            if !re.is_match(text) {
                return Err(InputError::Pattern {
                    input: name.to_owned(),
                    pattern: pattern.clone(),
                });
            }
        }
        Ok(())
    }
}

/// The raw DDL text of the `discovery` agent.
pub const DISCOVERY: &str = include_str!("../ddl/discovery.json");
/// The raw DDL text of the `rpcutil` agent.
pub const RPCUTIL: &str = include_str!("../ddl/rpcutil.json");
/// The raw DDL text shared by every `emulatedN` agent (its name reads `emulated0`).
pub const EMULATED: &str = include_str!("../ddl/emulated.json");
/// The raw DDL text of the `emulator` management agent.
pub const EMULATOR: &str = include_str!("../ddl/emulator.json");

/// Parses a DDL document.
pub fn parse(text: &str) -> Result<Ddl, serde_json::Error> {
    serde_json::from_str(text)
}

/// The four built-in DDLs, parsed once. The shipped files are checked by this crate's tests.
static BUILTIN: LazyLock<[Option<Ddl>; 4]> =
    LazyLock::new(|| [DISCOVERY, RPCUTIL, EMULATED, EMULATOR].map(|text| parse(text).ok()));

/// The DDL of a built-in agent: `discovery`, `rpcutil`, `emulatedN` or `emulator`.
pub fn builtin(agent: &str) -> Option<&'static Ddl> {
    let index = match agent {
        "discovery" => 0,
        "rpcutil" => 1,
        "emulator" => 3,
        a if a
            .strip_prefix("emulated")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            2
        }
        _ => return None,
    };
    BUILTIN[index].as_ref()
}

/// The `metadata.timeout` of a built-in agent's DDL (at least one second).
pub fn timeout(agent: &str) -> Option<Duration> {
    builtin(agent).map(|ddl| Duration::from_secs(ddl.metadata.timeout.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shipped_ddls_parse_and_name_their_agent() {
        assert_eq!(parse(DISCOVERY).unwrap().metadata.name, "discovery");
        let rpcutil = parse(RPCUTIL).unwrap();
        assert_eq!(rpcutil.metadata.name, "rpcutil");
        for needed in [
            "ping",
            "inventory",
            "agent_inventory",
            "collective_info",
            "get_fact",
            "daemon_stats",
        ] {
            assert!(
                rpcutil.action(needed).is_some(),
                "rpcutil DDL lacks {needed}"
            );
        }
        let emulated = parse(EMULATED).unwrap();
        assert_eq!(emulated.metadata.name, "emulated0");
        assert_eq!(emulated.actions[0].input["size"].default, Some(json!(20)));
        let manager = parse(EMULATOR).unwrap();
        assert_eq!(manager.metadata.name, "emulator");
        assert_eq!(manager.actions.len(), 9);
        for agent in ["discovery", "rpcutil", "emulated7", "emulator"] {
            assert!(builtin(agent).is_some(), "{agent}");
        }
        assert!(builtin("emulated").is_none());
        assert_eq!(timeout("rpcutil"), Some(Duration::from_secs(2)));
        assert_eq!(timeout("emulated3"), Some(Duration::from_secs(120)));
        assert_eq!(timeout("puppet"), None);
    }

    fn validate(action: &str, data: Value) -> Result<Map<String, Value>, InputError> {
        let ddl = builtin("emulator").unwrap();
        ddl.action(action)
            .unwrap()
            .validate(data.as_object().unwrap())
    }

    #[test]
    fn applies_defaults_and_checks_types_patterns_and_lengths() {
        let ok = validate(
            "start",
            json!({"servers": "a:4222,b:4222", "instances": "5"}),
        )
        .unwrap();
        assert_eq!(ok["instances"], 5);
        assert_eq!(ok["agents"], 1);
        assert_eq!(ok["tls"], false);
        assert!(!ok.contains_key("name"));
        let bad = |data: Value| validate("start", data).unwrap_err().to_string();
        assert!(bad(json!({})).contains("servers is required"));
        assert!(bad(json!({"servers": "a:4222; rm -rf /"})).contains("does not match"));
        assert!(
            bad(json!({"servers": "a:1", "name": "$(reboot)"})).contains("name does not match")
        );
        assert!(bad(json!({"servers": "a:1", "instances": "many"})).contains("integer"));
        assert!(bad(json!({"servers": "a:1", "bogus": 1})).contains("Unknown input bogus"));
        assert!(bad(json!({"servers": "a:1", "tls": "maybe"})).contains("boolean"));
        let target = validate(
            "download",
            json!({"url": "http://x/y", "target": "../etc/passwd"}),
        );
        assert!(
            target
                .unwrap_err()
                .to_string()
                .contains("target does not match")
        );
        let empty = validate(
            "download",
            json!({"url": "http://x/y", "target": "nats-server", "sha256": ""}),
        )
        .unwrap();
        assert!(!empty.contains_key("sha256"));
        assert!(builtin("emulator").unwrap().action("explode").is_none());
    }
}
