//! The Choria v1 wire contract and the agents an emulated daemon answers. No NATS, no runtime:
//! both the emulator (server side) and the measuring client and playbook runner (client side)
//! build on this crate.
//!
//! Layout, in the order a request flows through a daemon:
//!
//! 1. [`protocol`]: the five JSON documents (transport, secure request/reply, request/reply).
//! 2. [`codec`]: whole-message decoding and encoding, every failure an [`Invalid`] reason.
//! 3. [`filter`] and [`compound`]: does this [`Node`] answer the request?
//! 4. [`agent`]: dispatch of the payload to `discovery`, `rpcutil` or `emulatedN` ([`rpc`] bodies,
//!    [`ddl`] descriptions).
//! 5. [`subject`]: the NATS subjects everything is published on.

pub mod agent;
#[cfg(feature = "client")]
pub mod client;
pub mod codec;
pub mod compound;
pub mod ddl;
pub mod filter;
pub mod node;
pub mod protocol;
pub mod rpc;
pub mod subject;

pub use agent::{AgentId, Daemon, DaemonStats, Limits};
pub use codec::{InboundReply, InboundRequest, Invalid};
pub use node::Node;
pub use protocol::{FactFilter, Filter};
pub use rpc::{RpcReply, RpcRequest, StatusCode};
