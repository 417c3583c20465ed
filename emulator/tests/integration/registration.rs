//! Registration from every instance, received by a plain NATS subscriber that decodes each
//! message (request → agent `registration` → payload protocol → content): counts per interval
//! and per sender, splay, file content, and the fleet's counters against what arrived.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agents::registration::{self, Registration};
use futures::StreamExt as _;
use testkit::NatsServer;

use crate::common::start_emulator;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// One decoded registration: who sent it, when it arrived (unix ms), its NATS body size.
struct Arrival {
    sender: String,
    at_ms: u64,
    bytes: usize,
    registration: Registration,
}

/// Collects every registration on `subject` until `until` (unix ms), decoding each; a message
/// that does not decode fails the test.
async fn collect(sub: &mut async_nats::Subscriber, until: u64) -> Vec<Arrival> {
    let mut out = Vec::new();
    loop {
        let now = unix_ms();
        if now >= until {
            return out;
        }
        let left = until - now;
        let next = tokio::time::timeout(Duration::from_millis(left), sub.next()).await;
        let Ok(Some(msg)) = next else {
            return out;
        };
        let at_ms = unix_ms();
        let (request, registration) =
            registration::decode(&msg.payload, agents::codec::DEFAULT_MAX_MESSAGE)
                .unwrap_or_else(|e| panic!("undecodable registration: {e}"));
        assert_eq!(request.agent, "registration");
        assert_eq!(request.reply_to, "dev.null");
        assert_eq!(
            request.mc_sender.as_deref(),
            Some(request.senderid.as_str())
        );
        out.push(Arrival {
            sender: request.senderid,
            at_ms,
            bytes: msg.payload.len(),
            registration,
        });
        if at_ms > until {
            // Read after a timer that fired late under load: the last one, past the window
            // (a caller counting a window drops it with `within`).
            return out;
        }
    }
}

/// The arrivals up to `until` (unix ms).
fn within(arrivals: Vec<Arrival>, until: u64) -> Vec<Arrival> {
    arrivals.into_iter().filter(|a| a.at_ms <= until).collect()
}

