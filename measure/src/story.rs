//! The part of report.html that tells what happened: which identities were slowest, which
//! were missing and from which request and round, which failed with which statuscode, and what
//! the broker was doing meanwhile, on the time axis of the replies.
//!
//! Stages: the run's [`RequestAccount`]s → per-identity tables ([`tables`]) → replies per
//! second on the run's axis (each reply at its request's start plus its reply time) → with
//! broker samples ([`crate::monitor`]), charts of broker connections, messages in/out per
//! second, slow consumers, CPU and memory sharing that axis ([`broker_charts`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::account::RequestAccount;
use crate::monitor::{BrokerSample, rates};
use crate::report::{self, Series};

/// Rows shown in each table at most.
const ROWS: usize = 20;

/// Where the broker samples came from and how many could not be used.
#[derive(Debug, Clone, Default)]
pub struct BrokerTimeline {
    pub samples: Vec<BrokerSample>,
    /// `--broker-monitor URL,...` or `--scrape-samples FILE`.
    pub from: String,
    /// Samples that failed (monitor did not answer) or could not be placed in time.
    pub unusable: usize,
}

/// One identity's replies over the run.
#[derive(Debug, Default)]
struct Identity {
    replies: usize,
    total_ns: u128,
    max_ns: u128,
    /// Request (and its round) of the slowest reply.
    slowest_in: (usize, usize),
}

/// The three tables: slowest identities, missing identities, failures by identity.
pub fn tables(accounts: &[RequestAccount]) -> Vec<String> {
    vec![slowest(accounts), missing(accounts), failed(accounts)]
}

fn slowest(accounts: &[RequestAccount]) -> String {
    let mut ids: BTreeMap<&str, Identity> = BTreeMap::new();
    for a in accounts {
        for (id, ns) in &a.times {
            let i = ids.entry(id.as_str()).or_default();
            i.replies += 1;
            i.total_ns += ns;
            if *ns >= i.max_ns {
                i.max_ns = *ns;
                i.slowest_in = (a.request, a.round);
            }
        }
    }
    let mut list: Vec<(&str, Identity)> = ids.into_iter().collect();
    list.sort_by(|a, b| b.1.max_ns.cmp(&a.1.max_ns).then(a.0.cmp(b.0)));
    let rows: Vec<Vec<String>> = list
        .iter()
        .take(ROWS)
        .map(|(id, i)| {
            vec![
                (*id).to_owned(),
                ms(i.max_ns),
                ms(i.total_ns / i.replies.max(1) as u128),
                i.replies.to_string(),
                format!("request {} (round {})", i.slowest_in.0, i.slowest_in.1),
            ]
        })
        .collect();
    report::table(
        "slowest",
        &format!("Slowest identities (top {ROWS} by slowest reply)"),
        &["identity", "slowest ms", "mean ms", "replies", "slowest in"],
        &rows,
        "no replies",
    )
}

fn ms(ns: u128) -> String {
    format!("{:.2}", ns as f64 / 1e6)
}

fn missing(accounts: &[RequestAccount]) -> String {
    let mut ids: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    let mut unknown = 0;
    for a in accounts {
        for id in &a.missing {
            ids.entry(id.as_str())
                .or_default()
                .push((a.request, a.round));
        }
        unknown += a.missing_unknown;
    }
    let mut list: Vec<(&str, Vec<(usize, usize)>)> = ids.into_iter().collect();
    list.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
    let total = list.len();
    let mut rows: Vec<Vec<String>> = list
        .iter()
        .take(ROWS)
        .map(|(id, when)| {
            let mut text = when
                .iter()
                .take(12)
                .map(|(r, round)| format!("request {r} (round {round})"))
                .collect::<Vec<_>>()
                .join(", ");
            if when.len() > 12 {
                let _ = write!(text, ", and {} more", when.len() - 12);
            }
            vec![(*id).to_owned(), when.len().to_string(), text]
        })
        .collect();
    if total > ROWS {
        rows.push(vec![
            format!("… {} more identities", total - ROWS),
            String::new(),
            String::new(),
        ]);
    }
    if unknown > 0 {
        rows.push(vec![
            "(identity unknown: --expect above what discovery found)".to_owned(),
            unknown.to_string(),
            String::new(),
        ]);
    }
    report::table(
        "missing",
        &format!("Missing identities ({total})"),
        &["identity", "requests missed", "missing from"],
        &rows,
        "none: every expected identity answered every request",
    )
}

