//! The whole workflow on one machine, driven by the playbooks in `playbooks/`: a management
//! nats-server, three `loadlab-node` daemons, NATS started on one, fleets on the two others,
//! discovery and a measured round, then the stop playbooks leave nothing behind. One fleet is
//! bigger than its host's per-process budget, so `start-emulator.yaml` runs it as a supervisor
//! of worker processes.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::LazyLock;
use std::time::Duration;

use testkit::{ChildGuard, NatsServer, port_for_child, workspace_binary};

static NODE: LazyLock<PathBuf> = LazyLock::new(|| workspace_binary("loadlab-node"));
static EMULATOR: LazyLock<PathBuf> = LazyLock::new(|| workspace_binary("emulator"));

/// The `playbook` binary (built on first use).
fn playbook_binary() -> PathBuf {
    workspace_binary("playbook")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn playbook(home: &std::path::Path, file: &str, args: Vec<String>) -> Output {
    let bin = playbook_binary();
    let home = home.to_owned();
    let file = repo().join("playbooks").join(file);
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

fn pid_in(file: PathBuf) -> u32 {
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .trim()
        .parse()
        .unwrap()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playbooks_drive_a_whole_load_test() {
    let _heavy = crate::node::HEAVY.lock().await;
    let mgmt = NatsServer::start();
    let home = tempfile::tempdir().unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // The second emulator host may hold only 100 instances per process (as a host holds
    // about 19,990 of them): its 150 go through the supervisor, split over two workers.
    let spawn = |id: &str, role: &str, dir: &tempfile::TempDir, budget: Option<&str>| {
        let mut command = Command::new(&*NODE);
        if let Some(b) = budget {
            command.env("EMULATOR_PROCESS_BUDGET", b);
        }
        ChildGuard(
            command
                .args([
                    "--server",
                    &mgmt.url(),
                    "--identity",
                    id,
                    "--fact",
                    &format!("role={role}"),
                    "--emulator",
                    EMULATOR.to_str().expect("UTF-8 path"),
                ])
                .arg("--workdir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let _daemons = [
        spawn("pb-nats", "nats", &dirs[0], None),
        spawn("pb-emu1", "emulator", &dirs[1], None),
        spawn("pb-emu2", "emulator", &dirs[2], Some("100")),
    ];
    mgmt.wait_connections(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let server = ["--server".to_owned(), mgmt.url()];

    let (port, monitor) = (port_for_child(), port_for_child());
    let mut args = vec![
        "--port".to_owned(),
        port.to_string(),
        "--monitor".into(),
        monitor.to_string(),
    ];
    args.extend(server.clone());
    assert_ok(
        &playbook(home.path(), "start-nats.yaml", args).await,
        "start-nats.yaml",
    );
    // `save: true` remembered the port in the file store.
    let saved = std::fs::read_to_string(home.path().join(".choria-loadlab.yaml")).unwrap();
    assert!(saved.contains(&port.to_string()), "{saved}");

    let servers = format!("127.0.0.1:{port}");
    let mut monitors = Vec::new();
    for host in ["pb-emu1", "pb-emu2"] {
        let m = port_for_child();
        monitors.push(m);
        let mut args: Vec<String> = [
            "--instances",
            "150",
            "--agents",
            "1",
            "--servers",
            &servers,
            "--hosts",
            host,
            "--monitor",
            &m.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(server.clone());
        assert_ok(
            &playbook(home.path(), "start-emulator.yaml", args).await,
            "start-emulator.yaml",
        );
    }

    let mut pids = vec![pid_in(dirs[0].path().join("nats-server.pid"))];
    for (dir, m) in dirs[1..].iter().zip(&monitors) {
        pids.push(pid_in(dir.path().join(format!("emulator-{m}.pid"))));
    }
    assert!(pids.iter().all(|p| alive(*p)));
    // pb-emu2's fleet is a supervisor over two workers; they are stopped with it.
    let vars: agents::DebugVars =
        reqwest::get(format!("http://127.0.0.1:{}/debug/vars", monitors[1]))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(vars.workers.len(), 2, "{:?}", vars.workers);
    assert_eq!(vars.emulator.instances.connected, 150);
    pids.extend(vars.workers.iter().map(|w| w.pid));

    // The test network: every instance discovered, a measured round gets every reply.
    let found = crate::common::assert_full_round(&format!("nats://{servers}"), 300).await;
    assert!(
        found.iter().any(|id| id.starts_with("pb-emu1-"))
            && found.iter().any(|id| id.starts_with("pb-emu2-"))
    );

    for (host, m) in ["pb-emu1", "pb-emu2"].iter().zip(&monitors) {
        let mut args: Vec<String> = vec![
            "--hosts".into(),
            host.to_string(),
            "--monitor".into(),
            m.to_string(),
        ];
        args.extend(server.clone());
        assert_ok(
            &playbook(home.path(), "stop-emulator.yaml", args).await,
            "stop-emulator.yaml",
        );
    }
    assert_ok(
        &playbook(home.path(), "stop-nats.yaml", server.to_vec()).await,
        "stop-nats.yaml",
    );

    // Nothing left: the test broker no longer answers and the processes the daemons started
    // are gone from the process table.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{monitor}/connz"))
            .await
            .is_err()
    );
    for pid in pids {
        assert!(!alive(pid), "process {pid} is still running");
    }
    let conns = mgmt.connections().await;
    assert_eq!(
        conns.len(),
        3,
        "only the three node daemons remain: {conns:?}"
    );
}
