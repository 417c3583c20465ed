//! Copying one stream: connect → wait for the source stream → make the target stream →
//! resume point → read (durable pull consumer) → age/sample → publish (many in flight, each with
//! a reply subject on one inbox of ours) → target acks, settled in order → source ack (`AckAll`
//! of the highest message done).
//!
//! The publishes are plain NATS publishes whose reply subject is `<inbox>.<source sequence>`;
//! the target's JetStream answers each on it with its PubAck. One subscription takes all of
//! them, and one periodic check finds the oldest unacknowledged publish too old: no per-message
//! future, channel or timer.
//!
//! Every failure (a publish refused or timed out, the target or the source connection lost, the
//! consumer stream ending) ends the *session*: the connections are dropped, the copier waits a
//! full-jitter backoff and starts again from the resume point. The resume point is the higher
//! of the consumer's acknowledged floor and the source sequence of the target stream's last
//! message written by this replicator (its `Nats-Msg-Id` is `<name>:<stream>:<seq>`), so a
//! restart neither skips nor repeats; what was published but not acknowledged is published
//! again with the same message id and the target's duplicate window drops it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt as _;
use std::collections::VecDeque;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Start, StreamConfig, Tls};
use crate::metrics::StreamStats;
use crate::sampler::{Decision, Event, Sampler};

/// Most publishes waiting for the target's acknowledgement.
pub const WINDOW: usize = 4096;
/// Acknowledge the source after this many messages done (or every [`ACK_EVERY`]).
const ACK_BATCH: u64 = 1024;
const ACK_EVERY: Duration = Duration::from_millis(200);
/// How long a publish may wait for the target's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Header naming the replicator and the source position.
pub const SOURCE_HEADER: &str = "Choria-SR-Source";

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot connect to {role} {url}: {message}")]
    Connect {
        role: &'static str,
        url: String,
        message: String,
    },
    #[error("source stream {stream}: {message}")]
    Source { stream: String, message: String },
    #[error("target stream {stream}: {message}")]
    Target { stream: String, message: String },
    #[error("publish of source sequence {seq} to the target failed: {message}")]
    Publish { seq: u64, message: String },
}

/// One copier per entry of `streams:`.
pub struct Copier {
    /// `name` of the entry, else the replicator's.
    name: String,
    replicator: String,
    cfg: StreamConfig,
    tls: Option<Tls>,
    stats: Arc<StreamStats>,
    sampler: Option<Sampler>,
    /// Sequences sampling decided to copy whose copy is not acknowledged yet: copied whatever
    /// the sampler says when they come back after a failure.
    forced: BTreeSet<u64>,
}

/// The durable consumer's name: `SR_<name>_<stream>`, with characters JetStream refuses replaced.
pub fn consumer_name(name: &str, stream: &str) -> String {
    format!("SR_{name}_{stream}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}

/// Full jitter: a random wait in `[0, min(cap, base·2^attempt)]`.
pub fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100);
    let cap = Duration::from_secs(10);
    let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(10_000);
    Duration::from_millis(rand::random_range(0..=ms))
}

pub(crate) async fn connect(
    role: &'static str,
    url: &str,
    tls: Option<&Tls>,
    reconnect: bool,
) -> Result<async_nats::Client, SessionError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("stream-replicator {role}"))
        .connection_timeout(Duration::from_secs(3));
    if !reconnect {
        // One immediate attempt after a disconnect, then the client closes and drops what it
        // had buffered: a later session republishes it in order instead.
        options = options
            .max_reconnects(1)
            .reconnect_delay_callback(|_| Duration::ZERO);
    }
    if let Some(tls) = tls {
        options = options.require_tls(true);
        if let Some(ca) = &tls.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
    }
    options
        .connect(url)
        .await
        .map_err(|e| SessionError::Connect {
            role,
            url: url.to_owned(),
            message: e.to_string(),
        })
}

/// A message read from the source, in source order, until its fate is settled: copied once the
/// target acknowledged it, or skipped (age, sampling) at once.
struct Done {
    seq: u64,
    published_ms: i64,
    copied: bool,
    /// When the publish went out (copies only).
    sent: Instant,
    /// Whether it is settled: acknowledged by the target, or skipped.
    settled: bool,
    message: jetstream::Message,
}

