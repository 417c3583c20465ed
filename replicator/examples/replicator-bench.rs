//! The replicator benchmark (run by `scripts/bench-replicator`): two file-backed JetStream
//! nats-servers on loopback; one publisher fills the source stream with N messages of 256
//! bytes (the fill rate); then the replicator copies the whole backlog (the copy rate and the
//! time to catch up); then the target is read back and checked against the source (count and
//! order per subject).

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt as _;

const SUBJECTS: u64 = 64;

fn server(store: &std::path::Path) -> natsproc::LocalNatsServer {
    natsproc::LocalNatsServer::start(&natsproc::LocalNatsOptions {
        jetstream: Some(store.to_path_buf()),
        ..Default::default()
    })
    .expect("nats-server with JetStream")
}

async fn count(js: &jetstream::Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let size = 256usize;
    let source_store = tempfile::tempdir().expect("temp dir");
    let target_store = tempfile::tempdir().expect("temp dir");
    let source = server(source_store.path());
    let target = server(target_store.path());
    let js = jetstream::new(
        async_nats::connect(source.client_url())
            .await
            .expect("connect"),
    );
    js.create_stream(stream::Config {
        name: "SRC".into(),
        subjects: vec!["bench.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("source stream");

    let started = Instant::now();
    let mut acks = futures::stream::FuturesUnordered::new();
    for i in 0..n {
        let k = i % SUBJECTS;
        let mut body = format!("{k}:{}:", i / SUBJECTS).into_bytes();
        body.resize(size, b'x');
        let ack = js
            .publish(format!("bench.{k}"), body.into())
            .await
            .expect("publish");
        acks.push(ack.into_future());
        if acks.len() >= 4096 {
            acks.next().await.expect("ack").expect("stored");
        }
    }
    while let Some(a) = acks.next().await {
        a.expect("stored");
    }
    let fill = started.elapsed();
    let fill_rate = n as f64 / fill.as_secs_f64();
    println!(
        "fill: {n} messages of {size} B in {:.2} s = {fill_rate:.0} msg/s (one publisher, 4096 in flight)",
        fill.as_secs_f64()
    );

    let config = replicator::Config::parse(
        &format!(
            "name: bench\nstreams:\n  - stream: SRC\n    target_stream: DST\n    source_url: {}\n    target_url: {}\n",
            source.client_url(),
            target.client_url()
        ),
        "bench.yaml",
    )
    .expect("config");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let run = tokio::spawn(replicator::run(config, async move {
        let _ = stopped.await;
    }));
    let tjs = jetstream::new(
        async_nats::connect(target.client_url())
            .await
            .expect("connect"),
    );
    let mut last_report = Instant::now();
    loop {
        let have = count(&tjs, "DST").await;
        if have >= n {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            println!(
                "  copied {have} after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let copy = started.elapsed();
    let copy_rate = n as f64 / copy.as_secs_f64();
    println!(
        "copy: backlog of {n} caught up in {:.2} s = {copy_rate:.0} msg/s; ratio copy/fill = {:.2}",
        copy.as_secs_f64(),
        copy_rate / fill_rate
    );
    let _ = stop.send(());
    run.await.expect("join").expect("run");

    // Check: every subject's messages in order, none missing, none repeated.
    let s = tjs.get_stream("DST").await.expect("DST");
    let c = s
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = c
        .stream()
        .max_messages_per_batch(4096)
        .messages()
        .await
        .expect("messages");
    let mut next = vec![0u64; SUBJECTS as usize];
    let mut seen = 0u64;
    while seen < n {
        let m = messages.next().await.expect("open").expect("message");
        let text = String::from_utf8_lossy(&m.payload[..24.min(m.payload.len())]).into_owned();
        let mut parts = text.split(':');
        let k: usize = parts
            .next()
            .and_then(|p| p.parse().ok())
            .expect("subject index");
        let i: u64 = parts
            .next()
            .and_then(|p| p.parse().ok())
            .expect("message index");
        assert_eq!(i, next[k], "order on subject {k}");
        next[k] += 1;
        seen += 1;
    }
    assert_eq!(count(&tjs, "DST").await, n, "no extra messages");
    println!("check: target holds exactly {n} messages, in order on each of {SUBJECTS} subjects");
}
