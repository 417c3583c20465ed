//! An async Choria RPC client over NATS (feature `client`): broadcast discovery, broadcast and
//! direct-addressed RPC, every reply decoded and hash-checked and timed.
//!
//! Stages of one [`Client::call`]: new request id → subscribe the reply subject
//! `<collective>.reply.<md5(callerid)>.<requestid>` (and flush, so no reply can be missed) →
//! publish once to `<collective>.broadcast.agent.<agent>` or once per `<collective>.node.<id>` →
//! collect replies until every expected sender answered or the deadline passed (plus an
//! optional grace window in which replies count as late) → unsubscribe and read what the
//! subscription already holds, so that every message received is handed back.
//!
//! Which senders are expected: [`Call::expected_senders`] when given, else the identities of a
//! direct request. Only those end a request early; a reply from anyone else never stands in for
//! an expected one. A broadcast without known identities (discovery) ends after
//! [`Call::expected`] distinct senders.
//!
//! With [`Call::federation`] the request goes through a federation broker instead: one message
//! per 200 targets to `choria.federation.<network>.federation`, as a federated Choria client
//! sends it.
//!
//! The request is exactly what a Choria client sends; see `docs/protocol.md` for the field set.

mod call;

pub use call::{Collected, ReplyEvent, ReplyOutcome};

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::protocol::Filter;

/// Who the client says it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// `senderid` and `mc_sender`: the machine sending requests.
    pub senderid: String,
    /// `callerid`: `choria=<user>`.
    pub callerid: String,
    /// Collective requests go to.
    pub collective: String,
    /// Request validity, seconds (Choria's default is 60; its schema minimum is 30).
    pub ttl: i64,
    /// Which client's request bodies to imitate.
    pub dialect: Dialect,
}

impl Default for ClientOptions {
    fn default() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned());
        ClientOptions {
            senderid: host,
            callerid: "choria=loadlab.mcollective".to_owned(),
            collective: "mcollective".to_owned(),
            ttl: 60,
            dialect: Dialect::Go,
        }
    }
}

/// The two Choria client implementations, whose request bodies differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// go-choria: ping as base64 `cGluZw==`, RPC body `{agent, action, data}`, no NATS reply
    /// subject (the reply-to header only).
    Go,
    /// Ruby mcollective-choria: ping as the JSON string `"ping"`, RPC body with `caller` and
    /// `data.process_results`, and the NATS reply subject set as well.
    Ruby,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// One message to `<collective>.broadcast.agent.<agent>`; the filter selects nodes.
    Broadcast,
    /// One message per node to `<collective>.node.<identity>`.
    Direct(Vec<String>),
}

/// What to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A discovery ping.
    Ping,
    /// An RPC action with its inputs.
    Rpc {
        action: String,
        data: serde_json::Map<String, serde_json::Value>,
    },
    /// Exactly this text as the request message (for tests of odd clients).
    Raw(String),
}

/// One request to send and how to collect its replies.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub agent: String,
    pub payload: Payload,
    pub filter: Filter,
    pub targets: Targets,
    /// How long to wait for replies after publishing.
    pub timeout: Duration,
    /// Without known identities (a broadcast without [`Call::expected_senders`]): stop as soon
    /// as this many distinct senders answered. Ignored when the expected identities are known.
    pub expected: Option<usize>,
    /// The identities expected to answer: the request ends early once every one of them
    /// answered on time. Replies from other senders are collected but never count towards it.
    /// When `None`, a direct request expects its targets. An empty set never ends early.
    pub expected_senders: Option<Arc<BTreeSet<String>>>,
    /// After the deadline, keep listening this long and record replies as late.
    pub late_window: Duration,
    /// Send through federation: publish to `choria.federation.<network>.federation` (on the
    /// federation network the client is connected to) with the `federation` header naming the
    /// subjects above as targets, at most 200 per message. Replies come back on the usual reply
    /// subject, through the network's federation broker.
    pub federation: Option<String>,
}

impl Call {
    /// A discovery ping with `filter`.
    pub fn discovery(filter: Filter, timeout: Duration) -> Call {
        Call {
            agent: "discovery".to_owned(),
            payload: Payload::Ping,
            filter,
            targets: Targets::Broadcast,
            timeout,
            expected: None,
            expected_senders: None,
            late_window: Duration::ZERO,
            federation: None,
        }
    }

    /// An RPC call of `agent.action` with `data`.
    pub fn rpc(
        agent: &str,
        action: &str,
        data: serde_json::Map<String, serde_json::Value>,
        targets: Targets,
        timeout: Duration,
    ) -> Call {
        Call {
            agent: agent.to_owned(),
            payload: Payload::Rpc {
                action: action.to_owned(),
                data,
            },
            filter: Filter::default(),
            targets,
            timeout,
            expected: None,
            expected_senders: None,
            late_window: Duration::ZERO,
            federation: None,
        }
    }
}

