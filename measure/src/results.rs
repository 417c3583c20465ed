//! Results of a measurement: the summary (with an HDR histogram of reply times) and the files
//! written to the output directory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agents::client::ConnectionHealth;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::account::{RequestAccount, buckets};
use crate::args::MeasureArgs;
use crate::report::{self, Series};
use crate::signals::Interrupt;
use crate::story::{self, BrokerTimeline};

/// Totals over every request.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub requests: usize,
    pub discovered: usize,
    pub discovery_seconds: f64,
    pub agent: String,
    pub action: String,
    pub payload_bytes: u64,
    pub mode: String,
    pub expected: usize,
    pub answered: usize,
    pub missing: usize,
    pub messages: usize,
    pub ok: usize,
    pub failed: usize,
    pub failed_by_statuscode: BTreeMap<u8, usize>,
    pub duplicates: usize,
    pub late: usize,
    pub bad_hash: usize,
    pub malformed: usize,
    pub unexpected: usize,
    /// True when every request's sums close, the totals close, and measure's own connection
    /// neither dropped nor lost messages (else replies may have gone unseen).
    pub accounting_closes: bool,
    /// Times measure's own connection to the broker dropped during the run.
    pub connection_drops: u64,
    /// Times the NATS client dropped messages because measure read them too slowly.
    pub slow_consumer_events: u64,
    /// The signal that stopped the run early (`SIGINT`/`SIGTERM`), if any.
    pub interrupted: Option<String>,
    /// Requests the run meant to send.
    pub planned_requests: usize,
    /// Requests cut short by the interruption (their missing replies were not waited for).
    pub interrupted_requests: usize,
    /// Requests that could not be published before their deadline (the broker was gone).
    pub unsent_requests: usize,
    pub wall_seconds: f64,
    /// On-time replies (ok + failed) per second of wall time.
    pub replies_per_second: f64,
    /// Reply latency percentiles in milliseconds.
    pub latency_ms: BTreeMap<String, f64>,
    /// Identities that missed at least one request, with how many they missed (first 100).
    pub missing_identities: BTreeMap<String, usize>,
    /// Through federation: the same sums for each network (absent without federation).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, NetworkSummary>,
}

/// One federation network's share of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NetworkSummary {
    /// Nodes that answered discovery through this network.
    pub discovered: usize,
    pub expected: usize,
    pub answered: usize,
    pub missing: usize,
    pub messages: usize,
    pub ok: usize,
    pub failed: usize,
    pub duplicates: usize,
    pub late: usize,
    pub bad_hash: usize,
    pub malformed: usize,
    pub unexpected: usize,
    /// Nothing came back through this network: no node answered discovery, or no message at
    /// all arrived for any request. Its federation broker (or the network) is likely down, so
    /// the run's accounting cannot close.
    pub silent: bool,
    /// This network's identities that missed at least one request, with how many (first 100).
    pub missing_identities: BTreeMap<String, usize>,
}

impl NetworkSummary {
    fn closes(&self) -> bool {
        self.messages
            == self.ok
                + self.failed
                + self.duplicates
                + self.late
                + self.bad_hash
                + self.malformed
                + self.unexpected
            && self.expected == self.answered + self.missing
            && self.answered == self.ok + self.failed
    }
}

