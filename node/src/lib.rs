//! The node daemon (`loadlab-node`): one Choria server per test host on the management NATS
//! network, hosting `discovery`, `rpcutil` and the `emulator` management agent.
//!
//! Stages per message, as in an emulated instance: decode → collective/agent check → TTL →
//! filter → dispatch (`discovery`/`rpcutil` through the `agents` crate, `emulator` through
//! [`manage`] after decoding a typed [`request::Request`] checked against its DDL) → encode →
//! publish to reply-to.
//!
//! `discovery` and `rpcutil` answer at once on the receiving loop; every `emulator` request
//! runs on its own task, so a 60 s `start` or a slow `download` never delays `status`.

pub mod download;
pub mod manage;
pub mod procs;
pub mod request;

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agents::codec;
use agents::{AgentId, Daemon, DaemonStats, Node, RpcReply, RpcRequest, subject};
use clap::Parser;
use futures::StreamExt as _;
use serde_json::{Map, Value};

use crate::request::Request;

use agents::ChoriaConfig;
use agents::admit::{Admitted, Refusal, admit, reply};

/// A Choria server for a load-test host, hosting the `emulator` management agent.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadlab-node", version)]
pub struct NodeArgs {
    /// Management NATS server host:port (repeatable).
    #[arg(long = "server", env = "LOADLAB_SERVERS", value_delimiter = ',')]
    pub servers: Vec<String>,
    /// Identity of this node; defaults to the host name.
    #[arg(long, env = "LOADLAB_IDENTITY")]
    pub identity: Option<String>,
    /// Collective to join.
    #[arg(long, env = "LOADLAB_COLLECTIVE", default_value = "mcollective")]
    pub collective: String,
    /// A fact `name=value` (repeatable), e.g. `--fact role=emulator`.
    #[arg(long = "fact", env = "LOADLAB_FACTS", value_delimiter = ',')]
    pub facts: Vec<String>,
    /// A class (repeatable).
    #[arg(long = "class", env = "LOADLAB_CLASSES", value_delimiter = ',')]
    pub classes: Vec<String>,
    /// Where downloads, logs, pid files and the state file (processes started) go.
    #[arg(long, env = "LOADLAB_WORKDIR", default_value = "/tmp/loadlab")]
    pub workdir: PathBuf,
    /// The emulator binary to run when the work directory has none (default: the `emulator`
    /// next to this binary).
    #[arg(long, env = "LOADLAB_EMULATOR")]
    pub emulator: Option<PathBuf>,
    /// The federation broker `start_federation` runs when the work directory has none
    /// (default: the `federation-broker` next to this binary).
    #[arg(long, env = "LOADLAB_FEDERATION_BROKER")]
    pub federation_broker: Option<PathBuf>,
    /// The federation broker's `/debug/vars` port when `start_federation` or
    /// `federation_status` gives none.
    #[arg(long, env = "LOADLAB_FEDERATION_MONITOR", default_value_t = 8225)]
    pub federation_monitor: u16,
    /// Choria-style config file (`plugin.choria.middleware_hosts`, `identity`).
    #[arg(short = 'c', long, env = "LOADLAB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log level or tracing filter.
    #[arg(long, env = "LOADLAB_LOGLEVEL", default_value = "info")]
    pub loglevel: String,
}

struct NodeDaemon {
    identity: String,
    collectives: Vec<String>,
    facts: Map<String, Value>,
    classes: Vec<String>,
    stats: DaemonStats,
    started: i64,
    config_file: String,
}

const AGENTS: [AgentId; 3] = [AgentId::Discovery, AgentId::Rpcutil, AgentId::Emulator];

impl Node for NodeDaemon {
    fn identity(&self) -> &str {
        &self.identity
    }
    fn agents(&self) -> Vec<Cow<'_, str>> {
        AGENTS.iter().map(|a| a.name()).collect()
    }
    fn has_agent(&self, agent: &str) -> bool {
        AGENTS.iter().any(|a| a.name() == agent)
    }
    fn classes(&self) -> Vec<Cow<'_, str>> {
        self.classes
            .iter()
            .map(|c| Cow::Borrowed(c.as_str()))
            .collect()
    }
    fn fact(&self, name: &str) -> Option<Value> {
        self.facts.get(name).cloned()
    }
    fn facts(&self) -> Map<String, Value> {
        self.facts.clone()
    }
    fn collectives(&self) -> Vec<Cow<'_, str>> {
        self.collectives
            .iter()
            .map(|c| Cow::Borrowed(c.as_str()))
            .collect()
    }
}

