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

/// Held by the tests that load the machine (300-instance fleets, a 256 MiB download) so that
/// they do not starve one another on a small machine.
pub(crate) static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn node_command(url: &str, identity: &str, role: &str, workdir: &std::path::Path) -> Command {
    let mut command = Command::new(&*NODE);
    command
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
        .stderr(Stdio::null());
    command
}

fn node(url: &str, identity: &str, role: &str, workdir: &std::path::Path) -> ChildGuard {
    ChildGuard(node_command(url, identity, role, workdir).spawn().unwrap())
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
    let _heavy = HEAVY.lock().await;
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

    // `start` replies once /debug/vars answers, while the instances may still be connecting
    // (slowly on a loaded machine): wait until each fleet reports all 150 connected.
    for (host, m, _) in &monitors {
        let mut connected = Value::Null;
        for _ in 0..120 {
            let status = rpc(&client, host, "status", json!({"port": m})).await;
            connected = status.data["connected"].clone();
            if connected == 150 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(connected, 150, "{host}: every instance connects");
    }

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

    // Stopping the dead one signals nothing and says so.
    let (_, m, pid) = monitors[1];
    let stop_dead = rpc(&client, "host-c", "stop", json!({"port": m})).await;
    assert_eq!(stop_dead.statuscode, StatusCode::Ok, "{stop_dead:?}");
    assert_eq!(
        stop_dead.data["message"],
        format!(
            "the emulator on monitor port {m} (pid {pid}) had already ended (was killed by signal 9); signalled nothing"
        )
    );

    // Stop everything and check nothing is left.
    let stopped = rpc(&client, "host-b", "stop", json!({"port": monitors[0].1})).await;
    assert_eq!(stopped.statuscode, StatusCode::Ok, "{stopped:?}");
    assert_eq!(stopped.data["pid"], monitors[0].2);
    assert!(
        stopped.data["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "sent SIGTERM to the emulator on monitor port {} (pid {}); it exited after",
                monitors[0].1, monitors[0].2
            )),
        "{stopped:?}"
    );
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

/// Serves `app` on 127.0.0.1 on a port of its own.
async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One daemon `identity` on a fresh management broker, and a client that has discovered it.
async fn one_daemon(
    identity: &str,
    workdir: &std::path::Path,
    configure: impl FnOnce(&mut Command),
) -> (NatsServer, ChildGuard, Client) {
    let mgmt = NatsServer::start();
    let mut command = node_command(&mgmt.url(), identity, "emulator", workdir);
    configure(&mut command);
    let daemon = ChildGuard(command.spawn().unwrap());
    let client = Client::connect(&[mgmt.url()], ClientOptions::default())
        .await
        .unwrap();
    discover_all(&client, 1).await;
    (mgmt, daemon, client)
}

/// Peak resident memory of `pid` in bytes (`VmHWM` in `/proc/<pid>/status`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/<pid>/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM in kB");
    kib * 1024
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_answers_while_a_download_never_answers() {
    use axum::routing::get;
    let addr = serve(axum::Router::new().route(
        "/hang",
        get(|| async {
            std::future::pending::<()>().await;
            "never"
        }),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (_mgmt, _daemon, client) = one_daemon("hang", dir.path(), |_| {}).await;
    let client = std::sync::Arc::new(client);
    let started = std::time::Instant::now();
    let download = tokio::spawn({
        let client = std::sync::Arc::clone(&client);
        let url = format!("http://{addr}/hang");
        async move {
            rpc(
                &client,
                "hang",
                "download",
                json!({"url": url, "target": "tool", "idle_timeout": 4}),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = std::time::Instant::now();
    let status = rpc(&client, "hang", "status", json!({"port": 9})).await;
    assert_eq!(status.statuscode, StatusCode::Ok, "{status:?}");
    assert_eq!(status.data["running"], false);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "status waited {:?} behind the download",
        asked.elapsed()
    );
    assert!(!download.is_finished(), "the download is still in flight");
    let download = download.await.unwrap();
    assert_eq!(download.statuscode, StatusCode::Aborted, "{download:?}");
    assert!(
        download.statusmsg.contains("no data for 4s"),
        "{}",
        download.statusmsg
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        entries(dir.path()),
        Vec::<String>::new(),
        "nothing left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_stream_with_a_size_limit_and_bounded_memory() {
    let _heavy = HEAVY.lock().await;
    use axum::body::{Body, Bytes};
    use axum::routing::get;
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 4 * 1024; // 256 MiB
    let stream = || {
        Body::from_stream(futures::stream::iter((0..CHUNKS).map(|i| {
            Ok::<_, std::io::Error>(Bytes::from(vec![(i % 251) as u8; CHUNK]))
        })))
    };
    let addr = serve(
        axum::Router::new()
            .route("/big", get(move || async move { stream() }))
            .route("/announced", get(|| async { vec![7u8; 2 << 20] })),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (_mgmt, daemon, client) = one_daemon("big", dir.path(), |_| {}).await;
    let url = |path: &str| format!("http://{addr}{path}");

    // More than max_bytes without a Content-Length: cut off, nothing left.
    let over = rpc(
        &client,
        "big",
        "download",
        json!({"url": url("/big"), "target": "big", "max_bytes": 1 << 20}),
    )
    .await;
    assert_eq!(over.statuscode, StatusCode::Aborted, "{over:?}");
    assert!(
        over.statusmsg.contains("more than max_bytes 1048576"),
        "{}",
        over.statusmsg
    );
    assert_eq!(over.data["success"], false);
    // A Content-Length above max_bytes: refused before the body.
    let announced = rpc(
        &client,
        "big",
        "download",
        json!({"url": url("/announced"), "target": "big", "max_bytes": 1 << 20}),
    )
    .await;
    assert_eq!(announced.statuscode, StatusCode::Aborted);
    assert!(
        announced
            .statusmsg
            .contains("announces 2097152 bytes, more than max_bytes 1048576"),
        "{}",
        announced.statusmsg
    );
    // A wrong checksum on a streamed body: nothing renamed into place.
    let wrong = rpc(
        &client,
        "big",
        "download",
        json!({"url": url("/announced"), "target": "big", "sha256": "ab".repeat(32)}),
    )
    .await;
    assert_eq!(wrong.statuscode, StatusCode::Aborted);
    assert!(wrong.statusmsg.contains("checksum mismatch"), "{wrong:?}");
    assert_eq!(
        entries(dir.path()),
        Vec::<String>::new(),
        "nothing left behind"
    );

    // 256 MiB streamed to disk with the daemon's memory far below the file's size.
    let before = peak_rss(daemon.0.id());
    let big = rpc(
        &client,
        "big",
        "download",
        json!({"url": url("/big"), "target": "big"}),
    )
    .await;
    assert_eq!(big.statuscode, StatusCode::Ok, "{big:?}");
    let size = (CHUNK * CHUNKS) as u64;
    assert_eq!(big.data["size"], size);
    let file = dir.path().join("big");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), size);
    let peak = peak_rss(daemon.0.id());
    assert!(
        peak < 64 << 20,
        "the daemon's peak RSS is {} MiB (was {} MiB before a {} MiB download)",
        peak >> 20,
        before >> 20,
        size >> 20
    );
    // The digest computed on the stream is the file's.
    let sum = Command::new("sha256sum").arg(&file).output().unwrap();
    let sum = String::from_utf8(sum.stdout).unwrap();
    assert_eq!(
        big.data["sha256"].as_str().unwrap(),
        sum.split_whitespace().next().unwrap()
    );
    assert_eq!(entries(dir.path()), ["big"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_never_signals_a_pid_an_http_server_names() {
    // The attack: an HTTP server on the monitor port names an unrelated process.
    let mut victim = ChildGuard(Command::new("sleep").arg("300").spawn().unwrap());
    let victim_pid = victim.0.id();
    let body = json!({"config": {"pid": victim_pid}});
    let addr = serve(axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { axum::Json(body) }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (_mgmt, _daemon, client) = one_daemon("victim", dir.path(), |_| {}).await;
    let port = addr.port();

    let stop = rpc(&client, "victim", "stop", json!({"port": port})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        victim.0.try_wait().unwrap(),
        None,
        "the unrelated process {victim_pid} was signalled"
    );
    assert_eq!(stop.statuscode, StatusCode::Aborted, "{stop:?}");
    assert_eq!(stop.data["status"], false);
    assert!(
        stop.statusmsg.contains(&format!(
            "stop the emulator on monitor port {port}: this daemon started no emulator there, and what answers /debug/vars there (naming pid {victim_pid}) was not started by it; signalled nothing"
        )),
        "{}",
        stop.statusmsg
    );
    let status = rpc(&client, "victim", "status", json!({"port": port})).await;
    assert!(
        status.data["message"]
            .as_str()
            .unwrap()
            .contains("not started by this daemon"),
        "{status:?}"
    );
    let start = rpc(
        &client,
        "victim",
        "start",
        json!({"servers": "127.0.0.1:1", "monitor": port}),
    )
    .await;
    assert_eq!(start.statuscode, StatusCode::Aborted);
    assert!(start.statusmsg.contains("did not start"), "{start:?}");
    let stop_nats = rpc(&client, "victim", "stop_nats", json!({})).await;
    assert_eq!(stop_nats.statuscode, StatusCode::Ok);
    assert_eq!(
        stop_nats.data["message"],
        "this daemon has not started nats-server; signalled nothing"
    );
    assert_eq!(victim.0.try_wait().unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_stop_answer_while_a_start_waits() {
    let dir = tempfile::tempdir().unwrap();
    // An "emulator" that never answers /debug/vars: `start` waits its full 60 s for it.
    let fake = dir.path().join("emulator");
    std::fs::write(&fake, "#!/bin/sh\nexec sleep 120\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (_mgmt, _daemon, client) = one_daemon("slow", dir.path(), |_| {}).await;
    let client = std::sync::Arc::new(client);
    let monitor = port_for_child();
    let start = tokio::spawn({
        let client = std::sync::Arc::clone(&client);
        async move {
            rpc(
                &client,
                "slow",
                "start",
                json!({"servers": "127.0.0.1:1", "monitor": monitor}),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let asked = std::time::Instant::now();
    let status = rpc(&client, "slow", "status", json!({"port": monitor})).await;
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(status.data["running"], false);
    assert!(
        status.data["message"]
            .as_str()
            .unwrap()
            .contains("is alive but /debug/vars"),
        "{status:?}"
    );
    let pid: u64 = std::fs::read_to_string(dir.path().join(format!("emulator-{monitor}.pid")))
        .unwrap()
        .parse()
        .unwrap();
    assert!(alive(pid));
    let stop = rpc(&client, "slow", "stop", json!({"port": monitor})).await;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(stop.statuscode, StatusCode::Ok, "{stop:?}");
    assert_eq!(stop.data["pid"], pid);
    let message = stop.data["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "sent SIGTERM to the emulator on monitor port {monitor} (pid {pid}); it exited after"
        )),
        "{message}"
    );
    assert!(!alive(pid));
    let start = start.await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "start kept waiting after stop"
    );
    assert_eq!(start.statuscode, StatusCode::Aborted);
    // Whichever the waiting `start` saw first: the exit, or `stop` forgetting the process.
    assert!(
        start
            .statusmsg
            .contains("exited at start (was killed by signal 15)")
            || start.statusmsg.contains(&format!(
                "pid {pid} was stopped by `stop` before it answered"
            )),
        "{}",
        start.statusmsg
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_replies_with_the_error_not_a_backtrace() {
    // The monitor port is taken, so the emulator fails binding it; RUST_BACKTRACE makes
    // anyhow print a backtrace after the error.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let monitor = taken.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in taken.incoming() {
            drop(conn);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (_mgmt, _daemon, client) = one_daemon("fails", dir.path(), |c| {
        c.env("RUST_BACKTRACE", "1");
    })
    .await;
    let start = rpc(
        &client,
        "fails",
        "start",
        json!({"servers": "127.0.0.1:1", "monitor": monitor}),
    )
    .await;
    assert_eq!(start.statuscode, StatusCode::Aborted, "{start:?}");
    let log = std::fs::read_to_string(dir.path().join(format!("emulator-{monitor}.log"))).unwrap();
    // RUST_BACKTRACE=1 does not turn the emulator's error into a backtrace either.
    assert!(
        !log.contains("backtrace") && log.contains("emulator: error: cannot listen for HTTP"),
        "the emulator's log:\n{log}"
    );
    let error = format!(
        "cannot listen for HTTP on 0.0.0.0:{monitor}: Address already in use (os error 98)"
    );
    assert!(
        start.statusmsg.contains(&format!(
            "exited at start (exited with status 1): {error} (log: "
        )),
        "{}",
        start.statusmsg
    );
    assert!(
        !start.statusmsg.contains("backtrace"),
        "{}",
        start.statusmsg
    );
    // No backtrace frame (`anyhow::...`, `at ./src/main.rs:70:5`) and one line.
    assert!(!start.statusmsg.contains("::"), "{}", start.statusmsg);
    assert!(!start.statusmsg.contains(".rs:"), "{}", start.statusmsg);
    assert!(!start.statusmsg.contains('\n'), "{}", start.statusmsg);
    let status = rpc(&client, "fails", "status", json!({"port": monitor})).await;
    let message = status.data["message"].as_str().unwrap();
    assert!(message.contains("died (exited with status 1)"), "{message}");
    assert!(message.contains(&error), "{message}");
}

#[test]
fn a_bad_flag_prints_one_line_without_a_backtrace() {
    for (args, expected) in [
        (
            vec!["--server", "127.0.0.1:4222", "--fact", "nonsense"],
            "loadlab-node: invalid --fact \"nonsense\": expected name=value\n",
        ),
        (
            vec![
                "--server",
                "127.0.0.1:4222",
                "--config",
                "/nonexistent/loadlab.conf",
            ],
            "loadlab-node: cannot use --config /nonexistent/loadlab.conf: cannot read config file /nonexistent/loadlab.conf: No such file or directory (os error 2)\n",
        ),
    ] {
        let out = Command::new(&*NODE)
            .args(&args)
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), expected, "{args:?}");
    }
    let out = Command::new(&*NODE)
        .arg("--bogus")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "loadlab-node: unexpected argument '--bogus' found (see --help)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_have_no_colour_when_stderr_is_not_a_terminal() {
    use std::io::BufRead as _;
    let mgmt = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut command = node_command(&mgmt.url(), "plain", "emulator", dir.path());
    let mut daemon = ChildGuard(command.stderr(Stdio::piped()).spawn().unwrap());
    let stderr = daemon.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let done = line.contains("node daemon serving");
            let _ = tx.send(line);
            if done {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        let done = line.contains("node daemon serving");
        lines.push(line);
        if done {
            break;
        }
    }
    assert!(
        lines.iter().any(|l| l.contains("node daemon serving")),
        "{lines:?}"
    );
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "an ANSI escape in {line:?}");
    }
}
