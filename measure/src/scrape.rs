//! `emulator scrape`: polls emulator `/debug/vars` and nats-server monitor endpoints into a
//! JSONL time series, and draws it as an HTML page.
//!
//! Stages: poll every endpoint each interval → one JSON line per endpoint per sample
//! (`samples.jsonl`) → rates derived from counters → `scrape.html`. SIGINT or SIGTERM ends the
//! sampling early: what was sampled is written as usual and the exit code is 130 or 143.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Deserialize as _;
use serde_json::{Value, json};

use crate::error::MeasureError;
use crate::report::{self, Series};
use crate::signals;

/// Polls emulators and nats-servers into a time series.
#[derive(Debug, Clone, Parser)]
#[command(about = "Samples /debug/vars and nats-server monitoring into a time series and a page")]
pub struct ScrapeArgs {
    /// Emulator HTTP address (`http://host:8080` or the full /debug/vars URL); repeatable.
    #[arg(long = "vars")]
    pub vars: Vec<String>,
    /// nats-server monitor address (`http://host:8222`); repeatable.
    #[arg(long = "nats-monitor")]
    pub nats: Vec<String>,
    /// Seconds between samples.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Seconds to scrape for.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Directory for samples.jsonl and scrape.html.
    #[arg(long)]
    pub out: PathBuf,
    /// No per-sample lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

fn vars_url(base: &str) -> String {
    if base.contains("/debug/vars") {
        base.to_owned()
    } else {
        format!("{}/debug/vars", base.trim_end_matches('/'))
    }
}

async fn get(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let response = http.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    response.json().await.map_err(|e| e.to_string())
}

/// The fields of one emulator sample, read from its typed `/debug/vars`.
fn emulator_fields(v: &Value) -> Result<Value, String> {
    let vars = agents::DebugVars::deserialize(v)
        .map_err(|e| format!("not an emulator's /debug/vars: {e}"))?;
    let e = &vars.emulator;
    Ok(json!({
        "connected": e.instances.connected,
        "configured": vars.config.instances,
        "rss_bytes": vars.memstats.sys,
        "requests": e.requests.received,
        "replies": e.replies.sent,
        "invalid": e.requests.invalid,
        "reconnects": e.instances.reconnects,
    }))
}

async fn nats_fields(http: &reqwest::Client, base: &str) -> Result<Value, String> {
    let base = base.trim_end_matches('/');
    let varz = get(http, &format!("{base}/varz")).await?;
    let connz = get(http, &format!("{base}/connz?limit=1")).await?;
    let subsz = get(http, &format!("{base}/subsz")).await?;
    Ok(json!({
        "connections": varz["connections"],
        "connz_connections": connz["total"],
        "subscriptions": subsz["num_subscriptions"],
        "slow_consumers": varz["slow_consumers"],
        "mem_bytes": varz["mem"],
        "cpu": varz["cpu"],
        "in_msgs": varz["in_msgs"],
        "out_msgs": varz["out_msgs"],
    }))
}

/// Runs the scraper; returns the exit code.
pub async fn run(args: ScrapeArgs) -> Result<i32, MeasureError> {
    if args.vars.is_empty() && args.nats.is_empty() {
        return Err(MeasureError::flag(
            "--vars/--nats-monitor",
            "nothing to scrape: give --vars and/or --nats-monitor",
        ));
    }
    if !args.interval.is_finite() || args.interval <= 0.0 {
        return Err(MeasureError::flag(
            "--interval",
            "must be a positive number of seconds",
        ));
    }
    if !args.duration.is_finite() || args.duration < 0.0 {
        return Err(MeasureError::flag(
            "--duration",
            "must be a non-negative number of seconds",
        ));
    }
    let not_writable = |source| MeasureError::OutNotWritable {
        path: args.out.clone(),
        source,
    };
    std::fs::create_dir_all(&args.out).map_err(not_writable)?;
    let path = args.out.join("samples.jsonl");
    let mut file = std::fs::File::create(&path).map_err(not_writable)?;
    let write_error = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| MeasureError::Write { path, source }
    };
    let interrupts = signals::listen("scrape")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .map_err(|e| MeasureError::Http(e.to_string()))?;
    let started = Instant::now();
    let mut samples: Vec<Value> = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(args.interval));
    let mut errors = 0usize;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = interrupts.wait() => break,
        }
        let t = started.elapsed().as_secs_f64();
        // Wall-clock time too, so that `measure --scrape-samples` can place the samples.
        let unix = crate::monitor::unix_now();
        for base in &args.vars {
            let url = vars_url(base);
            let line = match get(&http, &url).await.and_then(|v| emulator_fields(&v)) {
                Ok(fields) => {
                    json!({"t": t, "unix": unix, "kind": "emulator", "source": url, "fields": fields})
                }
                Err(e) => {
                    errors += 1;
                    json!({"t": t, "unix": unix, "kind": "emulator", "source": url, "error": e})
                }
            };
            writeln!(file, "{line}").map_err(write_error(&path))?;
            samples.push(line);
        }
        for base in &args.nats {
            let line = match nats_fields(&http, base).await {
                Ok(f) => json!({"t": t, "unix": unix, "kind": "nats", "source": base, "fields": f}),
                Err(e) => {
                    errors += 1;
                    json!({"t": t, "unix": unix, "kind": "nats", "source": base, "error": e})
                }
            };
            writeln!(file, "{line}").map_err(write_error(&path))?;
            samples.push(line);
        }
        if !args.quiet {
            eprintln!(
                "scrape: t={t:.1}s samples={} errors={errors}",
                samples.len()
            );
        }
        if started.elapsed().as_secs_f64() + args.interval > args.duration {
            break;
        }
    }
    file.flush().map_err(write_error(&path))?;
    let page = args.out.join("scrape.html");
    std::fs::write(&page, html(&samples)).map_err(write_error(&page))?;
    println!(
        "scraped {} samples ({errors} failed) into {}",
        samples.len(),
        args.out.display()
    );
    if let Some(signal) = interrupts.received() {
        println!(
            "interrupted by {} after {:.1}s of {}s",
            signal.name(),
            started.elapsed().as_secs_f64(),
            args.duration
        );
        return Ok(signal.exit_code());
    }
    Ok(0)
}

