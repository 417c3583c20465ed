//! Consul and etcd data stores and playbook locks, with real `playbook` processes against a
//! real etcd and against the Consul API conformance server (`testkit::ConsulConformance`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use playbook::store::consul::{Behavior, ConsulClient, ConsulError, SessionRequest};
use testkit::{ConsulConformance, Etcd};

use crate::test::Test;

const HEADER: &str =
    "name: test\nversion: 1.0.0\nauthor: tester\ndescription: locks\nrun_as: choria=tester\n";

/// Starts `playbook run pb.yaml` in `dir` without waiting.
fn spawn(dir: &Path, env: &[(String, String)], args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_playbook"))
        .arg("run")
        .arg("pb.yaml")
        .args(args)
        .current_dir(dir)
        .env_remove("PLAYBOOK_TRACE")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start playbook")
}

fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().expect("wait playbook");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

async fn wait_for(path: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `data_stores:` entry of each backend.
fn store(kind: &str, etcd_url: &str, timeout: u32) -> String {
    match kind {
        "etcd" => format!(
            "data_stores:\n  s:\n    type: etcd\n    url: {etcd_url}\n    ttl: 10\n    timeout: {timeout}\n"
        ),
        _ => format!(
            "data_stores:\n  s:\n    type: consul\n    ttl: 10\n    lock_delay: 1\n    timeout: {timeout}\n"
        ),
    }
}

/// Mutual exclusion, kill -9 recovery and lock timeouts with real processes.
async fn lock_suite(kind: &str, etcd_url: &str, env: Vec<(String, String)>) {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path().to_path_buf();
    // 1. Two runs on the same lock never overlap.
    let body = format!(
        "{HEADER}{}inputs:\n  id:\n    description: id\n    type: String\nlocks:\n  - s\ntasks:\n  - shell:\n      command: 'echo start-{{{{{{ inputs.id }}}}}} >> shared.log && sleep 1 && echo end-{{{{{{ inputs.id }}}}}} >> shared.log'\n",
        store(kind, etcd_url, 30)
    );
    std::fs::write(d.join("pb.yaml"), &body).expect("write");
    let a = spawn(&d, &env, &["--id", "a"]);
    let b = spawn(&d, &env, &["--id", "b"]);
    let (a, b) = tokio::task::spawn_blocking(move || (finish(a), finish(b)))
        .await
        .expect("join");
    assert_eq!(a.0, 0, "{}", a.1);
    assert_eq!(b.0, 0, "{}", b.1);
    assert!(
        a.1.contains("Obtaining playbook lock s/choria/locks/playbook/test"),
        "{}",
        a.1
    );
    assert!(
        a.1.contains("Releasing playbook lock s/choria/locks/playbook/test"),
        "{}",
        a.1
    );
    let log = std::fs::read_to_string(d.join("shared.log")).expect("log");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 4, "{log}");
    for pair in lines.chunks(2) {
        let id = pair[0].trim_start_matches("start-");
        assert_eq!(pair[1], format!("end-{id}"), "interleaved runs:\n{log}");
    }

    // 2. A holder killed with SIGKILL loses the lock when its TTL (and lock-delay) lapse.
    let body = format!(
        "{HEADER}{}locks:\n  - s/custom/lock\ntasks:\n  - shell:\n      command: 'touch holding && sleep 60'\n",
        store(kind, etcd_url, 30)
    );
    std::fs::write(d.join("pb.yaml"), &body).expect("write");
    let mut holder = spawn(&d, &env, &[]);
    wait_for(&d.join("holding"), Duration::from_secs(20)).await;
    let body = format!(
        "{HEADER}{}locks:\n  - s/custom/lock\ntasks:\n  - shell:\n      command: 'echo waiter-ran'\n",
        store(kind, etcd_url, 30)
    );
    std::fs::write(d.join("pb.yaml"), &body).expect("write");
    let waiter = spawn(&d, &env, &[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    holder.kill().expect("kill -9 the holder");
    let _ = holder.wait();
    let killed = Instant::now();
    let (code, text) = tokio::task::spawn_blocking(move || finish(waiter))
        .await
        .expect("join");
    let waited = killed.elapsed();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("waiter-ran"), "{text}");
    assert!(
        waited >= Duration::from_secs(4),
        "the lock was taken {waited:?} after the kill, before the TTL could lapse"
    );

    // 3. A timeout gives the documented error and runs no task.
    let body = format!(
        "{HEADER}{}locks:\n  - s/custom/lock\ntasks:\n  - shell:\n      command: 'touch holding2 && sleep 8'\n",
        store(kind, etcd_url, 30)
    );
    std::fs::write(d.join("pb.yaml"), &body).expect("write");
    let holder = spawn(&d, &env, &[]);
    wait_for(&d.join("holding2"), Duration::from_secs(20)).await;
    let body = format!(
        "{HEADER}{}locks:\n  - s/custom/lock\ntasks:\n  - shell:\n      command: 'echo must-not-run'\n",
        store(kind, etcd_url, 2)
    );
    std::fs::write(d.join("pb.yaml"), &body).expect("write");
    let loser = spawn(&d, &env, &[]);
    let ((code, text), (hcode, htext)) =
        tokio::task::spawn_blocking(move || (finish(loser), finish(holder)))
            .await
            .expect("join");
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("Failed to obtain lock custom/lock after 2 seconds"),
        "{text}"
    );
    assert!(!text.contains("must-not-run"), "{text}");
    assert!(text.contains("Tasks Ran: 0"), "{text}");
    assert_eq!(hcode, 0, "{htext}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_locks_with_real_processes() {
    let etcd = Etcd::start();
    lock_suite("etcd", &etcd.url(), Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_locks_with_real_processes_against_the_conformance_server() {
    let server = ConsulConformance::start().await;
    let env = vec![("CONSUL_HTTP_ADDR".to_string(), server.url())];
    lock_suite("consul", "", env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_reads_writes_and_rejects_bad_keys() {
    let etcd = Etcd::start();
    let url = etcd.url();
    let pb = format!(
        "data_stores:\n  e:\n    type: etcd\n    url: {url}\ninputs:\n  cluster:\n    description: c\n    type: String\n    default: none\n    data: e/app/cluster\ntasks:\n  - shell:\n      command: echo first={{{{{{ inputs.cluster }}}}}}\n  - data:\n      action: write\n      key: e/app/cluster\n      value: bravo\n  - shell:\n      command: echo second={{{{{{ inputs.cluster }}}}}}\n  - data:\n      action: delete\n      key: e/app/cluster\n  - shell:\n      command: echo third={{{{{{ inputs.cluster }}}}}}\n"
    );
    let t = Test::new()
        .playbook(&pb)
        .args(&["run", "pb.yaml"])
        .stderr_has("first=none")
        .stderr_has("second=bravo")
        .stderr_has("third=none");
    tokio::task::spawn_blocking(move || t.run())
        .await
        .expect("join");
    let pb = format!(
        "data_stores:\n  e:\n    type: etcd\n    url: {url}\ntasks:\n  - data:\n      action: write\n      key: 'e/bad key/../x'\n      value: v\n"
    );
    let t = Test::new()
        .playbook(&pb)
        .args(&["run", "pb.yaml"])
        .stderr_has("Invalid key \"bad key/../x\" for the etcd data store")
        .stderr_lacks("panicked")
        .status(1);
    tokio::task::spawn_blocking(move || t.run())
        .await
        .expect("join");
}

#[test]
fn unreachable_stores_fail_clearly_and_run_no_tasks() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    Test::new()
        .playbook(&format!("data_stores:\n  e:\n    type: etcd\n    url: http://127.0.0.1:{port}\n    timeout: 2\nlocks:\n  - e\ntasks:\n  - shell:\n      command: echo must-not-run\n"))
        .args(&["run", "pb.yaml"])
        .stdout_has(&format!(
            "etcd request to http://127.0.0.1:{port}/v3/lease/grant failed: connection refused"
        ))
        .stdout_lacks("error sending request")
        .stdout_has("Tasks Ran: 0")
        .stderr_lacks("must-not-run")
        .stderr_lacks("panicked")
        .status(1)
        .run();
    Test::new()
        .playbook("data_stores:\n  c:\n    type: consul\n    timeout: 2\nlocks:\n  - c\ntasks:\n  - shell:\n      command: echo must-not-run\n")
        .env("CONSUL_HTTP_ADDR", &format!("127.0.0.1:{port}"))
        .args(&["run", "pb.yaml"])
        .stdout_has(&format!("Consul request to http://127.0.0.1:{port}/v1/session/create failed: connection refused"))
        .stdout_lacks("error sending request")
        .stdout_has("Tasks Ran: 0")
        .stderr_lacks("must-not-run")
        .stderr_lacks("panicked")
        .status(1)
        .run();
    Test::new()
        .playbook("data_stores:\n  c:\n    type: consul\nlocks:\n  - 'c//x'\ntasks: []\n")
        .env("CONSUL_HTTP_ADDR", &format!("127.0.0.1:{port}"))
        .args(&["run", "pb.yaml"])
        .stdout_has("Invalid key \"/x\" for the consul data store")
        .status(1)
        .run();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_consul_session_fails_the_run_and_runs_on_fail() {
    let server = ConsulConformance::start().await;
    let client = ConsulClient::new(&server.url(), None).expect("client");
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path().to_path_buf();
    let body = format!(
        "{HEADER}data_stores:\n  s:\n    type: consul\n    ttl: 10\n    lock_delay: 0\nlocks:\n  - s/lost\ntasks:\n  - shell:\n      command: 'touch holding && while [ ! -e go ]; do sleep 0.1; done'\n  - shell:\n      command: echo second-task-ran\nhooks:\n  on_fail:\n    - shell:\n        command: echo on-fail-ran\n"
    );
    std::fs::write(d.join("pb.yaml"), body).expect("write");
    let env = vec![("CONSUL_HTTP_ADDR".to_string(), server.url())];
    let child = spawn(&d, &env, &[]);
    wait_for(&d.join("holding"), Duration::from_secs(20)).await;
    let pair = client.kv_get("lost").await.expect("get").expect("lock key");
    let session = pair.session.expect("held by a session");
    client.session_destroy(&session).await.expect("destroy");
    // The holder notices at its next renewal (every TTL - 5 = 5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    std::fs::write(d.join("go"), "").expect("go");
    let (code, text) = tokio::task::spawn_blocking(move || finish(child))
        .await
        .expect("join");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("Playbook lock lost during the run"), "{text}");
    assert!(text.contains("was invalidated"), "{text}");
    assert!(text.contains("on-fail-ran"), "{text}");
    assert!(!text.contains("second-task-ran"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_etcd_lease_fails_the_run_and_runs_on_fail() {
    use base64::Engine as _;
    let etcd = Etcd::start();
    let url = etcd.url();
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path().to_path_buf();
    let body = format!(
        "{HEADER}data_stores:\n  s:\n    type: etcd\n    url: {url}\n    ttl: 10\nlocks:\n  - s/lost\ntasks:\n  - shell:\n      command: 'touch holding && while [ ! -e go ]; do sleep 0.1; done'\n  - shell:\n      command: echo second-task-ran\nhooks:\n  on_fail:\n    - shell:\n        command: echo on-fail-ran\n"
    );
    std::fs::write(d.join("pb.yaml"), body).expect("write");
    let child = spawn(&d, &[], &[]);
    wait_for(&d.join("holding"), Duration::from_secs(20)).await;
    let http = reqwest::Client::new();
    let key = base64::engine::general_purpose::STANDARD.encode("lost");
    let range: serde_json::Value = http
        .post(format!("{url}/v3/kv/range"))
        .json(&serde_json::json!({"key": key}))
        .send()
        .await
        .expect("range")
        .json()
        .await
        .expect("json");
    let lease = range["kvs"][0]["lease"].clone();
    assert!(!lease.is_null(), "{range}");
    http.post(format!("{url}/v3/lease/revoke"))
        .json(&serde_json::json!({"ID": lease}))
        .send()
        .await
        .expect("revoke");
    tokio::time::sleep(Duration::from_secs(6)).await;
    std::fs::write(d.join("go"), "").expect("go");
    let (code, text) = tokio::task::spawn_blocking(move || finish(child))
        .await
        .expect("join");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("Playbook lock lost during the run"), "{text}");
    assert!(text.contains("on-fail-ran"), "{text}");
    assert!(!text.contains("second-task-ran"), "{text}");
}

/// The client behaviours checked against a Consul HTTP API (the conformance server, or a
/// real agent when `CONSUL_HTTP_ADDR` is set). `lock_delay_checks` needs a server that
/// honours a 1 s lock-delay promptly.
async fn client_suite(client: &ConsulClient, prefix: &str) {
    let key = format!("{prefix}/kv");
    let _ = client.kv_delete(&key, None).await;
    assert_eq!(client.kv_get(&key).await.expect("get"), None);
    assert!(
        client
            .kv_put(&key, b"one", Some(0))
            .await
            .expect("cas create")
    );
    assert!(
        !client
            .kv_put(&key, b"two", Some(0))
            .await
            .expect("cas exists")
    );
    let pair = client.kv_get(&key).await.expect("get").expect("present");
    assert_eq!(pair.value, b"one");
    assert_eq!(pair.lock_index, 0);
    assert!(pair.modify_index >= pair.create_index);
    assert!(
        !client
            .kv_put(&key, b"x", Some(pair.modify_index + 1000))
            .await
            .expect("stale cas")
    );
    assert!(
        client
            .kv_put(&key, b"two", Some(pair.modify_index))
            .await
            .expect("cas")
    );
    assert!(!client.kv_delete(&key, Some(0)).await.expect("cas 0 delete"));
    assert!(client.kv_delete(&key, None).await.expect("delete"));
    assert_eq!(client.kv_get(&key).await.expect("get"), None);

    // Sessions and locks.
    let request = SessionRequest {
        name: "test".into(),
        ttl: Duration::from_secs(10),
        behavior: Behavior::Release,
        lock_delay: Duration::from_secs(1),
    };
    let lock = format!("{prefix}/lock");
    let s1 = client.session_create(&request).await.expect("session");
    let s2 = client.session_create(&request).await.expect("session");
    assert!(client.kv_acquire(&lock, b"a", &s1).await.expect("acquire"));
    assert!(
        client
            .kv_acquire(&lock, b"a2", &s1)
            .await
            .expect("re-acquire by holder")
    );
    assert!(
        !client
            .kv_acquire(&lock, b"b", &s2)
            .await
            .expect("contended")
    );
    let held = client.kv_get(&lock).await.expect("get").expect("present");
    assert_eq!(held.session.as_deref(), Some(s1.as_str()));
    assert_eq!(held.lock_index, 1);
    assert_eq!(held.value, b"a2");
    // Locks are advisory: a plain write succeeds.
    assert!(client.kv_put(&lock, b"plain", None).await.expect("put"));
    assert!(
        !client
            .kv_release(&lock, &s2)
            .await
            .expect("release by other")
    );
    assert!(client.kv_release(&lock, &s1).await.expect("release"));
    let released = client.kv_get(&lock).await.expect("get").expect("present");
    assert_eq!(released.session, None);
    assert_eq!(released.lock_index, 1);
    assert!(client.kv_acquire(&lock, b"b", &s2).await.expect("acquire"));
    // Destroying the holder's session starts the lock-delay: acquire answers false.
    client.session_destroy(&s2).await.expect("destroy");
    client
        .session_destroy(&s2)
        .await
        .expect("destroy is idempotent");
    assert!(
        !client
            .kv_acquire(&lock, b"a", &s1)
            .await
            .expect("lock-delay")
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        client
            .kv_acquire(&lock, b"a", &s1)
            .await
            .expect("after lock-delay")
    );
    assert!(client.session_renew(&s1).await.is_ok());
    match client.session_renew(&s2).await {
        Err(ConsulError::SessionNotFound(id)) => assert_eq!(id, s2),
        other => panic!("renewing a destroyed session: {other:?}"),
    }
    // A blocking read returns when the key changes.
    let (_, index) = client
        .kv_get_blocking(&lock, Some(0), Duration::ZERO)
        .await
        .expect("index");
    let writer = client.clone();
    let lock2 = lock.clone();
    let started = Instant::now();
    let bg = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        writer.kv_put(&lock2, b"changed", None).await
    });
    let (pair, next) = client
        .kv_get_blocking(&lock, Some(index), Duration::from_secs(10))
        .await
        .expect("blocking");
    assert!(next > index);
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(pair.expect("present").value, b"changed");
    assert!(bg.await.expect("join").expect("put"));
    // A blocking read with nothing changing returns after `wait`.
    let started = Instant::now();
    let (_, same) = client
        .kv_get_blocking(&lock, Some(next), Duration::from_secs(1))
        .await
        .expect("timeout");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(same >= next);
    client.session_destroy(&s1).await.expect("destroy");
    let _ = client.kv_delete(&lock, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_client_against_the_conformance_server() {
    let server = ConsulConformance::start().await;
    let client = ConsulClient::new(&server.url(), None).expect("client");
    client_suite(&client, "playbook-test").await;
    // TTL expiry with Behavior delete removes the held key.
    let s = client
        .session_create(&SessionRequest {
            name: "ttl".into(),
            ttl: Duration::from_secs(10),
            behavior: Behavior::Delete,
            lock_delay: Duration::ZERO,
        })
        .await
        .expect("session");
    assert!(
        client
            .kv_acquire("ttl/key", b"x", &s)
            .await
            .expect("acquire")
    );
    tokio::time::sleep(Duration::from_millis(10_300)).await;
    assert_eq!(client.kv_get("ttl/key").await.expect("get"), None);
    assert!(matches!(
        client.session_renew(&s).await,
        Err(ConsulError::SessionNotFound(_))
    ));
    // TTLs outside 10s..24h are refused.
    let bad = client
        .session_create(&SessionRequest {
            name: "short".into(),
            ttl: Duration::from_secs(5),
            behavior: Behavior::Delete,
            lock_delay: Duration::ZERO,
        })
        .await;
    assert!(
        matches!(bad, Err(ConsulError::Status { status: 400, .. })),
        "{bad:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_token_is_sent_by_the_client_and_the_store() {
    let server = ConsulConformance::start_with_token("s3cret").await;
    let anonymous = ConsulClient::new(&server.url(), None).expect("client");
    assert!(matches!(
        anonymous.kv_get("x").await,
        Err(ConsulError::Status { status: 403, .. })
    ));
    let client = ConsulClient::new(&server.url(), Some("s3cret".into())).expect("client");
    assert!(client.kv_put("x", b"1", None).await.expect("put"));
    let body = "data_stores:\n  c:\n    type: consul\ninputs:\n  x:\n    description: x\n    type: String\n    data: c/x\nlocks:\n  - c\ntasks:\n  - shell:\n      command: echo x={{{ inputs.x }}}\n";
    let t = Test::new()
        .playbook(body)
        .env("CONSUL_HTTP_ADDR", &server.url())
        .env("CONSUL_HTTP_TOKEN", "s3cret")
        .args(&["run", "pb.yaml"])
        .stderr_has("x=1")
        .stderr_has("Releasing playbook lock c/choria/locks/playbook/test");
    tokio::task::spawn_blocking(move || t.run())
        .await
        .expect("join");
    let t = Test::new()
        .playbook(body)
        .env("CONSUL_HTTP_ADDR", &server.url())
        .env("CONSUL_HTTP_TOKEN", "wrong")
        .args(&["run", "pb.yaml"])
        .stdout_has("returned HTTP 403: Permission denied")
        .stdout_has("Tasks Ran: 0")
        .status(1);
    tokio::task::spawn_blocking(move || t.run())
        .await
        .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_client_against_a_real_consul_when_configured() {
    if std::env::var("CONSUL_HTTP_ADDR").map_or(true, |a| a.trim().is_empty()) {
        eprintln!(
            "SKIPPED: CONSUL_HTTP_ADDR not set; the Consul client was not run against a real Consul"
        );
        return;
    }
    let client = ConsulClient::from_env().expect("client");
    client_suite(&client, &format!("playbook-test-{}", std::process::id())).await;
}

/// Reads an etcd key through the JSON gateway; `None` when absent.
async fn etcd_get(url: &str, key: &str) -> Option<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let range: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/v3/kv/range"))
        .json(&serde_json::json!({"key": b64.encode(key)}))
        .send()
        .await
        .expect("range")
        .json()
        .await
        .expect("json");
    let value = range["kvs"][0]["value"].as_str()?;
    Some(String::from_utf8(b64.decode(value).expect("base64")).expect("utf-8"))
}

/// A holder that keeps `s`'s default lock until the file `go` appears.
fn locked_playbook(url: &str, timeout: u32, command: &str) -> String {
    format!(
        "{HEADER}data_stores:\n  s:\n    type: etcd\n    url: {url}\n    ttl: 10\n    timeout: {timeout}\ninputs:\n  who:\n    description: who\n    type: String\n    data: s/app/who\n    save: true\nlocks:\n  - s\ntasks:\n  - shell:\n      command: '{command}'\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_cannot_lock_does_not_overwrite_the_holders_saved_input() {
    let etcd = Etcd::start();
    let url = etcd.url();
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path().to_path_buf();
    let body = locked_playbook(
        &url,
        30,
        "touch holding; while [ ! -e go ]; do sleep 0.1; done",
    );
    std::fs::write(d.join("pb.yaml"), body).expect("write");
    let holder = spawn(&d, &[], &["--who", "A"]);
    wait_for(&d.join("holding"), Duration::from_secs(20)).await;
    assert_eq!(etcd_get(&url, "app/who").await.as_deref(), Some("A"));
    std::fs::write(
        d.join("pb.yaml"),
        locked_playbook(&url, 1, "touch must-not-run"),
    )
    .expect("write");
    let loser = spawn(&d, &[], &["--who", "B"]);
    let (code, text) = tokio::task::spawn_blocking(move || finish(loser))
        .await
        .expect("join");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("Failed to obtain lock"), "{text}");
    assert!(!d.join("must-not-run").exists(), "{text}");
    assert_eq!(
        etcd_get(&url, "app/who").await.as_deref(),
        Some("A"),
        "the run without the lock overwrote the holder's saved input\n{text}"
    );
    std::fs::write(d.join("go"), "").expect("go");
    let (code, text) = tokio::task::spawn_blocking(move || finish(holder))
        .await
        .expect("join");
    assert_eq!(code, 0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_lock_wait_lasts_the_whole_timeout() {
    let etcd = Etcd::start();
    let url = etcd.url();
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path().to_path_buf();
    let body = locked_playbook(
        &url,
        30,
        "touch holding; while [ ! -e go ]; do sleep 0.1; done",
    );
    std::fs::write(d.join("pb.yaml"), body).expect("write");
    let holder = spawn(&d, &[], &["--who", "A"]);
    wait_for(&d.join("holding"), Duration::from_secs(20)).await;
    std::fs::write(d.join("pb.yaml"), locked_playbook(&url, 3, "true")).expect("write");
    let loser = spawn(&d, &[], &["--json"]);
    let out = tokio::task::spawn_blocking(move || loser.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Failed to obtain lock choria/locks/playbook/test after 3 seconds"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let time_of = |needle: &str| {
        let entry = report["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .find(|e| e["msg"].as_str().is_some_and(|m| m.contains(needle)))
            .unwrap_or_else(|| panic!("no log line with {needle:?}: {report}"));
        chrono::DateTime::parse_from_rfc3339(entry["time"].as_str().expect("time"))
            .expect("rfc3339")
    };
    // The acquisition's own measure of its wait, from its start to giving up.
    let waited: f64 = stderr
        .split("(waited ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no waited time in {stderr}"));
    assert!(
        (2.7..=3.3).contains(&waited),
        "waited {waited:.3}s for a 3 s lock timeout"
    );
    // Seen from outside (log times include the HTTP calls around the wait, slower under load).
    let outside = (time_of("Failed to obtain lock") - time_of("Obtaining playbook lock"))
        .to_std()
        .expect("positive")
        .as_secs_f64();
    assert!(
        (2.95..5.0).contains(&outside),
        "the run gave up {outside:.3}s after starting a 3 s lock wait"
    );
    std::fs::write(d.join("go"), "").expect("go");
    let (code, text) = tokio::task::spawn_blocking(move || finish(holder))
        .await
        .expect("join");
    assert_eq!(code, 0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_errors_name_the_endpoint_and_the_status_with_its_body() {
    let etcd = Etcd::start();
    let url = etcd.url();
    // Authentication is not enabled on the test etcd: it answers 412 with a JSON body.
    let t = Test::new()
        .playbook(&format!("data_stores:\n  e:\n    type: etcd\n    url: {url}\n    user: u\n    password: p\ntasks:\n  - shell:\n      command: echo must-not-run\n"))
        .args(&["run", "pb.yaml"])
        .status(1)
        .stdout_has(&format!("etcd {url}/v3/auth/authenticate returned HTTP 412: "))
        .stdout_has("authentication is not enabled")
        .stdout_has("Tasks Ran: 0")
        .stderr_lacks("must-not-run");
    tokio::task::spawn_blocking(move || t.run())
        .await
        .expect("join");
}
