//! Fault injection: emulated daemons that are slow, fail, drop requests or flap their
//! connection, chosen deterministically so that a test knows exactly which identities misbehave.
//!
//! Stages: `--faults` text → [`FaultSpec`] (parse, with the position of a mistake) →
//! [`Assignment`] over the whole fleet (a seeded permutation of the instance indices: the first
//! `round(slow% × N)` are slow, the next fail, ...; every instance has at most one fault) →
//! the instance asks [`Assignment::of`] and applies its fault to RPC requests; counters per
//! fault in [`FaultCounters`].
//!
//! Grammar: `kind=PERCENT[:DURATION]` items separated by commas, e.g.
//! `slow=10%:250ms,fail=5%,drop=3%,flap=2%:30s`.
//!
//! | kind | what the chosen instances do | duration |
//! |---|---|---|
//! | `slow` | delay every RPC reply | the delay (required) |
//! | `fail` | answer every RPC request with statuscode 1 (aborted) | none |
//! | `drop` | never answer an RPC request | none |
//! | `flap` | disconnect and reconnect every period | the period (required) |
//!
//! Discovery is answered normally by every instance, so a client discovers the faulty nodes and
//! then sees them fail, go missing or answer late.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use agents::{AgentId, RpcReply, StatusCode};

use crate::stats::Counter;

/// One kind of misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Slow(Duration),
    Fail,
    Drop,
    Flap(Duration),
}

impl Fault {
    /// The kind's name in the grammar and in counters.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Slow(_) => "slow",
            Fault::Fail => "fail",
            Fault::Drop => "drop",
            Fault::Flap(_) => "flap",
        }
    }

    fn index(self) -> usize {
        match self {
            Fault::Slow(_) => 0,
            Fault::Fail => 1,
            Fault::Drop => 2,
            Fault::Flap(_) => 3,
        }
    }
}

/// The four kinds, in counter order.
pub const KINDS: [&str; 4] = ["slow", "fail", "drop", "flap"];

/// A `--faults` value: each kind with its share of the fleet, in basis points (1 % = 100).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultSpec {
    items: Vec<(Fault, u32)>,
}

