//! Registration: what a Choria server publishes about itself every `registerinterval`.
//!
//! ```text
//! choria:transport:1 → choria:secure:request:1 → choria:request:1 (agent registration,
//!   reply-to dev.null, to <collective>.broadcast.agent.registration or a configured target)
//!   └─ payload: choria:registration:inventorycontent:1 {"protocol", "content" | "zcontent"}
//!             | choria:registration:filecontent:1 {"mtime", "file", "updated", "protocol",
//!                                                  "content" | "zcontent"}
//! ```
//!
//! Stages on the publishing side: render the content JSON → gzip it ([`gzip_member`] for a
//! shared, compressed member; [`gzip_stored_member`] for a small per-sender member appended to
//! it) → [`inventory_message`] / [`file_message`] → [`encode_request`]. On the receiving side:
//! [`decode`] peels the request ([`crate::codec::decode_request`]), checks the agent and
//! [`decode_payload`] checks the payload protocol and inflates the content.
//!
//! `zcontent` is base64 of a gzip stream (Go's `[]byte` JSON encoding). The emulator sends
//! streams of two gzip members; RFC 1952 allows any number, and Go's `gzip.Reader` and this
//! decoder read them all, but a decoder that stops after the first member (Rust's
//! `flate2::read::GzDecoder`, zlib's `inflate` called once) sees only the shared part.

use std::io::Read as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::codec::{self, InboundRequest, Invalid, RequestParts};
use crate::{Filter, ddl};

/// The agent registration requests are addressed to.
pub const AGENT: &str = "registration";
/// `protocol` of an inventory payload.
pub const INVENTORY_CONTENT: &str = "choria:registration:inventorycontent:1";
/// `protocol` of a file payload.
pub const FILE_CONTENT: &str = "choria:registration:filecontent:1";
/// The `reply-to` of every registration request: nobody answers.
pub const REPLY_TO: &str = "dev.null";
/// Largest inflated content [`decode_payload`] accepts (a gzip bomb is refused, not inflated).
pub const MAX_CONTENT: usize = 16 * 1024 * 1024;

/// `<collective>.broadcast.agent.registration`: where registration goes without a target.
pub fn subject(collective: &str) -> String {
    crate::subject::broadcast(collective, AGENT)
}

/// The two payload protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `choria:registration:inventorycontent:1`: agents, classes, facts, collectives, build.
    InventoryContent,
    /// `choria:registration:filecontent:1`: the content of a file.
    FileContent,
}

impl Kind {
    /// The payload's `protocol` string.
    pub fn protocol(self) -> &'static str {
        match self {
            Kind::InventoryContent => INVENTORY_CONTENT,
            Kind::FileContent => FILE_CONTENT,
        }
    }

    /// The go-choria plugin name (`registration = inventory_content`).
    pub fn plugin(self) -> &'static str {
        match self {
            Kind::InventoryContent => "inventory_content",
            Kind::FileContent => "file_content",
        }
    }
}

/// A `registration` value that names neither plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown registration plugin {0:?} (expected inventory_content or file_content)")]
pub struct UnknownKind(pub String);

impl std::str::FromStr for Kind {
    type Err = UnknownKind;

    /// go-choria's plugin names (`inventory_content`, `file_content`) and the protocol's
    /// short names (`inventorycontent`, `filecontent`).
    fn from_str(text: &str) -> Result<Kind, UnknownKind> {
        match text.trim() {
            "inventory_content" | "inventorycontent" => Ok(Kind::InventoryContent),
            "file_content" | "filecontent" => Ok(Kind::FileContent),
            other => Err(UnknownKind(other.to_owned())),
        }
    }
}

/// The content of an inventory payload, as go-choria's `InventoryData`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InventoryData {
    pub agents: Vec<ddl::Metadata>,
    pub classes: Vec<String>,
    pub facts: serde_json::Map<String, serde_json::Value>,
    pub status: Option<InstanceStatus>,
    pub collectives: Vec<String>,
    pub build_info: Option<BuildInfo>,
    pub machines: Vec<MachineState>,
}

/// The part of go-choria's `statistics.InstanceStatus` the emulator sends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStatus {
    pub identity: String,
    /// Seconds since the daemon started.
    pub uptime: i64,
    pub provisioning_mode: bool,
}

/// `build_info` of an inventory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildInfo {
    pub version: String,
    pub sha: String,
}

/// One autonomous agent of an inventory (`machines`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MachineState {
    pub name: String,
    pub version: String,
    pub state: String,
}