impl Summary {
    pub fn new(
        accounts: &[RequestAccount],
        discovered: usize,
        discovery: Duration,
        wall: Duration,
        args: &MeasureArgs,
    ) -> Summary {
        let mut histogram = Histogram::<u64>::new_with_bounds(1_000, 3_600_000_000_000, 3)
            .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable_histogram()));
        let mut failed_by_statuscode = BTreeMap::new();
        let mut missing_identities: BTreeMap<String, usize> = BTreeMap::new();
        let sum = |f: fn(&RequestAccount) -> usize| accounts.iter().map(f).sum::<usize>();
        for a in accounts {
            for (_, ns) in &a.times {
                let _ = histogram.record((*ns as u64).max(1_000));
            }
            for (code, n) in &a.failed {
                *failed_by_statuscode.entry(*code).or_default() += n;
            }
            for id in &a.missing {
                if missing_identities.len() < 100 || missing_identities.contains_key(id) {
                    *missing_identities.entry(id.clone()).or_default() += 1;
                }
            }
        }
        let answered = sum(|a| a.answered);
        let mut latency_ms = BTreeMap::new();
        if !histogram.is_empty() {
            for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
                latency_ms.insert(name.to_owned(), histogram.value_at_quantile(q) as f64 / 1e6);
            }
            latency_ms.insert("max".to_owned(), histogram.max() as f64 / 1e6);
            latency_ms.insert("min".to_owned(), histogram.min() as f64 / 1e6);
        }
        let mut summary = Summary {
            requests: accounts.len(),
            discovered,
            discovery_seconds: discovery.as_secs_f64(),
            agent: args.agent.clone(),
            action: args.action.clone(),
            payload_bytes: args.size,
            mode: format!("{:?}", args.mode).to_lowercase(),
            expected: sum(|a| a.expected),
            answered,
            missing: sum(RequestAccount::missing_total),
            messages: sum(|a| a.messages),
            ok: sum(|a| a.ok),
            failed: sum(RequestAccount::failed_total),
            failed_by_statuscode,
            duplicates: sum(|a| a.duplicates),
            late: sum(|a| a.late),
            bad_hash: sum(|a| a.bad_hash),
            malformed: sum(|a| a.malformed),
            unexpected: sum(|a| a.unexpected),
            accounting_closes: accounts.iter().all(RequestAccount::closes),
            connection_drops: 0,
            slow_consumer_events: 0,
            interrupted: None,
            planned_requests: accounts.len(),
            interrupted_requests: accounts.iter().filter(|a| a.interrupted).count(),
            unsent_requests: accounts
                .iter()
                .filter(|a| a.published == 0 && !a.interrupted)
                .count(),
            wall_seconds: wall.as_secs_f64(),
            replies_per_second: answered as f64 / wall.as_secs_f64().max(1e-9),
            latency_ms,
            missing_identities,
            networks: BTreeMap::new(),
        };
        summary.accounting_closes &= summary.totals_close();
        summary
    }

    /// The run-wide sums, checked again over the totals.
    fn totals_close(&self) -> bool {
        self.messages
            == self.ok
                + self.failed
                + self.duplicates
                + self.late
                + self.bad_hash
                + self.malformed
                + self.unexpected
            && self.expected == self.answered + self.missing
            && self.answered == self.ok + self.failed
            && self.failed == self.failed_by_statuscode.values().sum::<usize>()
    }

    /// Through federation: each network's sums, from each request's parts and what discovery
    /// found through it. The accounting closes only if every network's sums close, they add up
    /// to the totals, and no network was silent.
    pub fn set_networks(
        &mut self,
        accounts: &[RequestAccount],
        discovered: &BTreeMap<String, Vec<String>>,
    ) {
        let mut networks: BTreeMap<String, NetworkSummary> = discovered
            .iter()
            .map(|(n, ids)| {
                let s = NetworkSummary {
                    discovered: ids.len(),
                    ..NetworkSummary::default()
                };
                (n.clone(), s)
            })
            .collect();
        for a in accounts {
            for (name, part) in &a.networks {
                let n = networks.entry(name.clone()).or_default();
                n.expected += part.expected;
                n.answered += part.answered;
                n.missing += part.missing_total();
                n.messages += part.messages;
                n.ok += part.ok;
                n.failed += part.failed_total();
                n.duplicates += part.duplicates;
                n.late += part.late;
                n.bad_hash += part.bad_hash;
                n.malformed += part.malformed;
                n.unexpected += part.unexpected;
                for id in &part.missing {
                    if n.missing_identities.len() < 100 || n.missing_identities.contains_key(id) {
                        *n.missing_identities.entry(id.clone()).or_default() += 1;
                    }
                }
            }
        }
        let sent = accounts.iter().any(|a| a.published > 0);
        for n in networks.values_mut() {
            n.silent = n.discovered == 0 || (sent && n.expected > 0 && n.messages == 0);
        }
        let sum = |f: fn(&NetworkSummary) -> usize| networks.values().map(f).sum::<usize>();
        let unattributed: usize = accounts
            .iter()
            .map(|a| {
                let parts: usize = a.networks.values().map(|p| p.missing_unknown).sum();
                a.missing_unknown.saturating_sub(parts)
            })
            .sum();
        let add_up = self.messages == sum(|n| n.messages)
            && self.expected == sum(|n| n.expected) + unattributed
            && self.answered == sum(|n| n.answered)
            && self.missing == sum(|n| n.missing) + unattributed
            && self.unexpected == sum(|n| n.unexpected);
        self.accounting_closes &= add_up
            && networks.values().all(NetworkSummary::closes)
            && !networks.values().any(|n| n.silent);
        self.networks = networks;
    }

    /// Records what happened to measure's own connection; a drop or a slow-consumer loss means
    /// replies may never have been received, so the accounting cannot close.
    pub fn set_connection(&mut self, health: ConnectionHealth) {
        self.connection_drops = health.disconnects;
        self.slow_consumer_events = health.slow_consumer;
        self.accounting_closes &= health.is_clean();
    }

    /// Marks the run as stopped by `signal` after `planned` requests were meant to be sent.
    pub fn set_interrupted(&mut self, signal: Option<Interrupt>, planned: usize) {
        self.interrupted = signal.map(|s| s.name().to_owned());
        self.planned_requests = planned;
    }

    /// Missing replies as a fraction of expected ones.
    pub fn lost_fraction(&self) -> f64 {
        if self.expected == 0 {
            return 0.0;
        }
        self.missing as f64 / self.expected as f64
    }

    /// The one line that says whether every reply is accounted for.
    pub fn accounting_line(&self) -> String {
        let mut why = Vec::new();
        if self.connection_drops > 0 {
            why.push(format!(
                "measure's own connection to the broker dropped {} time(s) during the run",
                self.connection_drops
            ));
        }
        if self.slow_consumer_events > 0 {
            why.push(format!(
                "the NATS client dropped messages {} time(s) as a slow consumer",
                self.slow_consumer_events
            ));
        }
        let silent: Vec<&str> = self
            .networks
            .iter()
            .filter(|(_, n)| n.silent)
            .map(|(name, _)| name.as_str())
            .collect();
        if !silent.is_empty() {
            why.push(format!(
                "nothing came back through federation network {} (is its federation broker running?)",
                silent.join(", ")
            ));
        }
        let verdict = if self.accounting_closes {
            "closes".to_owned()
        } else if !why.is_empty() {
            format!(
                "DOES NOT CLOSE ({}: replies may have gone unseen)",
                why.join("; ")
            )
        } else {
            "DOES NOT CLOSE".to_owned()
        };
        format!(
            "accounting {verdict}: expected {} = {} answered + {} missing; {} messages = {} ok + {} failed + {} duplicate + {} late + {} bad hash + {} malformed + {} unexpected",
            self.expected,
            self.answered,
            self.missing,
            self.messages,
            self.ok,
            self.failed,
            self.duplicates,
            self.late,
            self.bad_hash,
            self.malformed,
            self.unexpected
        )
    }

    /// The final table for a terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(out, "  {k:<22} {v}");
        };
        row(
            "requests",
            format!(
                "{} x {}.{} ({} bytes, {})",
                self.requests, self.agent, self.action, self.payload_bytes, self.mode
            ),
        );
        row(
            "discovered",
            format!(
                "{} nodes in {:.3}s",
                self.discovered, self.discovery_seconds
            ),
        );
        row("expected replies", self.expected.to_string());
        row(
            "answered",
            format!("{} ({} ok, {} failed)", self.answered, self.ok, self.failed),
        );
        row("missing", self.missing.to_string());
        for (name, n) in &self.networks {
            row(&format!("network {name}"), network_line(n));
        }
        if self.unexpected > 0 {
            row(
                "unexpected",
                format!(
                    "{} replies from nodes discovery did not return",
                    self.unexpected
                ),
            );
        }
        if self.connection_drops > 0 || self.slow_consumer_events > 0 {
            row(
                "own connection",
                format!(
                    "dropped {} times, {} slow-consumer losses",
                    self.connection_drops, self.slow_consumer_events
                ),
            );
        }
        if self.unsent_requests > 0 {
            row(
                "NOT SENT",
                format!(
                    "{} requests could not be published before their deadline",
                    self.unsent_requests
                ),
            );
        }
        if let Some(signal) = &self.interrupted {
            row(
                "INTERRUPTED",
                format!(
                    "by {signal}: {} of {} requests sent, {} cut short",
                    self.requests, self.planned_requests, self.interrupted_requests
                ),
            );
        }
        row(
            "duplicates / late",
            format!("{} / {}", self.duplicates, self.late),
        );
        row(
            "bad hash / malformed",
            format!("{} / {}", self.bad_hash, self.malformed),
        );
        row(
            "replies per second",
            format!("{:.0}", self.replies_per_second),
        );
        let p = |k: &str| {
            self.latency_ms
                .get(k)
                .map_or("-".to_owned(), |v| format!("{v:.1} ms"))
        };
        row("latency p50 / p90", format!("{} / {}", p("p50"), p("p90")));
        row(
            "latency p99 / p99.9",
            format!("{} / {}", p("p99"), p("p99.9")),
        );
        row("latency max", p("max"));
        if !self.missing_identities.is_empty() {
            let names: Vec<String> = self
                .missing_identities
                .iter()
                .take(10)
                .map(|(id, n)| format!("{id} ({n})"))
                .collect();
            row("missing identities", names.join(", "));
        }
        let _ = writeln!(out, "{}", self.accounting_line());
        out
    }
}