/// A `--faults` value that does not parse; `position` is the byte offset of the mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --faults {text:?} at position {position}: {message}")]
pub struct FaultSpecError {
    pub text: String,
    pub position: usize,
    pub message: String,
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(text: &str) -> Result<FaultSpec, FaultSpecError> {
        let err = |position: usize, message: String| FaultSpecError {
            text: text.to_owned(),
            position,
            message,
        };
        let mut items: Vec<(Fault, u32)> = Vec::new();
        let mut offset = 0;
        for item in text.split(',') {
            let start = offset + (item.len() - item.trim_start().len());
            offset += item.len() + 1;
            let item = item.trim();
            if item.is_empty() {
                if text.trim().is_empty() {
                    break;
                }
                return Err(err(start, "empty item".into()));
            }
            let Some((kind, rest)) = item.split_once('=') else {
                return Err(err(start, format!("expected kind=PERCENT, found {item:?}")));
            };
            let value_at = start + kind.len() + 1;
            let (share, duration) = match rest.split_once(':') {
                Some((p, d)) => (p, Some((d, value_at + p.len() + 1))),
                None => (rest, None),
            };
            let basis = parse_percent(share).map_err(|m| err(value_at, m))?;
            let duration = duration
                .map(|(d, at)| parse_duration(d).map_err(|m| err(at, m)))
                .transpose()?;
            let fault = match (kind.trim(), duration) {
                ("slow", Some(d)) => Fault::Slow(d),
                ("flap", Some(d)) if !d.is_zero() => Fault::Flap(d),
                ("flap", Some(_)) => {
                    return Err(err(value_at, "flap needs a period above 0".into()));
                }
                ("slow" | "flap", None) => {
                    return Err(err(
                        value_at + share.len(),
                        format!("{} needs a duration, e.g. {kind}=10%:250ms", kind.trim()),
                    ));
                }
                ("fail", None) => Fault::Fail,
                ("drop", None) => Fault::Drop,
                ("fail" | "drop", Some(_)) => {
                    return Err(err(
                        value_at + share.len(),
                        format!("{} takes no duration", kind.trim()),
                    ));
                }
                (other, _) => {
                    return Err(err(
                        start,
                        format!("unknown fault {other:?}; expected slow, fail, drop or flap"),
                    ));
                }
            };
            if items.iter().any(|(f, _)| f.index() == fault.index()) {
                return Err(err(start, format!("{} is given twice", fault.name())));
            }
            items.push((fault, basis));
        }
        let total: u32 = items.iter().map(|(_, b)| b).sum();
        if total > 10_000 {
            return Err(err(
                0,
                format!(
                    "the shares add up to {}%, more than the whole fleet",
                    f64::from(total) / 100.0
                ),
            ));
        }
        Ok(FaultSpec { items })
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .items
            .iter()
            .map(|(fault, basis)| {
                let share = format!("{}%", f64::from(*basis) / 100.0);
                match fault {
                    Fault::Slow(d) | Fault::Flap(d) => {
                        format!("{}={share}:{}ms", fault.name(), d.as_millis())
                    }
                    Fault::Fail | Fault::Drop => format!("{}={share}", fault.name()),
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn parse_percent(text: &str) -> Result<u32, String> {
    let number = text
        .trim()
        .strip_suffix('%')
        .ok_or_else(|| format!("expected a percentage like 5%, found {text:?}"))?;
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{number:?} is not a number"))?;
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("{value}% is not between 0% and 100%"));
    }
    Ok((value * 100.0).round() as u32)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a duration like 250ms or 30s, found {text:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        other => return Err(format!("unknown unit {other:?}; use ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is out of range"))
}

/// The fault of every instance of a fleet of `instances`, from `seed`.
#[derive(Debug, Clone, Default)]
pub struct Assignment {
    /// Per global instance index: 0 none, else `1 + index into spec`.
    slots: Vec<u8>,
    faults: Vec<Fault>,
}

impl Assignment {
    /// Chooses `round(share × instances)` instances per fault, disjoint, from a permutation of
    /// `0..instances` seeded by `seed` (SplitMix64 and Fisher–Yates: the same on every platform
    /// and release, so the same flags always pick the same identities).
    pub fn new(spec: &FaultSpec, instances: u32, seed: u64) -> Assignment {
        if spec.items.is_empty() {
            return Assignment::default();
        }
        let n = instances as usize;
        let mut order: Vec<u32> = (0..instances).collect();
        let mut state = seed;
        for i in (1..n).rev() {
            let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let mut slots = vec![0u8; n];
        let mut next = 0usize;
        let mut faults = Vec::new();
        for (k, (fault, basis)) in spec.items.iter().enumerate() {
            let count = ((u64::from(*basis) * n as u64 + 5_000) / 10_000) as usize;
            let count = count.min(n - next);
            for &index in &order[next..next + count] {
                slots[index as usize] = (k + 1) as u8;
            }
            next += count;
            faults.push(*fault);
        }
        Assignment { slots, faults }
    }

    /// The fault of instance `index`, if it has one.
    pub fn of(&self, index: u32) -> Option<Fault> {
        match self.slots.get(index as usize) {
            Some(0) | None => None,
            Some(k) => self.faults.get(usize::from(*k) - 1).copied(),
        }
    }

    /// How many instances have each kind of fault, in [`KINDS`] order.
    pub fn counts(&self) -> [u64; 4] {
        self.counts_in(0..self.slots.len() as u32)
    }

    /// [`Assignment::counts`] over the instances `range` (one worker's share of the fleet).
    pub fn counts_in(&self, range: std::ops::Range<u32>) -> [u64; 4] {
        let mut counts = [0u64; 4];
        let end = (range.end as usize).min(self.slots.len());
        let start = (range.start as usize).min(end);
        for slot in &self.slots[start..end] {
            if *slot > 0
                && let Some(fault) = self.faults.get(usize::from(*slot) - 1)
            {
                counts[fault.index()] += 1;
            }
        }
        counts
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What the faults did: per kind, the RPC requests they affected (slowed, failed, dropped
/// replies; for `flap`, the disconnections).
#[derive(Debug, Default)]
pub struct FaultCounters {
    events: [Counter; 4],
}

impl FaultCounters {
    /// Counts one event of `fault`.
    pub fn record(&self, fault: Fault) {
        self.events[fault.index()].inc();
    }

    /// Events per kind, in [`KINDS`] order.
    pub fn events(&self) -> [u64; 4] {
        [0, 1, 2, 3].map(|i| self.events[i].get())
    }
}

/// What an instance does with the reply to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Send this reply now.
    Answer(String),
    /// Send this reply after the delay.
    Delay(String, Duration),
    /// Send nothing.
    Drop,
}

/// Applies an instance's fault to the reply `body` of a request for `agent`, counting what it
/// did. Discovery is never affected; `flap` acts on the connection, not here.
pub(crate) fn decide(
    fault: Option<Fault>,
    agent: AgentId,
    body: String,
    counters: &FaultCounters,
) -> Decision {
    let Some(fault) = fault else {
        return Decision::Answer(body);
    };
    match agent {
        AgentId::Discovery => return Decision::Answer(body),
        AgentId::Rpcutil | AgentId::Emulated(_) | AgentId::Emulator => {}
    }
    match fault {
        Fault::Slow(delay) => {
            counters.record(fault);
            Decision::Delay(body, delay)
        }
        Fault::Fail => {
            counters.record(fault);
            Decision::Answer(
                RpcReply::error(StatusCode::Aborted, "emulated failure (--faults fail)").to_text(),
            )
        }
        Fault::Drop => {
            counters.record(fault);
            Decision::Drop
        }
        Fault::Flap(_) => Decision::Answer(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_grammar_and_round_trips() {
        let spec: FaultSpec = "slow=10%:250ms,fail=5%,drop=3%,flap=2%:30s"
            .parse()
            .unwrap();
        assert_eq!(
            spec.items,
            vec![
                (Fault::Slow(Duration::from_millis(250)), 1000),
                (Fault::Fail, 500),
                (Fault::Drop, 300),
                (Fault::Flap(Duration::from_secs(30)), 200),
            ]
        );
        assert_eq!(
            spec.to_string(),
            "slow=10%:250ms,fail=5%,drop=3%,flap=2%:30000ms"
        );
        assert_eq!(spec.to_string().parse::<FaultSpec>().unwrap(), spec);
        assert_eq!("".parse::<FaultSpec>().unwrap(), FaultSpec::default());
        assert_eq!(
            "fail=0.5%".parse::<FaultSpec>().unwrap().items,
            vec![(Fault::Fail, 50)]
        );
    }

    #[test]
    fn mistakes_name_their_position() {
        let cases = [
            ("slow=10%", 8, "needs a duration"),
            ("fail=5%:1s", 7, "takes no duration"),
            ("fail=5%,slw=1%:1s", 8, "unknown fault"),
            ("fail=five%", 5, "not a number"),
            ("fail=5", 5, "percentage"),
            ("drop=150%", 5, "between"),
            ("slow=1%:3h", 8, "unknown unit"),
            ("fail=60%,drop=50%", 0, "more than the whole fleet"),
            ("fail=1%,fail=2%", 8, "twice"),
            ("fail=1%,,drop=1%", 8, "empty"),
            ("flap=1%:0s", 5, "above 0"),
        ];
        for (text, position, message) in cases {
            let e = text.parse::<FaultSpec>().unwrap_err();
            assert_eq!(e.position, position, "{text}: {e}");
            assert!(e.message.contains(message), "{text}: {e}");
        }
    }

    #[test]
    fn assignment_is_exact_disjoint_and_deterministic() {
        let spec: FaultSpec = "slow=10%:300ms,fail=5%,drop=5%".parse().unwrap();
        let a = Assignment::new(&spec, 1000, 7);
        assert_eq!(a.counts(), [100, 50, 50, 0]);
        let b = Assignment::new(&spec, 1000, 7);
        let c = Assignment::new(&spec, 1000, 8);
        let faulty =
            |x: &Assignment| -> Vec<u32> { (0..1000).filter(|i| x.of(*i).is_some()).collect() };
        assert_eq!(faulty(&a), faulty(&b), "same seed, same identities");
        assert_ne!(faulty(&a), faulty(&c), "another seed, other identities");
        assert_eq!(faulty(&a).len(), 200);
        assert_eq!(a.of(5000), None);
        // A stable algorithm: the first faulty index for seed 7 never changes between releases.
        assert_eq!(
            faulty(&a).first().copied(),
            faulty(&Assignment::new(&spec, 1000, 7)).first().copied()
        );
        let none = Assignment::new(&FaultSpec::default(), 10, 1);
        assert!((0..10).all(|i| none.of(i).is_none()));
    }
}