/// A decoded file payload.
#[derive(Debug, Clone, PartialEq)]
pub struct FileContent {
    pub file: String,
    pub mtime: i64,
    pub updated: bool,
    /// The file's bytes, inflated when they came in `zcontent`.
    pub content: Vec<u8>,
    /// Whether they came in `zcontent`.
    pub compressed: bool,
}

/// A decoded registration payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Registration {
    Inventory {
        data: InventoryData,
        /// Whether the content came in `zcontent`.
        compressed: bool,
    },
    File(FileContent),
}

impl Registration {
    /// Which payload protocol it came in.
    pub fn kind(&self) -> Kind {
        match self {
            Registration::Inventory { .. } => Kind::InventoryContent,
            Registration::File(_) => Kind::FileContent,
        }
    }
}

/// Why a registration message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("not a Choria request: {0}")]
    Request(Invalid),
    #[error("request is for agent {0:?}, not registration")]
    WrongAgent(String),
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("unknown payload protocol {0:?}")]
    WrongProtocol(String),
    #[error("payload has neither content nor zcontent")]
    NoContent,
    #[error("content is not valid base64")]
    BadBase64,
    #[error("zcontent is not a valid gzip stream: {0}")]
    BadGzip(String),
    #[error("content inflates to more than {MAX_CONTENT} bytes")]
    TooLarge,
    #[error("inventory content does not decode: {0}")]
    BadInventory(String),
}

impl RegistrationError {
    /// Stable snake_case name for counters and result files.
    pub fn as_str(&self) -> &'static str {
        match self {
            RegistrationError::Request(_) => "not_a_request",
            RegistrationError::WrongAgent(_) => "wrong_agent",
            RegistrationError::NotJson(_) => "payload_not_json",
            RegistrationError::WrongProtocol(_) => "wrong_protocol",
            RegistrationError::NoContent => "no_content",
            RegistrationError::BadBase64 => "bad_base64",
            RegistrationError::BadGzip(_) => "bad_gzip",
            RegistrationError::TooLarge => "too_large",
            RegistrationError::BadInventory(_) => "bad_inventory",
        }
    }
}

/// The payload's JSON before its content is looked at.
#[derive(Deserialize)]
struct RawPayload {
    protocol: String,
    #[serde(default)]
    content: Option<serde_json::Value>,
    #[serde(default)]
    zcontent: Option<String>,
    #[serde(default)]
    file: String,
    #[serde(default)]
    mtime: i64,
    #[serde(default)]
    updated: bool,
}

/// Decodes a registration payload (the text inside `choria:request:1.message`).
pub fn decode_payload(payload: &[u8]) -> Result<Registration, RegistrationError> {
    let raw: RawPayload =
        serde_json::from_slice(payload).map_err(|e| RegistrationError::NotJson(e.to_string()))?;
    let kind = match raw.protocol.as_str() {
        INVENTORY_CONTENT => Kind::InventoryContent,
        FILE_CONTENT => Kind::FileContent,
        other => return Err(RegistrationError::WrongProtocol(other.to_owned())),
    };
    let zcontent = match &raw.zcontent {
        Some(z) if !z.is_empty() => Some(gunzip(&base64(z)?)?),
        _ => None,
    };
    let compressed = zcontent.is_some();
    match kind {
        Kind::InventoryContent => {
            let data = match (zcontent, raw.content) {
                (Some(bytes), _) => serde_json::from_slice(&bytes),
                // json.RawMessage: the object itself (a string is accepted as its text).
                (None, Some(serde_json::Value::String(text))) => serde_json::from_str(&text),
                (None, Some(value @ serde_json::Value::Object(_))) => serde_json::from_value(value),
                (None, Some(_) | None) => return Err(RegistrationError::NoContent),
            }
            .map_err(|e| RegistrationError::BadInventory(e.to_string()))?;
            Ok(Registration::Inventory { data, compressed })
        }
        Kind::FileContent => {
            let content = match (zcontent, raw.content) {
                (Some(bytes), _) => bytes,
                // []byte: base64 text.
                (None, Some(serde_json::Value::String(text))) => base64(&text)?,
                (None, Some(_) | None) => return Err(RegistrationError::NoContent),
            };
            Ok(Registration::File(FileContent {
                file: raw.file,
                mtime: raw.mtime,
                updated: raw.updated,
                content,
                compressed,
            }))
        }
    }
}

