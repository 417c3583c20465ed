//! End to end on one machine: a management nats-server, three real `loadlab-node` daemons, NATS
//! and two emulator fleets started through the `emulator` agent, measured, then stopped.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::Duration;

use agents::client::{Call, Client, ClientOptions, ReplyOutcome, Targets};
use agents::{FactFilter, Filter, RpcReply, StatusCode};
use serde_json::{Value, json};
use testkit::{ChildGuard, NatsServer, port_for_child, workspace_binary};

static NODE: LazyLock<PathBuf> = LazyLock::new(|| workspace_binary("loadlab-node"));
static EMULATOR: LazyLock<PathBuf> = LazyLock::new(|| workspace_binary("emulator"));

fn node(url: &str, identity: &str, role: &str, workdir: &std::path::Path) -> ChildGuard {
    ChildGuard(
        Command::new(&*NODE)
            .args([
                "--server",
                url,
                "--identity",
                identity,
                "--fact",
                &format!("role={role}"),
                "--emulator",
                EMULATOR.to_str().expect("UTF-8 path"),
            ])
            .arg("--workdir")
            .arg(workdir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn rpc(client: &Client, identity: &str, action: &str, data: Value) -> RpcReply {
    let call = Call::rpc(
        "emulator",
        action,
        data.as_object().cloned().unwrap_or_default(),
        Targets::Direct(vec![identity.into()]),
        Duration::from_secs(70),
    );
    let collected = client
        .call(&Call {
            expected: Some(1),
            ..call
        })
        .await
        .unwrap();
    assert_eq!(collected.replies.len(), 1, "{identity} answers {action}");
    match &collected.replies[0].outcome {
        ReplyOutcome::Ok(r) => serde_json::from_str(&r.body).unwrap(),
        other => panic!("{other:?}"),
    }
}

/// Discovers until `n` nodes answer: daemons subscribe a moment after they start.
async fn discover_all(client: &Client, n: usize) -> Vec<String> {
    for _ in 0..20 {
        let found = client
            .discover(Filter::default(), Duration::from_millis(500), Some(n))
            .await
            .unwrap();
        if found.len() == n {
            return found;
        }
    }
    panic!("{n} node daemons did not all answer discovery");
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_daemons_start_measure_and_stop_a_test_network() {
    let mgmt = NatsServer::start();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let _a = node(&mgmt.url(), "host-a", "nats", dirs[0].path());
    let _b = node(&mgmt.url(), "host-b", "emulator", dirs[1].path());
    let _c = node(&mgmt.url(), "host-c", "emulator", dirs[2].path());
    let client = Client::connect(&[mgmt.url()], ClientOptions::default())
        .await
        .unwrap();
    discover_all(&client, 3).await;
    let emulators = Filter {
        fact: vec![FactFilter {
            fact: "role".into(),
            operator: "==".into(),
            value: "emulator".into(),
        }],
        agent: vec!["emulator".into()],
        ..Filter::default()
    };
    let hosts: BTreeSet<String> = client
        .discover(emulators, Duration::from_secs(1), None)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        hosts,
        BTreeSet::from(["host-b".to_owned(), "host-c".to_owned()])
    );

    // NATS on host-a, honouring its port (the original ignored it).
    let (port, monitor) = (port_for_child(), port_for_child());
    let r = rpc(
        &client,
        "host-a",
        "start_nats",
        json!({"port": port, "monitor_port": monitor}),
    )
    .await;
    assert_eq!(r.statuscode, StatusCode::Ok, "{r:?}");
    let nats_pid = r.data["pid"].as_u64().unwrap();
    let again = rpc(
        &client,
        "host-a",
        "start_nats",
        json!({"port": port, "monitor_port": monitor}),
    )
    .await;
    assert_eq!(again.statuscode, StatusCode::Aborted);
    assert!(again.statusmsg.contains("already running"));

    // Emulators on host-b and host-c against it.
    let servers = format!("127.0.0.1:{port}");
    let mut monitors = Vec::new();
    for (host, name) in [("host-b", "b"), ("host-c", "c")] {
        let m = port_for_child();
        let r = rpc(
            &client,
            host,
            "start",
            json!({"name": name, "instances": 150, "servers": servers, "monitor": m}),
        )
        .await;
        assert_eq!(r.statuscode, StatusCode::Ok, "{host}: {r:?}");
        monitors.push((host, m, r.data["pid"].as_u64().unwrap()));
    }
    let already = rpc(
        &client,
        "host-b",
        "start",
        json!({"instances": 1, "servers": servers, "monitor": monitors[0].1}),
    )
    .await;
    assert_eq!(already.statuscode, StatusCode::Aborted);
    assert!(already.statusmsg.contains("already running"), "{already:?}");
    let injection = rpc(
        &client,
        "host-b",
        "start",
        json!({"instances": 1, "servers": "127.0.0.1:1;touch /tmp/pwned", "monitor": 9}),
    )
    .await;
    assert_eq!(injection.statuscode, StatusCode::InvalidData);

    // The test network: discovery finds all 300, a measured round gets every reply.
    crate::common::assert_full_round(&format!("nats://{servers}"), 300).await;

    let status = rpc(&client, "host-b", "status", json!({"port": monitors[0].1})).await;
    assert_eq!(status.data["running"], true);
    assert_eq!(status.data["connected"], 150);
    assert_eq!(status.data["name"], "b");
    assert!(status.data["memory"].as_u64().unwrap() > 0);

    // An emulator that dies is reported as dead.
    natsproc::send_signal(monitors[1].2 as i32, natsproc::process::Signal::KILL);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dead = rpc(&client, "host-c", "status", json!({"port": monitors[1].1})).await;
    assert_eq!(dead.data["running"], false);
    assert!(
        dead.data["message"].as_str().unwrap().contains("died"),
        "{dead:?}"
    );

    // Stop everything and check nothing is left.
    let stopped = rpc(&client, "host-b", "stop", json!({"port": monitors[0].1})).await;
    assert_eq!(stopped.statuscode, StatusCode::Ok, "{stopped:?}");
    let nats_stopped = rpc(&client, "host-a", "stop_nats", json!({})).await;
    assert_eq!(nats_stopped.data["stopped"], true);
    for (_, _, pid) in &monitors {
        assert!(!alive(*pid), "emulator {pid} is gone");
    }
    assert!(!alive(nats_pid), "nats-server {nats_pid} is gone");
    let monitor_gone = reqwest::get(format!("http://127.0.0.1:{monitor}/connz")).await;
    assert!(monitor_gone.is_err(), "the test broker no longer answers");
    // Only the three daemons and our client remain on the management broker.
    assert_eq!(mgmt.connections().await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_are_checked_and_a_bad_checksum_leaves_nothing() {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let app = axum::Router::new().route("/bin", get(|| async { "#!/bin/sh\necho hi\n" }));
        axum::serve(listener, app).await.unwrap();
    });
    let mgmt = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let _d = node(&mgmt.url(), "dl", "emulator", dir.path());
    let client = Client::connect(&[mgmt.url()], ClientOptions::default())
        .await
        .unwrap();
    discover_all(&client, 1).await;
    let url = format!("http://{addr}/bin");
    let sha = {
        use sha2::Digest as _;
        sha2::Sha256::digest(b"#!/bin/sh\necho hi\n")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let wrong = rpc(
        &client,
        "dl",
        "download",
        json!({"url": url, "target": "tool", "sha256": "0".repeat(64)}),
    )
    .await;
    assert_eq!(wrong.statuscode, StatusCode::Aborted);
    assert!(wrong.statusmsg.contains("checksum mismatch"));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
    let right = rpc(
        &client,
        "dl",
        "download",
        json!({"url": url, "target": "tool", "sha256": sha}),
    )
    .await;
    assert_eq!(right.statuscode, StatusCode::Ok, "{right:?}");
    assert_eq!(right.data["size"], 18);
    assert!(dir.path().join("tool").is_file());
    let unchecked = rpc(
        &client,
        "dl",
        "download",
        json!({"url": url, "target": "tool2", "sha256": ""}),
    )
    .await;
    assert_eq!(
        unchecked.statuscode,
        StatusCode::Ok,
        "an empty checksum means no check"
    );
    let traversal = rpc(
        &client,
        "dl",
        "download",
        json!({"url": url, "target": "../escape"}),
    )
    .await;
    assert_eq!(traversal.statuscode, StatusCode::InvalidData);
    let unknown = rpc(&client, "dl", "reboot", json!({})).await;
    assert_eq!(unknown.statuscode, StatusCode::UnknownAction);
}
