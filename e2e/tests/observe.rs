//! Seeing a load test: the live page at `/` (single process and supervisor) in headless
//! Chromium while a measure runs, the report's story (slowest, missing, failing identities,
//! the broker on the replies' axis), `measure compare` between real runs, and the `/metrics`
//! of the emulator and the federation broker as Prometheus uses them (promtool, a real
//! Prometheus server, the Grafana dashboard's metric names).

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use emulator::faults::{Assignment, Fault, FaultSpec};
use testkit::{ChildGuard, NatsServer, Prometheus, promtool_check};

use crate::measure::{assert_summary_closes, emulator_command, measure_with_env, text};

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get_text(url: &str) -> String {
    let r = http().get(url).send().await.unwrap();
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r.text().await.unwrap()
}

/// A fleet of `instances` on `nats` in this process, with `faults` seeded by `seed`.
async fn fleet(nats: &NatsServer, name: &str, instances: u32, faults: &str) -> emulator::Running {
    let mut builder = emulator::Config::builder(name, instances)
        .server(&nats.url())
        .unwrap();
    if !faults.is_empty() {
        builder = builder.faults(faults.parse().unwrap(), 7);
    }
    emulator::start_ready(builder.build().unwrap(), Duration::from_secs(30))
        .await
        .expect("every instance connects")
}

/// The identities `<name>-<i>` that `faults` (seed 7, as [`fleet`]) gives a fault of `kind`.
fn with_fault(
    name: &str,
    instances: u32,
    faults: &str,
    kind: fn(Fault) -> bool,
) -> BTreeSet<String> {
    let spec: FaultSpec = faults.parse().unwrap();
    let assignment = Assignment::new(&spec, instances, 7);
    (0..instances)
        .filter(|i| assignment.of(*i).is_some_and(kind))
        .map(|i| format!("{name}-{i}"))
        .collect()
}

