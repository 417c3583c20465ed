//! The broker's counters, the `/debug/vars` document and the `/metrics` text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::transform::Reject;

/// A stage of the broker's two pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Requests received on the federation network, before transformation.
    RequestTransform,
    /// Transformed requests waiting to be published on the collective network.
    CollectiveEgest,
    /// Replies received on the collective network, before transformation.
    ReplyTransform,
    /// Transformed replies waiting to be published on the federation network.
    FederationEgest,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::RequestTransform,
        Stage::CollectiveEgest,
        Stage::ReplyTransform,
        Stage::FederationEgest,
    ];

    /// Stable snake_case name used in counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::RequestTransform => "request_transform",
            Stage::CollectiveEgest => "collective_egest",
            Stage::ReplyTransform => "reply_transform",
            Stage::FederationEgest => "federation_egest",
        }
    }

    fn index(self) -> usize {
        match self {
            Stage::RequestTransform => 0,
            Stage::CollectiveEgest => 1,
            Stage::ReplyTransform => 2,
            Stage::FederationEgest => 3,
        }
    }
}

/// The two networks the broker connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Federation,
    Collective,
}

impl Network {
    pub const ALL: [Network; 2] = [Network::Federation, Network::Collective];

    pub fn as_str(self) -> &'static str {
        match self {
            Network::Federation => "federation",
            Network::Collective => "collective",
        }
    }

    fn index(self) -> usize {
        match self {
            Network::Federation => 0,
            Network::Collective => 1,
        }
    }
}

/// Which transformer refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Reply,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Request, Direction::Reply];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Reply => "reply",
        }
    }

    fn index(self) -> usize {
        match self {
            Direction::Request => 0,
            Direction::Reply => 1,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Gauge(AtomicI64);

impl Gauge {
    pub(crate) fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Live counters, shared by every worker.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Requests received on the federation network.
    pub(crate) received: Counter,
    /// Request copies published on the collective network (one per target).
    pub(crate) forwarded: Counter,
    /// Replies received on the collective network.
    pub(crate) replies_received: Counter,
    /// Replies published to clients on the federation network.
    pub(crate) replies: Counter,
    rejected: [[Counter; Reject::ALL.len()]; 2],
    publish_errors: [Counter; 2],
    slow_consumers: [Counter; 2],
    reconnects: [Counter; 2],
    depth: [Gauge; 4],
    connected: [Gauge; 2],
}

impl Stats {
    pub(crate) fn reject(&self, direction: Direction, reason: Reject) {
        self.rejected[direction.index()][reason.index()].inc();
    }
    pub(crate) fn publish_error(&self, network: Network) {
        self.publish_errors[network.index()].inc();
    }
    pub(crate) fn slow_consumer(&self, network: Network) {
        self.slow_consumers[network.index()].inc();
    }
    pub(crate) fn reconnect(&self, network: Network) {
        self.reconnects[network.index()].inc();
    }
    pub(crate) fn connected(&self, network: Network, delta: i64) {
        self.connected[network.index()].add(delta);
    }
    pub(crate) fn depth(&self, stage: Stage, delta: i64) {
        self.depth[stage.index()].add(delta);
    }

    /// A consistent-enough copy for reporting.
    pub(crate) fn snapshot(&self) -> Counters {
        let per_network = |c: &[Counter; 2]| {
            Network::ALL
                .iter()
                .map(|n| (n.as_str().to_owned(), c[n.index()].get()))
                .collect()
        };
        Counters {
            received: self.received.get(),
            forwarded: self.forwarded.get(),
            replies_received: self.replies_received.get(),
            replies: self.replies.get(),
            rejected: Direction::ALL
                .iter()
                .map(|d| {
                    let reasons = Reject::ALL
                        .iter()
                        .map(|r| {
                            (
                                r.as_str().to_owned(),
                                self.rejected[d.index()][r.index()].get(),
                            )
                        })
                        .collect();
                    (d.as_str().to_owned(), reasons)
                })
                .collect(),
            publish_errors: per_network(&self.publish_errors),
            slow_consumers: per_network(&self.slow_consumers),
            reconnects: per_network(&self.reconnects),
            connected: Network::ALL
                .iter()
                .map(|n| {
                    (
                        n.as_str().to_owned(),
                        self.connected[n.index()].get().max(0) as u64,
                    )
                })
                .collect(),
            queue_depth: Stage::ALL
                .iter()
                .map(|s| {
                    (
                        s.as_str().to_owned(),
                        self.depth[s.index()].get().max(0) as u64,
                    )
                })
                .collect(),
        }
    }
}

/// The `/debug/vars` document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DebugVars {
    pub cmdline: Vec<String>,
    pub config: Settings,
    pub federation: Counters,
}

/// What the broker runs with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub cluster: String,
    pub identity: String,
    pub workers: u64,
    pub federation_servers: Vec<String>,
    pub collective_servers: Vec<String>,
    pub pid: u32,
}

