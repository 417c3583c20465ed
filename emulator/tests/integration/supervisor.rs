//! A fleet split over worker processes: every identity answers exactly once, `/debug/vars` sums
//! the workers, a dead worker is started again, and SIGTERM leaves no process behind.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agents::Filter;
use agents::client::{Client, ClientOptions};

const BIN: &str = env!("CARGO_BIN_EXE_emulator");

/// Every process whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && natsproc::process::is_alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// Starts a supervised fleet and returns it with the ready line.
async fn start(args: &[&str]) -> (Child, String) {
    start_with_budget(args, 400).await
}

/// Starts a fleet whose processes may hold `budget` open files each (so that it splits into
/// workers) and returns it with the ready line.
pub(crate) async fn start_with_budget(args: &[&str], budget: u32) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .args([
            "-p",
            "0",
            "--http-address",
            "127.0.0.1",
            "--loglevel",
            "warn",
        ])
        .env("EMULATOR_PROCESS_BUDGET", budget.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(60), line)
        .await
        .expect("the supervisor reports the fleet ready")
        .unwrap()
        .unwrap();
    (child, line)
}

async fn vars(url: &str) -> agents::DebugVars {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_over_its_budget_is_split_over_workers_that_answer_once_each() {
    let (mut child, line) = start(&["-i", "1200", "--name", "split"]).await;
    assert!(line.contains("1200 instances answering"), "{line}");
    assert!(line.contains("in 3 workers"), "{line}");
    let vars_url = line.split_whitespace().last().unwrap().to_owned();
    let nats_url = line
        .split_whitespace()
        .find(|w| w.starts_with("nats://"))
        .unwrap()
        .to_owned();
    let v = vars(&vars_url).await;
    assert_eq!(v.workers.len(), 3);
    assert_eq!(v.emulator.instances.configured, 1200);
    assert_eq!(
        v.emulator.instances.connected, 1200,
        "summed over the workers"
    );
    assert_eq!(
        v.workers
            .iter()
            .map(|w| w.emulator.instances.connected)
            .sum::<u64>(),
        1200
    );
    let firsts: Vec<u64> = v.workers.iter().map(|w| w.first_instance).collect();
    assert_eq!(firsts, vec![0, 400, 800]);
    assert_eq!(v.brokers.len(), 1, "one private broker holds 1,200");

    // Every identity answers exactly once.
    let client = Client::connect(std::slice::from_ref(&nats_url), ClientOptions::default())
        .await
        .unwrap();
    let call = agents::client::Call::discovery(Filter::default(), Duration::from_secs(3));
    let collected = client.call(&call).await.unwrap();
    let senders: Vec<String> = collected
        .replies
        .iter()
        .filter_map(|r| match &r.outcome {
            agents::client::ReplyOutcome::Ok(reply) => Some(reply.sender.clone()),
            _ => None,
        })
        .collect();
    let distinct: BTreeSet<&String> = senders.iter().collect();
    assert_eq!(senders.len(), 1200, "one reply per identity");
    let expected: BTreeSet<String> = (0..1200).map(|i| format!("split-{i}")).collect();
    assert_eq!(
        distinct.into_iter().cloned().collect::<BTreeSet<_>>(),
        expected
    );
    let after = vars(&vars_url).await;
    assert_eq!(after.emulator.requests.received, 1200);
    assert_eq!(after.emulator.replies.sent, 1200);
    let metrics = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(vars_url.replace("/debug/vars", "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("emulator_instances_connected 1200"),
        "{metrics}"
    );

    // SIGTERM stops every worker and the private broker.
    let workers: Vec<u32> = v.workers.iter().map(|w| w.pid).collect();
    let broker = v.brokers[0].pid;
    natsproc::send_signal(child.id() as i32, natsproc::process::Signal::TERM);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    for pid in workers.iter().chain([&broker]) {
        assert!(!natsproc::process::is_alive(*pid), "{pid} left behind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_is_started_again_and_sigkill_of_the_supervisor_orphans_nothing() {
    let (mut child, line) = start(&["-i", "800", "--name", "heal", "--workers", "2"]).await;
    let vars_url = line.split_whitespace().last().unwrap().to_owned();
    let v = vars(&vars_url).await;
    let victim = v.workers[1].pid;
    natsproc::send_signal(victim as i32, natsproc::process::Signal::KILL);
    let deadline = Instant::now() + Duration::from_secs(20);
    let healed = loop {
        let now = vars(&vars_url).await;
        if now.workers[1].restarts == 1 && now.emulator.instances.connected == 800 {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the worker was not restarted: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(healed.workers[1].pid, victim);
    let mut everything = children(child.id());
    assert_eq!(
        everything.len(),
        3,
        "two workers and the broker: {everything:?}"
    );
    natsproc::send_signal(child.id() as i32, natsproc::process::Signal::KILL);
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    while everything.iter().any(|p| natsproc::process::is_alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "orphans after kill -9: {everything:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    everything.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_that_cannot_start_stop_the_fleet_whole_with_a_clear_error() {
    // Nothing listens on this port: every worker gives up after its connect timeout.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let server = format!("nats://127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args(["-i", "900", "--name", "doomed", "--workers", "3"])
        .args(["--server", &server, "--connect-timeout", "1"])
        .args(["-p", "0", "--http-address", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The workers the supervisor started, seen while it runs.
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        seen.extend(children(child.id()));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the supervisor did not give up");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{status}");
    assert!(
        stderr.contains("exited before it was ready"),
        "the error names the worker: {stderr}"
    );
    assert_eq!(seen.len(), 3, "three workers were started: {seen:?}");
    for pid in &seen {
        assert!(!natsproc::process::is_alive(*pid), "{pid} left behind");
    }
}
