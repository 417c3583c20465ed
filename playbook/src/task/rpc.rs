//! The `mcollective` (alias `rpc`) task: a direct-addressed Choria RPC request.
//!
//! Nodes are addressed in batches of `batch_size` (all at once by default) with
//! `batch_sleep_time` seconds between batches. Success needs no failed reply, at least one OK
//! reply and no non-responders (which are named in the message); then `assert`, a JGrep-like
//! expression ([`super::jgrep`]), must hold for every reply's `data`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agents::client::{Call, ReplyOutcome, Targets};
use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::jgrep;
use super::{Task, TaskContext, TaskError, TaskOutcome, non_empty};
use crate::schema::tasks::{PostStep, RpcProps};
use crate::schema::values::{Int, flag};

pub(crate) struct RpcTask {
    agent: String,
    action: String,
    nodes: Vec<String>,
    properties: Map<String, Value>,
    batch_size: Option<usize>,
    batch_sleep: Duration,
    silent: bool,
    summarize: bool,
    assert: Option<(String, jgrep::Expr)>,
}

/// One decoded reply.
struct Reply {
    sender: String,
    statuscode: i64,
    statusmsg: String,
    data: Value,
    requestid: String,
}

impl RpcTask {
    pub(crate) fn new(props: &RpcProps) -> Result<Self, TaskError> {
        let nodes = super::nodes(&props.nodes)?;
        let action = non_empty(&props.action, "action", "An action is required")?;
        let Some((agent, action)) = action
            .split_once('.')
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        else {
            return Err(TaskError::invalid(
                "action",
                format!("Action {action} should be in the form agent.action"),
            ));
        };
        let properties = props
            .properties
            .as_ref()
            .map(|h| {
                h.0.iter()
                    .map(|(k, v)| (k.strip_prefix(':').unwrap_or(k).to_string(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let batch_size = match props.batch_size {
            None | Some(Int(0)) => None,
            Some(Int(n)) => Some(usize::try_from(n).map_err(|_| {
                TaskError::invalid(
                    "batch_size",
                    format!("batch_size should be a positive integer, got {n}"),
                )
            })?),
        };
        let batch_sleep = crate::seconds(props.batch_sleep_time.map_or(0.0, |s| s.0));
        let silent = flag(props.silent, false);
        let summarize = props.post.as_ref().is_some_and(|p| {
            p.0.iter().any(|step| match step {
                PostStep::Summarize => true,
            })
        });
        let assert = match &props.assert {
            Some(text) if !text.as_str().trim().is_empty() => {
                let expr = jgrep::parse(text.as_str())
                    .map_err(|e| TaskError::invalid("assert", e.to_string()))?;
                Some((text.as_str().to_string(), expr))
            }
            _ => None,
        };
        Ok(Self {
            agent: agent.to_string(),
            action: action.to_string(),
            nodes,
            properties,
            batch_size,
            batch_sleep,
            silent,
            summarize,
            assert,
        })
    }

    fn decode(event_body: &str, sender: &str, requestid: &str) -> Reply {
        match serde_json::from_str::<Value>(event_body) {
            Ok(v) => Reply {
                sender: sender.to_string(),
                statuscode: v.get("statuscode").and_then(Value::as_i64).unwrap_or(5),
                statusmsg: v
                    .get("statusmsg")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                data: v.get("data").cloned().unwrap_or(Value::Null),
                requestid: requestid.to_string(),
            },
            Err(e) => Reply {
                sender: sender.to_string(),
                statuscode: 5,
                statusmsg: format!("undecodable reply: {e}"),
                data: Value::Null,
                requestid: requestid.to_string(),
            },
        }
    }
}

#[async_trait]
impl Task for RpcTask {
    async fn run(&self, ctx: &TaskContext<'_>) -> TaskOutcome {
        let started = Instant::now();
        let client = match ctx.broker.client().await {
            Ok(c) => c,
            Err(e) => return TaskOutcome::failed(e.to_string(), Vec::new()),
        };
        let mut replies: Vec<Reply> = Vec::new();
        let mut no_response: Vec<String> = Vec::new();
        let mut requestids: Vec<String> = Vec::new();
        let mut call = Call::rpc(
            &self.agent,
            &self.action,
            self.properties.clone(),
            Targets::Direct(self.nodes.clone()),
            ctx.broker.rpc_timeout(&self.agent),
        );
        call.expected = Some(self.nodes.len());
        let batches = match client
            .call_batched(&call, self.batch_size.unwrap_or(0), self.batch_sleep)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                return TaskOutcome::failed(
                    format!("Failed request for {}#{}: {e}", self.agent, self.action),
                    Vec::new(),
                );
            }
        };
        for (chunk, collected) in &batches {
            tracing::debug!(requestid = %collected.requestid, nodes = chunk.len(), "rpc batch done");
            let mut seen: Vec<String> = Vec::new();
            for event in collected.replies.iter().filter(|e| !e.late) {
                match &event.outcome {
                    ReplyOutcome::Ok(r) => {
                        if seen.contains(&r.sender) || !chunk.contains(&r.sender) {
                            continue;
                        }
                        seen.push(r.sender.clone());
                        replies.push(Self::decode(&r.body, &r.sender, &collected.requestid));
                    }
                    ReplyOutcome::BadHash(r) => ctx.log.warn(
                        ctx.from,
                        format!("Ignoring reply from {} with a bad hash", r.sender),
                    ),
                    ReplyOutcome::Malformed(reason) => ctx
                        .log
                        .warn(ctx.from, format!("Ignoring malformed reply: {reason:?}")),
                }
            }
            no_response.extend(chunk.iter().filter(|n| !seen.contains(n)).cloned());
            requestids.push(collected.requestid.clone());
        }
        let requestid = requestids.join(",");
        let what = format!("{}#{}", self.agent, self.action);
        let mut failed = 0usize;
        for r in &replies {
            if r.statuscode == 0 {
                if !self.silent {
                    ctx.log
                        .info(ctx.from, format!("{:<40} OK: {}", r.sender, r.data));
                }
            } else {
                failed += 1;
                ctx.log.error(
                    ctx.from,
                    format!("{:<40} {}: {}", r.sender, r.statuscode, r.statusmsg),
                );
            }
        }
        let ok = replies.len() - failed;
        let data: Vec<Value> = replies
            .iter()
            .map(|r| {
                json!({
                    "agent": self.agent,
                    "action": self.action,
                    "sender": r.sender,
                    "statuscode": r.statuscode,
                    "statusmsg": r.statusmsg,
                    "data": r.data,
                    "requestid": r.requestid,
                })
            })
            .collect();
        if failed > 0 || ok == 0 || !no_response.is_empty() {
            let mut msg = format!(
                "Failed request {requestid} for {what} on {} failed node(s)",
                failed + no_response.len()
            );
            if !no_response.is_empty() {
                msg.push_str(&format!(
                    ": no response from {} node(s): {}",
                    no_response.len(),
                    no_response.join(", ")
                ));
            }
            if failed > 0 {
                let names: Vec<&str> = replies
                    .iter()
                    .filter(|r| r.statuscode != 0)
                    .map(|r| r.sender.as_str())
                    .collect();
                msg.push_str(&format!("; failed: {}", names.join(", ")));
            }
            return TaskOutcome::failed(msg, data);
        }
        if let Some((text, expr)) = &self.assert {
            let bad: Vec<&str> = replies
                .iter()
                .filter(|r| !expr.matches(&r.data))
                .map(|r| r.sender.as_str())
                .collect();
            if !bad.is_empty() {
                return TaskOutcome::failed(
                    format!(
                        "Failed request {requestid} for {what} assertion failed on {} node(s): {} (assert: {text})",
                        bad.len(),
                        bad.join(", ")
                    ),
                    data,
                );
            }
        }
        if self.summarize {
            let summary = summarize(&replies);
            return TaskOutcome::ok(format!("Summary for {}: {summary}", ctx.description), data);
        }
        TaskOutcome::ok(
            format!(
                "Successful request {requestid} for {what} in {:.2}s against {} node(s)",
                started.elapsed().as_secs_f64(),
                replies.len()
            ),
            data,
        )
    }

    fn describe(&self) -> String {
        format!(
            "mcollective {}.{} against {} node(s)",
            self.agent,
            self.action,
            self.nodes.len()
        )
    }
}

/// Counts how often each value of each top-level data item occurs (Choria used the DDL's
/// aggregate functions; this build has no local DDLs, so every item is summarised this way).
fn summarize(replies: &[Reply]) -> Value {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for r in replies {
        if let Value::Object(m) = &r.data {
            for (k, v) in m {
                *out.entry(k.clone())
                    .or_default()
                    .entry(crate::template::stringify(v))
                    .or_default() += 1;
            }
        }
    }
    json!(out)
}
