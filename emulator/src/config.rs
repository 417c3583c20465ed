//! Validated emulator configuration, built from [`Args`] and an optional Choria config file.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::Args;
use crate::facts::FactsTemplate;
use crate::faults::FaultSpec;
use crate::registration::{RegistrationConfig, RegistrationFile};
use agents::config::{ChoriaConfig, ConfigFileError};
use agents::servers::BadServer;

/// Something wrong with the flags or files the emulator was given.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] ConfigFileError),
    #[error("--instances must be at least 1")]
    NoInstances,
    #[error("--collectives must be at least 1")]
    NoCollectives,
    #[error("--connect-rate and --connect-concurrency must be at least 1")]
    NoRamp,
    #[error("--shutdown-timeout must be a non-negative number of seconds, got {0}")]
    BadShutdownTimeout(f64),
    #[error("--connect-timeout must be a positive number of seconds, got {0}")]
    BadConnectTimeout(f64),
    #[error("invalid --server: {0}")]
    BadServer(#[from] BadServer),
    #[error("invalid --bind {0:?}: expected IP addresses or a range like 127.0.0.2-127.0.0.9")]
    BadBind(String),
    #[error("--verify needs --tls-ca (or plugin.security.file.ca in the config file)")]
    VerifyWithoutCa,
    #[error("cannot read facts file {path}: {reason}")]
    Facts { path: PathBuf, reason: String },
    #[error("--name not given and {0}")]
    Hostname(#[from] agents::identity::NoHostname),
    #[error("{from}: {reason}")]
    Registration { from: &'static str, reason: String },
}

/// TLS settings for the NATS connections.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    /// Verify the server's certificate against `ca`.
    pub verify: bool,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The whole, validated configuration of one emulator process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Identity prefix: instances are `<name>-<i>`.
    pub name: String,
    pub instances: u32,
    /// Number of `emulatedN` agents.
    pub agents: u32,
    /// Collective names, main collective first.
    pub collectives: Vec<String>,
    /// NATS URLs; empty means "start a private nats-server".
    pub servers: Vec<String>,
    pub http: SocketAddr,
    pub tls: Option<TlsConfig>,
    pub user: Option<(String, String)>,
    pub connect_rate: u32,
    pub connect_concurrency: u32,
    /// How instances pick a server from the pool.
    pub server_strategy: natsclient::Strategy,
    /// Local source addresses used in turn; empty means "let the kernel choose".
    pub bind: Vec<IpAddr>,
    pub max_message: usize,
    pub facts: FactsTemplate,
    pub shutdown_timeout: Duration,
    /// Worker processes (`None`: as many as the open-file limit needs).
    pub workers: Option<u32>,
    pub worker_restarts: u32,
    /// Members of the private cluster (`None`: as many as the fleet needs).
    pub brokers: Option<u32>,
    /// Instances one process may hold (`None`: from the open-file limit).
    pub process_budget: Option<u32>,
    /// Global index of this process's first instance (0 unless it is a worker).
    pub index_offset: u32,
    /// Instances of the whole fleet (`instances` unless this process is a worker).
    pub fleet_instances: u32,
    /// What the worker processes need to build the same facts.
    pub facts_file: Option<PathBuf>,
    pub classes: Vec<String>,
    pub shards: u32,
    /// Misbehaving instances and the seed that picks them.
    pub faults: FaultSpec,
    pub seed: u64,
    /// What every instance publishes as registration; `None`: nothing.
    pub registration: Option<RegistrationConfig>,
    /// Give up when not every instance is connected within this time.
    pub connect_timeout: Option<Duration>,
    pub config_file: Option<PathBuf>,
    pub loglevel: String,
    /// The process's command line, for /debug/vars.
    pub cmdline: Vec<String>,
}

impl Config {
    /// Validates `args`, reading the config and facts files they name.
    pub fn from_args(args: &Args) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => ChoriaConfig::load(path)?,
            None => ChoriaConfig::default(),
        };
        let instances = match args.instances {
            Some(0) | None => return Err(ConfigError::NoInstances),
            Some(n) => n,
        };
        if args.collectives == 0 {
            return Err(ConfigError::NoCollectives);
        }
        if args.connect.connect_rate == 0 || args.connect.connect_concurrency == 0 {
            return Err(ConfigError::NoRamp);
        }
        if !args.shutdown_timeout.is_finite() || args.shutdown_timeout < 0.0 {
            return Err(ConfigError::BadShutdownTimeout(args.shutdown_timeout));
        }
        let connect_timeout = match args.connect.connect_timeout {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
            Some(s) => return Err(ConfigError::BadConnectTimeout(s)),
        };
        let name = agents::identity::identity_or_hostname(args.name.as_deref())?;
        let raw_servers = if args.servers.is_empty() {
            file.list("plugin.choria.middleware_hosts")
        } else {
            args.servers.clone()
        };
        let servers = raw_servers
            .iter()
            .map(|s| normalise_server(s, args.tls.tls))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = if args.tls.tls {
            let ca = args
                .tls
                .tls_ca
                .clone()
                .or_else(|| file.get("plugin.security.file.ca").map(PathBuf::from));
            if args.tls.verify && ca.is_none() {
                return Err(ConfigError::VerifyWithoutCa);
            }
            Some(TlsConfig {
                verify: args.tls.verify,
                ca,
                cert: args.tls.tls_cert.clone().or_else(|| {
                    file.get("plugin.security.file.certificate")
                        .map(PathBuf::from)
                }),
                key: args
                    .tls
                    .tls_key
                    .clone()
                    .or_else(|| file.get("plugin.security.file.key").map(PathBuf::from)),
            })
        } else {
            None
        };
        let user = match (file.get("plugin.nats.user"), file.get("plugin.nats.pass")) {
            (Some(u), Some(p)) => Some((u.to_owned(), p.to_owned())),
            _ => None,
        };
        let server_strategy = match args.connect.server_strategy {
            Some(s) => s,
            None => match file.bool("plugin.choria.randomize_middleware_hosts") {
                Some(false) => natsclient::Strategy::Ordered,
                Some(true) | None => natsclient::Strategy::Random,
            },
        };
        let mut bind = Vec::new();
        for spec in &args.connect.bind {
            bind.extend(parse_bind(spec)?);
        }
        let loglevel = if args.loglevel == "info" {
            file.get("loglevel").unwrap_or("info").to_owned()
        } else {
            args.loglevel.clone()
        };
        let facts = FactsTemplate::new(
            args.node.facts.as_deref(),
            args.node.classes.clone(),
            args.node.shards.max(1),
        )
        .map_err(|(path, reason)| ConfigError::Facts { path, reason })?;
        let registration = registration(args, &file)?;
        Ok(Config {
            registration,
            name,
            instances,
            agents: args.agents,
            collectives: (0..args.collectives as usize)
                .map(agents::subject::collective_name)
                .collect(),
            servers,
            http: SocketAddr::new(args.http_address, args.http_port),
            tls,
            user,
            connect_rate: args.connect.connect_rate,
            connect_concurrency: args.connect.connect_concurrency,
            server_strategy,
            bind,
            max_message: args.connect.max_message,
            facts,
            shutdown_timeout: Duration::from_secs_f64(args.shutdown_timeout),
            connect_timeout,
            faults: args.faults.clone().unwrap_or_default(),
            seed: args.seed,
            workers: args.workers.workers.filter(|w| *w > 0),
            worker_restarts: args.workers.worker_restarts,
            brokers: args.workers.brokers.filter(|b| *b > 0),
            process_budget: args.workers.process_budget.filter(|b| *b > 0),
            index_offset: args.workers.worker_offset,
            fleet_instances: args
                .workers
                .fleet_instances
                .unwrap_or(instances)
                .max(args.workers.worker_offset.saturating_add(instances)),
            facts_file: args.node.facts.clone(),
            classes: args.node.classes.clone(),
            shards: args.node.shards.max(1),
            config_file: args.config.clone(),
            loglevel,
            cmdline: std::env::args().collect(),
        })
    }
}

