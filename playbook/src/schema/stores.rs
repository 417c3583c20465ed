//! Properties of data stores (`data_stores:`): the common ones and one struct per kind.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::kinds::StoreKind;
use super::values::{Flag, Seconds, Text, TextMap, one_of};
use super::{Problem, fields_of, parse, split};

/// Properties every store accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreCommon {
    /// The kind (checked by the spec stage before these structs are used).
    #[serde(rename = "type")]
    #[allow(dead_code)]
    pub(crate) kind: Text,
    /// Lock timeout (the shell store's command timeout).
    pub(crate) timeout: Option<Seconds>,
    /// Lock session/lease TTL.
    pub(crate) ttl: Option<Seconds>,
}

/// `memory`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemoryProps {}

/// `environment`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvironmentProps {
    pub(crate) prefix: Option<Text>,
}

/// The format of a `file` store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileFormat {
    Json,
    Yaml,
}

impl<'de> Deserialize<'de> for FileFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_of(d, &["json", "yaml"], &[Self::Json, Self::Yaml], false)
    }
}

/// `file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileProps {
    pub(crate) file: Text,
    pub(crate) format: FileFormat,
    pub(crate) create: Option<Flag>,
}

/// `shell`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShellProps {
    pub(crate) command: Text,
    pub(crate) cwd: Option<Text>,
    pub(crate) environment: Option<TextMap>,
}

/// `consul`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsulProps {
    pub(crate) lock_delay: Option<Seconds>,
}

/// `etcd`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EtcdProps {
    pub(crate) url: Option<Text>,
    pub(crate) user: Option<Text>,
    pub(crate) password: Option<Text>,
}

/// The kind-specific properties.
#[derive(Debug, Clone)]
pub(crate) enum StoreConfig {
    Memory(MemoryProps),
    Environment(EnvironmentProps),
    File(FileProps),
    Shell(ShellProps),
    Consul(ConsulProps),
    Etcd(EtcdProps),
}

/// All properties of one store.
#[derive(Debug, Clone)]
pub(crate) struct StoreProps {
    pub(crate) common: StoreCommon,
    pub(crate) config: StoreConfig,
}

impl StoreProps {
    /// Deserialises a store's (expanded) property map.
    pub(crate) fn parse(kind: StoreKind, value: &Value) -> Result<Self, Problem> {
        let (common, own) = split(value, fields_of::<StoreCommon>());
        let common = parse(&common)?;
        let config = match kind {
            StoreKind::Memory => StoreConfig::Memory(parse(&own)?),
            StoreKind::Environment => StoreConfig::Environment(parse(&own)?),
            StoreKind::File => StoreConfig::File(parse(&own)?),
            StoreKind::Shell => StoreConfig::Shell(parse(&own)?),
            StoreKind::Consul => StoreConfig::Consul(parse(&own)?),
            StoreKind::Etcd => StoreConfig::Etcd(parse(&own)?),
        };
        Ok(Self { common, config })
    }

    /// Every property name a store of `kind` accepts.
    pub(crate) fn fields(kind: StoreKind) -> Vec<&'static str> {
        let own = match kind {
            StoreKind::Memory => fields_of::<MemoryProps>(),
            StoreKind::Environment => fields_of::<EnvironmentProps>(),
            StoreKind::File => fields_of::<FileProps>(),
            StoreKind::Shell => fields_of::<ShellProps>(),
            StoreKind::Consul => fields_of::<ConsulProps>(),
            StoreKind::Etcd => fields_of::<EtcdProps>(),
        };
        fields_of::<StoreCommon>()
            .iter()
            .chain(own)
            .copied()
            .collect()
    }
}