/// What the target's reply to one publish says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PubAck {
    /// Stored (or a duplicate of what is stored: the copy is there either way).
    Stored,
    /// Refused, with the reason.
    Refused(String),
}

/// Reads a JetStream PubAck: `{"stream":..,"seq":..}` (maybe `"duplicate":true`) is stored;
/// `{"error":{..}}`, a status such as 503 (no stream listens on the subject) or anything else
/// is refused.
pub(crate) fn read_puback(status: Option<u16>, payload: &[u8]) -> PubAck {
    #[derive(serde::Deserialize)]
    struct Reply<'a> {
        #[serde(borrow)]
        stream: Option<std::borrow::Cow<'a, str>>,
        seq: Option<u64>,
        error: Option<serde_json::Value>,
    }
    if let Some(code) = status
        && !(200..300).contains(&code)
    {
        return PubAck::Refused(format!("status {code} from the target"));
    }
    match serde_json::from_slice::<Reply<'_>>(payload) {
        Ok(Reply { error: Some(e), .. }) => PubAck::Refused(e.to_string()),
        Ok(Reply {
            stream: Some(_),
            seq: Some(_),
            ..
        }) => PubAck::Stored,
        Ok(_) => PubAck::Refused(format!(
            "not an acknowledgement: {}",
            String::from_utf8_lossy(&payload[..payload.len().min(200)])
        )),
        Err(e) => PubAck::Refused(format!("not an acknowledgement ({e})")),
    }
}

impl Copier {
    pub fn new(config: &Config, cfg: StreamConfig, stats: Arc<StreamStats>) -> Copier {
        let name = cfg.name.clone().unwrap_or_else(|| config.name.clone());
        let sampler = cfg.sampling.clone().map(|s| {
            let file = config
                .state_store
                .as_ref()
                .map(|d| crate::sampler::state_file(d, &cfg.stream, &name));
            Sampler::new(s, file)
        });
        Copier {
            name,
            replicator: config.name.clone(),
            tls: config.tls.clone(),
            cfg,
            stats,
            sampler,
            forced: BTreeSet::new(),
        }
    }

