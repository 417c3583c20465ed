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

async fn measure(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(&*BIN)
            .arg("measure")
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
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
        tokio::task::spawn_blocking(move || Command::new(&*BIN).args(args).output().unwrap())
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
