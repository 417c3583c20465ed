//! Data stores (`data_stores:`), opened in the **execute** stage after their section has been
//! templated and checked with the kind's properties struct ([`crate::schema::stores`]).
//!
//! Every store kind implements the one async [`DataStore`] trait. Stores that support locking
//! return a [`Lock`] handle from [`DataStore::lock`]; releasing the handle releases the lock.
//! Consul ([`consul`]) and etcd ([`etcd`]) are reached over HTTP and support locks with a
//! session/lease TTL, so a lock held by a dead process lapses on its own.

pub mod consul;
mod environment;
mod etcd;
mod file;
mod memory;
mod shell;

pub use crate::schema::kinds::StoreKind;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

pub use environment::EnvOverlay;
pub use etcd::EtcdError;

use crate::schema::stores::{StoreConfig, StoreProps};
use crate::schema::values::text;

/// Data store failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The key does not exist.
    #[error("{}", missing_key(*kind, key))]
    NoSuchKey {
        /// The store's kind.
        kind: StoreKind,
        /// The key.
        key: String,
    },
    /// The environment variable does not exist.
    #[error("No such environment variable {0}")]
    NoSuchVariable(String),
    /// The store does not support this operation.
    #[error("{operation} not implemented in the {kind} data store")]
    NotImplemented {
        /// The operation (`lock`).
        operation: &'static str,
        /// The store kind.
        kind: StoreKind,
    },
    /// A lock could not be obtained in time.
    #[error("Failed to obtain lock {key} after {seconds} seconds (waited {waited:.2} s)")]
    LockTimeout {
        /// The lock key.
        key: String,
        /// The timeout.
        seconds: f64,
        /// How long the acquisition actually waited.
        waited: f64,
    },
    /// The store configuration is wrong.
    #[error("{0}")]
    Config(String),
    /// Any other failure (I/O, command exit codes, parse errors).
    #[error("{0}")]
    Failed(String),
    /// A file store's file cannot be used.
    #[error("data file {}: {problem}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        problem: FileProblem,
    },
    /// A Consul request failed.
    #[error(transparent)]
    Consul(#[from] consul::ConsulError),
    /// An etcd request failed.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
}

/// The message for a missing key, in the words Choria used for each store.
fn missing_key(kind: StoreKind, key: &str) -> String {
    match kind {
        StoreKind::Consul | StoreKind::Etcd => format!("Could not find key {key}"),
        StoreKind::Memory | StoreKind::Environment | StoreKind::File | StoreKind::Shell => {
            format!("No such key {key}")
        }
    }
}

/// Why a file store's file cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FileProblem {
    /// The path is a directory.
    #[error("it is a directory, not a file")]
    Directory,
    /// The file cannot be read (permissions, I/O).
    #[error("cannot read it: {0}")]
    Read(#[source] Arc<std::io::Error>),
    /// The file is empty: refused, since an interrupted write leaves exactly that.
    #[error(
        "it is empty; a data file must hold a mapping (write {{}} to it to start an empty store)"
    )]
    Empty,
    /// The file is not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(#[source] Arc<serde_json::Error>),
    /// The file is not valid YAML.
    #[error("invalid YAML at line {line} column {column}: {error}", line = .0.mark.line, column = .0.mark.column, error = .0)]
    Yaml(#[source] crate::yaml::YamlError),
    /// The top level is not a mapping.
    #[error("it must contain a mapping, not {0}")]
    NotMapping(String),
    /// The file could not be replaced.
    #[error("cannot write it: {0}")]
    Write(#[source] Arc<std::io::Error>),
}

/// Says why an HTTP request got no answer: connection refused, timed out, or the innermost
/// cause, instead of reqwest's generic "error sending request".
pub(crate) fn http_failure(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut io_kind = None;
    let mut innermost = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        innermost = c.to_string();
        cause = c.source();
    }
    match io_kind {
        _ if e.is_timeout() => "timed out".to_string(),
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".to_string(),
        Some(std::io::ErrorKind::ConnectionReset) => "connection reset".to_string(),
        Some(std::io::ErrorKind::TimedOut) => "timed out".to_string(),
        _ => innermost,
    }
}

/// A key/value store used by data-bound inputs, the `data` task and locks.
#[async_trait]
pub trait DataStore: Send + Sync {
    /// The store's kind.
    fn kind(&self) -> StoreKind;
    /// Reads a key.
    async fn read(&self, key: &str) -> Result<Value, StoreError>;
    /// Writes a key.
    async fn write(&self, key: &str, value: &Value) -> Result<(), StoreError>;
    /// Deletes a key.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Obtains a lock, waiting up to `timeout`. The default says the store cannot lock.
    async fn lock(&self, key: &str, timeout: Duration) -> Result<Box<dyn Lock>, StoreError> {
        let _ = (key, timeout);
        Err(StoreError::NotImplemented {
            operation: "lock",
            kind: self.kind(),
        })
    }
}

