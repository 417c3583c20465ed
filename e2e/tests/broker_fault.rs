//! A measure running several rounds while a member of the fleet's private nats-server cluster
//! is killed: every expected reply is answered or missing, named per request, and the
//! accounting closes only on what really happened.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use crate::measure::{assert_summary_closes, emulator_command, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_measure_across_a_member_kill_accounts_for_every_expected_reply() {
    let instances = 600u32;
    let rounds = 8u64;
    let config = emulator::Config::builder("across", instances)
        .brokers(3)
        .build()
        .unwrap();
    let mut running = emulator::start_ready(config, Duration::from_secs(30))
        .await
        .unwrap();
    let brokers = running.debug_vars().brokers;
    let out = tempfile::tempdir().unwrap();
    // The measuring client sits on a member that survives.
    let mut measure = emulator_command()
        .arg("measure")
        .args([
            "--server",
            &brokers[2].url,
            "--expect",
            &instances.to_string(),
        ])
        // Open loop: two requests a second, so the run lasts about four seconds.
        .args([
            "--rounds",
            &rounds.to_string(),
            "--rate",
            "2",
            "--timeout",
            "2",
        ])
        .args([
            "--discovery-timeout",
            "5",
            "--tolerance",
            "1",
            "-q",
            "--json",
        ])
        .arg("--out")
        .arg(out.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill a member once the first rounds are through.
    let requests_csv = out.path().join("requests.csv");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        measure.try_wait().unwrap().is_none(),
        "the measure is still running when the member is killed"
    );
    running.kill_broker(0);
    let output = tokio::task::spawn_blocking(move || {
        let _ = measure.stdin.take();
        measure.wait_with_output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = text(&output.stdout);
    let summary: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}{}", text(&output.stderr)));
    assert_summary_closes(&summary);
    assert_eq!(
        summary["expected"],
        u64::from(instances) * rounds,
        "{summary}"
    );

    // Per request: the identities in times.csv are the answered ones, and answered + missing
    // is every discovered node.
    let requests = std::fs::read_to_string(&requests_csv).unwrap();
    let mut rows = requests.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let times = std::fs::read_to_string(out.path().join("times.csv")).unwrap();
    let mut answered_by_request: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in times.lines().skip(1) {
        let mut f = line.split(',');
        let (request, identity) = (f.next().unwrap(), f.next().unwrap());
        assert!(
            answered_by_request
                .entry(request.to_owned())
                .or_default()
                .insert(identity.to_owned()),
            "one reply time per identity and request"
        );
    }
    let mut missing_total = 0;
    for row in rows {
        let f: Vec<&str> = row.split(',').collect();
        let n = |name: &str| f[col(name)].parse::<u64>().unwrap();
        let answered = answered_by_request
            .get(f[col("request")])
            .map_or(0, |s| s.len());
        assert_eq!(n("answered"), answered as u64, "{row}");
        assert_eq!(n("answered") + n("missing"), n("expected"), "{row}");
        missing_total += n("missing");
    }
    assert_eq!(summary["missing"].as_u64().unwrap(), missing_total);
    // The kill happened mid-run: some request lost replies, and later ones are whole again
    // once the killed member's clients are on the survivors.
    let last = requests.lines().last().unwrap();
    let f: Vec<&str> = last.split(',').collect();
    assert_eq!(
        f[col("missing")],
        "0",
        "the last round is answered by every node again: {requests}"
    );
    assert_eq!(summary["accounting_closes"], true, "{summary}");
    let vars = running.debug_vars();
    assert!(
        vars.emulator.instances.reconnects > 0,
        "the killed member's clients moved"
    );
    assert_eq!(vars.emulator.instances.connected, u64::from(instances));
    running.stop(Duration::from_secs(5)).await;
}
