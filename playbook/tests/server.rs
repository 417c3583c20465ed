//! A local HTTP server (axum on 127.0.0.1:0) that records requests, for webhook and slack tests.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;

/// One request as received.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) uri: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("request body is JSON")
    }
}

pub(crate) struct Server {
    pub(crate) url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    /// Starts a server answering every request with `status` and `body`.
    pub(crate) fn start(status: u16, reply: &'static str) -> Self {
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let recorder = Arc::clone(&requests);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = bind().await;
                tx.send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    let recorder = Arc::clone(&recorder);
                    async move {
                        recorder.lock().expect("lock").push(Recorded {
                            method: method.to_string(),
                            uri: uri.to_string(),
                            headers: headers
                                .iter()
                                .map(|(k, v)| {
                                    (k.to_string(), v.to_str().unwrap_or_default().to_string())
                                })
                                .collect(),
                            body: String::from_utf8_lossy(&body).into_owned(),
                        });
                        (
                            StatusCode::from_u16(status).expect("status"),
                            [("content-type", "application/json")],
                            reply.to_string(),
                        )
                            .into_response()
                    }
                };
                let app = axum::Router::new().fallback(handler);
                axum::serve(listener, app).await.expect("serve");
            });
        });
        let addr = rx.recv().expect("server address");
        Self {
            url: format!("http://{addr}"),
            requests,
        }
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
}

/// Binds 127.0.0.1:0, falling back to ports below the usual ephemeral range when a busy machine
/// has run out of ephemeral ports.
async fn bind() -> tokio::net::TcpListener {
    if let Ok(l) = tokio::net::TcpListener::bind("127.0.0.1:0").await {
        return l;
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id();
    for attempt in 0..200u32 {
        let port = 20_000 + (seed.wrapping_add(attempt.wrapping_mul(7919)) % 12_000) as u16;
        if let Ok(l) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            return l;
        }
    }
    panic!("could not bind a local port for the test server");
}
