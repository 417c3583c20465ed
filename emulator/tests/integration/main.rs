//! Integration tests of the emulator against a real nats-server.

mod binary;
mod common;
mod filters;
mod garbage;
mod measure;
mod node;
mod playbooks;
mod rpc;
mod tls;
mod topology;
