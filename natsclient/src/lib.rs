//! A lean NATS client for thousands of connections in one process.
//!
//! Each [`Client`] is one connection driven by the task that owns it: there is no background
//! task, no channel per subscription and no eagerly allocated buffer. Reads go into a scratch
//! buffer per worker thread and are dispatched at once to a [`Handler`] by subscription id; a
//! per-connection buffer exists only while a frame is split across reads. Writes go straight to
//! the socket; a pending queue exists only under backpressure, and frames published while
//! disconnected are kept in a bounded reconnect buffer (10 KiB by default, as Choria).
//!
//! Connections pick servers from a fleet-wide [`Pool`] by [`Strategy`] and reconnect for ever
//! with full-jitter exponential backoff (bounded at 20 s), resubscribing every time. Servers that
//! a cluster announces in INFO `connect_urls` join the pool.

mod conn;
mod pool;
mod proto;

pub use conn::{Client, Config, Outbox};
pub use pool::{Pool, Server, Strategy, backoff};
pub use proto::{Message, ProtocolError};

use std::time::Duration;

/// Something a connection reports to its handler.
#[derive(Debug)]
pub enum Event<'a> {
    /// The handshake finished (INFO, CONNECT, PONG) and subscriptions were sent.
    Connected { server: &'a Server, reconnect: bool },
    /// An established connection was lost; the client reconnects.
    Disconnected {
        server: &'a Server,
        error: &'a Error,
    },
    /// One connection attempt failed.
    ConnectFailed { error: &'a Error },
    /// The server sent `-ERR`.
    ServerError {
        server: &'a Server,
        message: &'a str,
    },
    /// The server entered lame-duck mode.
    LameDuck { server: &'a Server },
}

/// Receives messages and events of one connection.
pub trait Handler {
    /// A message for subscription `msg.sid`. `out` publishes on the same connection.
    fn message(&mut self, msg: Message<'_>, out: &mut Outbox<'_>);

    /// A connection event; the default ignores it.
    fn event(&mut self, event: Event<'_>) {
        let _ = event;
    }
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no server to connect to")]
    NoServers,
    #[error("invalid server URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("unknown server strategy {0:?} (expected random, round-robin or ordered)")]
    Strategy(String),
    #[error("{server}: {source}")]
    Io {
        server: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{server}: no complete handshake (INFO, CONNECT, PONG) within {timeout:?}")]
    HandshakeTimeout { server: String, timeout: Duration },
    #[error("{server}: TLS: {source}")]
    Tls {
        server: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{server}: the server requires TLS and none is configured")]
    TlsRequired { server: String },
    #[error("{server}: TLS is configured but the server does not offer it")]
    TlsUnavailable { server: String },
    #[error("{server}: -ERR '{message}'")]
    Server { server: String, message: String },
    #[error("{server}: protocol error: {error}")]
    Protocol {
        server: String,
        error: ProtocolError,
    },
    #[error("{server}: connection closed{}", last_error.as_ref().map(|e| format!(" after -ERR '{e}'")).unwrap_or_default())]
    Closed {
        server: String,
        last_error: Option<String>,
    },
    #[error("{server}: stale connection, {pings} pings unanswered")]
    Stale { server: String, pings: u8 },
    #[error("payload of {size} bytes exceeds the server's max_payload of {max} bytes")]
    MaxPayload { size: usize, max: usize },
    #[error("subject {0:?} cannot be sent (empty, or whitespace or control characters)")]
    InvalidSubject(String),
    #[error("buffer full: {0} bytes waiting")]
    BufferFull(usize),
    #[error("no PONG within {0:?}")]
    FlushTimeout(Duration),
    #[error("not connected")]
    NotConnected,
}