fn failed(accounts: &[RequestAccount]) -> String {
    let mut ids: BTreeMap<&str, BTreeMap<u8, usize>> = BTreeMap::new();
    for a in accounts {
        for (id, code) in &a.failed_identities {
            *ids.entry(id.as_str())
                .or_default()
                .entry(*code)
                .or_default() += 1;
        }
    }
    let mut list: Vec<(&str, BTreeMap<u8, usize>)> = ids.into_iter().collect();
    let count = |m: &BTreeMap<u8, usize>| m.values().sum::<usize>();
    list.sort_by(|a, b| count(&b.1).cmp(&count(&a.1)).then(a.0.cmp(b.0)));
    let total = list.len();
    let mut rows: Vec<Vec<String>> = list
        .iter()
        .take(ROWS)
        .map(|(id, codes)| {
            let text = codes
                .iter()
                .map(|(c, n)| format!("{c} {} × {n}", statuscode_name(*c)))
                .collect::<Vec<_>>()
                .join(", ");
            vec![(*id).to_owned(), count(codes).to_string(), text]
        })
        .collect();
    if total > ROWS {
        rows.push(vec![
            format!("… {} more identities", total - ROWS),
            String::new(),
            String::new(),
        ]);
    }
    report::table(
        "failed",
        &format!("Failed replies by identity ({total})"),
        &["identity", "failed replies", "statuscodes"],
        &rows,
        "none: no reply carried a failing statuscode",
    )
}

/// The Choria RPC statuscode names (0 is OK).
fn statuscode_name(code: u8) -> &'static str {
    match code {
        0 => "OK",
        1 => "Aborted",
        2 => "Unknown Action",
        3 => "Missing Data",
        4 => "Invalid Data",
        5 => "Unknown Error",
        _ => "unknown statuscode",
    }
}

/// Replies per second of the whole run, each at its request's start plus its reply time.
fn replies_per_second(accounts: &[RequestAccount]) -> Vec<(f64, f64)> {
    let mut seconds: BTreeMap<u64, usize> = BTreeMap::new();
    for a in accounts {
        for (_, ns) in &a.times {
            let at = (a.started_ns + ns) / 1_000_000_000;
            *seconds
                .entry(u64::try_from(at).unwrap_or(u64::MAX))
                .or_default() += 1;
        }
    }
    let Some(last) = seconds.keys().next_back().copied() else {
        return Vec::new();
    };
    (0..=last)
        .map(|s| (s as f64 + 1.0, seconds.get(&s).copied().unwrap_or(0) as f64))
        .collect()
}

