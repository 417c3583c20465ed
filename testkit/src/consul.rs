//! [`ConsulConformance`]: an in-process HTTP server (axum, 127.0.0.1, free port) that follows
//! the documented semantics of the Consul KV and session HTTP API for the subset playbooks use.
//!
//! It is a conformance server for the documented contract, not Consul: it implements KV
//! entries with `CreateIndex`/`ModifyIndex`/`LockIndex`/`Session` and the `X-Consul-Index`
//! header; `?cas=`, `?acquire=`, `?release=`; blocking reads with `?index=&wait=`; sessions
//! with `TTL` (10 s to 24 h; invalidated exactly at expiry, where Consul may wait up to twice
//! the TTL), `Behavior` (`release`/`delete`), `LockDelay` (default 15 s; numbers below 1000
//! are seconds) during which `acquire` answers `false`; `renew` answering 404 for unknown
//! sessions; idempotent `destroy`; `info`. An acquire with an unknown session is HTTP 500.
//! [`ConsulConformance::start_with_token`] also requires an `X-Consul-Token` (403 otherwise).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use base64::Engine as _;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    create: u64,
    modify: u64,
    lock_index: u64,
    flags: u64,
    session: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behavior {
    Release,
    Delete,
}

#[derive(Debug, Clone)]
struct Session {
    name: String,
    ttl: Duration,
    behavior: Behavior,
    lock_delay: Duration,
    expires: Instant,
    create: u64,
}

#[derive(Debug, Default)]
struct Inner {
    index: u64,
    kv: BTreeMap<String, Entry>,
    sessions: HashMap<String, Session>,
    delays: HashMap<String, Instant>,
}

struct Shared {
    inner: Mutex<Inner>,
    /// When set, every request must carry this `X-Consul-Token` (else 403).
    token: Option<String>,
    changed: tokio::sync::watch::Sender<u64>,
}

type St = Arc<Shared>;

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Invalidates expired sessions; returns the current index.
    fn reap(&self) -> u64 {
        let mut g = self.lock();
        let now = Instant::now();
        let expired: Vec<String> = g
            .sessions
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            invalidate(&mut g, id);
        }
        let index = g.index;
        drop(g);
        if !expired.is_empty() {
            self.changed.send_replace(index);
        }
        index
    }
}

fn invalidate(g: &mut Inner, id: &str) {
    let Some(session) = g.sessions.remove(id) else {
        return;
    };
    g.index += 1;
    let index = g.index;
    let held: Vec<String> =
        g.kv.iter()
            .filter(|(_, e)| e.session.as_deref() == Some(id))
            .map(|(k, _)| k.clone())
            .collect();
    for key in held {
        match session.behavior {
            Behavior::Delete => {
                g.kv.remove(&key);
            }
            Behavior::Release => {
                if let Some(e) = g.kv.get_mut(&key) {
                    e.session = None;
                    e.modify = index;
                }
            }
        }
        if !session.lock_delay.is_zero() {
            g.delays.insert(key, Instant::now() + session.lock_delay);
        }
    }
}

/// Consul's duration rules, written here independently of the client's parser on purpose: the
/// conformance server must not share the code it checks, or a shared mistake would pass.
fn parse_duration(v: &Value) -> Option<Duration> {
    match v {
        // Consul: numbers below 1000 are seconds, others nanoseconds.
        Value::Number(n) => {
            let n = n.as_f64()?;
            if n < 1000.0 {
                Duration::try_from_secs_f64(n).ok()
            } else {
                Duration::try_from_secs_f64(n / 1e9).ok()
            }
        }
        Value::String(t) => {
            let t = t.trim();
            let i = t.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
            let (num, unit) = t.split_at(i);
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
        _ => None,
    }
}

fn with_index(index: u64, status: StatusCode, body: String) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&index.to_string()) {
        headers.insert("X-Consul-Index", v);
    }
    headers.insert("Content-Type", HeaderValue::from_static("application/json"));
    (status, headers, body).into_response()
}

fn entry_json(key: &str, e: &Entry) -> Value {
    json!({
        "CreateIndex": e.create,
        "ModifyIndex": e.modify,
        "LockIndex": e.lock_index,
        "Key": key,
        "Flags": e.flags,
        "Value": if e.value.is_empty() { Value::Null } else {
            Value::String(base64::engine::general_purpose::STANDARD.encode(&e.value))
        },
        "Session": e.session,
    })
}

fn session_json(id: &str, s: &Session) -> Value {
    json!({
        "ID": id,
        "Name": s.name,
        "Node": "conformance",
        "LockDelay": s.lock_delay.as_nanos() as u64,
        "Behavior": match s.behavior { Behavior::Release => "release", Behavior::Delete => "delete" },
        "TTL": format!("{}s", s.ttl.as_secs()),
        "NodeChecks": [],
        "ServiceChecks": [],
        "CreateIndex": s.create,
        "ModifyIndex": s.create,
    })
}

