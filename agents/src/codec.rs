//! Encoding and decoding whole NATS message bodies.
//!
//! Server side: [`decode_request`] peels transport → secure request → request and returns an
//! owned [`InboundRequest`]; [`encode_reply`] wraps an agent's reply body back up.
//! Client side: [`encode_request`] builds what a Choria client publishes and [`decode_reply`]
//! peels a reply, checking its hash.
//!
//! Every failure is a [`Invalid`] reason, never a panic, so callers can count them.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::protocol::{
    self, Federation, Filter, Headers, Reply, ReplyEnvelope, Request, RequestEnvelope, SecureReply,
    SecureRequest, Transport,
};

/// Largest NATS body the decoder looks at; anything bigger is refused as oversized.
pub const DEFAULT_MAX_MESSAGE: usize = 1024 * 1024;

/// Why a message was refused. The emulator counts each reason separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Invalid {
    #[error("message is larger than the configured maximum")]
    Oversized,
    #[error("message is not valid JSON")]
    NotJson,
    #[error("unexpected protocol identifier")]
    WrongProtocol,
    #[error("transport data is not valid base64")]
    BadBase64,
    #[error("a required field is missing")]
    MissingField,
    #[error("a field has the wrong type")]
    WrongType,
    #[error("request has neither a reply-to header nor a NATS reply subject")]
    NoReplyTo,
    #[error("reply subject is not a publishable NATS subject or is too long for the broker")]
    BadReplySubject,
    #[error("request is for a collective this node is not in")]
    UnknownCollective,
    #[error("request is for an agent this node does not have")]
    UnknownAgent,
    #[error("filter uses a compound expression this node cannot evaluate")]
    UnsupportedFilter,
    #[error("reply hash does not match its message")]
    BadHash,
}

impl Invalid {
    /// Every reason, in counter order.
    pub const ALL: [Invalid; 12] = [
        Invalid::Oversized,
        Invalid::NotJson,
        Invalid::WrongProtocol,
        Invalid::BadBase64,
        Invalid::MissingField,
        Invalid::WrongType,
        Invalid::NoReplyTo,
        Invalid::BadReplySubject,
        Invalid::UnknownCollective,
        Invalid::UnknownAgent,
        Invalid::UnsupportedFilter,
        Invalid::BadHash,
    ];

    /// Stable snake_case name used in counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::Oversized => "oversized",
            Invalid::NotJson => "not_json",
            Invalid::WrongProtocol => "wrong_protocol",
            Invalid::BadBase64 => "bad_base64",
            Invalid::MissingField => "missing_field",
            Invalid::WrongType => "wrong_type",
            Invalid::NoReplyTo => "no_reply_to",
            Invalid::BadReplySubject => "bad_reply_subject",
            Invalid::UnknownCollective => "unknown_collective",
            Invalid::UnknownAgent => "unknown_agent",
            Invalid::UnsupportedFilter => "unsupported_filter",
            Invalid::BadHash => "bad_hash",
        }
    }

    /// Position in [`Invalid::ALL`].
    pub fn index(self) -> usize {
        match self {
            Invalid::Oversized => 0,
            Invalid::NotJson => 1,
            Invalid::WrongProtocol => 2,
            Invalid::BadBase64 => 3,
            Invalid::MissingField => 4,
            Invalid::WrongType => 5,
            Invalid::NoReplyTo => 6,
            Invalid::BadReplySubject => 7,
            Invalid::UnknownCollective => 8,
            Invalid::UnknownAgent => 9,
            Invalid::UnsupportedFilter => 10,
            Invalid::BadHash => 11,
        }
    }
}

fn classify(err: &serde_json::Error) -> Invalid {
    match err.classify() {
        serde_json::error::Category::Data => {
            let text = err.to_string();
            if text.starts_with("missing field") {
                Invalid::MissingField
            } else {
                Invalid::WrongType
            }
        }
        serde_json::error::Category::Io
        | serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof => Invalid::NotJson,
    }
}

fn parse<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Invalid> {
    serde_json::from_slice(bytes).map_err(|e| classify(&e))
}

