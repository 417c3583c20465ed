//! Hostile requests that once hurt the whole fleet: one message must not hurt any instance.

use std::time::{Duration, Instant};

use agents::codec::{self, RequestParts};
use agents::{Filter, Invalid};

use crate::common::Fleet;

fn discovery_request(filter: &Filter, reply_to: &str) -> Vec<u8> {
    codec::encode_request(&RequestParts {
        requestid: &"h".repeat(32),
        senderid: "attacker",
        callerid: "choria=attacker",
        collective: "mcollective",
        agent: "discovery",
        ttl: 60,
        time: agents::clock::unix_now(),
        filter,
        message: "cGluZw==",
        reply_to,
    })
}

/// Waits until the fleet has received `n` messages.
async fn wait_received(fleet: &Fleet, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while fleet.vars()["emulator"]["requests"]["received"]
        .as_u64()
        .unwrap()
        < n
    {
        assert!(
            Instant::now() < deadline,
            "the fleet did not receive {n} messages"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn counted_once(vars: &serde_json::Value) {
    let r = &vars["emulator"]["requests"];
    let (received, valid, invalid) = (
        r["received"].as_u64().unwrap(),
        r["valid"].as_u64().unwrap(),
        r["invalid"].as_u64().unwrap(),
    );
    assert_eq!(
        valid + invalid,
        received,
        "each request counted exactly once: {r}"
    );
    let outcomes = ["expired", "filtered", "passed"].map(|k| r[k].as_u64().unwrap());
    assert_eq!(
        outcomes.iter().sum::<u64>(),
        valid,
        "valid = expired + filtered + passed: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_subject_longer_than_the_control_line_disconnects_nobody() {
    let instances = 40;
    let mut fleet = Fleet::start("longreply", instances, &[]).await;
    let client = fleet.client().await;
    // One valid discovery request whose reply-to is "x." + 5,000 "x": answering it would make
    // every instance send a PUB line past nats-server's 4,096-byte limit.
    let reply_to = format!("x.{}", "x".repeat(5000));
    let body = discovery_request(&Filter::default(), &reply_to);
    let nats = client.nats().clone();
    nats.publish("mcollective.broadcast.agent.discovery", body.into())
        .await
        .unwrap();
    nats.flush().await.unwrap();
    wait_received(&fleet, u64::from(instances)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let vars = fleet.vars();
    let e = &vars["emulator"];
    assert_eq!(
        e["requests"]["invalid_by_reason"][Invalid::BadReplySubject.as_str()],
        u64::from(instances),
        "{vars}"
    );
    assert_eq!(e["replies"]["sent"], 0);
    assert_eq!(e["replies"]["publish_errors"], 0);
    assert_eq!(e["instances"]["disconnects"], 0, "{vars}");
    assert_eq!(e["instances"]["connected"], u64::from(instances));
    counted_once(&vars);
    assert_eq!(
        fleet.nats.monitor("/varz").await["connections"].as_u64(),
        Some(u64::from(instances) + 1),
        "the broker still holds every instance and the client"
    );
    let found = client
        .discover(
            Filter::default(),
            Duration::from_secs(2),
            Some(instances as usize),
        )
        .await
        .unwrap();
    assert_eq!(
        found.len(),
        instances as usize,
        "every instance still answers"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pathological_filter_regex_is_compiled_once_and_vars_stay_responsive() {
    let instances = 60;
    let requests = 50u32;
    let mut fleet = Fleet::start("regex", instances, &[]).await;
    let client = fleet.client().await;
    let hostile = Filter {
        identity: vec![r"/(\w{100}){100}/".to_owned()],
        ..Filter::default()
    };
    let before = agents::regex_compiles();
    let nats = client.nats().clone();
    let reply = format!("attack.{}", std::process::id());
    let body = discovery_request(&hostile, &reply);
    for _ in 0..requests {
        nats.publish("mcollective.broadcast.agent.discovery", body.clone().into())
            .await
            .unwrap();
    }
    nats.flush().await.unwrap();
    // /debug/vars answers promptly while the fleet works through the attack.
    let addr = fleet.running.as_ref().unwrap().http_addr();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let asked = Instant::now();
        let status = http
            .get(format!("http://{addr}/debug/vars"))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success());
        slowest = slowest.max(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        slowest < Duration::from_secs(1),
        "/debug/vars took {slowest:?}"
    );
    wait_received(&fleet, u64::from(instances * requests)).await;
    assert_eq!(
        agents::regex_compiles() - before,
        1,
        "the hostile pattern is compiled once per process, not per instance or request"
    );
    let vars = fleet.vars();
    assert_eq!(
        vars["emulator"]["requests"]["invalid_by_reason"][Invalid::UnsupportedFilter.as_str()],
        u64::from(instances * requests),
        "{vars}"
    );
    counted_once(&vars);
    let found = client
        .discover(
            Filter::default(),
            Duration::from_secs(2),
            Some(instances as usize),
        )
        .await
        .unwrap();
    assert_eq!(
        found.len(),
        instances as usize,
        "a discovery right after is answered by all"
    );
    fleet.stop().await;
}