/// The broker charts, empty without samples. Every chart spans the same seconds.
pub fn broker_charts(accounts: &[RequestAccount], broker: &BrokerTimeline) -> Vec<String> {
    if broker.samples.is_empty() {
        return Vec::new();
    }
    let replies = replies_per_second(accounts);
    let mut by_source: BTreeMap<&str, Vec<&BrokerSample>> = BTreeMap::new();
    for s in broker.samples.iter().filter(|s| s.t >= 0.0) {
        by_source.entry(s.source.as_str()).or_default().push(s);
    }
    let x_max = broker
        .samples
        .iter()
        .map(|s| s.t)
        .chain(replies.iter().map(|(t, _)| *t))
        .fold(1.0f64, f64::max);
    let per_source = |name: &str, f: &dyn Fn(&[&BrokerSample]) -> Vec<(f64, f64)>| {
        by_source
            .iter()
            .map(|(src, s)| Series {
                name: format!("{name} {src}"),
                points: f(s),
            })
            .collect::<Vec<_>>()
    };
    let gauge = |g: fn(&BrokerSample) -> f64| {
        move |s: &[&BrokerSample]| s.iter().map(|x| (x.t, g(x))).collect::<Vec<_>>()
    };
    let mut traffic = vec![Series {
        name: "replies/s (measure)".to_owned(),
        points: replies,
    }];
    traffic.extend(per_source("in msgs/s", &|s| rates(s, |x| x.in_msgs)));
    traffic.extend(per_source("out msgs/s", &|s| rates(s, |x| x.out_msgs)));
    let mut charts = vec![
        report::line_chart_upto(
            "Broker messages per second and replies per second",
            "seconds since the first request",
            "per second",
            &traffic,
            x_max,
        ),
        report::line_chart_upto(
            "Broker connections",
            "seconds since the first request",
            "connections",
            &per_source("connections", &gauge(|x| x.connections)),
            x_max,
        ),
        report::line_chart_upto(
            "Broker slow consumers (since the server started)",
            "seconds since the first request",
            "slow consumers",
            &per_source("slow consumers", &gauge(|x| x.slow_consumers)),
            x_max,
        ),
        report::line_chart_upto(
            "Broker memory",
            "seconds since the first request",
            "MiB",
            &per_source("memory", &gauge(|x| x.mem_bytes / 1_048_576.0)),
            x_max,
        ),
    ];
    if broker.samples.iter().any(|s| s.cpu.is_some()) {
        charts.push(report::line_chart_upto(
            "Broker CPU",
            "seconds since the first request",
            "% of one core",
            &per_source("cpu", &|s| {
                s.iter()
                    .filter_map(|x| x.cpu.map(|c| (x.t, c)))
                    .collect::<Vec<_>>()
            }),
            x_max,
        ));
    }
    let mut head = String::from("<h2 id=\"broker\">What the broker was doing</h2>");
    let _ = write!(
        head,
        "<p>{} samples from {}; {} unusable.</p>",
        broker.samples.len(),
        report::escape(&broker.from),
        broker.unusable
    );
    charts.insert(0, head);
    charts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(n: usize, round: usize, times: &[(&str, u128)], missing: &[&str]) -> RequestAccount {
        RequestAccount {
            request: n,
            round,
            started_ns: (n as u128 - 1) * 1_000_000_000,
            times: times.iter().map(|(i, t)| ((*i).to_owned(), *t)).collect(),
            missing: missing.iter().map(|s| (*s).to_owned()).collect(),
            ..RequestAccount::default()
        }
    }

    #[test]
    fn the_tables_name_identities_rounds_and_statuscodes() {
        let mut r2 = request(2, 2, &[("a", 1_000_000)], &["b", "c"]);
        r2.failed_identities = vec![("a".into(), 4)];
        let accounts = [
            request(1, 1, &[("a", 2_000_000), ("b", 9_000_000)], &["c"]),
            r2,
        ];
        let [slow, missing, failed] = <[String; 3]>::try_from(tables(&accounts)).unwrap();
        // b's 9 ms reply is the slowest, then a's 2 ms.
        let b = slow.find("<td>b</td>").unwrap();
        assert!(b < slow.find("<td>a</td>").unwrap(), "{slow}");
        assert!(slow.contains("<td>9.00</td>"), "{slow}");
        assert!(slow.contains("<td>1.50</td>"), "a's mean: {slow}");
        assert!(missing.contains("Missing identities (2)"), "{missing}");
        assert!(
            missing
                .contains("<td>c</td><td>2</td><td>request 1 (round 1), request 2 (round 2)</td>"),
            "{missing}"
        );
        assert!(
            failed.contains("<td>a</td><td>1</td><td>4 Invalid Data × 1</td>"),
            "{failed}"
        );
        let quiet = tables(&[request(1, 1, &[("a", 1)], &[])]);
        assert!(quiet[1].contains("none: every expected identity"));
        assert!(quiet[2].contains("none: no reply carried"));
    }

    #[test]
    fn replies_land_on_the_run_axis() {
        let accounts = [
            request(1, 1, &[("a", 100_000_000), ("b", 1_200_000_000)], &[]),
            request(3, 3, &[("a", 100_000_000)], &[]),
        ];
        // Request 3 began at 2 s: its reply lands in the third second.
        assert_eq!(
            replies_per_second(&accounts),
            vec![(1.0, 1.0), (2.0, 1.0), (3.0, 1.0)]
        );
        assert!(broker_charts(&accounts, &BrokerTimeline::default()).is_empty());
        let samples = (0..3)
            .map(|i| BrokerSample {
                t: f64::from(i),
                source: "m".into(),
                in_msgs: f64::from(i) * 10.0,
                cpu: Some(2.0),
                ..BrokerSample::default()
            })
            .collect();
        let charts = broker_charts(
            &accounts,
            &BrokerTimeline {
                samples,
                from: "--broker-monitor m".into(),
                unusable: 0,
            },
        );
        assert!(charts[0].contains("id=\"broker\""));
        assert_eq!(charts.iter().filter(|c| c.starts_with("<svg")).count(), 5);
    }
}