/// Decodes standard base64, skipping the newlines Ruby's encoder inserts every 60 characters.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, Invalid> {
    match STANDARD.decode(text) {
        Ok(bytes) => Ok(bytes),
        Err(_) if text.bytes().any(|b| b == b'\n' || b == b'\r') => {
            let compact: String = text.chars().filter(|c| *c != '\n' && *c != '\r').collect();
            STANDARD.decode(compact).map_err(|_| Invalid::BadBase64)
        }
        Err(_) => Err(Invalid::BadBase64),
    }
}

/// The agent payload of a request: base64-decoded when `message` is valid base64, otherwise the
/// raw text (what Go servers do; see protocol reference §5.7).
pub fn request_payload(message: &str) -> Vec<u8> {
    match STANDARD.decode(message) {
        Ok(bytes) => bytes,
        Err(_) => message.as_bytes().to_vec(),
    }
}

/// Standard base64 of SHA-256 over `text`: the `hash` of a secure reply.
pub fn reply_hash(text: &str) -> String {
    STANDARD.encode(Sha256::digest(text.as_bytes()))
}

/// An owned, decoded request as a node sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundRequest {
    /// Where to publish the reply: `headers.reply-to`, else the NATS reply subject.
    pub reply_to: String,
    pub federation: Option<Federation<'static>>,
    pub seen_by: Option<Vec<[Cow<'static, str>; 3]>>,
    pub requestid: String,
    pub senderid: String,
    pub callerid: String,
    pub collective: String,
    pub agent: String,
    pub ttl: i64,
    pub time: i64,
    pub filter: Filter,
    /// The agent payload after the base64-or-raw rule.
    pub payload: Vec<u8>,
    /// The transport's `mc_sender`, if any.
    pub mc_sender: Option<String>,
}

impl InboundRequest {
    /// True when `now` (unix seconds) lies strictly inside `time ± ttl`.
    pub fn is_fresh(&self, now: i64) -> bool {
        let ttl = self.ttl.max(0);
        now > self.time.saturating_sub(ttl) && now < self.time.saturating_add(ttl)
    }
}

fn owned(c: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(c.into_owned())
}

fn owned_federation(f: Federation<'_>) -> Federation<'static> {
    Federation {
        req: owned(f.req),
        reply_to: f.reply_to.map(owned),
        target: f.target.into_iter().map(owned).collect(),
    }
}

/// Decodes a request as published by a Choria client.
///
/// `nats_reply` is the NATS-level reply subject (Ruby clients set it; Go clients do not).
pub fn decode_request(
    body: &[u8],
    nats_reply: Option<&str>,
    max_len: usize,
) -> Result<InboundRequest, Invalid> {
    if body.len() > max_len {
        return Err(Invalid::Oversized);
    }
    let transport: Transport<'_> = parse(body)?;
    if transport.protocol != protocol::TRANSPORT {
        return Err(Invalid::WrongProtocol);
    }
    let secure_bytes = decode_base64(&transport.data)?;
    let secure: SecureRequest<'_> = parse(&secure_bytes)?;
    if secure.protocol != protocol::SECURE_REQUEST {
        return Err(Invalid::WrongProtocol);
    }
    let request: Request<'_> = parse(secure.message.as_bytes())?;
    if request.protocol != protocol::REQUEST {
        return Err(Invalid::WrongProtocol);
    }
    let headers = transport.headers;
    let reply_to = match (headers.reply_to, nats_reply) {
        (Some(r), _) if !r.is_empty() => r.into_owned(),
        (_, Some(r)) if !r.is_empty() => r.to_owned(),
        _ => return Err(Invalid::NoReplyTo),
    };
    if !crate::subject::is_publishable(&reply_to) {
        return Err(Invalid::BadReplySubject);
    }
    let env = request.envelope;
    Ok(InboundRequest {
        reply_to,
        federation: headers.federation.map(owned_federation),
        seen_by: headers
            .seen_by
            .map(|hops| hops.into_iter().map(|h| h.map(owned)).collect()),
        requestid: env.requestid.into_owned(),
        senderid: env.senderid.into_owned(),
        callerid: env.callerid.into_owned(),
        collective: env.collective.into_owned(),
        agent: env.agent.into_owned(),
        ttl: env.ttl,
        time: env.time,
        filter: env.filter,
        payload: request_payload(&request.message),
        mc_sender: headers.mc_sender.map(Cow::into_owned),
    })
}

/// What a node needs to wrap a reply body.
#[derive(Debug, Clone, Copy)]
pub struct ReplyParts<'a> {
    pub requestid: &'a str,
    pub senderid: &'a str,
    pub agent: &'a str,
    pub time: i64,
    /// The agent's reply text (`pong`, or an RPC reply JSON).
    pub body: &'a str,
    pub federation: Option<&'a Federation<'a>>,
    pub seen_by: Option<&'a [[Cow<'a, str>; 3]]>,
}

