//! The five JSON documents of Choria protocol version 1, as serde types.
//!
//! ```text
//! NATS body
//! └─ choria:transport:1          data = base64(JSON of the secure message)
//!    └─ choria:secure:request:1 | choria:secure:reply:1   message = inner JSON, as a string
//!       └─ choria:request:1 | choria:reply:1              message = agent payload, as a string
//! ```
//!
//! Field order in every struct is the order real Choria clients and servers write, so that what we
//! encode is byte-for-byte what they encode (the golden tests check this). Strings borrow from the
//! input where JSON escaping allows it, which keeps client-side decoding cheap.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// `protocol` of the outer NATS message.
pub const TRANSPORT: &str = "choria:transport:1";
/// `protocol` of a secure (signed or `insecure`) request.
pub const SECURE_REQUEST: &str = "choria:secure:request:1";
/// `protocol` of a secure reply (carries a SHA-256 hash).
pub const SECURE_REPLY: &str = "choria:secure:reply:1";
/// `protocol` of a request.
pub const REQUEST: &str = "choria:request:1";
/// `protocol` of a reply.
pub const REPLY: &str = "choria:reply:1";
/// The literal that replaces signature and certificate when protocol security is off.
pub const INSECURE: &str = "insecure";

/// `choria:transport:1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transport<'a> {
    #[serde(borrow)]
    pub protocol: Cow<'a, str>,
    /// Standard base64 (with padding) of the secure message's JSON.
    #[serde(borrow)]
    pub data: Cow<'a, str>,
    #[serde(borrow, default)]
    pub headers: Headers<'a>,
}

/// Transport headers. Absent optional headers are not written at all, as Go's `omitempty` does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Headers<'a> {
    #[serde(
        rename = "reply-to",
        borrow,
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reply_to: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub mc_sender: Option<Cow<'a, str>>,
    /// Trace hops `[in, processor, out]`.
    #[serde(
        rename = "seen-by",
        borrow,
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub seen_by: Option<Vec<[Cow<'a, str>; 3]>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub federation: Option<Federation<'a>>,
}

/// Federation data a federation broker adds; a node copies it into its reply unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Federation<'a> {
    #[serde(borrow, default)]
    pub req: Cow<'a, str>,
    #[serde(
        rename = "reply-to",
        borrow,
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reply_to: Option<Cow<'a, str>>,
    /// The code of both Go and Ruby uses `target`; the published schema says `targets`.
    #[serde(borrow, default, alias = "targets")]
    pub target: Vec<Cow<'a, str>>,
}

/// `choria:secure:request:1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecureRequest<'a> {
    #[serde(borrow)]
    pub protocol: Cow<'a, str>,
    /// The request's JSON text, verbatim (not base64, whatever the schema says).
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    #[serde(borrow)]
    pub signature: Cow<'a, str>,
    #[serde(borrow)]
    pub pubcert: Cow<'a, str>,
}

/// `choria:request:1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request<'a> {
    #[serde(borrow)]
    pub protocol: Cow<'a, str>,
    /// The agent payload: base64 of it (Go ping), or the raw text (JSON RPC bodies, Ruby).
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    #[serde(borrow)]
    pub envelope: RequestEnvelope<'a>,
}

/// The envelope of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEnvelope<'a> {
    #[serde(borrow)]
    pub requestid: Cow<'a, str>,
    #[serde(borrow)]
    pub senderid: Cow<'a, str>,
    #[serde(borrow)]
    pub callerid: Cow<'a, str>,
    #[serde(borrow)]
    pub collective: Cow<'a, str>,
    #[serde(borrow)]
    pub agent: Cow<'a, str>,
    pub ttl: i64,
    pub time: i64,
    #[serde(default)]
    pub filter: Filter,
}

/// The discovery filter of a request. Every section must pass for a node to answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// AND: every fact comparison must hold.
    #[serde(default, deserialize_with = "null_as_default")]
    pub fact: Vec<FactFilter>,
    /// AND: every class must be present; `/regex/` allowed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub cf_class: Vec<String>,
    /// AND: every agent must be present; `/regex/` allowed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub agent: Vec<String>,
    /// OR: any identity matches; `/regex/` allowed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub identity: Vec<String>,
    /// Go writes `[[{"expr": "..."}]]`; Ruby writes its parsed statements. Kept raw.
    #[serde(default, deserialize_with = "null_as_default")]
    pub compound: Vec<serde_json::Value>,
}

