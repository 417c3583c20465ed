//! Tools for scenarios without an emulator fleet: a test publisher of Choria v1 registration
//! requests (stage **feed**) and a count of the senders a stream holds, with the age of each
//! sender's newest message (stage **check**).

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt as _;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProbeError(String);

fn fail(what: &str) -> impl Fn(String) -> ProbeError + '_ {
    move |e| ProbeError(format!("{what}: {e}"))
}

/// Publishes `rounds` registration requests for each of `senders` identities
/// (`<prefix><n>`) to `<collective>.broadcast.agent.registration`, `interval` apart per round.
pub async fn register(
    url: &str,
    collective: &str,
    prefix: &str,
    senders: usize,
    rounds: usize,
    interval: Duration,
) -> Result<u64, ProbeError> {
    let client = async_nats::connect(url)
        .await
        .map_err(|e| fail("connect")(e.to_string()))?;
    let subject = format!("{collective}.broadcast.agent.registration");
    let filter = agents::protocol::Filter::default();
    let mut sent = 0;
    for round in 0..rounds {
        let now = chrono::Utc::now().timestamp();
        for n in 0..senders {
            let sender = format!("{prefix}{n}");
            let message = serde_json::json!({"identity": sender, "round": round}).to_string();
            let body = agents::codec::encode_request(&agents::codec::RequestParts {
                requestid: &format!("{sender}-{round}-{now}"),
                senderid: &sender,
                callerid: &format!("choria={sender}"),
                collective,
                agent: "registration",
                ttl: 60,
                time: now,
                filter: &filter,
                message: &message,
                reply_to: "",
            });
            client
                .publish(subject.clone(), body.into())
                .await
                .map_err(|e| fail("publish")(e.to_string()))?;
            sent += 1;
        }
        client
            .flush()
            .await
            .map_err(|e| fail("flush")(e.to_string()))?;
        if round + 1 < rounds {
            tokio::time::sleep(interval).await;
        }
    }
    Ok(sent)
}

/// Per subject under `filter` of stream `stream`: the message count and the age in seconds
/// of the newest message.
pub async fn senders(
    url: &str,
    stream: &str,
    filter: &str,
) -> Result<BTreeMap<String, (usize, f64)>, ProbeError> {
    let client = async_nats::connect(url)
        .await
        .map_err(|e| fail("connect")(e.to_string()))?;
    let js = jetstream::new(client);
    let s = js
        .get_stream(stream)
        .await
        .map_err(|e| fail("stream")(e.to_string()))?;
    let mut subjects = s
        .info_with_subjects(filter)
        .await
        .map_err(|e| fail("stream info")(e.to_string()))?;
    let mut counts = BTreeMap::new();
    while let Some(entry) = subjects.next().await {
        let (subject, n) = entry.map_err(|e| fail("stream info")(e.to_string()))?;
        counts.insert(subject, n);
    }
    let mut out = BTreeMap::new();
    let now = chrono::Utc::now().timestamp_millis();
    for (subject, n) in counts {
        let last = s
            .get_last_raw_message_by_subject(&subject)
            .await
            .map_err(|e| fail("last message")(e.to_string()))?;
        let at = i64::try_from(last.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        out.insert(subject, (n, (now - at).max(0) as f64 / 1000.0));
    }
    Ok(out)
}
