//! SimpleRPC bodies: what sits inside `choria:request:1.message` for an RPC, and the reply.

use serde::{Deserialize, Serialize};

/// SimpleRPC status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum StatusCode {
    Ok,
    Aborted,
    UnknownAction,
    MissingData,
    InvalidData,
    UnknownError,
}

impl StatusCode {
    /// Every code, in numeric order.
    pub const ALL: [StatusCode; 6] = [
        StatusCode::Ok,
        StatusCode::Aborted,
        StatusCode::UnknownAction,
        StatusCode::MissingData,
        StatusCode::InvalidData,
        StatusCode::UnknownError,
    ];

    /// The numeric code on the wire.
    pub fn code(self) -> u8 {
        match self {
            StatusCode::Ok => 0,
            StatusCode::Aborted => 1,
            StatusCode::UnknownAction => 2,
            StatusCode::MissingData => 3,
            StatusCode::InvalidData => 4,
            StatusCode::UnknownError => 5,
        }
    }
}

impl From<StatusCode> for u8 {
    fn from(code: StatusCode) -> u8 {
        code.code()
    }
}

impl TryFrom<u8> for StatusCode {
    type Error = String;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        StatusCode::ALL
            .into_iter()
            .find(|c| c.code() == value)
            .ok_or_else(|| format!("unknown statuscode {value}"))
    }
}

/// An RPC request body. Go clients send `{agent, action, data}`; Ruby clients add `caller` and put
/// `process_results` inside `data`. Unknown keys are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    #[serde(default)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// An RPC reply body: `{"statuscode":0,"statusmsg":"OK","data":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcReply {
    pub statuscode: StatusCode,
    pub statusmsg: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl RpcReply {
    /// A successful reply carrying `data`.
    pub fn ok(data: serde_json::Value) -> RpcReply {
        RpcReply {
            statuscode: StatusCode::Ok,
            statusmsg: "OK".to_owned(),
            data,
        }
    }

    /// A failed reply with an empty data object.
    pub fn error(statuscode: StatusCode, statusmsg: impl Into<String>) -> RpcReply {
        RpcReply {
            statuscode,
            statusmsg: statusmsg.into(),
            data: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// The JSON text placed in `choria:reply:1.message`.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The statuscode of an RPC reply body, without building its data (the fast path for clients
/// that only account for replies).
pub fn statuscode_of(body: &str) -> Option<StatusCode> {
    #[derive(Deserialize)]
    struct Status {
        statuscode: StatusCode,
    }
    serde_json::from_str::<Status>(body)
        .ok()
        .map(|s| s.statuscode)
}
