//! Validating RPC inputs against an action's DDL: types, required inputs, maximum lengths,
//! validation patterns and defaults. A bad input is statuscode 4 with a message; nothing
//! reaches a shell.

use serde_json::{Map, Value};

/// Checks `data` against the `input` block of `action` in `ddl`; returns the inputs with
/// defaults filled in, or the message for a statuscode 4 reply.
pub(crate) fn validate(
    ddl: &Value,
    action: &str,
    data: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let Some(spec) = ddl["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["action"] == action))
    else {
        return Err(format!("Unknown action {action}"));
    };
    let inputs = spec["input"].as_object().cloned().unwrap_or_default();
    let mut out = Map::new();
    for key in data.keys() {
        if key != "process_results" && !inputs.contains_key(key) {
            return Err(format!("Unknown input {key} for action {action}"));
        }
    }
    for (name, rule) in &inputs {
        let optional = rule["optional"].as_bool().unwrap_or(false);
        let given = match data.get(name) {
            // An empty string for an optional input means "not given" (playbooks template
            // unset optional inputs to "").
            Some(Value::String(s)) if s.is_empty() && optional => None,
            other => other,
        };
        let value = match given {
            Some(Value::Null) | None => match rule.get("default") {
                Some(d) => d.clone(),
                None if optional => continue,
                None => return Err(format!("Input {name} is required")),
            },
            Some(v) => v.clone(),
        };
        let value = match rule["type"].as_str().unwrap_or("string") {
            "integer" => match &value {
                Value::Number(n) if n.is_i64() => value,
                Value::String(s) => match s.trim().parse::<i64>() {
                    Ok(n) => Value::from(n),
                    Err(_) => return Err(format!("Input {name} must be an integer, got {s:?}")),
                },
                other => return Err(format!("Input {name} must be an integer, got {other}")),
            },
            "boolean" => match &value {
                Value::Bool(_) => value,
                Value::String(s) if matches!(s.as_str(), "true" | "yes" | "1") => Value::Bool(true),
                Value::String(s) if matches!(s.as_str(), "false" | "no" | "0") => {
                    Value::Bool(false)
                }
                other => return Err(format!("Input {name} must be a boolean, got {other}")),
            },
            _ => match &value {
                Value::String(s) => {
                    if let Some(max) = rule["maxlength"].as_u64()
                        && s.chars().count() as u64 > max
                    {
                        return Err(format!("Input {name} is longer than {max} characters"));
                    }
                    if let Some(pattern) = rule["validation"].as_str() {
                        let re = regex::Regex::new(pattern)
                            .map_err(|e| format!("DDL pattern for {name} is invalid: {e}"))?;
                        if !re.is_match(s) {
                            return Err(format!("Input {name} does not match {pattern}"));
                        }
                    }
                    value
                }
                other => return Err(format!("Input {name} must be a string, got {other}")),
            },
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ddl() -> Value {
        serde_json::from_str(agents::ddl::EMULATOR).unwrap()
    }

    #[test]
    fn applies_defaults_and_checks_types_patterns_and_lengths() {
        let ok = validate(
            &ddl(),
            "start",
            json!({"servers": "a:4222,b:4222", "instances": "5"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(ok["instances"], 5);
        assert_eq!(ok["agents"], 1);
        assert_eq!(ok["tls"], false);
        assert!(!ok.contains_key("name"));
        let bad = |data: Value| validate(&ddl(), "start", data.as_object().unwrap()).unwrap_err();
        assert!(bad(json!({})).contains("servers is required"));
        assert!(bad(json!({"servers": "a:4222; rm -rf /"})).contains("does not match"));
        assert!(
            bad(json!({"servers": "a:1", "name": "$(reboot)"})).contains("name does not match")
        );
        assert!(bad(json!({"servers": "a:1", "instances": "many"})).contains("integer"));
        assert!(bad(json!({"servers": "a:1", "bogus": 1})).contains("Unknown input bogus"));
        let target = validate(
            &ddl(),
            "download",
            json!({"url": "http://x/y", "target": "../etc/passwd"})
                .as_object()
                .unwrap(),
        );
        assert!(target.unwrap_err().contains("target does not match"));
        let empty = validate(
            &ddl(),
            "download",
            json!({"url": "http://x/y", "target": "nats-server", "sha256": ""})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert!(!empty.contains_key("sha256"));
        assert!(
            validate(&ddl(), "explode", &Map::new())
                .unwrap_err()
                .contains("Unknown action")
        );
    }
}