/// A held lock; dropping it without calling [`Lock::release`] leaves it to the store's own
/// expiry (a Consul session TTL, or the end of the process for the memory store).
#[async_trait]
pub trait Lock: Send + Sync {
    /// The `store/key` path of the lock.
    fn path(&self) -> &str;
    /// Releases the lock.
    async fn release(self: Box<Self>) -> Result<(), StoreError>;
    /// Why the lock is no longer held (session or lease lost), if it is not.
    fn lost(&self) -> Option<String> {
        None
    }
}

/// How often a waiting lock acquisition retries.
pub(crate) const LOCK_POLL: Duration = Duration::from_secs(1);

/// Sleeps until the next lock attempt: [`LOCK_POLL`], or less so that the last attempt is made
/// at the deadline itself (a lock wait lasts the whole timeout, not up to a poll less).
pub(crate) async fn lock_pause(deadline: tokio::time::Instant) {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    tokio::time::sleep(left.min(LOCK_POLL)).await;
}

/// A value identifying this process as a lock holder.
pub(crate) fn lock_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    format!("{host}:{}:{}", std::process::id(), uuid::Uuid::new_v4())
}

/// Validates a key for the path-like stores (Consul, etcd): non-empty, no leading `/`, no
/// whitespace or control characters, no empty, `.` or `..` segments.
pub(crate) fn check_path_key(kind: StoreKind, key: &str) -> Result<(), StoreError> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '%'))
        || key
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad {
        Err(StoreError::Config(format!(
            "Invalid key {key:?} for the {kind} data store: keys are slash-separated segments without whitespace, ?, #, %, a leading slash, or empty, . or .. segments"
        )))
    } else {
        Ok(())
    }
}

/// Opens a store from its templated and checked properties.
pub(crate) async fn open(
    name: &str,
    props: &StoreProps,
    env: &EnvOverlay,
) -> Result<Box<dyn DataStore>, StoreError> {
    let ttl = props.common.ttl.map(|s| s.0);
    match &props.config {
        StoreConfig::Memory(_) => Ok(Box::new(memory::MemoryStore::new(name))),
        StoreConfig::Environment(p) => Ok(Box::new(environment::EnvironmentStore::new(
            text(&p.prefix).unwrap_or_default(),
            env.clone(),
        ))),
        StoreConfig::File(p) => Ok(Box::new(file::FileStore::open(p).await?)),
        StoreConfig::Shell(p) => Ok(Box::new(shell::ShellStore::open(
            p,
            props.common.timeout.map(|s| s.0),
            env.clone(),
        )?)),
        StoreConfig::Etcd(p) => Ok(Box::new(etcd::EtcdStore::open(p, ttl).await?)),
        StoreConfig::Consul(p) => Ok(Box::new(consul::ConsulStore::open(p, ttl)?)),
    }
}

/// Validates a key for stores that only accept simple names.
pub(crate) fn check_simple_key(key: &str) -> Result<(), StoreError> {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Ok(())
    } else {
        Err(StoreError::Failed(
            "Valid keys must match ^[a-zA-Z0-9_-]+$".to_string(),
        ))
    }
}

/// The opened stores of a run, addressed by `store/key` paths.
#[derive(Default)]
pub struct Stores {
    stores: Vec<(String, Box<dyn DataStore>, Duration)>,
}

impl Stores {
    pub(crate) fn insert(&mut self, name: &str, store: Box<dyn DataStore>, lock_timeout: Duration) {
        self.stores.push((name.to_string(), store, lock_timeout));
    }

    /// Splits a `store/key` path and finds the store.
    pub(crate) fn resolve<'a>(
        &self,
        path: &'a str,
    ) -> Result<(&dyn DataStore, &'a str, Duration), StoreError> {
        let (name, key) = split_path(path)?;
        self.stores
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, s, t)| (s.as_ref(), key, *t))
            .ok_or_else(|| StoreError::Config(format!("Unknown data store {name}")))
    }
}

/// Splits `store/key` (the key may contain more slashes).
pub(crate) fn split_path(path: &str) -> Result<(&str, &str), StoreError> {
    match path.split_once('/') {
        Some((store, key))
            if !store.is_empty()
                && !key.is_empty()
                && store
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
        {
            Ok((store, key))
        }
        _ => Err(StoreError::Config(format!(
            "Invalid data store path {path}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_keys_keep_each_stores_wording_and_hold_kind_and_key() {
        let etcd = StoreError::NoSuchKey {
            kind: StoreKind::Etcd,
            key: "app/x".into(),
        };
        assert_eq!(etcd.to_string(), "Could not find key app/x");
        let file = StoreError::NoSuchKey {
            kind: StoreKind::File,
            key: "port".into(),
        };
        assert_eq!(file.to_string(), "No such key port");
    }

    #[tokio::test]
    async fn http_failures_say_refused_or_timed_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .expect("client");
        // Accepted by the kernel's backlog but never answered.
        let e = client
            .get(format!("http://{addr}/"))
            .send()
            .await
            .expect_err("no answer");
        assert_eq!(http_failure(&e), "timed out", "{e:?}");
        drop(listener);
        let e = client
            .get(format!("http://{addr}/"))
            .send()
            .await
            .expect_err("closed port");
        assert_eq!(http_failure(&e), "connection refused", "{e:?}");
    }
}