/// Headless Chromium on `url` for `budget_ms` of virtual time (the page's timers and fetches
/// run), then `--dump-dom` (the DOM after its JavaScript ran) or `--screenshot`.
fn chromium(url: &str, budget_ms: u32, screenshot: Option<&Path>) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,1600",
    ])
    .arg(format!("--virtual-time-budget={budget_ms}"))
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some(path) => cmd.arg(format!("--screenshot={}", path.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd
        .arg(url)
        .output()
        .expect("chromium is installed (scripts/setup installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn dom(url: &str, budget_ms: u32) -> String {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || chromium(&url, budget_ms, None))
        .await
        .unwrap()
}

/// Takes a screenshot into `<target tmp>/observe/<name>.png` (kept for a person to look at) and
/// checks it is a PNG with something drawn (not a blank page's few KB).
async fn screenshot(url: &str, budget_ms: u32, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("observe");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&path);
    let (url, file) = (url.to_owned(), path.clone());
    tokio::task::spawn_blocking(move || chromium(&url, budget_ms, Some(&file)))
        .await
        .unwrap();
    let png = std::fs::read(&path).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(
        png.len() > 30_000,
        "a drawn page, not a blank one: {} bytes",
        png.len()
    );
}

/// Text of the element with `id`, tags inside it removed.
fn text_of(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let start = at + dom[at..].find('>').unwrap() + 1;
    let end = start + dom[start..].find("</").unwrap();
    strip_tags(&dom[start..end])
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&").trim().to_owned()
}

/// The body rows of `<table id="…">`, each as its cells' text.
fn rows(dom: &str, id: &str) -> Vec<Vec<String>> {
    let at = dom
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table #{id}"));
    let table = &dom[at..at + dom[at..].find("</table>").unwrap()];
    table
        .split("<tr")
        .skip(1)
        .filter(|r| r.contains("<td"))
        .map(|r| {
            r.split("<td")
                .skip(1)
                .map(|c| strip_tags(&format!("<td{c}")))
                .collect()
        })
        .collect()
}

fn number(text: &str) -> u64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn measure(args: Vec<String>) -> Output {
    measure_with_env(args, Vec::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_shows_the_fleet_and_moves_while_a_measure_runs() {
    let faults = "slow=10%:20ms,fail=10%";
    let nats = NatsServer::start();
    let running = fleet(&nats, "live", 20, faults).await;
    let url = format!("http://{}/", running.http_addr());
    let page = http().get(&url).send().await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.text().await.unwrap(), measure::live::PAGE);

    // Idle: the fleet as /debug/vars has it.
    let idle = dom(&url, 3000).await;
    assert!(
        text_of(&idle, "status").starts_with("live: updated"),
        "{idle}"
    );
    assert_eq!(text_of(&idle, "connected"), "20");
    assert_eq!(text_of(&idle, "configured"), "20");
    assert_eq!(text_of(&idle, "requests-total"), "0");
    assert_eq!(text_of(&idle, "failures"), "0");
    assert!(
        number(&text_of(&idle, "samples")) >= 2,
        "polls every second"
    );
    let servers = rows(&idle, "servers");
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(servers[0][0], nats.url());
    assert_eq!(
        (servers[0][1].as_str(), servers[0][3].as_str()),
        ("20", "0")
    );
    let slow = with_fault("live", 20, faults, |f| matches!(f, Fault::Slow(_))).len();
    let fail = with_fault("live", 20, faults, |f| matches!(f, Fault::Fail)).len();
    let fault_rows = rows(&idle, "faults");
    assert!(
        fault_rows.contains(&vec!["slow".into(), slow.to_string(), "0".into()]),
        "{fault_rows:?}"
    );
    assert!(fault_rows.contains(&vec!["fail".into(), fail.to_string(), "0".into()]));
    assert_eq!(
        rows(&idle, "workers")[0][0],
        "a single process (no workers)"
    );

    // While a measure runs (open loop, 40 requests a second for 20 s), the numbers move: two
    // page loads one after the other both see the run, the second more of it, and within a load
    // the polls see the counters change. Chromium's virtual time runs the page's 1 s timer
    // faster than the wall clock, so its rates are per virtual second; only totals are exact.
    let rounds = 800u64;
    let run = tokio::spawn(measure(strings(&[
        "--server",
        &nats.url(),
        "--rate",
        "40",
        "--rounds",
        &rounds.to_string(),
        "--timeout",
        "1",
        "--discovery-timeout",
        "1",
        "--tolerance",
        "1",
        "-q",
    ])));
    // Past discovery (1 s), early in the 20 s of requests.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let first = dom(&url, 8000).await;
    let (second, ()) = tokio::join!(dom(&url, 8000), screenshot(&url, 8000, "live-busy"));
    let result = run.await.unwrap();
    assert!(
        result.status.success(),
        "{}{}",
        text(&result.stdout),
        text(&result.stderr)
    );
    let total = |d: &str| number(&text_of(d, "requests-total"));
    assert!(
        total(&first) > 20,
        "requests beyond discovery: {}",
        total(&first)
    );
    assert!(total(&second) > total(&first), "the second load saw more");
    assert!(
        total(&second) < 20 + rounds * 20,
        "both loads were during the run"
    );
    let changes = |d: &str| number(&text_of(d, "changes"));
    assert!(
        changes(&first) + changes(&second) >= 1,
        "the counters moved between polls: {} {}",
        changes(&first),
        changes(&second)
    );
    let busy = if changes(&second) > 0 {
        &second
    } else {
        &first
    };
    assert_ne!(
        text_of(busy, "replies-peak"),
        "0.0",
        "a reply rate was plotted"
    );
    let plotted = busy.split("id=\"replies-line\"").nth(1).unwrap();
    let points = plotted
        .split("points=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(
        points.split(' ').count() >= 2,
        "a line of replies/s: {points:?}"
    );
    // After the run (once the fleet has received the last request) the page's totals are the
    // fleet's own counters.
    let all = 20 + rounds * 20;
    for _ in 0..100 {
        if running.debug_vars().emulator.requests.received >= all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let vars = running.debug_vars();
    assert_eq!(
        vars.emulator.requests.received, all,
        "discovery and every round"
    );
    let after = dom(&url, 2000).await;
    assert_eq!(
        number(&text_of(&after, "requests-total")),
        vars.emulator.requests.received
    );
    assert_eq!(
        number(&text_of(&after, "replies-total")),
        vars.emulator.replies.sent
    );
    assert_eq!(
        vars.emulator.replies.sent, all,
        "every instance answers (fail too)"
    );
    let events = vars.emulator.faults["slow"].events;
    assert!(events > 0);
    assert!(rows(&after, "faults").contains(&vec![
        "slow".into(),
        slow.to_string(),
        events.to_string()
    ]));
    screenshot(&url, 2000, "live-after").await;
    running.stop(Duration::from_secs(5)).await;
}

/// Starts `emulator` with `args` and returns it with the base URL of its HTTP listener.
async fn start_binary(args: &[&str]) -> (ChildGuard, String) {
    let mut child = emulator_command()
        .args(args)
        .args([
            "-p",
            "0",
            "--http-address",
            "127.0.0.1",
            "--loglevel",
            "warn",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(60), line)
        .await
        .expect("the fleet reports ready")
        .unwrap()
        .unwrap();
    let base = line
        .split_whitespace()
        .last()
        .and_then(|u| u.strip_suffix("/debug/vars"))
        .unwrap_or_else(|| panic!("ready line: {line}"))
        .to_owned();
    (ChildGuard(child), base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisor_serves_the_live_page_over_its_workers_and_promtool_accepts_its_metrics() {
    let (guard, base) = start_binary(&["-i", "20", "--workers", "2", "--name", "sup"]).await;
    let metrics = get_text(&format!("{base}/metrics")).await;
    promtool_check(&metrics).unwrap();
    assert!(
        metrics.contains("emulator_instances_connected 20\n"),
        "{metrics}"
    );
    let page = dom(&format!("{base}/"), 3000).await;
    assert_eq!(text_of(&page, "connected"), "20");
    assert_eq!(text_of(&page, "configured"), "20");
    let workers = rows(&page, "workers");
    assert_eq!(workers.len(), 2, "{workers:?}");
    for (w, row) in workers.iter().enumerate() {
        assert_eq!(row[1], (w * 10).to_string(), "first instance");
        assert_eq!((row[2].as_str(), row[3].as_str()), ("10", "10"));
    }
    assert_eq!(rows(&page, "brokers").len(), 1, "the private broker");
    screenshot(&format!("{base}/"), 3000, "live-supervisor").await;
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_federation_brokers_metrics() {
    let (fed, collective) = (NatsServer::start(), NatsServer::start());
    let running = fleet(&collective, "pf", 5, "").await;
    let mut config = federation::Config::new("pf", &[fed.url()], &[collective.url()]);
    config.workers = 2;
    let broker = federation::start(config).await.expect("broker starts");
    let metrics = get_text(&format!("http://{}/metrics", broker.http_addr())).await;
    promtool_check(&metrics).unwrap();
    assert!(
        metrics.contains("federation_broker_connected{cluster=\"pf\""),
        "{metrics}"
    );
    // A text promtool refuses is refused: the check can fail.
    assert!(promtool_check("emulator_x_total{a=\"1\"} one\n").is_err());
    broker.stop(Duration::from_secs(5)).await;
    running.stop(Duration::from_secs(5)).await;
}

/// The dashboard's PromQL expressions, with Grafana's variables replaced as Grafana would.
fn dashboard_exprs() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana-fleet.json");
    let dashboard = read_json(&path);
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            exprs.push(expr.replace("$__rate_interval", "1m").replace("$job", ".+"));
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    exprs
}

/// The metric names (`emulator_…`, `federation_broker_…`) an expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for token in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if token.starts_with("emulator_") || token.starts_with("federation_broker_") {
            names.insert(token.to_owned());
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_a_fleet_and_the_dashboard_reads_real_metrics() {
    let nats = NatsServer::start();
    let running = fleet(&nats, "prom", 10, "slow=20%:10ms").await;
    let target = running.http_addr().to_string();
    let prometheus = tokio::task::spawn_blocking(move || Prometheus::start(&[target]))
        .await
        .unwrap();
    let result = measure(strings(&["--server", &nats.url(), "--rounds", "3", "-q"])).await;
    assert!(
        result.status.success(),
        "{}{}",
        text(&result.stdout),
        text(&result.stderr)
    );
    let vars = running.debug_vars();
    let sent = vars.emulator.replies.sent;
    assert_eq!(sent, 10 + 3 * 10, "discovery and three rounds");
    // Scraped every second; generous bound for a loaded machine.
    let limit = Duration::from_secs(30);
    let got = prometheus
        .wait_value("emulator_replies_sent_total", limit, |v| v == sent as f64)
        .await
        .unwrap();
    assert_eq!(got, sent as f64);
    assert_eq!(
        prometheus.query_value("up{job=\"fleet\"}").await.unwrap(),
        Some(1.0)
    );
    assert_eq!(
        prometheus
            .query_value("emulator_instances_connected")
            .await
            .unwrap(),
        Some(10.0)
    );
    let slow_events = prometheus
        .wait_value("emulator_fault_events_total{fault=\"slow\"}", limit, |v| {
            v > 0.0
        })
        .await
        .unwrap();
    assert_eq!(slow_events, vars.emulator.faults["slow"].events as f64);

    // The single process's /metrics passes promtool, and has every name the dashboard reads.
    let metrics = get_text(&format!("http://{}/metrics", running.http_addr())).await;
    promtool_check(&metrics).unwrap();
    let exposed: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let exprs = dashboard_exprs();
    let mut read = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{expr} reads no fleet metric");
        read.extend(names);
        // Prometheus itself parses and evaluates every panel's query.
        prometheus
            .query(expr)
            .await
            .unwrap_or_else(|e| panic!("dashboard query {expr}: {e}"));
    }
    for name in &read {
        assert!(
            exposed.contains(name.as_str()),
            "{name} is not in the fleet's /metrics"
        );
    }
    assert!(read.contains("emulator_server_instances_connected"));
    assert!(read.contains("emulator_registrations_published_total"));
    drop(prometheus);
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_tells_who_was_slow_missing_and_failing_and_what_the_broker_did() {
    let faults = "slow=10%:800ms,fail=10%,drop=10%";
    let nats = NatsServer::start();
    let running = fleet(&nats, "story", 30, faults).await;
    let dir = tempfile::tempdir().unwrap();
    let (out, scraped) = (dir.path().join("run"), dir.path().join("scrape"));
    let mut scrape = ChildGuard(
        emulator_command()
            .args(["scrape", "--nats-monitor", &nats.monitor_url()])
            .args(["--interval", "0.5", "--duration", "8", "-q", "--out"])
            .arg(&scraped)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut args = strings(&[
        "--server",
        &nats.url(),
        "--expect",
        "30",
        "--rounds",
        "4",
        "--rate",
        "2",
        "--timeout",
        "2",
        "--tolerance",
        "1",
        "--broker-monitor",
        &nats.monitor_url(),
        "--monitor-interval",
        "0.25",
        "--json",
        "-q",
        "--out",
    ]);
    args.push(out.display().to_string());
    args.push("--scrape-samples".into());
    args.push(scraped.join("samples.jsonl").display().to_string());
    let result = measure(args).await;
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&result.stdout), text(&result.stderr)));
    assert_summary_closes(&summary);
    let _ = scrape.0.kill();

    let dropping = with_fault("story", 30, faults, |f| matches!(f, Fault::Drop));
    let failing = with_fault("story", 30, faults, |f| matches!(f, Fault::Fail));
    let slow = with_fault("story", 30, faults, |f| matches!(f, Fault::Slow(_)));
    assert_eq!((dropping.len(), failing.len(), slow.len()), (3, 3, 3));

    let page = dom(
        &format!("file://{}", out.join("report.html").display()),
        1000,
    )
    .await;
    assert!(page.contains("Choria fleet measurement"));
    // Missing: exactly the dropping identities, each from every request and its round.
    let missing = rows(&page, "missing");
    let named: BTreeSet<String> = missing.iter().map(|r| r[0].clone()).collect();
    assert_eq!(named, dropping);
    let summary_missing: BTreeSet<String> = summary["missing_identities"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        named, summary_missing,
        "the report agrees with summary.json"
    );
    for row in &missing {
        assert_eq!(
            row[1..],
            [
                "4".to_owned(),
                "request 1 (round 1), request 2 (round 2), request 3 (round 3), request 4 (round 4)"
                    .to_owned()
            ]
        );
    }
    // Failed: exactly the failing identities, statuscode 1 in each request.
    let failed = rows(&page, "failed");
    assert_eq!(
        failed.iter().map(|r| r[0].clone()).collect::<BTreeSet<_>>(),
        failing
    );
    for row in &failed {
        assert_eq!(row[1..], ["4".to_owned(), "1 Aborted × 4".to_owned()]);
    }
    assert_eq!(summary["failed"], 3 * 4);
    // Slowest: the three slow identities first, each slower than its 800 ms (well above what a
    // loaded machine adds to the others).
    let slowest = rows(&page, "slowest");
    let top: BTreeSet<String> = slowest[..3].iter().map(|r| r[0].clone()).collect();
    assert_eq!(top, slow, "{slowest:?}");
    for row in &slowest[..3] {
        assert!(row[1].parse::<f64>().unwrap() >= 800.0, "{row:?}");
    }
    assert!(slowest[3][1].parse::<f64>().unwrap() < 800.0);
    // The broker, from both sources, on the replies' axis: 3 plots of replies + 5 of the broker.
    let broker = text_of(&page, "broker");
    assert_eq!(broker, "What the broker was doing");
    let sources = page.split("id=\"broker\"").nth(1).unwrap();
    assert!(sources.contains("--broker-monitor"), "{sources}");
    assert!(sources.contains("--scrape-samples"));
    assert_eq!(page.matches("<svg").count(), 3 + 5);
    assert!(page.contains("Broker CPU"));
    assert!(!page.contains("class=\"error\""), "no plot failed");
    screenshot(
        &format!("file://{}", out.join("report.html").display()),
        1000,
        "report",
    )
    .await;
    running.stop(Duration::from_secs(5)).await;
}

async fn compare(args: &[&str]) -> Output {
    let args = strings(args);
    tokio::task::spawn_blocking(move || {
        emulator_command()
            .args(["measure", "compare"])
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// An open-loop run (5 requests a second for 2 s, so wall time is set by the rate) into `out`.
async fn run_into(nats: &NatsServer, out: &Path) {
    let mut args = strings(&[
        "--server",
        &nats.url(),
        "--rate",
        "5",
        "--rounds",
        "10",
        "--timeout",
        "2",
        "-q",
        "--out",
    ]);
    args.push(out.display().to_string());
    let result = measure(args).await;
    assert!(
        result.status.success(),
        "{}{}",
        text(&result.stdout),
        text(&result.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_calls_a_slowed_fleet_a_regression_and_a_rerun_not() {
    let (plain_nats, slow_nats) = (NatsServer::start(), NatsServer::start());
    let plain = fleet(&plain_nats, "cmp", 10, "").await;
    let slowed = fleet(&slow_nats, "cmp", 10, "slow=60%:400ms").await;
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    run_into(&plain_nats, &dir.path().join("a1")).await;
    run_into(&plain_nats, &dir.path().join("a2")).await;
    run_into(&slow_nats, &dir.path().join("b")).await;

    // The machine is shared with other builds (and these tests run in parallel): a rerun's
    // p99 was seen 50 ms up; the slowed fleet's latencies are 400 ms above.
    let same = compare(&[
        &p("a1"),
        &p("a2"),
        "--latency-floor-ms",
        "150",
        "--out",
        &p("c1"),
    ])
    .await;
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}{}",
        text(&same.stdout),
        text(&same.stderr)
    );
    assert!(text(&same.stdout).contains("no regression beyond 10%"));
    let c1 = read_json(&dir.path().join("c1/compare.json"));
    assert_eq!(c1["regressions"], serde_json::json!([]), "{c1}");

    let worse = compare(&[
        &p("a1"),
        &p("b"),
        "--latency-floor-ms",
        "150",
        "--out",
        &p("c2"),
    ])
    .await;
    let stdout = text(&worse.stdout);
    assert_eq!(
        worse.status.code(),
        Some(1),
        "{stdout}{}",
        text(&worse.stderr)
    );
    assert!(
        stdout.contains("REGRESSION beyond 10%: latency p50 ms, latency p90 ms, latency p99 ms"),
        "{stdout}"
    );
    let c2 = read_json(&dir.path().join("c2/compare.json"));
    let (a, b) = (
        read_json(&dir.path().join("a1/summary.json")),
        read_json(&dir.path().join("b/summary.json")),
    );
    let p90 = c2["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "latency p90 ms")
        .unwrap();
    assert_eq!(
        p90["a"], a["latency_ms"]["p90"],
        "figures are the runs' own"
    );
    assert_eq!(p90["b"], b["latency_ms"]["p90"]);
    assert!(p90["b"].as_f64().unwrap() >= 400.0);
    assert_eq!(p90["regression"], true);
    let regressions = c2["regressions"].as_array().unwrap().len();
    let page = dom(
        &format!("file://{}", dir.path().join("c2/compare.html").display()),
        1000,
    )
    .await;
    assert!(page.contains("Choria fleet run comparison"));
    assert_eq!(page.matches("class=\"regression\"").count(), regressions);
    assert_eq!(
        page.matches("<svg").count(),
        1,
        "the percentiles of both runs"
    );
    screenshot(
        &format!("file://{}", dir.path().join("c2/compare.html").display()),
        1000,
        "compare",
    )
    .await;

    // A run that is not there is a usage error.
    let missing = compare(&[&p("a1"), &p("nowhere")]).await;
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing.stderr));
    plain.stop(Duration::from_secs(5)).await;
    slowed.stop(Duration::from_secs(5)).await;
}

#[test]
fn the_dashboard_names_only_fleet_metrics() {
    for expr in dashboard_exprs() {
        for name in metric_names(&expr) {
            assert!(name.starts_with("emulator_"), "{name} in {expr}");
        }
    }
}
