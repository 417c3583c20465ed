//! The flags of `emulator measure`, and what they resolve to with a Choria config file and the
//! environment.

use std::path::{Path, PathBuf};

use agents::{ChoriaConfig, FactFilter, Filter};
use clap::{Parser, ValueEnum};

use crate::error::MeasureError;

/// Measures discovery and RPC against an emulated (or real) Choria fleet.
#[derive(Debug, Clone, Parser)]
#[command(about = "Discovery and RPC rounds against a whole fleet, every reply accounted")]
pub struct MeasureArgs {
    /// NATS server host:port or nats://host:port (repeatable). Without it: the -c file's
    /// plugin.choria.middleware_hosts, then CHORIA_SERVERS, then NATS_URL.
    #[arg(long = "server", env = "MEASURE_SERVERS", value_delimiter = ',')]
    pub servers: Vec<String>,
    /// Choria client configuration file (reads plugin.choria.middleware_hosts and
    /// main_collective).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Measure through federation: the Federation Member networks to address (comma list).
    /// Without it: CHORIA_FED_COLLECTIVE, then the -c file's
    /// plugin.choria.federation.collectives. Each request is published once per network to
    /// choria.federation.<network>.federation; the servers are then the federation network's.
    #[arg(long = "federation", value_name = "NET,...", value_delimiter = ',')]
    pub federation: Vec<String>,
    /// Collective to address (default: the -c file's main_collective, else mcollective).
    #[arg(short = 'T', long, visible_alias = "target")]
    pub collective: Option<String>,
    /// Nodes to measure: discovery stops once this many answered, and each request waits for
    /// those nodes (replies from others count as unexpected). Above what discovery finds, the
    /// difference counts as missing. Defaults to every node discovery finds.
    #[arg(long)]
    pub expect: Option<u64>,
    /// Requests per requester (closed loop) or in total (open loop).
    #[arg(long, default_value_t = 5)]
    pub rounds: u64,
    /// Requesters sending in parallel (closed loop).
    #[arg(long, default_value_t = 1)]
    pub concurrency: u64,
    /// Open loop: start this many requests per second whether or not earlier ones finished.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Agent to call.
    #[arg(long, default_value = "emulated0")]
    pub agent: String,
    /// Action to call.
    #[arg(long, default_value = "generate")]
    pub action: String,
    /// `size` input of generate: bytes of reply payload.
    #[arg(long, default_value_t = 20)]
    pub size: u64,
    /// Seconds to wait for replies to each request.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Seconds after the deadline in which replies are recorded as late.
    #[arg(long, default_value_t = 1.0)]
    pub late_window: f64,
    /// Seconds discovery waits for replies.
    #[arg(long, default_value_t = 2.0)]
    pub discovery_timeout: f64,
    /// How requests reach nodes.
    #[arg(long, value_enum, default_value_t = Mode::Broadcast)]
    pub mode: Mode,
    /// Direct mode: nodes per batch (0 = all at once).
    #[arg(long, default_value_t = 0)]
    pub batch_size: usize,
    /// Direct mode: seconds to sleep between batches.
    #[arg(long, default_value_t = 0.0)]
    pub batch_sleep: f64,
    /// Identity filter, exact or /regex/ (repeatable).
    #[arg(short = 'I', long = "identity", visible_alias = "with-identity")]
    pub identities: Vec<String>,
    /// Fact filter `name=value` or with `!= < > <= >= =~` (repeatable).
    #[arg(short = 'F', long = "fact", visible_alias = "with-fact")]
    pub facts: Vec<String>,
    /// Class filter (repeatable).
    #[arg(short = 'C', long = "class", visible_alias = "with-class")]
    pub classes: Vec<String>,
    /// Agent filter (repeatable).
    #[arg(short = 'A', long = "with-agent")]
    pub agents: Vec<String>,
    /// Compound filter expression (see docs/protocol.md for the supported subset).
    #[arg(short = 'S', long, visible_alias = "select")]
    pub compound: Option<String>,
    /// Which client's request bodies to send.
    #[arg(long, value_enum, default_value_t = ClientDialect::Go)]
    pub dialect: ClientDialect,
    /// Only discover, print the count and exit 0 when at least --expect nodes (or, without
    /// --expect, any node) answered.
    #[arg(long)]
    pub discovery_only: bool,
    /// Directory for requests.csv, times.csv, time_buckets.csv, summary.json, report.html.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Fraction of expected replies that may be lost before the exit code is 1.
    #[arg(long, default_value_t = 0.0)]
    pub tolerance: f64,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    /// Listen to registration instead of sending requests: decode and count every
    /// registration by sender for --duration; with --expect, fail when senders are missing.
    #[arg(long)]
    pub registration: bool,
    /// With --registration: subject to listen on (repeatable); default
    /// <collective>.broadcast.agent.registration.
    #[arg(
        long = "registration-subject",
        value_delimiter = ',',
        requires = "registration"
    )]
    pub registration_subjects: Vec<String>,
    /// With --registration: seconds to listen.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// With --registration and --expect N: the senders are PREFIX-0 .. PREFIX-(N-1), and the
    /// missing ones are named.
    #[arg(long, requires = "registration")]
    pub expect_prefix: Option<String>,
}

/// How a request reaches the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One message to the agent's broadcast subject.
    Broadcast,
    /// One message per discovered node to its node subject.
    Direct,
}

/// The client dialect, as a flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientDialect {
    Go,
    Ruby,
}

