//! The agents every emulated daemon answers, and dispatch of a request payload to them.
//!
//! `discovery` answers `ping` with `pong`; `rpcutil` reports on the daemon; `emulated0` ..
//! `emulatedN-1` have one action, `generate`. [`handle`] returns the reply body, or `None` when
//! the agent sends no reply (a discovery request without `ping`).

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::ddl;
use crate::node::Node;
use crate::rpc::{RpcReply, RpcRequest, StatusCode};

/// Default `size` of `generate` when the request gives none.
pub const DEFAULT_GENERATE_SIZE: u64 = 20;

/// The agents a daemon hosts. `Emulated(n)` is `emulated<n>`; `Emulator` is the management
/// agent only the node daemon hosts (its actions need a runtime, so the node daemon serves
/// them itself; [`handle`] refuses them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentId {
    Discovery,
    Rpcutil,
    Emulated(u32),
    Emulator,
}

impl AgentId {
    /// Resolves an agent name for a daemon with `emulated` emulated agents.
    pub fn parse(name: &str, emulated: u32) -> Option<AgentId> {
        match name {
            "discovery" => Some(AgentId::Discovery),
            "rpcutil" => Some(AgentId::Rpcutil),
            other => {
                let n: u32 = other.strip_prefix("emulated")?.parse().ok()?;
                let canonical = format!("emulated{n}");
                (n < emulated && canonical == other).then_some(AgentId::Emulated(n))
            }
        }
    }

    /// The agent's wire name.
    pub fn name(self) -> Cow<'static, str> {
        match self {
            AgentId::Discovery => Cow::Borrowed("discovery"),
            AgentId::Rpcutil => Cow::Borrowed("rpcutil"),
            AgentId::Emulated(n) => Cow::Owned(format!("emulated{n}")),
            AgentId::Emulator => Cow::Borrowed("emulator"),
        }
    }

    /// Every agent of a daemon with `emulated` emulated agents, in subscription order.
    pub fn all(emulated: u32) -> Vec<AgentId> {
        let mut out = vec![AgentId::Discovery, AgentId::Rpcutil];
        out.extend((0..emulated).map(AgentId::Emulated));
        out
    }

    /// The agent's DDL metadata, as `agent_inventory` reports it.
    pub fn metadata(self) -> ddl::Metadata {
        // The DDL files are compiled in and covered by a unit test, so they always parse;
        // fall back to a minimal record all the same rather than panic.
        let mut meta = ddl::builtin(&self.name())
            .map(|d| d.metadata.clone())
            .unwrap_or(ddl::Metadata {
                name: String::new(),
                description: String::new(),
                author: String::new(),
                license: String::new(),
                version: "0.0.0".to_owned(),
                url: String::new(),
                timeout: 10,
            });
        meta.name = self.name().into_owned();
        meta
    }
}

/// Per-daemon message counters, named after go-choria's server statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DaemonStats {
    pub total: u64,
    pub validated: u64,
    pub unvalidated: u64,
    pub passed: u64,
    pub filtered: u64,
    pub replies: u64,
    pub ttlexpired: u64,
}

/// Everything an agent may ask of its daemon beyond the filter view.
pub trait Daemon: Node {
    fn stats(&self) -> DaemonStats;
    /// Unix time the daemon started.
    fn start_time(&self) -> i64;
    /// The configuration file it was started with (may be empty).
    fn config_file(&self) -> &str;
    /// The agents it hosts.
    fn agent_ids(&self) -> Vec<AgentId>;
}

/// Limits applied to agent inputs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest `size` `generate` accepts.
    pub max_generate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_generate: 1024 * 1024,
        }
    }
}

/// Handles one request payload for `agent`; `None` means send no reply.
pub fn handle(
    agent: AgentId,
    payload: &[u8],
    daemon: &dyn Daemon,
    now: i64,
    limits: Limits,
) -> Option<String> {
    match agent {
        AgentId::Discovery => discovery(payload),
        AgentId::Rpcutil => Some(rpc(payload, agent, |req| rpcutil(req, daemon, now)).to_text()),
        AgentId::Emulated(_) => {
            Some(rpc(payload, agent, |req| emulated(req, agent, limits)).to_text())
        }
        AgentId::Emulator => Some(
            RpcReply::error(
                StatusCode::UnknownError,
                "the emulator agent is served by the node daemon",
            )
            .to_text(),
        ),
    }
}

fn discovery(payload: &[u8]) -> Option<String> {
    payload
        .windows(4)
        .any(|w| w == b"ping")
        .then(|| "pong".to_owned())
}

