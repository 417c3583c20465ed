//! The two transformers of the broker, as pure functions over NATS bodies.
//!
//! Only the transport (`choria:transport:1`) is read and rewritten; its `data` (the secure
//! request or reply) is passed through untouched, so the broker neither needs nor checks the
//! inner documents.
//!
//! - [`request`]: a client's federated request becomes one body for the collective network
//!   plus the subjects to publish it to.
//! - [`reply`]: a node's reply becomes one body for the client's original reply subject.

use std::borrow::Cow;

use agents::protocol::{self, Transport};

/// Most targets one federated message may carry: Choria clients group direct requests 200 per
/// message, so more than that is not a client's request.
pub const MAX_TARGETS: usize = 200;

/// Length of `federation.req` (a Choria request id).
pub const REQUEST_ID_LEN: usize = 32;

/// Why a message was not passed on. Each reason is counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Reject {
    #[error("message is larger than the configured maximum")]
    Oversized,
    #[error("message is not valid JSON")]
    NotJson,
    #[error("not a choria:transport:1 message")]
    WrongProtocol,
    #[error("a required field is missing")]
    MissingField,
    #[error("a field has the wrong type")]
    WrongType,
    #[error("message has no federation header or an empty federation.req")]
    NotFederated,
    #[error("federation.req is not 32 characters")]
    BadRequestId,
    #[error("federated request has no targets")]
    NoTargets,
    #[error("federated request has more than 200 targets")]
    TooManyTargets,
    #[error("a target is not a publishable NATS subject")]
    BadTarget,
    #[error("message has no reply-to")]
    NoReplyTo,
    #[error("reply-to is not a publishable NATS subject")]
    BadReplySubject,
}

impl Reject {
    /// Every reason, in counter order.
    pub const ALL: [Reject; 12] = [
        Reject::Oversized,
        Reject::NotJson,
        Reject::WrongProtocol,
        Reject::MissingField,
        Reject::WrongType,
        Reject::NotFederated,
        Reject::BadRequestId,
        Reject::NoTargets,
        Reject::TooManyTargets,
        Reject::BadTarget,
        Reject::NoReplyTo,
        Reject::BadReplySubject,
    ];

    /// Stable snake_case name used in counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Oversized => "oversized",
            Reject::NotJson => "not_json",
            Reject::WrongProtocol => "wrong_protocol",
            Reject::MissingField => "missing_field",
            Reject::WrongType => "wrong_type",
            Reject::NotFederated => "not_federated",
            Reject::BadRequestId => "bad_request_id",
            Reject::NoTargets => "no_targets",
            Reject::TooManyTargets => "too_many_targets",
            Reject::BadTarget => "bad_target",
            Reject::NoReplyTo => "no_reply_to",
            Reject::BadReplySubject => "bad_reply_subject",
        }
    }

    /// Position in [`Reject::ALL`].
    pub fn index(self) -> usize {
        match self {
            Reject::Oversized => 0,
            Reject::NotJson => 1,
            Reject::WrongProtocol => 2,
            Reject::MissingField => 3,
            Reject::WrongType => 4,
            Reject::NotFederated => 5,
            Reject::BadRequestId => 6,
            Reject::NoTargets => 7,
            Reject::TooManyTargets => 8,
            Reject::BadTarget => 9,
            Reject::NoReplyTo => 10,
            Reject::BadReplySubject => 11,
        }
    }
}

/// One `seen-by` hop: `[in, processor, out]`.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// The server the message came in on.
    pub inbound: &'a str,
    /// Who handled it.
    pub processor: &'a str,
    /// The server it goes out on.
    pub outbound: &'a str,
}

/// A transformed message: publish `body` once to each of `targets`.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    pub targets: Vec<String>,
    pub body: Vec<u8>,
}

fn parse(body: &[u8], max_len: usize) -> Result<Transport<'_>, Reject> {
    if body.len() > max_len {
        return Err(Reject::Oversized);
    }
    let transport: Transport<'_> = serde_json::from_slice(body).map_err(|e| classify(&e))?;
    if transport.protocol != protocol::TRANSPORT {
        return Err(Reject::WrongProtocol);
    }
    Ok(transport)
}

fn classify(err: &serde_json::Error) -> Reject {
    match err.classify() {
        serde_json::error::Category::Data => {
            if err.to_string().starts_with("missing field") {
                Reject::MissingField
            } else {
                Reject::WrongType
            }
        }
        serde_json::error::Category::Io
        | serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof => Reject::NotJson,
    }
}

fn record(transport: &mut Transport<'_>, hop: Hop<'_>) {
    let hop = [
        Cow::Owned(hop.inbound.to_owned()),
        Cow::Owned(hop.processor.to_owned()),
        Cow::Owned(hop.outbound.to_owned()),
    ];
    transport
        .headers
        .seen_by
        .get_or_insert_with(Vec::new)
        .push(hop);
}

