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
        let verdict = if self.accounting_closes {
            "closes".to_owned()
        } else if self.connection_drops > 0 || self.slow_consumer_events > 0 {
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
    write("times.csv", times)?;
    write("time_buckets.csv", bucket_rows)?;
    let json = serde_json::to_string_pretty(summary)
        .map_err(|e| (dir.join("summary.json"), std::io::Error::other(e)))?;
    write("summary.json", json)?;
    write("report.html", html(accounts, summary))?;
    Ok(())
}

fn html(accounts: &[RequestAccount], summary: &Summary) -> String {
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
    report::page(
        "Choria fleet measurement",
        &facts,
        &[hist, cum, bucket_chart],
    )
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