/// One network's sums for the table and the page.
fn network_line(n: &NetworkSummary) -> String {
    let mut line = format!(
        "{} discovered; expected {} = {} answered ({} ok, {} failed) + {} missing; {} messages",
        n.discovered, n.expected, n.answered, n.ok, n.failed, n.missing, n.messages
    );
    let others = n.duplicates + n.late + n.bad_hash + n.malformed + n.unexpected;
    if others > 0 {
        let _ = write!(
            line,
            " ({} duplicate, {} late, {} bad hash, {} malformed, {} unexpected)",
            n.duplicates, n.late, n.bad_hash, n.malformed, n.unexpected
        );
    }
    if n.silent {
        line.push_str("; SILENT: nothing came back");
    }
    if !n.missing_identities.is_empty() {
        let names: Vec<&str> = n
            .missing_identities
            .keys()
            .take(5)
            .map(String::as_str)
            .collect();
        let _ = write!(line, "; missing {}", names.join(", "));
        if n.missing_identities.len() > 5 {
            line.push_str(", ...");
        }
    }
    line
}

fn unreachable_histogram() -> Histogram<u64> {
    // `Histogram::new(3)` only fails for a significant-figure count outside 0..=5.
    Histogram::new(2).unwrap_or_else(|_| std::process::abort())
}

