//! `emulator measure`: discovery and RPC rounds against a whole fleet, every reply accounted.
//!
//! Stages: check the flags (and that `--out` can be written) → connect → discover (the
//! identities every later request is checked against) → requests (closed loop: `--concurrency`
//! requesters each sending `--rounds` requests; open loop: `--rate` requests per second) →
//! [`account`] each request (meanwhile `--broker-monitor` samples the broker) → [`results`]
//! (CSV, JSON, HTML) → summary table and exit code.
//! SIGINT or SIGTERM stops sending, cuts the requests in flight short and goes on from
//! accounting with what is in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agents::client::{Call, Client, ClientOptions, Dialect, ReplyOutcome, Targets};
use tokio::sync::watch;

use crate::account::{RequestAccount, account};
pub use crate::args::{ClientDialect, MeasureArgs, Mode};
use crate::error::MeasureError;
use crate::monitor::{self, Sampler};
use crate::progress::progress;
use crate::results::{self, Summary};
use crate::signals::{self, Interrupts};
use crate::story::BrokerTimeline;

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
    let federation = plan.federation;

    let discovery_started = Instant::now();
    let Discovered {
        all: discovered,
        by_network,
    } = discover(&client, &filter, &args, &federation, &interrupts).await?;
    let discovery_time = discovery_started.elapsed();
    if !plain {
        eprintln!(
            "discovered {} nodes in {:.3}s{}",
            discovered.len(),
            discovery_time.as_secs_f64(),
            per_network(&by_network)
        );
    }
    if args.discovery_only {
        return Ok(discovery_only(
            &args,
            &discovered,
            &by_network,
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
    // Through federation, one call per network: its own request id, its nodes, its expected
    // identities.
    let calls: Arc<Vec<Part>> = Arc::new(if federation.is_empty() {
        vec![Part {
            network: None,
            call,
            expected: Arc::clone(&expected),
        }]
    } else {
        by_network
            .iter()
            .map(|(network, nodes)| {
                let mut c = call.clone();
                c.federation = Some(network.clone());
                let ids: Arc<BTreeSet<String>> = Arc::new(nodes.iter().cloned().collect());
                c.expected_senders = Some(Arc::clone(&ids));
                if let Targets::Direct(_) = c.targets {
                    c.targets = Targets::Direct(nodes.clone());
                }
                Part {
                    network: Some(network.clone()),
                    call: c,
                    expected: ids,
                }
            })
            .collect()
    });

    let total = match args.rate {
        Some(_) => args.rounds,
        None => args.rounds * args.concurrency,
    };
    let bar = progress(total, plain, "requests");
    let started = Instant::now();
    let origin_unix = monitor::unix_now();
    let sampler = if args.broker_monitor.is_empty() {
        None
    } else {
        Some(Sampler::start(
            &args.broker_monitor,
            Duration::from_secs_f64(args.monitor_interval),
            started,
        )?)
    };
    let mut tasks = tokio::task::JoinSet::new();
    let spawn = |tasks: &mut tokio::task::JoinSet<_>, round: usize, worker: usize| {
        let client = client.clone();
        let calls = Arc::clone(&calls);
        let batch = (args.batch_size, args.batch_sleep);
        let stop = interrupts.stop.clone();
        tasks.spawn(async move {
            let begun = started.elapsed().as_nanos();
            let result = send_parts(&client, &calls, batch, expect, stop).await;
            result.map(|mut a| {
                a.round = round;
                a.worker = worker;
                a.started_ns = begun;
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
    let broker = broker_timeline(&args, sampler, origin_unix).await;
    bar.finish_and_clear();
    accounts.sort_by_key(|a| (a.round, a.worker));
    for (i, a) in accounts.iter_mut().enumerate() {
        a.request = i + 1;
    }
    let mut summary = Summary::new(&accounts, discovered.len(), discovery_time, wall, &args);
    if !federation.is_empty() {
        summary.set_networks(&accounts, &by_network);
    }
    summary.set_connection(client.health());
    let interrupted = interrupts.received();
    summary.set_interrupted(interrupted, total as usize);
    let written = match &args.out {
        Some(dir) => results::write_all(dir, &accounts, &summary, &broker)
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

/// The broker samples for the report: those `--broker-monitor` took during the run, and those
/// of `--scrape-samples` (a file that cannot be read is reported and left out, so that the run
/// is not lost).
async fn broker_timeline(
    args: &MeasureArgs,
    sampler: Option<Sampler>,
    origin_unix: f64,
) -> BrokerTimeline {
    let mut timeline = BrokerTimeline::default();
    let mut from = Vec::new();
    if let Some(sampler) = sampler {
        let (samples, failed) = sampler.finish().await;
        timeline.samples = samples;
        timeline.unusable += failed;
        from.push(format!(
            "--broker-monitor {}",
            args.broker_monitor.join(",")
        ));
    }
    if let Some(path) = &args.scrape_samples {
        match monitor::read_scrape_samples(path, origin_unix) {
            Ok((samples, skipped)) => {
                timeline.samples.extend(samples);
                timeline.unusable += skipped;
                from.push(format!("--scrape-samples {}", path.display()));
            }
            Err(e) => eprintln!("warning: {e}; the report has no broker samples from it"),
        }
    }
    timeline.from = from.join(" and ");
    timeline
}

/// What discovery found: every identity in arrival order, and through federation each
/// network's identities (empty without federation).
struct Discovered {
    all: Vec<String>,
    by_network: BTreeMap<String, Vec<String>>,
}

/// Discovery with `filter`: one ping, or through federation one ping per network, all at once.
/// With `--expect N` the first N to answer are kept.
async fn discover(
    client: &Client,
    filter: &agents::Filter,
    args: &MeasureArgs,
    federation: &[String],
    interrupts: &Interrupts,
) -> Result<Discovered, MeasureError> {
    let mut ping = Call::discovery(
        filter.clone(),
        Duration::from_secs_f64(args.discovery_timeout),
    );
    ping.expected = args.expect.map(|e| e as usize);
    if federation.is_empty() {
        let mut all = client
            .call_until(&ping, Some(interrupts.stop.clone()))
            .await?
            .senders();
        if let Some(n) = args.expect {
            // Discovery ended once N answered; replies already in when it ended are not
            // measured.
            all.truncate(n as usize);
        }
        return Ok(Discovered {
            all,
            by_network: BTreeMap::new(),
        });
    }
    let pings = federation.iter().map(|network| {
        let mut p = ping.clone();
        p.federation = Some(network.clone());
        let stop = interrupts.stop.clone();
        async move { client.call_until(&p, Some(stop)).await }
    });
    let collected = futures::future::try_join_all(pings).await?;
    // Every network's answers in arrival order; an identity answering through two networks
    // belongs to the first it answered through.
    let mut answers: Vec<(Duration, String, &String)> = Vec::new();
    for (network, c) in federation.iter().zip(&collected) {
        let offset = c.started.saturating_duration_since(collected[0].started);
        for r in c.replies.iter().filter(|r| !r.late) {
            if let ReplyOutcome::Ok(reply) = &r.outcome {
                answers.push((offset + r.elapsed, reply.sender.clone(), network));
            }
        }
    }
    answers.sort_by_key(|(at, _, _)| *at);
    let mut seen = BTreeSet::new();
    answers.retain(|(_, sender, _)| seen.insert(sender.clone()));
    if let Some(n) = args.expect {
        answers.truncate(n as usize);
    }
    let mut by_network: BTreeMap<String, Vec<String>> =
        federation.iter().map(|n| (n.clone(), Vec::new())).collect();
    let mut all = Vec::with_capacity(answers.len());
    for (_, sender, network) in answers {
        by_network
            .entry(network.clone())
            .or_default()
            .push(sender.clone());
        all.push(sender);
    }
    Ok(Discovered { all, by_network })
}

/// ` (net1 100, net2 98)` through federation, else nothing.
fn per_network(by_network: &BTreeMap<String, Vec<String>>) -> String {
    if by_network.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = by_network
        .iter()
        .map(|(n, ids)| format!("{n} {}", ids.len()))
        .collect();
    format!(" ({})", parts.join(", "))
}

/// `--discovery-only`: the count, and exit 0 when enough nodes answered.
fn discovery_only(
    args: &MeasureArgs,
    discovered: &[String],
    by_network: &BTreeMap<String, Vec<String>>,
    discovery_time: Duration,
    interrupts: &Interrupts,
) -> i32 {
    let wanted = args.expect.map(|e| e as usize);
    let interrupted = interrupts.received();
    if args.json {
        let mut out = serde_json::json!({
            "discovered": discovered.len(),
            "expected": wanted,
            "seconds": discovery_time.as_secs_f64(),
            "interrupted": interrupted.map(|i| i.name()),
        });
        if !by_network.is_empty() {
            out["networks"] = by_network
                .iter()
                .map(|(n, ids)| (n.clone(), serde_json::json!(ids.len())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        println!("{out}");
    } else {
        let nets = per_network(by_network);
        match wanted {
            Some(n) => println!(
                "discovered {} of {n} expected nodes{nets}",
                discovered.len()
            ),
            None => println!("discovered {} nodes{nets}", discovered.len()),
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

/// One call of a request: the whole collective, or one federation network.
struct Part {
    network: Option<String>,
    call: Call,
    expected: Arc<BTreeSet<String>>,
}

/// Sends one request: its one call, or through federation every network's call at once, each
/// accounted against its network's identities and summed into one account.
async fn send_parts(
    client: &Client,
    parts: &[Part],
    batch: (usize, f64),
    expect: usize,
    stop: watch::Receiver<bool>,
) -> Result<RequestAccount, MeasureError> {
    if let [
        Part {
            network: None,
            call,
            expected,
        },
    ] = parts
    {
        return send(client, call, batch, expected, expect, stop).await;
    }
    let sends = parts.iter().map(|part| {
        let stop = stop.clone();
        async move {
            let account = match &part.call.targets {
                // Direct mode and nothing discovered there: nothing to send.
                Targets::Direct(nodes) if nodes.is_empty() => RequestAccount::default(),
                Targets::Direct(_) | Targets::Broadcast => {
                    let n = part.expected.len();
                    send(client, &part.call, batch, &part.expected, n, stop).await?
                }
            };
            Ok::<_, MeasureError>((part.network.clone().unwrap_or_default(), account))
        }
    });
    let mut whole = RequestAccount::default();
    let mut known = 0;
    for (network, part) in futures::future::try_join_all(sends).await? {
        known += part.expected;
        whole = add(whole, &part);
        whole.networks.insert(network, part);
    }
    // The --expect surplus over what discovery found belongs to no network.
    let surplus = expect.saturating_sub(known);
    whole.missing_unknown += surplus;
    whole.expected += surplus;
    Ok(whole)
}

#[cfg(test)]
pub(crate) fn tests_add(a: RequestAccount, b: &RequestAccount) -> RequestAccount {
    add(a, b)
}

/// `a` plus `b`, sent at the same time (through different networks).
fn add(mut a: RequestAccount, b: &RequestAccount) -> RequestAccount {
    a.requestid = match (a.requestid.is_empty(), b.requestid.is_empty()) {
        (true, _) => b.requestid.clone(),
        (false, true) => a.requestid,
        (false, false) => format!("{},{}", a.requestid, b.requestid),
    };
    a.expected += b.expected;
    a.published += b.published;
    a.publish_ns = a.publish_ns.max(b.publish_ns);
    a.request_ns = a.request_ns.max(b.request_ns);
    a.messages += b.messages;
    a.answered += b.answered;
    a.ok += b.ok;
    for (code, n) in &b.failed {
        *a.failed.entry(*code).or_default() += n;
    }
    a.failed_identities
        .extend(b.failed_identities.iter().cloned());
    a.duplicates += b.duplicates;
    a.late += b.late;
    a.bad_hash += b.bad_hash;
    a.malformed += b.malformed;
    a.unexpected += b.unexpected;
    a.missing.extend(b.missing.iter().cloned());
    a.missing_unknown += b.missing_unknown;
    a.interrupted |= b.interrupted;
    a.times.extend(b.times.iter().cloned());
    a
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
    a.failed_identities.extend(b.failed_identities);
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
    use clap::Parser as _;
    use std::path::Path;

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
    fn federation_networks_come_from_the_flag_the_environment_then_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.conf");
        std::fs::write(
            &file,
            "plugin.choria.middleware_hosts = c1:4222\n\
             plugin.choria.federation_middleware_hosts = fed1:4222, fed2:4222\n\
             plugin.choria.federation.collectives = f1, f2\n",
        )
        .unwrap();
        let config = file.display().to_string();
        let env = |name: &str| (name == "CHORIA_FED_COLLECTIVE").then(|| "e1,e2".to_owned());
        let p = args(&["--federation", "a,b", "-c", &config])
            .plan(env)
            .unwrap();
        assert_eq!(p.federation, vec!["a", "b"]);
        assert_eq!(
            p.servers,
            vec!["nats://fed1:4222", "nats://fed2:4222"],
            "a federated client connects to the federation network"
        );
        let p = args(&["-c", &config]).plan(env).unwrap();
        assert_eq!(p.federation, vec!["e1", "e2"]);
        let p = args(&["-c", &config]).plan(|_| None).unwrap();
        assert_eq!(p.federation, vec!["f1", "f2"]);
        let p = args(&["-c", &config, "--server", "s:1"])
            .plan(|_| None)
            .unwrap();
        assert_eq!(p.servers, vec!["nats://s:1"], "--server still wins");
        let p = args(&["--server", "s:1"]).plan(|_| None).unwrap();
        assert!(p.federation.is_empty());
        let plain = dir.path().join("plain.conf");
        std::fs::write(&plain, "plugin.choria.middleware_hosts = c1:4222\n").unwrap();
        let p = args(&["-c", &plain.display().to_string()])
            .plan(|_| None)
            .unwrap();
        assert_eq!(
            (p.servers, p.federation),
            (vec!["nats://c1:4222".to_owned()], Vec::<String>::new())
        );
        for (bad, message) in [
            (
                "a.b",
                "--federation: network \"a.b\" is not a single subject token (no dots, spaces or wildcards)",
            ),
            ("a,a", "--federation: network \"a\" is named twice"),
            (
                "n*",
                "--federation: network \"n*\" is not a single subject token (no dots, spaces or wildcards)",
            ),
        ] {
            let e = args(&["--server", "s:1", "--federation", bad])
                .plan(|_| None)
                .unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert_eq!(e.to_string(), message);
        }
        let e = args(&["--server", "s:1"])
            .plan(|n| (n == "CHORIA_FED_COLLECTIVE").then(|| "x>".to_owned()))
            .unwrap_err();
        assert!(e.to_string().starts_with("CHORIA_FED_COLLECTIVE: "), "{e}");
    }

    #[test]
    fn federated_parts_add_up_to_the_request() {
        let part = |id: &str, ok: usize, missing: &[&str]| RequestAccount {
            requestid: id.into(),
            expected: ok + missing.len(),
            published: 1,
            messages: ok,
            answered: ok,
            ok,
            missing: missing.iter().map(|s| s.to_string()).collect(),
            times: (0..ok).map(|i| (format!("{id}-{i}"), 1)).collect(),
            ..RequestAccount::default()
        };
        let mut whole = RequestAccount::default();
        for p in [part("a", 3, &[]), part("b", 1, &["b-1", "b-2"])] {
            whole = add(whole, &p);
            whole.networks.insert(p.requestid.clone(), p);
        }
        assert_eq!(whole.requestid, "a,b");
        assert_eq!((whole.expected, whole.answered), (6, 4));
        assert_eq!(whole.missing, vec!["b-1", "b-2"]);
        assert!(whole.closes(), "{whole:?}");
        let mut broken = whole.clone();
        broken.networks.get_mut("a").unwrap().messages += 1;
        assert!(!broken.closes(), "a part that does not close");
        let mut broken = whole.clone();
        broken.networks.get_mut("a").unwrap().ok -= 1;
        broken.networks.get_mut("a").unwrap().failed.insert(1, 1);
        assert!(!broken.closes(), "parts that do not add up to the whole");
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
