//! Shared by the replicator's tests: JetStream servers with temp stores, a source filler, a
//! target reader that checks count, digest and order per subject, and the replicator as a
//! child process.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};
use testkit::{ChildGuard, NatsServer};

/// A JetStream nats-server and its store directory.
pub struct JsServer {
    pub server: NatsServer,
    pub store: tempfile::TempDir,
}

impl JsServer {
    pub fn start() -> JsServer {
        let store = tempfile::tempdir().expect("temp store");
        let server = NatsServer::start_jetstream(store.path());
        JsServer { server, store }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn crash_and_restart(&mut self) {
        let dir = self.store.path().to_path_buf();
        self.server.kill_and_restart_jetstream(&dir);
    }

    pub async fn js(&self) -> jetstream::Context {
        let client = async_nats::connect(self.url()).await.expect("connect");
        jetstream::new(client)
    }
}

pub const SUBJECTS: u64 = 16;

/// Creates stream `name` on subjects `<prefix>.>` (file storage).
pub async fn create_stream(js: &jetstream::Context, name: &str, prefix: &str) {
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec![format!("{prefix}.>")],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("create stream");
}

/// Publishes `n` messages round-robin over [`SUBJECTS`] subjects `<prefix>.<k>`; each payload
/// names its subject and its index on that subject, padded to `size` bytes.
pub async fn fill(js: &jetstream::Context, prefix: &str, n: u64, size: usize) {
    let mut acks = futures::stream::FuturesOrdered::new();
    for i in 0..n {
        let k = i % SUBJECTS;
        let mut body = format!("{k}:{}:", i / SUBJECTS).into_bytes();
        body.resize(size.max(body.len()), b'x');
        let ack = js
            .publish(format!("{prefix}.{k}"), body.into())
            .await
            .expect("publish");
        acks.push_back(ack.into_future());
        if acks.len() >= 2048 {
            acks.next().await.expect("ack").expect("stored");
        }
    }
    while let Some(ack) = acks.next().await {
        ack.expect("stored");
    }
}

/// Per subject, the payloads in stream order, and the digest over every subject's list.
#[derive(Debug, PartialEq, Eq)]
pub struct Contents {
    pub count: u64,
    pub by_subject: BTreeMap<String, Vec<Vec<u8>>>,
}

impl Contents {
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (subject, payloads) in &self.by_subject {
            h.update(subject.as_bytes());
            for p in payloads {
                h.update((p.len() as u64).to_be_bytes());
                h.update(p);
            }
        }
        format!("{:x}", h.finalize())
    }

    /// Payload indices on each subject must run 0, 1, 2, ... (order kept, no gap, no repeat).
    pub fn assert_ordered(&self) {
        for (subject, payloads) in &self.by_subject {
            for (i, p) in payloads.iter().enumerate() {
                let text = String::from_utf8_lossy(p);
                let index: usize = text
                    .split(':')
                    .nth(1)
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(usize::MAX);
                assert_eq!(
                    index, i,
                    "subject {subject}: message {i} carries index {index}"
                );
            }
        }
    }
}

/// Every message of stream `name`, read with an ephemeral consumer; subjects lose `strip`.
pub async fn read_all(js: &jetstream::Context, name: &str, strip: &str) -> Contents {
    let mut s = js.get_stream(name).await.expect("stream");
    let total = s.info().await.expect("info").state.messages;
    let consumer = s
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(2000)
        .messages()
        .await
        .expect("messages");
    let mut by_subject: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let mut count = 0;
    while count < total {
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("a message within 10 s")
            .expect("stream open")
            .expect("message");
        let subject = m
            .subject
            .as_str()
            .strip_prefix(strip)
            .unwrap_or(&m.subject)
            .to_owned();
        by_subject
            .entry(subject)
            .or_default()
            .push(m.payload.to_vec());
        count += 1;
    }
    Contents { count, by_subject }
}

/// Messages in stream `name` now.
pub async fn count(js: &jetstream::Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Waits until stream `name` holds `n` messages (panics after `limit`), then a little longer
/// to see that no more arrive.
pub async fn wait_for(js_url: &str, name: &str, n: u64, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = 0;
    loop {
        if let Ok(client) = async_nats::connect(js_url).await {
            let js = jetstream::new(client);
            last = count(&js, name).await;
            if last >= n {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream {name} holds {last} of {n} messages after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A whole-stream configuration from `source` stream SRC to `target`.
pub fn whole_config(source: &str, target: &str, monitor_port: Option<u16>) -> String {
    let monitor = monitor_port
        .map(|p| format!("monitor_port: {p}\n"))
        .unwrap_or_default();
    format!(
        "name: test\n{monitor}loglevel: info\nstreams:\n  - stream: SRC\n    target_stream: DST\n    source_url: {source}\n    target_url: {target}\n"
    )
}

/// The replicator binary running `config`, killed on drop.
pub fn spawn_replicator(dir: &Path, config: &str) -> ChildGuard {
    let path = dir.join("replicator.yaml");
    std::fs::write(&path, config).expect("write config");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("replicator.log"))
        .expect("log file");
    let child = Command::new(testkit::workspace_binary("stream-replicator"))
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start stream-replicator");
    ChildGuard(child)
}

/// SIGKILL, as a crash.
pub fn kill9(child: &mut ChildGuard) {
    let _ = child.0.kill();
    let _ = child.0.wait();
}
