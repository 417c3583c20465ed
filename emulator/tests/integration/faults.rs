//! `--faults`: the instances chosen by the seed fail, go missing or answer late, exactly, and
//! `/debug/vars` counts what the faults did.

use std::collections::BTreeMap;
use std::time::Duration;

use agents::client::{Call, ReplyOutcome, Targets};
use agents::{Filter, RpcReply, StatusCode};
use emulator::faults::{Assignment, Fault, FaultSpec};

use crate::common::Fleet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeded_instances_fail_go_missing_or_are_slow() {
    let instances = 1000;
    let faults = "fail=5%,drop=5%,slow=10%:300ms";
    let mut fleet = Fleet::start("faulty", instances, &["--faults", faults, "--seed", "42"]).await;
    let spec: FaultSpec = faults.parse().unwrap();
    let expected = Assignment::new(&spec, instances, 42);
    let of = |identity: &str| {
        let index: u32 = identity.rsplit('-').next().unwrap().parse().unwrap();
        expected.of(index)
    };
    let client = fleet.client().await;
    // Discovery is answered by every instance, faulty or not.
    let found = client
        .discover(
            Filter::default(),
            Duration::from_secs(3),
            Some(instances as usize),
        )
        .await
        .unwrap();
    assert_eq!(found.len(), instances as usize);

    let call = Call::rpc(
        "emulated0",
        "generate",
        Default::default(),
        Targets::Broadcast,
        Duration::from_secs(3),
    );
    let collected = client.call(&call).await.unwrap();
    let mut answers: BTreeMap<String, (StatusCode, Duration)> = BTreeMap::new();
    for reply in &collected.replies {
        let ReplyOutcome::Ok(r) = &reply.outcome else {
            panic!("unexpected reply {reply:?}");
        };
        let body: RpcReply = serde_json::from_str(&r.body).unwrap();
        assert!(
            answers
                .insert(r.sender.clone(), (body.statuscode, reply.elapsed))
                .is_none(),
            "one reply per sender"
        );
    }
    let (mut failed, mut slow, mut ok) = (0, 0, 0);
    for identity in fleet.identities() {
        let answer = answers.get(&identity);
        match (of(&identity), answer) {
            (Some(Fault::Drop), None) => {}
            (Some(Fault::Drop), Some(a)) => panic!("{identity} should drop, answered {a:?}"),
            (_, None) => panic!("{identity} did not answer"),
            (Some(Fault::Fail), Some((code, _))) => {
                assert_eq!(*code, StatusCode::Aborted, "{identity}");
                failed += 1;
            }
            (Some(Fault::Slow(delay)), Some((code, elapsed))) => {
                assert_eq!(*code, StatusCode::Ok, "{identity}");
                assert!(*elapsed >= delay, "{identity} answered in {elapsed:?}");
                slow += 1;
            }
            (None | Some(Fault::Flap(_)), Some((code, _))) => {
                assert_eq!(*code, StatusCode::Ok, "{identity}");
                ok += 1;
            }
        }
    }
    assert_eq!((failed, slow, ok), (50, 100, 800));
    assert_eq!(answers.len(), 950, "exactly the dropping 5 % are missing");

    let vars = fleet.vars();
    let f = &vars["emulator"]["faults"];
    for (kind, instances, events) in [("fail", 50, 50), ("drop", 50, 50), ("slow", 100, 100)] {
        assert_eq!(f[kind]["instances"], instances, "{kind}: {f}");
        assert_eq!(f[kind]["events"], events, "{kind}: {f}");
    }
    assert_eq!(f["flap"]["instances"], 0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_instances_disconnect_every_period_and_come_back() {
    let mut fleet = Fleet::start("flappy", 20, &["--faults", "flap=25%:1s", "--seed", "3"]).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let vars = fleet.vars();
    let flaps = vars["emulator"]["faults"]["flap"]["events"]
        .as_u64()
        .unwrap();
    assert_eq!(vars["emulator"]["faults"]["flap"]["instances"], 5);
    assert!(
        (10..=20).contains(&flaps),
        "5 instances × ~3 periods, got {flaps}"
    );
    assert!(
        vars["emulator"]["instances"]["reconnects"]
            .as_u64()
            .unwrap()
            >= 10,
        "{vars}"
    );
    let client = fleet.client().await;
    let found = client
        .discover(Filter::default(), Duration::from_secs(2), Some(20))
        .await
        .unwrap();
    assert_eq!(found.len(), 20, "flapping instances are back and answering");
    fleet.stop().await;
}

#[test]
fn a_bad_faults_flag_is_a_usage_error_naming_the_position() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_emulator"))
        .args(["-i", "1", "--faults", "fail=5%,slw=1%:1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at position 8: unknown fault"), "{stderr}");
}
