//! `emulator measure` and `emulator scrape` against a real nats-server and fleet.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use agents::client::{Call, Targets};
use agents::codec::{self, ReplyParts};
use futures::StreamExt as _;
use measure::account::account;

use testkit::workspace_binary;

use crate::common::{Fleet, start_emulator};

static BIN: LazyLock<PathBuf> = LazyLock::new(|| workspace_binary("emulator"));

/// The variables measure finds brokers (and federation networks) in; cleared so that only a
/// test's own settings count.
const BROKER_ENV: [&str; 4] = [
    "MEASURE_SERVERS",
    "CHORIA_SERVERS",
    "NATS_URL",
    "CHORIA_FED_COLLECTIVE",
];

/// The `emulator` binary with no broker settings from the environment.
pub(crate) fn emulator_command() -> Command {
    let mut cmd = Command::new(&*BIN);
    for name in BROKER_ENV {
        cmd.env_remove(name);
    }
    cmd
}

async fn measure(args: Vec<String>) -> Output {
    measure_with_env(args, Vec::new()).await
}

pub(crate) async fn measure_with_env(
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = emulator_command();
        cmd.arg("measure").args(args);
        cmd.envs(env);
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The summary's equations, checked again over its own totals.
pub(crate) fn assert_summary_closes(summary: &serde_json::Value) {
    let n = |k: &str| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {summary}"))
    };
    assert_eq!(
        n("messages"),
        n("ok")
            + n("failed")
            + n("duplicates")
            + n("late")
            + n("bad_hash")
            + n("malformed")
            + n("unexpected"),
        "{summary}"
    );
    assert_eq!(n("expected"), n("answered") + n("missing"), "{summary}");
    assert_eq!(n("answered"), n("ok") + n("failed"), "{summary}");
}

/// Runs `cmd`; `None` (after killing it) when it has not exited within `limit`.
async fn output_within(mut cmd: Command, limit: Duration) -> Option<Output> {
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + limit;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(child.wait_with_output().unwrap())
    })
    .await
    .unwrap()
}

