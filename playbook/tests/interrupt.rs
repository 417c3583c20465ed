//! SIGINT and SIGTERM stop a run: no further task, the running task's process group stopped,
//! `on_fail` and `post_book` run, locks released, an "interrupted" report, exit 130/143.
//! Real `playbook` processes, a real etcd, real signals.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use testkit::Etcd;

const HEADER: &str =
    "name: test\nversion: 1.0.0\nauthor: tester\ndescription: interrupts\nrun_as: choria=tester\n";

fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_playbook"))
        .arg("run")
        .arg("pb.yaml")
        .args(args)
        .current_dir(dir)
        .env_remove("PLAYBOOK_TRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start playbook")
}

fn send(child: &Child, signal: Signal) {
    let pid = Pid::from_child(child);
    kill_process(pid, signal).expect("send signal");
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_a_locked_sleep_exits_130_quickly_releases_the_lock_and_reports_interrupted()
{
    let etcd = Etcd::start();
    let url = etcd.url();
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path().to_path_buf();
    let store = format!(
        "data_stores:\n  s:\n    type: etcd\n    url: {url}\n    ttl: 10\n    timeout: 5\n"
    );
    let body = format!(
        "{HEADER}{store}locks:\n  - s\ntasks:\n  - shell:\n      command: 'sleep 30 & echo $! > sleeper.pid; touch started; wait'\n  - shell:\n      command: 'touch second-task-ran'\nhooks:\n  on_success:\n    - shell:\n        command: 'touch on-success-ran'\n  on_fail:\n    - shell:\n        command: 'touch on-fail-ran'\n  post_book:\n    - shell:\n        command: 'touch post-book-ran'\n"
    );
    std::fs::write(d.join("pb.yaml"), &body).expect("write");
    let child = spawn(&d, &["--report", "report.yaml"]);
    wait_for(&d.join("started"), Duration::from_secs(20)).await;
    let sleeper: i32 = std::fs::read_to_string(d.join("sleeper.pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("pid number");
    assert!(alive(sleeper), "the task's sleep is running");
    let sent = Instant::now();
    send(&child, Signal::INT);
    let (code, text) = tokio::task::spawn_blocking(move || finish(child))
        .await
        .expect("join");
    let took = sent.elapsed();
    assert_eq!(code, 130, "{text}");
    assert!(took < Duration::from_secs(2), "exit took {took:?}\n{text}");
    assert!(text.contains("Overall outcome: interrupted"), "{text}");
    assert!(!d.join("second-task-ran").exists(), "{text}");
    assert!(!d.join("on-success-ran").exists(), "{text}");
    assert!(
        d.join("on-fail-ran").exists(),
        "on_fail did not run\n{text}"
    );
    assert!(
        d.join("post-book-ran").exists(),
        "post_book did not run\n{text}"
    );
    assert!(
        text.contains("Releasing playbook lock s/choria/locks/playbook/test"),
        "{text}"
    );
    // The whole process group was stopped, not only `sh`.
    let deadline = Instant::now() + Duration::from_secs(1);
    while alive(sleeper) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(sleeper), "the task's sleep survived the interrupt");
    let report = std::fs::read_to_string(d.join("report.yaml")).expect("report");
    assert!(report.contains("outcome: interrupted"), "{report}");
    assert!(report.contains("success: false"), "{report}");
    assert!(report.contains("Interrupted by SIGINT"), "{report}");

    // A second run gets the lock at once (its timeout is 5 s, the lease TTL 10 s).
    let body = format!(
        "{HEADER}{store}locks:\n  - s\ntasks:\n  - shell:\n      command: 'echo second-run'\n"
    );
    std::fs::write(d.join("pb.yaml"), &body).expect("write");
    let started = Instant::now();
    let child = spawn(&d, &[]);
    let (code, text) = tokio::task::spawn_blocking(move || finish(child))
        .await
        .expect("join");
    assert_eq!(code, 0, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the second run waited {:?} for the lock\n{text}",
        started.elapsed()
    );
    assert!(text.contains("second-run"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_143_and_a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path().to_path_buf();
    // on_fail takes 30 s: only the second signal can end the run quickly.
    let body = format!(
        "{HEADER}tasks:\n  - shell:\n      command: 'touch started; sleep 30'\nhooks:\n  on_fail:\n    - shell:\n        command: 'sleep 30 & echo $! > on-fail.pid; touch on-fail-started; wait'\n"
    );
    std::fs::write(d.join("pb.yaml"), &body).expect("write");
    let child = spawn(&d, &[]);
    wait_for(&d.join("started"), Duration::from_secs(20)).await;
    send(&child, Signal::TERM);
    wait_for(&d.join("on-fail-started"), Duration::from_secs(5)).await;
    let sent = Instant::now();
    send(&child, Signal::INT);
    let (code, text) = tokio::task::spawn_blocking(move || finish(child))
        .await
        .expect("join");
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "took {:?}",
        sent.elapsed()
    );
    assert_eq!(code, 130, "the second signal's code\n{text}");
    assert!(text.contains("second signal (SIGINT)"), "{text}");
    // Even an immediate exit stops the running hook's process group.
    let sleeper: i32 = std::fs::read_to_string(d.join("on-fail.pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("pid number");
    let deadline = Instant::now() + Duration::from_secs(1);
    while alive(sleeper) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !alive(sleeper),
        "on_fail's sleep survived the second signal"
    );

    // SIGTERM alone: exit 143 with an interrupted outcome.
    let body = format!("{HEADER}tasks:\n  - shell:\n      command: 'touch started2; sleep 30'\n");
    std::fs::write(d.join("pb.yaml"), &body).expect("write");
    let child = spawn(&d, &[]);
    wait_for(&d.join("started2"), Duration::from_secs(20)).await;
    let sent = Instant::now();
    send(&child, Signal::TERM);
    let (code, text) = tokio::task::spawn_blocking(move || finish(child))
        .await
        .expect("join");
    assert_eq!(code, 143, "{text}");
    assert!(sent.elapsed() < Duration::from_secs(2), "{text}");
    assert!(text.contains("Overall outcome: interrupted"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_while_waiting_for_a_lock_stops_the_wait() {
    let etcd = Etcd::start();
    let url = etcd.url();
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path().to_path_buf();
    let store = format!(
        "data_stores:\n  s:\n    type: etcd\n    url: {url}\n    ttl: 10\n    timeout: 60\n"
    );
    let body = format!(
        "{HEADER}{store}locks:\n  - s\ntasks:\n  - shell:\n      command: 'touch holding; sleep 30'\n"
    );
    std::fs::write(d.join("pb.yaml"), &body).expect("write");
    let holder = spawn(&d, &[]);
    wait_for(&d.join("holding"), Duration::from_secs(20)).await;
    let body = format!(
        "{HEADER}{store}locks:\n  - s\ntasks:\n  - shell:\n      command: 'touch must-not-run'\n"
    );
    std::fs::write(d.join("pb.yaml"), &body).expect("write");
    let waiter = spawn(&d, &["--report", "report.yaml"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = Instant::now();
    send(&waiter, Signal::INT);
    let (code, text) = tokio::task::spawn_blocking(move || finish(waiter))
        .await
        .expect("join");
    assert_eq!(code, 130, "{text}");
    assert!(sent.elapsed() < Duration::from_secs(2), "{text}");
    assert!(!d.join("must-not-run").exists(), "{text}");
    let report = std::fs::read_to_string(d.join("report.yaml")).expect("report");
    assert!(report.contains("outcome: interrupted"), "{report}");
    send(&holder, Signal::INT);
    let (code, text) = tokio::task::spawn_blocking(move || finish(holder))
        .await
        .expect("join");
    assert_eq!(code, 130, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_fail_and_post_book_after_an_interrupt_are_stopped_at_the_cleanup_deadline() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path().to_path_buf();
    let body = format!(
        "{HEADER}tasks:\n  - shell:\n      command: 'touch started; sleep 30'\nhooks:\n  on_fail:\n    - shell:\n        command: 'sleep 60'\n  post_book:\n    - shell:\n        command: 'touch post-book-ran'\n"
    );
    std::fs::write(d.join("pb.yaml"), &body).expect("write");
    let child = spawn(&d, &["--report", "report.yaml"]);
    wait_for(&d.join("started"), Duration::from_secs(20)).await;
    let sent = Instant::now();
    send(&child, Signal::INT);
    let (code, text) = tokio::task::spawn_blocking(move || finish(child))
        .await
        .expect("join");
    let took = sent.elapsed();
    assert_eq!(code, 130, "{text}");
    let deadline = playbook::runner::CLEANUP_DEADLINE;
    assert!(
        took >= deadline && took < deadline + Duration::from_secs(3),
        "took {took:?}\n{text}"
    );
    assert!(
        text.contains("Interrupted by the 10s cleanup deadline"),
        "{text}"
    );
    assert!(!d.join("post-book-ran").exists(), "{text}");
    let report = std::fs::read_to_string(d.join("report.yaml")).expect("report");
    assert!(report.contains("outcome: interrupted"), "{report}");
}