/// Series of `field` per source of `kind`; counters become per-second rates when `rate`.
fn series(samples: &[Value], kind: &str, field: &str, rate: bool, scale: f64) -> Vec<Series> {
    let mut by_source: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s["kind"] == kind) {
        if let (Some(t), Some(v)) = (s["t"].as_f64(), s["fields"][field].as_f64()) {
            by_source
                .entry(s["source"].as_str().unwrap_or_default().to_owned())
                .or_default()
                .push((t, v / scale));
        }
    }
    by_source
        .into_iter()
        .map(|(name, points)| {
            let points = if rate {
                points
                    .windows(2)
                    .map(|w| {
                        (
                            w[1].0,
                            ((w[1].1 - w[0].1) / (w[1].0 - w[0].0).max(1e-9)).max(0.0),
                        )
                    })
                    .collect()
            } else {
                points
            };
            Series { name, points }
        })
        .collect()
}

fn html(samples: &[Value]) -> String {
    let charts = vec![
        report::line_chart(
            "Emulator instances connected",
            "seconds",
            "instances",
            &series(samples, "emulator", "connected", false, 1.0),
        ),
        report::line_chart(
            "Emulator memory",
            "seconds",
            "MiB",
            &series(samples, "emulator", "rss_bytes", false, 1048576.0),
        ),
        report::line_chart(
            "Emulator requests per second",
            "seconds",
            "requests/s",
            &series(samples, "emulator", "requests", true, 1.0),
        ),
        report::line_chart(
            "Emulator replies per second",
            "seconds",
            "replies/s",
            &series(samples, "emulator", "replies", true, 1.0),
        ),
        report::line_chart(
            "Broker connections",
            "seconds",
            "connections",
            &series(samples, "nats", "connections", false, 1.0),
        ),
        report::line_chart(
            "Broker subscriptions",
            "seconds",
            "subscriptions",
            &series(samples, "nats", "subscriptions", false, 1.0),
        ),
        report::line_chart(
            "Broker slow consumers",
            "seconds",
            "slow consumers",
            &series(samples, "nats", "slow_consumers", false, 1.0),
        ),
        report::line_chart(
            "Broker memory",
            "seconds",
            "MiB",
            &series(samples, "nats", "mem_bytes", false, 1048576.0),
        ),
    ];
    let errors = samples.iter().filter(|s| s.get("error").is_some()).count();
    report::page(
        "Choria fleet scrape",
        &[
            ("samples".to_owned(), samples.len().to_string()),
            ("failed samples".to_owned(), errors.to_string()),
        ],
        &charts,
    )
}
