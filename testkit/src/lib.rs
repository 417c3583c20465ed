//! Test harness shared by the workspace's integration tests: real servers on free loopback
//! ports, stopped on drop, and helpers to read their state.
//!
//! - [`NatsServer`]: a real `nats-server` (started by `natsproc`, as the emulator starts its
//!   private broker) plus its monitoring endpoints `/varz`, `/connz` (all pages) and `/subsz`.
//! - [`workspace_binary`]: the programs of the other crates, for end-to-end tests.
//! - [`Etcd`]: a real `etcd` 3.4 member on free loopback ports ([`etcd`]).
//! - [`Prometheus`] and [`promtool_check`]: a real Prometheus scraping loopback targets, and
//!   `promtool check metrics` on an exposition text ([`prometheus`]).
//! - [`ConsulConformance`]: an in-process server following the documented Consul KV and
//!   session HTTP semantics ([`consul`]); it is not Consul.
//! - [`PuppetDb`]: a real PuppetDB and PostgreSQL on free loopback ports, loaded with 36 nodes'
//!   facts and catalogs ([`puppetdb`]); [`PuppetDb::shared`] starts one per test binary.

pub mod consul;
pub mod etcd;
pub mod process;
pub mod prometheus;
pub mod puppetdb;

pub use consul::ConsulConformance;
pub use etcd::Etcd;
pub use process::{ChildGuard, port_for_child, workspace_binary};
pub use prometheus::{Prometheus, promtool_check};
pub use puppetdb::PuppetDb;

use std::collections::BTreeMap;
use std::time::Duration;

pub use natsproc::{LocalNatsOptions, LocalNatsServer};

/// A real nats-server for one test.
pub struct NatsServer {
    inner: LocalNatsServer,
    http: reqwest::Client,
}

/// One row of `/connz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub name: String,
    pub subscriptions: u64,
    pub subjects: Vec<String>,
}

impl NatsServer {
    /// Starts nats-server on free loopback ports; panics with the reason if it cannot.
    pub fn start() -> NatsServer {
        Self::start_with(&LocalNatsOptions::default())
    }

    /// Starts nats-server with extra options.
    pub fn start_with(options: &LocalNatsOptions) -> NatsServer {
        let inner = LocalNatsServer::start(options)
            .unwrap_or_else(|e| panic!("cannot start nats-server for the test: {e}"));
        NatsServer {
            inner,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .no_proxy()
                .build()
                .expect("HTTP client"),
        }
    }

    /// Starts nats-server with JetStream, its store in `store_dir` (kept after the server).
    pub fn start_jetstream(store_dir: &std::path::Path) -> NatsServer {
        Self::start_with(&LocalNatsOptions {
            jetstream: Some(store_dir.to_path_buf()),
            ..LocalNatsOptions::default()
        })
    }

    /// Kills this JetStream server at once (SIGKILL, as a crash) and starts a new one on the
    /// same client port with the same store directory.
    pub fn kill_and_restart_jetstream(&mut self, store_dir: &std::path::Path) {
        let port = self.inner.client_port();
        self.inner.kill();
        let options = LocalNatsOptions {
            jetstream: Some(store_dir.to_path_buf()),
            port: Some(port),
            ..LocalNatsOptions::default()
        };
        // The port may linger a moment after the kill.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match LocalNatsServer::start(&options) {
                Ok(inner) => {
                    self.inner = inner;
                    return;
                }
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("cannot restart nats-server on port {port}: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.inner.client_url()
    }

    /// `http://127.0.0.1:<monitor port>`.
    pub fn monitor_url(&self) -> String {
        self.inner.monitor_url()
    }

    /// The underlying launcher.
    pub fn inner(&mut self) -> &mut LocalNatsServer {
        &mut self.inner
    }

    /// GETs a monitoring endpoint as JSON.
    pub async fn monitor(&self, path_and_query: &str) -> serde_json::Value {
        let url = format!("{}{}", self.monitor_url(), path_and_query);
        self.http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
    }

    /// Every open client connection, paging through `/connz`, with subscription subjects.
    pub async fn connections(&self) -> Vec<Connection> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let page = self
                .monitor(&format!("/connz?subs=1&limit=1024&offset={offset}"))
                .await;
            let conns = page["connections"].as_array().cloned().unwrap_or_default();
            if conns.is_empty() {
                break;
            }
            offset += conns.len();
            for c in conns {
                let subjects = c["subscriptions_list"]
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .filter_map(|s| s.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Connection {
                    name: c["name"].as_str().unwrap_or_default().to_owned(),
                    subscriptions: c["subscriptions"].as_u64().unwrap_or(0),
                    subjects,
                });
            }
            if offset as u64 >= page["total"].as_u64().unwrap_or(0) {
                break;
            }
        }
        out
    }

    /// Connections by name.
    pub async fn connections_by_name(&self) -> BTreeMap<String, Connection> {
        self.connections()
            .await
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect()
    }

    /// Waits until `/varz` reports `n` client connections (or panics after `limit`).
    pub async fn wait_connections(&self, n: u64, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let varz = self.monitor("/varz").await;
            let now = varz["connections"].as_u64().unwrap_or(0);
            if now == n {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("expected {n} connections, nats-server reports {now}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
