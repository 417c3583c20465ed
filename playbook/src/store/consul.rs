//! The `consul` data store and the small typed Consul HTTP client under it.
//!
//! The client covers exactly what playbooks use: KV get (plain and blocking with
//! `index`/`wait`), put and delete (with `cas`), sessions (create with `TTL`, `Behavior`,
//! `LockDelay` and `Checks: []`, renew, destroy) and `acquire`/`release`. It is built on the
//! workspace's `reqwest`, so it shares one HTTP stack with everything else (see
//! `docs/stores-and-locks.md` for why no Consul crate is used).
//!
//! The agent address comes from `CONSUL_HTTP_ADDR` (default `http://127.0.0.1:8500`; a bare
//! `host:port` gets `http://`), and `CONSUL_HTTP_TOKEN` is sent as `X-Consul-Token`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{DataStore, Lock, StoreError, StoreKind, check_path_key};
use crate::schema::stores::ConsulProps;

/// The default agent address.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:8500";

/// Consul client failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsulError {
    /// The HTTP request failed (connection refused, timeout...).
    #[error("Consul request to {url} failed: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// Consul answered with an unexpected status.
    #[error("Consul {url} returned HTTP {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The response body.
        body: String,
    },
    /// The session does not exist (renew answered 404).
    #[error("Consul session {0} not found")]
    SessionNotFound(String),
    /// The response could not be parsed.
    #[error("Consul {url} returned an unexpected body: {reason}")]
    Decode {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// One KV entry as Consul returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KvPair {
    /// The key.
    pub key: String,
    /// The decoded value (Consul sends base64; `null` becomes empty).
    #[serde(default, deserialize_with = "decode_b64")]
    pub value: Vec<u8>,
    /// Raft index at creation.
    pub create_index: u64,
    /// Raft index of the last modification.
    pub modify_index: u64,
    /// How many times the key was acquired.
    pub lock_index: u64,
    /// Opaque flags.
    #[serde(default)]
    pub flags: u64,
    /// The session holding the lock, if any.
    #[serde(default)]
    pub session: Option<String>,
}

fn decode_b64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    match text {
        None => Ok(Vec::new()),
        Some(t) => B64.decode(t).map_err(serde::de::Error::custom),
    }
}

/// What happens to held keys when a session is invalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Held keys are released (the default in Consul).
    Release,
    /// Held keys are deleted (what Choria's playbooks use).
    Delete,
}

impl Behavior {
    fn name(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Delete => "delete",
        }
    }
}

/// Session settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRequest {
    /// Session name.
    pub name: String,
    /// TTL (Consul accepts 10 s to 24 h).
    pub ttl: Duration,
    /// Invalidation behaviour.
    pub behavior: Behavior,
    /// How long keys stay unacquirable after invalidation.
    pub lock_delay: Duration,
}

/// A small typed Consul HTTP client.
#[derive(Debug, Clone)]
pub struct ConsulClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

impl ConsulClient {
    /// A client for `addr` (`http://host:port` or `host:port`).
    pub fn new(addr: &str, token: Option<String>) -> Result<Self, ConsulError> {
        let base = if addr.contains("://") {
            addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", addr.trim_end_matches('/'))
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ConsulError::Transport {
                url: base.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            base,
            token: token.filter(|t| !t.is_empty()),
            http,
        })
    }

