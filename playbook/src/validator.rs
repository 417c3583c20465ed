//! Input validators (`validation:`), parsed in the **spec** stage and applied in **execute** to
//! command-line values and to every value read from a data store (never to defaults).

use std::net::{Ipv4Addr, Ipv6Addr};

use regex::Regex;
use serde_json::Value;

use crate::template::stringify;

/// A parsed `validation:` property.
#[derive(Debug, Clone)]
pub enum Validator {
    /// `:shellsafe`: a string without `` ` ``, `$`, `;`, `|`, `&&`, `>` or `<`.
    Shellsafe,
    /// `:ipv4address`.
    Ipv4,
    /// `:ipv6address`.
    Ipv6,
    /// `:boolean` (checks the runtime type).
    Boolean,
    /// `:integer` (checks the runtime type).
    Integer,
    /// `:float` (checks the runtime type).
    Float,
    /// `:number` (checks the runtime type).
    Number,
    /// `:string` (checks the runtime type).
    String,
    /// `/regex/` or any other string: the text of the value must match (unanchored).
    Regex(Regex),
    /// A YAML list: the value must be one of the items.
    OneOf(Vec<Value>),
}

/// Names of the built-in `:name` validators.
pub(crate) const NAMES: &[&str] = &[
    "shellsafe",
    "ipv4address",
    "ipv6address",
    "boolean",
    "integer",
    "float",
    "number",
    "string",
];

impl Validator {
    /// Parses a validation spec given as a string.
    pub(crate) fn from_spec(spec: &str) -> Result<Self, String> {
        if let Some(name) = spec.strip_prefix(':') {
            return match name {
                "shellsafe" => Ok(Self::Shellsafe),
                "ipv4address" => Ok(Self::Ipv4),
                "ipv6address" => Ok(Self::Ipv6),
                "boolean" | "bool" => Ok(Self::Boolean),
                "integer" => Ok(Self::Integer),
                "float" => Ok(Self::Float),
                "number" => Ok(Self::Number),
                "string" => Ok(Self::String),
                other => Err(format!(
                    "unknown validator :{other}{}",
                    crate::diagnostic::did_you_mean(other, NAMES.iter().copied())
                )),
            };
        }
        let pattern = spec
            .strip_prefix('/')
            .and_then(|s| s.strip_suffix('/'))
            .unwrap_or(spec);
        Regex::new(pattern)
            .map(Self::Regex)
            .map_err(|e| format!("invalid validation regex {spec}: {e}"))
    }

    /// Checks a value, returning the validator's message on failure.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        match self {
            Self::Shellsafe => match value {
                Value::String(s) => {
                    for bad in ["`", "$", ";", "|", "&&", ">", "<"] {
                        if s.contains(bad) {
                            return Err(format!("Is not shellsafe, '{bad}' found"));
                        }
                    }
                    Ok(())
                }
                _ => Err("is not a string".to_string()),
            },
            Self::Ipv4 => stringify(value)
                .parse::<Ipv4Addr>()
                .map(|_| ())
                .map_err(|_| format!("{} is not an IPv4 address", stringify(value))),
            Self::Ipv6 => stringify(value)
                .parse::<Ipv6Addr>()
                .map(|_| ())
                .map_err(|_| format!("{} is not an IPv6 address", stringify(value))),
            Self::Boolean => match value {
                Value::Bool(_) => Ok(()),
                _ => Err(format!("value should be a boolean, got {}", type_of(value))),
            },
            Self::Integer => match value {
                Value::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
                _ => Err(format!(
                    "value should be an integer, got {}",
                    type_of(value)
                )),
            },
            Self::Float => match value {
                Value::Number(n) if n.is_f64() => Ok(()),
                _ => Err(format!("value should be a float, got {}", type_of(value))),
            },
            Self::Number => match value {
                Value::Number(_) => Ok(()),
                _ => Err(format!("value should be a number, got {}", type_of(value))),
            },
            Self::String => match value {
                Value::String(_) => Ok(()),
                _ => Err(format!("value should be a string, got {}", type_of(value))),
            },
            Self::Regex(re) => {
                let text = stringify(value);
                if re.is_match(&text) {
                    Ok(())
                } else {
                    Err(format!("value should match {}", re.as_str()))
                }
            }
            Self::OneOf(items) => {
                if items
                    .iter()
                    .any(|i| i == value || stringify(i) == stringify(value))
                {
                    Ok(())
                } else {
                    let list: Vec<String> = items.iter().map(stringify).collect();
                    Err(format!("value should be one of {}", list.join(", ")))
                }
            }
        }
    }
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "hash",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(spec: &str, v: Value) -> bool {
        Validator::from_spec(spec)
            .expect("valid spec")
            .check(&v)
            .is_ok()
    }

    #[test]
    fn shellsafe() {
        assert!(check(":shellsafe", json!("alpha")));
        for bad in ["a;b", "a|b", "a && b", "$(x)", "`x`", "a>b", "a<b"] {
            assert!(!check(":shellsafe", json!(bad)), "{bad}");
        }
    }

    #[test]
    fn ip_and_types() {
        assert!(check(":ipv4address", json!("10.0.0.1")));
        assert!(!check(":ipv4address", json!("::1")));
        assert!(check(":ipv6address", json!("::1")));
        assert!(check(":integer", json!(1)));
        assert!(!check(":integer", json!("1")));
        assert!(!check(":boolean", json!("true")));
        assert!(check(":string", json!("x")));
    }

    #[test]
    fn regexes_and_lists() {
        assert!(check("/^a+$/", json!("aaa")));
        assert!(!check("/^a+$/", json!("aab")));
        assert!(check("1", json!("x1y")));
        let v = Validator::OneOf(vec![json!("a"), json!("b")]);
        assert!(v.check(&json!("a")).is_ok());
        assert_eq!(
            v.check(&json!("c")).expect_err("fails"),
            "value should be one of a, b"
        );
    }

    #[test]
    fn unknown_validators_suggest() {
        let err = Validator::from_spec(":shelsafe").expect_err("unknown");
        assert!(err.contains("shellsafe"), "{err}");
    }
}
