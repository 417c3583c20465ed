//! Accounting for one request: every message on the reply subject lands in exactly one bucket,
//! and every expected identity is either answered or missing, so the sums always close.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use agents::client::{Collected, ReplyOutcome};
use serde::Serialize;

/// What happened to one request.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RequestAccount {
    /// Sequence number of the request in this run (1-based).
    pub request: usize,
    /// Round (closed loop) or slot (open loop) the request belongs to.
    pub round: usize,
    /// Requester that sent it.
    pub worker: usize,
    pub requestid: String,
    pub expected: usize,
    pub published: usize,
    pub publish_ns: u128,
    pub request_ns: u128,
    /// Messages received on the reply subject.
    pub messages: usize,
    /// Distinct expected identities that replied on time (ok or failed).
    pub answered: usize,
    pub ok: usize,
    /// Failed replies by statuscode.
    pub failed: BTreeMap<u8, usize>,
    /// Each failed reply's identity and statuscode (the report's failures by identity).
    #[serde(skip)]
    pub failed_identities: Vec<(String, u8)>,
    /// A second on-time reply from an identity that already answered.
    pub duplicates: usize,
    /// Replies after the deadline.
    pub late: usize,
    /// Replies whose hash did not match.
    pub bad_hash: usize,
    /// Messages that were not Choria replies, or replies with an unreadable body.
    pub malformed: usize,
    /// On-time replies from identities that were not expected.
    pub unexpected: usize,
    /// Expected identities that did not answer on time.
    pub missing: Vec<String>,
    /// Expected replies without a known identity (`--expect` above what discovery found).
    pub missing_unknown: usize,
    /// Cut short by SIGINT/SIGTERM (or never sent): its missing replies were not waited for.
    pub interrupted: bool,
    /// First on-time reply of each identity: (identity, nanoseconds since publishing began).
    #[serde(skip)]
    pub times: Vec<(String, u128)>,
    /// When the request began, in nanoseconds since the first request of the run began: with
    /// `times` it puts each reply on the run's time axis (the report's broker plots).
    #[serde(skip)]
    pub started_ns: u128,
    /// Through federation: each network's part of the request (its own request id and reply
    /// subject), of which this account is the sum. Empty without federation.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, RequestAccount>,
}

impl RequestAccount {
    pub fn failed_total(&self) -> usize {
        self.failed.values().sum()
    }

    pub fn missing_total(&self) -> usize {
        self.missing.len() + self.missing_unknown
    }

    /// True when every sum closes: each message is in one bucket, each expected reply is
    /// answered or missing, and each answer is one ok or failed reply with one reply time.
    /// Through federation every network's part closes too, and the parts add up to the whole.
    pub fn closes(&self) -> bool {
        self.own_sums_close() && self.networks_add_up()
    }

    fn networks_add_up(&self) -> bool {
        if self.networks.is_empty() {
            return true;
        }
        let sum = |f: fn(&RequestAccount) -> usize| self.networks.values().map(f).sum::<usize>();
        self.networks.values().all(RequestAccount::closes)
            && self.messages == sum(|a| a.messages)
            && self.answered == sum(|a| a.answered)
            && self.ok == sum(|a| a.ok)
            && self.failed_total() == sum(RequestAccount::failed_total)
            && self.duplicates == sum(|a| a.duplicates)
            && self.late == sum(|a| a.late)
            && self.bad_hash == sum(|a| a.bad_hash)
            && self.malformed == sum(|a| a.malformed)
            && self.unexpected == sum(|a| a.unexpected)
            && self.missing.len() == sum(|a| a.missing.len())
            // The --expect surplus belongs to no network.
            && self.expected + sum(|a| a.missing_unknown)
                == sum(|a| a.expected) + self.missing_unknown
    }

    fn own_sums_close(&self) -> bool {
        self.messages
            == self.ok
                + self.failed_total()
                + self.duplicates
                + self.late
                + self.bad_hash
                + self.malformed
                + self.unexpected
            && self.expected == self.answered + self.missing_total()
            && self.answered == self.ok + self.failed_total()
            && self.times.len() == self.answered
    }
}