/// Writes requests.csv, times.csv, time_buckets.csv, summary.json and report.html into `dir`;
/// a failure names the file.
pub(super) fn write_all(
    dir: &Path,
    accounts: &[RequestAccount],
    summary: &Summary,
    broker: &BrokerTimeline,
) -> Result<(), (PathBuf, std::io::Error)> {
    std::fs::create_dir_all(dir).map_err(|e| (dir.to_owned(), e))?;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| (path, e))
    };
    let mut requests = String::from(
        "request,round,worker,requestid,expected,published,publish_ns,request_ns,messages,answered,ok,failed,duplicates,late,bad_hash,malformed,unexpected,missing,interrupted\n",
    );
    let mut times = String::from("request,identity,nanoseconds\n");
    let mut bucket_rows = String::from("request,bucket_ms,replies\n");
    for a in accounts {
        let _ = writeln!(
            requests,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            a.request,
            a.round,
            a.worker,
            a.requestid,
            a.expected,
            a.published,
            a.publish_ns,
            a.request_ns,
            a.messages,
            a.answered,
            a.ok,
            a.failed_total(),
            a.duplicates,
            a.late,
            a.bad_hash,
            a.malformed,
            a.unexpected,
            a.missing_total(),
            u8::from(a.interrupted)
        );
        for (id, ns) in &a.times {
            let _ = writeln!(times, "{},{},{}", a.request, id, ns);
        }
        for (i, n) in buckets(&a.times).iter().enumerate() {
            let _ = writeln!(bucket_rows, "{},{},{}", a.request, i * 10, n);
        }
    }
    write("requests.csv", requests)?;
    if accounts.iter().any(|a| !a.networks.is_empty()) {
        let mut rows = String::from(
            "request,network,requestid,expected,published,messages,answered,ok,failed,duplicates,late,bad_hash,malformed,unexpected,missing\n",
        );
        for a in accounts {
            for (name, p) in &a.networks {
                let _ = writeln!(
                    rows,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    a.request,
                    name,
                    p.requestid,
                    p.expected,
                    p.published,
                    p.messages,
                    p.answered,
                    p.ok,
                    p.failed_total(),
                    p.duplicates,
                    p.late,
                    p.bad_hash,
                    p.malformed,
                    p.unexpected,
                    p.missing_total()
                );
            }
        }
        write("networks.csv", rows)?;
    }
    write("times.csv", times)?;
    write("time_buckets.csv", bucket_rows)?;
    let json = serde_json::to_string_pretty(summary)
        .map_err(|e| (dir.join("summary.json"), std::io::Error::other(e)))?;
    write("summary.json", json)?;
    write("report.html", html(accounts, summary, broker))?;
    Ok(())
}

