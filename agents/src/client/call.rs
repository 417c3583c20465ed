//! Sending one request and collecting its replies.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tokio::sync::watch;

use super::{Call, Client, ClientError, Dialect, Payload, Targets, new_request_id};
use crate::codec::{self, InboundReply, Invalid, RequestParts};
use crate::protocol::Filter;
use crate::subject;

/// What became of one message on the reply subject.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyOutcome {
    /// Decoded, hash verified.
    Ok(InboundReply),
    /// Decoded, but the hash did not match the message.
    BadHash(InboundReply),
    /// Not a Choria reply at all.
    Malformed(Invalid),
}

/// One message received on the reply subject.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyEvent {
    /// Time since the first publish began.
    pub elapsed: Duration,
    /// Arrived after the deadline (inside the late window).
    pub late: bool,
    pub outcome: ReplyOutcome,
}

/// Everything that happened to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Collected {
    pub requestid: String,
    pub reply_subject: String,
    /// When publishing began.
    pub started: Instant,
    /// Time spent publishing (one message, or one per target).
    pub publish_duration: Duration,
    /// Time from the start until collection ended.
    pub request_duration: Duration,
    /// Messages published.
    pub published: usize,
    pub replies: Vec<ReplyEvent>,
    /// Collection was cut short by a stop signal (or the request was never sent).
    pub interrupted: bool,
}

impl Collected {
    /// Distinct senders of well-formed, on-time replies with a good hash, in arrival order.
    pub fn senders(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.replies
            .iter()
            .filter(|r| !r.late)
            .filter_map(|r| match &r.outcome {
                ReplyOutcome::Ok(reply) => Some(reply.sender.clone()),
                ReplyOutcome::BadHash(_) | ReplyOutcome::Malformed(_) => None,
            })
            .filter(|s| seen.insert(s.clone()))
            .collect()
    }
}

impl Client {
    fn request_message(&self, call: &Call) -> String {
        match (&call.payload, self.options.dialect) {
            (Payload::Ping, Dialect::Go) => "cGluZw==".to_owned(),
            (Payload::Ping, Dialect::Ruby) => "\"ping\"".to_owned(),
            (Payload::Raw(text), _) => text.clone(),
            (Payload::Rpc { action, data }, Dialect::Go) => serde_json::json!({
                "agent": call.agent,
                "action": action,
                "data": data,
            })
            .to_string(),
            (Payload::Rpc { action, data }, Dialect::Ruby) => {
                let mut data = data.clone();
                data.insert("process_results".to_owned(), serde_json::Value::Bool(true));
                serde_json::json!({
                    "agent": call.agent,
                    "action": action,
                    "caller": self.options.callerid,
                    "data": data,
                })
                .to_string()
            }
        }
    }

    /// Sends `call` in batches: a direct call to more than `batch_size` nodes becomes one request
    /// per batch of nodes (each expecting its batch), with `sleep` between batches. Returns each
    /// batch's nodes with what was collected for it; a broadcast call is one batch.
    pub async fn call_batched(
        &self,
        call: &Call,
        batch_size: usize,
        sleep: std::time::Duration,
    ) -> Result<Vec<(Vec<String>, Collected)>, ClientError> {
        self.call_batched_until(call, batch_size, sleep, None).await
    }

    /// [`Client::call_batched`] that ends when `stop` turns true: the batch in flight is cut
    /// short and batches not sent yet are returned empty (nothing published, `interrupted`).
    pub async fn call_batched_until(
        &self,
        call: &Call,
        batch_size: usize,
        sleep: std::time::Duration,
        stop: Option<watch::Receiver<bool>>,
    ) -> Result<Vec<(Vec<String>, Collected)>, ClientError> {
        let nodes = match &call.targets {
            Targets::Direct(nodes) if batch_size > 0 && batch_size < nodes.len() => nodes,
            Targets::Direct(nodes) => {
                return Ok(vec![(nodes.clone(), self.call_until(call, stop).await?)]);
            }
            Targets::Broadcast => {
                return Ok(vec![(Vec::new(), self.call_until(call, stop).await?)]);
            }
        };
        let mut out = Vec::new();
        for (i, chunk) in nodes.chunks(batch_size).enumerate() {
            if i > 0 && !sleep.is_zero() {
                match stop.clone() {
                    Some(mut s) => {
                        let stopped = async move {
                            if s.wait_for(|v| *v).await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        };
                        let _ = tokio::time::timeout(sleep, stopped).await;
                    }
                    None => tokio::time::sleep(sleep).await,
                }
            }
            let mut batch = call.clone();
            batch.targets = Targets::Direct(chunk.to_vec());
            batch.expected = Some(chunk.len());
            batch.expected_senders = None;
            out.push((chunk.to_vec(), self.call_until(&batch, stop.clone()).await?));
        }
        Ok(out)
    }

