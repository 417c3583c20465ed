//! `emulator measure --registration`: listen to a fleet's registration and account for every
//! message, by sender.
//!
//! Stages: connect → subscribe to the registration subject(s) (default
//! `<collective>.broadcast.agent.registration`) → a receiving task stamps each message with its
//! arrival time and queues it (so decoding never delays the stamp) → [`Account::record`]
//! decodes it ([`agents::registration::decode`]: request, agent `registration`, payload
//! protocol, content) and counts it by sender, by second and by round (a sender's n-th
//! registration is in round n) → after `--duration` (or a signal) [`Account::summary`] and the
//! result files (`senders.csv`, `seconds.csv`, `rounds.csv`, `summary.json`) → exit code: 1 when
//! `--expect` senders did not all register (the missing ones are named with
//! `--expect-prefix`), when a message did not decode, or when the accounting does not close.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agents::client::{Client, ClientOptions};
use agents::registration::{self, Kind, Registration};
use futures::StreamExt as _;
use serde::Serialize;

use crate::args::MeasureArgs;
use crate::error::MeasureError;
use crate::signals;

/// What one sender sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SenderCount {
    pub registrations: u64,
    pub bytes: u64,
    /// Seconds since the start of listening.
    pub first_s: f64,
    pub last_s: f64,
}

/// The n-th registration of every sender.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Round {
    pub round: u64,
    pub senders: u64,
    pub first_s: f64,
    pub last_s: f64,
    /// From the round's first registration to its last.
    pub span_s: f64,
}

/// One second of listening.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Second {
    pub second: u64,
    pub registrations: u64,
    /// Distinct senders in this second.
    pub senders: u64,
    /// Distinct senders seen so far.
    pub senders_total: u64,
}

/// Every message received, as it was counted.
#[derive(Debug, Default)]
pub struct Account {
    pub received: u64,
    pub bytes: u64,
    pub invalid: BTreeMap<&'static str, u64>,
    pub by_kind: BTreeMap<&'static str, u64>,
    pub senders: BTreeMap<String, SenderCount>,
    rounds: Vec<Round>,
    /// Per second: registrations and the distinct senders.
    seconds: Vec<(u64, BTreeSet<String>)>,
}

impl Account {
    /// Decodes and counts one message that arrived `at` after the start.
    pub fn record(&mut self, body: &[u8], at: Duration) {
        self.received += 1;
        let (request, registration) = match registration::decode(body, usize::MAX) {
            Ok(r) => r,
            Err(e) => {
                *self.invalid.entry(e.as_str()).or_default() += 1;
                return;
            }
        };
        let kind = match &registration {
            Registration::Inventory { .. } => Kind::InventoryContent,
            Registration::File(_) => Kind::FileContent,
        };
        *self.by_kind.entry(kind.protocol()).or_default() += 1;
        let sender = request
            .mc_sender
            .filter(|s| !s.is_empty())
            .unwrap_or(request.senderid);
        let secs = at.as_secs_f64();
        self.bytes += body.len() as u64;
        let count = self.senders.entry(sender.clone()).or_insert(SenderCount {
            first_s: secs,
            ..SenderCount::default()
        });
        count.registrations += 1;
        count.bytes += body.len() as u64;
        count.last_s = secs;
        let n = count.registrations as usize;
        if self.rounds.len() < n {
            self.rounds.push(Round {
                round: n as u64,
                first_s: secs,
                ..Round::default()
            });
        }
        let round = &mut self.rounds[n - 1];
        round.senders += 1;
        round.first_s = round.first_s.min(secs);
        round.last_s = round.last_s.max(secs);
        round.span_s = round.last_s - round.first_s;
        let second = at.as_secs() as usize;
        if self.seconds.len() <= second {
            self.seconds.resize_with(second + 1, Default::default);
        }
        self.seconds[second].0 += 1;
        self.seconds[second].1.insert(sender);
    }

    /// Registrations decoded.
    pub fn decoded(&self) -> u64 {
        self.received - self.invalid.values().sum::<u64>()
    }

    /// Per second of listening.
    pub fn seconds(&self) -> Vec<Second> {
        let mut seen = BTreeSet::new();
        self.seconds
            .iter()
            .enumerate()
            .map(|(i, (n, senders))| {
                seen.extend(senders.iter().map(String::as_str));
                Second {
                    second: i as u64,
                    registrations: *n,
                    senders: senders.len() as u64,
                    senders_total: seen.len() as u64,
                }
            })
            .collect()
    }

