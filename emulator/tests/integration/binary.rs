//! The real `emulator` binary: embedded broker, signals, and clear errors.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_emulator");

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_servers_it_starts_a_private_broker_and_stops_it_on_sigterm() {
    let mut child = Command::new(BIN)
        .args([
            "-i",
            "5",
            "--name",
            "solo",
            "-p",
            "0",
            "--http-address",
            "127.0.0.1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(20), line)
        .await
        .expect("the emulator reports it is answering")
        .unwrap()
        .unwrap();
    assert!(
        line.contains("5 instances answering on nats://127.0.0.1:"),
        "{line}"
    );
    let vars_url = line.split_whitespace().last().unwrap().to_owned();
    let vars: serde_json::Value = reqwest::get(&vars_url).await.unwrap().json().await.unwrap();
    assert_eq!(vars["name"], "solo");
    assert_eq!(vars["emulator"]["instances"]["connected"], 5);
    let nats_url = line
        .split_whitespace()
        .find(|w| w.starts_with("nats://"))
        .unwrap();
    let client = agents::client::Client::connect(&[nats_url.to_owned()], Default::default())
        .await
        .unwrap();
    let pongs = client
        .discover(agents::Filter::default(), Duration::from_secs(1), None)
        .await
        .unwrap();
    assert_eq!(pongs.len(), 5);
    drop(client);

    let broker_pid = nats_server_children(child.id());
    assert_eq!(broker_pid.len(), 1, "one private nats-server child");
    natsproc::send_signal(child.id() as i32, rustix_signal_term());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "exits within the deadline"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "clean exit: {status}");
    assert!(
        !pid_alive(broker_pid[0]),
        "the private nats-server is stopped"
    );
}

fn rustix_signal_term() -> rustix::process::Signal {
    natsproc::process::Signal::TERM
}

fn nats_server_children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some(rest) = stat.rsplit_once(") ") else {
            continue;
        };
        let ppid: u32 = rest
            .1
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == parent && stat.contains("(nats-server)") {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_missing_nats_server_names_the_setup_command() {
    let out = Command::new(BIN)
        .args(["-i", "1", "-p", "0"])
        .env("NATS_SERVER_BIN", "/nonexistent/nats-server")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("scripts/setup"), "{stderr}");
}

#[test]
fn a_fleet_that_cannot_fit_is_refused_before_connecting() {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(1 << 20);
    let too_many = (hard + 1).to_string();
    let started = Instant::now();
    let out = Command::new(BIN)
        .args([
            "-i",
            &too_many,
            "--workers",
            "1",
            "-p",
            "0",
            "--server",
            "127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("open files") && stderr.contains("lower --instances"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once"
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["-i", "abc"][..],
        &["--instances", "-1"],
        &[],
        &["-i", "1", "--bogus"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("error:"),
            "{args:?}"
        );
    }
    let out = Command::new(BIN).args(["-i", "0"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a refused configuration is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--instances must be at least 1"));
}

#[test]
fn a_missing_config_file_is_one_line_naming_the_os_error_once() {
    let out = Command::new(BIN)
        .args(["-i", "1", "-c", "/nonexistent/emulator.conf"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line, no backtrace: {stderr}"
    );
    assert!(stderr.contains("/nonexistent/emulator.conf"), "{stderr}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn an_oversized_fleet_is_refused_before_it_is_laid_out() {
    let out = Command::new(BIN)
        .args(["-i", "10000000", "-p", "0", "--loglevel", "info"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lower --instances"), "{stderr}");
    assert!(
        !stderr.contains("spreading"),
        "laid out before refusing: {stderr}"
    );
}

#[test]
fn a_refused_server_gives_a_summary_every_ten_seconds_and_connect_timeout_gives_up() {
    // Nothing listens on port 1: every attempt is refused and retried.
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["-i", "3", "-p", "0", "--http-address", "127.0.0.1"])
        .args(["--server", "127.0.0.1:1", "--connect-timeout", "11"])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(1),
        "not connected in time is a failure"
    );
    assert!(
        took >= Duration::from_secs(11) && took < Duration::from_secs(16),
        "{took:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summaries: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("connected 0 of 3 instances to nats://127.0.0.1:1"))
        .collect();
    // One line at 10 s, and the final error at 11 s; no warning per attempt.
    assert_eq!(summaries.len(), 2, "{stderr}");
    assert!(summaries.iter().all(|l| l.contains("refused")), "{stderr}");
    assert!(stderr.contains("--connect-timeout 11s passed"), "{stderr}");
    assert!(!stderr.contains("connect failed, retrying"), "{stderr}");
}

#[test]
fn environment_variables_set_flags() {
    let out = Command::new(BIN)
        .env("EMULATOR_INSTANCES", "0")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--instances must be at least 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_while_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = start_private("twice", tmp.path()).await;
    // A frozen private broker ignores SIGTERM, so the graceful stop waits for its grace period.
    let broker = nats_server_children(child.id());
    assert_eq!(broker.len(), 1);
    let broker = broker[0] as i32;
    natsproc::send_signal(broker, natsproc::process::Signal::STOP);
    natsproc::send_signal(child.id() as i32, natsproc::process::Signal::INT);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "still stopping after the first signal"
    );
    natsproc::send_signal(child.id() as i32, natsproc::process::Signal::INT);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "the second signal exits at once"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(status.code(), Some(130));
    // The private broker is stopped on the way out, even frozen, and its directory removed.
    let gone = wait_until(Duration::from_secs(2), || {
        !natsproc::process::is_alive(broker as u32)
    });
    natsproc::send_signal(broker, natsproc::process::Signal::KILL);
    natsproc::send_signal(broker, natsproc::process::Signal::CONT);
    assert!(
        gone,
        "the second signal left the private nats-server {broker} running"
    );
    assert!(
        broker_dirs(tmp.path(), child.id()).is_empty(),
        "the second signal left the broker's directory behind"
    );
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// The private-broker directories of emulator process `pid` in the temp directory `tmp`.
fn broker_dirs(tmp: &std::path::Path, pid: u32) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("emulator-nats-{pid}-")))
        })
        .collect()
}

/// Starts the binary with a private broker and waits for its ready line.
async fn start_private(name: &str, tmp: &std::path::Path) -> std::process::Child {
    let mut child = Command::new(BIN)
        .args([
            "-i",
            "2",
            "--name",
            name,
            "-p",
            "0",
            "--http-address",
            "127.0.0.1",
        ])
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    tokio::time::timeout(Duration::from_secs(20), ready)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_emulator_takes_its_private_broker_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = start_private("killed", tmp.path()).await;
    let broker = nats_server_children(child.id());
    assert_eq!(broker.len(), 1);
    natsproc::send_signal(child.id() as i32, natsproc::process::Signal::KILL);
    let _ = child.wait();
    let gone = wait_until(Duration::from_secs(3), || {
        !natsproc::process::is_alive(broker[0])
    });
    natsproc::send_signal(broker[0] as i32, natsproc::process::Signal::KILL);
    assert!(
        gone,
        "kill -9 of the emulator orphaned nats-server {}",
        broker[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_left_by_crashed_runs_are_removed_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    // A pid that cannot be alive (above the kernel's pid_max limit of 2^22).
    let stale = tmp.path().join("emulator-nats-4194305-7");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("nats-server.log"), "old").unwrap();
    let unrelated = tmp.path().join("someone-else");
    std::fs::create_dir_all(&unrelated).unwrap();
    let mut child = start_private("tidy", tmp.path()).await;
    assert!(
        !stale.exists(),
        "the crashed run's directory is still there"
    );
    assert!(
        unrelated.exists(),
        "only the emulator's own directories are removed"
    );
    natsproc::send_signal(child.id() as i32, natsproc::process::Signal::TERM);
    let _ = child.wait();
}
