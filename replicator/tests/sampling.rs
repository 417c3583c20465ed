//! Sampling against real servers: one copy per sender per `inspect_duration`, one more on a
//! size change, and `new`/`timeout`/`expire` advisories for a silent sender.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt as _;

async fn metrics_text(port: u16) -> String {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body")
}

async fn metric(port: u16, name: &str) -> f64 {
    let text = metrics_text(port).await;
    text.lines()
        .find(|l| l.starts_with(&format!("stream_replicator_{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

async fn wait_metric(port: u16, name: &str, want: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = metric(port, name).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sampled_config(
    source: &str,
    target: &str,
    port: u16,
    store: &std::path::Path,
    durations: &str,
) -> String {
    format!(
        "name: sampler\nmonitor_port: {port}\nstate_store: {}\nstreams:\n  - stream: SRC\n    target_stream: DST\n    source_url: {source}\n    target_url: {target}\n    inspect_field: sender\n{durations}    size_trigger: 50\n    advisory:\n      subject: sr.advisory.%s\n      reliable: false\n",
        store.display()
    )
}

async fn send(js: &async_nats::jetstream::Context, sender: &str, pad: usize) {
    let body = serde_json::json!({"sender": sender, "pad": "x".repeat(pad)});
    js.publish(
        format!("src.{sender}"),
        serde_json::to_vec(&body).expect("json").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_senders_copy_ten_messages_and_a_size_change_one_more() {
    let source = JsServer::start();
    let target = JsServer::start();
    let store = tempfile::tempdir().expect("state store");
    let js = source.js().await;
    create_stream(&js, "SRC", "src").await;
    for round in 0..100 {
        for s in 0..10 {
            let _ = round;
            send(&js, &format!("s{s}"), 10).await;
        }
    }
    let port = testkit::port_for_child();
    let text = sampled_config(
        &source.url(),
        &target.url(),
        port,
        store.path(),
        "    inspect_duration: 1h\n    warn_duration: 30m\n",
    );
    let config = replicator::Config::parse(&text, "sampled.yaml").expect("config");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(replicator::run(config, async move {
        let _ = stopped.await;
    }));
    wait_metric(port, "received_total", 1000.0).await;
    wait_metric(port, "copied_total", 10.0).await;
    assert_eq!(metric(port, "skipped_sampling_total").await, 990.0);
    assert_eq!(count(&target.js().await, "DST").await, 10);
    // Same size: skipped; 100 bytes more: copied.
    send(&js, "s3", 10).await;
    send(&js, "s3", 110).await;
    wait_metric(port, "received_total", 1002.0).await;
    wait_metric(port, "copied_total", 11.0).await;
    assert_eq!(count(&target.js().await, "DST").await, 11);
    // The exposition, with every counter of a sampled stream set, passes Prometheus' own linter.
    let text = metrics_text(port).await;
    assert!(
        text.contains("stream_replicator_skipped_sampling_total{"),
        "{text}"
    );
    testkit::promtool_check(&text).unwrap_or_else(|e| panic!("promtool: {e}\n{text}"));
    let _ = stop.send(());
    run.await.expect("join").expect("run");
    // The state was saved: a restart copies nothing again for known senders.
    let state = std::fs::read_to_string(store.path().join("SRC_sampler.json")).expect("state file");
    assert!(state.contains("\"s9\""), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_sender_times_out_and_expires() {
    let source = JsServer::start();
    let target = JsServer::start();
    let store = tempfile::tempdir().expect("state store");
    let js = source.js().await;
    create_stream(&js, "SRC", "src").await;
    let watcher = async_nats::connect(target.url()).await.expect("connect");
    let mut advisories = watcher.subscribe("sr.advisory.>").await.expect("subscribe");
    watcher.flush().await.expect("flush");
    let port = testkit::port_for_child();
    // Generous against a loaded machine: the sender is silent for 2 s before timeout, 5 s before expiry.
    let text = sampled_config(
        &source.url(),
        &target.url(),
        port,
        store.path(),
        "    inspect_duration: 5s\n    warn_duration: 2s\n",
    );
    let config = replicator::Config::parse(&text, "sampled.yaml").expect("config");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(replicator::run(config, async move {
        let _ = stopped.await;
    }));
    send(&js, "talker", 10).await;
    send(&js, "silent", 10).await;
    let mut seen: Vec<(String, String)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|(e, v)| e == "expire" && v == "silent") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "advisories so far: {seen:?}"
        );
        send(&js, "talker", 10).await;
        if let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(300), advisories.next()).await
        {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("advisory JSON");
            assert_eq!(v["protocol"], "io.choria.sr.v2.age_advisory");
            assert_eq!(
                m.subject.as_str(),
                format!("sr.advisory.{}", v["event"].as_str().unwrap_or(""))
            );
            seen.push((
                v["event"].as_str().unwrap_or("").into(),
                v["value"].as_str().unwrap_or("").into(),
            ));
        }
    }
    let silent: Vec<&str> = seen
        .iter()
        .filter(|(_, v)| v == "silent")
        .map(|(e, _)| e.as_str())
        .collect();
    assert_eq!(silent, ["new", "timeout", "expire"]);
    let talker: Vec<&str> = seen
        .iter()
        .filter(|(_, v)| v == "talker")
        .map(|(e, _)| e.as_str())
        .collect();
    assert_eq!(talker, ["new"]);
    wait_metric(port, "advisories_total", 2.0).await; // the first row: event="new"
    let _ = stop.send(());
    run.await.expect("join").expect("run");
}
