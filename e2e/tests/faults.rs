//! `--faults` seen through `emulator measure`: the seeded identities fail, go missing or are
//! slow in measure's own results, and its accounting matches the fleet's fault counters.

use std::collections::BTreeSet;
use std::time::Duration;

use emulator::faults::{Assignment, Fault, FaultSpec};

use crate::measure::{assert_summary_closes, measure_with_env, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_sees_exactly_the_seeded_faults() {
    let instances = 1000u32;
    let spec: FaultSpec = "fail=5%,drop=5%,slow=10%:300ms".parse().unwrap();
    let nats = testkit::NatsServer::start();
    let config = emulator::Config::builder("mf", instances)
        .server(&nats.url())
        .unwrap()
        .faults(spec.clone(), 11)
        .build()
        .unwrap();
    let running = emulator::start_ready(config, Duration::from_secs(30))
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "--server",
        &nats.url(),
        "--expect",
        "1000",
        "--rounds",
        "1",
        "--timeout",
        "3",
        "--tolerance",
        "1",
        "--json",
        "-q",
        "--out",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([out.path().display().to_string()])
    .collect();
    let result = measure_with_env(args, Vec::new()).await;
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&result.stdout), text(&result.stderr)));
    assert_summary_closes(&summary);

    let assignment = Assignment::new(&spec, instances, 11);
    let with = |wanted: fn(Fault) -> bool| -> BTreeSet<String> {
        (0..instances)
            .filter(|i| assignment.of(*i).is_some_and(wanted))
            .map(|i| format!("mf-{i}"))
            .collect()
    };
    let dropping = with(|f| matches!(f, Fault::Drop));
    let slow = with(|f| matches!(f, Fault::Slow(_)));
    assert_eq!((dropping.len(), slow.len()), (50, 100));

    // Missing: exactly the dropping identities, by name.
    assert_eq!(summary["missing"], 50, "{summary}");
    let missing: BTreeSet<String> = summary["missing_identities"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(missing, dropping);
    // Failed: the failing 5 % answered with statuscode 1.
    assert_eq!(summary["failed"], 50, "{summary}");
    assert_eq!(summary["ok"], 900, "{summary}");
    // Slow: the slow 10 % answered after at least 300 ms. Nobody else did either, unless the
    // machine itself is slow: when the other replies' p99 is well under 300 ms (a quiet
    // machine), the late set must be exactly the slow set.
    let times = std::fs::read_to_string(out.path().join("times.csv")).unwrap();
    let replies: Vec<(String, u128)> = times
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_owned(), f[2].parse().unwrap())
        })
        .collect();
    let late_ones: BTreeSet<String> = replies
        .iter()
        .filter(|(_, ns)| *ns >= 300_000_000)
        .map(|(id, _)| id.clone())
        .collect();
    let missed: Vec<&String> = slow.difference(&late_ones).collect();
    assert!(
        missed.is_empty(),
        "slow identities answered before 300 ms: {missed:?}"
    );
    let mut others: Vec<u128> = replies
        .iter()
        .filter(|(id, _)| !slow.contains(id))
        .map(|(_, ns)| *ns)
        .collect();
    others.sort_unstable();
    let p99 = others[others.len() * 99 / 100];
    if p99 < 200_000_000 {
        assert_eq!(late_ones, slow);
    } else {
        eprintln!(
            "loaded machine: the other replies' p99 is {} ms, so {} of them were also late; \
             only the slow set's lateness is checked",
            p99 / 1_000_000,
            late_ones.len() - slow.len()
        );
    }
    // The fleet's counters say the same.
    let vars = running.debug_vars();
    for (kind, n) in [("fail", 50), ("drop", 50), ("slow", 100)] {
        assert_eq!(vars.emulator.faults[kind].events, n, "{kind}");
    }
    running.stop(Duration::from_secs(5)).await;
}
