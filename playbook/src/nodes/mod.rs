//! Node sets (`nodes:`), discovered in the **execute** stage after their section has been
//! templated.
//!
//! Each source kind implements [`NodeSource`]; the common options (`when_empty`, `limit`,
//! `at_least`, `empty_ok`) are applied by [`discover`] for all kinds. `mcollective` sets use
//! Choria broadcast discovery ([`choria`]); `pql` sets parse and validate but report that they
//! are not available in this build.

pub(crate) mod choria;
mod list;
mod shell;
mod terraform;
pub(crate) mod versions;
mod yaml_file;

use std::fmt;
use std::sync::LazyLock;

use async_trait::async_trait;
use regex::Regex;
use serde_json::{Map, Value};

use crate::schema::{Prop, Shape, opt, req};
use crate::store::{EnvOverlay, str_prop};

/// Every node set type the DSL knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeSetKind {
    /// Choria broadcast discovery.
    Mcollective,
    /// PuppetDB query (not available in this build yet).
    Pql,
    /// A group in a YAML file.
    Yaml,
    /// A script printing one node per line.
    Shell,
    /// A list output of a terraform state.
    Terraform,
    /// An inline list (`nodes: [..]`); an extension of this implementation.
    List,
}

impl NodeSetKind {
    /// All kinds, for suggestions.
    pub const ALL: [NodeSetKind; 6] = [
        Self::Mcollective,
        Self::Pql,
        Self::Yaml,
        Self::Shell,
        Self::Terraform,
        Self::List,
    ];

    /// The DSL name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mcollective => "mcollective",
            Self::Pql => "pql",
            Self::Yaml => "yaml",
            Self::Shell => "shell",
            Self::Terraform => "terraform",
            Self::List => "list",
        }
    }

    /// Parses a DSL name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this build can discover such a set.
    pub fn available(self) -> bool {
        match self {
            Self::Mcollective | Self::Yaml | Self::Shell | Self::Terraform | Self::List => true,
            Self::Pql => false,
        }
    }

    pub(crate) fn props(self) -> &'static [Prop] {
        match self {
            Self::Mcollective => {
                const P: &[Prop] = &[
                    opt("discovery_method", Shape::Str),
                    opt("agents", Shape::StrList),
                    opt("facts", Shape::StrList),
                    opt("classes", Shape::StrList),
                    opt("identities", Shape::StrList),
                    opt("compound", Shape::Str),
                    opt("discovery_timeout", Shape::Number),
                ];
                P
            }
            Self::Pql => {
                const P: &[Prop] = &[req("query", Shape::Str)];
                P
            }
            Self::Yaml => {
                const P: &[Prop] = &[req("source", Shape::Str), req("group", Shape::Str)];
                P
            }
            Self::Shell => {
                const P: &[Prop] = &[req("script", Shape::Str)];
                P
            }
            Self::Terraform => {
                const P: &[Prop] = &[
                    req("statefile", Shape::Str),
                    req("output", Shape::Str),
                    opt("terraform", Shape::Str),
                ];
                P
            }
            Self::List => {
                const P: &[Prop] = &[req("nodes", Shape::List)];
                P
            }
        }
    }
}

impl fmt::Display for NodeSetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Properties every node set accepts.
pub(crate) const COMMON_PROPS: &[Prop] = &[
    req("type", Shape::Str),
    opt("at_least", Shape::Int),
    opt("when_empty", Shape::Str),
    opt("limit", Shape::Int),
    opt("test", Shape::Bool),
    opt("uses", Shape::StrList),
    opt("empty_ok", Shape::Bool),
];

/// Node discovery failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeSetError {
    /// The kind parses but cannot run in this build.
    #[error("the {0} node set type is not available in this build yet")]
    Unavailable(NodeSetKind),
    /// Anything else, with Choria's wording where one exists.
    #[error("{0}")]
    Failed(String),
}

/// A source of node names.
#[async_trait]
pub trait NodeSource: Send + Sync {
    /// Discovers node names in source order (duplicates are removed by the caller).
    async fn discover(&self) -> Result<Vec<String>, NodeSetError>;
}

/// Builds the source for a templated node set.
pub(crate) fn source(
    kind: NodeSetKind,
    props: &Map<String, Value>,
    env: &EnvOverlay,
) -> Result<Box<dyn NodeSource>, NodeSetError> {
    match kind {
        NodeSetKind::Yaml => Ok(Box::new(yaml_file::YamlSource::new(props)?)),
        NodeSetKind::Shell => Ok(Box::new(shell::ShellSource::new(props, env.clone())?)),
        NodeSetKind::Terraform => Ok(Box::new(terraform::TerraformSource::new(props)?)),
        NodeSetKind::List => Ok(Box::new(list::ListSource::new(props)?)),
        NodeSetKind::Mcollective => Err(NodeSetError::Failed(
            "mcollective node sets are discovered through the Choria broker".to_string(),
        )),
        NodeSetKind::Pql => Err(NodeSetError::Unavailable(kind)),
    }
}

