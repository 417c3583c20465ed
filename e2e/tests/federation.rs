//! The federation playbooks against real node daemons: `start-federation.yaml` (the repo's,
//! and the 2017 corpus file unchanged) starts one `federation-broker` per daemon between a
//! federation nats-server and that daemon's collective nats-server; a federated discovery on
//! the federation network is answered by both collectives; `federation_status` reports each
//! broker; `stop-federation.yaml` leaves no broker process.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::LazyLock;
use std::time::Duration;

use agents::client::{Call, Client, ClientOptions, ReplyOutcome, Targets};
use agents::codec::{self, RequestParts};
use agents::protocol::{Federation, Filter, Transport};
use agents::subject;
use futures::StreamExt as _;
use serde_json::Value;
use testkit::{ChildGuard, NatsServer, port_for_child, workspace_binary};

static NODE: LazyLock<PathBuf> = LazyLock::new(|| workspace_binary("loadlab-node"));
static BROKER: LazyLock<PathBuf> = LazyLock::new(|| workspace_binary("federation-broker"));

const CORPUS_START: &str = "../shared/corpus/choria-playbooks/complete/choria-legacy__choria-emulator__scripts__start-federation.yaml";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn playbook(home: &Path, file: PathBuf, args: Vec<String>) -> Output {
    let bin = workspace_binary("playbook");
    let home = home.to_owned();
    tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .arg("run")
            .arg(file)
            .args(args)
            .env("HOME", home)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn host_port(nats: &NatsServer) -> String {
    nats.url().trim_start_matches("nats://").to_owned()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// A node daemon on `mgmt` running brokers from this workspace with `/debug/vars` on `monitor`.
fn daemon(mgmt: &NatsServer, identity: &str, monitor: u16, workdir: &Path) -> ChildGuard {
    ChildGuard(
        Command::new(&*NODE)
            .args(["--server", &mgmt.url(), "--identity", identity])
            .arg("--federation-broker")
            .arg(&*BROKER)
            .args(["--federation-monitor", &monitor.to_string()])
            .arg("--workdir")
            .arg(workdir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The whole reply (`statuscode`, `statusmsg`, `data`) of one `emulator` action.
async fn rpc(mgmt: &NatsServer, identity: &str, action: &str, data: Value) -> Value {
    let client = Client::connect(&[mgmt.url()], ClientOptions::default())
        .await
        .unwrap();
    let call = Call {
        expected: Some(1),
        ..Call::rpc(
            "emulator",
            action,
            data.as_object().cloned().unwrap_or_default(),
            Targets::Direct(vec![identity.into()]),
            Duration::from_secs(30),
        )
    };
    let collected = client.call(&call).await.unwrap();
    assert_eq!(collected.replies.len(), 1, "{identity} answers {action}");
    match &collected.replies[0].outcome {
        ReplyOutcome::Ok(r) => serde_json::from_str(&r.body).unwrap(),
        other => panic!("{other:?}"),
    }
}

async fn federation_status(mgmt: &NatsServer, identity: &str) -> Value {
    let reply = rpc(mgmt, identity, "federation_status", Value::Null).await;
    assert_eq!(reply["statuscode"], 0, "{reply}");
    reply["data"].clone()
}

/// A federated discovery published once per cluster on the federation network; the senders
/// of the replies.
async fn federated_discovery(federation: &NatsServer, clusters: &[&str], n: usize) -> Vec<String> {
    let nats = async_nats::connect(federation.url()).await.unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let requestid = format!("{:032x}", nanos.as_nanos());
    let callerid = "choria=tester.mcollective";
    let reply_to = subject::reply("mcollective", callerid, &requestid);
    let plain = codec::encode_request(&RequestParts {
        requestid: &requestid,
        senderid: "test.client",
        callerid,
        collective: "mcollective",
        agent: "discovery",
        ttl: 60,
        time: nanos.as_secs() as i64,
        filter: &Filter::default(),
        message: "cGluZw==",
        reply_to: &reply_to,
    });
    let mut transport: Transport<'_> = serde_json::from_slice(&plain).unwrap();
    let target = subject::broadcast("mcollective", "discovery");
    transport.headers.federation = Some(Federation {
        req: Cow::Borrowed(&requestid),
        reply_to: None,
        target: vec![Cow::Borrowed(target.as_str())],
    });
    let body = serde_json::to_vec(&transport).unwrap();
    let mut sub = nats.subscribe(reply_to.clone()).await.unwrap();
    nats.flush().await.unwrap();
    for cluster in clusters {
        nats.publish(
            format!("choria.federation.{cluster}.federation"),
            body.clone().into(),
        )
        .await
        .unwrap();
    }
    nats.flush().await.unwrap();
    let mut senders = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while senders.len() < n {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(m)) => senders.push(codec::decode_reply(&m.payload).unwrap().sender),
            Ok(None) | Err(_) => break,
        }
    }
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
        senders.push(codec::decode_reply(&m.payload).unwrap().sender);
    }
    senders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_federation_playbooks_start_and_stop_brokers_on_node_daemons() {
    let _heavy = crate::node::HEAVY.lock().await;
    // Two management networks, so one unfiltered playbook run reaches one daemon each: the
    // 2017 playbooks give every node the same inputs.
    let (mgmt_a, mgmt_b) = (NatsServer::start(), NatsServer::start());
    let federation = NatsServer::start();
    let (coll_a, coll_b) = (NatsServer::start(), NatsServer::start());
    let _fleet_a = crate::common::start_emulator(&coll_a.url(), "fa", 20).await;
    let _fleet_b = crate::common::start_emulator(&coll_b.url(), "fb", 30).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mon_a, mon_b) = (port_for_child(), port_for_child());
    let _daemons = [
        daemon(&mgmt_a, "fed-a", mon_a, dir_a.path()),
        daemon(&mgmt_b, "fed-b", mon_b, dir_b.path()),
    ];
    mgmt_a.wait_connections(1, Duration::from_secs(10)).await;
    mgmt_b.wait_connections(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (home_a, home_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let fed = host_port(&federation);

    // Before: no broker, and status says so.
    let status = federation_status(&mgmt_a, "fed-a").await;
    assert_eq!(status["running"], false, "{status}");
    assert_eq!(status["message"], "not running", "{status}");

    // The repo's playbook on fed-a, the 2017 corpus file unchanged on fed-b.
    let args = |coll: &NatsServer, mgmt: &NatsServer| -> Vec<String> {
        vec![
            "--federation".into(),
            fed.clone(),
            "--collective".into(),
            host_port(coll),
            "--server".into(),
            mgmt.url(),
        ]
    };
    assert_ok(
        &playbook(
            home_a.path(),
            repo().join("playbooks/start-federation.yaml"),
            args(&coll_a, &mgmt_a),
        )
        .await,
        "start-federation.yaml",
    );
    assert_ok(
        &playbook(
            home_b.path(),
            repo().join(CORPUS_START),
            args(&coll_b, &mgmt_b),
        )
        .await,
        "the corpus start-federation.yaml",
    );
    // The repo's playbook saves each input under its own key (the corpus file swaps them).
    let saved = std::fs::read_to_string(home_a.path().join(".choria-emulator.yaml")).unwrap();
    let line = |key: &str| {
        saved
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("{key} not saved: {saved}"))
            .to_owned()
    };
    assert!(line("federation_federation_nats").contains(&fed), "{saved}");
    assert!(
        line("federation_collective_nats").contains(&host_port(&coll_a)),
        "{saved}"
    );

    // The config file has the 2017 agent's keys; the broker runs with it.
    let config = std::fs::read_to_string(dir_a.path().join("federation.cfg")).unwrap();
    for expected in [
        "identity = fed-a".to_owned(),
        "loglevel = info".to_owned(),
        "plugin.choria.broker_federation = true".to_owned(),
        format!("plugin.choria.federation_middleware_hosts = {fed}"),
        format!("plugin.choria.middleware_hosts = {}", host_port(&coll_a)),
        "plugin.choria.broker_federation_cluster = fed-a".to_owned(),
        format!(
            "logfile = {}",
            dir_a.path().join("federation.log").display()
        ),
    ] {
        assert!(
            config.lines().any(|l| l == expected),
            "{expected:?} in\n{config}"
        );
    }
    let mut pids = Vec::new();
    for (dir, id) in [(&dir_a, "fed-a"), (&dir_b, "fed-b")] {
        let pid: u32 = std::fs::read_to_string(dir.path().join("federation-broker.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(alive(pid), "{id}'s broker runs");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            cmdline.contains(&format!(
                "--config {}",
                dir.path().join("federation.cfg").display()
            )),
            "{cmdline}"
        );
        pids.push(pid);
    }

    // Status through the agent, from the broker's /debug/vars.
    let status = federation_status(&mgmt_b, "fed-b").await;
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["pid"], pids[1], "{status}");
    assert_eq!(status["cluster"], "fed-b", "{status}");
    assert_eq!(status["message"], "running", "{status}");
    assert_eq!(status["connected"], 20, "10 workers × 2 networks: {status}");
    assert_eq!(
        status["collective_servers"],
        format!("nats://{}", host_port(&coll_b)),
        "{status}"
    );

    // A federated discovery reaches both collectives through the two brokers.
    let senders = federated_discovery(&federation, &["fed-a", "fed-b"], 50).await;
    assert_eq!(senders.len(), 50, "{senders:?}");
    let unique: BTreeSet<&String> = senders.iter().collect();
    assert_eq!(unique.len(), 50, "no duplicates");
    assert_eq!(senders.iter().filter(|s| s.starts_with("fa-")).count(), 20);
    assert_eq!(senders.iter().filter(|s| s.starts_with("fb-")).count(), 30);
    let status = federation_status(&mgmt_a, "fed-a").await;
    assert_eq!(status["received"], 1, "{status}");
    assert_eq!(status["replies"], 20, "{status}");

    // A second start is refused while the broker runs, naming it.
    let again = playbook(
        home_a.path(),
        repo().join("playbooks/start-federation.yaml"),
        vec!["--server".into(), mgmt_a.url()],
    )
    .await;
    assert!(!again.status.success(), "a second start must fail");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        text.contains(&format!("already running (pid {}", pids[0])),
        "{text}"
    );

    // Stop: SIGHUP ends each broker; nothing is left.
    for mgmt in [&mgmt_a, &mgmt_b] {
        assert_ok(
            &playbook(
                home_a.path(),
                repo().join("playbooks/stop-federation.yaml"),
                vec!["--server".into(), mgmt.url()],
            )
            .await,
            "stop-federation.yaml",
        );
    }
    for pid in &pids {
        assert!(!alive(*pid), "broker {pid} is still running");
    }
    assert!(!dir_a.path().join("federation-broker.pid").exists());
    let status = federation_status(&mgmt_a, "fed-a").await;
    assert_eq!(status["running"], false, "{status}");
    // The federation network holds only the test's own connections now.
    let mut conns = federation.connections().await;
    for _ in 0..50 {
        if conns.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        conns = federation.connections().await;
    }
    assert!(conns.is_empty(), "{conns:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federation_start_that_cannot_run_says_why() {
    let mgmt = NatsServer::start();
    let collective = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    // An identity with dots cannot be a cluster name.
    let _daemon = daemon(&mgmt, "fed.example.net", port_for_child(), dir.path());
    mgmt.wait_connections(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = "fed.example.net";
    let coll = host_port(&collective);

    let reply = rpc(
        &mgmt,
        id,
        "start_federation",
        serde_json::json!({"federation_servers": coll}),
    )
    .await;
    assert_eq!(reply["statuscode"], 1, "{reply}");
    assert_eq!(reply["data"]["running"], false, "{reply}");
    let msg = reply["statusmsg"].as_str().unwrap();
    assert!(
        msg.contains("\"fed.example.net\" (the node identity) is not one subject token"),
        "{msg}"
    );

    let reply = rpc(
        &mgmt,
        id,
        "start_federation",
        serde_json::json!({"federation_servers": coll, "name": "net1", "tls": true}),
    )
    .await;
    assert_eq!(reply["statuscode"], 1, "{reply}");
    let msg = reply["statusmsg"].as_str().unwrap();
    assert!(
        msg.contains("the federation broker speaks plain NATS only"),
        "{msg}"
    );
    assert!(
        !dir.path().join("federation.cfg").exists(),
        "nothing written when refused"
    );

    // A federation server nobody listens on: the broker exits and the reply says why.
    let closed = port_for_child();
    let reply = rpc(
        &mgmt,
        id,
        "start_federation",
        serde_json::json!({"federation_servers": format!("127.0.0.1:{closed}"),
                           "collective_servers": coll, "name": "net1"}),
    )
    .await;
    assert_eq!(reply["statuscode"], 1, "{reply}");
    let msg = reply["statusmsg"].as_str().unwrap();
    assert!(
        msg.contains("it exited at start (exited with status 1)"),
        "{msg}"
    );
    assert!(msg.contains(&closed.to_string()), "names the server: {msg}");
    let status = federation_status(&mgmt, id).await;
    assert_eq!(status["running"], false, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("died (exited with status 1)"),
        "{status}"
    );
    // Nothing to stop: signalled nothing, and says so.
    let reply = rpc(&mgmt, id, "stop_federation", Value::Null).await;
    assert_eq!(reply["statuscode"], 0, "{reply}");
    assert_eq!(reply["data"]["stopped"], true, "{reply}");
    assert!(
        reply["data"]["message"]
            .as_str()
            .unwrap()
            .contains("signalled nothing"),
        "{reply}"
    );
}
