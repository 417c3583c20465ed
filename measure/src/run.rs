//! `emulator measure`: discovery and RPC rounds against a whole fleet, every reply accounted.
//!
//! Stages: check the flags (and that `--out` can be written) → connect → discover (the
//! identities every later request is checked against) → requests (closed loop: `--concurrency`
//! requesters each sending `--rounds` requests; open loop: `--rate` requests per second) →
//! [`account`] each request → [`results`] (CSV, JSON, HTML) → summary table and exit code.
//! SIGINT or SIGTERM stops sending, cuts the requests in flight short and goes on from
//! accounting with what is in.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agents::client::{Call, Client, ClientOptions, Dialect, Targets};
use agents::{ChoriaConfig, FactFilter, Filter};
use clap::{Parser, ValueEnum};
use tokio::sync::watch;

use crate::account::{RequestAccount, account};
use crate::error::MeasureError;
use crate::progress::progress;
use crate::results::{self, Summary};
use crate::signals::{self, Interrupts};

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
struct Plan {
    servers: Vec<String>,
    collective: String,
    filter: Filter,
}

impl MeasureArgs {
    fn filter(&self) -> Result<Filter, MeasureError> {
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

    fn validate(&self) -> Result<(), MeasureError> {
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
    fn plan(&self, env: impl Fn(&str) -> Option<String>) -> Result<Plan, MeasureError> {
        self.validate()?;
        let filter = self.filter()?;
        let file = match &self.config {
            Some(path) => ChoriaConfig::load(path)?,
            None => ChoriaConfig::default(),
        };
        let (servers, source) = agents::servers::resolve_with(&self.servers, &file, false, env)?;
        if source == agents::servers::Source::None || servers.is_empty() {
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
        })
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

/// Runs the measurement; returns the process exit code.
pub async fn run(args: MeasureArgs) -> Result<i32, MeasureError> {
    let plan = args.plan(|name| std::env::var(name).ok())?;
    let interrupts = signals::listen("measure")?;
    let servers = plan.servers;
    let options = ClientOptions {
        collective: plan.collective.clone(),
        dialect: match args.dialect {
            ClientDialect::Go => Dialect::Go,
            ClientDialect::Ruby => Dialect::Ruby,
        },
        ..ClientOptions::default()
    };
    let plain = args.quiet || args.json;
    let connect = tokio::time::timeout(Duration::from_secs(10), Client::connect(&servers, options));
    let client = tokio::select! {
        connected = connect => connected.map_err(|_| MeasureError::ConnectTimeout {
            servers: servers.join(","),
        })??,
        () = interrupts.wait() => {
            let code = interrupts.received().map_or(1, |i| i.exit_code());
            eprintln!("interrupted while connecting; nothing was measured");
            return Ok(code);
        }
    };
    let filter = plan.filter;

    let discovery_started = Instant::now();
    let mut ping = Call::discovery(
        filter.clone(),
        Duration::from_secs_f64(args.discovery_timeout),
    );
    ping.expected = args.expect.map(|e| e as usize);
    let mut discovered = client
        .call_until(&ping, Some(interrupts.stop.clone()))
        .await?
        .senders();
    if let Some(n) = args.expect {
        // Discovery ended once N answered; replies already in when it ended are not measured.
        discovered.truncate(n as usize);
    }
    let discovery_time = discovery_started.elapsed();
    if !plain {
        eprintln!(
            "discovered {} nodes in {:.3}s",
            discovered.len(),
            discovery_time.as_secs_f64()
        );
    }
    if args.discovery_only {
        return Ok(discovery_only(
            &args,
            &discovered,
            discovery_time,
            &interrupts,
        ));
    }
    let interrupted_early = interrupts.received().is_some();
    if discovered.is_empty() && args.expect.is_none() && !interrupted_early {
        return Err(MeasureError::NoNodes {
            seconds: args.discovery_timeout,
            servers: servers.join(","),
        });
    }
    let expected: Arc<BTreeSet<String>> = Arc::new(discovered.iter().cloned().collect());
    let expect = args.expect.map_or(expected.len(), |e| e as usize);

    let mut data = serde_json::Map::new();
    data.insert("size".into(), serde_json::json!(args.size));
    let targets = match args.mode {
        Mode::Broadcast => Targets::Broadcast,
        Mode::Direct => Targets::Direct(discovered.clone()),
    };
    let mut call = Call::rpc(
        &args.agent,
        &args.action,
        data,
        targets,
        Duration::from_secs_f64(args.timeout),
    );
    call.filter = filter;
    // The request ends when every discovered node answered (or at the deadline); replies from
    // other senders never stand in for them.
    call.expected_senders = Some(Arc::clone(&expected));
    call.late_window = Duration::from_secs_f64(args.late_window);
    let call = Arc::new(call);

    let total = match args.rate {
        Some(_) => args.rounds,
        None => args.rounds * args.concurrency,
    };
    let bar = progress(total, plain, "requests");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let spawn = |tasks: &mut tokio::task::JoinSet<_>, round: usize, worker: usize| {
        let client = client.clone();
        let call = Arc::clone(&call);
        let expected = Arc::clone(&expected);
        let batch = (args.batch_size, args.batch_sleep);
        let stop = interrupts.stop.clone();
        tasks.spawn(async move {
            let result = send(&client, &call, batch, &expected, expect, stop).await;
            result.map(|mut a| {
                a.round = round;
                a.worker = worker;
                a
            })
        });
    };
    let joined = |done: Result<Result<RequestAccount, MeasureError>, tokio::task::JoinError>| {
        done.map_err(|e| MeasureError::Task(e.to_string()))?
    };
    let mut accounts = Vec::new();
    if !interrupted_early {
        match args.rate {
            Some(rate) => {
                for i in 0..args.rounds as usize {
                    let due = tokio::time::Instant::from_std(started)
                        + Duration::from_secs_f64(i as f64 / rate);
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = interrupts.wait() => break,
                    }
                    spawn(&mut tasks, i + 1, 1);
                }
                while let Some(done) = tasks.join_next().await {
                    accounts.push(joined(done)?);
                    bar.inc(1);
                }
            }
            None => {
                // Closed loop: each worker sends its next request when the previous one
                // finished.
                let mut next_round = vec![1usize; args.concurrency as usize];
                for worker in 0..args.concurrency as usize {
                    spawn(&mut tasks, 1, worker + 1);
                }
                while let Some(done) = tasks.join_next().await {
                    let a = joined(done)?;
                    let worker = a.worker;
                    accounts.push(a);
                    bar.inc(1);
                    if next_round[worker - 1] < args.rounds as usize
                        && interrupts.received().is_none()
                    {
                        next_round[worker - 1] += 1;
                        spawn(&mut tasks, next_round[worker - 1], worker);
                    }
                }
            }
        }
    }
    let wall = started.elapsed();
    bar.finish_and_clear();
    accounts.sort_by_key(|a| (a.round, a.worker));
    for (i, a) in accounts.iter_mut().enumerate() {
        a.request = i + 1;
    }
    let mut summary = Summary::new(&accounts, discovered.len(), discovery_time, wall, &args);
    summary.set_connection(client.health());
    let interrupted = interrupts.received();
    summary.set_interrupted(interrupted, total as usize);
    let written = match &args.out {
        Some(dir) => results::write_all(dir, &accounts, &summary)
            .map_err(|(path, source)| MeasureError::Write { path, source }),
        None => Ok(()),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary)
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        print!("{}", summary.table());
        if let (Some(dir), Ok(())) = (&args.out, &written) {
            println!("results in {}", dir.display());
        }
    }
    if let Some(signal) = interrupted {
        if let Err(e) = written {
            eprintln!("error: {e}");
        }
        return Ok(signal.exit_code());
    }
    written?;
    if !summary.accounting_closes {
        eprintln!("the accounting does not close: these numbers cannot be trusted");
        return Ok(1);
    }
    let lost = summary.lost_fraction();
    if lost > args.tolerance {
        if !args.json {
            eprintln!(
                "lost {:.4}% of expected replies, above the tolerance of {:.4}%",
                lost * 100.0,
                args.tolerance * 100.0
            );
        }
        return Ok(1);
    }
    Ok(0)
}

/// `--discovery-only`: the count, and exit 0 when enough nodes answered.
fn discovery_only(
    args: &MeasureArgs,
    discovered: &[String],
    discovery_time: Duration,
    interrupts: &Interrupts,
) -> i32 {
    let wanted = args.expect.map(|e| e as usize);
    let interrupted = interrupts.received();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "discovered": discovered.len(),
                "expected": wanted,
                "seconds": discovery_time.as_secs_f64(),
                "interrupted": interrupted.map(|i| i.name()),
            })
        );
    } else {
        match wanted {
            Some(n) => println!("discovered {} of {n} expected nodes", discovered.len()),
            None => println!("discovered {} nodes", discovered.len()),
        }
        if let Some(signal) = interrupted {
            println!("interrupted by {}", signal.name());
        }
    }
    if let Some(signal) = interrupted {
        return signal.exit_code();
    }
    i32::from(discovered.len() < wanted.unwrap_or(1))
}