async fn kv_get(
    State(st): State<St>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let current = st.reap();
    if let Some(want) = q.get("index").and_then(|i| i.parse::<u64>().ok()) {
        let wait = q
            .get("wait")
            .and_then(|w| parse_duration(&Value::String(w.clone())))
            .unwrap_or(Duration::from_secs(300))
            .min(Duration::from_secs(600));
        if current <= want.max(1) {
            let mut rx = st.changed.subscribe();
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let now_index = st.reap();
                if now_index > want.max(1) {
                    break;
                }
                let tick = tokio::time::Instant::now() + Duration::from_millis(100);
                let until = tick.min(deadline);
                let _ = tokio::time::timeout_at(until, rx.changed()).await;
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
        }
    }
    let g = st.lock();
    let index = g.index.max(1);
    match g.kv.get(&key) {
        Some(e) => with_index(
            index,
            StatusCode::OK,
            Value::Array(vec![entry_json(&key, e)]).to_string(),
        ),
        None => with_index(index, StatusCode::NOT_FOUND, String::new()),
    }
}

async fn kv_put(
    State(st): State<St>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    st.reap();
    let mut g = st.lock();
    let result: Result<bool, (StatusCode, String)> = (|| {
        if let Some(session) = q.get("acquire") {
            if !g.sessions.contains_key(session) {
                return Err((StatusCode::INTERNAL_SERVER_ERROR, "invalid session".into()));
            }
            if g.delays
                .get(&key)
                .is_some_and(|until| *until > Instant::now())
            {
                return Ok(false);
            }
            let next = g.index + 1;
            match g.kv.get_mut(&key) {
                Some(e) if e.session.as_deref() == Some(session.as_str()) => {
                    e.value = body.to_vec();
                    e.modify = next;
                }
                Some(e) if e.session.is_some() => return Ok(false),
                Some(e) => {
                    e.value = body.to_vec();
                    e.modify = next;
                    e.lock_index += 1;
                    e.session = Some(session.clone());
                }
                None => {
                    g.kv.insert(
                        key.clone(),
                        Entry {
                            value: body.to_vec(),
                            create: next,
                            modify: next,
                            lock_index: 1,
                            flags: 0,
                            session: Some(session.clone()),
                        },
                    );
                }
            }
            g.index = next;
            return Ok(true);
        }
        if let Some(session) = q.get("release") {
            let next = g.index + 1;
            return Ok(match g.kv.get_mut(&key) {
                Some(e) if e.session.as_deref() == Some(session.as_str()) => {
                    e.session = None;
                    e.modify = next;
                    g.index = next;
                    true
                }
                _ => false,
            });
        }
        if let Some(cas) = q.get("cas") {
            let cas: u64 = cas
                .parse()
                .map_err(|_| (StatusCode::BAD_REQUEST, "invalid cas index".to_string()))?;
            let current = g.kv.get(&key).map(|e| e.modify);
            let allowed = match (cas, current) {
                (0, None) => true,
                (0, Some(_)) => false,
                (n, Some(m)) => n == m,
                (_, None) => false,
            };
            if !allowed {
                return Ok(false);
            }
        }
        if body.len() > 512 * 1024 {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                "Value exceeds 524288 byte limit".into(),
            ));
        }
        let next = g.index + 1;
        let flags = q.get("flags").and_then(|f| f.parse().ok());
        match g.kv.get_mut(&key) {
            Some(e) => {
                e.value = body.to_vec();
                e.modify = next;
                if let Some(f) = flags {
                    e.flags = f;
                }
            }
            None => {
                g.kv.insert(
                    key.clone(),
                    Entry {
                        value: body.to_vec(),
                        create: next,
                        modify: next,
                        lock_index: 0,
                        flags: flags.unwrap_or(0),
                        session: None,
                    },
                );
            }
        }
        g.index = next;
        Ok(true)
    })();
    let index = g.index;
    drop(g);
    match result {
        Ok(done) => {
            if done {
                st.changed.send_replace(index);
            }
            with_index(index, StatusCode::OK, done.to_string())
        }
        Err((status, msg)) => (status, msg).into_response(),
    }
}

async fn kv_delete(
    State(st): State<St>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    st.reap();
    let mut g = st.lock();
    let allowed = match q.get("cas").map(|c| c.parse::<u64>()) {
        None => true,
        Some(Ok(0)) => false,
        Some(Ok(n)) => g.kv.get(&key).is_some_and(|e| e.modify == n),
        Some(Err(_)) => return (StatusCode::BAD_REQUEST, "invalid cas index").into_response(),
    };
    if allowed && g.kv.remove(&key).is_some() {
        g.index += 1;
    }
    let index = g.index;
    drop(g);
    st.changed.send_replace(index);
    with_index(index, StatusCode::OK, allowed.to_string())
}

