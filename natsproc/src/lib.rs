//! Child processes for the workspace's programs and tests: a private `nats-server` on free
//! loopback ports ([`server`]) or a cluster of them ([`cluster`]), signalling and stopping children ([`process`]), and the
//! shutdown signals of a program ([`shutdown`]).
//!
//! The emulator starts its private broker with this crate, and the test harness (`testkit`)
//! starts the servers of every integration test with it, so both run nats-server the same way.

pub mod cluster;
pub mod process;
pub mod server;
pub mod shutdown;

pub use cluster::LocalNatsCluster;
pub use process::{send_signal, terminate};
pub use server::{
    ClusterOptions, LocalNatsOptions, LocalNatsServer, NatsError, nats_server_binary,
};
