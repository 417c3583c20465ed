//! The broker's configuration: command-line flags over a Choria config file over defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use agents::ChoriaConfig;
use agents::config::ConfigFileError;

/// Cluster name when neither a flag nor the config file gives one (Choria's default).
pub const DEFAULT_CLUSTER: &str = "mcollective";
/// Workers per broker (Choria runs 10 per stage).
pub const DEFAULT_WORKERS: usize = 10;
/// Capacity of the queue in front of each transformer and egest, per worker.
pub const DEFAULT_QUEUE: usize = 1000;

/// Config file keys, as the 2017 emulator agent wrote them, plus the newer cluster key.
pub mod keys {
    pub const ENABLED: &str = "plugin.choria.broker_federation";
    pub const FEDERATION_SERVERS: &str = "plugin.choria.federation_middleware_hosts";
    pub const COLLECTIVE_SERVERS: &str = "plugin.choria.middleware_hosts";
    pub const CLUSTER_2017: &str = "plugin.choria.broker_federation_cluster";
    pub const CLUSTER: &str = "plugin.choria.federation.cluster";
    pub const IDENTITY: &str = "identity";
    pub const LOGLEVEL: &str = "loglevel";
    pub const LOGFILE: &str = "logfile";
}

/// A configuration the broker refuses.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] ConfigFileError),
    #[error("{path}: {key} is {value:?}, so this file does not enable a federation broker")]
    Disabled {
        path: PathBuf,
        key: &'static str,
        value: String,
    },
    #[error(
        "no federation servers: give --federation-servers or {} in a config file",
        keys::FEDERATION_SERVERS
    )]
    NoFederationServers,
    #[error(
        "no collective servers: give --collective-servers or {} in a config file",
        keys::COLLECTIVE_SERVERS
    )]
    NoCollectiveServers,
    #[error(transparent)]
    BadServer(#[from] agents::servers::BadServer),
    #[error(
        "invalid cluster name {0:?}: it becomes a NATS subject token, so no dots, spaces or wildcards"
    )]
    BadCluster(String),
    #[error("--workers must be between 1 and 1000, not {0}")]
    BadWorkers(usize),
    #[error("--queue must be at least 1")]
    BadQueue,
    #[error("cannot tell this host's name for the broker identity; give --identity: {0}")]
    NoIdentity(#[from] agents::identity::NoHostname),
}

/// Command-line flags of `federation-broker`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// A Choria config file (`key = value`); flags override its keys.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Federation cluster name: the broker serves `choria.federation.<cluster>.*`
    /// [default: mcollective].
    #[arg(long, env = "CHORIA_FEDERATION_CLUSTER")]
    pub cluster: Option<String>,
    /// NATS servers of the federation network (comma list or repeated).
    #[arg(long, value_name = "HOST:PORT", value_delimiter = ',')]
    pub federation_servers: Vec<String>,
    /// NATS servers of the collective (Federation Member) network.
    #[arg(long, value_name = "HOST:PORT", value_delimiter = ',')]
    pub collective_servers: Vec<String>,
    /// Workers: each has a connection to each network and runs both pipelines.
    #[arg(long, default_value_t = DEFAULT_WORKERS)]
    pub workers: usize,
    /// Queue capacity in front of each transformer and egest, per worker.
    #[arg(long, default_value_t = DEFAULT_QUEUE)]
    pub queue: usize,
    /// Name recorded in `seen-by` hops [default: the config file's identity, else host name].
    #[arg(long)]
    pub identity: Option<String>,
    /// Where `/debug/vars` and `/metrics` are served.
    #[arg(long, default_value = "127.0.0.1:8225")]
    pub http: SocketAddr,
    /// Largest message the broker looks at, in bytes.
    #[arg(long, default_value_t = agents::codec::DEFAULT_MAX_MESSAGE)]
    pub max_message: usize,
    /// Log level [default: the config file's loglevel, else info].
    #[arg(long)]
    pub loglevel: Option<String>,
    /// Log to this file instead of stderr [default: the config file's logfile].
    #[arg(long)]
    pub logfile: Option<PathBuf>,
    /// Write the process id to this file while running.
    #[arg(long, value_name = "FILE")]
    pub pid: Option<PathBuf>,
    /// Accepted for compatibility with `choria broker run`; connections are always plain.
    #[arg(long)]
    pub disable_tls: bool,
}

