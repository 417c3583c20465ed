//! `mcollective` tasks and node sets against a real nats-server and in-process emulator fleets.

use std::time::Duration;

use testkit::NatsServer;

use crate::test::{Output, Test};

async fn fleet(url: &str, name: &str, instances: u32) -> emulator::Running {
    let config = emulator::Config::builder(name, instances)
        .server(url)
        .expect("valid server URL")
        .build()
        .expect("valid fleet");
    emulator::start_ready(config, Duration::from_secs(30))
        .await
        .expect("every instance connects within 30s")
}

/// Runs the binary off the async runtime so the fleet keeps answering.
async fn run(test: Test) -> Output {
    tokio::task::spawn_blocking(move || test.run())
        .await
        .expect("test thread")
}

const SETS: &str = "uses:\n  emulated0: '>= 1.0.0'\n  rpcutil: '~1.0'\nnodes:\n  shard3:\n    type: mcollective\n    agents: [emulated0]\n    facts: ['shard=3']\n    classes: [emulator]\n    test: true\n    uses: [emulated0, rpcutil]\n  low:\n    type: mcollective\n    compound: 'facts.index < 4 and facts.role == \"emulator\"'\n    at_least: 4\n  named:\n    type: mcollective\n    identities: ['/^alpha-1[0-9]$/']\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_with_filters_runs_batches_and_asserts() {
    let nats = NatsServer::start();
    let url = nats.url();
    let running = fleet(&url, "alpha", 20).await;
    let server = url.trim_start_matches("nats://").to_string();
    let body = format!(
        "{SETS}tasks:\n  - mcollective:\n      description: generate on shard 3\n      action: emulated0.generate\n      nodes: '{{{{{{ nodes.shard3 }}}}}}'\n      properties:\n        size: 8\n      assert: 'message=~/^.{{8}}$/ and +message'\n  - shell:\n      command: 'echo data={{{{{{ previous_task.data }}}}}}'\n  - rpc:\n      action: emulated0.generate\n      nodes: '{{{{{{ nodes.low }}}}}}'\n      batch_size: 2\n      batch_sleep_time: 0.1\n      silent: true\n      post: [summarize]\n  - mcollective:\n      action: rpcutil.ping\n      nodes: '{{{{{{ nodes.named }}}}}}'\n"
    );
    let out = run(Test::new()
        .playbook(&body)
        .args(&["run", "pb.yaml", "--server", &server])
        .stderr_has("Discovered 2 node(s) in node set shard3")
        .stderr_has("Discovered 4 node(s) in node set low")
        .stderr_has("Discovered 10 node(s) in node set named")
        .stderr_has("Testing connectivity to 2 node(s)")
        .stderr_has("Checking agent versions of emulated0, rpcutil on 2 node(s)")
        .stderr_has("for emulated0#generate in")
        .stderr_has("against 2 node(s)")
        .stderr_has("sender:alpha-13,statuscode:0")
        .stderr_has("Summary for mcollective task:")
        .stderr_has("against 10 node(s)")
        .stdout_has("Overall outcome: success"))
    .await;
    assert!(out.stderr.contains("alpha-3"), "{}", out.stderr);
    // A failing assertion names the nodes.
    let body = format!(
        "{SETS}tasks:\n  - mcollective:\n      action: emulated0.generate\n      nodes: '{{{{{{ nodes.shard3 }}}}}}'\n      assert: 'message=nope'\n"
    );
    run(Test::new()
        .playbook(&body)
        .args(&["run", "pb.yaml", "--server", &server])
        .stderr_has("assertion failed on 2 node(s): ")
        .status(1))
    .await;
    // An agent version the nodes cannot satisfy fails before any task runs.
    let body = "uses:\n  emulated0: '>= 2.0'\nnodes:\n  all:\n    type: mcollective\n    uses: [emulated0]\ntasks:\n  - shell:\n      command: echo should-not-run\n";
    run(Test::new()
        .playbook(body)
        .env("CHORIA_SERVERS", &server)
        .args(&["run", "pb.yaml"])
        .stdout_has("Agent versions did not match on some nodes")
        .stdout_has("which does not satisfy >= 2.0")
        .stderr_lacks("should-not-run")
        .status(1))
    .await;
    // A node set using an agent the playbook's uses does not version is refused.
    let body = "uses:\n  emulated0: '1.x'\nnodes:\n  all:\n    type: mcollective\n    identities: [alpha-1]\n    uses: [emulated0, emulated1]\ntasks: []\n";
    run(Test::new()
        .playbook(body)
        .args(&["run", "pb.yaml", "--server", &server])
        .stdout_has(
            "Agent emulated1 is used by a node set but has no version in the playbook's uses",
        )
        .status(1))
    .await;
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_nodes_are_named_as_non_responders() {
    let nats = NatsServer::start();
    let url = nats.url();
    let stay = fleet(&url, "stay", 3).await;
    let gone = fleet(&url, "gone", 2).await;
    let server = url.trim_start_matches("nats://").to_string();
    // Discovery happens while both fleets run; a shell task then stops one fleet.
    let marker = tempfile::tempdir().expect("dir");
    let flag = marker.path().join("discovered");
    let body = format!(
        "nodes:\n  all:\n    type: mcollective\n    agents: [emulated0]\n    at_least: 5\ntasks:\n  - shell:\n      command: 'touch {flag} && while [ -e {flag} ]; do sleep 0.1; done'\n  - mcollective:\n      action: emulated0.generate\n      nodes: '{{{{{{ nodes.all }}}}}}'\nhooks:\n  on_fail:\n    - shell:\n        command: echo on-fail-ran\n",
        flag = flag.display()
    );
    let test = Test::new()
        .playbook(&body)
        .args(&["run", "pb.yaml", "--server", &server, "--rpc-timeout", "2"])
        .stderr_has("Discovered 5 node(s) in node set all")
        .stderr_has("on 2 failed node(s): no response from 2 node(s): ")
        .stderr_has("on-fail-ran")
        .status(1);
    let handle = tokio::task::spawn_blocking(move || test.run());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !flag.exists() {
        assert!(tokio::time::Instant::now() < deadline, "never discovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gone.stop(Duration::from_secs(5)).await;
    std::fs::remove_file(&flag).expect("release the playbook");
    let out = handle.await.expect("test thread");
    assert!(
        out.stderr.contains("gone-0") && out.stderr.contains("gone-1"),
        "{}",
        out.stderr
    );
    let failed_line = out
        .stderr
        .lines()
        .find(|l| l.contains("no response from"))
        .unwrap_or_default();
    assert!(!failed_line.contains("stay-"), "{failed_line}");
    // Connectivity tests name the nodes that did not answer the ping.
    run(Test::new()
        .playbook("nodes:\n  some:\n    type: list\n    nodes: [stay-0, ghost-1, stay-2]\n    test: true\ntasks:\n  - shell:\n      command: echo must-not-run\n")
        .args(&["run", "pb.yaml", "--server", &server, "--rpc-timeout", "2"])
        .stdout_has("Connectivity test failed for some nodes: ghost-1")
        .stderr_lacks("must-not-run")
        .status(1))
    .await;
    stay.stop(Duration::from_secs(5)).await;
}

#[test]
fn unreachable_or_missing_broker_is_a_clear_error() {
    // A port nothing listens on: bind, read the port, drop the listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let server = format!("127.0.0.1:{port}");
    Test::new()
        .playbook("nodes:\n  all:\n    type: mcollective\ntasks: []\n")
        .args(&["run", "pb.yaml", "--server", &server])
        .stdout_has("cannot connect to the Choria broker at nats://127.0.0.1:")
        .stderr_lacks("panicked")
        .status(1)
        .run();
    Test::new()
        .playbook("tasks:\n  - mcollective:\n      action: rpcutil.ping\n      nodes: [a]\nhooks:\n  on_fail:\n    - shell:\n        command: echo on-fail-ran\n")
        .env("CHORIA_SERVERS", "")
        .env("NATS_URL", "")
        .args(&["run", "pb.yaml"])
        .stderr_has("no Choria broker configured")
        .stderr_has("on-fail-ran")
        .status(1)
        .run();
    Test::new()
        .playbook("tasks:\n  - rpc:\n      action: rpcutil.ping\n      nodes: [a]\n")
        .file(
            "client.conf",
            &format!("plugin.choria.middleware_hosts = {server}\n"),
        )
        .args(&["run", "pb.yaml", "--config", "client.conf"])
        .stderr_has("cannot connect to the Choria broker at nats://127.0.0.1:")
        .status(1)
        .run();
    Test::new()
        .playbook("tasks:\n  - mcollective:\n      action: rpcutil.ping\n      nodes: [a]\n      assert: '(x=1'\n")
        .args(&["run", "pb.yaml", "--server", &server])
        .stdout_has("Invalid assert expression")
        .status(1)
        .run();
}
