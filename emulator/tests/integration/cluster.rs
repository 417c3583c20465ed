//! A private nats-server cluster: clients spread over its members, and a member killed while
//! the fleet is connected has its clients on the survivors and answering within 5 s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agents::Filter;
use agents::client::{Client, ClientOptions};

/// Client connections per member, from each member's own `/varz`.
async fn connections(monitors: &[String]) -> Vec<u64> {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut out = Vec::new();
    for m in monitors {
        let v: serde_json::Value = match http.get(format!("{m}/varz")).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        out.push(v["connections"].as_u64().unwrap_or(0));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_s_clients_are_on_the_survivors_and_answering_within_5s() {
    let instances = 300;
    let config = emulator::Config::builder("clu", instances)
        .brokers(3)
        .build()
        .unwrap();
    let mut running = emulator::start_ready(config, Duration::from_secs(30))
        .await
        .unwrap();
    let vars = running.debug_vars();
    assert_eq!(vars.brokers.len(), 3, "{vars:?}");
    let urls: Vec<String> = vars.brokers.iter().map(|b| b.url.clone()).collect();
    let monitors: Vec<String> = vars.brokers.iter().map(|b| b.monitor_url.clone()).collect();
    assert!(vars.brokers.iter().all(|b| b.pid > 0));
    let spread = connections(&monitors).await;
    assert_eq!(
        spread.iter().sum::<u64>(),
        u64::from(instances),
        "{spread:?}"
    );
    assert!(
        spread.iter().all(|n| *n > 0),
        "clients spread over every member: {spread:?}"
    );

    running.kill_broker(0);
    let killed_at = Instant::now();
    let survivors = &monitors[1..];
    loop {
        let now = connections(survivors).await;
        if now.iter().sum::<u64>() == u64::from(instances) {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(5),
            "after 5 s the survivors hold {now:?} of {instances}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = Client::connect(&urls[1..], ClientOptions::default())
        .await
        .unwrap();
    let found = client
        .discover(
            Filter::default(),
            Duration::from_secs(3),
            Some(instances as usize),
        )
        .await
        .unwrap();
    assert_eq!(
        found.len(),
        instances as usize,
        "every instance answers through the survivors"
    );
    assert!(
        killed_at.elapsed() < Duration::from_secs(5) + Duration::from_secs(3),
        "answering soon after the kill"
    );
    assert_eq!(
        running.debug_vars().emulator.instances.connected,
        u64::from(instances)
    );

    // The member comes back on its old port; clients stay where they are until they reconnect.
    running.restart_broker(0).await.unwrap();
    let after: BTreeMap<usize, u64> = connections(&monitors)
        .await
        .into_iter()
        .enumerate()
        .collect();
    assert_eq!(
        after.values().sum::<u64>(),
        u64::from(instances) + 1,
        "{after:?}"
    );
    assert_eq!(
        after[&0], 0,
        "no client moves back to a restarted member by itself: {after:?}"
    );
    running.stop(Duration::from_secs(5)).await;
}