fn encode(transport: &Transport<'_>) -> Vec<u8> {
    // A Transport of strings and string vectors always serialises.
    serde_json::to_vec(transport).unwrap_or_default()
}

/// The request transformer and the hop of the collective egest.
///
/// Refuses a message without `federation.req` (or one that is not 32 characters), without
/// targets (or with more than [`MAX_TARGETS`], or one that is not a publishable subject), or
/// without a publishable `reply-to`. Moves `reply-to` into `federation.reply-to`, clears the
/// targets, sets `reply-to` to `collective_subject` (`choria.federation.<cluster>.collective`)
/// and appends `hop` to `seen-by`.
pub fn request(
    body: &[u8],
    max_len: usize,
    collective_subject: &str,
    hop: Hop<'_>,
) -> Result<Forward, Reject> {
    let mut transport = parse(body, max_len)?;
    let headers = &mut transport.headers;
    let federation = headers.federation.as_mut().ok_or(Reject::NotFederated)?;
    if federation.req.is_empty() {
        return Err(Reject::NotFederated);
    }
    if federation.req.chars().count() != REQUEST_ID_LEN {
        return Err(Reject::BadRequestId);
    }
    let targets = std::mem::take(&mut federation.target);
    if targets.is_empty() {
        return Err(Reject::NoTargets);
    }
    if targets.len() > MAX_TARGETS {
        return Err(Reject::TooManyTargets);
    }
    if !targets.iter().all(|t| agents::subject::is_publishable(t)) {
        return Err(Reject::BadTarget);
    }
    let reply_to = match headers.reply_to.take() {
        Some(r) if !r.is_empty() => r,
        _ => return Err(Reject::NoReplyTo),
    };
    if !agents::subject::is_publishable(&reply_to) {
        return Err(Reject::BadReplySubject);
    }
    federation.reply_to = Some(reply_to);
    headers.reply_to = Some(Cow::Borrowed(collective_subject));
    record(&mut transport, hop);
    Ok(Forward {
        targets: targets.into_iter().map(Cow::into_owned).collect(),
        body: encode(&transport),
    })
}