/// Builds a [`Config`] in code (tests, benchmarks, programs that embed a fleet), with the same
/// defaults as the command line.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: Config,
}

impl Config {
    /// A fleet of `instances` daemons named `<name>-<i>` with the command line's defaults, an
    /// HTTP listener on a free loopback port and no servers (a private broker) until
    /// [`ConfigBuilder::server`] adds one.
    pub fn builder(name: &str, instances: u32) -> ConfigBuilder {
        let classes = ["emulator", "role::emulated", "shard_{shard}"]
            .map(str::to_owned)
            .to_vec();
        ConfigBuilder {
            config: Config {
                name: name.to_owned(),
                instances,
                agents: 1,
                collectives: vec![agents::subject::collective_name(0)],
                servers: Vec::new(),
                http: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
                tls: None,
                user: None,
                connect_rate: 10_000,
                connect_concurrency: 512,
                server_strategy: natsclient::Strategy::Random,
                bind: Vec::new(),
                max_message: 1024 * 1024,
                facts: FactsTemplate::plain(classes.clone(), 10),
                shutdown_timeout: Duration::from_secs(10),
                connect_timeout: None,
                registration: None,
                faults: FaultSpec::default(),
                seed: 0,
                workers: None,
                worker_restarts: 3,
                brokers: None,
                process_budget: None,
                index_offset: 0,
                fleet_instances: instances,
                facts_file: None,
                classes,
                shards: 10,
                config_file: None,
                loglevel: "info".to_owned(),
                cmdline: Vec::new(),
            },
        }
    }
}

