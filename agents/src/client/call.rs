//! Sending one request and collecting its replies.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt as _;

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
        let nodes = match &call.targets {
            Targets::Direct(nodes) if batch_size > 0 && batch_size < nodes.len() => nodes,
            Targets::Direct(nodes) => return Ok(vec![(nodes.clone(), self.call(call).await?)]),
            Targets::Broadcast => return Ok(vec![(Vec::new(), self.call(call).await?)]),
        };
        let mut out = Vec::new();
        for (i, chunk) in nodes.chunks(batch_size).enumerate() {
            if i > 0 && !sleep.is_zero() {
                tokio::time::sleep(sleep).await;
            }
            let mut batch = call.clone();
            batch.targets = Targets::Direct(chunk.to_vec());
            batch.expected = Some(chunk.len());
            out.push((chunk.to_vec(), self.call(&batch).await?));
        }
        Ok(out)
    }

    /// Sends `call` and collects its replies.
    pub async fn call(&self, call: &Call) -> Result<Collected, ClientError> {
        if let Targets::Direct(targets) = &call.targets
            && targets.is_empty()
        {
            return Err(ClientError::NoTargets);
        }
        let o = &self.options;
        let requestid = new_request_id();
        let reply_subject = subject::reply(&o.collective, &o.callerid, &requestid);
        let mut replies = self
            .nats
            .subscribe(reply_subject.clone())
            .await
            .map_err(|e| ClientError::Subscribe {
                subject: reply_subject.clone(),
                reason: e.to_string(),
            })?;
        self.nats
            .flush()
            .await
            .map_err(|e| ClientError::Subscribe {
                subject: reply_subject.clone(),
                reason: e.to_string(),
            })?;
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
        let body = codec::encode_request(&RequestParts {
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
        });
        let body = bytes::Bytes::from(body);
        let started = Instant::now();
        let subjects: Vec<String> = match &call.targets {
            Targets::Broadcast => vec![subject::broadcast(&o.collective, &call.agent)],
            Targets::Direct(ids) => ids
                .iter()
                .map(|id| subject::node(&o.collective, id))
                .collect(),
        };
        for s in &subjects {
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
        }
        self.nats.flush().await.map_err(|e| ClientError::Publish {
            subject: reply_subject.clone(),
            reason: e.to_string(),
        })?;
        let publish_duration = started.elapsed();
        let deadline = tokio::time::Instant::from_std(started + call.timeout);
        let late_deadline = deadline + call.late_window;
        let mut events = Vec::new();
        let mut distinct = HashSet::new();
        loop {
            let now = tokio::time::Instant::now();
            let late = now >= deadline;
            let limit = if late { late_deadline } else { deadline };
            if late && call.late_window.is_zero() {
                break;
            }
            let msg = match tokio::time::timeout_at(limit, replies.next()).await {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(_) if late => break,
                Err(_) => continue,
            };
            let elapsed = started.elapsed();
            let outcome = match codec::decode_reply(&msg.payload) {
                Ok(reply) => ReplyOutcome::Ok(reply),
                Err((Invalid::BadHash, Some(reply))) => ReplyOutcome::BadHash(reply),
                Err((reason, _)) => ReplyOutcome::Malformed(reason),
            };
            let late = tokio::time::Instant::now() >= deadline;
            if let ReplyOutcome::Ok(r) = &outcome
                && !late
            {
                distinct.insert(r.sender.clone());
            }
            events.push(ReplyEvent {
                elapsed,
                late,
                outcome,
            });
            if let Some(expected) = call.expected
                && distinct.len() >= expected
                && !late
            {
                break;
            }
        }
        let request_duration = started.elapsed();
        let _ = replies.unsubscribe().await;
        Ok(Collected {
            requestid,
            reply_subject,
            started,
            publish_duration,
            request_duration,
            published: subjects.len(),
            replies: events,
        })
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
