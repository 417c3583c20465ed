//! Integration tests: every test runs the real `playbook` binary (or the public library API)
//! against playbooks written into temporary directories.

mod corpus;
mod file_store;
mod hooks;
mod inputs;
mod interrupt;
mod locks;
mod nodes;
mod pql;
mod rpc;
mod run;
mod server;
mod services;
mod stores;
mod templates;
mod test;
mod validate;
