//! The closed sets of kinds a playbook declares: data stores, node sets and tasks. They live
//! with the property schemas (each kind has one properties struct) and are re-exported by the
//! runtime modules that implement them (`store`, `nodes`, `task`).

use std::fmt;

/// Every data store type the DSL knows. The match over this enum is exhaustive everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// In-process map (removed from Choria in 2018; kept here).
    Memory,
    /// Environment variables with an optional prefix.
    Environment,
    /// A JSON or YAML file holding a mapping.
    File,
    /// An external command called with `--read`, `--write` or `--delete`.
    Shell,
    /// Consul KV with session locks.
    Consul,
    /// etcd v3 with lease locks.
    Etcd,
}

impl StoreKind {
    /// All kinds, for suggestions.
    pub const ALL: [StoreKind; 6] = [
        Self::Memory,
        Self::Environment,
        Self::File,
        Self::Shell,
        Self::Consul,
        Self::Etcd,
    ];

    /// The DSL name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Environment => "environment",
            Self::File => "file",
            Self::Shell => "shell",
            Self::Consul => "consul",
            Self::Etcd => "etcd",
        }
    }

    /// Parses a DSL name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this build can actually use the store.
    pub fn available(self) -> bool {
        match self {
            Self::Memory
            | Self::Environment
            | Self::File
            | Self::Shell
            | Self::Consul
            | Self::Etcd => true,
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every node set type the DSL knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeSetKind {
    /// Choria broadcast discovery.
    Mcollective,
    /// A PuppetDB query (PQL).
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
            Self::Mcollective
            | Self::Pql
            | Self::Yaml
            | Self::Shell
            | Self::Terraform
            | Self::List => true,
        }
    }
}

impl fmt::Display for NodeSetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every task type the DSL knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskKind {
    /// A Choria RPC request (`rpc` is accepted as an alias).
    Mcollective,
    /// The historical assertion task (removed from Choria in 2017; not available).
    McollectiveAssert,
    /// The historical Bolt task (removed from Choria in 2018; not available).
    Bolt,
    /// A local shell command.
    Shell,
    /// An HTTP GET or POST.
    Webhook,
    /// A Slack chat message.
    Slack,
    /// A Graphite event.
    GraphiteEvent,
    /// Writes or deletes a data store key.
    Data,
}

impl TaskKind {
    /// All kinds, for suggestions.
    pub const ALL: [TaskKind; 8] = [
        Self::Mcollective,
        Self::McollectiveAssert,
        Self::Bolt,
        Self::Shell,
        Self::Webhook,
        Self::Slack,
        Self::GraphiteEvent,
        Self::Data,
    ];

    /// The DSL name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mcollective => "mcollective",
            Self::McollectiveAssert => "mcollective_assert",
            Self::Bolt => "bolt",
            Self::Shell => "shell",
            Self::Webhook => "webhook",
            Self::Slack => "slack",
            Self::GraphiteEvent => "graphite_event",
            Self::Data => "data",
        }
    }

    /// Parses a DSL name.
    pub fn from_name(name: &str) -> Option<Self> {
        if name == "rpc" {
            return Some(Self::Mcollective);
        }
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this build can run the task type.
    pub fn available(self) -> bool {
        match self {
            Self::Mcollective
            | Self::Shell
            | Self::Webhook
            | Self::Slack
            | Self::GraphiteEvent
            | Self::Data => true,
            Self::McollectiveAssert | Self::Bolt => false,
        }
    }

    /// Whether the type is historical (removed from Choria before YAML playbooks ended).
    pub fn historical(self) -> bool {
        match self {
            Self::McollectiveAssert | Self::Bolt => true,
            Self::Mcollective
            | Self::Shell
            | Self::Webhook
            | Self::Slack
            | Self::GraphiteEvent
            | Self::Data => false,
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