impl Default for Args {
    /// The command line's defaults.
    fn default() -> Args {
        Args {
            config: None,
            cluster: None,
            federation_servers: Vec::new(),
            collective_servers: Vec::new(),
            workers: DEFAULT_WORKERS,
            queue: DEFAULT_QUEUE,
            identity: None,
            http: SocketAddr::from(([127, 0, 0, 1], 8225)),
            max_message: agents::codec::DEFAULT_MAX_MESSAGE,
            loglevel: None,
            logfile: None,
            pid: None,
            disable_tls: false,
        }
    }
}

/// What the broker runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub cluster: String,
    pub identity: String,
    /// `nats://host:port` URLs of the federation network.
    pub federation_servers: Vec<String>,
    /// `nats://host:port` URLs of the collective network.
    pub collective_servers: Vec<String>,
    pub workers: usize,
    pub queue: usize,
    pub max_message: usize,
    pub http: SocketAddr,
    pub loglevel: String,
    pub logfile: Option<PathBuf>,
    pub cmdline: Vec<String>,
}

fn servers(list: &[String]) -> Result<Vec<String>, ConfigError> {
    list.iter()
        .flat_map(|s| agents::servers::split_list(s))
        .map(|s| agents::servers::normalise(&s, false).map_err(ConfigError::from))
        .collect()
}

fn valid_cluster(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>'))
}

impl Config {
    /// A configuration for `cluster` between two networks with the defaults (tests, benches,
    /// embedding programs): 10 workers, HTTP on a free loopback port, identity `cluster`.
    pub fn new(cluster: &str, federation: &[String], collective: &[String]) -> Config {
        Config {
            cluster: cluster.to_owned(),
            identity: format!("federation-broker-{cluster}"),
            federation_servers: federation.to_vec(),
            collective_servers: collective.to_vec(),
            workers: DEFAULT_WORKERS,
            queue: DEFAULT_QUEUE,
            max_message: agents::codec::DEFAULT_MAX_MESSAGE,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            loglevel: "info".to_owned(),
            logfile: None,
            cmdline: Vec::new(),
        }
    }

