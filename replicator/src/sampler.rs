//! Sampling (stage **sample**, between reading a message and publishing it).
//!
//! A sender is named by a JSON field of the payload, a header or a subject token. A message is
//! copied when its sender is new, when its payload size changed by more than `size_trigger`
//! bytes since the last copy, or when the last copy is `inspect_duration` old; otherwise it is
//! skipped. [`Sampler::tick`] finds senders silent for `warn_duration` (advisory `timeout`) and
//! for `inspect_duration` (advisory `expire`, the sender is forgotten); a timed-out sender that
//! speaks again gives `recover`. The table is saved to a JSON file in `state_store` and read back
//! at start, so a restart does not copy every known sender again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{SampleKey, Sampling};

/// The kinds of advisory, in the order of [`crate::metrics::StreamStats::advisories`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdvisoryKind {
    New,
    Timeout,
    Recover,
    Expire,
}

impl AdvisoryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AdvisoryKind::New => "new",
            AdvisoryKind::Timeout => "timeout",
            AdvisoryKind::Recover => "recover",
            AdvisoryKind::Expire => "expire",
        }
    }

    pub fn index(self) -> usize {
        match self {
            AdvisoryKind::New => 0,
            AdvisoryKind::Timeout => 1,
            AdvisoryKind::Recover => 2,
            AdvisoryKind::Expire => 3,
        }
    }
}

/// Something to announce about one sender.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: AdvisoryKind,
    pub value: String,
    /// Seconds since the sender was last seen.
    pub age: f64,
    /// Unix seconds of the last message from the sender.
    pub seen: i64,
}

/// Copy or skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Copy,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Sender {
    /// Unix milliseconds.
    last_seen: i64,
    last_copied: i64,
    size: usize,
    timed_out: bool,
}

/// The sampling table of one stream.
#[derive(Debug)]
pub struct Sampler {
    config: Sampling,
    senders: BTreeMap<String, Sender>,
    file: Option<PathBuf>,
}