    /// Sends `call` and collects its replies.
    pub async fn call(&self, call: &Call) -> Result<Collected, ClientError> {
        self.call_until(call, None).await
    }

    /// [`Client::call`] that ends early when `stop` turns true (or already is: then nothing is
    /// sent); the result is marked `interrupted`.
    pub async fn call_until(
        &self,
        call: &Call,
        mut stop: Option<watch::Receiver<bool>>,
    ) -> Result<Collected, ClientError> {
        if let Targets::Direct(targets) = &call.targets
            && targets.is_empty()
        {
            return Err(ClientError::NoTargets);
        }
        let o = &self.options;
        let requestid = new_request_id();
        let reply_subject = subject::reply(&o.collective, &o.callerid, &requestid);
        if stop.as_ref().is_some_and(|s| *s.borrow()) {
            return Ok(Collected {
                requestid,
                reply_subject,
                started: Instant::now(),
                publish_duration: Duration::ZERO,
                request_duration: Duration::ZERO,
                published: 0,
                replies: Vec::new(),
                interrupted: true,
            });
        }
        // While the connection is down the NATS client holds commands back; no stage before
        // collection may outlast the request's timeout (or a stop), or a run would hang.
        let setup_started = Instant::now();
        let setup_limit = tokio::time::Instant::now() + call.timeout;
        let subscribed = within(
            async {
                let replies = self.nats.subscribe(reply_subject.clone()).await?;
                self.nats.flush().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(replies)
            },
            setup_limit,
            &mut stop,
        )
        .await;
        let mut replies = match subscribed {
            Ok(Ok(replies)) => replies,
            Ok(Err(e)) => {
                return Err(ClientError::Subscribe {
                    subject: reply_subject.clone(),
                    reason: e.to_string(),
                });
            }
            Err(gave_up) => {
                tracing::warn!(
                    subject = %reply_subject,
                    "could not subscribe in time; the request is not sent"
                );
                return Ok(Collected {
                    requestid,
                    reply_subject,
                    started: setup_started,
                    publish_duration: Duration::ZERO,
                    request_duration: setup_started.elapsed(),
                    published: 0,
                    replies: Vec::new(),
                    interrupted: gave_up == GaveUp::Stopped,
                });
            }
        };
        let message = self.request_message(call);
        let mut filter: Filter = call.filter.clone();
        if matches!(call.targets, Targets::Direct(_))
            && call.agent != "discovery"
            && !filter.agent.contains(&call.agent)
        {
            // go-choria adds the agent filter to direct requests.
            filter.agent.push(call.agent.clone());
        }
        let now = unix_now();
        let parts = RequestParts {
            requestid: &requestid,
            senderid: &o.senderid,
            callerid: &o.callerid,
            collective: &o.collective,
            agent: &call.agent,
            ttl: o.ttl,
            time: now,
            filter: &filter,
            message: &message,
            reply_to: &reply_subject,
        };
        let started = Instant::now();
        let subjects: Vec<String> = match &call.targets {
            Targets::Broadcast => vec![subject::broadcast(&o.collective, &call.agent)],
            Targets::Direct(ids) => ids
                .iter()
                .map(|id| subject::node(&o.collective, id))
                .collect(),
        };
        // What is published where: one message per subject, or through federation one message
        // per 200 subjects, all to the network's federation subject.
        let messages: Vec<(String, bytes::Bytes)> = match &call.federation {
            None => {
                let body = bytes::Bytes::from(codec::encode_request(&parts));
                subjects.iter().map(|s| (s.clone(), body.clone())).collect()
            }
            Some(network) => {
                let to = subject::federation(network);
                subjects
                    .chunks(codec::MAX_FEDERATION_TARGETS)
                    .map(|chunk| {
                        let body = codec::encode_federated_request(&parts, chunk);
                        (to.clone(), bytes::Bytes::from(body))
                    })
                    .collect()
            }
        };
        let mut published = 0;
        let sent = within(
            async {
                for (s, body) in &messages {
                    let result = match o.dialect {
                        Dialect::Go => self.nats.publish(s.clone(), body.clone()).await,
                        Dialect::Ruby => {
                            self.nats
                                .publish_with_reply(s.clone(), reply_subject.clone(), body.clone())
                                .await
                        }
                    };
                    result.map_err(|e| ClientError::Publish {
                        subject: s.clone(),
                        reason: e.to_string(),
                    })?;
                    published += 1;
                }
                self.nats.flush().await.map_err(|e| ClientError::Publish {
                    subject: reply_subject.clone(),
                    reason: e.to_string(),
                })
            },
            tokio::time::Instant::from_std(started + call.timeout),
            &mut stop,
        )
        .await;
        let mut interrupted = false;
        match sent {
            Ok(result) => result?,
            Err(GaveUp::Stopped) => interrupted = true,
            Err(GaveUp::Timeout) => {
                tracing::warn!(
                    requestid = %requestid,
                    published,
                    "publishing did not finish before the deadline"
                );
            }
        }
        let publish_duration = started.elapsed();
        let deadline = tokio::time::Instant::from_std(started + call.timeout);
        let late_deadline = deadline + call.late_window;
        let mut waiting = Waiting::new(call);
        let mut events = Vec::new();
        loop {
            if interrupted {
                break;
            }
            let now = tokio::time::Instant::now();
            let late = now >= deadline;
            let limit = if late { late_deadline } else { deadline };
            if late && call.late_window.is_zero() {
                break;
            }
            let next = tokio::time::timeout_at(limit, replies.next());
            let received = match stop.as_mut() {
                Some(s) => tokio::select! {
                    r = next => r,
                    // A dropped sender never stops the request (the branch is disabled).
                    Ok(_) = s.wait_for(|v| *v) => {
                        interrupted = true;
                        break;
                    }
                },
                None => next.await,
            };
            let msg = match received {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(_) if late => break,
                Err(_) => continue,
            };
            let event = reply_event(&msg.payload, started, deadline);
            waiting.saw(&event);
            events.push(event);
            if waiting.done() {
                break;
            }
        }
        let request_duration = started.elapsed();
        // Unsubscribe, then read what the subscription already holds: a message received is
        // never dropped unread.
        if replies.drain().await.is_ok() {
            let until = tokio::time::Instant::now() + DRAIN_LIMIT;
            while let Ok(Some(msg)) = tokio::time::timeout_at(until, replies.next()).await {
                events.push(reply_event(&msg.payload, started, deadline));
            }
        }
        let _ = replies.unsubscribe().await;
        Ok(Collected {
            requestid,
            reply_subject,
            started,
            publish_duration,
            request_duration,
            published,
            replies: events,
            interrupted,
        })
    }
}