    /// Copies until `cancel`, restarting sessions after failures.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            let copied_before = self.stats.copied.load(Relaxed);
            let result = self.session(&cancel).await;
            self.save_state();
            match result {
                Ok(()) => return,
                Err(e) => {
                    if started.elapsed() > Duration::from_secs(10)
                        || self.stats.copied.load(Relaxed) > copied_before
                    {
                        attempt = 0;
                    }
                    let wait = backoff(attempt);
                    attempt = attempt.saturating_add(1);
                    self.stats.retried.fetch_add(1, Relaxed);
                    tracing::warn!(stream = %self.cfg.stream, error = %e, retry_in_ms = wait.as_millis() as u64, "copy interrupted, resuming");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    fn save_state(&self) {
        if let Some(s) = &self.sampler
            && let Err(e) = s.save()
        {
            tracing::warn!(stream = %self.cfg.stream, error = %e, "sampling state not saved");
        }
    }

    /// Waits (logging every 10 s) until the source stream exists.
    async fn source_stream(
        &self,
        js: &jetstream::Context,
        cancel: &CancellationToken,
    ) -> Result<Option<stream::Stream>, SessionError> {
        let mut last_log: Option<Instant> = None;
        loop {
            match js.get_stream(&self.cfg.stream).await {
                Ok(s) => return Ok(Some(s)),
                Err(e) => {
                    let missing = matches!(
                        e.kind(),
                        jetstream::context::GetStreamErrorKind::JetStream(j)
                            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                    );
                    if !missing {
                        return Err(SessionError::Source {
                            stream: self.cfg.stream.clone(),
                            message: e.to_string(),
                        });
                    }
                    if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::info!(stream = %self.cfg.stream, source = %self.cfg.source_url, "waiting for the source stream to exist");
                        last_log = Some(Instant::now());
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Creates the target stream like the source when it is missing; returns the source
    /// sequence of its last message copied by us (0 if none).
    async fn target_stream(
        &self,
        js: &jetstream::Context,
        source: &stream::Info,
    ) -> Result<u64, SessionError> {
        let err = |message: String| SessionError::Target {
            stream: self.cfg.target_stream.clone(),
            message,
        };
        let mut target = match js.get_stream(&self.cfg.target_stream).await {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                let mut config = source.config.clone();
                config.name = self.cfg.target_stream.clone();
                config.subjects = if config.subjects.is_empty() {
                    vec![self.cfg.target_subject(">")]
                } else {
                    config
                        .subjects
                        .iter()
                        .map(|s| self.cfg.target_subject(s))
                        .collect()
                };
                config.mirror = None;
                config.sources = None;
                if config.duplicate_window < Duration::from_secs(120) {
                    config.duplicate_window = Duration::from_secs(120);
                }
                tracing::info!(stream = %self.cfg.target_stream, subjects = ?config.subjects, "creating the target stream like the source");
                js.create_stream(config)
                    .await
                    .map_err(|e| err(format!("cannot create: {e}")))?
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let last = target
            .info()
            .await
            .map_err(|e| err(e.to_string()))?
            .state
            .last_sequence;
        if last == 0 {
            return Ok(0);
        }
        match target.get_raw_message(last).await {
            Ok(m) => Ok(m
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .and_then(|id| self.sequence_of(id.as_str()))
                .unwrap_or(0)),
            // Purged or deleted: no resume hint, the duplicate window still applies.
            Err(_) => Ok(0),
        }
    }

    fn message_id(&self, seq: u64) -> String {
        format!("{}:{}:{seq}", self.name, self.cfg.stream)
    }

    fn sequence_of(&self, id: &str) -> Option<u64> {
        let prefix = format!("{}:{}:", self.name, self.cfg.stream);
        id.strip_prefix(&prefix)?.parse().ok()
    }

    /// Makes the durable consumer start at the resume point: an existing one is replaced by one
    /// starting after its acknowledged floor (so that what it had delivered but not seen
    /// acknowledged comes at once, not after its ack wait).
    async fn consumer(
        &self,
        source: &stream::Stream,
        target_floor: u64,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, SessionError> {
        let err = |message: String| SessionError::Source {
            stream: self.cfg.stream.clone(),
            message,
        };
        let durable = consumer_name(&self.name, &self.cfg.stream);
        let mut floor = target_floor;
        if let Ok(mut existing) = source
            .get_consumer::<consumer::pull::Config>(&durable)
            .await
        {
            if let Ok(info) = existing.info().await {
                floor = floor.max(info.ack_floor.stream_sequence);
            }
            source
                .delete_consumer(&durable)
                .await
                .map_err(|e| err(format!("cannot replace consumer {durable}: {e}")))?;
        }
        let deliver_policy = if floor > 0 {
            consumer::DeliverPolicy::ByStartSequence {
                start_sequence: floor + 1,
            }
        } else {
            match self.cfg.start {
                Start::All => consumer::DeliverPolicy::All,
                Start::Sequence(s) => consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: s.max(1),
                },
                Start::Time(ns) => consumer::DeliverPolicy::ByStartTime {
                    start_time: time::OffsetDateTime::from_unix_timestamp_nanos(ns)
                        .map_err(|e| err(format!("start_time: {e}")))?,
                },
                Start::Delta(d) => {
                    let ns = i128::from(now_ms()) * 1_000_000 - d.as_nanos() as i128;
                    consumer::DeliverPolicy::ByStartTime {
                        start_time: time::OffsetDateTime::from_unix_timestamp_nanos(ns)
                            .map_err(|e| err(format!("start_delta: {e}")))?,
                    }
                }
                Start::AtEnd => consumer::DeliverPolicy::New,
            }
        };
        tracing::info!(stream = %self.cfg.stream, consumer = %durable, resume_after = floor, "consumer ready");
        source
            .create_consumer(consumer::pull::Config {
                durable_name: Some(durable.clone()),
                name: Some(durable.clone()),
                description: Some(format!("stream-replicator {}", self.replicator)),
                ack_policy: consumer::AckPolicy::All,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: (WINDOW * 4) as i64,
                deliver_policy,
                filter_subject: self.cfg.filter_subject.clone().unwrap_or_default(),
                ..Default::default()
            })
            .await
            .map_err(|e| err(format!("cannot create consumer {durable}: {e}")))
    }

    async fn session(&mut self, cancel: &CancellationToken) -> Result<(), SessionError> {
        let source_client =
            connect("source", &self.cfg.source_url, self.tls.as_ref(), true).await?;
        let target_client =
            connect("target", &self.cfg.target_url, self.tls.as_ref(), false).await?;
        let source_js = jetstream::new(source_client);
        let mut target_js = jetstream::new(target_client.clone());
        target_js.set_timeout(PUBLISH_TIMEOUT);
        let Some(mut source) = self.source_stream(&source_js, cancel).await? else {
            return Ok(());
        };
        let source_info = source
            .info()
            .await
            .map_err(|e| SessionError::Source {
                stream: self.cfg.stream.clone(),
                message: e.to_string(),
            })?
            .clone();
        let target_floor = if self.cfg.no_target_create {
            0
        } else {
            self.target_stream(&target_js, &source_info).await?
        };
        let consumer = self.consumer(&source, target_floor).await?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(1024)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| SessionError::Source {
                stream: self.cfg.stream.clone(),
                message: e.to_string(),
            })?;
        // The target's acknowledgements: `<inbox>.<source sequence>`, one subscription for all.
        let inbox = target_client.new_inbox();
        let mut acks = target_client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| SessionError::Target {
                stream: self.cfg.target_stream.clone(),
                message: format!("cannot subscribe for acknowledgements: {e}"),
            })?;
        let mut inflight: VecDeque<Done> = VecDeque::with_capacity(WINDOW);
        let mut highest = 0u64;
        let mut done: Option<jetstream::Message> = None;
        let mut unacked = 0u64;
        let mut source_error: Option<String> = None;
        let mut ack_tick = tokio::time::interval(ACK_EVERY);
        let mut sample_tick = tokio::time::interval(Duration::from_millis(500));
        let mut last_save = Instant::now();
        loop {
            if source_error.is_some() && inflight.is_empty() {
                break;
            }
            // Settle, in source order, everything at the front that is acknowledged or skipped.
            while inflight.front().is_some_and(|d| d.settled) {
                if let Some(d) = inflight.pop_front() {
                    self.settled(&d);
                    done = Some(d.message);
                    unacked += 1;
                }
            }
            if unacked >= ACK_BATCH
                && let Some(m) = &done
            {
                let _ = m.ack().await;
                unacked = 0;
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    // Let what is in flight settle, briefly, so that the ack floor is current.
                    let drain = async {
                        while inflight.front().is_some_and(|d| !d.settled) {
                            match acks.next().await {
                                Some(reply) => {
                                    if mark(&mut inflight, &reply).is_err() { break; }
                                }
                                None => break,
                            }
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
                    while inflight.front().is_some_and(|d| d.settled) {
                        if let Some(d) = inflight.pop_front() {
                            self.settled(&d);
                            done = Some(d.message);
                        }
                    }
                    if let Some(m) = done.take() { let _ = m.ack().await; }
                    return Ok(());
                }
                reply = acks.next() => {
                    let refused = match reply {
                        Some(reply) => mark(&mut inflight, &reply).err(),
                        None => Some((0, "the connection to the target closed".to_owned())),
                    };
                    if let Some((seq, message)) = refused {
                        self.stats.failed.fetch_add(1, Relaxed);
                        return Err(self.fail(done.take(), seq, message).await);
                    }
                }
                _ = ack_tick.tick() => {
                    if let Some(d) = inflight.iter().find(|d| !d.settled)
                        && d.sent.elapsed() > PUBLISH_TIMEOUT
                    {
                        let seq = d.seq;
                        self.stats.failed.fetch_add(1, Relaxed);
                        let message = format!("no acknowledgement in {} s", PUBLISH_TIMEOUT.as_secs());
                        return Err(self.fail(done.take(), seq, message).await);
                    }
                    if unacked > 0 && let Some(m) = &done {
                        let _ = m.ack().await;
                        unacked = 0;
                    }
                }
                _ = sample_tick.tick(), if self.sampler.is_some() => {
                    let events = self.sampler.as_mut().map(|s| s.tick(now_ms())).unwrap_or_default();
                    for e in events {
                        self.advise(&target_js, &target_client, e).await;
                    }
                    if last_save.elapsed() > Duration::from_secs(5) {
                        self.save_state();
                        last_save = Instant::now();
                    }
                }
                next = messages.next(), if source_error.is_none() && inflight.len() < WINDOW => {
                    let message = match next {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => { source_error = Some(e.to_string()); continue; }
                        None => { source_error = Some("consumer stream ended".into()); continue; }
                    };
                    let Ok(info) = message.info() else {
                        source_error = Some("a message without JetStream metadata".into());
                        continue;
                    };
                    let seq = info.stream_sequence;
                    if seq <= highest {
                        // A redelivery of what this session holds already.
                        continue;
                    }
                    highest = seq;
                    let published_ms = i64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
                    self.stats.received.fetch_add(1, Relaxed);
                    self.stats.lag_messages.store(info.pending, Relaxed);
                    let now = now_ms();
                    let skipped = |message| Done { seq, published_ms, copied: false, sent: Instant::now(), settled: true, message };
                    let too_old = self.cfg.max_age.is_some_and(|a| now.saturating_sub(published_ms) > i64::try_from(a.as_millis()).unwrap_or(i64::MAX));
                    if too_old {
                        self.stats.skipped_age.fetch_add(1, Relaxed);
                        inflight.push_back(skipped(message));
                        continue;
                    }
                    if !self.forced.contains(&seq) && let Some(sampler) = self.sampler.as_mut() {
                        let key = sampler.key(&message.subject, message.headers.as_ref(), &message.payload);
                        if let Some(key) = key {
                            let (decision, event) = sampler.observe(&key, message.payload.len(), now);
                            if let Some(e) = event {
                                self.advise(&target_js, &target_client, e).await;
                            }
                            match decision {
                                Decision::Copy => { self.forced.insert(seq); }
                                Decision::Skip => {
                                    self.stats.skipped_sampling.fetch_add(1, Relaxed);
                                    inflight.push_back(skipped(message));
                                    continue;
                                }
                            }
                        }
                    }
                    let headers = self.headers(&message, seq, now);
                    let subject = self.cfg.target_subject(&message.subject);
                    let payload = message.payload.clone();
                    let sent = target_client
                        .publish_with_reply_and_headers(subject, format!("{inbox}.{seq}"), headers, payload)
                        .await;
                    if let Err(e) = sent {
                        self.stats.failed.fetch_add(1, Relaxed);
                        return Err(self.fail(done.take(), seq, e.to_string()).await);
                    }
                    inflight.push_back(Done { seq, published_ms, copied: true, sent: Instant::now(), settled: false, message });
                }
            }
        }
        if let Some(m) = done.take() {
            let _ = m.ack().await;
        }
        Err(SessionError::Source {
            stream: self.cfg.stream.clone(),
            message: source_error.unwrap_or_else(|| "ended".into()),
        })
    }

    /// Ends a session on a failed publish: the source learns what was done, then the error.
    async fn fail(
        &self,
        done: Option<jetstream::Message>,
        seq: u64,
        message: String,
    ) -> SessionError {
        if let Some(m) = done {
            let _ = m.ack().await;
        }
        SessionError::Publish { seq, message }
    }
    fn settled(&mut self, d: &Done) {
        if d.copied {
            self.stats.copied.fetch_add(1, Relaxed);
            self.forced.remove(&d.seq);
            let lag = now_ms().saturating_sub(d.published_ms).max(0);
            self.stats
                .lag_millis
                .store(u64::try_from(lag).unwrap_or(0), Relaxed);
        }
    }

    fn headers(&self, message: &jetstream::Message, seq: u64, now: i64) -> async_nats::HeaderMap {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(h) = &message.headers {
            for (name, values) in h.iter() {
                let n: &str = name.as_ref();
                if n.eq_ignore_ascii_case("Nats-Msg-Id")
                    || n.to_ascii_lowercase().starts_with("nats-expected-")
                    || n.eq_ignore_ascii_case(SOURCE_HEADER)
                {
                    continue;
                }
                for v in values {
                    headers.append(name.clone(), v.clone());
                }
            }
        }
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            self.message_id(seq).as_str(),
        );
        headers.insert(
            SOURCE_HEADER,
            format!(
                "{} {seq} {} {} {now}",
                self.cfg.stream, self.replicator, self.name
            )
            .as_str(),
        );
        headers
    }

    async fn advise(
        &self,
        target_js: &jetstream::Context,
        target: &async_nats::Client,
        event: Event,
    ) {
        let Some(advisory) = self.cfg.sampling.as_ref().and_then(|s| s.advisory.as_ref()) else {
            return;
        };
        let field = match self.cfg.sampling.as_ref().map(|s| &s.key) {
            Some(crate::config::SampleKey::Field(f)) => f.clone(),
            Some(crate::config::SampleKey::Header(h)) => h.clone(),
            Some(crate::config::SampleKey::SubjectToken(t)) => t.to_string(),
            None => String::new(),
        };
        let subject = advisory
            .subject
            .replace("%s", event.kind.as_str())
            .replace("%v", &event.value);
        let body = serde_json::json!({
            "protocol": "io.choria.sr.v2.age_advisory",
            "event_id": uuid::Uuid::new_v4().to_string(),
            "inspect_field": field,
            "age": event.age,
            "seen": event.seen,
            "replicator": self.replicator,
            "timestamp": now_ms() / 1000,
            "event": event.kind.as_str(),
            "value": event.value,
        });
        let payload: bytes::Bytes = serde_json::to_vec(&body).unwrap_or_default().into();
        let sent = if advisory.reliable {
            let mut ok = false;
            for attempt in 0..10u32 {
                if let Ok(ack) = target_js.publish(subject.clone(), payload.clone()).await
                    && ack.await.is_ok()
                {
                    ok = true;
                    break;
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
            ok
        } else {
            target.publish(subject.clone(), payload).await.is_ok()
        };
        if sent {
            self.stats.advisories[event.kind.index()].fetch_add(1, Relaxed);
        } else {
            tracing::warn!(subject = %subject, event = event.kind.as_str(), value = %event.value, "advisory not delivered");
        }
    }
}

/// Marks the publish a target reply answers as settled; a refusal is an error naming the
/// sequence. A reply for nothing in flight (a late one from before a failure) is ignored.
fn mark(inflight: &mut VecDeque<Done>, reply: &async_nats::Message) -> Result<(), (u64, String)> {
    let Some(seq) = reply
        .subject
        .rsplit('.')
        .next()
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return Ok(());
    };
    let Ok(i) = inflight.binary_search_by_key(&seq, |d| d.seq) else {
        return Ok(());
    };
    match read_puback(reply.status.map(|s| s.as_u16()), &reply.payload) {
        PubAck::Stored => {
            inflight[i].settled = true;
            Ok(())
        }
        PubAck::Refused(why) => Err((seq, why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pubacks_are_read_strictly() {
        assert_eq!(
            read_puback(None, br#"{"stream":"DST","seq":7}"#),
            PubAck::Stored
        );
        assert_eq!(
            read_puback(None, br#"{"stream":"DST","seq":7,"duplicate":true}"#),
            PubAck::Stored
        );
        let refused = |status, body: &[u8]| match read_puback(status, body) {
            PubAck::Refused(why) => why,
            PubAck::Stored => panic!("{} read as stored", String::from_utf8_lossy(body)),
        };
        let why = refused(
            None,
            br#"{"error":{"code":503,"err_code":10039,"description":"jetstream not enabled"}}"#,
        );
        assert!(why.contains("jetstream not enabled"), "{why}");
        assert_eq!(refused(Some(503), b""), "status 503 from the target");
        assert!(refused(None, b"").contains("not an acknowledgement"));
        assert!(refused(None, br#"{"stream":"DST"}"#).contains("not an acknowledgement"));
        assert!(refused(None, b"\xff\x00").contains("not an acknowledgement"));
    }

    #[test]
    fn a_reply_settles_only_its_own_publish() {
        // `mark` needs real messages only for the payload it reads; an empty in-flight queue
        // shows that replies for nothing in flight (late ones from an ended session) are ignored.
        let mut inflight = VecDeque::new();
        let reply = async_nats::Message {
            subject: "_INBOX.x.41".into(),
            reply: None,
            payload: bytes::Bytes::from_static(br#"{"error":{"code":500}}"#),
            headers: None,
            status: None,
            description: None,
            length: 0,
        };
        assert!(mark(&mut inflight, &reply).is_ok());
    }
}
