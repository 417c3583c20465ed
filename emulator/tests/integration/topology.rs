//! What the broker sees: one connection per instance, named after its identity, holding exactly
//! the subscriptions of a Choria server.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::{Fleet, start_emulator};
use testkit::{LocalNatsOptions, NatsServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_subscriptions_are_exactly_those_of_choria_servers() {
    let nats = NatsServer::start();
    let baseline = nats.monitor("/subsz").await["num_subscriptions"]
        .as_u64()
        .unwrap();
    let running = start_emulator(&nats.url(), "topo", 12, &["-a", "2", "--collectives", "2"]).await;
    let conns = nats.connections_by_name().await;
    let expected_names: BTreeSet<String> = (0..12).map(|i| format!("topo-{i}")).collect();
    assert_eq!(
        conns.keys().cloned().collect::<BTreeSet<_>>(),
        expected_names
    );
    for (name, conn) in &conns {
        let mut expected = BTreeSet::new();
        for c in ["mcollective", "collective1"] {
            expected.insert(format!("{c}.node.{name}"));
            for a in ["discovery", "rpcutil", "emulated0", "emulated1"] {
                expected.insert(format!("{c}.broadcast.agent.{a}"));
            }
        }
        let actual: BTreeSet<String> = conn.subjects.iter().cloned().collect();
        assert_eq!(actual, expected, "subscriptions of {name}");
        assert_eq!(
            conn.subscriptions, 10,
            "no duplicate subscriptions on {name}"
        );
    }
    let subsz = nats.monitor("/subsz?subs=1&limit=10000").await;
    assert_eq!(subsz["num_subscriptions"].as_u64().unwrap(), baseline + 120);
    for sub in subsz["subscriptions_list"].as_array().unwrap() {
        assert!(
            sub.get("qgroup")
                .is_none_or(|q| q.as_str().unwrap_or("").is_empty()),
            "no queue groups: {sub}"
        );
    }
    let vars = running.debug_vars();
    assert_eq!(vars.emulator.instances.connected, 12);
    assert_eq!(vars.config.collectives, 2);
    assert!(vars.memstats.sys > 0);
    let report = running.stop(Duration::from_secs(5)).await;
    assert!(report.drained_cleanly);
    nats.wait_connections(0, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_vars_and_metrics_are_served_over_http() {
    let mut fleet = Fleet::start("http", 3, &[]).await;
    let addr = fleet.running.as_ref().unwrap().http_addr();
    let vars: serde_json::Value = reqwest::get(format!("http://{addr}/debug/vars"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(vars["name"], "http");
    assert_eq!(vars["config"]["instances"], 3);
    assert_eq!(vars["config"]["agents"], 1);
    assert_eq!(vars["config"]["pid"], std::process::id());
    assert_eq!(vars["config"]["TLS"], 0);
    assert!(vars["cmdline"].is_array());
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("emulator_instances_connected 3"),
        "{metrics}"
    );
    assert!(metrics.contains("emulator_invalid_total{reason=\"not_json\"} 0"));
    let missing = reqwest::get(format!("http://{addr}/nothing"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_reconnect_after_the_broker_restarts() {
    let first = NatsServer::start();
    let port = first
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let baseline = first.monitor("/subsz").await["num_subscriptions"]
        .as_u64()
        .unwrap();
    let running = start_emulator(&first.url(), "recon", 8, &[]).await;
    assert_eq!(
        running.debug_vars().emulator.servers[&first.url()].connected,
        8
    );
    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(running.debug_vars().emulator.instances.connected, 0);
    let second = NatsServer::start_with(&LocalNatsOptions {
        port: Some(port),
        ..LocalNatsOptions::default()
    });
    second.wait_connections(8, Duration::from_secs(20)).await;
    // The broker counts a connection at accept; wait for the handshakes and subscriptions.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while running.debug_vars().emulator.instances.connected < 8
        || second.monitor("/subsz").await["num_subscriptions"].as_u64() < Some(baseline + 32)
    {
        assert!(std::time::Instant::now() < deadline, "not all back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let conns = second.connections().await;
    assert!(
        conns.iter().all(|c| c.subscriptions == 4),
        "subscriptions restored: {conns:?}"
    );
    let subsz = second.monitor("/subsz").await;
    assert_eq!(subsz["num_subscriptions"].as_u64(), Some(baseline + 32));
    let vars = running.debug_vars();
    assert_eq!(vars.emulator.instances.connected, 8);
    assert_eq!(vars.emulator.instances.reconnects, 8);
    assert_eq!(vars.emulator.instances.disconnects, 8);
    let server = &vars.emulator.servers[&second.url()];
    assert_eq!((server.connected, server.reconnects), (8, 8));
    let metrics = reqwest::get(format!("http://{}/metrics", running.http_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let url = second.url();
    assert!(
        metrics.contains(&format!(
            "emulator_server_instances_connected{{server=\"{url}\"}} 8"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "emulator_server_reconnects_total{{server=\"{url}\"}} 8"
        )),
        "{metrics}"
    );
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_ramp_paces_and_caps_connects() {
    let nats = NatsServer::start();
    let started = std::time::Instant::now();
    let running = start_emulator(
        &nats.url(),
        "ramp",
        12,
        &["--connect-rate", "20", "--connect-concurrency", "2"],
    )
    .await;
    let elapsed = started.elapsed();
    // 12 connects at 20 per second cannot finish before 11/20 s.
    assert!(
        elapsed >= Duration::from_millis(550),
        "ramp took {elapsed:?}"
    );
    assert_eq!(nats.connections().await.len(), 12);
    running.stop(Duration::from_secs(5)).await;
}
