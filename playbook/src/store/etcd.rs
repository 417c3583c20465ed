//! The `etcd` data store: etcd v3 through its JSON gRPC gateway (`/v3/...`, keys and values
//! base64), so no protobuf toolchain is needed.
//!
//! Locks: a lease of `ttl` seconds (minimum 10) kept alive every `ttl - 5` seconds, and a
//! transaction that creates the key bound to the lease only if its `create_revision` is 0.
//! Releasing revokes the lease (which deletes the key); if the process dies the lease expires
//! and etcd deletes the key. etcd has no lock-delay.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::{DataStore, Lock, StoreError, StoreKind, check_path_key};
use crate::schema::stores::EtcdProps;
use crate::schema::values::text;

/// Default client URL.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:2379";

/// etcd gateway failures; each names the endpoint.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    /// No answer: connection refused, timeout...
    #[error("etcd request to {url} failed: {reason}")]
    Transport {
        /// The endpoint.
        url: String,
        /// Why (connection refused, timed out, ...).
        reason: String,
    },
    /// etcd answered with an error status.
    #[error("etcd {url} returned HTTP {status}: {body}")]
    Status {
        /// The endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The response body.
        body: String,
    },
    /// The answer could not be understood.
    #[error("etcd {url} returned an unexpected body: {reason}")]
    Decode {
        /// The endpoint.
        url: String,
        /// Why.
        reason: String,
    },
}

#[derive(Clone)]
struct Api {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.post(&url).json(&body);
        if let Some(t) = &self.token {
            req = req.header("Authorization", t);
        }
        let transport = |e: reqwest::Error| EtcdError::Transport {
            url: url.clone(),
            reason: super::http_failure(&e),
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let text = resp.text().await.map_err(transport)?;
        if !status.is_success() {
            return Err(EtcdError::Status {
                url,
                status: status.as_u16(),
                body: text.trim().to_string(),
            });
        }
        serde_json::from_str(&text).map_err(|e| EtcdError::Decode {
            url,
            reason: e.to_string(),
        })
    }
}

pub(crate) struct EtcdStore {
    api: Api,
    ttl: u64,
}

fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

impl EtcdStore {
    pub(crate) async fn open(props: &EtcdProps, ttl: Option<f64>) -> Result<Self, StoreError> {
        let base = text(&props.url)
            .unwrap_or_else(|| DEFAULT_URL.to_string())
            .trim_end_matches('/')
            .to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(StoreError::Config(format!(
                "etcd url should be http:// or https://, got {base}"
            )));
        }
        let ttl = lock_ttl(ttl);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| StoreError::Failed(format!("cannot build HTTP client: {e}")))?;
        let mut api = Api {
            base,
            http,
            token: None,
        };
        if let Some(user) = text(&props.user) {
            let password = text(&props.password).unwrap_or_default();
            let reply = api
                .post(
                    "/v3/auth/authenticate",
                    json!({"name": user, "password": password}),
                )
                .await?;
            api.token = reply
                .get("token")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        Ok(Self { api, ttl })
    }
}

/// The lock TTL: `ttl` seconds, negatives made positive, minimum 10, default 10.
pub(crate) fn lock_ttl(ttl: Option<f64>) -> u64 {
    (ttl.unwrap_or(10.0).abs().ceil() as u64).max(10)
}