    /// A client from `CONSUL_HTTP_ADDR` and `CONSUL_HTTP_TOKEN`.
    pub fn from_env() -> Result<Self, ConsulError> {
        let addr = std::env::var("CONSUL_HTTP_ADDR")
            .ok()
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ADDR.to_string());
        Self::new(addr.trim(), std::env::var("CONSUL_HTTP_TOKEN").ok())
    }

    /// The base URL.
    pub fn address(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(u16, Option<u64>, String), ConsulError> {
        let mut url = format!("{}/v1/{path}", self.base);
        for (i, (k, v)) in query.iter().enumerate() {
            // Values are session UUIDs, integers and durations: nothing needs escaping.
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            url.push_str(v);
        }
        let mut req = self.http.request(method, &url).timeout(timeout);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.map_err(|e| ConsulError::Transport {
            url: url.clone(),
            reason: super::http_failure(&e),
        })?;
        let status = resp.status().as_u16();
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let text = resp.text().await.map_err(|e| ConsulError::Transport {
            url: url.clone(),
            reason: super::http_failure(&e),
        })?;
        Ok((status, index, text))
    }

    fn ok(&self, path: &str, status: u16, body: &str) -> Result<(), ConsulError> {
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(ConsulError::Status {
                url: format!("{}/v1/{path}", self.base),
                status,
                body: body.trim().to_string(),
            })
        }
    }

    /// A request with the default timeout whose answer must be a 2xx; returns the body.
    async fn exchange(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<String, ConsulError> {
        let (status, _, text) = self
            .send(method, path, query, body, Duration::from_secs(10))
            .await?;
        self.ok(path, status, &text)?;
        Ok(text)
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &str,
    ) -> Result<T, ConsulError> {
        serde_json::from_str(body).map_err(|e| ConsulError::Decode {
            url: format!("{}/v1/{path}", self.base),
            reason: e.to_string(),
        })
    }

    /// `GET /v1/kv/:key`; `None` when the key does not exist.
    pub async fn kv_get(&self, key: &str) -> Result<Option<KvPair>, ConsulError> {
        let (pair, _) = self.kv_get_blocking(key, None, Duration::ZERO).await?;
        Ok(pair)
    }

    /// A blocking `GET /v1/kv/:key?index=&wait=`: returns when the key changes past `index` or
    /// `wait` elapses, with the new `X-Consul-Index` (reset rules of Consul's docs applied:
    /// an index below 1 is treated as 1).
    pub async fn kv_get_blocking(
        &self,
        key: &str,
        index: Option<u64>,
        wait: Duration,
    ) -> Result<(Option<KvPair>, u64), ConsulError> {
        let path = format!("kv/{key}");
        let mut query = Vec::new();
        if let Some(i) = index {
            query.push(("index", i.max(1).to_string()));
            query.push(("wait", format!("{}ms", wait.as_millis())));
        }
        let timeout = Duration::from_secs(10) + wait + wait / 16;
        let (status, idx, body) = self
            .send(reqwest::Method::GET, &path, &query, None, timeout)
            .await?;
        let idx = idx.unwrap_or(1).max(1);
        if status == 404 {
            return Ok((None, idx));
        }
        self.ok(&path, status, &body)?;
        let pairs: Vec<KvPair> = self.decode(&path, &body)?;
        Ok((pairs.into_iter().next(), idx))
    }

    async fn kv_put_query(
        &self,
        key: &str,
        value: &[u8],
        query: &[(&str, String)],
    ) -> Result<bool, ConsulError> {
        let path = format!("kv/{key}");
        let body = self
            .exchange(reqwest::Method::PUT, &path, query, Some(value.to_vec()))
            .await?;
        self.decode(&path, &body)
    }

    /// `PUT /v1/kv/:key` (with `?cas=` when given); whether the write happened.
    pub async fn kv_put(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u64>,
    ) -> Result<bool, ConsulError> {
        let query: Vec<(&str, String)> = cas.map(|c| ("cas", c.to_string())).into_iter().collect();
        self.kv_put_query(key, value, &query).await
    }

    /// `DELETE /v1/kv/:key` (with `?cas=` when given); whether the delete happened.
    pub async fn kv_delete(&self, key: &str, cas: Option<u64>) -> Result<bool, ConsulError> {
        let path = format!("kv/{key}");
        let query: Vec<(&str, String)> = cas.map(|c| ("cas", c.to_string())).into_iter().collect();
        let body = self
            .exchange(reqwest::Method::DELETE, &path, &query, None)
            .await?;
        self.decode(&path, &body)
    }

    /// `PUT /v1/kv/:key?acquire=<session>`; whether the lock was obtained.
    pub async fn kv_acquire(
        &self,
        key: &str,
        value: &[u8],
        session: &str,
    ) -> Result<bool, ConsulError> {
        self.kv_put_query(key, value, &[("acquire", session.to_string())])
            .await
    }

    /// `PUT /v1/kv/:key?release=<session>`; whether the lock was released.
    pub async fn kv_release(&self, key: &str, session: &str) -> Result<bool, ConsulError> {
        let path = format!("kv/{key}");
        let body = self
            .exchange(
                reqwest::Method::PUT,
                &path,
                &[("release", session.to_string())],
                None,
            )
            .await?;
        self.decode(&path, &body)
    }

    /// `PUT /v1/session/create` with `Checks: []` (a TTL-only session); returns its ID.
    pub async fn session_create(&self, req: &SessionRequest) -> Result<String, ConsulError> {
        let path = "session/create";
        let body = json!({
            "Name": req.name,
            "TTL": secs(req.ttl),
            "Behavior": req.behavior.name(),
            "LockDelay": secs(req.lock_delay),
            "Checks": [],
        });
        let text = self
            .exchange(
                reqwest::Method::PUT,
                path,
                &[],
                Some(body.to_string().into_bytes()),
            )
            .await?;
        let v: Value = self.decode(path, &text)?;
        v.get("ID")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ConsulError::Decode {
                url: format!("{}/v1/{path}", self.base),
                reason: format!("no ID in {text}"),
            })
    }

    /// `PUT /v1/session/renew/:id`; returns the TTL the server asks for (it may be higher than
    /// requested). An unknown or expired session is [`ConsulError::SessionNotFound`].
    pub async fn session_renew(&self, id: &str) -> Result<Option<Duration>, ConsulError> {
        let path = format!("session/renew/{id}");
        let (status, _, text) = self
            .send(
                reqwest::Method::PUT,
                &path,
                &[],
                None,
                Duration::from_secs(10),
            )
            .await?;
        if status == 404 {
            return Err(ConsulError::SessionNotFound(id.to_string()));
        }
        self.ok(&path, status, &text)?;
        let v: Value = self.decode(&path, &text)?;
        Ok(v.get(0)
            .and_then(|s| s.get("TTL"))
            .and_then(Value::as_str)
            .and_then(parse_duration))
    }

    /// `PUT /v1/session/destroy/:id` (idempotent).
    pub async fn session_destroy(&self, id: &str) -> Result<(), ConsulError> {
        let path = format!("session/destroy/{id}");
        self.exchange(reqwest::Method::PUT, &path, &[], None)
            .await
            .map(drop)
    }
}