/// Decodes a whole registration NATS message: the request, its agent, its payload.
pub fn decode(
    body: &[u8],
    max_message: usize,
) -> Result<(InboundRequest, Registration), RegistrationError> {
    let request =
        codec::decode_request(body, None, max_message).map_err(RegistrationError::Request)?;
    if request.agent != AGENT {
        return Err(RegistrationError::WrongAgent(request.agent));
    }
    let registration = decode_payload(&request.payload)?;
    Ok((request, registration))
}

fn base64(text: &str) -> Result<Vec<u8>, RegistrationError> {
    codec::decode_base64(text).map_err(|_| RegistrationError::BadBase64)
}

/// Inflates every member of a gzip stream, at most [`MAX_CONTENT`] bytes.
pub fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, RegistrationError> {
    let mut out = Vec::new();
    let decoder = flate2::read::MultiGzDecoder::new(bytes);
    decoder
        .take(MAX_CONTENT as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| RegistrationError::BadGzip(e.to_string()))?;
    if out.len() > MAX_CONTENT {
        return Err(RegistrationError::TooLarge);
    }
    Ok(out)
}

/// One complete, compressed gzip member of `data`.
pub fn gzip_member(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

/// One complete gzip member of `data` in deflate *stored* blocks: no compressor state, a few
/// bytes of framing. For the small per-sender part appended to a shared compressed member.
pub fn gzip_stored_member(data: &[u8]) -> Vec<u8> {
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let blocks = data.len().div_ceil(65_535).max(1);
    let mut out = Vec::with_capacity(HEADER.len() + 5 * blocks + data.len() + 8);
    out.extend_from_slice(&HEADER);
    let mut chunks = data.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = u8::from(chunks.peek().is_none());
        // Chunks are at most 65,535 bytes, so the length fits.
        let len = chunk.len() as u16;
        out.push(last);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// How the content travels.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// A gzip stream, sent as base64 in `zcontent`.
    Gzip(&'a [u8]),
    /// Uncompressed: inventory JSON text (embedded as an object) or file bytes (base64).
    Plain(&'a [u8]),
}

/// The inventory payload JSON. A plain body must be a JSON object's text.
pub fn inventory_message(body: Body<'_>) -> String {
    match body {
        Body::Gzip(z) => format!(
            "{{\"protocol\":\"{INVENTORY_CONTENT}\",\"zcontent\":\"{}\"}}",
            STANDARD.encode(z)
        ),
        Body::Plain(json) => format!(
            "{{\"protocol\":\"{INVENTORY_CONTENT}\",\"content\":{}}}",
            String::from_utf8_lossy(json)
        ),
    }
}

/// The file payload JSON, in go-choria's field order.
pub fn file_message(file: &str, mtime: i64, updated: bool, body: Body<'_>) -> String {
    let (key, bytes) = match body {
        Body::Gzip(z) => ("zcontent", z),
        Body::Plain(b) => ("content", b),
    };
    let file = serde_json::to_string(file).unwrap_or_else(|_| "\"\"".to_owned());
    format!(
        "{{\"mtime\":{mtime},\"file\":{file},\"updated\":{updated},\"protocol\":\"{FILE_CONTENT}\",\"{key}\":\"{}\"}}",
        STANDARD.encode(bytes)
    )
}

/// What a sender needs besides its payload.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    pub identity: &'a str,
    pub collective: &'a str,
    pub requestid: &'a str,
    pub time: i64,
}

/// The whole NATS body of one registration request carrying `payload`.
pub fn encode_request(sender: &Sender<'_>, payload: &str) -> Vec<u8> {
    let callerid = format!("choria={}", sender.identity);
    let filter = Filter::default();
    codec::encode_request(&RequestParts {
        requestid: sender.requestid,
        senderid: sender.identity,
        callerid: &callerid,
        collective: sender.collective,
        agent: AGENT,
        ttl: 60,
        time: sender.time,
        filter: &filter,
        message: payload,
        reply_to: REPLY_TO,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender() -> Sender<'static> {
        Sender {
            identity: "emu-7",
            collective: "mcollective",
            requestid: "0123456789abcdef0123456789abcdef",
            time: 1_700_000_000,
        }
    }

    #[test]
    fn a_two_member_inventory_decodes_whole() {
        let shared = gzip_member(br#"{"agents":[],"collectives":["mcollective"],"facts":{"a":1"#);
        let mut stream = shared.clone();
        stream.extend(gzip_stored_member(
            br#","identity":"emu-7"},"classes":["x"],"status":{"identity":"emu-7"}}"#,
        ));
        let body = encode_request(&sender(), &inventory_message(Body::Gzip(&stream)));
        let (request, registration) = decode(&body, codec::DEFAULT_MAX_MESSAGE).unwrap();
        assert_eq!(request.agent, AGENT);
        assert_eq!(request.reply_to, REPLY_TO);
        assert_eq!(request.senderid, "emu-7");
        assert_eq!(request.mc_sender.as_deref(), Some("emu-7"));
        let Registration::Inventory { data, compressed } = registration else {
            panic!("not an inventory");
        };
        assert!(compressed);
        assert_eq!(data.classes, ["x"]);
        assert_eq!(data.facts["identity"], "emu-7");
        assert_eq!(data.facts["a"], 1);
        assert_eq!(data.status.unwrap().identity, "emu-7");
        // What a single-member decoder sees: only the shared part, not a whole document.
        let mut first = String::new();
        flate2::read::GzDecoder::new(&stream[..])
            .read_to_string(&mut first)
            .unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&first).is_err());
    }

    #[test]
    fn stored_members_of_any_size_inflate() {
        for size in [0, 1, 65_535, 65_536, 200_000] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            assert_eq!(gunzip(&gzip_stored_member(&data)).unwrap(), data, "{size}");
        }
    }

    #[test]
    fn file_content_round_trips_compressed_and_plain() {
        for compressed in [true, false] {
            let z = gzip_member(b"hello file");
            let body = if compressed {
                Body::Gzip(&z)
            } else {
                Body::Plain(b"hello file")
            };
            let payload = file_message("/etc/x.json", 42, false, body);
            let msg = encode_request(&sender(), &payload);
            let (_, reg) = decode(&msg, codec::DEFAULT_MAX_MESSAGE).unwrap();
            assert_eq!(
                reg,
                Registration::File(FileContent {
                    file: "/etc/x.json".into(),
                    mtime: 42,
                    updated: false,
                    content: b"hello file".to_vec(),
                    compressed,
                })
            );
        }
    }

    #[test]
    fn refusals_name_their_reason() {
        let wrong = |payload: &str| decode_payload(payload.as_bytes()).unwrap_err();
        assert_eq!(wrong("nope").as_str(), "payload_not_json");
        assert_eq!(wrong(r#"{"protocol":"x"}"#).as_str(), "wrong_protocol");
        assert_eq!(
            wrong(&format!(r#"{{"protocol":"{INVENTORY_CONTENT}"}}"#)).as_str(),
            "no_content"
        );
        assert_eq!(
            wrong(&format!(
                r#"{{"protocol":"{INVENTORY_CONTENT}","zcontent":"aGVsbG8="}}"#
            ))
            .as_str(),
            "bad_gzip"
        );
        assert_eq!(
            wrong(&format!(
                r#"{{"protocol":"{FILE_CONTENT}","zcontent":"!!"}}"#
            ))
            .as_str(),
            "bad_base64"
        );
        let bomb = gzip_member(&vec![b' '; MAX_CONTENT + 10]);
        let payload = inventory_message(Body::Gzip(&bomb));
        assert_eq!(
            decode_payload(payload.as_bytes()).unwrap_err(),
            RegistrationError::TooLarge
        );
        let plain = inventory_message(Body::Plain(br#"{"classes":["a"]}"#));
        match decode_payload(plain.as_bytes()).unwrap() {
            Registration::Inventory { data, compressed } => {
                assert!(!compressed);
                assert_eq!(data.classes, ["a"]);
            }
            Registration::File(_) => panic!("not a file"),
        }
        let other_agent = codec::encode_request(&RequestParts {
            requestid: "0123456789abcdef0123456789abcdef",
            senderid: "x",
            callerid: "choria=x",
            collective: "mcollective",
            agent: "rpcutil",
            ttl: 60,
            time: 1,
            filter: &Filter::default(),
            message: "{}",
            reply_to: REPLY_TO,
        });
        assert_eq!(
            decode(&other_agent, codec::DEFAULT_MAX_MESSAGE)
                .unwrap_err()
                .as_str(),
            "wrong_agent"
        );
    }

    #[test]
    fn kinds_parse_from_plugin_and_protocol_names() {
        for (text, kind) in [
            ("inventory_content", Kind::InventoryContent),
            ("inventorycontent", Kind::InventoryContent),
            ("file_content", Kind::FileContent),
            (" filecontent ", Kind::FileContent),
        ] {
            assert_eq!(text.parse::<Kind>().unwrap(), kind);
        }
        assert!("files".parse::<Kind>().is_err());
    }
}