async fn session_create(State(st): State<St>, body: Bytes) -> Response {
    st.reap();
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("Request decode failed: {e}"),
                )
                    .into_response();
            }
        }
    };
    let ttl = match req.get("TTL") {
        None | Some(Value::Null) => None,
        Some(v) => match parse_duration(v) {
            Some(d) if d >= Duration::from_secs(10) && d <= Duration::from_secs(86400) => Some(d),
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    "Invalid Session TTL: must be between 10s and 24h0m0s",
                )
                    .into_response();
            }
        },
    };
    let Some(ttl) = ttl else {
        // Without a TTL the session would depend on health checks only, which this server
        // does not model.
        return (
            StatusCode::BAD_REQUEST,
            "this conformance server only supports TTL sessions",
        )
            .into_response();
    };
    let lock_delay = req
        .get("LockDelay")
        .and_then(parse_duration)
        .unwrap_or(Duration::from_secs(15))
        .min(Duration::from_secs(60));
    let behavior = match req.get("Behavior").and_then(Value::as_str) {
        None | Some("release") => Behavior::Release,
        Some("delete") => Behavior::Delete,
        Some(other) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("Invalid Behavior setting '{other}'"),
            )
                .into_response();
        }
    };
    let id = uuid::Uuid::new_v4().to_string();
    let mut g = st.lock();
    g.index += 1;
    let create = g.index;
    g.sessions.insert(
        id.clone(),
        Session {
            name: req
                .get("Name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            ttl,
            behavior,
            lock_delay,
            expires: Instant::now() + ttl,
            create,
        },
    );
    with_index(create, StatusCode::OK, json!({"ID": id}).to_string())
}

async fn session_renew(State(st): State<St>, Path(id): Path<String>) -> Response {
    st.reap();
    let mut g = st.lock();
    let index = g.index;
    match g.sessions.get_mut(&id) {
        Some(s) => {
            s.expires = Instant::now() + s.ttl;
            let body = Value::Array(vec![session_json(&id, s)]).to_string();
            with_index(index, StatusCode::OK, body)
        }
        None => (
            StatusCode::NOT_FOUND,
            format!("Session id '{id}' not found"),
        )
            .into_response(),
    }
}

async fn session_destroy(State(st): State<St>, Path(id): Path<String>) -> Response {
    st.reap();
    let mut g = st.lock();
    invalidate(&mut g, &id);
    let index = g.index;
    drop(g);
    st.changed.send_replace(index);
    with_index(index, StatusCode::OK, "true".to_string())
}

async fn session_info(State(st): State<St>, Path(id): Path<String>) -> Response {
    st.reap();
    let g = st.lock();
    let list: Vec<Value> = g
        .sessions
        .get(&id)
        .map(|s| session_json(&id, s))
        .into_iter()
        .collect();
    with_index(g.index, StatusCode::OK, Value::Array(list).to_string())
}

async fn acl(
    State(st): State<St>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(token) = &st.token {
        let sent = request
            .headers()
            .get("X-Consul-Token")
            .and_then(|v| v.to_str().ok());
        if sent != Some(token.as_str()) {
            return (StatusCode::FORBIDDEN, "Permission denied").into_response();
        }
    }
    next.run(request).await
}

/// The conformance server; stopped on drop.
pub struct ConsulConformance {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
    tick: tokio::task::JoinHandle<()>,
}

impl ConsulConformance {
    /// Starts the server on 127.0.0.1 with a free port (needs a tokio runtime).
    pub async fn start() -> ConsulConformance {
        Self::start_with(None).await
    }

    /// Like [`ConsulConformance::start`], but every request must send `X-Consul-Token: token`
    /// (Consul answers 403 "Permission denied" to requests its ACLs refuse).
    pub async fn start_with_token(token: &str) -> ConsulConformance {
        Self::start_with(Some(token.to_string())).await
    }

    async fn start_with(token: Option<String>) -> ConsulConformance {
        let (changed, _) = tokio::sync::watch::channel(0);
        let state: St = Arc::new(Shared {
            inner: Mutex::new(Inner {
                index: 1,
                ..Inner::default()
            }),
            token,
            changed,
        });
        let app = Router::new()
            .route("/v1/kv/{*key}", get(kv_get).put(kv_put).delete(kv_delete))
            .route("/v1/session/create", put(session_create))
            .route("/v1/session/renew/{id}", put(session_renew))
            .route("/v1/session/destroy/{id}", put(session_destroy))
            .route("/v1/session/info/{id}", get(session_info))
            .layer(axum::middleware::from_fn_with_state(state.clone(), acl))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind the conformance server: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("no local address: {e}"));
        let reaper = state.clone();
        // Expire sessions even when nobody asks.
        let tick = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                reaper.reap();
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ConsulConformance { addr, task, tick }
    }

    /// `http://127.0.0.1:<port>`, suitable for `CONSUL_HTTP_ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ConsulConformance {
    fn drop(&mut self) {
        self.task.abort();
        self.tick.abort();
    }
}