impl ConfigBuilder {
    /// Adds a NATS server (`host:port` or a URL).
    pub fn server(mut self, url: &str) -> Result<ConfigBuilder, ConfigError> {
        let tls = self.config.tls.is_some();
        self.config.servers.push(normalise_server(url, tls)?);
        Ok(self)
    }

    /// How instances pick a server from the pool.
    pub fn server_strategy(mut self, strategy: natsclient::Strategy) -> ConfigBuilder {
        self.config.server_strategy = strategy;
        self
    }

    /// Number of `emulatedN` agents.
    pub fn agents(mut self, agents: u32) -> ConfigBuilder {
        self.config.agents = agents;
        self
    }

    /// Number of collectives (`mcollective`, `collective1`, ...).
    pub fn collectives(mut self, collectives: u32) -> ConfigBuilder {
        self.config.collectives = (0..collectives.max(1) as usize)
            .map(agents::subject::collective_name)
            .collect();
        self
    }

    /// Where `/debug/vars` and `/metrics` are served.
    pub fn http(mut self, addr: SocketAddr) -> ConfigBuilder {
        self.config.http = addr;
        self
    }

    /// How long a stop waits for connections to drain.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> ConfigBuilder {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Misbehaving instances (see [`crate::faults`]) chosen by `seed`.
    pub fn faults(mut self, faults: FaultSpec, seed: u64) -> ConfigBuilder {
        self.config.faults = faults;
        self.config.seed = seed;
        self
    }

    /// A private cluster of `members` nats-servers (without [`ConfigBuilder::server`]).
    pub fn brokers(mut self, members: u32) -> ConfigBuilder {
        self.config.brokers = Some(members.max(1));
        self
    }

    /// Splits the fleet over `workers` processes of at most `budget` instances each.
    pub fn workers(mut self, workers: Option<u32>, budget: Option<u32>) -> ConfigBuilder {
        self.config.workers = workers;
        self.config.process_budget = budget;
        self
    }

    /// Every instance publishes registration as `registration` says.
    pub fn registration(mut self, registration: RegistrationConfig) -> ConfigBuilder {
        self.config.registration = Some(registration);
        self
    }

    /// The finished configuration; refuses what [`Config::from_args`] refuses.
    pub fn build(mut self) -> Result<Config, ConfigError> {
        self.config.fleet_instances = self.config.instances;
        if self.config.instances == 0 {
            return Err(ConfigError::NoInstances);
        }
        Ok(self.config)
    }
}

