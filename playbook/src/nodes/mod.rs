//! Node sets (`nodes:`), discovered in the **execute** stage after their section has been
//! templated.
//!
//! Each source kind implements [`NodeSource`]; the common options (`when_empty`, `limit`,
//! `at_least`, `empty_ok`) are applied by [`discover`] for all kinds. `mcollective` sets use
//! Choria broadcast discovery ([`choria`]); `pql` sets query PuppetDB ([`pql`]).

pub(crate) mod choria;
mod list;
mod pql;
mod shell;
mod terraform;
pub(crate) mod versions;
mod yaml_file;

pub use crate::schema::kinds::NodeSetKind;
use std::sync::LazyLock;

use async_trait::async_trait;
use regex::Regex;
use serde_json::Value;

use crate::schema::nodes::{NodeSetConfig, NodeSetProps};
use crate::schema::values::{Int, flag, text};
use crate::store::EnvOverlay;

/// Node discovery failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeSetError {
    /// A `pql` query failed.
    #[error(transparent)]
    PuppetDb(#[from] crate::puppetdb::PuppetDbError),
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
    config: &NodeSetConfig,
    env: &EnvOverlay,
) -> Result<Box<dyn NodeSource>, NodeSetError> {
    match config {
        NodeSetConfig::Yaml(p) => Ok(Box::new(yaml_file::YamlSource::new(p)?)),
        NodeSetConfig::Shell(p) => Ok(Box::new(shell::ShellSource::new(p, env.clone()))),
        NodeSetConfig::Terraform(p) => Ok(Box::new(terraform::TerraformSource::new(p)?)),
        NodeSetConfig::List(p) => Ok(Box::new(list::ListSource::new(p))),
        NodeSetConfig::Mcollective(_) => Err(NodeSetError::Failed(
            "mcollective node sets are discovered through the Choria broker".to_string(),
        )),
        NodeSetConfig::Pql(_) => Err(NodeSetError::Failed(
            "pql node sets are discovered through PuppetDB".to_string(),
        )),
    }
}

/// What discovery may reach beyond the node set's own properties.
pub(crate) struct Sources<'a> {
    /// Environment changes made by data stores (for `shell` sets).
    pub(crate) env: &'a EnvOverlay,
    /// The Choria broker (for `mcollective` sets).
    pub(crate) broker: &'a crate::choria::Broker,
    /// PuppetDB (for `pql` sets).
    pub(crate) puppetdb: &'a crate::puppetdb::PuppetDb,
}

/// Discovers a set and applies the common options: empty check, `limit`, then `at_least`.
pub(crate) async fn discover(
    name: &str,
    props: &NodeSetProps,
    sources: &Sources<'_>,
) -> Result<Vec<String>, NodeSetError> {
    let found = match &props.config {
        NodeSetConfig::Mcollective(p) => choria::discover(p, sources.broker).await?,
        NodeSetConfig::Pql(p) => pql::discover(p, sources.puppetdb).await?,
        config @ (NodeSetConfig::Yaml(_)
        | NodeSetConfig::Shell(_)
        | NodeSetConfig::Terraform(_)
        | NodeSetConfig::List(_)) => source(config, sources.env)?.discover().await?,
    };
    let mut nodes: Vec<String> = Vec::with_capacity(found.len());
    for n in found {
        if !nodes.contains(&n) {
            nodes.push(n);
        }
    }
    let common = &props.common;
    let empty_ok = flag(common.empty_ok, false);
    if nodes.is_empty() && !empty_ok {
        return Err(NodeSetError::Failed(
            text(&common.when_empty)
                .unwrap_or_else(|| format!("Did not discover any nodes for nodeset {name}")),
        ));
    }
    if let Some(Int(limit)) = common.limit {
        nodes.truncate(usize::try_from(limit).unwrap_or(0));
    }
    let at_least = if empty_ok {
        0
    } else {
        common.at_least.map_or(1, |n| n.0)
    };
    if (nodes.len() as i64) < at_least {
        return Err(NodeSetError::Failed(format!(
            "Node set {name} needs at least {at_least} nodes, got {}",
            nodes.len()
        )));
    }
    Ok(nodes)
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

    fn props(kind: NodeSetKind, v: Value) -> NodeSetProps {
        NodeSetProps::parse(kind, &v).expect("valid properties")
    }

    #[tokio::test]
    async fn common_options() {
        let env = EnvOverlay::default();
        let broker = crate::choria::Broker::default();
        // A closed port: nothing listens on port 1 of the loopback address.
        let puppetdb = crate::puppetdb::PuppetDb::new(crate::puppetdb::PuppetDbSettings {
            url: "http://127.0.0.1:1".to_string(),
            ..Default::default()
        });
        let sources = Sources {
            env: &env,
            broker: &broker,
            puppetdb: &puppetdb,
        };
        let list = |v: Value| props(NodeSetKind::List, v);
        let p = list(json!({"type": "list", "nodes": ["a", "b", "a", "c"], "limit": 2}));
        let nodes = discover("s", &p, &sources).await.expect("ok");
        assert_eq!(nodes, vec!["a", "b"]);
        let p = list(json!({"type": "list", "nodes": ["a"], "at_least": 2}));
        let err = discover("s", &p, &sources).await.expect_err("few");
        assert_eq!(err.to_string(), "Node set s needs at least 2 nodes, got 1");
        let p = list(json!({"type": "list", "nodes": [], "when_empty": "nothing here"}));
        let err = discover("s", &p, &sources).await.expect_err("empty");
        assert_eq!(err.to_string(), "nothing here");
        let p = list(json!({"type": "list", "nodes": [], "empty_ok": true}));
        assert!(discover("s", &p, &sources).await.expect("ok").is_empty());
        let p = props(
            NodeSetKind::Pql,
            json!({"type": "pql", "query": "nodes {}"}),
        );
        let err = discover("s", &p, &sources).await.expect_err("x");
        assert!(
            err.to_string()
                .starts_with("cannot reach PuppetDB at http://127.0.0.1:1 (from the default) for pql query \"nodes {}\": "),
            "{err}"
        );
        let p = props(NodeSetKind::Pql, json!({"type": "pql", "query": " "}));
        let err = discover("s", &p, &sources).await.expect_err("x");
        assert_eq!(
            err.to_string(),
            "the query of a pql node set must not be empty"
        );
        let p = props(NodeSetKind::Mcollective, json!({"type": "mcollective"}));
        let err = discover("s", &p, &sources).await.expect_err("x");
        assert!(err.to_string().contains("no Choria broker configured"));
    }

    #[test]
    fn hostnames() {
        assert!(check_hostnames(&["a.example.net".into(), "node-1".into()]).is_ok());
        assert!(check_hostnames(&["bad host".into()]).is_err());
    }
}