/// Why the state file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write sampling state {path}: {source}")]
pub struct SaveError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Sampler {
    /// A sampler; with `file`, the state saved there earlier is read back (an unreadable file
    /// is logged and ignored: the senders are then new again).
    pub fn new(config: Sampling, file: Option<PathBuf>) -> Sampler {
        let mut senders = BTreeMap::new();
        if let Some(path) = &file {
            match std::fs::read(path) {
                Ok(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(s) => senders = s,
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "sampling state unreadable, starting empty");
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "sampling state unreadable, starting empty");
                }
            }
        }
        Sampler {
            config,
            senders,
            file,
        }
    }

    /// Senders known.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// The sender of a message, if it names one.
    pub fn key(
        &self,
        subject: &str,
        headers: Option<&async_nats::HeaderMap>,
        payload: &[u8],
    ) -> Option<String> {
        match &self.config.key {
            SampleKey::Field(field) => {
                let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
                match v.get(field)? {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                }
            }
            SampleKey::Header(h) => headers?.get(h.as_str()).map(|v| v.as_str().to_owned()),
            SampleKey::SubjectToken(t) => {
                let tokens: Vec<&str> = subject.split('.').collect();
                let i = if *t == -1 {
                    tokens.len().checked_sub(1)?
                } else {
                    usize::try_from(*t).ok()?.checked_sub(1)?
                };
                tokens.get(i).map(|s| (*s).to_owned())
            }
        }
    }

    /// Decides about one message of `key` with a payload of `size` bytes at `now_ms`.
    pub fn observe(&mut self, key: &str, size: usize, now_ms: i64) -> (Decision, Option<Event>) {
        let inspect = millis(self.config.inspect_duration);
        match self.senders.get_mut(key) {
            None => {
                self.senders.insert(
                    key.to_owned(),
                    Sender {
                        last_seen: now_ms,
                        last_copied: now_ms,
                        size,
                        timed_out: false,
                    },
                );
                (
                    Decision::Copy,
                    Some(Event {
                        kind: AdvisoryKind::New,
                        value: key.to_owned(),
                        age: 0.0,
                        seen: now_ms / 1000,
                    }),
                )
            }
            Some(s) => {
                let event = s.timed_out.then(|| Event {
                    kind: AdvisoryKind::Recover,
                    value: key.to_owned(),
                    age: (now_ms - s.last_seen) as f64 / 1000.0,
                    seen: s.last_seen / 1000,
                });
                s.timed_out = false;
                s.last_seen = now_ms;
                let changed = self
                    .config
                    .size_trigger
                    .is_some_and(|t| (size as f64 - s.size as f64).abs() > t);
                let due = now_ms.saturating_sub(s.last_copied) >= inspect;
                let decision = if changed || due || event.is_some() {
                    s.last_copied = now_ms;
                    s.size = size;
                    Decision::Copy
                } else {
                    Decision::Skip
                };
                (decision, event)
            }
        }
    }

    /// Timeouts and expiries at `now_ms`; expired senders are forgotten.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Event> {
        let inspect = millis(self.config.inspect_duration);
        let warn = self.config.warn_duration.map(millis);
        let mut events = Vec::new();
        self.senders.retain(|key, s| {
            let silent = now_ms.saturating_sub(s.last_seen);
            let event = |kind| Event {
                kind,
                value: key.clone(),
                age: silent as f64 / 1000.0,
                seen: s.last_seen / 1000,
            };
            if silent >= inspect {
                events.push(event(AdvisoryKind::Expire));
                return false;
            }
            if let Some(w) = warn
                && silent >= w
                && !s.timed_out
            {
                events.push(event(AdvisoryKind::Timeout));
                s.timed_out = true;
            }
            true
        });
        events
    }

    /// Writes the table to its file (atomically: a temporary file renamed).
    pub fn save(&self) -> Result<(), SaveError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let err = |source| SaveError {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_vec(&self.senders).map_err(|e| err(e.into()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

/// `<dir>/<stream>_<name>.json`, as Choria names its state files.
pub fn state_file(dir: &Path, stream: &str, name: &str) -> PathBuf {
    dir.join(format!("{stream}_{name}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(size: Option<f64>) -> Sampling {
        Sampling {
            key: SampleKey::Field("sender".into()),
            inspect_duration: Duration::from_secs(3600),
            warn_duration: Some(Duration::from_secs(60)),
            size_trigger: size,
            advisory: None,
        }
    }

    #[test]
    fn first_seen_size_and_duration() {
        let mut s = Sampler::new(sampling(Some(10.0)), None);
        assert_eq!(s.observe("a", 100, 0).0, Decision::Copy);
        assert_eq!(s.observe("a", 105, 1000).0, Decision::Skip);
        assert_eq!(s.observe("a", 120, 2000).0, Decision::Copy);
        assert_eq!(s.observe("a", 120, 3_600_000).0, Decision::Skip);
        assert_eq!(s.observe("a", 120, 3_602_000).0, Decision::Copy);
        let events = s.tick(3_602_000 + 60_000);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, AdvisoryKind::Timeout);
        assert!(s.tick(3_602_000 + 61_000).is_empty());
        let (d, e) = s.observe("a", 120, 3_602_000 + 62_000);
        assert_eq!(d, Decision::Copy);
        assert_eq!(e.map(|e| e.kind), Some(AdvisoryKind::Recover));
        let events = s.tick(3_602_000 + 62_000 + 3_600_000);
        assert_eq!(
            events.iter().map(|e| e.kind).collect::<Vec<_>>(),
            [AdvisoryKind::Expire]
        );
        assert!(s.is_empty());
    }

    #[test]
    fn state_survives_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = state_file(dir.path(), "S", "r");
        let mut s = Sampler::new(sampling(None), Some(file.clone()));
        s.observe("a", 1, 0);
        s.save().expect("save");
        let mut again = Sampler::new(sampling(None), Some(file));
        assert_eq!(again.len(), 1);
        assert_eq!(again.observe("a", 1, 10).0, Decision::Skip);
    }
}