impl Filter {
    /// True when no section restricts anything.
    pub fn is_empty(&self) -> bool {
        self.fact.is_empty()
            && self.cf_class.is_empty()
            && self.agent.is_empty()
            && self.identity.is_empty()
            && self.compound.is_empty()
    }
}

/// One fact comparison: `{"fact": "country", "operator": "==", "value": "uk"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FactFilter {
    pub fact: String,
    pub operator: String,
    #[serde(deserialize_with = "scalar_as_string")]
    pub value: String,
}

/// A fact filter on a command line that is not `fact<op>value`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fact filter {0:?}: expected fact=value (or == != < > <= >= =~)")]
pub struct BadFactFilter(pub String);

impl FactFilter {
    /// Parses `fact=value`, `fact==value`, `fact!=value`, `fact<=N`, `fact=~/re/`, as `choria
    /// req -F` does. The operator is the first one in the text (the longest at that place), so
    /// `a<b=c` is `a < "b=c"`; `=` means `==`.
    pub fn parse(text: &str) -> Result<FactFilter, BadFactFilter> {
        const OPERATORS: [&str; 8] = ["=~", "==", "!=", "<=", ">=", "<", ">", "="];
        let bad = || BadFactFilter(text.to_owned());
        let start = text.find(['=', '!', '<', '>']).ok_or_else(bad)?;
        let op = OPERATORS
            .iter()
            .find(|op| text[start..].starts_with(**op))
            .ok_or_else(bad)?;
        let fact = text[..start].trim();
        if fact.is_empty() {
            return Err(bad());
        }
        Ok(FactFilter {
            fact: fact.to_owned(),
            operator: if *op == "=" { "==" } else { op }.to_owned(),
            value: text[start + op.len()..].trim().to_owned(),
        })
    }
}

/// `choria:secure:reply:1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecureReply<'a> {
    #[serde(borrow)]
    pub protocol: Cow<'a, str>,
    /// The reply's JSON text, verbatim.
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    /// Standard base64 of SHA-256 over the exact `message` bytes.
    #[serde(borrow)]
    pub hash: Cow<'a, str>,
}

/// `choria:reply:1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply<'a> {
    #[serde(borrow)]
    pub protocol: Cow<'a, str>,
    /// The agent's reply text, raw.
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    #[serde(borrow)]
    pub envelope: ReplyEnvelope<'a>,
}

/// The envelope of a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyEnvelope<'a> {
    #[serde(borrow)]
    pub requestid: Cow<'a, str>,
    #[serde(borrow)]
    pub senderid: Cow<'a, str>,
    #[serde(borrow)]
    pub agent: Cow<'a, str>,
    pub time: i64,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn scalar_as_string<'de, D>(deserializer: D) -> Result<String, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        other => Err(D::Error::custom(format!(
            "fact filter value must be a string, number or boolean, not {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (String, String, String) {
        let f = FactFilter::parse(text).unwrap();
        (f.fact, f.operator, f.value)
    }

    #[test]
    fn fact_filters_take_the_first_operator() {
        let t = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
        assert_eq!(parsed("shard>=3"), t("shard", ">=", "3"));
        assert_eq!(parsed("role=emulator"), t("role", "==", "emulator"));
        assert_eq!(parsed("role == web"), t("role", "==", "web"));
        assert_eq!(parsed("id=~^a"), t("id", "=~", "^a"));
        assert_eq!(parsed("n!=1"), t("n", "!=", "1"));
        assert_eq!(parsed("a<b=c"), t("a", "<", "b=c"));
        assert_eq!(parsed("a=b<c"), t("a", "==", "b<c"));
        assert_eq!(parsed("x<=5"), t("x", "<=", "5"));
        for bad in ["", "noop", "=x", " ==1", "a!b"] {
            assert!(FactFilter::parse(bad).is_err(), "{bad:?}");
        }
    }
}