/// Why a stage before collection was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GaveUp {
    Timeout,
    Stopped,
}

/// Runs `work` until `limit` or until `stop` turns true.
async fn within<T>(
    work: impl std::future::Future<Output = T>,
    limit: tokio::time::Instant,
    stop: &mut Option<watch::Receiver<bool>>,
) -> Result<T, GaveUp> {
    let bounded = tokio::time::timeout_at(limit, work);
    match stop {
        Some(s) => tokio::select! {
            done = bounded => done.map_err(|_| GaveUp::Timeout),
            Ok(_) = s.wait_for(|v| *v) => Err(GaveUp::Stopped),
        },
        None => bounded.await.map_err(|_| GaveUp::Timeout),
    }
}

/// How long reading what is left on an unsubscribed reply subject may take.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

fn reply_event(payload: &[u8], started: Instant, deadline: tokio::time::Instant) -> ReplyEvent {
    let elapsed = started.elapsed();
    let outcome = match codec::decode_reply(payload) {
        Ok(reply) => ReplyOutcome::Ok(reply),
        Err((Invalid::BadHash, Some(reply))) => ReplyOutcome::BadHash(reply),
        Err((reason, _)) => ReplyOutcome::Malformed(reason),
    };
    ReplyEvent {
        elapsed,
        late: tokio::time::Instant::now() >= deadline,
        outcome,
    }
}

/// When a request has every reply it waits for.
enum Waiting {
    /// These identities have not answered yet (on time, with a good hash).
    Senders(BTreeSet<String>),
    /// This many distinct senders have not answered yet.
    Count {
        wanted: usize,
        seen: HashSet<String>,
    },
    /// Until the deadline.
    Deadline,
}

impl Waiting {
    fn new(call: &Call) -> Waiting {
        let known: Option<BTreeSet<String>> = match (&call.expected_senders, &call.targets) {
            (Some(ids), _) => Some(ids.as_ref().clone()),
            (None, Targets::Direct(ids)) => Some(ids.iter().cloned().collect()),
            (None, Targets::Broadcast) => None,
        };
        match (known, call.expected) {
            (Some(ids), _) if ids.is_empty() => Waiting::Deadline,
            (Some(ids), _) => Waiting::Senders(ids),
            (None, Some(wanted)) => Waiting::Count {
                wanted,
                seen: HashSet::new(),
            },
            (None, None) => Waiting::Deadline,
        }
    }

    fn saw(&mut self, event: &ReplyEvent) {
        let ReplyOutcome::Ok(reply) = &event.outcome else {
            return;
        };
        if event.late {
            return;
        }
        match self {
            Waiting::Senders(left) => {
                left.remove(&reply.sender);
            }
            Waiting::Count { seen, .. } => {
                seen.insert(reply.sender.clone());
            }
            Waiting::Deadline => {}
        }
    }

    fn done(&self) -> bool {
        match self {
            Waiting::Senders(left) => left.is_empty(),
            Waiting::Count { wanted, seen } => seen.len() >= *wanted,
            Waiting::Deadline => false,
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
