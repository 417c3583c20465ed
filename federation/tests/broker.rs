//! The federation broker against real nats-servers (one federation network, one per
//! collective) and in-process emulated fleets.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use agents::protocol::Filter;
use agents::{RpcReply, StatusCode, subject};
use common::{Client, Collective, Request, broker, decode, eventually};
use federation::{Direction, Reject};
use testkit::{ChildGuard, NatsServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_discovery_is_answered_by_both_collectives_with_seen_by() {
    let fed = NatsServer::start();
    let (mut net1, mut net2) = tokio::join!(
        Collective::start("net1", 500),
        Collective::start("net2", 500)
    );
    let b1 = broker("net1", &fed, &net1.nats, 4).await;
    let b2 = broker("net2", &fed, &net2.nats, 4).await;
    let client = Client::connect(&fed).await;
    let mut request = Request::discovery();
    request.first_hop = Some(fed.url());

    let got = client
        .call(&request, &["net1", "net2"], 1000, Duration::from_secs(30))
        .await;
    assert_eq!(
        got.len(),
        1000,
        "one reply from each of the 1,000 instances"
    );

    let mut senders = BTreeSet::new();
    for msg in &got {
        let r = decode(msg);
        assert_eq!(r.reply.body, "pong");
        assert_eq!(r.reply.requestid, request.requestid);
        assert!(!r.federated, "the broker strips the federation header");
        let (net, broker_name) = if r.reply.sender.starts_with("net1-") {
            (&net1, "federation-broker-net1 (4)")
        } else {
            (&net2, "federation-broker-net2 (4)")
        };
        let coll = net.nats.url();
        let hop = |a: &str, b: &str, c: &str| [a.to_owned(), b.to_owned(), c.to_owned()];
        assert_eq!(
            r.seen_by,
            vec![
                hop("", common::SENDER, &fed.url()),
                hop(&fed.url(), broker_name, &coll),
                hop(&coll, &r.reply.sender, &coll),
                hop(&coll, broker_name, &fed.url()),
            ],
            "seen-by of {}",
            r.reply.sender
        );
        assert!(senders.insert(r.reply.sender), "duplicate reply");
    }
    let expected: BTreeSet<String> = net1
        .identities()
        .union(&net2.identities())
        .cloned()
        .collect();
    assert_eq!(senders, expected);

    for (b, net) in [(&b1, &net1), (&b2, &net2)] {
        let c = b.counters();
        assert_eq!(c.received, 1);
        assert_eq!(c.forwarded, 1, "one target, one copy");
        assert_eq!(c.replies_received, 500);
        assert_eq!(c.replies, 500);
        assert_eq!(c.rejected_total(), 0);
        let vars = net.vars();
        assert_eq!(vars.emulator.requests.passed, 500);
        assert_eq!(vars.emulator.replies.sent, 500);
    }
    assert!(b1.stop(Duration::from_secs(5)).await);
    assert!(b2.stop(Duration::from_secs(5)).await);
    net1.stop().await;
    net2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_rpc_and_a_direct_rpc_go_through_federation() {
    let fed = NatsServer::start();
    let mut net = Collective::start("rpc", 300).await;
    let b = broker("rpc", &fed, &net.nats, 2).await;
    let client = Client::connect(&fed).await;

    // Broadcast with an identity filter: only rpc-10 .. rpc-19 answer.
    let filter = Filter {
        identity: vec!["/^rpc-1[0-9]$/".into()],
        agent: vec!["rpcutil".into()],
        ..Filter::default()
    };
    let request = Request::rpc("rpcutil", "ping", filter);
    let got = client
        .call(&request, &["rpc"], 10, Duration::from_secs(10))
        .await;
    let mut senders = BTreeSet::new();
    for msg in &got {
        let r = decode(msg);
        let body: RpcReply = serde_json::from_str(&r.reply.body).expect("an RPC reply");
        assert_eq!(body.statuscode, StatusCode::Ok);
        assert!(body.data["pong"].as_i64().is_some());
        assert_eq!(r.reply.agent, "rpcutil");
        senders.insert(r.reply.sender);
    }
    let expected: BTreeSet<String> = (10..20).map(|i| format!("rpc-{i}")).collect();
    assert_eq!(senders, expected);
    assert_eq!(got.len(), 10, "no duplicates, no other node");

    // Direct to 250 nodes: two messages of at most 200 targets, as Choria clients group them.
    let nodes: Vec<String> = (0..250).map(|i| format!("rpc-{i}")).collect();
    let mut request = Request::rpc("rpcutil", "ping", Filter::default());
    let mut sub = client
        .nats
        .subscribe(request.reply_to.clone())
        .await
        .unwrap();
    client.nats.flush().await.unwrap();
    for group in nodes.chunks(federation::transform::MAX_TARGETS) {
        request.targets = group
            .iter()
            .map(|n| subject::node("mcollective", n))
            .collect();
        client
            .nats
            .publish("choria.federation.rpc.federation", request.body().into())
            .await
            .unwrap();
    }
    let got = common::collect(&mut sub, 250, Duration::from_secs(10)).await;
    let senders: BTreeSet<String> = got.iter().map(|m| decode(m).reply.sender).collect();
    assert_eq!(senders, nodes.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(got.len(), 250);
    let c = b.counters();
    assert_eq!(c.received, 3);
    assert_eq!(c.forwarded, 1 + 250);
    assert_eq!(c.replies, 10 + 250);
    b.stop(Duration::from_secs(5)).await;
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_envelopes_are_rejected_and_counted_and_the_broker_keeps_serving() {
    let fed = NatsServer::start();
    let mut net = Collective::start("bad", 20).await;
    let mut config = federation::Config::new("bad", &[fed.url()], &[net.nats.url()]);
    config.workers = 1;
    config.max_message = 64 * 1024;
    let b = federation::start(config).await.unwrap();
    let client = Client::connect(&fed).await;

    let valid = Request::discovery();
    let mut no_federation: serde_json::Value = serde_json::from_slice(&valid.body()).unwrap();
    no_federation["headers"]
        .as_object_mut()
        .unwrap()
        .remove("federation");
    let mut short_req = no_federation.clone();
    short_req["headers"]["federation"] = serde_json::json!({"req": "abc", "target": ["a.b"]});
    let mut no_reply_to: serde_json::Value = serde_json::from_slice(&valid.body()).unwrap();
    no_reply_to["headers"]
        .as_object_mut()
        .unwrap()
        .remove("reply-to");
    let mut wrong_protocol: serde_json::Value = serde_json::from_slice(&valid.body()).unwrap();
    wrong_protocol["protocol"] = "choria:transport:9".into();
    let mut too_many = Request::discovery();
    too_many.targets = (0..201).map(|i| format!("mcollective.node.x{i}")).collect();
    let garbage: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        vec![0xff, 0x00, 0x7b],
        serde_json::to_vec(&no_federation).unwrap(),
        serde_json::to_vec(&short_req).unwrap(),
        serde_json::to_vec(&no_reply_to).unwrap(),
        serde_json::to_vec(&wrong_protocol).unwrap(),
        too_many.body(),
        vec![b' '; 65 * 1024],
    ];
    for g in garbage {
        client
            .nats
            .publish("choria.federation.bad.federation", g.into())
            .await
            .unwrap();
    }
    // A reply without a federation header, straight onto the collective reply subject.
    let coll = async_nats::connect(net.nats.url()).await.unwrap();
    coll.publish("choria.federation.bad.collective", "{}".into())
        .await
        .unwrap();
    coll.flush().await.unwrap();

    let got = client
        .call(&valid, &["bad"], 20, Duration::from_secs(10))
        .await;
    assert_eq!(got.len(), 20, "the broker still serves after the garbage");

    let expected = [
        (Direction::Request, Reject::NotJson, 2),
        (Direction::Request, Reject::NotFederated, 1),
        (Direction::Request, Reject::BadRequestId, 1),
        (Direction::Request, Reject::NoReplyTo, 1),
        (Direction::Request, Reject::WrongProtocol, 1),
        (Direction::Request, Reject::TooManyTargets, 1),
        (Direction::Request, Reject::Oversized, 1),
        (Direction::Reply, Reject::MissingField, 1),
    ];
    assert!(
        eventually(Duration::from_secs(5), || b.counters().rejected_total()
            == 9)
        .await,
        "{:?}",
        b.counters().rejected
    );
    let c = b.counters();
    for (direction, reason, n) in expected {
        assert_eq!(c.rejected(direction, reason), n, "{direction:?} {reason:?}");
    }
    assert_eq!(c.received, 9);
    assert_eq!(c.replies, 20);

    // The same counters over HTTP.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let vars: federation::DebugVars = http
        .get(format!("http://{}/debug/vars", b.http_addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(vars.federation.rejected["request"]["not_json"], 2);
    assert_eq!(vars.config.cluster, "bad");
    let metrics = http
        .get(format!("http://{}/metrics", b.http_addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "federation_broker_received_total{cluster=\"bad\"} 9\n",
        "federation_broker_replies_total{cluster=\"bad\"} 20\n",
        "federation_broker_rejected_total{cluster=\"bad\",direction=\"request\",reason=\"too_many_targets\"} 1\n",
        "federation_broker_rejected_total{cluster=\"bad\",direction=\"reply\",reason=\"missing_field\"} 1\n",
        "federation_broker_queue_depth{cluster=\"bad\",stage=\"request_transform\"} 0\n",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    b.stop(Duration::from_secs(5)).await;
    net.stop().await;
}

/// Connections of the broker `identity` of `cluster` on `nats`.
async fn broker_connections(nats: &NatsServer, cluster: &str, identity: &str) -> usize {
    let prefix = format!("federation-broker {cluster} {identity} ");
    nats.connections()
        .await
        .iter()
        .filter(|c| c.name.starts_with(&prefix))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_share_a_cluster_and_the_run_completes_when_one_is_killed() {
    let fed = NatsServer::start();
    let mut net = Collective::start("ha", 100).await;
    let a = {
        let mut config = federation::Config::new("ha", &[fed.url()], &[net.nats.url()]);
        config.workers = 2;
        config.identity = "a".into();
        federation::start(config).await.unwrap()
    };
    // The other broker is the real binary, configured by a Choria config file.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("choria.cfg");
    std::fs::write(
        &cfg,
        format!(
            "identity = b\nloglevel = info\nplugin.choria.broker_federation = true\n\
             plugin.choria.federation_middleware_hosts = {}\n\
             plugin.choria.middleware_hosts = {}\n\
             plugin.choria.broker_federation_cluster = ha\n",
            fed.url().trim_start_matches("nats://"),
            net.nats.url().trim_start_matches("nats://"),
        ),
    )
    .unwrap();
    let port = testkit::port_for_child();
    let pid_file = dir.path().join("broker.pid");
    let mut b = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_federation-broker"))
            .arg("--config")
            .arg(&cfg)
            .args(["--workers", "2", "--http", &format!("127.0.0.1:{port}")])
            .arg("--pid")
            .arg(&pid_file)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start federation-broker"),
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let b_vars = || async {
        http.get(format!("http://127.0.0.1:{port}/debug/vars"))
            .send()
            .await
            .ok()?
            .json::<federation::DebugVars>()
            .await
            .ok()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while b_vars().await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "broker b never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        b.0.id().to_string()
    );
    assert_eq!(broker_connections(&fed, "ha", "b").await, 2);
    assert_eq!(broker_connections(&net.nats, "ha", "b").await, 2);

    let client = Client::connect(&fed).await;
    let expected = net.identities();
    let round = |i: usize| {
        let client = &client;
        let expected = &expected;
        async move {
            let request = Request::discovery();
            let got = client
                .call(&request, &["ha"], 100, Duration::from_secs(10))
                .await;
            let senders: BTreeSet<String> = got.iter().map(|m| decode(m).reply.sender).collect();
            assert_eq!(got.len(), 100, "round {i}: one reply per instance");
            assert_eq!(&senders, expected, "round {i}");
        }
    };
    for i in 0..20 {
        round(i).await;
    }
    let before_kill = b_vars().await.expect("b serves").federation;
    let a_before = a.counters();
    assert_eq!(a_before.received + before_kill.received, 20);
    assert!(
        before_kill.received > 0 && a_before.received > 0,
        "both brokers took requests: a {} b {}",
        a_before.received,
        before_kill.received
    );
    assert!(before_kill.replies_received > 0);

    b.0.kill().unwrap();
    b.0.wait().unwrap();
    // The servers see the dead connections go (their sockets are closed by the kernel).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while broker_connections(&fed, "ha", "b").await + broker_connections(&net.nats, "ha", "b").await
        > 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b's connections linger"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 20..40 {
        round(i).await;
    }
    let after = a.counters();
    assert_eq!(
        after.received,
        a_before.received + 20,
        "a took every later request"
    );
    assert_eq!(after.replies, a_before.replies + 20 * 100);
    assert!(a.stop(Duration::from_secs(5)).await);
    net.stop().await;
}

#[test]
fn the_binary_refuses_a_config_that_does_not_enable_federation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("choria.cfg");
    std::fs::write(
        &cfg,
        "plugin.choria.broker_federation = false\nplugin.choria.middleware_hosts = x:1\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_federation-broker"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plugin.choria.broker_federation is \"false\""),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_federation-broker"))
        .args(["--federation-servers", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no collective servers"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_counts_every_forwarded_message() {
    let options = federation::bench::BenchOptions {
        messages: 3000,
        publishers: 2,
        workers: 2,
        window: 500,
    };
    let report = federation::bench::run(&options).await.expect("bench runs");
    assert_eq!(report.published, 3000);
    assert_eq!(report.forwarded, 3000);
    assert_eq!(report.counters.received, 3000);
    assert_eq!(report.counters.forwarded, 3000);
    assert!(report.rate() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_takes_a_burst_of_20000_requests_without_dropping_any() {
    // Published as fast as the client can, no flow control: the burst waits in the client
    // library's subscription buffer and the stage queues, and nothing is dropped.
    let options = federation::bench::BenchOptions {
        messages: 20_000,
        publishers: 1,
        workers: 1,
        window: u64::MAX / 2,
    };
    let report = federation::bench::run(&options).await.expect("bench runs");
    assert_eq!(
        report.counters.slow_consumers["federation"], 0,
        "{:?}",
        report.counters
    );
    assert_eq!(report.forwarded, 20_000, "{:?}", report.counters);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_from_flags_and_stops_cleanly_on_hup() {
    let fed = NatsServer::start();
    let mut net = Collective::start("hup", 10).await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("broker.pid");
    let log_file = dir.path().join("broker.log");
    let port = testkit::port_for_child();
    let mut child = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_federation-broker"))
            .args(["--cluster", "hup", "--workers", "1", "--identity", "h"])
            .args(["--federation-servers", &fed.url()])
            .args(["--collective-servers", &net.nats.url()])
            .args(["--http", &format!("127.0.0.1:{port}")])
            .arg("--pid")
            .arg(&pid_file)
            .arg("--logfile")
            .arg(&log_file)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start federation-broker"),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while broker_connections(&fed, "hup", "h").await
        + broker_connections(&net.nats, "hup", "h").await
        < 2
        || !pid_file.exists()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "broker never connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Connected is not yet subscribed: wait for /debug/vars, which is served only once every
    // subscription is in place.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let vars = format!("http://127.0.0.1:{port}/debug/vars");
    while http.get(&vars).send().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "broker never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = Client::connect(&fed).await;
    let got = client
        .call(&Request::discovery(), &["hup"], 10, Duration::from_secs(10))
        .await;
    assert_eq!(got.len(), 10);

    let pid = i32::try_from(child.0.id()).unwrap();
    natsproc::process::send_signal(pid, natsproc::process::Signal::HUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "no exit after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(!pid_file.exists(), "pid file removed at exit");
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(log.contains("federation broker stopped"), "{log}");
    assert!(log.contains("replies=10"), "{log}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_reconnects_and_resubscribes_after_the_federation_server_restarts() {
    let mut fed = NatsServer::start();
    let port = fed.inner().client_port();
    let mut net = Collective::start("re", 10).await;
    let b = broker("re", &fed, &net.nats, 2).await;
    let client = Client::connect(&fed).await;
    let got = client
        .call(&Request::discovery(), &["re"], 10, Duration::from_secs(10))
        .await;
    assert_eq!(got.len(), 10);
    drop(client);

    tokio::task::spawn_blocking(move || fed.inner().stop())
        .await
        .unwrap();
    assert!(
        eventually(
            Duration::from_secs(10),
            || b.counters().connected["federation"] == 0
        )
        .await,
        "{:?}",
        b.counters().connected
    );
    let fed = tokio::task::spawn_blocking(move || {
        NatsServer::start_with(&testkit::LocalNatsOptions {
            port: Some(port),
            ..Default::default()
        })
    })
    .await
    .unwrap();
    assert!(
        eventually(
            Duration::from_secs(15),
            || b.counters().connected["federation"] == 2
        )
        .await,
        "{:?}",
        b.counters().connected
    );
    // Reconnected is not yet resubscribed: the subscriptions show on the new server.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let subs: u64 = fed
            .connections()
            .await
            .iter()
            .filter(|c| c.name.starts_with("federation-broker re "))
            .map(|c| c.subscriptions)
            .sum();
        if subs == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no resubscription: {subs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = Client::connect(&fed).await;
    let got = client
        .call(&Request::discovery(), &["re"], 10, Duration::from_secs(10))
        .await;
    assert_eq!(got.len(), 10, "served again after the restart");
    assert_eq!(b.counters().reconnects["federation"], 2);
    assert_eq!(b.counters().reconnects["collective"], 0);
    b.stop(Duration::from_secs(5)).await;
    net.stop().await;
}
