//! `--server-strategy` against two or three real servers, each checked through its own /connz,
//! and the per-server counters of /debug/vars and /metrics.

use std::time::{Duration, Instant};

use crate::common::start_emulator;
use testkit::NatsServer;

async fn counts(servers: &[NatsServer]) -> Vec<usize> {
    let mut out = Vec::new();
    for s in servers {
        out.push(s.connections().await.len());
    }
    out
}

async fn start(servers: &[NatsServer], name: &str, n: u32, strategy: &str) -> emulator::Running {
    let mut extra = vec!["--server-strategy", strategy];
    let urls: Vec<String> = servers[1..].iter().map(NatsServer::url).collect();
    for u in &urls {
        extra.extend(["--server", u.as_str()]);
    }
    start_emulator(&servers[0].url(), name, n, &extra).await
}

/// Waits until the servers' /connz report `want` connections each.
async fn wait_counts(servers: &[NatsServer], want: &[usize], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let now = counts(servers).await;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "connections {now:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly() {
    let servers = [
        NatsServer::start(),
        NatsServer::start(),
        NatsServer::start(),
    ];
    let running = start(&servers, "rr", 60, "round-robin").await;
    let per = counts(&servers).await;
    assert_eq!(per.iter().sum::<usize>(), 60);
    for n in &per {
        // Within 10 % of an even share of 20.
        assert!((18..=22).contains(n), "connections per server {per:?}");
    }
    let vars = running.debug_vars();
    for (s, n) in servers.iter().zip(&per) {
        assert_eq!(
            vars.emulator.servers[&s.url()].connected,
            *n as u64,
            "{:?}",
            vars.emulator.servers
        );
    }
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_uses_the_first_and_fails_over_to_the_second() {
    let mut servers = [NatsServer::start(), NatsServer::start()];
    let running = start(&servers, "ord", 20, "ordered").await;
    assert_eq!(counts(&servers).await, [20, 0]);
    servers[0].inner().stop();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(5);
    loop {
        let on_second = servers[1].connections().await;
        if on_second.len() == 20 && on_second.iter().all(|c| c.subscriptions == 4) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 20 on the second server",
            on_second.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let vars = running.debug_vars();
    let second = &vars.emulator.servers[&servers[1].url()];
    assert_eq!(second.connected, 20);
    assert_eq!(second.reconnects, 20);
    assert_eq!(vars.emulator.servers[&servers[0].url()].connected, 0);
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_leaves_no_server_empty() {
    let servers = [
        NatsServer::start(),
        NatsServer::start(),
        NatsServer::start(),
    ];
    let running = start(&servers, "rnd", 60, "random").await;
    let per = counts(&servers).await;
    assert_eq!(per.iter().sum::<usize>(), 60);
    assert!(per.iter().all(|n| *n > 0), "connections per server {per:?}");
    running.stop(Duration::from_secs(5)).await;
    wait_counts(&servers, &[0, 0, 0], Duration::from_secs(5)).await;
}
