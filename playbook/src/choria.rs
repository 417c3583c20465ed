//! The connection to the Choria broker (NATS) used by `mcollective` tasks and node sets.
//!
//! Broker addresses come, in this order of precedence, from `--server host:port` flags, a
//! Choria-style client configuration file (`--config`, key `plugin.choria.middleware_hosts`),
//! the `CHORIA_SERVERS` environment variable, then `NATS_URL`. The connection is opened lazily
//! on first use, so playbooks without RPC never need a broker.

use std::path::Path;
use std::time::Duration;

use agents::ChoriaConfig;
use agents::client::{Client, ClientOptions};
use tokio::sync::OnceCell;

/// Default time to wait for RPC replies.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Broker failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// No address was configured anywhere.
    #[error(
        "no Choria broker configured: use --server HOST:PORT, --config FILE (plugin.choria.middleware_hosts), CHORIA_SERVERS or NATS_URL"
    )]
    NotConfigured,
    /// The configuration file could not be read or is wrong.
    #[error("{0}")]
    Config(String),
    /// The broker could not be reached.
    #[error("cannot connect to the Choria broker at {servers}: {reason}")]
    Connect {
        /// The addresses tried.
        servers: String,
        /// Why it failed.
        reason: String,
    },
    /// A request could not be sent.
    #[error("Choria request failed: {0}")]
    Request(String),
}

/// Where the broker is and how requests are made.
#[derive(Debug, Clone, Default)]
pub struct BrokerSettings {
    /// NATS URLs (`nats://host:port`).
    pub servers: Vec<String>,
    /// Collective to address (default `mcollective`).
    pub collective: Option<String>,
    /// How long RPC requests wait for replies (`None`: from the agent's DDL, else 10 s).
    pub rpc_timeout: Option<Duration>,
}

impl BrokerSettings {
    /// Resolves the broker addresses from the command line, a config file and the environment
    /// ([`agents::servers::resolve`]: flags, `plugin.choria.middleware_hosts`,
    /// `CHORIA_SERVERS`, `NATS_URL`), and the collective from `main_collective`.
    pub fn resolve(cli: &[String], config: Option<&Path>) -> Result<Self, BrokerError> {
        let file = match config {
            Some(path) => ChoriaConfig::load(path).map_err(|e| {
                BrokerError::Config(format!("cannot use Choria client config: {e}"))
            })?,
            None => ChoriaConfig::default(),
        };
        let (servers, _) = agents::servers::resolve(cli, &file, false)
            .map_err(|e| BrokerError::Config(e.to_string()))?;
        Ok(BrokerSettings {
            servers,
            collective: file.get("main_collective").map(str::to_owned),
            rpc_timeout: None,
        })
    }
}

/// A lazily connected Choria client shared by a run.
#[derive(Debug, Default)]
pub struct Broker {
    settings: BrokerSettings,
    client: OnceCell<Client>,
}

impl Broker {
    /// A broker that connects on first use.
    pub fn new(settings: BrokerSettings) -> Self {
        Self {
            settings,
            client: OnceCell::new(),
        }
    }

    /// How long RPC requests to `agent` wait for replies: `--rpc-timeout` when given, else the
    /// timeout of the agent's DDL when it is one this build knows (`rpcutil`, `discovery`,
    /// `emulator`, `emulatedN`), else [`DEFAULT_RPC_TIMEOUT`]. Requests return as soon as every
    /// addressed node answered, so the timeout only delays reporting non-responders.
    pub fn rpc_timeout(&self, agent: &str) -> Duration {
        self.settings
            .rpc_timeout
            .or_else(|| agents::ddl::timeout(agent))
            .unwrap_or(DEFAULT_RPC_TIMEOUT)
    }

    /// The connected client (connecting on first call).
    pub async fn client(&self) -> Result<&Client, BrokerError> {
        if self.settings.servers.is_empty() {
            return Err(BrokerError::NotConfigured);
        }
        self.client
            .get_or_try_init(|| async {
                let mut options = ClientOptions {
                    callerid: "choria=playbook.mcollective".to_string(),
                    ..ClientOptions::default()
                };
                if let Some(c) = &self.settings.collective {
                    options.collective = c.clone();
                }
                tracing::debug!(servers = ?self.settings.servers, "connecting to the Choria broker");
                Client::connect(&self.settings.servers, options)
                    .await
                    .map_err(|e| BrokerError::Connect {
                        servers: self.settings.servers.join(","),
                        reason: match e {
                            agents::client::ClientError::Connect { reason, .. } => reason,
                            other => other.to_string(),
                        },
                    })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_come_from_flags_then_config() {
        let s = BrokerSettings::resolve(&["127.0.0.1:4222".into()], None).expect("ok");
        assert_eq!(s.servers, vec!["nats://127.0.0.1:4222"]);
        let dir = tempfile::tempdir().expect("dir");
        let cfg = dir.path().join("client.conf");
        std::fs::write(
            &cfg,
            "# comment\nplugin.choria.middleware_hosts = a:4222, nats://b:4223\nmain_collective = x\n",
        )
        .expect("write");
        let s = BrokerSettings::resolve(&[], Some(&cfg)).expect("ok");
        assert_eq!(s.servers, vec!["nats://a:4222", "nats://b:4223"]);
        assert_eq!(s.collective.as_deref(), Some("x"));
        assert!(BrokerSettings::resolve(&[], Some(&dir.path().join("missing"))).is_err());
        let broker = Broker::new(s);
        assert_eq!(broker.rpc_timeout("rpcutil"), Duration::from_secs(2));
        assert_eq!(broker.rpc_timeout("emulated3"), Duration::from_secs(120));
        assert_eq!(broker.rpc_timeout("puppet"), DEFAULT_RPC_TIMEOUT);
    }
}