    /// The summary, checked against the raw counts it summarises.
    pub fn summary(&self, expected: Expected<'_>, listened: Duration) -> RegistrationSummary {
        let decoded = self.decoded();
        let seconds = self.seconds();
        let by_sender: u64 = self.senders.values().map(|s| s.registrations).sum();
        let by_second: u64 = seconds.iter().map(|s| s.registrations).sum();
        let by_round: u64 = self.rounds.iter().map(|r| r.senders).sum();
        let by_kind: u64 = self.by_kind.values().sum();
        let sender_bytes: u64 = self.senders.values().map(|s| s.bytes).sum();
        let accounting_closes = by_sender == decoded
            && by_second == decoded
            && by_round == decoded
            && by_kind == decoded
            && sender_bytes == self.bytes
            && self.rounds.first().map_or(0, |r| r.senders) == self.senders.len() as u64;
        let (expected_count, missing_senders, unexpected_senders) = match expected {
            Expected::None => (None, Vec::new(), Vec::new()),
            Expected::Count(n) => (Some(n), Vec::new(), Vec::new()),
            Expected::Identities(ids) => {
                let missing = ids
                    .iter()
                    .filter(|id| !self.senders.contains_key(*id))
                    .cloned()
                    .collect();
                let set: BTreeSet<&String> = ids.iter().collect();
                let unexpected = self
                    .senders
                    .keys()
                    .filter(|s| !set.contains(s))
                    .cloned()
                    .collect();
                (Some(ids.len() as u64), missing, unexpected)
            }
        };
        let senders = self.senders.len() as u64;
        let missing = match (&expected, expected_count) {
            (Expected::Identities(_), _) => missing_senders.len() as u64,
            (_, Some(n)) => n.saturating_sub(senders),
            (_, None) => 0,
        };
        let listened_s = listened.as_secs_f64();
        RegistrationSummary {
            started_unix_ms: 0,
            listened_s,
            received: self.received,
            decoded,
            invalid: self.invalid.values().sum(),
            invalid_by_reason: self
                .invalid
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            by_protocol: self
                .by_kind
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            bytes: self.bytes,
            senders,
            expected: expected_count,
            missing,
            missing_senders,
            unexpected_senders,
            rate_mean: if listened_s > 0.0 {
                decoded as f64 / listened_s
            } else {
                0.0
            },
            rate_peak: seconds.iter().map(|s| s.registrations).max().unwrap_or(0),
            rounds: self.rounds.clone(),
            accounting_closes,
            slow_consumer: 0,
        }
    }
}

/// Who should register.
#[derive(Debug, Clone, Copy)]
pub enum Expected<'a> {
    None,
    /// `--expect N`: a number of senders.
    Count(u64),
    /// `--expect N --expect-prefix P`: `P-0 .. P-(N-1)`.
    Identities(&'a [String]),
}

/// `summary.json` of a registration measurement.
#[derive(Debug, Clone, Serialize)]
pub struct RegistrationSummary {
    /// Unix milliseconds when listening began: every `*_s` time counts from here.
    pub started_unix_ms: u64,
    pub listened_s: f64,
    pub received: u64,
    pub decoded: u64,
    pub invalid: u64,
    pub invalid_by_reason: BTreeMap<String, u64>,
    pub by_protocol: BTreeMap<String, u64>,
    pub bytes: u64,
    pub senders: u64,
    pub expected: Option<u64>,
    pub missing: u64,
    pub missing_senders: Vec<String>,
    pub unexpected_senders: Vec<String>,
    /// Registrations per second over the whole listening time, and in the busiest second.
    pub rate_mean: f64,
    pub rate_peak: u64,
    pub rounds: Vec<Round>,
    /// Senders, seconds, rounds and protocols each add up to `decoded`.
    pub accounting_closes: bool,
    /// Messages the client's NATS connection dropped as a slow consumer (events).
    pub slow_consumer: u64,
}

impl RegistrationSummary {
    /// The human-readable result.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "registrations: {} received, {} decoded, {} invalid, {} bytes in {:.1}s",
            self.received, self.decoded, self.invalid, self.bytes, self.listened_s
        );
        let expected = self
            .expected
            .map(|e| format!(" of {e} expected"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "senders: {}{expected}, {} missing; {:.1}/s mean, {}/s peak",
            self.senders, self.missing, self.rate_mean, self.rate_peak
        );
        for r in self.rounds.iter().take(10) {
            let _ = writeln!(
                out,
                "round {}: {} senders from {:.3}s to {:.3}s (span {:.3}s)",
                r.round, r.senders, r.first_s, r.last_s, r.span_s
            );
        }
        for (reason, n) in &self.invalid_by_reason {
            let _ = writeln!(out, "invalid {reason}: {n}");
        }
        if !self.missing_senders.is_empty() {
            let shown: Vec<&str> = self
                .missing_senders
                .iter()
                .take(20)
                .map(String::as_str)
                .collect();
            let more = self.missing_senders.len().saturating_sub(shown.len());
            let _ = writeln!(
                out,
                "missing senders: {}{}",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more (all in summary.json)")
                } else {
                    String::new()
                }
            );
        }
        let _ = writeln!(
            out,
            "accounting: {}",
            if self.accounting_closes {
                "closes (senders, seconds, rounds and protocols add up to decoded)"
            } else {
                "DOES NOT CLOSE"
            }
        );
        out
    }
}