impl Daemon for NodeDaemon {
    fn stats(&self) -> DaemonStats {
        self.stats
    }
    fn start_time(&self) -> i64 {
        self.started
    }
    fn config_file(&self) -> &str {
        &self.config_file
    }
    fn agent_ids(&self) -> Vec<AgentId> {
        AGENTS.to_vec()
    }
}

/// Why the daemon cannot run; every variant is the user's to fix or names the failing step.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot use --config {}", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: agents::config::ConfigFileError,
    },
    #[error(
        "no management NATS server: give --server host:port (or plugin.choria.middleware_hosts in --config)"
    )]
    NoServer,
    #[error("invalid --server")]
    Server(#[source] agents::servers::BadServer),
    #[error("no --identity given")]
    Identity(#[source] agents::identity::NoHostname),
    #[error("invalid --fact {fact:?}: expected name=value")]
    Fact { fact: String },
    #[error(
        "cannot find this program's path to locate the emulator and federation-broker binaries (give --emulator and --federation-broker)"
    )]
    CurrentExe(#[source] std::io::Error),
    #[error("the emulator DDL is not built in")]
    NoDdl,
    #[error("cannot connect to {servers}")]
    Connect {
        servers: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot subscribe to {subject}")]
    Subscribe {
        subject: String,
        #[source]
        source: async_nats::SubscribeError,
    },
}

/// An error and its causes on one line, `outer: cause: root`; a cause whose text the line
/// already holds (an error that prints its source itself) is not repeated.
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

/// Runs the node daemon until `shutdown`.
pub async fn run(
    args: NodeArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    let file = match &args.config {
        Some(path) => ChoriaConfig::load(path).map_err(|source| NodeError::Config {
            path: path.clone(),
            source,
        })?,
        None => ChoriaConfig::default(),
    };
    let raw = if args.servers.is_empty() {
        file.list("plugin.choria.middleware_hosts")
    } else {
        args.servers.clone()
    };
    if raw.is_empty() {
        return Err(NodeError::NoServer);
    }
    let servers: Vec<String> = raw
        .iter()
        .map(|s| agents::servers::normalise(s, false))
        .collect::<Result<_, _>>()
        .map_err(NodeError::Server)?;
    let identity = args
        .identity
        .clone()
        .or_else(|| file.get("identity").map(str::to_owned))
        .map_or_else(agents::identity::hostname, Ok)
        .map_err(NodeError::Identity)?;
    let mut facts = Map::new();
    facts.insert("identity".into(), Value::String(identity.clone()));
    for f in &args.facts {
        let (k, v) = f
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| NodeError::Fact { fact: f.clone() })?;
        facts.insert(k.trim().to_owned(), Value::String(v.trim().to_owned()));
    }
    let beside_me = |name: &str| -> Result<PathBuf, NodeError> {
        Ok(std::env::current_exe()
            .map_err(NodeError::CurrentExe)?
            .parent()
            .map(|d| d.join(name))
            .unwrap_or_else(|| PathBuf::from(name)))
    };
    let emulator_binary = match &args.emulator {
        Some(p) => p.clone(),
        None => beside_me("emulator")?,
    };
    let federation = manage::FederationSettings {
        binary: match &args.federation_broker {
            Some(p) => p.clone(),
            None => beside_me("federation-broker")?,
        },
        monitor: args.federation_monitor,
    };
    let ddl = agents::ddl::builtin("emulator").ok_or(NodeError::NoDdl)?;
    let manager = Arc::new(manage::Manager::new(
        args.workdir.clone(),
        identity.clone(),
        emulator_binary,
        federation,
    ));
    let mut daemon = NodeDaemon {
        identity: identity.clone(),
        collectives: vec![args.collective.clone()],
        facts,
        classes: args.classes.clone(),
        stats: DaemonStats::default(),
        started: agents::clock::unix_now(),
        config_file: args
            .config
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    };
    let client = async_nats::ConnectOptions::new()
        .name(&identity)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(&servers)
        .await
        .map_err(|source| NodeError::Connect {
            servers: servers.join(","),
            source,
        })?;
    let mut subjects = vec![subject::node(&args.collective, &identity)];
    subjects.extend(
        AGENTS
            .iter()
            .map(|a| subject::broadcast(&args.collective, &a.name())),
    );
    let mut subs = Vec::new();
    for subject in subjects {
        let sub = client
            .subscribe(subject.clone())
            .await
            .map_err(|source| NodeError::Subscribe { subject, source })?;
        subs.push(sub);
    }
    let mut messages = futures::stream::select_all(subs);
    // Request tasks report each published reply here, for `rpcutil daemon_stats`.
    let (replied, mut replies) = tokio::sync::mpsc::unbounded_channel::<()>();
    let tasks = tokio_util::task::TaskTracker::new();
    tracing::info!(identity = %identity, servers = ?servers, workdir = %args.workdir.display(), "node daemon serving discovery, rpcutil and emulator");
    tokio::pin!(shutdown);
    loop {
        let msg = tokio::select! {
            () = &mut shutdown => break,
            Some(()) = replies.recv() => {
                daemon.stats.replies += 1;
                continue;
            }
            m = messages.next() => match m { Some(m) => m, None => break },
        };
        daemon.stats.total += 1;
        let now = agents::clock::unix_now();
        let admitted = admit(
            &msg.payload,
            msg.reply.as_deref(),
            codec::DEFAULT_MAX_MESSAGE,
            &daemon,
            |name| AGENTS.into_iter().find(|a| a.name() == name),
            now,
        );
        let Admitted { request, agent } = match admitted {
            Ok(a) => a,
            Err(Refusal::Undecodable(reason)) => {
                daemon.stats.unvalidated += 1;
                tracing::debug!(reason = reason.as_str(), "refused a message");
                continue;
            }
            Err(refusal) => {
                daemon.stats.validated += 1;
                match refusal {
                    Refusal::Expired => daemon.stats.ttlexpired += 1,
                    Refusal::Filtered | Refusal::Unroutable(_) | Refusal::Undecodable(_) => {
                        daemon.stats.filtered += 1
                    }
                }
                continue;
            }
        };
        daemon.stats.validated += 1;
        daemon.stats.passed += 1;
        match agent {
            AgentId::Emulator => {
                let manager = Arc::clone(&manager);
                let client = client.clone();
                let identity = identity.clone();
                let replied = replied.clone();
                tasks.spawn(async move {
                    let body = manage_request(&manager, ddl, &request.payload)
                        .await
                        .to_text();
                    if publish(&client, &request, &identity, &body).await {
                        let _ = replied.send(());
                    }
                });
            }
            AgentId::Discovery | AgentId::Rpcutil | AgentId::Emulated(_) => {
                let body = agents::agent::handle(
                    agent,
                    &request.payload,
                    &daemon,
                    now,
                    agents::Limits::default(),
                );
                if let Some(body) = body
                    && publish(&client, &request, &identity, &body).await
                {
                    daemon.stats.replies += 1;
                }
            }
        }
    }
    drop(messages);
    // Requests in flight (a `start` waits up to 60 s) are abandoned; the processes they
    // started stay recorded in the state file.
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tasks.wait()).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), client.drain()).await;
    tracing::info!(identity = %identity, "node daemon stopped");
    Ok(())
}