/// A failure to talk to the broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to NATS at {servers}: {reason}")]
    Connect { servers: String, reason: String },
    #[error("cannot subscribe to {subject}: {reason}")]
    Subscribe { subject: String, reason: String },
    #[error("cannot publish to {subject}: {reason}")]
    Publish { subject: String, reason: String },
    #[error("the request has no targets")]
    NoTargets,
}

/// What happened to the client's own connection: counted from the NATS client's events.
#[derive(Debug, Default)]
struct Events {
    disconnects: AtomicU64,
    slow_consumer: AtomicU64,
}

/// Counts of the client's own connection trouble since it connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionHealth {
    /// Times the connection to the broker dropped.
    pub disconnects: u64,
    /// Times the NATS client dropped messages because a subscription's buffer was full.
    pub slow_consumer: u64,
}

impl ConnectionHealth {
    /// True when nothing went wrong.
    pub fn is_clean(&self) -> bool {
        self.disconnects == 0 && self.slow_consumer == 0
    }

    /// What went wrong between `earlier` and `self`.
    pub fn since(&self, earlier: ConnectionHealth) -> ConnectionHealth {
        ConnectionHealth {
            disconnects: self.disconnects.saturating_sub(earlier.disconnects),
            slow_consumer: self.slow_consumer.saturating_sub(earlier.slow_consumer),
        }
    }
}

/// A Choria client on one NATS connection.
#[derive(Debug, Clone)]
pub struct Client {
    nats: async_nats::Client,
    options: ClientOptions,
    events: Arc<Events>,
}

impl Client {
    /// Wraps an existing NATS connection. Drops are then only seen as reconnects (the NATS
    /// client's `connects` statistic); [`Client::connect`] sees every one.
    pub fn new(nats: async_nats::Client, options: ClientOptions) -> Client {
        Client {
            nats,
            options,
            events: Arc::default(),
        }
    }

    /// Connects to `servers` (NATS URLs) with default connection options.
    pub async fn connect(
        servers: &[String],
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let events = Arc::new(Events::default());
        let counts = Arc::clone(&events);
        let nats = async_nats::ConnectOptions::new()
            .name(format!("choria-client {}", options.senderid))
            .connection_timeout(Duration::from_secs(5))
            .subscription_capacity(1 << 20)
            .event_callback(move |event| {
                let counts = Arc::clone(&counts);
                async move {
                    match event {
                        async_nats::Event::Disconnected => {
                            counts.disconnects.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("the connection to the broker dropped");
                        }
                        async_nats::Event::SlowConsumer(sid) => {
                            counts.slow_consumer.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(sid, "slow consumer: the NATS client dropped messages");
                        }
                        async_nats::Event::Connected => {
                            tracing::info!("connected to the broker");
                        }
                        other => tracing::info!(event = %other, "NATS connection event"),
                    }
                }
            })
            .connect(servers)
            .await
            .map_err(|e| ClientError::Connect {
                servers: servers.join(","),
                reason: e.to_string(),
            })?;
        Ok(Client {
            nats,
            options,
            events,
        })
    }

    /// Trouble with the client's own connection since it connected.
    pub fn health(&self) -> ConnectionHealth {
        let reconnects = self
            .nats
            .statistics()
            .connects
            .load(Ordering::Relaxed)
            .saturating_sub(1);
        ConnectionHealth {
            disconnects: self
                .events
                .disconnects
                .load(Ordering::Relaxed)
                .max(reconnects),
            slow_consumer: self.events.slow_consumer.load(Ordering::Relaxed),
        }
    }

    /// The underlying NATS connection.
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// Who this client says it is.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Broadcast discovery: the identities that answered a ping with `filter`, in arrival
    /// order, without duplicates; with `expected`, the first that many.
    pub async fn discover(
        &self,
        filter: Filter,
        timeout: Duration,
        expected: Option<usize>,
    ) -> Result<Vec<String>, ClientError> {
        let mut call = Call::discovery(filter, timeout);
        call.expected = expected;
        let collected = self.call(&call).await?;
        let mut senders = collected.senders();
        if let Some(n) = expected {
            // Replies already received when discovery ended are read too; the first n count.
            senders.truncate(n);
        }
        Ok(senders)
    }
}

/// A fresh 32-character hexadecimal request id.
pub fn new_request_id() -> String {
    use rand::RngExt as _;
    let bytes: [u8; 16] = rand::rng().random();
    let mut out = String::with_capacity(32);
    for b in bytes {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    out
}
