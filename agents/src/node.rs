//! What a filter or an agent may ask of the node it runs on.

use std::borrow::Cow;

/// The view of one daemon that filters and agents evaluate against.
///
/// The emulator computes facts on demand from a shared template, so thousands of instances do not
/// each hold a copy of their facts.
pub trait Node {
    /// The daemon's identity (certname), e.g. `emu1-0`.
    fn identity(&self) -> &str;
    /// Agents this daemon serves, e.g. `discovery`, `rpcutil`, `emulated0`.
    fn agents(&self) -> Vec<Cow<'_, str>>;
    /// True when the daemon serves `agent`.
    fn has_agent(&self, agent: &str) -> bool;
    /// Configuration-management classes.
    fn classes(&self) -> Vec<Cow<'_, str>>;
    /// One fact's value as JSON, if the daemon has it.
    fn fact(&self, name: &str) -> Option<serde_json::Value>;
    /// Every fact.
    fn facts(&self) -> serde_json::Map<String, serde_json::Value>;
    /// Collectives this daemon is a member of; the first is the main collective.
    fn collectives(&self) -> Vec<Cow<'_, str>>;
}