/// The reply transformer and the hop of the federation egest.
///
/// Refuses a reply without the federation header (`req`) or without a publishable
/// `federation.reply-to`. The target is `federation.reply-to`; the federation header is
/// removed and `hop` appended to `seen-by`.
pub fn reply(body: &[u8], max_len: usize, hop: Hop<'_>) -> Result<Forward, Reject> {
    let mut transport = parse(body, max_len)?;
    let federation = transport
        .headers
        .federation
        .take()
        .ok_or(Reject::NotFederated)?;
    if federation.req.is_empty() {
        return Err(Reject::NotFederated);
    }
    let target = match federation.reply_to {
        Some(r) if !r.is_empty() => r,
        _ => return Err(Reject::NoReplyTo),
    };
    if !agents::subject::is_publishable(&target) {
        return Err(Reject::BadReplySubject);
    }
    record(&mut transport, hop);
    Ok(Forward {
        targets: vec![target.into_owned()],
        body: encode(&transport),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const REQ: &str = "0123456789abcdef0123456789abcdef";
    const HOP: Hop<'static> = Hop {
        inbound: "nats://fed:4222",
        processor: "broker1 (10)",
        outbound: "nats://coll:4222",
    };

    fn body(headers: Value) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"protocol": protocol::TRANSPORT, "data": "ZGF0YQ==", "headers": headers}),
        )
        .unwrap()
    }

    fn federated(targets: Value) -> Vec<u8> {
        body(
            json!({"reply-to": "mcollective.reply.abc.1", "mc_sender": "client",
            "seen-by": [["", "client", "nats://fed:4222"]],
            "federation": {"req": REQ, "target": targets}}),
        )
    }

    #[test]
    fn a_request_is_rewritten_for_the_collective() {
        let out = request(
            &federated(json!(["mcollective.broadcast.agent.discovery"])),
            1 << 20,
            "choria.federation.c1.collective",
            HOP,
        )
        .unwrap();
        assert_eq!(out.targets, ["mcollective.broadcast.agent.discovery"]);
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(v["data"], "ZGF0YQ==");
        assert_eq!(v["headers"]["reply-to"], "choria.federation.c1.collective");
        assert_eq!(
            v["headers"]["federation"],
            json!({"req": REQ, "reply-to": "mcollective.reply.abc.1", "target": []})
        );
        assert_eq!(
            v["headers"]["seen-by"],
            json!([
                ["", "client", "nats://fed:4222"],
                ["nats://fed:4222", "broker1 (10)", "nats://coll:4222"]
            ])
        );
        assert_eq!(v["headers"]["mc_sender"], "client");
    }

    #[test]
    fn the_schema_spelling_targets_is_read_too() {
        let b = body(json!({"reply-to": "r.1", "federation": {"req": REQ, "targets": ["a.b"]}}));
        let out = request(&b, 1 << 20, "x.y", HOP).unwrap();
        assert_eq!(out.targets, ["a.b"]);
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert!(v["headers"]["federation"].get("targets").is_none());
    }

    #[test]
    fn bad_requests_are_refused_with_their_reason() {
        let many: Vec<String> = (0..201).map(|i| format!("m.node.n{i}")).collect();
        let cases: Vec<(Vec<u8>, Reject)> = vec![
            (b"{".to_vec(), Reject::NotJson),
            (b"[1,2]".to_vec(), Reject::WrongType),
            (
                b"{\"protocol\":\"choria:transport:1\"}".to_vec(),
                Reject::MissingField,
            ),
            (
                serde_json::to_vec(&json!({"protocol": "x", "data": ""})).unwrap(),
                Reject::WrongProtocol,
            ),
            (body(json!({"reply-to": "r.1"})), Reject::NotFederated),
            (
                body(json!({"reply-to": "r.1", "federation": {"req": "", "target": ["a"]}})),
                Reject::NotFederated,
            ),
            (
                body(json!({"reply-to": "r.1", "federation": {"req": "short", "target": ["a"]}})),
                Reject::BadRequestId,
            ),
            (federated(json!([])), Reject::NoTargets),
            (federated(json!(many)), Reject::TooManyTargets),
            (federated(json!(["a.*"])), Reject::BadTarget),
            (
                body(json!({"federation": {"req": REQ, "target": ["a"]}})),
                Reject::NoReplyTo,
            ),
            (
                body(json!({"reply-to": "a b", "federation": {"req": REQ, "target": ["a"]}})),
                Reject::BadReplySubject,
            ),
            (
                body(json!({"reply-to": 7, "federation": {"req": REQ, "target": ["a"]}})),
                Reject::WrongType,
            ),
        ];
        for (input, reason) in cases {
            assert_eq!(
                request(&input, 1 << 20, "x.y", HOP),
                Err(reason),
                "{}",
                String::from_utf8_lossy(&input)
            );
        }
        assert_eq!(
            request(&federated(json!(["a"])), 10, "x.y", HOP),
            Err(Reject::Oversized)
        );
        let exactly: Vec<String> = (0..200).map(|i| format!("m.node.n{i}")).collect();
        assert_eq!(
            request(&federated(json!(exactly)), 1 << 20, "x.y", HOP)
                .unwrap()
                .targets
                .len(),
            200
        );
    }

    #[test]
    fn a_reply_goes_to_the_original_reply_subject_without_federation() {
        let b = body(json!({"mc_sender": "node1",
            "seen-by": [["a", "b", "c"]],
            "federation": {"req": REQ, "reply-to": "mcollective.reply.abc.1", "target": []}}));
        let out = reply(&b, 1 << 20, HOP).unwrap();
        assert_eq!(out.targets, ["mcollective.reply.abc.1"]);
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert!(v["headers"].get("federation").is_none());
        assert_eq!(v["headers"]["mc_sender"], "node1");
        assert_eq!(v["headers"]["seen-by"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn bad_replies_are_refused_with_their_reason() {
        let cases = [
            (body(json!({"mc_sender": "n"})), Reject::NotFederated),
            (body(json!({"federation": {"req": REQ}})), Reject::NoReplyTo),
            (
                body(json!({"federation": {"req": REQ, "reply-to": "a..b"}})),
                Reject::BadReplySubject,
            ),
            (b"nonsense".to_vec(), Reject::NotJson),
        ];
        for (input, reason) in cases {
            assert_eq!(reply(&input, 1 << 20, HOP), Err(reason));
        }
    }

    #[test]
    fn reasons_are_listed_in_index_order() {
        for (i, r) in Reject::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = request(&bytes, 1 << 20, "x.y", HOP);
            let _ = reply(&bytes, 1 << 20, HOP);
        }

        #[test]
        fn corrupted_requests_never_panic(cut in 0usize..400, byte in proptest::num::u8::ANY) {
            let mut b = federated(json!(["mcollective.broadcast.agent.discovery"]));
            let at = cut % b.len();
            b[at] = byte;
            let _ = request(&b, 1 << 20, "x.y", HOP);
            let _ = reply(&b, 1 << 20, HOP);
            b.truncate(at);
            let _ = request(&b, 1 << 20, "x.y", HOP);
        }
    }
}
