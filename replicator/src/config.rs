//! The configuration file (stage **load**, before anything connects).
//!
//! The format is the Choria stream replicator's YAML, so that its files work here: top-level
//! `name`, `monitor_port`, `loglevel`, `state_store`, `tls` and a list of `streams`. Every key
//! is checked: an unknown key, a value of the wrong type, a bad duration or a contradictory
//! entry is reported with the file, line and column (`yaml_serde` carries the position of the
//! event that failed; checks across the keys of one entry run inside its deserializer, so they
//! are positioned too).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `at` is `file:line:col` when the parser knows the position.
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
}

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The replicator's name: part of consumer names, message ids and the source header.
    pub name: String,
    /// Port of `/metrics` (none: no HTTP listener).
    pub monitor_port: Option<u16>,
    pub loglevel: String,
    /// Directory for the sampling state (one JSON file per sampled stream).
    pub state_store: Option<PathBuf>,
    pub tls: Option<Tls>,
    pub streams: Vec<StreamConfig>,
}

/// Client TLS for both connections of every stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Where a new consumer starts on the source stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From the first message.
    All,
    Sequence(u64),
    /// Unix time in nanoseconds.
    Time(i128),
    /// This long before the replicator starts.
    Delta(Duration),
    /// Only messages published after the consumer is created.
    AtEnd,
}

/// What identifies a sender for sampling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleKey {
    /// A top-level field of the JSON payload (`inspect_field`).
    Field(String),
    /// A message header (`inspect_header`).
    Header(String),
    /// A token of the subject, 1-based; -1 is the last one (`inspect_subject_token`).
    SubjectToken(i64),
}

/// Where advisories go.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advisory {
    /// `%s` is replaced by the event (`new`, `timeout`, ...), `%v` by the sender.
    pub subject: String,
    /// Publish with JetStream and wait for the acknowledgement (retried).
    #[serde(default)]
    pub reliable: bool,
}

/// Sampling of one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub key: SampleKey,
    /// Copy a sender at most once per this, and forget it after this long without a message.
    pub inspect_duration: Duration,
    /// Without a message for this long a sender times out (advisory `timeout`).
    pub warn_duration: Option<Duration>,
    /// A payload size change of more than this many bytes copies at once.
    pub size_trigger: Option<f64>,
    pub advisory: Option<Advisory>,
}

/// One entry of `streams:`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Friendly name of the entry (default: the top-level `name`).
    pub name: Option<String>,
    pub stream: String,
    pub target_stream: String,
    pub target_subject_prefix: Option<String>,
    pub target_subject_remove: Option<String>,
    pub source_url: String,
    pub target_url: String,
    /// Accepted, without effect: the one copier pulls batches from a durable pull consumer and
    /// resumes from the target, wherever it runs (see docs/replicator.md).
    pub target_initiated: bool,
    /// Do not create or inspect the target stream.
    pub no_target_create: bool,
    pub start: Start,
    pub max_age: Option<Duration>,
    pub filter_subject: Option<String>,
    pub sampling: Option<Sampling>,
}

impl StreamConfig {
    /// `<subject>` after `target_subject_prefix` and `target_subject_remove`, as Choria does.
    pub fn target_subject(&self, subject: &str) -> String {
        let mut out = match &self.target_subject_prefix {
            Some(prefix) => format!("{prefix}.{subject}").replace("..", "."),
            None => subject.to_owned(),
        };
        if let Some(remove) = &self.target_subject_remove {
            out = out.replace(remove.as_str(), "").replace("..", ".");
        }
        out
    }
}

impl Config {
    /// Reads and checks a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Checks YAML text; `file` names it in messages.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = yaml_serde::from_str(text).map_err(|e| {
            let at = match e.location() {
                Some(l) => format!("{file}:{}:{}", l.line(), l.column()),
                None => file.to_owned(),
            };
            ConfigError::Invalid {
                at,
                message: strip_position(&e.to_string()),
            }
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            at: file.to_owned(),
            message,
        };
        let name = raw.name.trim().to_owned();
        if name.is_empty() {
            return Err(invalid("name: must not be empty".into()));
        }
        if raw.streams.is_empty() {
            return Err(invalid("streams: at least one stream is needed".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &raw.streams {
            let key = (s.stream.clone(), s.name.clone());
            if !seen.insert(key) {
                return Err(invalid(format!(
                    "streams: stream {:?} appears twice with the same name; give one a `name`",
                    s.stream
                )));
            }
        }
        let loglevel = raw.loglevel.unwrap_or_else(|| "info".into());
        if !matches!(
            loglevel.as_str(),
            "trace" | "debug" | "info" | "warn" | "error"
        ) {
            return Err(invalid(format!(
                "loglevel: {loglevel:?} is not one of trace, debug, info, warn, error"
            )));
        }
        Ok(Config {
            name,
            monitor_port: raw.monitor_port.filter(|p| *p != 0),
            loglevel,
            state_store: raw.state_store,
            tls: raw.tls,
            streams: raw.streams,
        })
    }
}

/// yaml_serde appends " at line L column C"; the position is printed in front instead.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    #[serde(default)]
    monitor_port: Option<u16>,
    #[serde(default)]
    loglevel: Option<String>,
    #[serde(default)]
    state_store: Option<PathBuf>,
    #[serde(default)]
    tls: Option<Tls>,
    streams: Vec<StreamConfig>,
}