async fn send(
    client: &Client,
    call: &Call,
    (batch_size, batch_sleep): (usize, f64),
    expected: &BTreeSet<String>,
    expect: usize,
    stop: watch::Receiver<bool>,
) -> Result<RequestAccount, MeasureError> {
    let discovery = call.agent == "discovery";
    let batches = client
        .call_batched_until(
            call,
            batch_size,
            Duration::from_secs_f64(batch_sleep),
            Some(stop),
        )
        .await?;
    if let [(_, collected)] = batches.as_slice() {
        return Ok(account(collected, expected, expect, discovery));
    }
    // Each batch is its own request; the accounts merge into one.
    let mut merged: Option<RequestAccount> = None;
    for (chunk, collected) in &batches {
        let in_batch: BTreeSet<String> = chunk.iter().cloned().collect();
        let a = account(collected, &in_batch, chunk.len(), discovery);
        merged = Some(match merged {
            None => a,
            Some(m) => merge(m, a),
        });
    }
    let mut m = merged.unwrap_or_default();
    // Every discovered node was addressed; keep the --expect surplus as unknown missing replies.
    m.missing_unknown = expect.saturating_sub(expected.len());
    m.expected = m.answered + m.missing_total();
    Ok(m)
}

fn merge(mut a: RequestAccount, b: RequestAccount) -> RequestAccount {
    let offset = a.request_ns;
    a.requestid = format!("{},{}", a.requestid, b.requestid);
    a.expected += b.expected;
    a.published += b.published;
    a.publish_ns += b.publish_ns;
    a.request_ns += b.request_ns;
    a.messages += b.messages;
    a.answered += b.answered;
    a.ok += b.ok;
    for (code, n) in b.failed {
        *a.failed.entry(code).or_default() += n;
    }
    a.duplicates += b.duplicates;
    a.late += b.late;
    a.bad_hash += b.bad_hash;
    a.malformed += b.malformed;
    a.unexpected += b.unexpected;
    a.missing.extend(b.missing);
    a.interrupted |= b.interrupted;
    a.times
        .extend(b.times.into_iter().map(|(id, ns)| (id, ns + offset)));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_numbers_are_refused() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["measure", "--server", "127.0.0.1:4222"];
            argv.extend_from_slice(extra);
            MeasureArgs::try_parse_from(argv).unwrap().validate()
        };
        assert!(parse(&[]).is_ok());
        assert!(parse(&["--rounds", "0"]).is_err());
        assert!(parse(&["--expect", "0"]).is_err());
        assert!(parse(&["--rate", "0"]).is_err());
        assert!(parse(&["--timeout=-1"]).is_err());
        assert!(parse(&["--tolerance", "2"]).is_err());
        assert!(
            MeasureArgs::try_parse_from(["measure", "--server", "x:1", "--expect", "-3"]).is_err()
        );
        let usage = parse(&["--rate", "0"]).unwrap_err();
        assert!(usage.is_usage());
        assert_eq!(usage.exit_code(), 2);
        assert_eq!(
            usage.to_string(),
            "--rate must be a positive number of requests per second, got 0"
        );
    }

    fn args(argv: &[&str]) -> MeasureArgs {
        let mut all = vec!["measure"];
        all.extend_from_slice(argv);
        MeasureArgs::try_parse_from(all).unwrap()
    }

    #[test]
    fn choria_short_filter_flags() {
        let a = args(&[
            "-I",
            "web-1",
            "-F",
            "country=uk",
            "-C",
            "base",
            "-A",
            "emulated0",
            "-S",
            "with('base')",
            "-T",
            "other",
            "-c",
            "/dev/null",
        ]);
        assert_eq!(a.identities, vec!["web-1"]);
        assert_eq!(a.facts, vec!["country=uk"]);
        assert_eq!(a.classes, vec!["base"]);
        assert_eq!(a.agents, vec!["emulated0"]);
        assert_eq!(a.compound.as_deref(), Some("with('base')"));
        assert_eq!(a.collective.as_deref(), Some("other"));
        assert_eq!(a.config.as_deref(), Some(Path::new("/dev/null")));
        let long = args(&["--with-identity", "x", "--target", "c", "--select", "true"]);
        assert_eq!(
            (long.identities, long.collective, long.compound),
            (
                vec!["x".to_owned()],
                Some("c".to_owned()),
                Some("true".to_owned())
            )
        );
    }

    #[test]
    fn servers_and_collective_come_from_flags_file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.conf");
        std::fs::write(
            &file,
            "plugin.choria.middleware_hosts = c1:4222\nmain_collective = lab\n",
        )
        .unwrap();
        let env = |name: &str| match name {
            "CHORIA_SERVERS" => Some("e1:4222".to_owned()),
            "NATS_URL" => Some("nats://n1:4222".to_owned()),
            _ => None,
        };
        let config = file.display().to_string();
        let p = args(&["--server", "f1:1", "-c", &config])
            .plan(env)
            .unwrap();
        assert_eq!(p.servers, vec!["nats://f1:1"]);
        assert_eq!(p.collective, "lab");
        let p = args(&["-c", &config, "-T", "mine"]).plan(env).unwrap();
        assert_eq!(
            (p.servers, p.collective),
            (vec!["nats://c1:4222".to_owned()], "mine".to_owned())
        );
        let p = args(&[]).plan(env).unwrap();
        assert_eq!(
            (p.servers, p.collective),
            (vec!["nats://e1:4222".to_owned()], "mcollective".to_owned())
        );
        let p = args(&[])
            .plan(|n| (n == "NATS_URL").then(|| "n2:1".to_owned()))
            .unwrap();
        assert_eq!(p.servers, vec!["nats://n2:1"]);
        let none = args(&[]).plan(|_| None).unwrap_err();
        assert!(matches!(none, MeasureError::NoServers), "{none}");
        assert_eq!(none.exit_code(), 2);
        let missing = args(&["-c", "/nonexistent/client.conf"])
            .plan(env)
            .unwrap_err();
        assert!(matches!(missing, MeasureError::Config(_)), "{missing}");
        assert_eq!(missing.exit_code(), 2);
        let bad = args(&["--server", "nohost"]).plan(env).unwrap_err();
        assert!(matches!(bad, MeasureError::Server(_)), "{bad}");
    }

    #[test]
    fn a_bad_compound_names_its_column_before_anything_is_sent() {
        let e = args(&["--server", "a:1", "-S", "with('x') && (identity"])
            .plan(|_| None)
            .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "invalid --compound filter at column 23: expected `)`, found the end of the expression\n  with('x') && (identity\n                        ^"
        );
    }

    #[test]
    fn an_unwritable_out_is_a_usage_error() {
        let e = args(&["--server", "a:1", "--out", "/proc/nope"])
            .plan(|_| None)
            .unwrap_err();
        assert!(matches!(e, MeasureError::OutNotWritable { .. }), "{e}");
        assert_eq!(e.exit_code(), 2);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a/b");
        args(&["--server", "a:1", "--out", &out.display().to_string()])
            .plan(|_| None)
            .unwrap();
        assert!(out.is_dir(), "created");
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            0,
            "the probe is gone"
        );
    }
}
