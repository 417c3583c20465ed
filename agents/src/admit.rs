//! The checks every daemon (an emulated instance or the node daemon) runs before an agent sees a
//! request, and the wrapping of its reply: decode → collective → agent → TTL → filter, then
//! encode the reply with the request's federation and trace headers.

use std::borrow::Cow;

use crate::codec::{self, InboundRequest, Invalid, ReplyParts};
use crate::{AgentId, Node, filter};

/// Why a message does not reach an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a Choria request at all.
    Undecodable(Invalid),
    /// A request, but for a collective or agent this daemon does not have, or with a filter it
    /// cannot evaluate.
    Unroutable(Invalid),
    /// Outside `time ± ttl`.
    Expired,
    /// For other nodes.
    Filtered,
}

/// A request this daemon should answer.
pub struct Admitted {
    pub request: InboundRequest,
    pub agent: AgentId,
}

/// Runs every check on a received NATS message.
pub fn admit(
    payload: &[u8],
    nats_reply: Option<&str>,
    max_message: usize,
    node: &dyn Node,
    agent_of: impl Fn(&str) -> Option<AgentId>,
    now: i64,
) -> Result<Admitted, Refusal> {
    let request =
        codec::decode_request(payload, nats_reply, max_message).map_err(Refusal::Undecodable)?;
    if !node.collectives().iter().any(|c| *c == request.collective) {
        return Err(Refusal::Unroutable(Invalid::UnknownCollective));
    }
    let agent = agent_of(&request.agent).ok_or(Refusal::Unroutable(Invalid::UnknownAgent))?;
    if !request.is_fresh(now) {
        return Err(Refusal::Expired);
    }
    match filter::matches(&request.filter, node) {
        Ok(true) => Ok(Admitted { request, agent }),
        Ok(false) => Err(Refusal::Filtered),
        Err(reason) => Err(Refusal::Unroutable(reason)),
    }
}

/// The reply transport for `request` from `identity`; `broker_url` is recorded as a trace hop
/// when the request carries `seen-by`.
pub fn reply(
    request: &InboundRequest,
    identity: &str,
    body: &str,
    now: i64,
    broker_url: impl FnOnce() -> String,
) -> Vec<u8> {
    let seen_by = request.seen_by.as_ref().map(|hops| {
        let url = broker_url();
        let mut hops = hops.clone();
        hops.push([
            Cow::Owned(url.clone()),
            Cow::Owned(identity.to_owned()),
            Cow::Owned(url),
        ]);
        hops
    });
    codec::encode_reply(&ReplyParts {
        requestid: &request.requestid,
        senderid: identity,
        agent: &request.agent,
        time: now,
        body,
        federation: request.federation.as_ref(),
        seen_by: seen_by.as_deref(),
    })
}
