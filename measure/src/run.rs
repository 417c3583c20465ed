//! `emulator measure`: discovery and RPC rounds against a whole fleet, every reply accounted.
//!
//! Stages: connect → discover (the identities every later request is checked against) →
//! requests (closed loop: `--concurrency` requesters each sending `--rounds` requests; open loop:
//! `--rate` requests per second) → [`account`] each request → [`results`] (CSV, JSON, HTML) →
//! summary table and exit code.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agents::client::{Call, Client, ClientOptions, Dialect, Targets};
use agents::{FactFilter, Filter};
use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};

use crate::account::{RequestAccount, account};
use crate::progress::progress;
use crate::results::{self, Summary};

/// Measures discovery and RPC against an emulated (or real) Choria fleet.
#[derive(Debug, Clone, Parser)]
#[command(about = "Discovery and RPC rounds against a whole fleet, every reply accounted")]
pub struct MeasureArgs {
    /// NATS server host:port or nats://host:port (repeatable).
    #[arg(
        long = "server",
        env = "MEASURE_SERVERS",
        value_delimiter = ',',
        required = true
    )]
    pub servers: Vec<String>,
    /// Collective to address.
    #[arg(long, default_value = "mcollective")]
    pub collective: String,
    /// Replies expected per request; defaults to the number of nodes discovery finds.
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
    #[arg(long = "identity")]
    pub identities: Vec<String>,
    /// Fact filter `name=value` or with `!= < > <= >= =~` (repeatable).
    #[arg(long = "fact")]
    pub facts: Vec<String>,
    /// Class filter (repeatable).
    #[arg(long = "class")]
    pub classes: Vec<String>,
    /// Agent filter (repeatable).
    #[arg(long = "with-agent")]
    pub agents: Vec<String>,
    /// Compound filter expression (see docs/protocol.md for the supported subset).
    #[arg(long)]
    pub compound: Option<String>,
    /// Which client's request bodies to send.
    #[arg(long, value_enum, default_value_t = ClientDialect::Go)]
    pub dialect: ClientDialect,
    /// Only discover, print the count and exit 0 when at least --expect nodes answered.
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

impl MeasureArgs {
    fn filter(&self) -> anyhow::Result<Filter> {
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
            filter.compound = vec![serde_json::json!([{ "expr": expr }])];
        }
        Ok(filter)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.rounds == 0 {
            bail!("--rounds must be at least 1");
        }
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if let Some(rate) = self.rate
            && (!rate.is_finite() || rate <= 0.0)
        {
            bail!("--rate must be a positive number of requests per second");
        }
        if self.expect == Some(0) {
            bail!("--expect must be at least 1");
        }
        for (name, v) in [
            ("--timeout", self.timeout),
            ("--late-window", self.late_window),
            ("--discovery-timeout", self.discovery_timeout),
            ("--batch-sleep", self.batch_sleep),
            ("--tolerance", self.tolerance),
        ] {
            if !v.is_finite() || v < 0.0 {
                bail!("{name} must be a non-negative number, got {v}");
            }
        }
        if self.tolerance > 1.0 {
            bail!("--tolerance is a fraction between 0 and 1");
        }
        Ok(())
    }
}

/// Runs the measurement; returns the process exit code.
pub async fn run(args: MeasureArgs) -> anyhow::Result<i32> {
    args.validate()?;
    let servers: Vec<String> = args
        .servers
        .iter()
        .map(|s| agents::servers::normalise(s, false))
        .collect::<Result<_, _>>()?;
    let filter = args.filter()?;
    let options = ClientOptions {
        collective: args.collective.clone(),
        dialect: match args.dialect {
            ClientDialect::Go => Dialect::Go,
            ClientDialect::Ruby => Dialect::Ruby,
        },
        ..ClientOptions::default()
    };
    let client = tokio::time::timeout(Duration::from_secs(10), Client::connect(&servers, options))
        .await
        .with_context(|| format!("timed out connecting to {}", servers.join(",")))??;

    let discovery_started = Instant::now();
    let discovered = client
        .discover(
            filter.clone(),
            Duration::from_secs_f64(args.discovery_timeout),
            args.expect.map(|e| e as usize),
        )
        .await?;
    let discovery_time = discovery_started.elapsed();
    let plain = args.quiet || args.json;
    if !plain {
        eprintln!(
            "discovered {} nodes in {:.3}s",
            discovered.len(),
            discovery_time.as_secs_f64()
        );
    }
    if args.discovery_only {
        let wanted = args.expect.unwrap_or(1) as usize;
        if args.json {
            println!(
                "{}",
                serde_json::json!({"discovered": discovered.len(), "expected": wanted, "seconds": discovery_time.as_secs_f64()})
            );
        } else {
            println!("discovered {} of {wanted} expected nodes", discovered.len());
        }
        return Ok(i32::from(discovered.len() < wanted));
    }
    if discovered.is_empty() && args.expect.is_none() {
        bail!(
            "discovery found no nodes matching the filter within {}s (is the fleet running and connected to {}?)",
            args.discovery_timeout,
            servers.join(",")
        );
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
    call.expected = Some(expect);
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
        tasks.spawn(async move {
            let result = send(&client, &call, batch, &expected, expect).await;
            result.map(|mut a| {
                a.round = round;
                a.worker = worker;
                a
            })
        });
    };
    let mut accounts = Vec::new();
    match args.rate {
        Some(rate) => {
            for i in 0..args.rounds as usize {
                let due = tokio::time::Instant::from_std(started)
                    + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due).await;
                spawn(&mut tasks, i + 1, 1);
            }
            while let Some(done) = tasks.join_next().await {
                accounts.push(done??);
                bar.inc(1);
            }
        }
        None => {
            // Closed loop: each worker sends its next request when the previous one finished.
            let mut next_round = vec![1usize; args.concurrency as usize];
            for worker in 0..args.concurrency as usize {
                spawn(&mut tasks, 1, worker + 1);
            }
            while let Some(done) = tasks.join_next().await {
                let a = done??;
                let worker = a.worker;
                accounts.push(a);
                bar.inc(1);
                if next_round[worker - 1] < args.rounds as usize {
                    next_round[worker - 1] += 1;
                    spawn(&mut tasks, next_round[worker - 1], worker);
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
    let summary = Summary::new(&accounts, discovered.len(), discovery_time, wall, &args);
    if let Some(dir) = &args.out {
        results::write_all(dir, &accounts, &summary)
            .with_context(|| format!("writing results to {}", dir.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.table());
        if let Some(dir) = &args.out {
            println!("results in {}", dir.display());
        }
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

async fn send(
    client: &Client,
    call: &Call,
    (batch_size, batch_sleep): (usize, f64),
    expected: &BTreeSet<String>,
    expect: usize,
) -> anyhow::Result<RequestAccount> {
    let discovery = call.agent == "discovery";
    let batches = client
        .call_batched(call, batch_size, Duration::from_secs_f64(batch_sleep))
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
    }
}
