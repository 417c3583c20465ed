//! `emulator-bench`: the emulator's benchmark command (see docs/benchmarks.md).
//!
//! For each fleet size it starts a private nats-server, runs the real `emulator` binary against
//! it, and reports: time until every instance is connected and subscribed, emulator and
//! nats-server memory per instance, and the time for one broadcast discovery and one broadcast
//! `generate` RPC to collect every reply. Then, on the same broker: after `kill -9` of
//! nats-server and its restart on the same port, the time until the broker's `/varz` counts the
//! whole fleet connected and subscribed, and until one broadcast is answered by all of it; and
//! the time for a second fleet started at once after the first was stopped (the stopped fleet's
//! sockets are still in TIME_WAIT).

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agents::Filter;
use agents::client::{Call, Client, ClientOptions, Targets};
use anyhow::{Context as _, bail};
use clap::Parser;
use natsproc::{LocalNatsOptions, LocalNatsServer};

/// Benchmarks the emulator at several fleet sizes.
#[derive(Debug, Parser)]
struct Args {
    /// Fleet sizes to run.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,19000")]
    sizes: Vec<u32>,
    /// Discovery and RPC rounds per size (the best and median are reported).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Seconds to let memory settle before reading it.
    #[arg(long, default_value_t = 3)]
    settle: u64,
    /// Skip the broker-restart and restart-after-stop measurements.
    #[arg(long)]
    no_restarts: bool,
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct Row {
    size: u32,
    ready_s: f64,
    emu_kb: f64,
    nats_kb: f64,
    discovery: Vec<f64>,
    rpc: Vec<f64>,
    broker_subscribed_s: Option<f64>,
    broker_back_s: Option<f64>,
    restart_ready_s: Option<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Sockets in TIME_WAIT, from /proc/net/sockstat.
fn time_wait() -> u64 {
    std::fs::read_to_string("/proc/net/sockstat")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let mut words = l.split_whitespace();
            words.position(|w| w == "tw")?;
            words.next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// A previous run's connections linger in TIME_WAIT for 60 s and make the kernel search for
/// free ports; measuring on top of them would time the kernel, not the emulator.
async fn wait_for_time_wait() {
    let started = Instant::now();
    while time_wait() > 500 && started.elapsed() < Duration::from_secs(90) {
        if started.elapsed().as_secs().is_multiple_of(10) {
            eprintln!("waiting for {} TIME_WAIT sockets to expire", time_wait());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Starts the `emulator` binary beside this one; returns it and its "ready in" seconds.
async fn start_fleet(size: u32, url: &str) -> anyhow::Result<(std::process::Child, f64)> {
    let exe = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .join("emulator");
    let mut child = Command::new(&exe)
        .args(["-i", &size.to_string(), "--name", "bench", "--server", url])
        .args([
            "-p",
            "0",
            "--http-address",
            "127.0.0.1",
            "--loglevel",
            "warn",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await??;
    let ready_s: f64 = line
        .split("ready in ")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("unexpected emulator output {line:?}"))?;
    Ok((child, ready_s))
}

async fn stop_fleet(child: std::process::Child) -> anyhow::Result<()> {
    let mut child = child;
    natsproc::send_signal(child.id() as i32, natsproc::process::Signal::TERM);
    let _ = tokio::task::spawn_blocking(move || child.wait()).await?;
    Ok(())
}

/// The broker's `/varz` counters: client connections and subscriptions.
async fn varz(http: &reqwest::Client, monitor: &str) -> anyhow::Result<(u64, u64)> {
    let v: serde_json::Value = http
        .get(format!("{monitor}/varz"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let field = |k: &str| v[k].as_u64().with_context(|| format!("/varz has no {k}"));
    Ok((field("connections")?, field("subscriptions")?))
}

/// After the broker restart: seconds until the broker's `/varz` shows the whole fleet connected
/// and subscribed again, and seconds until one broadcast discovery published after that is
/// answered by all `size` instances. Both are counted from the restarted broker being ready.
///
/// A discovery is published once; an instance that has not resubscribed yet misses it. So the
/// broadcast is sent when the broker counts `fleet_subs` subscriptions, and repeated (with a
/// 10 s window, answered early when all `size` replied) only if some instance still missed it.
async fn until_answered(
    url: &str,
    monitor: &str,
    size: u32,
    fleet_subs: u64,
) -> anyhow::Result<(f64, f64)> {
    let back = Instant::now();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;
    let subscribed = loop {
        if let Ok((conns, subs)) = varz(&http, monitor).await
            && conns >= u64::from(size)
            && subs >= fleet_subs
        {
            break back.elapsed().as_secs_f64();
        }
        if back.elapsed() > Duration::from_secs(120) {
            bail!("after the broker restart the fleet did not reconnect and resubscribe in 120 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let client = Client::connect(&[url.to_owned()], ClientOptions::default()).await?;
    loop {
        let found = client
            .discover(
                Filter::default(),
                Duration::from_secs(10),
                Some(size as usize),
            )
            .await?;
        if found.len() == size as usize {
            return Ok((subscribed, back.elapsed().as_secs_f64()));
        }
        if back.elapsed() > Duration::from_secs(120) {
            bail!(
                "after the broker restart only {} of {size} answer",
                found.len()
            );
        }
    }
}

async fn one(size: u32, args: &Args) -> anyhow::Result<Row> {
    wait_for_time_wait().await;
    let mut broker =
        tokio::task::spawn_blocking(|| LocalNatsServer::start(&LocalNatsOptions::default()))
            .await??;
    let nats_pid = broker.pid().context("nats-server pid")?;
    let nats_before = rss_kb(nats_pid);
    let url = broker.client_url();
    let (child, ready_s) = start_fleet(size, &url).await?;
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let emu_kb = rss_kb(child.id()) as f64 / f64::from(size);
    let nats_kb = (rss_kb(nats_pid).saturating_sub(nats_before)) as f64 / f64::from(size);
    let client = Client::connect(&[broker.client_url()], ClientOptions::default()).await?;
    let mut discovery = Vec::new();
    let mut rpc = Vec::new();
    for _ in 0..args.rounds {
        let started = Instant::now();
        let found = client
            .discover(
                Filter::default(),
                Duration::from_secs(30),
                Some(size as usize),
            )
            .await?;
        if found.len() != size as usize {
            bail!("discovery found {} of {size}", found.len());
        }
        discovery.push(started.elapsed().as_secs_f64());
        let mut call = Call::rpc(
            "emulated0",
            "generate",
            Default::default(),
            Targets::Broadcast,
            Duration::from_secs(30),
        );
        call.expected = Some(size as usize);
        let started = Instant::now();
        let got = client.call(&call).await?;
        if got.senders().len() != size as usize {
            bail!("RPC got {} of {size} replies", got.senders().len());
        }
        rpc.push(started.elapsed().as_secs_f64());
    }
    drop(client);
    let (mut broker_subscribed_s, mut broker_back_s, mut restart_ready_s) = (None, None, None);
    if args.no_restarts {
        stop_fleet(child).await?;
    } else {
        let port = broker.client_port();
        let monitor = broker.monitor_url();
        // The fleet's own subscriptions: the broker's count with only the fleet connected.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let http = reqwest::Client::builder().no_proxy().build()?;
        let (conns, subs) = varz(&http, &monitor).await?;
        let fleet_subs = subs.saturating_sub(conns.saturating_sub(u64::from(size)));
        natsproc::send_signal(nats_pid as i32, natsproc::process::Signal::KILL);
        broker.stop();
        broker = tokio::task::spawn_blocking(move || {
            LocalNatsServer::start(&LocalNatsOptions {
                port: Some(port),
                ..LocalNatsOptions::default()
            })
        })
        .await??;
        let (subscribed, answered) =
            until_answered(&url, &broker.monitor_url(), size, fleet_subs).await?;
        broker_subscribed_s = Some(subscribed);
        broker_back_s = Some(answered);
        stop_fleet(child).await?;
        let (again, ready) = start_fleet(size, &url).await?;
        restart_ready_s = Some(ready);
        stop_fleet(again).await?;
    }
    drop(broker);
    Ok(Row {
        size,
        ready_s,
        emu_kb,
        nats_kb,
        discovery,
        rpc,
        broker_subscribed_s,
        broker_back_s,
        restart_ready_s,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    emulator::limits::raise_nofile();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "| instances | connected+subscribed | emulator RSS/instance | nats-server RSS/instance | discovery, all replies (best / median) | generate RPC, all replies (best / median) | after broker kill -9 + restart: connected+subscribed (/varz) / broadcast answered by all | restart after stop: connected+subscribed |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &size in &args.sizes {
        let row = runtime.block_on(one(size, &args))?;
        println!(
            "| {} | {:.2} s | {:.1} KB | {:.1} KB | {:.3} s / {:.3} s | {:.3} s / {:.3} s | {} | {} |",
            row.size,
            row.ready_s,
            row.emu_kb,
            row.nats_kb,
            best(&row.discovery),
            median(&row.discovery),
            best(&row.rpc),
            median(&row.rpc),
            match (row.broker_subscribed_s, row.broker_back_s) {
                (Some(sub), Some(ans)) => format!("{sub:.2} s / {ans:.2} s"),
                _ => "-".to_owned(),
            },
            row.restart_ready_s
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.2} s")),
        );
    }
    Ok(())
}