/// Parses Consul durations like `10s`, `1m`, `1h`, `1500ms`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((t, "s"), |i| t.split_at(i));
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

fn store_err(e: ConsulError) -> StoreError {
    StoreError::Consul(e)
}

/// The `consul` data store.
pub(crate) struct ConsulStore {
    client: ConsulClient,
    ttl: u64,
    lock_delay: Duration,
}

impl ConsulStore {
    pub(crate) fn open(props: &ConsulProps, ttl: Option<f64>) -> Result<Self, StoreError> {
        let client = ConsulClient::from_env().map_err(store_err)?;
        let ttl = super::etcd::lock_ttl(ttl);
        let lock_delay = crate::seconds(props.lock_delay.map_or(15.0, |s| s.0).min(60.0));
        Ok(Self {
            client,
            ttl,
            lock_delay,
        })
    }
}

#[async_trait]
impl DataStore for ConsulStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Consul
    }

    async fn read(&self, key: &str) -> Result<Value, StoreError> {
        check_path_key(StoreKind::Consul, key)?;
        match self.client.kv_get(key).await.map_err(store_err)? {
            Some(pair) => Ok(Value::String(
                String::from_utf8_lossy(&pair.value).into_owned(),
            )),
            None => Err(StoreError::NoSuchKey {
                kind: StoreKind::Consul,
                key: key.to_string(),
            }),
        }
    }

    async fn write(&self, key: &str, value: &Value) -> Result<(), StoreError> {
        check_path_key(StoreKind::Consul, key)?;
        let text = crate::template::stringify(value);
        match self
            .client
            .kv_put(key, text.as_bytes(), None)
            .await
            .map_err(store_err)?
        {
            true => Ok(()),
            false => Err(StoreError::Failed(format!("Consul refused to write {key}"))),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_path_key(StoreKind::Consul, key)?;
        self.client
            .kv_delete(key, None)
            .await
            .map_err(store_err)
            .map(|_| ())
    }

    async fn lock(&self, key: &str, timeout: Duration) -> Result<Box<dyn Lock>, StoreError> {
        check_path_key(StoreKind::Consul, key)?;
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        let owner = super::lock_owner();
        let session = self
            .client
            .session_create(&SessionRequest {
                name: format!("choria playbook lock {key}"),
                ttl: Duration::from_secs(self.ttl),
                behavior: Behavior::Delete,
                lock_delay: self.lock_delay,
            })
            .await
            .map_err(store_err)?;
        loop {
            match self
                .client
                .kv_acquire(key, owner.as_bytes(), &session)
                .await
            {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    let _ = self.client.session_destroy(&session).await;
                    return Err(store_err(e));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let waited = started.elapsed().as_secs_f64();
                let _ = self.client.session_destroy(&session).await;
                return Err(StoreError::LockTimeout {
                    key: key.to_string(),
                    seconds: timeout.as_secs_f64(),
                    waited,
                });
            }
            // The session must outlive a long wait.
            if let Err(e) = self.client.session_renew(&session).await {
                return Err(store_err(e));
            }
            super::lock_pause(deadline).await;
        }
        tracing::debug!(key, session, "consul lock obtained");
        let lost = Arc::new(AtomicBool::new(false));
        let keeper = {
            let client = self.client.clone();
            let session = session.clone();
            let lost = lost.clone();
            let every = Duration::from_secs(self.ttl.saturating_sub(5).max(1));
            tokio::spawn(async move {
                let mut every = every;
                loop {
                    tokio::time::sleep(every).await;
                    match client.session_renew(&session).await {
                        Ok(Some(ttl)) if ttl > every + Duration::from_secs(5) => {
                            // The server asks for less frequent renewals.
                            every = ttl - Duration::from_secs(5);
                        }
                        Ok(_) => {}
                        Err(ConsulError::SessionNotFound(_)) => {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "Consul session renew failed"),
                    }
                }
            })
        };
        Ok(Box::new(ConsulLock {
            client: self.client.clone(),
            key: key.to_string(),
            session,
            lost,
            keeper,
        }))
    }
}

