//! End-to-end tests that need several programs of the workspace at once: the measuring
//! commands against a fleet, the node daemon driving fleets, the playbooks driving the node
//! daemons, and the registration replication scenario (emulator → adapter → replicator).
//! Every server is real (nats-server on loopback); binaries of other crates are found, or
//! built, with `testkit::workspace_binary`.

mod broker_fault;
mod common;
mod faults;
mod federated_measure;
mod federation;
mod layout;
mod measure;
mod node;
mod observe;
mod playbooks;
mod registration;
mod replication;
