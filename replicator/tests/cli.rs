//! The binary refuses a bad configuration with positions, before anything connects.

use std::process::Command;

#[tokio::test]
async fn a_bad_file_is_refused_with_positions_before_connecting() {
    let nats = testkit::NatsServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        format!(
            "name: r\nstreams:\n  - stream: SRC\n    source_url: {url}\n    target_url: {url}\n    inspect_durashun: 1h\n",
            url = nats.url()
        ),
    )
    .expect("write");
    let bin = testkit::workspace_binary("stream-replicator");
    for args in [
        vec!["validate".to_owned(), path.display().to_string()],
        vec!["--config".to_owned(), path.display().to_string()],
    ] {
        let out = Command::new(&bin).args(&args).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{}:6:5: ", path.display())),
            "{stderr}"
        );
        assert!(stderr.contains("inspect_durashun"), "{stderr}");
    }
    let bad_value = dir.path().join("value.yaml");
    std::fs::write(&bad_value, "name: r\nstreams:\n  - stream: SRC\n    source_url: nats://x\n    target_url: nats://y\n    max_age: soon\n").expect("write");
    let out = Command::new(&bin)
        .arg("validate")
        .arg(&bad_value)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:6:", bad_value.display())),
        "{stderr}"
    );
    assert!(stderr.contains("not a duration"), "{stderr}");
    let varz = nats.monitor("/varz").await;
    assert_eq!(varz["total_connections"], 0, "nothing connected");
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "name: r\nstreams:\n  - stream: SRC\n    source_url: nats://x\n    target_url: nats://y\n    inspect_field: sender\n    inspect_duration: 1h\n").expect("write");
    let out = Command::new(&bin)
        .arg("validate")
        .arg(&good)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