struct ConsulLock {
    client: ConsulClient,
    key: String,
    session: String,
    lost: Arc<AtomicBool>,
    keeper: tokio::task::JoinHandle<()>,
}

#[async_trait]
impl Lock for ConsulLock {
    fn path(&self) -> &str {
        &self.key
    }

    fn lost(&self) -> Option<String> {
        self.lost.load(Ordering::SeqCst).then(|| {
            format!(
                "the Consul session {} holding lock {} was invalidated",
                self.session, self.key
            )
        })
    }

    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        self.keeper.abort();
        let released = self.client.kv_release(&self.key, &self.session).await;
        let destroyed = self.client.session_destroy(&self.session).await;
        released.map_err(store_err)?;
        destroyed.map_err(store_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_samples() {
        // The KV read sample of Consul's API documentation (kv.mdx).
        let body = r#"[{"CreateIndex":100,"ModifyIndex":200,"LockIndex":200,"Key":"zip","Flags":0,"Value":"dGVzdA==","Session":"adf4238a-882b-9ddc-4a9d-5b6758e4159e"}]"#;
        let pairs: Vec<KvPair> = serde_json::from_str(body).expect("parses");
        assert_eq!(pairs[0].value, b"test");
        assert_eq!(pairs[0].lock_index, 200);
        assert_eq!(
            pairs[0].session.as_deref(),
            Some("adf4238a-882b-9ddc-4a9d-5b6758e4159e")
        );
        let body =
            r#"[{"CreateIndex":1,"ModifyIndex":1,"LockIndex":0,"Key":"k","Flags":0,"Value":null}]"#;
        let pairs: Vec<KvPair> = serde_json::from_str(body).expect("parses");
        assert!(pairs[0].value.is_empty() && pairs[0].session.is_none());
        assert_eq!(parse_duration("15s"), Some(Duration::from_secs(15)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("x"), None);
    }
}