fn rpc(payload: &[u8], agent: AgentId, action: impl FnOnce(&RpcRequest) -> RpcReply) -> RpcReply {
    let request: RpcRequest = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            return RpcReply::error(
                StatusCode::InvalidData,
                format!("Could not process request: {e}"),
            );
        }
    };
    if let Some(named) = &request.agent
        && *named != agent.name()
    {
        return RpcReply::error(
            StatusCode::InvalidData,
            format!(
                "Could not process request: body is for agent {named}, not {}",
                agent.name()
            ),
        );
    }
    action(&request)
}

fn unknown_action(request: &RpcRequest, agent: AgentId) -> RpcReply {
    RpcReply::error(
        StatusCode::UnknownAction,
        format!(
            "Unknown action {} for agent {}",
            request.action,
            agent.name()
        ),
    )
}

fn emulated(request: &RpcRequest, agent: AgentId, limits: Limits) -> RpcReply {
    match request.action.as_str() {
        "generate" => generate(request, limits),
        _ => unknown_action(request, agent),
    }
}

fn generate(request: &RpcRequest, limits: Limits) -> RpcReply {
    let size = match request.data.get("size") {
        None | Some(Value::Null) => DEFAULT_GENERATE_SIZE,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) => n,
            None => {
                return RpcReply::error(
                    StatusCode::InvalidData,
                    format!("Invalid data: size must be a non-negative integer, got {n}"),
                );
            }
        },
        Some(other) => {
            return RpcReply::error(
                StatusCode::InvalidData,
                format!("Invalid data: size must be an integer, got {other}"),
            );
        }
    };
    if size > limits.max_generate {
        return RpcReply::error(
            StatusCode::InvalidData,
            format!(
                "Invalid data: size {size} exceeds the maximum of {}",
                limits.max_generate
            ),
        );
    }
    RpcReply::ok(json!({ "message": digits(size) }))
}

/// `size` characters of `0123456789` repeated, like the original emulator.
pub fn digits(size: u64) -> String {
    const PATTERN: &[u8] = b"0123456789";
    let len = usize::try_from(size).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let take = PATTERN.len().min(len - out.len());
        out.extend_from_slice(&PATTERN[..take]);
    }
    String::from_utf8(out).unwrap_or_default()
}

fn rpcutil(request: &RpcRequest, daemon: &dyn Daemon, now: i64) -> RpcReply {
    let collectives: Vec<String> = daemon
        .collectives()
        .into_iter()
        .map(Cow::into_owned)
        .collect();
    let main = collectives.first().cloned().unwrap_or_default();
    let agents: Vec<String> = daemon.agents().into_iter().map(Cow::into_owned).collect();
    match request.action.as_str() {
        "ping" => RpcReply::ok(json!({ "pong": now })),
        "collective_info" => RpcReply::ok(json!({
            "main_collective": main,
            "collectives": collectives,
        })),
        "inventory" => RpcReply::ok(json!({
            "agents": agents,
            "classes": daemon.classes(),
            "collectives": collectives,
            "data_plugins": [],
            "facts": daemon.facts(),
            "machines": [],
            "main_collective": main,
            "version": env!("CARGO_PKG_VERSION"),
        })),
        "agent_inventory" => {
            let list: Vec<Value> = daemon
                .agent_ids()
                .into_iter()
                .map(|id| {
                    let m = id.metadata();
                    json!({
                        "agent": m.name,
                        "name": m.name,
                        "description": m.description,
                        "author": m.author,
                        "license": m.license,
                        "version": m.version,
                        "url": m.url,
                        "timeout": m.timeout,
                    })
                })
                .collect();
            RpcReply::ok(json!({ "agents": list }))
        }
        "get_fact" => match request.data.get("fact").and_then(Value::as_str) {
            None => RpcReply::error(StatusCode::MissingData, "Missing data item: fact"),
            Some(name) => RpcReply::ok(json!({
                "fact": name,
                "value": daemon.fact(name).unwrap_or(Value::Null),
            })),
        },
        "get_facts" => match request.data.get("facts").and_then(Value::as_str) {
            None => RpcReply::error(StatusCode::MissingData, "Missing data item: facts"),
            Some(names) => {
                let values: serde_json::Map<String, Value> = names
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(|n| (n.to_owned(), daemon.fact(n).unwrap_or(Value::Null)))
                    .collect();
                RpcReply::ok(json!({ "values": values }))
            }
        },
        "daemon_stats" => {
            let s = daemon.stats();
            RpcReply::ok(json!({
                "agents": agents,
                "configfile": daemon.config_file(),
                "filtered": s.filtered,
                "passed": s.passed,
                "pid": std::process::id(),
                "replies": s.replies,
                "starttime": daemon.start_time(),
                "threads": [],
                "times": {},
                "total": s.total,
                "ttlexpired": s.ttlexpired,
                "unvalidated": s.unvalidated,
                "validated": s.validated,
                "version": env!("CARGO_PKG_VERSION"),
            }))
        }
        _ => unknown_action(request, AgentId::Rpcutil),
    }
}