#[async_trait]
impl DataStore for EtcdStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Etcd
    }

    async fn read(&self, key: &str) -> Result<Value, StoreError> {
        check_path_key(StoreKind::Etcd, key)?;
        let reply = self
            .api
            .post("/v3/kv/range", json!({"key": b64(key)}))
            .await?;
        let value = reply
            .get("kvs")
            .and_then(Value::as_array)
            .and_then(|kvs| kvs.first())
            .and_then(|kv| kv.get("value"))
            .and_then(Value::as_str);
        match value {
            Some(v) => {
                let bytes = B64
                    .decode(v)
                    .map_err(|e| StoreError::Failed(format!("etcd value of {key}: {e}")))?;
                Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
            }
            // An empty value is omitted by the gateway; a present key has a kvs entry.
            None if reply
                .get("kvs")
                .and_then(Value::as_array)
                .is_some_and(|k| !k.is_empty()) =>
            {
                Ok(Value::String(String::new()))
            }
            None => Err(StoreError::NoSuchKey {
                kind: StoreKind::Etcd,
                key: key.to_string(),
            }),
        }
    }

    async fn write(&self, key: &str, value: &Value) -> Result<(), StoreError> {
        check_path_key(StoreKind::Etcd, key)?;
        let text = crate::template::stringify(value);
        self.api
            .post("/v3/kv/put", json!({"key": b64(key), "value": b64(&text)}))
            .await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_path_key(StoreKind::Etcd, key)?;
        self.api
            .post("/v3/kv/deleterange", json!({"key": b64(key)}))
            .await?;
        Ok(())
    }

    async fn lock(&self, key: &str, timeout: Duration) -> Result<Box<dyn Lock>, StoreError> {
        check_path_key(StoreKind::Etcd, key)?;
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        let grant = self
            .api
            .post("/v3/lease/grant", json!({"TTL": self.ttl.to_string()}))
            .await?;
        let lease = match grant.get("ID") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(StoreError::Etcd(EtcdError::Decode {
                    url: format!("{}/v3/lease/grant", self.api.base),
                    reason: format!("no lease ID in {grant}"),
                }));
            }
        };
        let owner = super::lock_owner();
        let txn = json!({
            "compare": [{"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": b64(key), "value": b64(&owner), "lease": lease}}],
        });
        loop {
            let reply = match self.api.post("/v3/kv/txn", txn.clone()).await {
                Ok(r) => r,
                Err(e) => {
                    revoke(&self.api, &lease).await;
                    return Err(e.into());
                }
            };
            if reply.get("succeeded").and_then(Value::as_bool) == Some(true) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let waited = started.elapsed().as_secs_f64();
                revoke(&self.api, &lease).await;
                return Err(StoreError::LockTimeout {
                    key: key.to_string(),
                    seconds: timeout.as_secs_f64(),
                    waited,
                });
            }
            // The lease must outlive a long wait.
            if let Err(e) = self
                .api
                .post("/v3/lease/keepalive", json!({"ID": lease}))
                .await
            {
                revoke(&self.api, &lease).await;
                return Err(e.into());
            }
            super::lock_pause(deadline).await;
        }
        tracing::debug!(key, lease, "etcd lock obtained");
        let lost = Arc::new(AtomicBool::new(false));
        let keeper = {
            let api = self.api.clone();
            let lease = lease.clone();
            let lost = lost.clone();
            let every = Duration::from_secs(self.ttl.saturating_sub(5).max(1));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let ok = match api.post("/v3/lease/keepalive", json!({"ID": lease})).await {
                        Ok(reply) => reply
                            .get("result")
                            .and_then(|r| r.get("TTL"))
                            .and_then(|t| match t {
                                Value::String(s) => s.parse::<i64>().ok(),
                                Value::Number(n) => n.as_i64(),
                                _ => None,
                            })
                            .is_some_and(|ttl| ttl > 0),
                        Err(e) => {
                            tracing::warn!(error = %e, "etcd lease keep-alive failed");
                            false
                        }
                    };
                    if !ok {
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            })
        };
        Ok(Box::new(EtcdLock {
            api: self.api.clone(),
            key: key.to_string(),
            lease,
            lost,
            keeper,
        }))
    }
}

async fn revoke(api: &Api, lease: &str) {
    if let Err(e) = api.post("/v3/lease/revoke", json!({"ID": lease})).await {
        tracing::warn!(error = %e, "could not revoke etcd lease {lease}");
    }
}

struct EtcdLock {
    api: Api,
    key: String,
    lease: String,
    lost: Arc<AtomicBool>,
    keeper: tokio::task::JoinHandle<()>,
}

#[async_trait]
impl Lock for EtcdLock {
    fn path(&self) -> &str {
        &self.key
    }

    fn lost(&self) -> Option<String> {
        self.lost.load(Ordering::SeqCst).then(|| {
            format!(
                "the etcd lease holding lock {} expired or could not be renewed",
                self.key
            )
        })
    }

    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        self.keeper.abort();
        self.api
            .post("/v3/lease/revoke", json!({"ID": self.lease}))
            .await?;
        Ok(())
    }
}