/// The registration settings: flags and environment first, then the Choria config file's keys
/// (`registration`, `registerinterval`, `registration_splay`, `registration_collective`,
/// `plugin.choria.registration.<plugin>.{target,compression}`,
/// `plugin.choria.registration.file_content.data`).
fn registration(
    args: &Args,
    file: &ChoriaConfig,
) -> Result<Option<RegistrationConfig>, ConfigError> {
    use agents::registration::Kind;
    let r = &args.registration;
    let bad = |from: &'static str, reason: String| ConfigError::Registration { from, reason };
    let kind = match r.registration {
        Some(kind) => kind,
        None => {
            // go-choria takes a list of plugins; the emulator publishes the first.
            let Some(first) = file
                .list("registration")
                .into_iter()
                .find(|p| !p.is_empty())
            else {
                return Ok(None);
            };
            first
                .parse::<Kind>()
                .map_err(|e| bad("registration", e.to_string()))?
        }
    };
    let interval = match r.register_interval {
        Some(s) => s,
        None => match file.get("registerinterval") {
            Some(text) => text.trim().parse::<u64>().map_err(|_| {
                bad(
                    "registerinterval",
                    format!("must be a whole number of seconds, got {text:?}"),
                )
            })?,
            None => 300,
        },
    };
    if interval == 0 {
        return Err(bad(
            "--registerinterval",
            "must be at least 1 second".into(),
        ));
    }
    let plugin = kind.plugin();
    let mut config = RegistrationConfig::new(kind, Duration::from_secs(interval));
    config.splay = !r.no_registration_splay && file.bool("registration_splay").unwrap_or(true);
    config.collective = r
        .registration_collective
        .clone()
        .or_else(|| file.get("registration_collective").map(str::to_owned))
        .filter(|c| !c.trim().is_empty());
    if let Some(c) = &config.collective
        && (c.contains(['.', '*', '>']) || !agents::subject::is_publishable(c))
    {
        return Err(bad(
            "--registration-collective",
            format!("{c:?} is not a single subject token"),
        ));
    }
    config.target = r
        .registration_target
        .clone()
        .or_else(|| {
            file.get(&format!("plugin.choria.registration.{plugin}.target"))
                .map(str::to_owned)
        })
        .filter(|t| !t.trim().is_empty());
    if let Some(t) = &config.target
        && (t.contains(['*', '>']) || !agents::subject::is_publishable(t))
    {
        return Err(bad(
            "--registration-target",
            format!("{t:?} is not a subject one can publish to"),
        ));
    }
    config.compression = file
        .bool(&format!("plugin.choria.registration.{plugin}.compression"))
        .unwrap_or(true);
    if let Some(epoch) = r.registration_epoch {
        config.epoch_ms = epoch;
    }
    let path = r.registration_file.clone().or_else(|| {
        file.get("plugin.choria.registration.file_content.data")
            .map(PathBuf::from)
    });
    match (kind, path) {
        (Kind::FileContent, None) => {
            return Err(bad(
                "--registration filecontent",
                "needs --registration-file (or plugin.choria.registration.file_content.data)"
                    .into(),
            ));
        }
        (Kind::FileContent, Some(path)) => {
            let read = RegistrationFile::read(path.clone()).map_err(|e| {
                bad(
                    "--registration-file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            config.file = Some(read);
        }
        (Kind::InventoryContent, _) => {}
    }
    Ok(Some(config))
}

/// Accepts `host:port`, `nats://host:port` and `tls://host:port`.
pub fn normalise_server(raw: &str, tls: bool) -> Result<String, ConfigError> {
    Ok(agents::servers::normalise(raw, tls)?)
}

/// Parses `127.0.0.2`, `127.0.0.2-127.0.0.9` or `127.0.0.2-9`.
pub fn parse_bind(spec: &str) -> Result<Vec<IpAddr>, ConfigError> {
    let spec = spec.trim();
    let bad = || ConfigError::BadBind(spec.to_owned());
    match spec.split_once('-') {
        None => Ok(vec![spec.parse().map_err(|_| bad())?]),
        Some((start, end)) => {
            let start: Ipv4Addr = start.trim().parse().map_err(|_| bad())?;
            let end: Ipv4Addr = match end.trim().parse::<Ipv4Addr>() {
                Ok(ip) => ip,
                Err(_) => {
                    let last: u8 = end.trim().parse().map_err(|_| bad())?;
                    let o = start.octets();
                    Ipv4Addr::new(o[0], o[1], o[2], last)
                }
            };
            let (s, e) = (u32::from(start), u32::from(end));
            if e < s || e - s > 65_535 {
                return Err(bad());
            }
            Ok((s..=e).map(|n| IpAddr::V4(Ipv4Addr::from(n))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["emulator", "--name", "emu1"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn defaults_match_the_original() {
        let c = Config::from_args(&args(&["-i", "750"])).unwrap();
        assert_eq!(c.instances, 750);
        assert_eq!(c.agents, 1);
        assert_eq!(c.collectives, vec!["mcollective"]);
        assert_eq!(c.http.port(), 8080);
        assert!(c.servers.is_empty());
        assert!(c.tls.is_none());
    }

    #[test]
    fn collectives_and_servers() {
        let c = Config::from_args(&args(&[
            "-i",
            "1",
            "--collectives",
            "3",
            "--server",
            "a:4222",
            "--server",
            "nats://b:4223",
        ]))
        .unwrap();
        assert_eq!(
            c.collectives,
            vec!["mcollective", "collective1", "collective2"]
        );
        assert_eq!(c.servers, vec!["nats://a:4222", "nats://b:4223"]);
    }

    #[test]
    fn server_strategy_from_the_flag_or_the_config_file() {
        use natsclient::Strategy;
        let c = Config::from_args(&args(&["-i", "1"])).unwrap();
        assert_eq!(c.server_strategy, Strategy::Random);
        for (flag, want) in [
            ("random", Strategy::Random),
            ("round-robin", Strategy::RoundRobin),
            ("ordered", Strategy::Ordered),
        ] {
            let c = Config::from_args(&args(&["-i", "1", "--server-strategy", flag])).unwrap();
            assert_eq!(c.server_strategy, want);
        }
        let err = Args::try_parse_from(["emulator", "-i", "1", "--server-strategy", "fastest"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("round-robin"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.conf");
        std::fs::write(&file, "plugin.choria.randomize_middleware_hosts = false\n").unwrap();
        let path = file.to_str().unwrap();
        let c = Config::from_args(&args(&["-i", "1", "-c", path])).unwrap();
        assert_eq!(c.server_strategy, Strategy::Ordered);
        // The flag wins over the file.
        let c = Config::from_args(&args(&[
            "-i",
            "1",
            "-c",
            path,
            "--server-strategy",
            "round-robin",
        ]))
        .unwrap();
        assert_eq!(c.server_strategy, Strategy::RoundRobin);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            Config::from_args(&args(&["-i", "0"])),
            Err(ConfigError::NoInstances)
        ));
        assert!(matches!(
            Config::from_args(&args(&["-i", "1", "--server", "nohost"])),
            Err(ConfigError::BadServer(_))
        ));
        assert!(matches!(
            Config::from_args(&args(&["-i", "1", "--bind", "127.0.0.9-127.0.0.2"])),
            Err(ConfigError::BadBind(_))
        ));
        assert!(Args::try_parse_from(["emulator", "-i", "-5"]).is_err());
        assert!(Args::try_parse_from(["emulator"]).is_err());
    }

    #[test]
    fn bind_ranges() {
        assert_eq!(parse_bind("127.0.0.2-4").unwrap().len(), 3);
        assert_eq!(parse_bind("127.0.0.2-127.0.1.1").unwrap().len(), 256);
        assert_eq!(
            parse_bind("127.0.0.5").unwrap(),
            vec!["127.0.0.5".parse::<IpAddr>().unwrap()]
        );
    }
}