    /// Flags over the config file (`--config`) over defaults.
    pub fn from_args(args: &Args) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => Some((ChoriaConfig::load(path)?, path.as_path())),
            None => None,
        };
        Self::from_parts(args, file.as_ref().map(|(c, p)| (c, *p)))
    }

    /// [`Config::from_args`] with the file already read.
    pub fn from_parts(
        args: &Args,
        file: Option<(&ChoriaConfig, &Path)>,
    ) -> Result<Config, ConfigError> {
        let empty = ChoriaConfig::default();
        let (cfg, path) = file.unwrap_or((&empty, Path::new("")));
        if let Some(value) = cfg.get(keys::ENABLED)
            && cfg.bool(keys::ENABLED) != Some(true)
        {
            return Err(ConfigError::Disabled {
                path: path.to_owned(),
                key: keys::ENABLED,
                value: value.to_owned(),
            });
        }
        let pick = |flags: &[String], key: &str| -> Result<Vec<String>, ConfigError> {
            if flags.is_empty() {
                servers(&cfg.list(key))
            } else {
                servers(flags)
            }
        };
        let federation_servers = pick(&args.federation_servers, keys::FEDERATION_SERVERS)?;
        if federation_servers.is_empty() {
            return Err(ConfigError::NoFederationServers);
        }
        let collective_servers = pick(&args.collective_servers, keys::COLLECTIVE_SERVERS)?;
        if collective_servers.is_empty() {
            return Err(ConfigError::NoCollectiveServers);
        }
        let cluster = args
            .cluster
            .as_deref()
            .or_else(|| cfg.get(keys::CLUSTER))
            .or_else(|| cfg.get(keys::CLUSTER_2017))
            .unwrap_or(DEFAULT_CLUSTER)
            .to_owned();
        if !valid_cluster(&cluster) {
            return Err(ConfigError::BadCluster(cluster));
        }
        if !(1..=1000).contains(&args.workers) {
            return Err(ConfigError::BadWorkers(args.workers));
        }
        if args.queue == 0 {
            return Err(ConfigError::BadQueue);
        }
        let identity = agents::identity::identity_or_hostname(
            args.identity.as_deref().or_else(|| cfg.get(keys::IDENTITY)),
        )?;
        Ok(Config {
            cluster,
            identity,
            federation_servers,
            collective_servers,
            workers: args.workers,
            queue: args.queue,
            max_message: args.max_message,
            http: args.http,
            loglevel: args
                .loglevel
                .clone()
                .or_else(|| cfg.get(keys::LOGLEVEL).map(str::to_owned))
                .unwrap_or_else(|| "info".to_owned()),
            logfile: args
                .logfile
                .clone()
                .or_else(|| cfg.get(keys::LOGFILE).map(PathBuf::from)),
            cmdline: std::env::args().collect(),
        })
    }

    /// `choria.federation.<cluster>.federation`: where clients publish.
    pub fn federation_subject(&self) -> String {
        format!("choria.federation.{}.federation", self.cluster)
    }

    /// `choria.federation.<cluster>.collective`: where nodes reply.
    pub fn collective_subject(&self) -> String {
        format!("choria.federation.{}.collective", self.cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Args {
        Args::default()
    }

    fn file(text: &str) -> ChoriaConfig {
        ChoriaConfig::parse(text, Path::new("choria.cfg")).unwrap()
    }

    #[test]
    fn reads_the_keys_the_2017_agent_wrote() {
        let cfg = file(
            "identity = node1\nlogfile = /tmp/x/choria.log\nloglevel = info\n\
             plugin.choria.broker_federation = true\n\
             plugin.choria.federation_middleware_hosts = fed1:4222,fed2:4222\n\
             plugin.choria.middleware_hosts = localhost:4222\n\
             plugin.choria.broker_federation_cluster = net1\n",
        );
        let c = Config::from_parts(&args(), Some((&cfg, Path::new("choria.cfg")))).unwrap();
        assert_eq!(c.cluster, "net1");
        assert_eq!(c.identity, "node1");
        assert_eq!(
            c.federation_servers,
            ["nats://fed1:4222", "nats://fed2:4222"]
        );
        assert_eq!(c.collective_servers, ["nats://localhost:4222"]);
        assert_eq!(c.logfile.as_deref(), Some(Path::new("/tmp/x/choria.log")));
        assert_eq!(c.federation_subject(), "choria.federation.net1.federation");
        assert_eq!(c.collective_subject(), "choria.federation.net1.collective");
    }

    #[test]
    fn the_newer_cluster_key_wins_and_flags_win_over_the_file() {
        let cfg = file(
            "plugin.choria.federation_middleware_hosts = f:1\nplugin.choria.middleware_hosts = c:2\n\
             plugin.choria.broker_federation_cluster = old\nplugin.choria.federation.cluster = new\n",
        );
        let p = Some((&cfg, Path::new("choria.cfg")));
        assert_eq!(Config::from_parts(&args(), p).unwrap().cluster, "new");
        let mut a = args();
        a.cluster = Some("flag".into());
        a.collective_servers = vec!["x:3,y:4".into()];
        let c = Config::from_parts(&a, p).unwrap();
        assert_eq!(c.cluster, "flag");
        assert_eq!(c.collective_servers, ["nats://x:3", "nats://y:4"]);
        assert_eq!(c.federation_servers, ["nats://f:1"]);
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let a = args();
        let none = Config::from_parts(&a, None).unwrap_err();
        assert!(matches!(none, ConfigError::NoFederationServers), "{none}");
        let off = file("plugin.choria.broker_federation = false\n");
        let err = Config::from_parts(&a, Some((&off, Path::new("b.cfg")))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "b.cfg: plugin.choria.broker_federation is \"false\", so this file does not enable a federation broker"
        );
        let mut a = args();
        a.federation_servers = vec!["f:1".into()];
        let err = Config::from_parts(&a, None).unwrap_err();
        assert!(matches!(err, ConfigError::NoCollectiveServers), "{err}");
        a.collective_servers = vec!["c:1".into()];
        a.cluster = Some("a.b".into());
        assert!(matches!(
            Config::from_parts(&a, None),
            Err(ConfigError::BadCluster(_))
        ));
        a.cluster = None;
        a.workers = 0;
        assert!(matches!(
            Config::from_parts(&a, None),
            Err(ConfigError::BadWorkers(0))
        ));
        a.workers = 1;
        a.federation_servers = vec!["http://x:1".into()];
        assert!(matches!(
            Config::from_parts(&a, None),
            Err(ConfigError::BadServer(_))
        ));
    }
}