fn html(accounts: &[RequestAccount], summary: &Summary, broker: &BrokerTimeline) -> String {
    // Histogram of every reply time, 10 ms wide bins.
    let mut all_times: Vec<(String, u128)> = Vec::new();
    for a in accounts {
        all_times.extend(a.times.iter().cloned());
    }
    let total_buckets = buckets(&all_times);
    let hist = report::histogram(
        "Reply times (all requests)",
        "milliseconds",
        10.0,
        &total_buckets,
    );
    // Cumulative replies over time, one line per request (at most 20).
    let cumulative: Vec<Series> = accounts
        .iter()
        .take(20)
        .map(|a| {
            let mut ns: Vec<u128> = a.times.iter().map(|(_, t)| *t).collect();
            ns.sort_unstable();
            Series {
                name: format!("request {}", a.request),
                points: ns
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (*t as f64 / 1e6, (i + 1) as f64))
                    .collect(),
            }
        })
        .collect();
    let cum = report::line_chart(
        "Cumulative replies per request",
        "milliseconds",
        "replies",
        &cumulative,
    );
    let per_request: Vec<Series> = accounts
        .iter()
        .take(20)
        .map(|a| Series {
            name: format!("request {}", a.request),
            points: buckets(&a.times)
                .iter()
                .enumerate()
                .map(|(i, n)| (i as f64 * 10.0, *n as f64))
                .collect(),
        })
        .collect();
    let bucket_chart = report::line_chart(
        "Replies per 10 ms bucket",
        "milliseconds",
        "replies",
        &per_request,
    );
    let mut facts = vec![
        ("requests".to_owned(), summary.requests.to_string()),
        (
            "call".to_owned(),
            format!(
                "{}.{} ({} bytes, {})",
                summary.agent, summary.action, summary.payload_bytes, summary.mode
            ),
        ),
        ("discovered".to_owned(), summary.discovered.to_string()),
        ("expected replies".to_owned(), summary.expected.to_string()),
        ("answered".to_owned(), summary.answered.to_string()),
        ("missing".to_owned(), summary.missing.to_string()),
        (
            "replies per second".to_owned(),
            format!("{:.0}", summary.replies_per_second),
        ),
        ("accounting".to_owned(), summary.accounting_line()),
    ];
    for (name, n) in &summary.networks {
        facts.push((format!("network {name}"), network_line(n)));
    }
    if let Some(signal) = &summary.interrupted {
        facts.push((
            "interrupted".to_owned(),
            format!(
                "by {signal}: {} of {} requests sent",
                summary.requests, summary.planned_requests
            ),
        ));
    }
    for (k, v) in &summary.latency_ms {
        facts.push((format!("latency {k}"), format!("{v:.2} ms")));
    }
    let mut sections = story::tables(accounts);
    sections.extend([hist, cum, bucket_chart]);
    sections.extend(story::broker_charts(accounts, broker));
    report::page("Choria fleet measurement", &facts, &sections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn one_request() -> RequestAccount {
        RequestAccount {
            request: 1,
            expected: 3,
            published: 1,
            messages: 4,
            answered: 2,
            ok: 2,
            unexpected: 2,
            missing: vec!["c".into()],
            times: vec![("a".into(), 2_000_000), ("b".into(), 3_000_000)],
            ..RequestAccount::default()
        }
    }

    fn summary(accounts: &[RequestAccount]) -> Summary {
        let args = MeasureArgs::try_parse_from(["measure"]).unwrap();
        Summary::new(
            accounts,
            3,
            Duration::from_millis(5),
            Duration::from_secs(1),
            &args,
        )
    }

    #[test]
    fn the_line_closes_only_when_the_sums_hold() {
        let s = summary(&[one_request()]);
        assert!(s.accounting_closes);
        assert_eq!(
            s.accounting_line(),
            "accounting closes: expected 3 = 2 answered + 1 missing; 4 messages = 2 ok + 0 failed + 0 duplicate + 0 late + 0 bad hash + 0 malformed + 2 unexpected"
        );
        assert!(
            s.table()
                .contains("2 replies from nodes discovery did not return")
        );
        let broken = RequestAccount {
            messages: 5,
            ..one_request()
        };
        let s = summary(&[one_request(), broken]);
        assert!(!s.accounting_closes);
        assert!(
            s.accounting_line()
                .starts_with("accounting DOES NOT CLOSE: ")
        );
    }

    #[test]
    fn a_dropped_connection_means_the_accounting_does_not_close() {
        let mut s = summary(&[one_request()]);
        s.set_connection(ConnectionHealth {
            disconnects: 1,
            slow_consumer: 0,
        });
        assert!(!s.accounting_closes);
        assert_eq!(s.connection_drops, 1);
        assert!(
            s.accounting_line()
                .starts_with("accounting DOES NOT CLOSE (measure's own connection to the broker dropped 1 time(s) during the run: replies may have gone unseen): expected 3"),
            "{}",
            s.accounting_line()
        );
        assert!(s.table().contains("own connection"));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["connection_drops"], 1);
        assert_eq!(json["accounting_closes"], false);
    }

    /// A federated request: network n1 answered both, n2 lost `n2-1`.
    fn federated(n2_messages: usize) -> RequestAccount {
        let n1 = RequestAccount {
            requestid: "r1".into(),
            expected: 2,
            published: 1,
            messages: 2,
            answered: 2,
            ok: 2,
            times: vec![("n1-0".into(), 1_000_000), ("n1-1".into(), 1_000_000)],
            ..RequestAccount::default()
        };
        let n2 = RequestAccount {
            requestid: "r2".into(),
            expected: 2,
            published: 1,
            messages: n2_messages,
            answered: n2_messages,
            ok: n2_messages,
            missing: (n2_messages..2).map(|i| format!("n2-{i}")).collect(),
            times: (0..n2_messages)
                .map(|i| (format!("n2-{i}"), 1_000_000))
                .collect(),
            ..RequestAccount::default()
        };
        let mut whole = crate::run::tests_add(RequestAccount::default(), &n1);
        whole = crate::run::tests_add(whole, &n2);
        whole.request = 1;
        whole.networks.insert("n1".into(), n1);
        whole.networks.insert("n2".into(), n2);
        whole
    }

    fn discovered() -> BTreeMap<String, Vec<String>> {
        [("n1", ["n1-0", "n1-1"]), ("n2", ["n2-0", "n2-1"])]
            .into_iter()
            .map(|(n, ids)| (n.to_owned(), ids.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn federated_results_are_grouped_by_network() {
        let accounts = [federated(1)];
        let mut s = summary(&accounts);
        s.set_networks(&accounts, &discovered());
        assert!(s.accounting_closes, "{}", s.accounting_line());
        let n2 = &s.networks["n2"];
        assert_eq!(
            (
                n2.discovered,
                n2.expected,
                n2.answered,
                n2.missing,
                n2.silent
            ),
            (2, 2, 1, 1, false)
        );
        assert_eq!(n2.missing_identities.keys().collect::<Vec<_>>(), ["n2-1"]);
        assert!(
            s.table().contains(
                "  network n2             2 discovered; expected 2 = 1 answered (1 ok, 0 failed) + 1 missing; 1 messages; missing n2-1"
            ),
            "{}",
            s.table()
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["networks"]["n1"]["answered"], 2);
        assert_eq!(json["networks"]["n2"]["missing_identities"]["n2-1"], 1);
        let plain = serde_json::to_value(summary(&[one_request()])).unwrap();
        assert!(plain.get("networks").is_none(), "absent without federation");
    }

    #[test]
    fn a_silent_network_means_the_accounting_does_not_close() {
        let accounts = [federated(0)];
        let mut s = summary(&accounts);
        s.set_networks(&accounts, &discovered());
        assert!(s.networks["n2"].silent);
        assert!(!s.accounting_closes);
        assert!(
            s.accounting_line().starts_with(
                "accounting DOES NOT CLOSE (nothing came back through federation network n2 (is its federation broker running?): replies may have gone unseen): expected 4 = 2 answered + 2 missing"
            ),
            "{}",
            s.accounting_line()
        );
        assert!(
            s.table()
                .contains("SILENT: nothing came back; missing n2-0, n2-1")
        );
        // Nothing found through a network in discovery is as silent.
        let accounts = [federated(2)];
        let mut nets = discovered();
        nets.insert("n3".into(), Vec::new());
        let mut s = summary(&accounts);
        s.set_networks(&accounts, &nets);
        assert!(s.networks["n3"].silent);
        assert!(!s.accounting_closes);
        let mut s = summary(&accounts);
        s.set_networks(&accounts, &discovered());
        assert!(s.accounting_closes);
    }

    #[test]
    fn an_interrupted_run_says_so() {
        let cut = RequestAccount {
            interrupted: true,
            ..one_request()
        };
        let mut s = summary(&[one_request(), cut]);
        s.set_interrupted(Some(Interrupt::Int), 10);
        assert_eq!(s.interrupted.as_deref(), Some("SIGINT"));
        assert_eq!(
            (s.requests, s.planned_requests, s.interrupted_requests),
            (2, 10, 1)
        );
        assert!(
            s.table()
                .contains("INTERRUPTED            by SIGINT: 2 of 10 requests sent, 1 cut short"),
            "{}",
            s.table()
        );
        assert!(s.accounting_closes, "what is in still adds up");
    }
}