/// The keys of one stream entry as written; [`StreamConfig`] is built from it by `TryFrom`,
/// so that errors across keys carry the entry's position.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    #[serde(default)]
    name: Option<String>,
    stream: String,
    #[serde(default)]
    target_stream: Option<String>,
    #[serde(default)]
    target_subject_prefix: Option<String>,
    #[serde(default)]
    target_subject_remove: Option<String>,
    source_url: String,
    target_url: String,
    #[serde(default)]
    target_initiated: bool,
    #[serde(default)]
    no_target_create: bool,
    #[serde(default)]
    start_sequence: Option<u64>,
    #[serde(default)]
    start_time: Option<String>,
    #[serde(default, deserialize_with = "duration_opt")]
    start_delta: Option<Duration>,
    #[serde(default)]
    start_at_end: bool,
    #[serde(default, deserialize_with = "duration_opt")]
    max_age: Option<Duration>,
    #[serde(default)]
    filter_subject: Option<String>,
    #[serde(default)]
    inspect_field: Option<String>,
    #[serde(default)]
    inspect_header: Option<String>,
    #[serde(default)]
    inspect_subject_token: Option<i64>,
    #[serde(default, deserialize_with = "duration_opt")]
    inspect_duration: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    warn_duration: Option<Duration>,
    #[serde(default)]
    size_trigger: Option<f64>,
    #[serde(default)]
    advisory: Option<Advisory>,
}

impl<'de> Deserialize<'de> for StreamConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawStream::deserialize(d)?;
        StreamConfig::try_from(raw).map_err(serde::de::Error::custom)
    }
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_whitespace() && !matches!(c, '.' | '*' | '>' | '/' | '\\'))
}

fn is_subject(text: &str, wildcards: bool) -> bool {
    !text.is_empty()
        && text.split('.').all(|t| {
            !t.is_empty()
                && !t.chars().any(char::is_whitespace)
                && (wildcards || (t != "*" && t != ">"))
        })
}

impl TryFrom<RawStream> for StreamConfig {
    type Error = String;

    fn try_from(r: RawStream) -> Result<Self, String> {
        let label = format!("stream {:?}", r.stream);
        if !is_name(&r.stream) {
            return Err(format!(
                "{label}: `stream` must be a JetStream stream name (no spaces, '.', '*', '>')"
            ));
        }
        let target_stream = r.target_stream.unwrap_or_else(|| r.stream.clone());
        if !is_name(&target_stream) {
            return Err(format!(
                "{label}: `target_stream` {target_stream:?} is not a JetStream stream name"
            ));
        }
        if let Some(n) = &r.name
            && !is_name(n)
        {
            return Err(format!(
                "{label}: `name` {n:?} must not contain spaces, '.', '*', '>'"
            ));
        }
        for (key, url) in [("source_url", &r.source_url), ("target_url", &r.target_url)] {
            if url.trim().is_empty() {
                return Err(format!("{label}: `{key}` must not be empty"));
            }
        }
        if let Some(p) = &r.target_subject_prefix
            && !is_subject(p.trim_matches('.'), false)
        {
            return Err(format!(
                "{label}: `target_subject_prefix` {p:?} is not a subject prefix"
            ));
        }
        if let Some(f) = &r.filter_subject
            && !is_subject(f, true)
        {
            return Err(format!("{label}: `filter_subject` {f:?} is not a subject"));
        }
        let starts = [
            r.start_sequence.is_some(),
            r.start_time.is_some(),
            r.start_delta.is_some(),
            r.start_at_end,
        ];
        if starts.iter().filter(|s| **s).count() > 1 {
            return Err(format!(
                "{label}: only one of start_sequence, start_time, start_delta, start_at_end may be set"
            ));
        }
        let start = if let Some(seq) = r.start_sequence {
            Start::Sequence(seq)
        } else if let Some(t) = &r.start_time {
            let parsed = chrono::DateTime::parse_from_rfc3339(t).map_err(|e| {
                format!("{label}: `start_time` {t:?} is not an RFC 3339 time ({e})")
            })?;
            Start::Time(i128::from(parsed.timestamp()) * 1_000_000_000)
        } else if let Some(d) = r.start_delta {
            Start::Delta(d)
        } else if r.start_at_end {
            Start::AtEnd
        } else {
            Start::All
        };
        let keys = [
            r.inspect_field.is_some(),
            r.inspect_header.is_some(),
            r.inspect_subject_token.is_some(),
        ];
        let sampling = match keys.iter().filter(|k| **k).count() {
            0 => {
                for (key, set) in [
                    ("inspect_duration", r.inspect_duration.is_some()),
                    ("warn_duration", r.warn_duration.is_some()),
                    ("size_trigger", r.size_trigger.is_some()),
                    ("advisory", r.advisory.is_some()),
                ] {
                    if set {
                        return Err(format!(
                            "{label}: `{key}` needs one of inspect_field, inspect_header, inspect_subject_token"
                        ));
                    }
                }
                None
            }
            1 => {
                let key = if let Some(f) = r.inspect_field {
                    SampleKey::Field(f)
                } else if let Some(h) = r.inspect_header {
                    SampleKey::Header(h)
                } else if let Some(t) = r.inspect_subject_token {
                    if t == 0 || t < -1 {
                        return Err(format!(
                            "{label}: `inspect_subject_token` is 1-based (or -1 for the last token), not {t}"
                        ));
                    }
                    SampleKey::SubjectToken(t)
                } else {
                    return Err(format!("{label}: no inspect key"));
                };
                let Some(inspect_duration) = r.inspect_duration.filter(|d| !d.is_zero()) else {
                    return Err(format!(
                        "{label}: sampling needs a non-zero `inspect_duration`"
                    ));
                };
                if let Some(w) = r.warn_duration
                    && (w.is_zero() || w >= inspect_duration)
                {
                    return Err(format!(
                        "{label}: `warn_duration` must be above zero and below `inspect_duration`"
                    ));
                }
                if let Some(s) = r.size_trigger
                    && !(s.is_finite() && s > 0.0)
                {
                    return Err(format!(
                        "{label}: `size_trigger` must be a positive number of bytes"
                    ));
                }
                if let Some(a) = &r.advisory
                    && !is_subject(&a.subject.replace("%s", "x").replace("%v", "x"), false)
                {
                    return Err(format!(
                        "{label}: advisory `subject` {:?} is not a subject",
                        a.subject
                    ));
                }
                Some(Sampling {
                    key,
                    inspect_duration,
                    warn_duration: r.warn_duration,
                    size_trigger: r.size_trigger,
                    advisory: r.advisory,
                })
            }
            _ => {
                return Err(format!(
                    "{label}: only one of inspect_field, inspect_header, inspect_subject_token may be set"
                ));
            }
        };
        Ok(StreamConfig {
            name: r.name,
            stream: r.stream,
            target_stream,
            target_subject_prefix: r
                .target_subject_prefix
                .map(|p| p.trim_matches('.').to_owned()),
            target_subject_remove: r.target_subject_remove.filter(|s| !s.is_empty()),
            source_url: r.source_url,
            target_url: r.target_url,
            target_initiated: r.target_initiated,
            no_target_create: r.no_target_create,
            start,
            max_age: r.max_age,
            filter_subject: r.filter_subject,
            sampling,
        })
    }
}

