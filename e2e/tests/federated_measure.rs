//! `emulator measure` through federation: one nats-server for the federation network, one per
//! collective, a federation broker per network (the library, in this process) and emulated
//! fleets; measure (the binary) only knows the federation network.

use std::collections::BTreeMap;
use std::time::Duration;

use testkit::NatsServer;

use crate::common::Fleet;
use crate::measure::{assert_summary_closes, emulator_command, measure_with_env, text};

/// A federation broker of `cluster` between `fed` and the fleet's nats-server.
async fn broker(cluster: &str, fed: &NatsServer, fleet: &Fleet) -> federation::Broker {
    let mut config = federation::Config::new(cluster, &[fed.url()], &[fleet.nats.url()]);
    config.workers = 2;
    federation::start(config).await.expect("broker starts")
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Asserts what every passing federated run shows: per network, every node discovered and
/// every expected reply answered; the per-network sums add up to the totals.
fn assert_by_network(summary: &serde_json::Value, rounds: u64) {
    assert_summary_closes(summary);
    assert_eq!(summary["accounting_closes"], true, "{summary}");
    assert_eq!(summary["discovered"], 200);
    assert_eq!(summary["expected"], 200 * rounds);
    assert_eq!(summary["answered"], 200 * rounds);
    assert_eq!(summary["messages"], 200 * rounds);
    let nets = summary["networks"].as_object().expect("networks");
    assert_eq!(
        nets.keys().collect::<Vec<_>>(),
        ["net1", "net2"],
        "{summary}"
    );
    for (name, n) in nets {
        assert_eq!(n["discovered"], 100, "{name}: {n}");
        assert_eq!(n["expected"], 100 * rounds, "{name}: {n}");
        assert_eq!(n["answered"], 100 * rounds, "{name}: {n}");
        assert_eq!(n["ok"], 100 * rounds, "{name}: {n}");
        assert_eq!(n["messages"], 100 * rounds, "{name}: {n}");
        assert_eq!(n["missing"], 0, "{name}: {n}");
        assert_eq!(n["unexpected"], 0, "{name}: {n}");
        assert_eq!(n["silent"], false, "{name}: {n}");
    }
}

/// Rows of networks.csv as (request, network) → (expected, answered, messages, missing).
fn network_rows(dir: &std::path::Path) -> BTreeMap<(u64, String), [u64; 4]> {
    let csv = std::fs::read_to_string(dir.join("networks.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let n = |name: &str| f[col(name)].parse::<u64>().unwrap();
            (
                (n("request"), f[col("network")].to_owned()),
                [n("expected"), n("answered"), n("messages"), n("missing")],
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_through_federation_accounts_every_reply_by_network_flag_env_and_config_file() {
    let fed = NatsServer::start();
    let (mut net1, mut net2) = tokio::join!(Fleet::start("net1", 100), Fleet::start("net2", 100));
    let b1 = broker("net1", &fed, &net1).await;
    let b2 = broker("net2", &fed, &net2).await;
    let dir = tempfile::tempdir().unwrap();

    // 1. --federation, broadcast.
    let out = dir.path().join("flag");
    let o = measure_with_env(
        vec![
            "--server".into(),
            fed.url(),
            "--federation".into(),
            "net1,net2".into(),
            "--rounds".into(),
            "3".into(),
            "--discovery-timeout".into(),
            "1".into(),
            "-q".into(),
            "--out".into(),
            out.display().to_string(),
        ],
        Vec::new(),
    )
    .await;
    let stdout = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{}", text(&o.stderr));
    assert_by_network(&read_json(&out.join("summary.json")), 3);
    for net in ["net1", "net2"] {
        assert!(
            stdout.contains(&format!(
                "  network {net}           100 discovered; expected 300 = 300 answered (300 ok, 0 failed) + 0 missing; 300 messages\n"
            )),
            "{stdout}"
        );
    }
    assert!(stdout.contains("accounting closes: expected 600 = 600 answered + 0 missing"));
    let rows = network_rows(&out);
    assert_eq!(rows.len(), 6, "one row per request and network");
    for ((_, net), counts) in &rows {
        assert_eq!(*counts, [100, 100, 100, 0], "{net}");
    }
    // Everything went through the brokers: discovery and 3 requests, one message each.
    for b in [&b1, &b2] {
        let c = b.counters();
        assert_eq!((c.received, c.replies), (4, 400), "{c:?}");
    }

    // 2. CHORIA_FED_COLLECTIVE, direct mode: one message per network, 100 targets each.
    let out = dir.path().join("env");
    let o = measure_with_env(
        vec![
            "--server".into(),
            fed.url(),
            "--mode".into(),
            "direct".into(),
            "--rounds".into(),
            "2".into(),
            "--discovery-timeout".into(),
            "1".into(),
            "-q".into(),
            "--out".into(),
            out.display().to_string(),
        ],
        vec![("CHORIA_FED_COLLECTIVE", "net1,net2".to_owned())],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let summary = read_json(&out.join("summary.json"));
    assert_by_network(&summary, 2);
    assert_eq!(summary["mode"], "direct");
    for b in [&b1, &b2] {
        let c = b.counters();
        assert_eq!(c.received, 4 + 3, "{c:?}");
        assert_eq!(c.forwarded, 4 + 1 + 2 * 100, "one copy per node: {c:?}");
    }

    // 3. The config file: the federation network's servers and the collectives, as a Choria
    // client reads them (the collective's own servers are not used).
    let conf = dir.path().join("client.conf");
    std::fs::write(
        &conf,
        format!(
            "plugin.choria.middleware_hosts = {}\nplugin.choria.federation_middleware_hosts = {}\nplugin.choria.federation.collectives = net1, net2\n",
            net1.nats.url(),
            fed.url()
        ),
    )
    .unwrap();
    let out = dir.path().join("file");
    let o = measure_with_env(
        vec![
            "-c".into(),
            conf.display().to_string(),
            "--rounds".into(),
            "2".into(),
            "--discovery-timeout".into(),
            "1".into(),
            "--json".into(),
            "--out".into(),
            out.display().to_string(),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_by_network(&printed, 2);
    assert_eq!(printed, read_json(&out.join("summary.json")));
    for b in [&b1, &b2] {
        assert_eq!(b.counters().received, 7 + 3);
    }

    // 4. --discovery-only counts per network.
    let o = measure_with_env(
        vec![
            "--server".into(),
            fed.url(),
            "--federation".into(),
            "net1,net2".into(),
            "--discovery-only".into(),
            "--discovery-timeout".into(),
            "1".into(),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "discovered 200 nodes (net1 100, net2 100)\n"
    );

    assert!(b1.stop(Duration::from_secs(5)).await);
    assert!(b2.stop(Duration::from_secs(5)).await);
    net1.stop().await;
    net2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_whose_broker_is_down_shows_its_nodes_missing_and_does_not_close() {
    let fed = NatsServer::start();
    let (mut net1, mut net2) = tokio::join!(Fleet::start("net1", 100), Fleet::start("net2", 100));
    let b1 = broker("net1", &fed, &net1).await;
    let b2 = broker("net2", &fed, &net2).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");

    // Discovery waits its whole timeout; net2's broker goes down once it passed on the 100
    // discovery replies, so every request after discovery finds it gone.
    let mut cmd = emulator_command();
    cmd.arg("measure").args([
        "--server",
        &fed.url(),
        "--federation",
        "net1,net2",
        "--rounds",
        "2",
        "--timeout",
        "2",
        "--discovery-timeout",
        "6",
        "-q",
        "--out",
        &out.display().to_string(),
    ]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let run = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while b2.counters().replies < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "discovery never went through net2: {:?}",
            b2.counters()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(b2.stop(Duration::from_secs(3)).await);
    let o = run.await.unwrap();
    let stdout = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{}", text(&o.stderr));

    let summary = read_json(&out.join("summary.json"));
    assert_summary_closes(&summary);
    assert_eq!(summary["accounting_closes"], false, "{summary}");
    assert_eq!(summary["discovered"], 200);
    assert_eq!(
        (summary["expected"].as_u64(), summary["answered"].as_u64()),
        (Some(400), Some(200))
    );
    let n1 = &summary["networks"]["net1"];
    assert_eq!(
        (n1["answered"].as_u64(), n1["missing"].as_u64()),
        (Some(200), Some(0))
    );
    assert_eq!(n1["silent"], false);
    let n2 = &summary["networks"]["net2"];
    assert_eq!(n2["discovered"], 100, "{n2}");
    assert_eq!(
        (
            n2["answered"].as_u64(),
            n2["missing"].as_u64(),
            n2["messages"].as_u64()
        ),
        (Some(0), Some(200), Some(0)),
        "{n2}"
    );
    assert_eq!(n2["silent"], true);
    let missing = n2["missing_identities"].as_object().unwrap();
    assert_eq!(missing.len(), 100, "every node of net2 by identity");
    for i in 0..100 {
        assert_eq!(
            missing[&format!("net2-{i}")],
            2,
            "net2-{i} missed both requests"
        );
    }
    assert!(
        stdout.contains("accounting DOES NOT CLOSE (nothing came back through federation network net2 (is its federation broker running?): replies may have gone unseen): expected 400 = 200 answered + 200 missing"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  network net2           100 discovered; expected 200 = 0 answered (0 ok, 0 failed) + 200 missing; 0 messages; SILENT: nothing came back; missing net2-0, net2-1,"),
        "{stdout}"
    );
    let rows = network_rows(&out);
    for request in [1, 2] {
        assert_eq!(rows[&(request, "net1".to_owned())], [100, 100, 100, 0]);
        assert_eq!(rows[&(request, "net2".to_owned())], [100, 0, 0, 100]);
    }

    assert!(b1.stop(Duration::from_secs(5)).await);
    net1.stop().await;
    net2.stop().await;
}