/// The subjects to listen on: `--registration-subject`, else the collective's default.
fn subjects(args: &MeasureArgs, collective: &str) -> Vec<String> {
    let given: Vec<String> = args
        .registration_subjects
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if given.is_empty() {
        vec![registration::subject(collective)]
    } else {
        given
    }
}

/// Runs `emulator measure --registration`; returns the exit code.
pub async fn run(args: &MeasureArgs) -> Result<i32, MeasureError> {
    let plan = args.plan(|name| std::env::var(name).ok())?;
    if !args.duration.is_finite() || args.duration <= 0.0 {
        return Err(MeasureError::flag(
            "--duration",
            format!(
                "must be a positive number of seconds, got {}",
                args.duration
            ),
        ));
    }
    if args.expect_prefix.is_some() && args.expect.is_none() {
        return Err(MeasureError::flag(
            "--expect-prefix",
            "needs --expect N (the senders are PREFIX-0 .. PREFIX-(N-1))",
        ));
    }
    let identities: Vec<String> = match (&args.expect_prefix, args.expect) {
        (Some(prefix), Some(n)) => (0..n).map(|i| format!("{prefix}-{i}")).collect(),
        _ => Vec::new(),
    };
    let expected = match (args.expect, identities.is_empty()) {
        (Some(_), false) => Expected::Identities(&identities),
        (Some(n), true) => Expected::Count(n),
        (None, _) => Expected::None,
    };
    let interrupts = signals::listen("measure --registration")?;
    let servers = plan.servers;
    let connect = tokio::time::timeout(
        Duration::from_secs(10),
        Client::connect(&servers, ClientOptions::default()),
    );
    let client = connect.await.map_err(|_| MeasureError::ConnectTimeout {
        servers: servers.join(","),
    })??;
    let subjects = subjects(args, &plan.collective);
    let mut streams = Vec::with_capacity(subjects.len());
    for subject in &subjects {
        let sub = client
            .nats()
            .subscribe(subject.clone())
            .await
            .map_err(|e| agents::client::ClientError::Connect {
                servers: servers.join(","),
                reason: format!("subscribe {subject}: {e}"),
            })?;
        streams.push(sub);
    }
    let _ = client.nats().flush().await;
    let plain = args.quiet || args.json;
    if !plain {
        eprintln!(
            "listening to {} for {:.1}s",
            subjects.join(", "),
            args.duration
        );
    }
    let started = Instant::now();
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    // Stamp on arrival in a task of its own; decoding happens behind the queue.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut merged = futures::stream::select_all(streams);
    let receiver = tokio::spawn(async move {
        while let Some(msg) = merged.next().await {
            if tx.send((started.elapsed(), msg.payload)).is_err() {
                break;
            }
        }
    });
    let deadline = tokio::time::Instant::from_std(started) + Duration::from_secs_f64(args.duration);
    let mut account = Account::default();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            () = interrupts.wait() => break,
            next = rx.recv() => match next {
                Some((at, body)) => account.record(&body, at),
                None => break,
            },
        }
    }
    receiver.abort();
    // What arrived before the deadline is still queued: count it.
    let listened = started
        .elapsed()
        .min(Duration::from_secs_f64(args.duration));
    while let Ok((at, body)) = rx.try_recv() {
        if at <= listened {
            account.record(&body, at);
        }
    }
    let mut summary = account.summary(expected, listened);
    summary.slow_consumer = client.health().slow_consumer;
    summary.started_unix_ms = started_unix_ms;
    let written = match &args.out {
        Some(dir) => write_all(dir, &account, &summary),
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
    if let Some(signal) = interrupts.received() {
        if let Err(e) = written {
            eprintln!("error: {e}");
        }
        return Ok(signal.exit_code());
    }
    written?;
    Ok(verdict(&summary))
}

