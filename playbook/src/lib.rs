//! Runs Choria YAML playbooks.
//!
//! The pipeline has five stages, each in its own modules:
//!
//! 1. **load** ([`yaml`]): YAML text becomes a positioned node tree (anchors, merge keys and
//!    Ruby-symbol keys resolved).
//! 2. **spec** ([`spec`], [`schema`], [`validator`]): the tree is checked against the DSL and
//!    becomes a typed [`spec::Playbook`]; every problem is reported with `file:line:column`.
//!    Store, node set and task properties are deserialised into one serde struct per kind
//!    ([`schema`]), literally here and again after templating in **execute**.
//! 3. **compile** ([`cli`], [`template`]): inputs become command-line flags, values are parsed
//!    and validated, templates are parsed.
//! 4. **execute** ([`runner`], [`store`], [`nodes`], [`puppetdb`], [`task`]): data stores, locks, node sets,
//!    hooks and tasks run in Choria's order with Choria's failure rules.
//! 5. **report** ([`report`], [`console`]): the YAML/JSON run report and the console summary.
//!
//! The `playbook` binary is a thin wrapper over [`run`].

pub mod choria;
pub mod cli;
pub(crate) mod console;
pub mod diagnostic;
pub mod log;
pub mod nodes;
pub mod puppetdb;
pub mod report;
pub mod runner;
pub(crate) mod schema;
pub mod spec;
pub mod store;
pub mod task;
pub mod template;
pub mod validator;
pub mod yaml;

mod error;

pub use cli::run;

/// Converts seconds from a playbook into a duration; negative, NaN and huge values saturate
/// instead of panicking.
pub(crate) fn seconds(secs: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(secs.abs()).unwrap_or(std::time::Duration::MAX)
}
pub use error::Error;