/// Classifies every message of `collected` against the `expected` identities (`expect` may ask
/// for more replies than identities are known).
pub fn account(
    collected: &Collected,
    expected: &BTreeSet<String>,
    expect: usize,
    discovery: bool,
) -> RequestAccount {
    let mut a = RequestAccount {
        requestid: collected.requestid.clone(),
        expected: expect.max(expected.len()),
        published: collected.published,
        publish_ns: collected.publish_duration.as_nanos(),
        request_ns: collected.request_duration.as_nanos(),
        messages: collected.replies.len(),
        interrupted: collected.interrupted,
        ..RequestAccount::default()
    };
    let mut answered = HashSet::new();
    for event in &collected.replies {
        match &event.outcome {
            ReplyOutcome::Malformed(_) => a.malformed += 1,
            ReplyOutcome::BadHash(_) => a.bad_hash += 1,
            ReplyOutcome::Ok(_) if event.late => a.late += 1,
            ReplyOutcome::Ok(reply) if !expected.contains(&reply.sender) => a.unexpected += 1,
            ReplyOutcome::Ok(reply) if answered.contains(&reply.sender) => a.duplicates += 1,
            ReplyOutcome::Ok(reply) => {
                let status = if discovery {
                    Some(0)
                } else {
                    agents::rpc::statuscode_of(&reply.body).map(|c| c.code())
                };
                match status {
                    None => a.malformed += 1,
                    Some(code) => {
                        if code == 0 {
                            a.ok += 1;
                        } else {
                            *a.failed.entry(code).or_default() += 1;
                            a.failed_identities.push((reply.sender.clone(), code));
                        }
                        answered.insert(reply.sender.clone());
                        a.times
                            .push((reply.sender.clone(), event.elapsed.as_nanos()));
                    }
                }
            }
        }
    }
    a.answered = answered.len();
    a.missing = expected
        .iter()
        .filter(|id| !answered.contains(*id))
        .cloned()
        .collect();
    a.missing_unknown = a.expected - expected.len();
    a
}

/// Counts of reply times in 10 ms buckets.
pub fn buckets(times: &[(String, u128)]) -> Vec<usize> {
    let width = Duration::from_millis(10).as_nanos();
    let mut out: Vec<usize> = Vec::new();
    for (_, ns) in times {
        let i = usize::try_from(ns / width)
            .unwrap_or(usize::MAX)
            .min(100_000);
        if out.len() <= i {
            out.resize(i + 1, 0);
        }
        out[i] += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use agents::InboundReply;
    use agents::client::ReplyEvent;
    use std::time::Instant;

    fn reply(sender: &str, body: &str, late: bool, ms: u64) -> ReplyEvent {
        ReplyEvent {
            elapsed: Duration::from_millis(ms),
            late,
            outcome: ReplyOutcome::Ok(InboundReply {
                sender: sender.into(),
                requestid: "r".into(),
                agent: "emulated0".into(),
                time: 0,
                body: body.into(),
            }),
        }
    }

    #[test]
    fn every_message_and_every_identity_is_accounted_for() {
        let ok = r#"{"statuscode":0,"statusmsg":"OK","data":{}}"#;
        let bad = r#"{"statuscode":4,"statusmsg":"bad","data":{}}"#;
        let collected = Collected {
            requestid: "r".into(),
            reply_subject: "s".into(),
            started: Instant::now(),
            publish_duration: Duration::from_millis(1),
            request_duration: Duration::from_millis(30),
            published: 1,
            interrupted: false,
            replies: vec![
                reply("a", ok, false, 3),
                reply("a", ok, false, 4),
                reply("b", bad, false, 12),
                reply("zz", ok, false, 13),
                reply("c", "not json", false, 14),
                reply("d", ok, true, 40),
                ReplyEvent {
                    elapsed: Duration::from_millis(5),
                    late: false,
                    outcome: ReplyOutcome::Malformed(agents::Invalid::NotJson),
                },
            ],
        };
        let expected: BTreeSet<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let a = account(&collected, &expected, 6, false);
        assert_eq!(a.messages, 7);
        assert_eq!(
            (
                a.ok,
                a.failed_total(),
                a.duplicates,
                a.unexpected,
                a.late,
                a.malformed
            ),
            (1, 1, 1, 1, 1, 2)
        );
        assert_eq!(a.failed.get(&4), Some(&1));
        assert_eq!(a.answered, 2);
        assert_eq!(a.missing, vec!["c", "d", "e"]);
        assert_eq!(a.missing_unknown, 1);
        assert!(a.closes(), "{a:?}");
        assert_eq!(buckets(&a.times), vec![1, 1]);

        // Any count that does not add up is caught.
        for broken in [
            RequestAccount {
                messages: a.messages + 1,
                ..a.clone()
            },
            RequestAccount {
                expected: a.expected + 1,
                ..a.clone()
            },
            RequestAccount {
                answered: a.answered + 1,
                missing_unknown: a.missing_unknown - 1,
                ..a.clone()
            },
            RequestAccount {
                times: Vec::new(),
                ..a.clone()
            },
        ] {
            assert!(!broken.closes(), "{broken:?}");
        }
    }
}