/// Discovers a set and applies the common options: empty check, `limit`, then `at_least`.
pub(crate) async fn discover(
    name: &str,
    kind: NodeSetKind,
    props: &Map<String, Value>,
    env: &EnvOverlay,
    broker: &crate::choria::Broker,
) -> Result<Vec<String>, NodeSetError> {
    let found = match kind {
        NodeSetKind::Mcollective => choria::discover(props, broker).await?,
        NodeSetKind::Pql
        | NodeSetKind::Yaml
        | NodeSetKind::Shell
        | NodeSetKind::Terraform
        | NodeSetKind::List => source(kind, props, env)?.discover().await?,
    };
    let mut nodes: Vec<String> = Vec::with_capacity(found.len());
    for n in found {
        if !nodes.contains(&n) {
            nodes.push(n);
        }
    }
    let empty_ok = matches!(props.get("empty_ok"), Some(Value::Bool(true)));
    if nodes.is_empty() && !empty_ok {
        return Err(NodeSetError::Failed(
            str_prop(props, "when_empty")
                .unwrap_or_else(|| format!("Did not discover any nodes for nodeset {name}")),
        ));
    }
    if let Some(limit) = int_prop(props, "limit")? {
        nodes.truncate(usize::try_from(limit).unwrap_or(0));
    }
    let at_least = if empty_ok {
        0
    } else {
        int_prop(props, "at_least")?.unwrap_or(1)
    };
    if (nodes.len() as i64) < at_least {
        return Err(NodeSetError::Failed(format!(
            "Node set {name} needs at least {at_least} nodes, got {}",
            nodes.len()
        )));
    }
    Ok(nodes)
}

fn int_prop(props: &Map<String, Value>, key: &str) -> Result<Option<i64>, NodeSetError> {
    match props.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| NodeSetError::Failed(format!("{key} should be an integer"))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| NodeSetError::Failed(format!("{key} should be an integer, got {s}"))),
        Some(other) => Err(NodeSetError::Failed(format!(
            "{key} should be an integer, got {other}"
        ))),
    }
}

static HOSTNAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^([a-zA-Z0-9]([a-zA-Z0-9_-]*[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9_-]*[a-zA-Z0-9])?$",
    )
    .expect("static regex is valid")
});

/// Checks that every entry is a valid host name.
pub(crate) fn check_hostnames(nodes: &[String]) -> Result<(), NodeSetError> {
    match nodes.iter().find(|n| !HOSTNAME.is_match(n)) {
        Some(bad) => Err(NodeSetError::Failed(format!(
            "{bad} is not a valid hostname"
        ))),
        None => Ok(()),
    }
}

/// Turns a JSON list of scalars into node names.
pub(crate) fn names_from(list: &[Value]) -> Vec<String> {
    list.iter().map(crate::template::stringify).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[tokio::test]
    async fn common_options() {
        let env = EnvOverlay::default();
        let broker = crate::choria::Broker::default();
        let props = map(json!({"nodes": ["a", "b", "a", "c"], "limit": 2}));
        let nodes = discover("s", NodeSetKind::List, &props, &env, &broker)
            .await
            .expect("ok");
        assert_eq!(nodes, vec!["a", "b"]);
        let props = map(json!({"nodes": ["a"], "at_least": 2}));
        let err = discover("s", NodeSetKind::List, &props, &env, &broker)
            .await
            .expect_err("few");
        assert_eq!(err.to_string(), "Node set s needs at least 2 nodes, got 1");
        let props = map(json!({"nodes": [], "when_empty": "nothing here"}));
        let err = discover("s", NodeSetKind::List, &props, &env, &broker)
            .await
            .expect_err("empty");
        assert_eq!(err.to_string(), "nothing here");
        let props = map(json!({"nodes": [], "empty_ok": true}));
        assert!(
            discover("s", NodeSetKind::List, &props, &env, &broker)
                .await
                .expect("ok")
                .is_empty()
        );
        let err = discover("s", NodeSetKind::Pql, &Map::new(), &env, &broker)
            .await
            .expect_err("x");
        assert!(err.to_string().contains("not available in this build yet"));
        let err = discover("s", NodeSetKind::Mcollective, &Map::new(), &env, &broker)
            .await
            .expect_err("x");
        assert!(err.to_string().contains("no Choria broker configured"));
    }

    #[test]
    fn hostnames() {
        assert!(check_hostnames(&["a.example.net".into(), "node-1".into()]).is_ok());
        assert!(check_hostnames(&["bad host".into()]).is_err());
    }
}
