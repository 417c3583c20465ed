//! Whole-stream copies between two real JetStream nats-servers: the target holds exactly the
//! source's messages (count, digest, order per subject), also across crashes of the target
//! server, of the source server, of the replicator, and of target and replicator together.

mod common;

use std::time::Duration;

use common::*;

const N: u64 = 100_000;
const FAULT_N: u64 = 30_000;

async fn assert_same(source: &JsServer, target: &JsServer) {
    let src = read_all(&source.js().await, "SRC", "").await;
    let dst = read_all(&target.js().await, "DST", "").await;
    assert_eq!(dst.count, src.count, "message count");
    src.assert_ordered();
    dst.assert_ordered();
    assert_eq!(dst.digest(), src.digest(), "digest of payloads per subject");
    assert_eq!(dst, src);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_stream_is_copied_exactly() {
    let source = JsServer::start();
    let target = JsServer::start();
    let js = source.js().await;
    create_stream(&js, "SRC", "src").await;
    fill(&js, "src", N, 64).await;
    let config =
        replicator::Config::parse(&whole_config(&source.url(), &target.url(), None), "t.yaml")
            .expect("config");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(replicator::run(config, async move {
        let _ = stopped.await;
    }));
    wait_for(&target.url(), "DST", N, Duration::from_secs(60)).await;
    // Target stream made like the source: same storage.
    let mut dst = target
        .js()
        .await
        .get_stream("DST")
        .await
        .expect("DST created");
    let info = dst.info().await.expect("info").clone();
    assert_eq!(
        info.config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert_eq!(info.config.subjects, vec!["src.>".to_owned()]);
    let _ = stop.send(());
    run.await.expect("join").expect("run");
    assert_same(&source, &target).await;
    // The durable consumer acknowledged everything.
    let mut s = js.get_stream("SRC").await.expect("SRC");
    let mut c = s
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(
            &replicator::copier::consumer_name("test", "SRC"),
        )
        .await
        .expect("durable consumer");
    let ci = c.info().await.expect("consumer info");
    assert_eq!(ci.ack_floor.stream_sequence, N);
    let _ = s.info().await;
}

/// Fills while the replicator copies, so that faults land mid-copy.
/// After a fault: the filler done, the target caught up, then (a second later, so that a late
/// duplicate would show) exactly the source's messages.
async fn finish_and_check(
    filler: tokio::task::JoinHandle<()>,
    source: &JsServer,
    target: &JsServer,
) {
    filler.await.expect("filled");
    wait_for(&target.url(), "DST", FAULT_N, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_same(source, target).await;
}

async fn fill_in_background(source: &JsServer) -> tokio::task::JoinHandle<()> {
    let js = source.js().await;
    create_stream(&js, "SRC", "src").await;
    tokio::spawn(async move { fill(&js, "src", FAULT_N, 64).await })
}

async fn wait_some(target: &JsServer, at_least: u64) {
    wait_for(&target.url(), "DST", at_least, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_crash_mid_copy_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let source = JsServer::start();
    let mut target = JsServer::start();
    let filler = fill_in_background(&source).await;
    let _replicator = spawn_replicator(
        dir.path(),
        &whole_config(&source.url(), &target.url(), None),
    );
    wait_some(&target, FAULT_N / 4).await;
    target.crash_and_restart();
    tokio::time::sleep(Duration::from_millis(500)).await;
    target.crash_and_restart();
    finish_and_check(filler, &source, &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicator_crash_mid_copy_resumes_from_the_durable_consumer() {
    let dir = tempfile::tempdir().expect("dir");
    let source = JsServer::start();
    let target = JsServer::start();
    let filler = fill_in_background(&source).await;
    let config = whole_config(&source.url(), &target.url(), None);
    let mut replicator = spawn_replicator(dir.path(), &config);
    wait_some(&target, FAULT_N / 4).await;
    kill9(&mut replicator);
    let _again = spawn_replicator(dir.path(), &config);
    finish_and_check(filler, &source, &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_and_replicator_crash_together() {
    let dir = tempfile::tempdir().expect("dir");
    let source = JsServer::start();
    let mut target = JsServer::start();
    let filler = fill_in_background(&source).await;
    let config = whole_config(&source.url(), &target.url(), None);
    let mut replicator = spawn_replicator(dir.path(), &config);
    wait_some(&target, FAULT_N / 4).await;
    kill9(&mut replicator);
    target.crash_and_restart();
    let _again = spawn_replicator(dir.path(), &config);
    finish_and_check(filler, &source, &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_crash_mid_copy_reconnects_and_completes() {
    let dir = tempfile::tempdir().expect("dir");
    let mut source = JsServer::start();
    let target = JsServer::start();
    fill_in_background(&source).await.await.expect("filled");
    let _replicator = spawn_replicator(
        dir.path(),
        &whole_config(&source.url(), &target.url(), None),
    );
    wait_some(&target, FAULT_N / 4).await;
    source.crash_and_restart();
    wait_for(&target.url(), "DST", FAULT_N, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_same(&source, &target).await;
}
