//! The file data store refuses a file it cannot use before any task runs, and replaces the
//! file atomically so that kill -9 never leaves it truncated.

use std::process::{Command, Stdio};
use std::time::Instant;

use crate::test::Test;

fn store_playbook(file: &str, format: &str) -> String {
    format!(
        "data_stores:\n  f:\n    type: file\n    file: {file}\n    format: {format}\ninputs:\n  port:\n    description: port\n    type: Integer\n    default: 1111\n    data: f/port\ntasks:\n  - shell:\n      command: echo port={{{{{{ inputs.port }}}}}}\n"
    )
}

#[test]
fn an_unusable_file_store_stops_the_run_before_any_task_and_is_left_untouched() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("json", "garbage.json", "{\"port\": 43", "invalid JSON"),
        (
            "yaml",
            "garbage.yaml",
            "port: [1, 2\n",
            "invalid YAML at line",
        ),
        (
            "yaml",
            "text.yaml",
            "just some words\n",
            "must contain a mapping",
        ),
        ("json", "empty.json", "", "it is empty"),
        ("yaml", "blank.yaml", "\n\n", "it is empty"),
    ];
    for (format, name, content, reason) in cases {
        let t = Test::new()
            .playbook(&store_playbook(name, format))
            .file(name, content);
        let path = t.path().join(name);
        let before = std::fs::metadata(&path)
            .expect("meta")
            .modified()
            .expect("mtime");
        let out = t
            .args(&["run", "pb.yaml"])
            .status(1)
            .stdout_has(&format!("data file {}", path.display()))
            .stdout_has(reason)
            .stdout_has("Tasks Ran: 0")
            .stderr_lacks("port=1111")
            .stderr_lacks("returning default value")
            .run();
        assert_eq!(out.read(name), *content, "{name} was changed");
        let after = std::fs::metadata(&path)
            .expect("meta")
            .modified()
            .expect("mtime");
        assert_eq!(before, after, "{name} was rewritten");
    }
    // A directory where the file should be.
    let t = Test::new().playbook(&store_playbook("store.json", "json"));
    std::fs::create_dir(t.path().join("store.json")).expect("mkdir");
    let path = t.path().join("store.json");
    t.args(&["run", "pb.yaml"])
        .status(1)
        .stdout_has(&format!("data file {}: it is a directory", path.display()))
        .stdout_has("Tasks Ran: 0")
        .stderr_lacks("port=1111")
        .run();
    // An unreadable file (root reads everything, so only checked as another user).
    if !rustix::process::geteuid().is_root() {
        let t = Test::new()
            .playbook(&store_playbook("secret.json", "json"))
            .file("secret.json", "{\"port\": 1}");
        let path = t.path().join("secret.json");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o000))
            .expect("chmod");
        t.args(&["run", "pb.yaml"])
            .status(1)
            .stdout_has(&format!("data file {}: cannot read it", path.display()))
            .stderr_lacks("port=1111")
            .run();
    }
}

#[test]
fn create_starts_a_file_store_as_an_empty_mapping() {
    let out = Test::new()
        .playbook(
            "data_stores:\n  f:\n    type: file\n    file: new.json\n    format: json\n    create: true\ntasks:\n  - shell:\n      command: 'true'\n",
        )
        .args(&["run", "pb.yaml"])
        .run();
    assert_eq!(out.read("new.json"), "{}");
}

/// Whether the text is a JSON mapping.
fn is_mapping(text: &str) -> bool {
    matches!(
        serde_json::from_str::<serde_json::Value>(text),
        Ok(serde_json::Value::Object(_))
    )
}

#[test]
fn kill_9_during_file_store_writes_never_leaves_a_truncated_file() {
    // A large file makes every write rewrite megabytes; the values written are small.
    let seed = format!("{{\"pad\":\"{}\"}}", "x".repeat(3_000_000));
    let mut body = String::from(
        "data_stores:\n  f:\n    type: file\n    file: store.json\n    format: json\ntasks:\n",
    );
    for i in 0..10 {
        body.push_str(&format!(
            "  - data:\n      action: write\n      key: f/k{}\n      value: v{i}\n",
            i % 5
        ));
    }
    let t = Test::new().playbook(&body);
    let dir = t.path().to_path_buf();
    let store = dir.join("store.json");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_playbook"))
            .args(["run", "pb.yaml"])
            .current_dir(&dir)
            .env_remove("PLAYBOOK_TRACE")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start playbook")
    };
    std::fs::write(&store, &seed).expect("seed");
    let started = Instant::now();
    let status = run().wait().expect("wait");
    assert!(status.success(), "an uninterrupted run works");
    let whole = started.elapsed();
    assert!(is_mapping(&std::fs::read_to_string(&store).expect("read")));
    let attempts = 6;
    let mut broken = Vec::new();
    for i in 0..attempts {
        std::fs::write(&store, &seed).expect("reset");
        let mut child = run();
        // Kill the moment the file is seen shorter than before (in the middle of a write),
        // or at a point spread over the run if it never is.
        let limit = started_limit(whole, i, attempts);
        let watch = Instant::now();
        while watch.elapsed() < limit {
            if std::fs::metadata(&store).is_ok_and(|m| m.len() < seed.len() as u64) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        child.kill().expect("kill -9");
        let _ = child.wait();
        let text = std::fs::read_to_string(&store).expect("read");
        if !is_mapping(&text) {
            broken.push(format!("kill {i}: {} bytes", text.len()));
        }
    }
    assert!(
        broken.is_empty(),
        "{} of {attempts} kills left a broken file: {broken:?}",
        broken.len()
    );
    // The store still works after the kills.
    let status = run().wait().expect("wait");
    assert!(status.success());
}

/// When to kill attempt `i` of `n` if no write was caught: spread over the run.
fn started_limit(whole: std::time::Duration, i: u32, n: u32) -> std::time::Duration {
    whole.mul_f64((f64::from(i) + 0.5) / f64::from(n))
}
