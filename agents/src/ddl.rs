//! Agent descriptions (DDL), shipped as JSON files under `agents/ddl/` and compiled in.

use serde::{Deserialize, Serialize};

/// The `metadata` block of a DDL, as `rpcutil.agent_inventory` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
    pub description: String,
    pub author: String,
    pub license: String,
    pub version: String,
    pub url: String,
    pub timeout: u64,
}

/// One DDL document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ddl {
    pub metadata: Metadata,
    #[serde(default)]
    pub actions: Vec<serde_json::Value>,
}

/// The raw DDL text of the `discovery` agent.
pub const DISCOVERY: &str = include_str!("../ddl/discovery.json");
/// The raw DDL text of the `rpcutil` agent.
pub const RPCUTIL: &str = include_str!("../ddl/rpcutil.json");
/// The raw DDL text shared by every `emulatedN` agent (its name reads `emulated0`).
pub const EMULATED: &str = include_str!("../ddl/emulated.json");
/// The raw DDL text of the `emulator` management agent.
pub const EMULATOR: &str = include_str!("../ddl/emulator.json");

/// Parses a DDL document.
pub fn parse(text: &str) -> Result<Ddl, serde_json::Error> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_ddls_parse_and_name_their_agent() {
        assert_eq!(parse(DISCOVERY).unwrap().metadata.name, "discovery");
        let rpcutil = parse(RPCUTIL).unwrap();
        assert_eq!(rpcutil.metadata.name, "rpcutil");
        let actions: Vec<_> = rpcutil
            .actions
            .iter()
            .map(|a| a["action"].as_str().unwrap().to_owned())
            .collect();
        for needed in [
            "ping",
            "inventory",
            "agent_inventory",
            "collective_info",
            "get_fact",
            "daemon_stats",
        ] {
            assert!(
                actions.iter().any(|a| a == needed),
                "rpcutil DDL lacks {needed}"
            );
        }
        let emulated = parse(EMULATED).unwrap();
        assert_eq!(emulated.metadata.name, "emulated0");
        assert_eq!(emulated.actions[0]["input"]["size"]["default"], 20);
        let manager = parse(EMULATOR).unwrap();
        assert_eq!(manager.metadata.name, "emulator");
        assert_eq!(manager.actions.len(), 6);
    }
}
