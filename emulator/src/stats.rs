//! Fleet-wide counters, updated with relaxed atomics from every instance and rendered as
//! `/debug/vars` JSON and Prometheus text.
//!
//! Relaxed ordering is enough: each counter is independent, readers only need eventually
//! consistent totals, and no other memory is published through them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use agents::debug_vars::{
    self, ByteCounters, Counters, InstanceCounters, ReplyCounters, RequestCounters,
};
use agents::{AgentId, Invalid};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// Counters of one agent.
#[derive(Debug, Default)]
pub struct AgentCounters {
    /// Requests for this agent that passed decoding, TTL and filter checks.
    pub requests: Counter,
    /// Requests answered with a reply.
    pub answered: Counter,
}

/// The fleet's connections to one NATS server.
#[derive(Debug, Default)]
pub struct ServerCounters {
    pub connected: Gauge,
    pub reconnects: Counter,
}

/// Every counter of the fleet.
#[derive(Debug)]
pub struct Stats {
    pub instances_configured: u64,
    pub instances_connected: Gauge,
    pub instances_started: Counter,
    pub connect_failures: Counter,
    pub disconnects: Counter,
    pub reconnects: Counter,
    pub slow_consumers: Counter,
    pub messages_received: Counter,
    pub bytes_in: Counter,
    pub requests_valid: Counter,
    pub requests_filtered: Counter,
    pub requests_expired: Counter,
    pub requests_passed: Counter,
    invalid: [Counter; Invalid::ALL.len()],
    agents: Vec<(String, AgentCounters)>,
    pub replies_sent: Counter,
    pub publish_errors: Counter,
    pub bytes_out: Counter,
    /// Registration requests handed to the connections, their bytes, and refusals.
    pub registrations_published: Counter,
    pub registration_bytes: Counter,
    pub registration_errors: Counter,
    servers: Mutex<BTreeMap<String, Arc<ServerCounters>>>,
}

impl Stats {
    /// Counters for a fleet of `instances` daemons hosting `emulated` emulated agents.
    pub fn new(instances: u32, emulated: u32) -> Stats {
        Stats {
            instances_configured: u64::from(instances),
            instances_connected: Gauge::default(),
            instances_started: Counter::default(),
            connect_failures: Counter::default(),
            disconnects: Counter::default(),
            reconnects: Counter::default(),
            slow_consumers: Counter::default(),
            messages_received: Counter::default(),
            bytes_in: Counter::default(),
            requests_valid: Counter::default(),
            requests_filtered: Counter::default(),
            requests_expired: Counter::default(),
            requests_passed: Counter::default(),
            invalid: Default::default(),
            agents: AgentId::all(emulated)
                .into_iter()
                .map(|a| (a.name().into_owned(), AgentCounters::default()))
                .collect(),
            replies_sent: Counter::default(),
            publish_errors: Counter::default(),
            bytes_out: Counter::default(),
            registrations_published: Counter::default(),
            registration_bytes: Counter::default(),
            registration_errors: Counter::default(),
            servers: Mutex::default(),
        }
    }

    /// The counters of the server at `url`, created on first use.
    pub fn server(&self, url: &str) -> Arc<ServerCounters> {
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = servers.get(url) {
            return Arc::clone(c);
        }
        let c = Arc::new(ServerCounters::default());
        servers.insert(url.to_owned(), Arc::clone(&c));
        c
    }

    fn servers(&self) -> Vec<(String, u64, u64)> {
        let servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        servers
            .iter()
            .map(|(url, c)| {
                (
                    url.clone(),
                    c.connected.get().max(0) as u64,
                    c.reconnects.get(),
                )
            })
            .collect()
    }

    /// Counts one refused message.
    pub fn invalid(&self, reason: Invalid) {
        self.invalid[reason.index()].inc();
    }

    /// Refused messages for one reason.
    pub fn invalid_count(&self, reason: Invalid) -> u64 {
        self.invalid[reason.index()].get()
    }

    /// Refused messages for every reason.
    pub fn invalid_total(&self) -> u64 {
        self.invalid.iter().map(Counter::get).sum()
    }

    /// The counters of `agent`.
    pub fn agent(&self, agent: AgentId) -> Option<&AgentCounters> {
        let index = match agent {
            AgentId::Discovery => 0,
            AgentId::Rpcutil => 1,
            AgentId::Emulated(n) => 2 + n as usize,
            AgentId::Emulator => return None,
        };
        self.agents.get(index).map(|(_, c)| c)
    }

    /// The counters as the `emulator` object of /debug/vars, with the fleet's fault counts.
    pub fn snapshot(
        &self,
        faults: std::collections::BTreeMap<String, debug_vars::FaultCounters>,
    ) -> Counters {
        let connected = self.instances_connected.get().max(0);
        let started = self.instances_started.get();
        Counters {
            instances: InstanceCounters {
                configured: self.instances_configured,
                started,
                connected: connected as u64,
                disconnected: (started as i64 - connected).max(0) as u64,
                connect_failures: self.connect_failures.get(),
                disconnects: self.disconnects.get(),
                reconnects: self.reconnects.get(),
                slow_consumers: self.slow_consumers.get(),
            },
            requests: RequestCounters {
                received: self.messages_received.get(),
                valid: self.requests_valid.get(),
                invalid: self.invalid_total(),
                invalid_by_reason: Invalid::ALL
                    .iter()
                    .map(|r| (r.as_str().to_owned(), self.invalid_count(*r)))
                    .collect(),
                expired: self.requests_expired.get(),
                filtered: self.requests_filtered.get(),
                passed: self.requests_passed.get(),
            },
            agents: self
                .agents
                .iter()
                .map(|(name, c)| {
                    (
                        name.clone(),
                        debug_vars::AgentCounters {
                            requests: c.requests.get(),
                            answered: c.answered.get(),
                        },
                    )
                })
                .collect(),
            replies: ReplyCounters {
                sent: self.replies_sent.get(),
                publish_errors: self.publish_errors.get(),
            },
            bytes: ByteCounters {
                bytes_in: self.bytes_in.get(),
                bytes_out: self.bytes_out.get(),
            },
            faults,
            servers: self
                .servers()
                .into_iter()
                .map(|(url, connected, reconnects)| {
                    (
                        url,
                        debug_vars::ServerCounters {
                            connected,
                            reconnects,
                        },
                    )
                })
                .collect(),
            registration: debug_vars::RegistrationCounters {
                published: self.registrations_published.get(),
                bytes: self.registration_bytes.get(),
                publish_errors: self.registration_errors.get(),
            },
        }
    }
}

/// Memory of this process from `/proc/self/status`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessMemory {
    pub rss: u64,
    pub peak_rss: u64,
    pub virtual_size: u64,
}

impl ProcessMemory {
    /// Reads the current values; zeros where `/proc` is unavailable.
    pub fn read() -> ProcessMemory {
        let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024)
        };
        ProcessMemory {
            rss: field("VmRSS:"),
            peak_rss: field("VmHWM:"),
            virtual_size: field("VmSize:"),
        }
    }
}
