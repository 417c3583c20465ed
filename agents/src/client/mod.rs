//! An async Choria RPC client over NATS (feature `client`): broadcast discovery, broadcast and
//! direct-addressed RPC, every reply decoded and hash-checked and timed.
//!
//! Stages of one [`Client::call`]: new request id → subscribe the reply subject
//! `<collective>.reply.<md5(callerid)>.<requestid>` (and flush, so no reply can be missed) →
//! publish once to `<collective>.broadcast.agent.<agent>` or once per `<collective>.node.<id>` →
//! collect replies until every expected sender answered or the deadline passed (plus an
//! optional grace window in which replies count as late).
//!
//! The request is exactly what a Choria client sends; see `docs/protocol.md` for the field set.

mod call;

pub use call::{Collected, ReplyEvent, ReplyOutcome};

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
    /// Stop as soon as this many distinct senders answered.
    pub expected: Option<usize>,
    /// After the deadline, keep listening this long and record replies as late.
    pub late_window: Duration,
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
            late_window: Duration::ZERO,
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
            late_window: Duration::ZERO,
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

/// A Choria client on one NATS connection.
#[derive(Debug, Clone)]
pub struct Client {
    nats: async_nats::Client,
    options: ClientOptions,
}

impl Client {
    /// Wraps an existing NATS connection.
    pub fn new(nats: async_nats::Client, options: ClientOptions) -> Client {
        Client { nats, options }
    }

    /// Connects to `servers` (NATS URLs) with default connection options.
    pub async fn connect(
        servers: &[String],
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let nats = async_nats::ConnectOptions::new()
            .name(format!("choria-client {}", options.senderid))
            .connection_timeout(Duration::from_secs(5))
            .subscription_capacity(1 << 20)
            .connect(servers)
            .await
            .map_err(|e| ClientError::Connect {
                servers: servers.join(","),
                reason: e.to_string(),
            })?;
        Ok(Client { nats, options })
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
    /// order, without duplicates.
    pub async fn discover(
        &self,
        filter: Filter,
        timeout: Duration,
        expected: Option<usize>,
    ) -> Result<Vec<String>, ClientError> {
        let mut call = Call::discovery(filter, timeout);
        call.expected = expected;
        let collected = self.call(&call).await?;
        Ok(collected.senders())
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
