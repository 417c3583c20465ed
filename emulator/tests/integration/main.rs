//! Integration tests of the emulator against a real nats-server.

mod binary;
mod common;
mod filters;
mod garbage;
mod hostile;
mod rpc;
mod strategy;
mod tls;
mod topology;
