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
    /// The private nats-servers the emulator started (none with `--server`).
    pub brokers: Vec<BrokerInfo>,
    /// With worker processes: each worker's share of the fleet and its own counters.
    pub workers: Vec<WorkerInfo>,
}

/// One private nats-server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrokerInfo {
    pub url: String,
    pub monitor_url: String,
    pub pid: u32,
}

/// One worker process of a supervised fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerInfo {
    pub pid: u32,
    /// Global index of its first instance, and how many it runs.
    pub first_instance: u64,
    pub instances: u64,
    /// Where its own `/debug/vars` is served.
    pub http: String,
    /// Times it was started again after dying.
    pub restarts: u32,
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
    /// Injected faults (`--faults`) by kind: `slow`, `fail`, `drop`, `flap`.
    pub faults: BTreeMap<String, FaultCounters>,
    /// Connections per NATS server URL (configured and discovered servers).
    pub servers: BTreeMap<String, ServerCounters>,
    /// Registration messages the instances published (`--registration`).
    pub registration: RegistrationCounters,
}

/// Registration requests published by the instances.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistrationCounters {
    /// Requests handed to the connection (as replies, one handed over just before the
    /// connection died counts although the broker never got it).
    pub published: u64,
    /// Bytes of the published NATS bodies.
    pub bytes: u64,
    /// Requests the connection refused (reconnect buffer full, over max_payload).
    pub publish_errors: u64,
}

/// One kind of injected fault: how many instances have it, and how many requests (for `flap`:
/// disconnections) it affected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultCounters {
    pub instances: u64,
    pub events: u64,
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

impl Counters {
    /// Adds `other` to these counters (a supervisor sums its workers).
    pub fn add(&mut self, other: &Counters) {
        let (a, b) = (&mut self.instances, &other.instances);
        a.configured += b.configured;
        a.started += b.started;
        a.connected += b.connected;
        a.disconnected += b.disconnected;
        a.connect_failures += b.connect_failures;
        a.disconnects += b.disconnects;
        a.reconnects += b.reconnects;
        a.slow_consumers += b.slow_consumers;
        let (a, b) = (&mut self.requests, &other.requests);
        a.received += b.received;
        a.valid += b.valid;
        a.invalid += b.invalid;
        for (reason, n) in &b.invalid_by_reason {
            *a.invalid_by_reason.entry(reason.clone()).or_default() += n;
        }
        a.expired += b.expired;
        a.filtered += b.filtered;
        a.passed += b.passed;
        for (agent, c) in &other.agents {
            let mine = self.agents.entry(agent.clone()).or_default();
            mine.requests += c.requests;
            mine.answered += c.answered;
        }
        self.replies.sent += other.replies.sent;
        self.replies.publish_errors += other.replies.publish_errors;
        self.bytes.bytes_in += other.bytes.bytes_in;
        self.bytes.bytes_out += other.bytes.bytes_out;
        for (kind, f) in &other.faults {
            let mine = self.faults.entry(kind.clone()).or_default();
            mine.instances += f.instances;
            mine.events += f.events;
        }
        for (url, c) in &other.servers {
            let mine = self.servers.entry(url.clone()).or_default();
            mine.connected += c.connected;
            mine.reconnects += c.reconnects;
        }
        self.registration.published += other.registration.published;
        self.registration.bytes += other.registration.bytes;
        self.registration.publish_errors += other.registration.publish_errors;
    }
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

    #[test]
    fn counters_add_up() {
        let mut one = Counters::default();
        one.instances.connected = 3;
        one.requests.invalid_by_reason.insert("not_json".into(), 2);
        one.agents.entry("rpcutil".into()).or_default().answered = 5;
        let mut sum = Counters::default();
        sum.add(&one);
        sum.add(&one);
        assert_eq!(sum.instances.connected, 6);
        assert_eq!(sum.requests.invalid_by_reason["not_json"], 4);
        assert_eq!(sum.agents["rpcutil"].answered, 10);
        one.registration.published = 7;
        sum.add(&one);
        assert_eq!(sum.registration.published, 7);
    }
}