/// Polls the fleet's /debug/vars until `ready` holds (or panics after `limit`).
async fn wait_for(
    fleet: &Fleet,
    limit: Duration,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let vars = fleet.vars();
        if ready(&vars) {
            return vars;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet never got there: {vars}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Column `name` of requests.csv, summed over every request.
fn column_sum(requests: &[String], name: &str) -> u64 {
    let header: Vec<&str> = requests[0].split(',').collect();
    let i = header.iter().position(|h| *h == name).unwrap();
    requests[1..]
        .iter()
        .map(|l| l.split(',').nth(i).unwrap().parse::<u64>().unwrap())
        .sum()
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_rounds_are_counted_exactly_and_written_out() {
    let mut fleet = Fleet::start("m", 40).await;
    let out = tempfile::tempdir().unwrap();
    let mut args = strings(&[
        "--server",
        &fleet.nats.url(),
        "--rounds",
        "3",
        "--concurrency",
        "2",
        "--size",
        "64",
        "--expect",
        "40",
        "-q",
    ]);
    args.extend(["--out".to_owned(), out.path().display().to_string()]);
    let result = measure(args).await;
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(
        stdout.contains("accounting closes: expected 240 = 240 answered + 0 missing"),
        "{stdout}"
    );
    let requests = lines(&out.path().join("requests.csv"));
    assert_eq!(requests.len(), 1 + 6, "a header and one row per request");
    assert!(requests[0].starts_with("request,round,worker,requestid,expected"));
    let times = lines(&out.path().join("times.csv"));
    assert_eq!(times.len(), 1 + 240, "one row per reply");
    let identities: BTreeSet<&str> = times[1..]
        .iter()
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(identities.len(), 40);
    let buckets = lines(&out.path().join("time_buckets.csv"));
    let bucketed: u64 = buckets[1..]
        .iter()
        .map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(bucketed, 240);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["ok"], 240);
    assert_eq!(summary["missing"], 0);
    assert_eq!(summary["accounting_closes"], true);
    for p in ["p50", "p90", "p99", "p99.9", "max"] {
        assert!(summary["latency_ms"][p].as_f64().unwrap() > 0.0, "{p}");
    }
    assert_report_is_drawn(&out.path().join("report.html"));
    fleet.stop().await;
}

/// Loads the page in headless Chromium and checks the browser's DOM holds drawn plots.
fn assert_report_is_drawn(page: &std::path::Path) {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium is installed (scripts/setup installs it)");
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains("Choria fleet measurement"),
        "chromium rendered the page: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(dom.matches("<svg").count(), 3, "three plots");
    assert!(dom.matches("<rect").count() > 3, "histogram bars are drawn");
    assert!(
        dom.contains("<polyline") || dom.contains("<path"),
        "lines are drawn"
    );
    assert!(!dom.contains("class=\"error\""), "no plot failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_batched_requests_are_counted_exactly() {
    let mut fleet = Fleet::start("d", 23).await;
    let out = tempfile::tempdir().unwrap();
    let mut args = strings(&[
        "--server",
        &fleet.nats.url(),
        "--mode",
        "direct",
        "--batch-size",
        "5",
        "--batch-sleep",
        "0.05",
        "--rounds",
        "2",
        "--json",
        "--discovery-timeout",
        "1",
    ]);
    args.extend(["--out".to_owned(), out.path().display().to_string()]);
    let result = measure(args).await;
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(summary["expected"], 46);
    assert_eq!(summary["ok"], 46);
    assert_eq!(summary["mode"], "direct");
    assert_eq!(summary["accounting_closes"], true);
    let requests = lines(&out.path().join("requests.csv"));
    // 23 nodes in batches of 5: five messages published per request.
    assert!(requests[1].contains(",23,23,"), "{}", requests[1]);
    assert_eq!(
        fleet.vars()["emulator"]["agents"]["emulated0"]["answered"],
        46
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_replies_are_reported_by_identity() {
    let mut fleet = Fleet::start("keep", 6).await;
    let gone = start_emulator(&fleet.nats.url(), "gone", 3).await;
    // Discovery sees all nine; then part of the fleet stops before the RPC rounds.
    let client = fleet.client().await;
    let found = client
        .discover(Default::default(), Duration::from_secs(1), Some(9))
        .await
        .unwrap();
    assert_eq!(found.len(), 9);
    gone.stop(Duration::from_secs(5)).await;
    let result = measure(strings(&[
        "--server",
        &fleet.nats.url(),
        "--rounds",
        "2",
        "--expect",
        "9",
        "--timeout",
        "1",
        "--discovery-timeout",
        "1",
        "--json",
    ]))
    .await;
    assert_eq!(
        result.status.code(),
        Some(1),
        "replies were lost: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(summary["expected"], 18);
    assert_eq!(summary["answered"], 12);
    assert_eq!(summary["missing"], 6);
    assert_eq!(summary["accounting_closes"], true);
    // Discovery no longer finds the stopped nodes, so they are missing without a name here ...
    let tolerated = measure(strings(&[
        "--server",
        &fleet.nats.url(),
        "--rounds",
        "1",
        "--expect",
        "9",
        "--timeout",
        "1",
        "--discovery-timeout",
        "1",
        "--tolerance",
        "0.5",
        "-q",
    ]))
    .await;
    assert!(tolerated.status.success(), "within tolerance");

    // ... while a request to identities known to exist names every one that did not answer.
    let mut call = Call::rpc(
        "emulated0",
        "generate",
        Default::default(),
        Targets::Direct(found.clone()),
        Duration::from_secs(1),
    );
    call.expected = Some(9);
    let collected = client.call(&call).await.unwrap();
    let expected: BTreeSet<String> = found.into_iter().collect();
    let a = account(&collected, &expected, 9, false);
    assert_eq!(a.missing, vec!["gone-0", "gone-1", "gone-2"]);
    assert!(a.closes());
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_bad_hashes_and_garbage_on_the_reply_subject_are_accounted() {
    let mut fleet = Fleet::start("acct", 4).await;
    let client = fleet.client().await;
    // A meddler that answers every generate request three times: garbage, a reply with a
    // broken hash, and a duplicate of a real node's reply.
    let meddler = async_nats::connect(fleet.nats.url()).await.unwrap();
    let mut requests = meddler
        .subscribe("mcollective.broadcast.agent.emulated0")
        .await
        .unwrap();
    meddler.flush().await.unwrap();
    let task = tokio::spawn(async move {
        if let Some(msg) = requests.next().await {
            let req = codec::decode_request(&msg.payload, None, 1 << 20).unwrap();
            let body = r#"{"statuscode":0,"statusmsg":"OK","data":{}}"#;
            let good = codec::encode_reply(&ReplyParts {
                requestid: &req.requestid,
                senderid: "acct-0",
                agent: "emulated0",
                time: req.time,
                body,
                federation: None,
                seen_by: None,
            });
            let mut doc: serde_json::Value = serde_json::from_slice(&good).unwrap();
            let secure = codec::decode_base64(doc["data"].as_str().unwrap()).unwrap();
            let mut secure: serde_json::Value = serde_json::from_slice(&secure).unwrap();
            secure["hash"] = "AAAA".into();
            use base64::Engine as _;
            doc["data"] = base64::engine::general_purpose::STANDARD
                .encode(secure.to_string())
                .into();
            meddler
                .publish(req.reply_to.clone(), "not a reply".into())
                .await
                .unwrap();
            meddler
                .publish(req.reply_to.clone(), doc.to_string().into())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            meddler
                .publish(req.reply_to.clone(), good.into())
                .await
                .unwrap();
            meddler.flush().await.unwrap();
        }
    });
    let expected: BTreeSet<String> = fleet.identities().into_iter().collect();
    let call = Call::rpc(
        "emulated0",
        "generate",
        Default::default(),
        Targets::Broadcast,
        Duration::from_secs(1),
    );
    let collected = client.call(&call).await.unwrap();
    task.await.unwrap();
    let a = account(&collected, &expected, 4, false);
    assert_eq!(a.ok, 4);
    assert_eq!(a.malformed, 1);
    assert_eq!(a.bad_hash, 1);
    assert_eq!(a.duplicates, 1);
    assert_eq!(a.messages, 7);
    assert!(a.closes(), "{a:?}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_without_hanging() {
    let mut fleet = Fleet::start("bad", 2).await;
    let started = Instant::now();
    let none = measure(strings(&[
        "--server",
        &fleet.nats.url(),
        "--identity",
        "nobody",
        "--discovery-timeout",
        "0.5",
    ]))
    .await;
    assert_eq!(none.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("discovery found no nodes"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
    let unreachable = measure(strings(&["--server", "127.0.0.1:1"])).await;
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unreachable.stderr).contains("127.0.0.1:1"),
        "names the server"
    );
    let zero = measure(strings(&["--server", &fleet.nats.url(), "--rounds", "0"])).await;
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--rounds must be at least 1"));
    assert_eq!(zero.status.code(), Some(2), "a usage error");
    let negative = measure(strings(&["--server", &fleet.nats.url(), "--expect", "-2"])).await;
    assert_eq!(negative.status.code(), Some(2));
    assert!(started.elapsed() < Duration::from_secs(20), "nothing hangs");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_records_a_time_series_and_draws_it() {
    let mut fleet = Fleet::start("scr", 5).await;
    let vars = format!("http://{}", fleet.running.as_ref().unwrap().http_addr());
    let out = tempfile::tempdir().unwrap();
    let args = vec![
        "scrape".to_owned(),
        "--vars".into(),
        vars,
        "--vars".into(),
        "http://127.0.0.1:1".into(),
        "--nats-monitor".into(),
        fleet.nats.monitor_url(),
        "--interval".into(),
        "0.3".into(),
        "--duration".into(),
        "1.2".into(),
        "--out".into(),
        out.path().display().to_string(),
        "-q".into(),
    ];
    let result =
        tokio::task::spawn_blocking(move || emulator_command().args(args).output().unwrap())
            .await
            .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let samples: Vec<serde_json::Value> = lines(&out.path().join("samples.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        samples.len() >= 9,
        "three sources, several samples: {}",
        samples.len()
    );
    let emulator = samples
        .iter()
        .find(|s| s["kind"] == "emulator" && s.get("fields").is_some())
        .unwrap();
    assert_eq!(emulator["fields"]["connected"], 5);
    let nats = samples.iter().find(|s| s["kind"] == "nats").unwrap();
    assert_eq!(nats["fields"]["connections"], 5);
    assert_eq!(nats["fields"]["connz_connections"], 5);
    assert!(
        samples.iter().any(|s| s.get("error").is_some()),
        "the unreachable endpoint is recorded as an error"
    );
    let html = std::fs::read_to_string(out.path().join("scrape.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 8);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_below_the_fleet_waits_for_every_discovered_node() {
    // Issue 16.1: with --expect 50 against 200 nodes, a request used to end after any 50
    // senders, counting undiscovered ones in place of discovered nodes that were then "missing".
    let mut fleet = Fleet::start("big", 200).await;
    let out = tempfile::tempdir().unwrap();
    let mut args = strings(&[
        "--server",
        &fleet.nats.url(),
        "--expect",
        "50",
        "--rounds",
        "3",
        "--timeout",
        "5",
        "--json",
    ]);
    args.extend(["--out".to_owned(), out.path().display().to_string()]);
    let result = measure(args).await;
    assert_eq!(result.status.code(), Some(0), "{}", text(&result.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(summary["discovered"], 50);
    assert_eq!(summary["expected"], 150);
    assert_eq!(summary["answered"], 150, "{summary}");
    assert_eq!(summary["ok"], 150, "{summary}");
    assert_eq!(summary["missing"], 0, "{summary}");
    assert_eq!(summary["missing_identities"], serde_json::json!({}));
    assert_eq!(summary["accounting_closes"], true);
    assert_summary_closes(&summary);
    // Every message received is in the files, and the files agree with the summary.
    let requests = lines(&out.path().join("requests.csv"));
    assert_eq!(requests.len(), 1 + 3);
    for name in [
        "messages",
        "ok",
        "unexpected",
        "duplicates",
        "late",
        "missing",
    ] {
        assert_eq!(
            serde_json::json!(column_sum(&requests, name)),
            summary[name],
            "{name}"
        );
    }
    let times = lines(&out.path().join("times.csv"));
    assert_eq!(times.len(), 1 + 150, "one reply time per answer");
    let answered: BTreeSet<&str> = times[1..]
        .iter()
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(
        answered.len(),
        50,
        "the 50 discovered nodes, each once per request"
    );
    // measure stops listening once the 50 answered; the other nodes may still be answering.
    let sent = wait_for(&fleet, Duration::from_secs(10), |v| {
        v["emulator"]["agents"]["emulated0"]["answered"].as_u64() == Some(600)
    })
    .await["emulator"]["agents"]["emulated0"]["answered"]
        .as_u64()
        .unwrap();
    assert_eq!(sent, 600, "every node of the fleet answered every request");
    let messages = summary["messages"].as_u64().unwrap();
    assert!(
        (150..=sent).contains(&messages),
        "no more messages than the fleet sent: {messages}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_ends_when_its_expected_identities_answered_not_any_others() {
    let mut fleet = Fleet::start("few", 30).await;
    let client = fleet.client().await;
    let wanted: BTreeSet<String> = fleet.identities().into_iter().rev().take(10).collect();
    let mut call = Call::rpc(
        "emulated0",
        "generate",
        Default::default(),
        Targets::Broadcast,
        Duration::from_secs(20),
    );
    // A count alone would be met by the first 10 senders, whoever they are.
    call.expected = Some(10);
    call.expected_senders = Some(std::sync::Arc::new(wanted.clone()));
    let collected = client.call(&call).await.unwrap();
    let senders: BTreeSet<String> = collected.senders().into_iter().collect();
    assert!(senders.is_superset(&wanted), "{senders:?}");
    assert!(
        collected.request_duration < Duration::from_secs(10),
        "ended when the ten answered, not at the deadline"
    );
    let a = account(&collected, &wanted, 10, false);
    assert_eq!((a.ok, a.answered, a.missing.len()), (10, 10, 0));
    assert_eq!(a.unexpected, senders.len() - 10);
    assert!(a.closes(), "{a:?}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_out_is_refused_before_any_request() {
    let mut fleet = Fleet::start("rw", 3).await;
    let started = Instant::now();
    let result = measure(strings(&[
        "--server",
        &fleet.nats.url(),
        "--expect",
        "3",
        "--rounds",
        "2",
        "--out",
        "/proc/nope",
    ]))
    .await;
    assert_eq!(result.status.code(), Some(2), "{}", text(&result.stderr));
    assert!(
        text(&result.stderr).contains("--out /proc/nope"),
        "{}",
        text(&result.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let vars = fleet.vars();
    assert_eq!(
        vars["emulator"]["agents"]["emulated0"]["answered"], 0,
        "nothing was sent"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_still_prints_the_summary() {
    let mut fleet = Fleet::start("wf", 3).await;
    let out = tempfile::tempdir().unwrap();
    // The directory is writable, but report.html cannot be written when the run ends.
    std::fs::create_dir(out.path().join("report.html")).unwrap();
    let mut args = strings(&[
        "--server",
        &fleet.nats.url(),
        "--expect",
        "3",
        "--rounds",
        "2",
    ]);
    args.extend(["--out".to_owned(), out.path().display().to_string()]);
    let result = measure(args).await;
    let stdout = text(&result.stdout);
    assert_eq!(result.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("accounting closes: expected 6 = 6 answered + 0 missing"),
        "{stdout}"
    );
    assert!(
        text(&result.stderr).contains("report.html"),
        "{}",
        text(&result.stderr)
    );
    assert!(
        out.path().join("summary.json").is_file(),
        "what could be written was"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_compound_is_a_syntax_error_with_its_column() {
    let mut fleet = Fleet::start("cmp", 3).await;
    let bad = measure(strings(&[
        "--server",
        &fleet.nats.url(),
        "--compound",
        "with('emulated0') andd identity == 'x'",
    ]))
    .await;
    let stderr = text(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid --compound filter at column 19"),
        "{stderr}"
    );
    assert!(
        stderr.contains("\n                    ^"),
        "a caret under column 19: {stderr}"
    );
    assert!(!stderr.contains("discovery found no nodes"), "{stderr}");
    let good = measure(strings(&[
        "--server",
        &fleet.nats.url(),
        "-S",
        "with('emulated0') and identity =~ '^cmp-[01]$'",
        "--rounds",
        "1",
        "--discovery-timeout",
        "1",
        "--json",
    ]))
    .await;
    assert!(good.status.success(), "{}", text(&good.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&good.stdout).unwrap();
    assert_eq!(summary["discovered"], 2);
    assert_eq!(summary["ok"], 2);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_only_without_expect_counts_what_it_found() {
    let mut fleet = Fleet::start("dsc", 10).await;
    let url = fleet.nats.url();
    let plain = measure(strings(&[
        "--server",
        &url,
        "--discovery-only",
        "--discovery-timeout",
        "1",
    ]))
    .await;
    assert_eq!(plain.status.code(), Some(0));
    assert_eq!(text(&plain.stdout), "discovered 10 nodes\n");
    let json = measure(strings(&[
        "--server",
        &url,
        "--discovery-only",
        "--discovery-timeout",
        "1",
        "--json",
    ]))
    .await;
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["discovered"], 10);
    assert_eq!(v["expected"], serde_json::Value::Null);
    let more = measure(strings(&[
        "--server",
        &url,
        "--discovery-only",
        "--discovery-timeout",
        "1",
        "--expect",
        "12",
    ]))
    .await;
    assert_eq!(more.status.code(), Some(1));
    assert_eq!(text(&more.stdout), "discovered 10 of 12 expected nodes\n");
    let none = measure(strings(&[
        "--server",
        &url,
        "--discovery-only",
        "--discovery-timeout",
        "0.5",
        "-I",
        "nobody",
    ]))
    .await;
    assert_eq!(none.status.code(), Some(1), "no node found");
    assert_eq!(text(&none.stdout), "discovered 0 nodes\n");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_and_help_names_the_subcommand() {
    for bad in [
        &["--rate", "0"][..],
        &["--rounds", "0"],
        &["--tolerance", "2"],
        &["--fact", "nooperator"],
    ] {
        let mut args = strings(&["--server", "127.0.0.1:1"]);
        args.extend(strings(bad));
        let result = measure(args).await;
        assert_eq!(
            result.status.code(),
            Some(2),
            "{bad:?}: {}",
            text(&result.stderr)
        );
        assert!(
            text(&result.stderr).starts_with("error: "),
            "{}",
            text(&result.stderr)
        );
    }
    for bad in [
        &["--vars", "http://127.0.0.1:1", "--out", "/proc/nope"][..],
        &[
            "--vars",
            "http://127.0.0.1:1",
            "--interval",
            "0",
            "--out",
            "/tmp",
        ],
        &["--out", "/tmp"],
    ] {
        let mut cmd = emulator_command();
        cmd.arg("scrape").args(bad);
        let result = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        assert_eq!(
            result.status.code(),
            Some(2),
            "scrape {bad:?}: {}",
            text(&result.stderr)
        );
    }
    let help = measure(strings(&["--help"])).await;
    assert!(help.status.success());
    let help = text(&help.stdout);
    assert!(help.contains("Usage: emulator measure"), "{help}");
    for flag in [
        "-I, --identity",
        "-F, --fact",
        "-C, --class",
        "-A, --with-agent",
        "-S, --compound",
        "-T, --collective",
        "-c, --config",
    ] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_comes_from_flags_config_file_or_environment() {
    let mut fleet = Fleet::start("ch", 6).await;
    let url = fleet.nats.url();
    let json = |o: &Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", text(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let common = ["--rounds", "1", "--discovery-timeout", "1", "--json"];
    let mut args = strings(&["-I", "ch-2"]);
    args.extend(strings(&common));
    let s = json(&measure_with_env(args.clone(), vec![("CHORIA_SERVERS", url.clone())]).await);
    assert_eq!(
        (s["discovered"].clone(), s["ok"].clone()),
        (1.into(), 1.into())
    );

    let mut args = strings(&["-I", "/^ch-[01]$/", "-T", "mcollective"]);
    args.extend(strings(&common));
    let s = json(&measure_with_env(args, vec![("NATS_URL", url.clone())]).await);
    assert_eq!(s["discovered"], 2);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("client.conf");
    std::fs::write(
        &config,
        format!("plugin.choria.middleware_hosts = {url}\nmain_collective = mcollective\n"),
    )
    .unwrap();
    let mut args = strings(&["-c", &config.display().to_string(), "-A", "emulated0"]);
    args.extend(strings(&common));
    // The config file comes before the environment.
    let s = json(&measure_with_env(args, vec![("CHORIA_SERVERS", "127.0.0.1:1".into())]).await);
    assert_eq!(s["discovered"], 6);

    let other = tempfile::tempdir().unwrap();
    let wrong = other.path().join("client.conf");
    std::fs::write(&wrong, "main_collective = elsewhere\n").unwrap();
    let mut args = strings(&["-c", &wrong.display().to_string(), "--server", &url]);
    args.extend(strings(&["--discovery-only", "--discovery-timeout", "0.5"]));
    let o = measure(args).await;
    assert_eq!(
        text(&o.stdout),
        "discovered 0 nodes\n",
        "main_collective is read"
    );

    let none = measure(strings(&["--rounds", "1"])).await;
    assert_eq!(none.status.code(), Some(2));
    assert!(
        text(&none.stderr).contains("no broker configured"),
        "{}",
        text(&none.stderr)
    );
    fleet.stop().await;
}

/// A TCP forwarder to `upstream` whose connections can all be cut at once.
struct CuttableProxy {
    addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<u32>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    async fn start(upstream: std::net::SocketAddr) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cuts) = tokio::sync::watch::channel(0u32);
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = std::sync::Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut cuts = cuts.clone();
                let generation = *cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.wait_for(|g| *g > generation) => {}
                    }
                });
            }
        });
        CuttableProxy {
            addr,
            cut,
            accepted,
            task,
        }
    }

    /// Drops every connection made so far; new ones are still accepted.
    fn cut(&self) {
        self.cut.send_modify(|g| *g += 1);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_reported_and_the_accounting_does_not_close() {
    let mut fleet = Fleet::start("drop", 5).await;
    let upstream: std::net::SocketAddr = fleet
        .nats
        .url()
        .trim_start_matches("nats://")
        .parse()
        .unwrap();
    let proxy = CuttableProxy::start(upstream).await;
    let args = strings(&[
        "--server",
        &proxy.addr.to_string(),
        "--expect",
        "5",
        "--rate",
        "4",
        "--rounds",
        "16",
        "--timeout",
        "0.5",
        "--json",
    ]);
    let run = tokio::spawn(measure(args));
    // Once measure is connected and its requests are under way (16 at 4 a second), cut.
    let connected = Instant::now();
    while proxy.accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            connected.elapsed() < Duration::from_secs(20),
            "measure never connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for(&fleet, Duration::from_secs(20), |v| {
        v["emulator"]["agents"]["emulated0"]["answered"]
            .as_u64()
            .is_some_and(|n| n >= 10)
    })
    .await;
    proxy.cut();
    let result = run.await.unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&result.stderr)));
    assert!(
        summary["connection_drops"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert_eq!(summary["accounting_closes"], false, "{summary}");
    assert_eq!(summary["requests"], 16);
    assert_summary_closes(&summary);
    assert_eq!(result.status.code(), Some(1), "{}", text(&result.stderr));
    // The table says why.
    let table = measure(strings(&[
        "--server",
        &proxy.addr.to_string(),
        "--expect",
        "5",
        "--rounds",
        "1",
    ]))
    .await;
    assert!(
        text(&table.stdout).contains("accounting closes"),
        "a clean run still closes: {}",
        text(&table.stdout)
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_gone_for_good_ends_the_run_with_a_summary_that_does_not_close() {
    let mut fleet = Fleet::start("gone", 5).await;
    let args = strings(&[
        "--server",
        &fleet.nats.url(),
        "--expect",
        "5",
        "--rate",
        "4",
        "--rounds",
        "10",
        "--timeout",
        "0.5",
        "--json",
    ]);
    let mut cmd = emulator_command();
    cmd.arg("measure").args(args);
    // A measure that hangs without its broker is killed, and the test fails.
    let run = tokio::spawn(output_within(cmd, Duration::from_secs(40)));
    wait_for(&fleet, Duration::from_secs(20), |v| {
        v["emulator"]["agents"]["emulated0"]["answered"]
            .as_u64()
            .is_some_and(|n| n >= 10)
    })
    .await;
    fleet.nats.inner().stop();
    let result = run
        .await
        .unwrap()
        .expect("measure ends without a broker instead of hanging");
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&result.stderr)));
    assert_eq!(summary["requests"], 10, "every request is in the summary");
    assert!(
        summary["unsent_requests"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert!(
        summary["connection_drops"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert_eq!(summary["accounting_closes"], false);
    assert!(summary["missing"].as_u64().unwrap() > 0, "{summary}");
    assert_summary_closes(&summary);
    assert_eq!(result.status.code(), Some(1));
}

/// Spawns the real binary, signals it once `ready` resolved, and returns its output with the
/// time it took to exit after the signal.
async fn interrupted(
    args: Vec<String>,
    signal: natsproc::process::Signal,
    ready: impl std::future::Future<Output = ()>,
) -> (Output, Duration) {
    let child = emulator_command()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    ready.await;
    let signalled = Instant::now();
    natsproc::send_signal(child.id() as i32, signal);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    (output, signalled.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_measure_writes_what_it_has() {
    let mut fleet = Fleet::start("int", 5).await;
    let out = tempfile::tempdir().unwrap();
    let mut args = strings(&[
        "measure",
        "--server",
        &fleet.nats.url(),
        "--expect",
        "5",
        "--rate",
        "4",
        "--rounds",
        "200",
        "--json",
    ]);
    args.extend(["--out".to_owned(), out.path().display().to_string()]);
    // Signalled once two requests were answered.
    let ready = wait_for(&fleet, Duration::from_secs(20), |v| {
        v["emulator"]["agents"]["emulated0"]["answered"]
            .as_u64()
            .is_some_and(|n| n >= 10)
    });
    let (result, took) = interrupted(args, natsproc::process::Signal::INT, async {
        ready.await;
    })
    .await;
    assert_eq!(result.status.code(), Some(130), "{}", text(&result.stderr));
    assert!(took < Duration::from_secs(5), "stopped promptly: {took:?}");
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(summary["interrupted"], "SIGINT");
    assert_eq!(summary["planned_requests"], 200);
    let requests = summary["requests"].as_u64().unwrap();
    assert!((2..200).contains(&requests), "{requests}");
    assert_eq!(summary["accounting_closes"], true);
    assert_summary_closes(&summary);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(written, summary);
    assert_eq!(
        lines(&out.path().join("requests.csv")).len() as u64,
        1 + requests
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_measure_cuts_the_request_in_flight_short() {
    let mut fleet = Fleet::start("term", 5).await;
    // No node has this agent, so the request would wait its whole 60 s.
    let args = strings(&[
        "measure",
        "--server",
        &fleet.nats.url(),
        "--expect",
        "5",
        "--agent",
        "nosuch",
        "--timeout",
        "60",
        "--rounds",
        "3",
    ]);
    // Signalled once discovery is done and the request has been waiting a while.
    let ready = async {
        wait_for(&fleet, Duration::from_secs(20), |v| {
            v["emulator"]["requests"]["received"]
                .as_u64()
                .is_some_and(|n| n >= 5)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (result, took) = interrupted(args, natsproc::process::Signal::TERM, ready).await;
    let stdout = text(&result.stdout);
    assert_eq!(
        result.status.code(),
        Some(143),
        "{stdout}{}",
        text(&result.stderr)
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        stdout.contains("INTERRUPTED            by SIGTERM: 1 of 3 requests sent, 1 cut short"),
        "{stdout}"
    );
    assert!(
        stdout.contains("accounting closes: expected 5 = 0 answered + 5 missing"),
        "{stdout}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_scrape_writes_its_page() {
    let mut fleet = Fleet::start("iscr", 2).await;
    let vars = format!("http://{}", fleet.running.as_ref().unwrap().http_addr());
    let out = tempfile::tempdir().unwrap();
    let args = vec![
        "scrape".to_owned(),
        "--vars".into(),
        vars,
        "--interval".into(),
        "0.2".into(),
        "--duration".into(),
        "60".into(),
        "--out".into(),
        out.path().display().to_string(),
        "-q".into(),
    ];
    let samples_file = out.path().join("samples.jsonl");
    let ready = async {
        let started = Instant::now();
        while std::fs::read_to_string(&samples_file).map_or(0, |t| t.lines().count()) < 3 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "scrape never sampled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (result, took) = interrupted(args, natsproc::process::Signal::TERM, ready).await;
    assert_eq!(result.status.code(), Some(143), "{}", text(&result.stderr));
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(text(&result.stdout).contains("interrupted by SIGTERM"));
    let samples = lines(&out.path().join("samples.jsonl"));
    assert!(samples.len() >= 3, "{}", samples.len());
    let html = std::fs::read_to_string(out.path().join("scrape.html")).unwrap();
    assert!(html.contains(&format!("<td>{}</td>", samples.len())) || html.contains("samples"));
    fleet.stop().await;
}
