//! Command-line flags. Every flag can also be set from an `EMULATOR_*` environment variable.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser};

use crate::faults::FaultSpec;

/// Emulates a network of Choria daemons, each with its own NATS connection.
///
/// Also: `emulator measure --help` (discovery and RPC rounds with accounting) and
/// `emulator scrape --help` (time series of /debug/vars and nats-server monitoring).
#[derive(Debug, Clone, Parser)]
#[command(name = "emulator", version, about, long_about = None)]
pub struct Args {
    /// Prefix of instance identities (`<name>-<i>`); defaults to the host name.
    #[arg(long, env = "EMULATOR_NAME")]
    pub name: Option<String>,

    /// Number of emulated Choria daemons to start.
    // Required; an `Option` only so that `emulator measure ...` parses without it.
    #[arg(short = 'i', long, env = "EMULATOR_INSTANCES", required = true)]
    pub instances: Option<u32>,

    /// Number of emulated agents per daemon (`emulated0` .. `emulated{N-1}`).
    #[arg(short = 'a', long, env = "EMULATOR_AGENTS", default_value_t = 1)]
    pub agents: u32,

    /// Number of sub-collectives (`mcollective`, `collective1`, ...).
    #[arg(long, env = "EMULATOR_COLLECTIVES", default_value_t = 1)]
    pub collectives: u32,

    /// Choria-style `key = value` configuration file (see docs/emulator.md for honoured keys).
    #[arg(short = 'c', long, env = "EMULATOR_CONFIG")]
    pub config: Option<PathBuf>,

    /// NATS server `host:port` (repeatable); without any, a private nats-server is started.
    #[arg(long = "server", env = "EMULATOR_SERVERS", value_delimiter = ',')]
    pub servers: Vec<String>,

    /// Port of the HTTP listener serving /debug/vars and /metrics.
    #[arg(short = 'p', long, env = "EMULATOR_HTTP_PORT", default_value_t = 8080)]
    pub http_port: u16,

    /// Address the HTTP listener binds to.
    #[arg(long, env = "EMULATOR_HTTP_ADDRESS", default_value = "0.0.0.0")]
    pub http_address: IpAddr,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub connect: ConnectArgs,

    #[command(flatten)]
    pub node: NodeArgs,

    /// Misbehaving instances, e.g. `slow=10%:250ms,fail=5%,drop=3%,flap=2%:30s` (see
    /// docs/emulator.md); which instances is decided by --seed.
    #[arg(long, env = "EMULATOR_FAULTS", value_parser = clap::value_parser!(FaultSpec))]
    pub faults: Option<FaultSpec>,

    /// Seed of the choice of faulty instances: the same seed picks the same identities.
    #[arg(long, env = "EMULATOR_SEED", default_value_t = 0)]
    pub seed: u64,

    #[command(flatten)]
    pub registration: RegistrationArgs,

    #[command(flatten)]
    pub workers: WorkerArgs,

    /// Seconds to wait for connections to drain on shutdown before exiting anyway.
    #[arg(long, env = "EMULATOR_SHUTDOWN_TIMEOUT", default_value_t = 10.0)]
    pub shutdown_timeout: f64,

    /// Log level or tracing filter (RUST_LOG wins when set).
    #[arg(long, env = "EMULATOR_LOGLEVEL", default_value = "info")]
    pub loglevel: String,
}

/// TLS on the NATS connections.
#[derive(Debug, Clone, ClapArgs)]
pub struct TlsArgs {
    /// Use TLS on the NATS connections.
    #[arg(long, env = "EMULATOR_TLS")]
    pub tls: bool,

    /// Verify the server certificate (needs --tls-ca); without it any certificate is accepted.
    #[arg(long, env = "EMULATOR_VERIFY", requires = "tls")]
    pub verify: bool,

    /// CA certificate (PEM) used to verify the server.
    #[arg(long, env = "EMULATOR_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) presented to the server.
    #[arg(long, env = "EMULATOR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of the client certificate.
    #[arg(long, env = "EMULATOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// How the fleet connects.
#[derive(Debug, Clone, ClapArgs)]
pub struct ConnectArgs {
    /// Connections started per second during the ramp.
    #[arg(long, env = "EMULATOR_CONNECT_RATE", default_value_t = 10_000)]
    pub connect_rate: u32,

    /// Connections in flight (connecting and subscribing) at once, per server of the pool
    /// (each server has its own accept queue), during the ramp and when reconnecting.
    #[arg(long, env = "EMULATOR_CONNECT_CONCURRENCY", default_value_t = 512)]
    pub connect_concurrency: u32,

    /// Local source addresses, a comma list or a range (`127.0.0.2-127.0.0.9`); instances use
    /// them in turn, to go past ~28k connections per broker address.
    #[arg(long, env = "EMULATOR_BIND", value_delimiter = ',')]
    pub bind: Vec<String>,

    /// How each instance picks a server: `random` (the NATS and Choria default), `round-robin`
    /// (an even spread, also after failures) or `ordered` (the first reachable server in list
    /// order; fails back only on the next reconnect). Config file:
    /// `plugin.choria.randomize_middleware_hosts` (true = random, false = ordered).
    #[arg(long, env = "EMULATOR_SERVER_STRATEGY", value_parser = parse_strategy)]
    pub server_strategy: Option<natsclient::Strategy>,