/// What the flags, the config file and the environment resolve to.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) servers: Vec<String>,
    pub(crate) collective: String,
    pub(crate) filter: Filter,
    /// Federation Member networks, in the order given; empty without federation.
    pub(crate) federation: Vec<String>,
}

impl MeasureArgs {
    pub(crate) fn filter(&self) -> Result<Filter, MeasureError> {
        let mut filter = Filter {
            identity: self.identities.clone(),
            cf_class: self.classes.clone(),
            agent: self.agents.clone(),
            ..Filter::default()
        };
        for fact in &self.facts {
            filter.fact.push(FactFilter::parse(fact)?);
        }
        if let Some(expr) = &self.compound {
            agents::compound::check(expr).map_err(|error| MeasureError::Compound {
                expr: expr.clone(),
                error,
            })?;
            filter.compound = vec![serde_json::json!([{ "expr": expr }])];
        }
        Ok(filter)
    }

    pub(crate) fn validate(&self) -> Result<(), MeasureError> {
        if self.rounds == 0 {
            return Err(MeasureError::flag("--rounds", "must be at least 1"));
        }
        if self.concurrency == 0 {
            return Err(MeasureError::flag("--concurrency", "must be at least 1"));
        }
        if let Some(rate) = self.rate
            && (!rate.is_finite() || rate <= 0.0)
        {
            return Err(MeasureError::flag(
                "--rate",
                format!("must be a positive number of requests per second, got {rate}"),
            ));
        }
        if self.expect == Some(0) {
            return Err(MeasureError::flag("--expect", "must be at least 1"));
        }
        for (name, v) in [
            ("--timeout", self.timeout),
            ("--late-window", self.late_window),
            ("--discovery-timeout", self.discovery_timeout),
            ("--batch-sleep", self.batch_sleep),
            ("--tolerance", self.tolerance),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(MeasureError::flag(
                    name,
                    format!("must be a non-negative number, got {v}"),
                ));
            }
        }
        if self.tolerance > 1.0 {
            return Err(MeasureError::flag(
                "--tolerance",
                "is a fraction between 0 and 1",
            ));
        }
        Ok(())
    }

    /// Every check that needs no broker: flags, filter, servers, collective, `--out`.
    pub(crate) fn plan(&self, env: impl Fn(&str) -> Option<String>) -> Result<Plan, MeasureError> {
        self.validate()?;
        let filter = self.filter()?;
        let file = match &self.config {
            Some(path) => ChoriaConfig::load(path)?,
            None => ChoriaConfig::default(),
        };
        let federation = self.federation_networks(&file, &env)?;
        let federation_hosts = file.list("plugin.choria.federation_middleware_hosts");
        let servers = if !federation.is_empty()
            && !federation_hosts.is_empty()
            && self.servers.iter().all(|s| s.trim().is_empty())
        {
            // A federated Choria client connects to the federation network.
            federation_hosts
                .iter()
                .map(|h| agents::servers::normalise(h, false))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            let (servers, source) =
                agents::servers::resolve_with(&self.servers, &file, false, &env)?;
            if source == agents::servers::Source::None {
                return Err(MeasureError::NoServers);
            }
            servers
        };
        if servers.is_empty() {
            return Err(MeasureError::NoServers);
        }
        let collective = self
            .collective
            .clone()
            .or_else(|| file.get("main_collective").map(str::to_owned))
            .unwrap_or_else(|| "mcollective".to_owned());
        if let Some(dir) = &self.out {
            check_writable(dir)?;
        }
        Ok(Plan {
            servers,
            collective,
            filter,
            federation,
        })
    }

    /// The federation networks: `--federation`, else `CHORIA_FED_COLLECTIVE`, else the file's
    /// `plugin.choria.federation.collectives` (what a Choria client reads). Each must be a
    /// single subject token, and none may repeat.
    fn federation_networks(
        &self,
        file: &ChoriaConfig,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, MeasureError> {
        let flags: Vec<String> = self
            .federation
            .iter()
            .flat_map(|s| agents::servers::split_list(s))
            .collect();
        let (networks, from) = if !flags.is_empty() {
            (flags, "--federation")
        } else if let Some(list) = env("CHORIA_FED_COLLECTIVE")
            .map(|v| agents::servers::split_list(&v))
            .filter(|l| !l.is_empty())
        {
            (list, "CHORIA_FED_COLLECTIVE")
        } else {
            (
                file.list("plugin.choria.federation.collectives"),
                "plugin.choria.federation.collectives",
            )
        };
        let mut seen = std::collections::BTreeSet::new();
        for net in &networks {
            let bad = net
                .bytes()
                .any(|b| !b.is_ascii_graphic() || matches!(b, b'.' | b'*' | b'>'));
            if bad {
                return Err(MeasureError::BadFederation {
                    from,
                    reason: format!(
                        "network {net:?} is not a single subject token (no dots, spaces or wildcards)"
                    ),
                });
            }
            if !seen.insert(net.as_str()) {
                return Err(MeasureError::BadFederation {
                    from,
                    reason: format!("network {net:?} is named twice"),
                });
            }
        }
        Ok(networks)
    }
}

/// Creates `dir` and a file in it, so that a run is not lost to an unwritable `--out`.
fn check_writable(dir: &Path) -> Result<(), MeasureError> {
    let fail = |source| MeasureError::OutNotWritable {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".measure-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)?;
    Ok(())
}