/// Builds the full reply transport for `parts`.
pub fn encode_reply(parts: &ReplyParts<'_>) -> Vec<u8> {
    let reply = Reply {
        protocol: Cow::Borrowed(protocol::REPLY),
        message: Cow::Borrowed(parts.body),
        envelope: ReplyEnvelope {
            requestid: Cow::Borrowed(parts.requestid),
            senderid: Cow::Borrowed(parts.senderid),
            agent: Cow::Borrowed(parts.agent),
            time: parts.time,
        },
    };
    let reply_text = to_json(&reply);
    let hash = reply_hash(&reply_text);
    let secure = SecureReply {
        protocol: Cow::Borrowed(protocol::SECURE_REPLY),
        message: Cow::Borrowed(&reply_text),
        hash: Cow::Owned(hash),
    };
    let secure_text = to_json(&secure);
    let transport = Transport {
        protocol: Cow::Borrowed(protocol::TRANSPORT),
        data: Cow::Owned(STANDARD.encode(secure_text.as_bytes())),
        headers: Headers {
            reply_to: None,
            mc_sender: Some(Cow::Borrowed(parts.senderid)),
            seen_by: parts.seen_by.map(<[_]>::to_vec),
            federation: parts.federation.cloned(),
        },
    };
    serde_json::to_vec(&transport).unwrap_or_default()
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serialising these plain structs into a String cannot fail: no maps with non-string keys,
    // no custom Serialize impls that error.
    serde_json::to_string(value).unwrap_or_default()
}

/// What a client needs to build a request.
#[derive(Debug, Clone)]
pub struct RequestParts<'a> {
    pub requestid: &'a str,
    pub senderid: &'a str,
    pub callerid: &'a str,
    pub collective: &'a str,
    pub agent: &'a str,
    pub ttl: i64,
    pub time: i64,
    pub filter: &'a Filter,
    /// The text placed in `choria:request:1.message` (already base64 for a Go-style ping).
    pub message: &'a str,
    pub reply_to: &'a str,
}

/// The request JSON (`choria:request:1`) a client embeds in its secure request.
pub fn encode_request_json(parts: &RequestParts<'_>) -> String {
    let request = Request {
        protocol: Cow::Borrowed(protocol::REQUEST),
        message: Cow::Borrowed(parts.message),
        envelope: RequestEnvelope {
            requestid: Cow::Borrowed(parts.requestid),
            senderid: Cow::Borrowed(parts.senderid),
            callerid: Cow::Borrowed(parts.callerid),
            collective: Cow::Borrowed(parts.collective),
            agent: Cow::Borrowed(parts.agent),
            ttl: parts.ttl,
            time: parts.time,
            filter: parts.filter.clone(),
        },
    };
    to_json(&request)
}

/// The full transport a client publishes, in insecure mode.
pub fn encode_request(parts: &RequestParts<'_>) -> Vec<u8> {
    let request_text = encode_request_json(parts);
    let secure = SecureRequest {
        protocol: Cow::Borrowed(protocol::SECURE_REQUEST),
        message: Cow::Borrowed(&request_text),
        signature: Cow::Borrowed(protocol::INSECURE),
        pubcert: Cow::Borrowed(protocol::INSECURE),
    };
    let secure_text = to_json(&secure);
    let transport = Transport {
        protocol: Cow::Borrowed(protocol::TRANSPORT),
        data: Cow::Owned(STANDARD.encode(secure_text.as_bytes())),
        headers: Headers {
            reply_to: Some(Cow::Borrowed(parts.reply_to)),
            mc_sender: Some(Cow::Borrowed(parts.senderid)),
            seen_by: None,
            federation: None,
        },
    };
    serde_json::to_vec(&transport).unwrap_or_default()
}

/// Most targets one federated request carries (what Choria clients send; the broker refuses
/// more).
pub const MAX_FEDERATION_TARGETS: usize = 200;

