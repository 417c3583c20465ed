//! `emulator-bench`: the emulator's benchmark command (see docs/benchmarks.md).
//!
//! For each fleet size it starts a private nats-server, runs the real `emulator` binary against
//! it, and reports: time until every instance is connected and subscribed, emulator and
//! nats-server memory per instance, and the time for one broadcast discovery and one broadcast
//! `generate` RPC to collect every reply.

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

async fn one(size: u32, args: &Args) -> anyhow::Result<Row> {
    wait_for_time_wait().await;
    let broker =
        tokio::task::spawn_blocking(|| LocalNatsServer::start(&LocalNatsOptions::default()))
            .await??;
    let nats_pid = broker.pid().context("nats-server pid")?;
    let nats_before = rss_kb(nats_pid);
    let exe = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .join("emulator");
    let mut child = Command::new(&exe)
        .args([
            "-i",
            &size.to_string(),
            "--name",
            "bench",
            "--server",
            &broker.client_url(),
        ])
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
    natsproc::send_signal(child.id() as i32, natsproc::process::Signal::TERM);
    let _ = tokio::task::spawn_blocking(move || child.wait()).await?;
    Ok(Row {
        size,
        ready_s,
        emu_kb,
        nats_kb,
        discovery,
        rpc,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    emulator::limits::raise_nofile();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "| instances | connected+subscribed | emulator RSS/instance | nats-server RSS/instance | discovery, all replies (best / median) | generate RPC, all replies (best / median) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for &size in &args.sizes {
        let row = runtime.block_on(one(size, &args))?;
        println!(
            "| {} | {:.2} s | {:.1} KB | {:.1} KB | {:.3} s / {:.3} s | {:.3} s / {:.3} s |",
            row.size,
            row.ready_s,
            row.emu_kb,
            row.nats_kb,
            best(&row.discovery),
            median(&row.discovery),
            best(&row.rpc),
            median(&row.rpc)
        );
    }
    Ok(())
}
