//! `emulator measure --registration` against a 500-instance fleet registering every 2 s without
//! splay: every sender accounted, the summary equal to the raw per-sender rows, and missing
//! senders named with a failing exit code.

use std::time::Duration;

use testkit::NatsServer;

use crate::measure::{measure_with_env, text};

/// Rows of senders.csv as (sender, registrations).
fn sender_rows(dir: &std::path::Path) -> Vec<(String, u64)> {
    let csv = std::fs::read_to_string(dir.join("senders.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("sender,registrations,bytes,first_s,last_s")
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_owned(), f[1].parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_registration_accounts_for_all_500_senders() {
    let nats = NatsServer::start();
    let mut registration = emulator::RegistrationConfig::new(
        agents::registration::Kind::InventoryContent,
        Duration::from_secs(2),
    );
    registration.splay = false;
    let config = emulator::Config::builder("e2ereg", 500)
        .server(&nats.url())
        .unwrap()
        .registration(registration)
        .build()
        .unwrap();
    let running = emulator::start_ready(config, Duration::from_secs(30))
        .await
        .expect("fleet ready");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ok");
    let run = |expect: u64, out: &std::path::Path| {
        vec![
            "--server".to_owned(),
            nats.url(),
            "--registration".into(),
            "--expect".into(),
            expect.to_string(),
            "--expect-prefix".into(),
            "e2ereg".into(),
            "--duration".into(),
            "4.5".into(),
            "--json".into(),
            "--out".into(),
            out.display().to_string(),
        ]
    };
    let output = measure_with_env(run(500, &out), Vec::new()).await;
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["senders"], 500, "{summary}");
    assert_eq!(summary["missing"], 0);
    assert_eq!(summary["invalid"], 0);
    assert_eq!(summary["accounting_closes"], true);
    assert_eq!(
        summary["by_protocol"]["choria:registration:inventorycontent:1"],
        summary["decoded"]
    );
    // 4.5 s at a 2 s interval: every sender twice at least, three times at most.
    let rows = sender_rows(&out);
    assert_eq!(rows.len(), 500);
    assert!(rows.iter().all(|(_, n)| (2..=3).contains(n)), "{rows:?}");
    let total: u64 = rows.iter().map(|(_, n)| n).sum();
    assert_eq!(summary["decoded"], total, "summary = sum of senders.csv");
    let rounds = summary["rounds"].as_array().unwrap();
    assert_eq!(rounds[0]["senders"], 500);
    assert_eq!(rounds[1]["senders"], 500);
    let by_round: u64 = rounds.iter().map(|r| r["senders"].as_u64().unwrap()).sum();
    assert_eq!(by_round, total);
    let seconds = std::fs::read_to_string(out.join("seconds.csv")).unwrap();
    let by_second: u64 = seconds
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(by_second, total);

    // Five more expected than the fleet has: exit 1, and they are named.
    let missing = dir.path().join("missing");
    let output = measure_with_env(run(505, &missing), Vec::new()).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("5 of 505 expected senders did not register"),
        "{stderr}"
    );
    for i in 500..505 {
        assert!(stderr.contains(&format!("e2ereg-{i}")), "{stderr}");
    }
    let summary: serde_json::Value = serde_json::from_str(&text(&output.stdout)).unwrap();
    assert_eq!(summary["missing"], 5);
    assert_eq!(summary["missing_senders"].as_array().unwrap().len(), 5);
    assert!(running.stop(Duration::from_secs(5)).await.drained_cleanly);
}