/// The transport a federated client publishes on the federation network: [`encode_request`]
/// plus the `federation` header, `req` the request id and `target` the subjects the federation
/// broker publishes the request to on its collective network.
pub fn encode_federated_request(parts: &RequestParts<'_>, targets: &[String]) -> Vec<u8> {
    let plain = encode_request(parts);
    let Ok(mut transport) = serde_json::from_slice::<Transport<'_>>(&plain) else {
        return plain;
    };
    transport.headers.federation = Some(Federation {
        req: Cow::Borrowed(parts.requestid),
        reply_to: None,
        target: targets.iter().map(|t| Cow::Borrowed(t.as_str())).collect(),
    });
    serde_json::to_vec(&transport).unwrap_or(plain)
}

/// A reply as a client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundReply {
    /// `headers.mc_sender`, falling back to the envelope's `senderid`.
    pub sender: String,
    pub requestid: String,
    pub agent: String,
    pub time: i64,
    /// The agent's reply text.
    pub body: String,
}

/// Decodes a reply transport and verifies the secure reply's hash.
///
/// A hash mismatch is reported as [`Invalid::BadHash`] together with the decoded reply, so the
/// caller can still account for the sender.
pub fn decode_reply(body: &[u8]) -> Result<InboundReply, (Invalid, Option<InboundReply>)> {
    let transport: Transport<'_> = parse(body).map_err(|e| (e, None))?;
    if transport.protocol != protocol::TRANSPORT {
        return Err((Invalid::WrongProtocol, None));
    }
    let secure_bytes = decode_base64(&transport.data).map_err(|e| (e, None))?;
    let secure: SecureReply<'_> = parse(&secure_bytes).map_err(|e| (e, None))?;
    if secure.protocol != protocol::SECURE_REPLY {
        return Err((Invalid::WrongProtocol, None));
    }
    let reply: Reply<'_> = parse(secure.message.as_bytes()).map_err(|e| (e, None))?;
    if reply.protocol != protocol::REPLY {
        return Err((Invalid::WrongProtocol, None));
    }
    let hash_ok = hash_matches(&secure.message, &secure.hash);
    let sender = match transport.headers.mc_sender {
        Some(s) if !s.is_empty() => s.into_owned(),
        _ => reply.envelope.senderid.clone().into_owned(),
    };
    let decoded = InboundReply {
        sender,
        requestid: reply.envelope.requestid.into_owned(),
        agent: reply.envelope.agent.into_owned(),
        time: reply.envelope.time,
        body: reply.message.into_owned(),
    };
    if hash_ok {
        Ok(decoded)
    } else {
        Err((Invalid::BadHash, Some(decoded)))
    }
}

fn hash_matches(message: &str, hash: &str) -> bool {
    let digest = Sha256::digest(message.as_bytes());
    let mut expected = [0u8; 44];
    match STANDARD.encode_slice(digest, &mut expected) {
        Ok(n) => expected[..n] == *hash.as_bytes(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_federated_request_carries_req_and_targets_and_decodes_as_the_plain_one() {
        let filter = Filter::default();
        let parts = RequestParts {
            requestid: "0123456789abcdef0123456789abcdef",
            senderid: "client",
            callerid: "choria=me",
            collective: "mcollective",
            agent: "discovery",
            ttl: 60,
            time: 1,
            filter: &filter,
            message: "cGluZw==",
            reply_to: "mcollective.reply.x.0123456789abcdef0123456789abcdef",
        };
        let targets = vec!["mcollective.broadcast.agent.discovery".to_owned()];
        let body = encode_federated_request(&parts, &targets);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json["headers"]["federation"],
            serde_json::json!({
                "req": "0123456789abcdef0123456789abcdef",
                "target": ["mcollective.broadcast.agent.discovery"],
            })
        );
        assert_eq!(json["headers"]["reply-to"], parts.reply_to);
        let plain: serde_json::Value = serde_json::from_slice(&encode_request(&parts)).unwrap();
        assert_eq!(
            json["data"], plain["data"],
            "the secure request is unchanged"
        );
        let inbound = decode_request(&body, None, DEFAULT_MAX_MESSAGE).unwrap();
        let federation = inbound.federation.unwrap();
        assert_eq!(federation.req, parts.requestid);
        assert_eq!(federation.target, targets);
    }
}