/// The broker's counters. Maps have every key (stage, network, reason) from the start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Requests received on the federation network.
    pub received: u64,
    /// Request copies published on the collective network, one per target.
    pub forwarded: u64,
    /// Replies received on the collective network.
    pub replies_received: u64,
    /// Replies published on the federation network to clients' reply subjects.
    pub replies: u64,
    /// `request`/`reply` → reason → count.
    pub rejected: BTreeMap<String, BTreeMap<String, u64>>,
    /// Network published to → count.
    pub publish_errors: BTreeMap<String, u64>,
    pub slow_consumers: BTreeMap<String, u64>,
    pub reconnects: BTreeMap<String, u64>,
    /// Connections currently up, per network.
    pub connected: BTreeMap<String, u64>,
    /// Messages waiting at each stage.
    pub queue_depth: BTreeMap<String, u64>,
}

impl Counters {
    /// Every rejected message, both directions.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().flat_map(|m| m.values()).sum()
    }

    /// Rejections of one reason in one direction.
    pub fn rejected(&self, direction: Direction, reason: Reject) -> u64 {
        self.rejected
            .get(direction.as_str())
            .and_then(|m| m.get(reason.as_str()))
            .copied()
            .unwrap_or(0)
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text exposition of `counters`; every series carries `cluster`.
pub fn to_prometheus(counters: &Counters, cluster: &str) -> String {
    let cluster = escape(cluster);
    let mut out = String::new();
    let mut simple = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{{cluster=\"{cluster}\"}} {value}");
    };
    simple(
        "federation_broker_received_total",
        "counter",
        "Requests received on the federation network.",
        counters.received,
    );
    simple(
        "federation_broker_forwarded_total",
        "counter",
        "Request copies published on the collective network, one per target.",
        counters.forwarded,
    );
    simple(
        "federation_broker_replies_received_total",
        "counter",
        "Replies received on the collective network.",
        counters.replies_received,
    );
    simple(
        "federation_broker_replies_total",
        "counter",
        "Replies published to clients on the federation network.",
        counters.replies,
    );
    let _ = writeln!(
        out,
        "# HELP federation_broker_rejected_total Messages refused by a transformer, by direction and reason."
    );
    let _ = writeln!(out, "# TYPE federation_broker_rejected_total counter");
    for (direction, reasons) in &counters.rejected {
        for (reason, n) in reasons {
            let _ = writeln!(
                out,
                "federation_broker_rejected_total{{cluster=\"{cluster}\",direction=\"{direction}\",reason=\"{reason}\"}} {n}"
            );
        }
    }
    let per_network = [
        (
            "federation_broker_publish_errors_total",
            "Publishes that failed, by the network published to.",
            &counters.publish_errors,
        ),
        (
            "federation_broker_slow_consumers_total",
            "Slow-consumer events (messages dropped by the client library), by network.",
            &counters.slow_consumers,
        ),
        (
            "federation_broker_reconnects_total",
            "Reconnections after a lost connection, by network.",
            &counters.reconnects,
        ),
    ];
    for (name, help, map) in per_network {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (network, n) in map {
            let _ = writeln!(
                out,
                "{name}{{cluster=\"{cluster}\",network=\"{network}\"}} {n}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP federation_broker_connected Connections currently up, by network."
    );
    let _ = writeln!(out, "# TYPE federation_broker_connected gauge");
    for (network, n) in &counters.connected {
        let _ = writeln!(
            out,
            "federation_broker_connected{{cluster=\"{cluster}\",network=\"{network}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP federation_broker_queue_depth Messages waiting at each stage."
    );
    let _ = writeln!(out, "# TYPE federation_broker_queue_depth gauge");
    for (stage, n) in &counters.queue_depth {
        let _ = writeln!(
            out,
            "federation_broker_queue_depth{{cluster=\"{cluster}\",stage=\"{stage}\"}} {n}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_is_present_from_the_start() {
        let stats = Stats::default();
        stats.reject(Direction::Reply, Reject::NoReplyTo);
        stats.depth(Stage::CollectiveEgest, 3);
        let c = stats.snapshot();
        assert_eq!(c.rejected(Direction::Reply, Reject::NoReplyTo), 1);
        assert_eq!(c.rejected_total(), 1);
        let text = to_prometheus(&c, "c\"1");
        assert!(text.contains(
            "federation_broker_rejected_total{cluster=\"c\\\"1\",direction=\"reply\",reason=\"no_reply_to\"} 1\n"
        ));
        assert!(text.contains(
            "federation_broker_rejected_total{cluster=\"c\\\"1\",direction=\"request\",reason=\"not_json\"} 0\n"
        ));
        assert!(text.contains(
            "federation_broker_queue_depth{cluster=\"c\\\"1\",stage=\"collective_egest\"} 3\n"
        ));
        let series = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(series, 4 + 2 * Reject::ALL.len() + 3 * 2 + 2 + 4);
    }
}
