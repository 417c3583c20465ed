//! The facts and classes of emulated nodes, so that fact and class filters mean something.
//!
//! Facts are not stored per instance: one shared [`FactsTemplate`] renders them on demand from
//! the instance's index, identity and name. Placeholders in string values: `{index}`,
//! `{identity}`, `{name}`, `{shard}` (index modulo the shard count).
//!
//! Every node has these facts (a `--facts` file adds to or overrides them):
//!
//! | fact | value |
//! |---|---|
//! | `identity` | the instance identity, e.g. `emu1-7` |
//! | `emulator_name` | the `--name` prefix |
//! | `index` | the instance number (integer) |
//! | `shard` | index modulo `--shards` (integer) |
//! | `role` | `emulator` |
//! | `kernel` | `Linux` |

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// Renders facts and classes for any instance.
#[derive(Debug, Clone, PartialEq)]
pub struct FactsTemplate {
    extra: Map<String, Value>,
    classes: Vec<String>,
    shards: u32,
}

/// Who a fact is rendered for.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub index: u32,
    pub identity: &'a str,
    pub name: &'a str,
}

impl FactsTemplate {
    /// Facts without an extra facts file.
    pub fn plain(classes: Vec<String>, shards: u32) -> FactsTemplate {
        FactsTemplate {
            extra: Map::new(),
            classes,
            shards: shards.max(1),
        }
    }

    /// Loads the optional JSON facts file (an object); errors carry the path and reason.
    pub fn new(
        facts_file: Option<&Path>,
        classes: Vec<String>,
        shards: u32,
    ) -> Result<FactsTemplate, (PathBuf, String)> {
        let extra = match facts_file {
            None => Map::new(),
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| (path.to_owned(), e.to_string()))?;
                match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(map)) => map,
                    Ok(_) => {
                        return Err((path.to_owned(), "the file must hold a JSON object".into()));
                    }
                    Err(e) => return Err((path.to_owned(), e.to_string())),
                }
            }
        };
        Ok(FactsTemplate {
            extra,
            classes,
            shards: shards.max(1),
        })
    }

    fn builtin(&self, name: &str, s: Subject<'_>) -> Option<Value> {
        Some(match name {
            "identity" => json!(s.identity),
            "emulator_name" => json!(s.name),
            "index" => json!(s.index),
            "shard" => json!(s.index % self.shards),
            "role" => json!("emulator"),
            "kernel" => json!("Linux"),
            _ => return None,
        })
    }

    const BUILTIN: [&'static str; 6] = [
        "identity",
        "emulator_name",
        "index",
        "shard",
        "role",
        "kernel",
    ];

    /// One fact of `s`.
    pub fn fact(&self, name: &str, s: Subject<'_>) -> Option<Value> {
        match self.extra.get(name) {
            Some(v) => Some(self.render(v, s)),
            None => self.builtin(name, s),
        }
    }

    /// Every fact of `s`.
    pub fn facts(&self, s: Subject<'_>) -> Map<String, Value> {
        let mut out = Map::new();
        for name in Self::BUILTIN {
            if let Some(v) = self.builtin(name, s) {
                out.insert(name.to_owned(), v);
            }
        }
        for (k, v) in &self.extra {
            out.insert(k.clone(), self.render(v, s));
        }
        out
    }

    /// The classes of `s`.
    pub fn classes(&self, s: Subject<'_>) -> Vec<String> {
        self.classes.iter().map(|c| self.render_str(c, s)).collect()
    }

    fn render(&self, v: &Value, s: Subject<'_>) -> Value {
        match v {
            Value::String(text) => Value::String(self.render_str(text, s)),
            Value::Array(items) => Value::Array(items.iter().map(|i| self.render(i, s)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.render(v, s)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn render_str(&self, text: &str, s: Subject<'_>) -> String {
        if !text.contains('{') {
            return text.to_owned();
        }
        text.replace("{index}", &s.index.to_string())
            .replace("{identity}", s.identity)
            .replace("{name}", s.name)
            .replace("{shard}", &(s.index % self.shards).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_builtin_and_extra_facts() {
        let dir = std::env::temp_dir().join(format!("facts-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("facts.json");
        std::fs::write(
            &file,
            r#"{"country": "uk", "rack": "r{shard}", "nested": {"who": "{identity}"}}"#,
        )
        .unwrap();
        let t =
            FactsTemplate::new(Some(&file), vec!["shard_{shard}".into(), "web".into()], 4).unwrap();
        let s = Subject {
            index: 6,
            identity: "emu-6",
            name: "emu",
        };
        assert_eq!(t.fact("country", s), Some(json!("uk")));
        assert_eq!(t.fact("rack", s), Some(json!("r2")));
        assert_eq!(t.fact("shard", s), Some(json!(2)));
        assert_eq!(t.fact("nested", s), Some(json!({"who": "emu-6"})));
        assert_eq!(t.fact("missing", s), None);
        assert_eq!(t.classes(s), vec!["shard_2", "web"]);
        assert_eq!(t.facts(s).len(), 9);
        std::fs::write(&file, "[1]").unwrap();
        assert!(FactsTemplate::new(Some(&file), vec![], 1).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