/// Publishes the reply to `request`; true when it was sent.
async fn publish(
    client: &async_nats::Client,
    request: &agents::codec::InboundRequest,
    identity: &str,
    body: &str,
) -> bool {
    let reply = reply(request, identity, body, agents::clock::unix_now(), || {
        let server = client.server_info();
        format!("nats://{}:{}", server.host, server.port)
    });
    match client.publish(request.reply_to.clone(), reply.into()).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, requestid = %request.requestid, "could not publish a reply");
            false
        }
    }
}

async fn manage_request(
    manager: &manage::Manager,
    ddl: &agents::ddl::Ddl,
    payload: &[u8],
) -> RpcReply {
    let request: RpcRequest = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            return RpcReply::error(
                agents::StatusCode::InvalidData,
                format!("Could not process request: {e}"),
            );
        }
    };
    match Request::decode(ddl, &request.action, &request.data) {
        Ok(decoded) => {
            tracing::info!(action = %decoded.action(), "emulator agent request");
            manager.handle(decoded).await
        }
        Err(e) => RpcReply::error(e.status(), one_line(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_causes_without_repeating_them() {
        let read = agents::config::ConfigFileError::Read {
            path: "/x.conf".into(),
            error: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let error = NodeError::Config {
            path: "/x.conf".into(),
            source: read,
        };
        assert_eq!(
            one_line(&error),
            "cannot use --config /x.conf: cannot read config file /x.conf: entity not found"
        );
        let error = NodeError::Server(agents::servers::BadServer("a:b:c".into()));
        assert_eq!(
            one_line(&error),
            "invalid --server: invalid server \"a:b:c\": expected host:port or nats://host:port"
        );
    }
}
