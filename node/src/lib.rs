//! The node daemon (`loadlab-node`): one Choria server per test host on the management NATS
//! network, hosting `discovery`, `rpcutil` and the `emulator` management agent.
//!
//! Stages per message, as in an emulated instance: decode → collective/agent check → TTL →
//! filter → dispatch (`discovery`/`rpcutil` through the `agents` crate, `emulator` through
//! [`manage`] after validating inputs against its DDL) → encode → publish to reply-to.

pub mod manage;

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use agents::codec;
use agents::{AgentId, Daemon, DaemonStats, Node, RpcReply, RpcRequest, StatusCode, subject};
use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt as _;
use serde_json::{Map, Value};

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
    /// Where downloads, logs and pid files go.
    #[arg(long, env = "LOADLAB_WORKDIR", default_value = "/tmp/loadlab")]
    pub workdir: PathBuf,
    /// The emulator binary to run when the work directory has none (default: the `emulator`
    /// next to this binary).
    #[arg(long, env = "LOADLAB_EMULATOR")]
    pub emulator: Option<PathBuf>,
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

/// Runs the node daemon until `shutdown`.
pub async fn run(
    args: NodeArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(p) => ChoriaConfig::load(p)?,
        None => ChoriaConfig::default(),
    };
    let raw = if args.servers.is_empty() {
        file.list("plugin.choria.middleware_hosts")
    } else {
        args.servers.clone()
    };
    if raw.is_empty() {
        anyhow::bail!(
            "no management NATS server: give --server host:port (or plugin.choria.middleware_hosts in --config)"
        );
    }
    let servers: Vec<String> = raw
        .iter()
        .map(|s| agents::servers::normalise(s, false))
        .collect::<Result<_, _>>()?;
    let identity = args
        .identity
        .clone()
        .or_else(|| file.get("identity").map(str::to_owned))
        .map_or_else(agents::identity::hostname, Ok)
        .context("no --identity and no host name")?;
    let mut facts = Map::new();
    facts.insert("identity".into(), Value::String(identity.clone()));
    for f in &args.facts {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("invalid --fact {f:?}: expected name=value"))?;
        facts.insert(k.trim().to_owned(), Value::String(v.trim().to_owned()));
    }
    let emulator_binary = match &args.emulator {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("emulator"))
            .unwrap_or_else(|| PathBuf::from("emulator")),
    };
    let manager = manage::Manager::new(args.workdir.clone(), identity.clone(), emulator_binary);
    let ddl = agents::ddl::builtin("emulator").context("the emulator DDL is built in")?;
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
        .with_context(|| format!("connecting to {}", servers.join(",")))?;
    let mut subs = Vec::new();
    subs.push(
        client
            .subscribe(subject::node(&args.collective, &identity))
            .await?,
    );
    for a in AGENTS {
        subs.push(
            client
                .subscribe(subject::broadcast(&args.collective, &a.name()))
                .await?,
        );
    }
    let mut messages = futures::stream::select_all(subs);
    tracing::info!(identity = %identity, servers = ?servers, workdir = %args.workdir.display(), "node daemon serving discovery, rpcutil and emulator");
    tokio::pin!(shutdown);
    loop {
        let msg = tokio::select! {
            () = &mut shutdown => break,
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
        let body = match agent {
            AgentId::Emulator => Some(
                manage_request(&manager, ddl, &request.payload)
                    .await
                    .to_text(),
            ),
            AgentId::Discovery | AgentId::Rpcutil | AgentId::Emulated(_) => agents::agent::handle(
                agent,
                &request.payload,
                &daemon,
                now,
                agents::Limits::default(),
            ),
        };
        let Some(body) = body else { continue };
        let reply = reply(
            &request,
            &identity,
            &body,
            agents::clock::unix_now(),
            || {
                let server = client.server_info();
                format!("nats://{}:{}", server.host, server.port)
            },
        );
        match client.publish(request.reply_to, reply.into()).await {
            Ok(()) => daemon.stats.replies += 1,
            Err(e) => tracing::warn!(error = %e, "could not publish a reply"),
        }
    }
    drop(messages);
    let _ = tokio::time::timeout(Duration::from_secs(5), client.drain()).await;
    tracing::info!(identity = %identity, "node daemon stopped");
    Ok(())
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
                StatusCode::InvalidData,
                format!("Could not process request: {e}"),
            );
        }
    };
    let Some(action) = ddl.action(&request.action) else {
        return RpcReply::error(
            StatusCode::UnknownAction,
            format!("Unknown action {} for agent emulator", request.action),
        );
    };
    match action.validate(&request.data) {
        Ok(input) => {
            tracing::info!(action = %request.action, "emulator agent request");
            manager.handle(&request.action, &input).await
        }
        Err(e) => RpcReply::error(StatusCode::InvalidData, e.to_string()),
    }
}