/// 0 when everything expected registered and every message decoded; else 1, said on stderr.
fn verdict(summary: &RegistrationSummary) -> i32 {
    let mut problems = Vec::new();
    if !summary.accounting_closes {
        problems.push("the accounting does not close: these numbers cannot be trusted".to_owned());
    }
    if summary.missing > 0 {
        let names = if summary.missing_senders.is_empty() {
            String::new()
        } else {
            let shown: Vec<&str> = summary
                .missing_senders
                .iter()
                .take(20)
                .map(String::as_str)
                .collect();
            format!(": {}", shown.join(", "))
        };
        problems.push(format!(
            "{} of {} expected senders did not register{names}",
            summary.missing,
            summary.expected.unwrap_or(0)
        ));
    }
    if summary.invalid > 0 {
        problems.push(format!(
            "{} messages were not valid registrations",
            summary.invalid
        ));
    }
    if summary.slow_consumer > 0 {
        problems.push("the NATS client dropped messages as a slow consumer".to_owned());
    }
    for p in &problems {
        eprintln!("{p}");
    }
    i32::from(!problems.is_empty())
}

fn write_all(
    dir: &Path,
    account: &Account,
    summary: &RegistrationSummary,
) -> Result<(), MeasureError> {
    let write = |name: &str, text: String| -> Result<(), MeasureError> {
        let path: PathBuf = dir.join(name);
        std::fs::write(&path, text).map_err(|source| MeasureError::Write { path, source })
    };
    let mut senders = String::from("sender,registrations,bytes,first_s,last_s\n");
    for (sender, c) in &account.senders {
        let _ = writeln!(
            senders,
            "{},{},{},{:.6},{:.6}",
            sender.replace([',', '\n'], "_"),
            c.registrations,
            c.bytes,
            c.first_s,
            c.last_s
        );
    }
    write("senders.csv", senders)?;
    let mut seconds = String::from("second,registrations,senders,senders_total\n");
    for s in account.seconds() {
        let _ = writeln!(
            seconds,
            "{},{},{},{}",
            s.second, s.registrations, s.senders, s.senders_total
        );
    }
    write("seconds.csv", seconds)?;
    let mut rounds = String::from("round,senders,first_s,last_s,span_s\n");
    for r in &summary.rounds {
        let _ = writeln!(
            rounds,
            "{},{},{:.6},{:.6},{:.6}",
            r.round, r.senders, r.first_s, r.last_s, r.span_s
        );
    }
    write("rounds.csv", rounds)?;
    write(
        "summary.json",
        serde_json::to_string_pretty(summary).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use agents::registration::{Body, Sender};

    fn message(identity: &str) -> Vec<u8> {
        let z = registration::gzip_member(br#"{"classes":["a"]}"#);
        let payload = registration::inventory_message(Body::Gzip(&z));
        registration::encode_request(
            &Sender {
                identity,
                collective: "mcollective",
                requestid: "0123456789abcdef0123456789abcdef",
                time: 1,
            },
            &payload,
        )
    }

    #[test]
    fn the_summary_matches_the_raw_counts() {
        let mut a = Account::default();
        let ids: Vec<String> = (0..4).map(|i| format!("n-{i}")).collect();
        // Rounds: n-0..n-2 at 0.1–0.3 s, again at 2.1–2.3 s; n-3 never; one bad message.
        for (k, base) in [0.0, 2.0].into_iter().enumerate() {
            for (i, id) in ids.iter().take(3).enumerate() {
                let at = Duration::from_secs_f64(base + 0.1 * (i + 1) as f64);
                a.record(&message(id), at);
                assert_eq!(a.senders[id].registrations, k as u64 + 1);
            }
        }
        a.record(b"garbage", Duration::from_millis(2500));
        let s = a.summary(Expected::Identities(&ids), Duration::from_secs(3));
        assert!(s.accounting_closes);
        assert_eq!((s.received, s.decoded, s.invalid), (7, 6, 1));
        assert_eq!(s.invalid_by_reason["not_a_request"], 1);
        assert_eq!(s.senders, 3);
        assert_eq!(s.missing, 1);
        assert_eq!(s.missing_senders, ["n-3"]);
        assert_eq!(s.rounds.len(), 2);
        assert_eq!(s.rounds[1].senders, 3);
        assert!((s.rounds[1].span_s - 0.2).abs() < 1e-9);
        assert_eq!(s.rate_peak, 3);
        assert_eq!(s.bytes, a.senders.values().map(|c| c.bytes).sum::<u64>());
        let seconds = a.seconds();
        assert_eq!(
            seconds
                .iter()
                .map(|x| (x.registrations, x.senders, x.senders_total))
                .collect::<Vec<_>>(),
            [(3, 3, 3), (0, 0, 3), (3, 3, 3)]
        );
        assert_eq!(verdict(&s), 1);
        let all = a.summary(Expected::Count(3), Duration::from_secs(3));
        assert_eq!(all.missing, 0);
        assert_eq!(verdict(&all), 1, "the bad message still fails the run");
    }
}
