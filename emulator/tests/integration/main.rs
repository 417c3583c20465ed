//! Integration tests of the emulator against a real nats-server.

mod binary;
mod cluster;
mod common;
mod faults;
mod filters;
mod garbage;
mod hostile;
mod registration;
mod rpc;
mod strategy;
mod supervisor;
mod tls;
mod topology;