/// A duration written as text; parsed inside the visitor so that an error carries the
/// position of the value itself.
struct TextDuration(Duration);

impl<'de> Deserialize<'de> for TextDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = TextDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as 10m, 1h or 30s")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TextDuration, E> {
                parse_duration(v).map(TextDuration).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<TextDuration, E> {
                if v == 0 {
                    Ok(TextDuration(Duration::ZERO))
                } else {
                    Err(E::custom(format!(
                        "{v} has no unit: write e.g. {v}s or {v}m"
                    )))
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn duration_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Ok(Option::<TextDuration>::deserialize(d)?.map(|t| t.0))
}

/// Parses Go-style durations (`1h30m`, `10s`, `500ms`) plus days and weeks (`1d`, `2w`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("a duration must not be empty (e.g. 10m, 1h, 30s)".into());
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration (e.g. 10m, 1h, 30s)"))?;
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            _ => {
                return Err(format!(
                    "{text:?} is not a duration: unit {unit:?} is not one of ns, us, ms, s, m, h, d, w"
                ));
            }
        };
        let part = Duration::try_from_secs_f64(value * seconds)
            .map_err(|_| format!("{text:?} is out of range"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("{text:?} is out of range"))?;
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn subject_transforms_follow_choria() {
        let text = "name: r\nstreams:\n  - stream: S\n    source_url: nats://a\n    target_url: nats://b\n    target_subject_prefix: dc1\n    target_subject_remove: input.\n";
        let c = Config::parse(text, "x.yaml").expect("valid");
        assert_eq!(c.streams[0].target_subject("input.reg.n1"), "dc1.reg.n1");
        assert_eq!(c.streams[0].target_stream, "S");
    }

    #[test]
    fn errors_have_positions() {
        let text = "name: r\nstreams:\n  - stream: S\n    source_url: nats://a\n    target_url: nats://b\n    bogus: 1\n";
        let e = Config::parse(text, "x.yaml").expect_err("unknown key");
        let s = e.to_string();
        assert!(s.starts_with("x.yaml:6:"), "{s}");
        assert!(s.contains("bogus"), "{s}");
        let text = "name: r\nstreams:\n  - stream: S\n    source_url: nats://a\n    target_url: nats://b\n    max_age: 10 parsecs\n";
        let s = Config::parse(text, "x.yaml").expect_err("bad").to_string();
        assert!(s.starts_with("x.yaml:6:"), "{s}");
    }
}