    /// Seconds to wait for every instance to connect; when they have not, stop and exit
    /// non-zero. Without it the instances retry for ever, as real daemons do.
    #[arg(long, env = "EMULATOR_CONNECT_TIMEOUT")]
    pub connect_timeout: Option<f64>,

    /// Largest request body accepted, in bytes; bigger ones are counted as invalid.
    #[arg(long, env = "EMULATOR_MAX_MESSAGE", default_value_t = 1024 * 1024)]
    pub max_message: usize,
}

/// What each emulated node looks like to filters.
#[derive(Debug, Clone, ClapArgs)]
pub struct NodeArgs {
    /// JSON file of extra facts; string values may use {index}, {identity}, {name}, {shard}.
    #[arg(long, env = "EMULATOR_FACTS")]
    pub facts: Option<PathBuf>,

    /// Classes of every node (comma list); may use the same placeholders as facts.
    #[arg(
        long,
        env = "EMULATOR_CLASSES",
        value_delimiter = ',',
        default_value = "emulator,role::emulated,shard_{shard}"
    )]
    pub classes: Vec<String>,

    /// Number of shards: fact `shard` and class `shard_N` are the instance index modulo this.
    #[arg(long, env = "EMULATOR_SHARDS", default_value_t = 10)]
    pub shards: u32,
}

/// Registration: what every instance publishes about itself (see docs/emulator.md).
#[derive(Debug, Clone, ClapArgs)]
pub struct RegistrationArgs {
    /// Publish registration data from every instance: `inventorycontent` (agents, classes,
    /// facts, collectives, build info) or `filecontent` (a file); go-choria's
    /// `inventory_content`/`file_content` work too. Config file: `registration`.
    #[arg(long, env = "EMULATOR_REGISTRATION", value_parser = parse_registration)]
    pub registration: Option<agents::registration::Kind>,

    /// The file `filecontent` publishes. Config file:
    /// `plugin.choria.registration.file_content.data`.
    #[arg(long, env = "EMULATOR_REGISTRATION_FILE")]
    pub registration_file: Option<PathBuf>,

    /// Seconds between two registrations of an instance (default 300). Config file:
    /// `registerinterval`.
    #[arg(long = "registerinterval", env = "EMULATOR_REGISTERINTERVAL")]
    pub register_interval: Option<u64>,

    /// Publish each instance's first registration at start instead of after a random delay
    /// within the interval (a registration storm). Config file: `registration_splay = false`.
    #[arg(long, env = "EMULATOR_NO_REGISTRATION_SPLAY")]
    pub no_registration_splay: bool,

    /// Collective the registration requests are addressed to (default: the main
    /// collective). Config file: `registration_collective`.
    #[arg(long, env = "EMULATOR_REGISTRATION_COLLECTIVE")]
    pub registration_collective: Option<String>,

    /// Subject to publish registration to instead of
    /// `<collective>.broadcast.agent.registration`. Config file:
    /// `plugin.choria.registration.inventory_content.target` (or `file_content.target`).
    #[arg(long, env = "EMULATOR_REGISTRATION_TARGET")]
    pub registration_target: Option<String>,

    /// (Set by the supervisor.) Unix milliseconds every worker's registration schedule is
    /// counted from, so that the workers' phases line up.
    #[arg(long, hide = true)]
    pub registration_epoch: Option<u64>,
}

fn parse_registration(s: &str) -> Result<agents::registration::Kind, String> {
    s.parse()
        .map_err(|e: agents::registration::UnknownKind| e.to_string())
}

/// Splitting a fleet over worker processes.
#[derive(Debug, Clone, ClapArgs)]
pub struct WorkerArgs {
    /// Worker processes to split the fleet over; by default as many as the open-file limit
    /// needs (one process when the fleet fits).
    #[arg(long, env = "EMULATOR_WORKERS")]
    pub workers: Option<u32>,

    /// How often a worker that dies is restarted before the fleet stops with an error.
    #[arg(long, env = "EMULATOR_WORKER_RESTARTS", default_value_t = 3)]
    pub worker_restarts: u32,

    /// Members of the private nats-server cluster (without --server); by default as many as
    /// the fleet needs, one when one server can hold it.
    #[arg(long, env = "EMULATOR_BROKERS")]
    pub brokers: Option<u32>,

    /// Instances one process may hold; by default what its open-file limit allows.
    #[arg(long, env = "EMULATOR_PROCESS_BUDGET")]
    pub process_budget: Option<u32>,

    /// (Set by the supervisor.) Index of this worker's first instance in the fleet.
    #[arg(long, hide = true, default_value_t = 0)]
    pub worker_offset: u32,

    /// (Set by the supervisor.) Instances of the whole fleet this worker is part of.
    #[arg(long, hide = true)]
    pub fleet_instances: Option<u32>,
}

fn parse_strategy(s: &str) -> Result<natsclient::Strategy, String> {
    s.parse().map_err(|e: natsclient::Error| e.to_string())
}