async fn subscriber(
    nats: &NatsServer,
    subject: &str,
) -> (async_nats::Client, async_nats::Subscriber) {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let sub = client.subscribe(subject.to_owned()).await.unwrap();
    client.flush().await.unwrap();
    (client, sub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_instances_register_once_per_interval_without_splay() {
    let nats = NatsServer::start();
    let (_client, mut sub) = subscriber(&nats, "mcollective.broadcast.agent.registration").await;
    // The first tick 8 s out (generous: the machine is shared), so that the fleet is connected
    // before it and every cycle is a scheduled one.
    let epoch = unix_ms() + 8_000;
    let epoch_flag = epoch.to_string();
    let running = start_emulator(
        &nats.url(),
        "reg",
        500,
        &[
            "--registration",
            "inventorycontent",
            "--registerinterval",
            "2",
            "--no-registration-splay",
            "--registration-epoch",
            &epoch_flag,
        ],
    )
    .await;
    assert!(
        unix_ms() < epoch,
        "the fleet connected before the first tick"
    );
    // Cycles 0, 1 and 2: at the epoch, epoch + 2 s and epoch + 4 s.
    let arrivals = within(collect(&mut sub, epoch + 5_900).await, epoch + 5_900);
    let mut per_cycle: BTreeMap<u64, BTreeMap<String, u32>> = BTreeMap::new();
    for a in &arrivals {
        *per_cycle
            .entry(a.at_ms.saturating_sub(epoch) / 2000)
            .or_default()
            .entry(a.sender.clone())
            .or_default() += 1;
        let Registration::Inventory { data, compressed } = &a.registration else {
            panic!("inventory expected");
        };
        assert!(compressed);
        assert_eq!(data.facts["identity"], a.sender.as_str());
        assert_eq!(data.status.as_ref().unwrap().identity, a.sender);
        assert!(data.classes.iter().any(|c| c.starts_with("shard_")));
    }
    for cycle in [0, 1, 2] {
        let senders = &per_cycle[&cycle];
        assert_eq!(senders.len(), 500, "cycle {cycle}: every sender");
        assert!(
            senders.values().all(|n| *n == 1),
            "cycle {cycle}: each sender once"
        );
    }
    let report = running.stop(Duration::from_secs(5)).await;
    assert!(report.drained_cleanly);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_in_debug_vars_and_metrics_match_what_arrived() {
    let nats = NatsServer::start();
    let (_client, mut sub) = subscriber(&nats, "reg.in").await;
    // One registration per instance at start, then none for an hour: the counters are final
    // once 200 have arrived.
    let running = start_emulator(
        &nats.url(),
        "cnt",
        200,
        &[
            "--registration",
            "inventory_content",
            "--registerinterval",
            "3600",
            "--no-registration-splay",
            "--registration-target",
            "reg.in",
        ],
    )
    .await;
    let mut arrivals = Vec::new();
    let deadline = unix_ms() + 10_000;
    while arrivals.len() < 200 && unix_ms() < deadline {
        arrivals.extend(collect(&mut sub, unix_ms() + 200).await);
    }
    arrivals.extend(collect(&mut sub, unix_ms() + 300).await);
    assert_eq!(arrivals.len(), 200);
    let bytes: u64 = arrivals.iter().map(|a| a.bytes as u64).sum();
    let vars = running.debug_vars();
    let reg = &vars.emulator.registration;
    assert_eq!(reg.published, 200);
    assert_eq!(reg.bytes, bytes);
    assert_eq!(reg.publish_errors, 0);
    let metrics = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/metrics", running.http_addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "emulator_registrations_published_total 200".to_owned(),
        format!("emulator_registration_bytes_total {bytes}"),
        "emulator_registration_publish_errors_total 0".to_owned(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    assert!(running.stop(Duration::from_secs(5)).await.drained_cleanly);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splay_spreads_first_registrations_over_the_interval() {
    let nats = NatsServer::start();
    let (_client, mut sub) = subscriber(&nats, "mcollective.broadcast.agent.registration").await;
    let epoch = unix_ms() + 8_000;
    let epoch_flag = epoch.to_string();
    let running = start_emulator(
        &nats.url(),
        "spl",
        500,
        &[
            "--registration",
            "inventorycontent",
            "--registerinterval",
            "4",
            "--registration-epoch",
            &epoch_flag,
        ],
    )
    .await;
    assert!(
        unix_ms() < epoch,
        "the fleet connected before the first tick"
    );
    let arrivals = within(collect(&mut sub, epoch + 4_000).await, epoch + 4_000);
    assert!(running.stop(Duration::from_secs(5)).await.drained_cleanly);
    let mut first: BTreeMap<String, u64> = BTreeMap::new();
    for a in &arrivals {
        first
            .entry(a.sender.clone())
            .or_insert(a.at_ms.saturating_sub(epoch));
    }
    // Offsets are uniform in 0..4 s: about 125 per second (binomial, sd 10). Generous bounds
    // for a shared machine still tell splay from a storm.
    let mut per_second = [0u32; 4];
    for offset in first.values() {
        per_second[(*offset / 1000).min(3) as usize] += 1;
    }
    assert!(
        first.len() >= 450,
        "most senders registered once: {}",
        first.len()
    );
    assert!(
        per_second.iter().all(|n| (60..=220).contains(n)),
        "first registrations per second of the interval: {per_second:?}"
    );
    let mut counts: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for a in &arrivals {
        counts.entry(a.sender.as_str()).or_default().push(a.at_ms);
    }
    let twice: Vec<(&&str, &Vec<u64>)> = counts.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "nobody registers twice within the interval (epoch {epoch}): {twice:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filecontent_publishes_the_file_as_the_config_file_says() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("registration.json");
    std::fs::write(&data, br#"{"hello":"registration"}"#).unwrap();
    let conf = dir.path().join("server.conf");
    std::fs::write(
        &conf,
        format!(
            "registration = file_content\nregisterinterval = 3600\nregistration_splay = false\n\
             registration_collective = collective1\n\
             plugin.choria.registration.file_content.data = {}\n\
             plugin.choria.registration.file_content.compression = false\n",
            data.display()
        ),
    )
    .unwrap();
    let (_client, mut sub) = subscriber(&nats, "collective1.broadcast.agent.registration").await;
    let running = start_emulator(
        &nats.url(),
        "file",
        20,
        &["--collectives", "2", "-c", conf.to_str().unwrap()],
    )
    .await;
    let mut arrivals = Vec::new();
    let deadline = unix_ms() + 10_000;
    while arrivals.len() < 20 && unix_ms() < deadline {
        arrivals.extend(collect(&mut sub, unix_ms() + 200).await);
    }
    assert_eq!(arrivals.len(), 20);
    for a in &arrivals {
        let Registration::File(f) = &a.registration else {
            panic!("file content expected");
        };
        assert_eq!(f.content, br#"{"hello":"registration"}"#);
        assert_eq!(f.file, data.display().to_string());
        assert!(!f.compressed, "compression = false");
        assert!(!f.updated);
        assert!(f.mtime > 0);
    }
    assert!(running.stop(Duration::from_secs(5)).await.drained_cleanly);
}

#[test]
fn registration_flags_are_checked() {
    use clap::Parser as _;
    let parse = |extra: &[&str]| {
        let mut argv = vec!["emulator", "--name", "x", "-i", "1"];
        argv.extend_from_slice(extra);
        emulator::Config::from_args(&emulator::cli::Args::try_parse_from(argv).unwrap())
    };
    let err = parse(&["--registration", "filecontent"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--registration-file"), "{err}");
    let err = parse(&[
        "--registration",
        "inventorycontent",
        "--registerinterval",
        "0",
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("at least 1"), "{err}");
    let err = parse(&[
        "--registration",
        "inventorycontent",
        "--registration-target",
        "a.>",
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("publish"), "{err}");
    assert!(
        emulator::cli::Args::try_parse_from(["emulator", "-i", "1", "--registration", "nope"])
            .is_err()
    );
    let c = parse(&["--registration", "inventorycontent"]).unwrap();
    let r = c.registration.unwrap();
    assert_eq!(r.interval, Duration::from_secs(300));
    assert!(r.splay && r.compression);
    assert!(parse(&[]).unwrap().registration.is_none());
}

/// A fleet split over two worker processes registers on the supervisor's ticks: each of the 600
/// instances exactly once per cycle, whichever worker holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_keep_the_fleets_phases() {
    let nats = NatsServer::start();
    let (_client, mut sub) = subscriber(&nats, "mcollective.broadcast.agent.registration").await;
    // The epoch 6 s out: both workers are connected before the first tick (generous: the
    // machine is shared).
    let epoch = unix_ms() + 6_000;
    let epoch_flag = epoch.to_string();
    let (mut child, line) = crate::supervisor::start_with_budget(
        &[
            "-i",
            "600",
            "--name",
            "wrk",
            "--server",
            &nats.url(),
            "--registration",
            "inventorycontent",
            "--registerinterval",
            "2",
            "--no-registration-splay",
            "--registration-epoch",
            &epoch_flag,
        ],
        300,
    )
    .await;
    assert!(line.contains("in 2 workers"), "{line}");
    let arrivals = within(collect(&mut sub, epoch + 3_900).await, epoch + 3_900);
    natsproc::send_signal(child.id() as i32, natsproc::process::Signal::TERM);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    let mut per_cycle: BTreeMap<i64, BTreeMap<String, u32>> = BTreeMap::new();
    for a in &arrivals {
        let cycle = (a.at_ms as i64 - epoch as i64).div_euclid(2000);
        *per_cycle
            .entry(cycle)
            .or_default()
            .entry(a.sender.clone())
            .or_default() += 1;
    }
    assert!(
        !per_cycle.contains_key(&-1),
        "nothing before the first tick"
    );
    for cycle in [0, 1] {
        let senders = &per_cycle[&cycle];
        assert_eq!(senders.len(), 600, "cycle {cycle}");
        assert!(senders.values().all(|n| *n == 1), "cycle {cycle}");
    }
}
