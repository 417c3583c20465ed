//! Properties of node sets (`nodes:`): the common ones and one struct per source kind.

use serde::Deserialize;
use serde_json::Value;

use super::kinds::NodeSetKind;
use super::values::{Flag, Int, Names, Seconds, Text};
use super::{Problem, fields_of, parse, split};

/// Properties every node set accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeSetCommon {
    /// The kind (checked by the spec stage before these structs are used).
    #[serde(rename = "type")]
    #[allow(dead_code)]
    pub(crate) kind: Text,
    pub(crate) at_least: Option<Int>,
    pub(crate) when_empty: Option<Text>,
    pub(crate) limit: Option<Int>,
    pub(crate) test: Option<Flag>,
    pub(crate) uses: Option<Names>,
    pub(crate) empty_ok: Option<Flag>,
}

/// `mcollective`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct McollectiveProps {
    pub(crate) discovery_method: Option<Text>,
    pub(crate) agents: Option<Names>,
    pub(crate) facts: Option<Names>,
    pub(crate) classes: Option<Names>,
    pub(crate) identities: Option<Names>,
    pub(crate) compound: Option<Text>,
    pub(crate) discovery_timeout: Option<Seconds>,
}

/// `pql`: a PuppetDB query returning certnames.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PqlProps {
    pub(crate) query: Text,
}

/// `yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct YamlProps {
    pub(crate) source: Text,
    pub(crate) group: Text,
}

/// `shell`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShellProps {
    pub(crate) script: Text,
}

/// `terraform`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TerraformProps {
    pub(crate) statefile: Text,
    pub(crate) output: Text,
    pub(crate) terraform: Option<Text>,
}

/// `list` (an extension).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListProps {
    pub(crate) nodes: Names,
}

/// The source-specific properties.
#[derive(Debug, Clone)]
pub(crate) enum NodeSetConfig {
    Mcollective(McollectiveProps),
    Pql(PqlProps),
    Yaml(YamlProps),
    Shell(ShellProps),
    Terraform(TerraformProps),
    List(ListProps),
}

/// All properties of one node set.
#[derive(Debug, Clone)]
pub(crate) struct NodeSetProps {
    pub(crate) common: NodeSetCommon,
    pub(crate) config: NodeSetConfig,
}

impl NodeSetProps {
    /// Deserialises a node set's (expanded) property map.
    pub(crate) fn parse(kind: NodeSetKind, value: &Value) -> Result<Self, Problem> {
        let (common, own) = split(value, fields_of::<NodeSetCommon>());
        let common = parse(&common)?;
        let config = match kind {
            NodeSetKind::Mcollective => NodeSetConfig::Mcollective(parse(&own)?),
            NodeSetKind::Pql => NodeSetConfig::Pql(parse(&own)?),
            NodeSetKind::Yaml => NodeSetConfig::Yaml(parse(&own)?),
            NodeSetKind::Shell => NodeSetConfig::Shell(parse(&own)?),
            NodeSetKind::Terraform => NodeSetConfig::Terraform(parse(&own)?),
            NodeSetKind::List => NodeSetConfig::List(parse(&own)?),
        };
        Ok(Self { common, config })
    }

    /// Every property name a node set of `kind` accepts.
    pub(crate) fn fields(kind: NodeSetKind) -> Vec<&'static str> {
        let own = match kind {
            NodeSetKind::Mcollective => fields_of::<McollectiveProps>(),
            NodeSetKind::Pql => fields_of::<PqlProps>(),
            NodeSetKind::Yaml => fields_of::<YamlProps>(),
            NodeSetKind::Shell => fields_of::<ShellProps>(),
            NodeSetKind::Terraform => fields_of::<TerraformProps>(),
            NodeSetKind::List => fields_of::<ListProps>(),
        };
        fields_of::<NodeSetCommon>()
            .iter()
            .chain(own)
            .copied()
            .collect()
    }
}
