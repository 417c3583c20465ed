//! The `/debug/vars` document of an emulator fleet, as one serde type: the emulator produces
//! it, `emulator scrape` and the node daemon read it.
//!
//! The shape follows the original emulator's expvar output (`cmdline`, `memstats`, `config`)
//! with this project's counters under `emulator`. Readers accept documents with fields missing
//! (older or newer emulators) by defaulting them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole `/debug/vars` document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DebugVars {
    pub cmdline: Vec<String>,
    /// The identity prefix of the fleet.
    pub name: String,
    pub config: FleetConfig,
    pub memstats: MemStats,
    pub emulator: Counters,
}

/// What the fleet was started with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FleetConfig {
    pub instances: u64,
    pub agents: u64,
    pub collectives: u64,
    pub pid: u32,
    /// 1 when TLS is on (the original emulator's integer flag).
    #[serde(rename = "TLS")]
    pub tls: u8,
    #[serde(rename = "tlsVerify")]
    pub tls_verify: u8,
}

/// Memory of the emulator process, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemStats {
    /// Kept for readers of the original emulator's output; equals `RSS`.
    #[serde(rename = "Sys")]
    pub sys: u64,
    #[serde(rename = "RSS")]
    pub rss: u64,
    #[serde(rename = "PeakRSS")]
    pub peak_rss: u64,
    #[serde(rename = "VmSize")]
    pub vm_size: u64,
}

/// The fleet's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    pub instances: InstanceCounters,
    pub requests: RequestCounters,
    pub agents: BTreeMap<String, AgentCounters>,
    pub replies: ReplyCounters,
    pub bytes: ByteCounters,
    /// Connections per NATS server URL (configured and discovered servers).
    pub servers: BTreeMap<String, ServerCounters>,
}

/// The instances' connections to one NATS server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerCounters {
    /// Instances connected to this server now.
    pub connected: u64,
    /// Connections to this server that were re-established after a loss.
    pub reconnects: u64,
}

/// Connection state of the instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceCounters {
    pub configured: u64,
    pub started: u64,
    pub connected: u64,
    pub disconnected: u64,
    pub connect_failures: u64,
    pub disconnects: u64,
    pub reconnects: u64,
    pub slow_consumers: u64,
}

/// What happened to received messages. Every received message is counted exactly once in
/// `valid` or `invalid`; a valid request is then `expired`, `filtered` or `passed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestCounters {
    pub received: u64,
    pub valid: u64,
    pub invalid: u64,
    pub invalid_by_reason: BTreeMap<String, u64>,
    pub expired: u64,
    pub filtered: u64,
    pub passed: u64,
}

/// Requests one agent saw and answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentCounters {
    pub requests: u64,
    pub answered: u64,
}

/// Replies published.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplyCounters {
    /// Replies handed to the connection. A reply handed over just before the connection died
    /// is counted here although the broker never received it; see `docs/emulator.md`.
    pub sent: u64,
    pub publish_errors: u64,
}

/// Bytes of request and reply bodies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ByteCounters {
    #[serde(rename = "in")]
    pub bytes_in: u64,
    #[serde(rename = "out")]
    pub bytes_out: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_partial_documents_and_round_trips() {
        let v: DebugVars = serde_json::from_str(
            r#"{"config":{"pid":42,"instances":3,"TLS":1},"memstats":{"Sys":10},
                "emulator":{"instances":{"connected":2},
                  "servers":{"nats://127.0.0.1:4222":{"connected":2}}},"extra":true}"#,
        )
        .unwrap();
        assert_eq!(v.config.pid, 42);
        assert_eq!(v.config.tls, 1);
        assert_eq!(v.memstats.sys, 10);
        assert_eq!(v.emulator.instances.connected, 2);
        assert_eq!(v.emulator.servers["nats://127.0.0.1:4222"].connected, 2);
        assert_eq!(v.emulator.servers["nats://127.0.0.1:4222"].reconnects, 0);
        let text = serde_json::to_string(&v).unwrap();
        assert!(text.contains("\"tlsVerify\":0"));
        assert_eq!(serde_json::from_str::<DebugVars>(&text).unwrap(), v);
    }
}
