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
//! 5. [`admit`]: the checks every daemon runs before an agent sees a request (decode →
//!    collective → agent → TTL → filter) and the wrapping of its reply.
//! 6. [`subject`]: the NATS subjects everything is published on.
//! 7. [`registration`]: the inventory and file payloads a daemon publishes about itself.
//!
//! Beside the wire contract, the Choria conventions every program of the workspace shares:
//! [`config`] (`key = value` files), [`servers`] (addresses and where a client finds them),
//! [`identity`] (host name), [`clock`], and [`debug_vars`] (the emulator's `/debug/vars`).

pub mod admit;
pub mod agent;
#[cfg(feature = "client")]
pub mod client;
pub mod clock;
pub mod codec;
pub mod compound;
pub mod config;
pub mod ddl;
pub mod debug_vars;
pub mod filter;
pub mod identity;
pub mod matching;
pub mod node;
pub mod protocol;
pub mod registration;
pub mod rpc;
pub mod servers;
pub mod subject;

pub use agent::{AgentId, Daemon, DaemonStats, Limits};
pub use codec::{InboundReply, InboundRequest, Invalid};
pub use config::ChoriaConfig;
pub use debug_vars::DebugVars;
pub use matching::regex_compiles;
pub use node::Node;
pub use protocol::{BadFactFilter, FactFilter, Filter};
pub use rpc::{RpcReply, RpcRequest, StatusCode};
