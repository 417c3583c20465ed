//! A fleet bigger than one process may hold: the emulator becomes a supervisor of worker
//! processes (the same binary), each within its open-file budget.
//!
//! Stages: split the identities `<name>-0 … <name>-(N-1)` into contiguous shares, one per
//! worker → start the private broker (a cluster when one server cannot hold the fleet) unless
//! `--server` was given → start each worker with its share (`--worker-offset`,
//! `--fleet-instances`), its own loopback source addresses and an HTTP port of its own, all at
//! once (they connect in parallel, each with its share of `--connect-concurrency` per server),
//! then read every ready line → serve one `/debug/vars` and `/metrics` that sum the workers',
//! with a per-worker breakdown, and the live page at `/` over them → watch the workers: one
//! that dies is started again (at most
//! `--worker-restarts` times each), else the fleet stops with an error → on shutdown, SIGTERM
//! every worker and wait, SIGKILL what is left. Workers are tied to the supervisor by the kernel
//! (`PR_SET_PDEATHSIG`) and registered for the emergency clean-up, so none is ever orphaned.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agents::debug_vars::{BrokerInfo, Counters, DebugVars, FleetConfig, MemStats, WorkerInfo};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::brokers::{self, PrivateBrokers};
use crate::config::Config;
use crate::fleet::StopReport;
use crate::{Error, limits};

use std::future::Future;

/// Why a supervised fleet failed.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot find the emulator binary to start workers: {0}")]
    Binary(std::io::Error),
    #[error("cannot start worker {worker}: {source}")]
    Spawn {
        worker: usize,
        source: std::io::Error,
    },
    #[error("worker {worker} exited before it was ready ({status})")]
    NotReady { worker: usize, status: String },
    #[error("worker {worker} died {times} times ({status}); stopping the fleet")]
    Died {
        worker: usize,
        times: u32,
        status: String,
    },
}

/// One worker's share of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub first: u32,
    pub count: u32,
}

/// Splits `instances` into `workers` contiguous shares whose sizes differ by at most one.
pub fn split(instances: u32, workers: u32) -> Vec<Share> {
    let workers = workers.clamp(1, instances.max(1));
    let (base, extra) = (instances / workers, instances % workers);
    let mut first = 0;
    (0..workers)
        .map(|w| {
            let count = base + u32::from(w < extra);
            let share = Share { first, count };
            first += count;
            share
        })
        .collect()
}

/// How many workers a fleet needs: `--workers`, else as many as `budget` instances each allows.
pub fn workers_needed(config: &Config, budget: u64) -> u32 {
    config.workers.unwrap_or_else(|| {
        u32::try_from(u64::from(config.instances).div_ceil(budget.max(1))).unwrap_or(u32::MAX)
    })
}

/// A started worker.
struct Worker {
    share: Share,
    child: Child,
    http: String,
    restarts: u32,
}

/// What the HTTP handlers read.
struct View {
    config: Config,
    brokers: Vec<BrokerInfo>,
    workers: Mutex<Vec<(u32, Share, String, u32)>>,
    http: reqwest::Client,
}

/// Runs a fleet of `workers` processes until `shutdown`.
pub async fn run(
    config: Config,
    workers: u32,
    shutdown: impl Future<Output = ()>,
) -> Result<StopReport, Error> {
    let started = Instant::now();
    let nofile = limits::raise_nofile();
    let ports = limits::ephemeral_ports();
    let shares = split(config.instances, workers);
    let binary = std::env::current_exe().map_err(SupervisorError::Binary)?;
    let mut broker = None;
    let servers = if config.servers.is_empty() {
        let members = config.brokers.unwrap_or_else(|| {
            PrivateBrokers::members_for(
                u64::from(config.instances),
                brokers::per_server_budget(nofile),
            )
        });
        let b = tokio::task::spawn_blocking(move || PrivateBrokers::start(members))
            .await
            .map_err(|e| natsproc::NatsError::Spawn(std::io::Error::other(e)))??;
        let urls = b.client_urls();
        broker = Some(b);
        urls
    } else {
        config.servers.clone()
    };
    let loopback = config.bind.is_empty() && servers.iter().all(|s| limits::is_loopback_url(s));
    let listener = std::net::TcpListener::bind(config.http).map_err(|error| Error::Http {
        addr: config.http,
        error,
    })?;
    let http_addr = listener.local_addr().map_err(|error| Error::Http {
        addr: config.http,
        error,
    })?;
    tracing::info!(
        instances = config.instances,
        workers = shares.len(),
        servers = ?servers,
        http = %http_addr,
        "starting a supervised fleet"
    );
    let mut starting = Vec::with_capacity(shares.len());
    let mut next_source = 1u32;
    for (w, share) in shares.iter().enumerate() {
        let sources = if loopback {
            let n = limits::auto_loopback_sources(u64::from(share.count), ports)
                .len()
                .max(1) as u32;
            let range = (next_source, next_source + n - 1);
            next_source += n;
            Some(range)
        } else {
            None
        };
        let args = worker_args(&config, *share, &servers, sources, shares.len() as u32);
        match spawn_worker(&binary, w, *share, &args) {
            Ok(s) => starting.push(s),
            Err(e) => {
                abandon(starting.into_iter().map(|s| s.child));
                return Err(e.into());
            }
        }
    }
    let mut running = tokio::task::spawn_blocking(move || await_all(starting))
        .await
        .map_err(|e| SupervisorError::NotReady {
            worker: 0,
            status: format!("waiting for the ready lines failed: {e}"),
        })??;
    let view = Arc::new(View {
        brokers: broker
            .as_ref()
            .map(PrivateBrokers::infos)
            .unwrap_or_default(),
        workers: Mutex::new(
            running
                .iter()
                .map(|w| (w.child.id(), w.share, w.http.clone(), w.restarts))
                .collect(),
        ),
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| Error::Http {
                addr: http_addr,
                error: std::io::Error::other(e),
            })?,
        config: config.clone(),
    });
    let cancel = CancellationToken::new();
    let http = tokio::spawn(serve(listener, Arc::clone(&view), cancel.clone()));
    println!(
        "emulator: {} instances answering on {} in {} workers, ready in {:.3}s, vars at http://{}/debug/vars",
        config.instances,
        servers.join(","),
        running.len(),
        started.elapsed().as_secs_f64(),
        http_addr
    );
    tokio::pin!(shutdown);
    let mut watch = tokio::time::interval(Duration::from_millis(200));
    let outcome = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            _ = watch.tick() => {
                if let Err(e) = restart_dead(&binary, &config, &servers, &mut running, &view) {
                    break Err(e);
                }
            }
        }
    };
    let report = stop_workers(&mut running, config.shutdown_timeout).await;
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    if let Some(mut b) = broker {
        let _ = tokio::task::spawn_blocking(move || b.stop()).await;
    }
    outcome?;
    Ok(report)
}

/// The command line of one worker.
fn worker_args(
    config: &Config,
    share: Share,
    servers: &[String],
    sources: Option<(u32, u32)>,
    workers: u32,
) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--name".into(),
        config.name.clone(),
        "--instances".into(),
        share.count.to_string(),
        "--workers".into(),
        "1".into(),
        "--worker-offset".into(),
        share.first.to_string(),
        "--fleet-instances".into(),
        config.fleet_instances.to_string(),
        "--agents".into(),
        config.agents.to_string(),
        "--collectives".into(),
        config.collectives.len().to_string(),
        "--server".into(),
        servers.join(","),
        "--http-port".into(),
        "0".into(),
        "--http-address".into(),
        "127.0.0.1".into(),
        "--connect-rate".into(),
        (config.connect_rate / workers).max(1).to_string(),
        "--connect-concurrency".into(),
        (config.connect_concurrency / workers).max(1).to_string(),
        "--max-message".into(),
        config.max_message.to_string(),
        "--server-strategy".into(),
        config.server_strategy.as_str().to_owned(),
        "--classes".into(),
        config.classes.join(","),
        "--shards".into(),
        config.shards.to_string(),
        "--seed".into(),
        config.seed.to_string(),
        "--shutdown-timeout".into(),
        config.shutdown_timeout.as_secs_f64().to_string(),
        "--loglevel".into(),
        config.loglevel.clone(),
    ];
    if let Some(r) = &config.registration {
        a.extend([
            "--registration".into(),
            r.kind.plugin().to_owned(),
            "--registerinterval".into(),
            r.interval.as_secs().max(1).to_string(),
            // The supervisor's epoch: every worker (and a restarted one) keeps the fleet's
            // phases.
            "--registration-epoch".into(),
            r.epoch_ms.to_string(),
        ]);
        if !r.splay {
            a.push("--no-registration-splay".into());
        }
        if let Some(c) = &r.collective {
            a.extend(["--registration-collective".into(), c.clone()]);
        }
        if let Some(t) = &r.target {
            a.extend(["--registration-target".into(), t.clone()]);
        }
        if let Some(f) = &r.file {
            a.extend(["--registration-file".into(), f.path.display().to_string()]);
        }
    }
    let faults = config.faults.to_string();
    if !faults.is_empty() {
        a.extend(["--faults".into(), faults]);
    }
    if let Some(f) = &config.facts_file {
        a.extend(["--facts".into(), f.display().to_string()]);
    }
    if let Some(c) = &config.config_file {
        a.extend(["--config".into(), c.display().to_string()]);
    }
    if let Some(t) = &config.connect_timeout {
        a.extend(["--connect-timeout".into(), t.as_secs_f64().to_string()]);
    }
    if let Some(tls) = &config.tls {
        a.push("--tls".into());
        if tls.verify {
            a.push("--verify".into());
        }
        for (flag, path) in [
            ("--tls-ca", &tls.ca),
            ("--tls-cert", &tls.cert),
            ("--tls-key", &tls.key),
        ] {
            if let Some(p) = path {
                a.extend([flag.into(), p.display().to_string()]);
            }
        }
    }
    match (sources, config.bind.as_slice()) {
        (Some((first, last)), _) => {
            a.extend(["--bind".into(), format!("127.0.0.{first}-127.0.0.{last}")]);
        }
        (None, []) => {}
        (None, bind) => {
            let list: Vec<String> = bind.iter().map(ToString::to_string).collect();
            a.extend(["--bind".into(), list.join(",")]);
        }
    }
    a
}

/// A worker process started but not ready yet: its ready line arrives on `ready`.
struct Starting {
    index: usize,
    share: Share,
    child: Child,
    ready: std::sync::mpsc::Receiver<String>,
}

/// Starts a worker process without waiting for it: the fleet's workers connect at the same
/// time, each with its share of `--connect-concurrency`.
fn spawn_worker(
    binary: &PathBuf,
    index: usize,
    share: Share,
    args: &[String],
) -> Result<Starting, SupervisorError> {
    let mut command = Command::new(binary);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child =
        natsproc::process::spawn_tied(command).map_err(|source| SupervisorError::Spawn {
            worker: index,
            source,
        })?;
    natsproc::process::register_cleanup(child.id(), None);
    let (tx, ready) = std::sync::mpsc::channel();
    if let Some(out) = child.stdout.take() {
        // Reads the ready line, then keeps draining the worker's stdout so it never blocks on
        // a full pipe.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            let mut sink = String::new();
            while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
    }
    Ok(Starting {
        index,
        share,
        child,
        ready,
    })
}

/// Waits (blocking) for a started worker's ready line.
fn await_ready(starting: Starting) -> Result<Worker, SupervisorError> {
    let Starting {
        index,
        share,
        mut child,
        ready,
    } = starting;
    let line = ready.recv().unwrap_or_default();
    let Some(http) = line
        .split_whitespace()
        .last()
        .filter(|u| u.ends_with("/debug/vars"))
        .map(|u| u.trim_end_matches("/debug/vars").to_owned())
    else {
        let status = child
            .wait()
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        natsproc::process::unregister_cleanup(child.id());
        return Err(SupervisorError::NotReady {
            worker: index,
            status,
        });
    };
    tracing::info!(
        worker = index,
        pid = child.id(),
        first = share.first,
        instances = share.count,
        http = %http,
        "worker ready"
    );
    Ok(Worker {
        share,
        child,
        http,
        restarts: 0,
    })
}

/// Waits (blocking) for every started worker's ready line, in order. When one is not ready,
/// every other worker, ready or still starting, is killed: a fleet starts whole or not at all.
fn await_all(starting: Vec<Starting>) -> Result<Vec<Worker>, SupervisorError> {
    let mut ready: Vec<Worker> = Vec::with_capacity(starting.len());
    let mut rest = starting.into_iter();
    while let Some(next) = rest.next() {
        match await_ready(next) {
            Ok(worker) => ready.push(worker),
            Err(e) => {
                abandon(
                    rest.map(|s| s.child)
                        .chain(ready.into_iter().map(|w| w.child)),
                );
                return Err(e);
            }
        }
    }
    Ok(ready)
}

/// Kills and reaps workers of a fleet that could not start.
fn abandon(children: impl Iterator<Item = Child>) {
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
        natsproc::process::unregister_cleanup(child.id());
    }
}

fn start_worker(
    binary: &PathBuf,
    index: usize,
    share: Share,
    args: &[String],
) -> Result<Worker, SupervisorError> {
    await_ready(spawn_worker(binary, index, share, args)?)
}

/// Starts again every worker that died, or fails when one died too often.
fn restart_dead(
    binary: &PathBuf,
    config: &Config,
    servers: &[String],
    running: &mut [Worker],
    view: &View,
) -> Result<(), Error> {
    let workers = running.len() as u32;
    for (w, worker) in running.iter_mut().enumerate() {
        let Ok(Some(status)) = worker.child.try_wait() else {
            continue;
        };
        natsproc::process::unregister_cleanup(worker.child.id());
        if worker.restarts >= config.worker_restarts {
            return Err(SupervisorError::Died {
                worker: w,
                times: worker.restarts + 1,
                status: status.to_string(),
            }
            .into());
        }
        tracing::warn!(worker = w, %status, restarts = worker.restarts + 1, "worker died, starting it again");
        let ports = limits::ephemeral_ports();
        let sources = (config.bind.is_empty()
            && servers.iter().all(|s| limits::is_loopback_url(s)))
        .then(|| {
            let n = limits::auto_loopback_sources(u64::from(worker.share.count), ports)
                .len()
                .max(1) as u32;
            // A fresh range above every worker's first one, away from the dead worker's
            // TIME_WAIT sockets.
            let first = 1 + 16 * (w as u32 + 1) + worker.restarts * n;
            (first.min(250), (first + n - 1).min(254))
        });
        let args = worker_args(config, worker.share, servers, sources, workers);
        let restarts = worker.restarts + 1;
        *worker = start_worker(binary, w, worker.share, &args)?;
        worker.restarts = restarts;
        if let Ok(mut list) = view.workers.lock()
            && let Some(slot) = list.get_mut(w)
        {
            *slot = (
                worker.child.id(),
                worker.share,
                worker.http.clone(),
                restarts,
            );
        }
    }
    Ok(())
}

/// SIGTERM to every worker, wait up to `deadline` (plus a little for the processes to exit),
/// then SIGKILL.
async fn stop_workers(running: &mut [Worker], deadline: Duration) -> StopReport {
    let begun = Instant::now();
    for w in running.iter() {
        natsproc::send_signal(w.child.id() as i32, natsproc::process::Signal::TERM);
    }
    let limit = deadline + Duration::from_secs(2);
    let mut clean = true;
    for w in running.iter_mut() {
        loop {
            match w.child.try_wait() {
                Ok(Some(status)) => {
                    clean &= status.success();
                    break;
                }
                Ok(None) if begun.elapsed() < limit => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(None) | Err(_) => {
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                    clean = false;
                    break;
                }
            }
        }
        natsproc::process::unregister_cleanup(w.child.id());
    }
    StopReport {
        drained_cleanly: clean,
        elapsed: begun.elapsed(),
    }
}

async fn serve(listener: std::net::TcpListener, view: Arc<View>, cancel: CancellationToken) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "HTTP listener failed");
            return;
        }
    };
    let app = Router::new()
        .route("/", get(crate::http::live_page))
        .route("/debug/vars", get(serve_vars))
        .route("/metrics", get(serve_metrics))
        .with_state(view);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await;
}

/// The fleet's `/debug/vars`: the workers' counters summed, with each worker's own.
async fn fleet_vars(view: &View) -> DebugVars {
    let workers = view.workers.lock().map(|w| w.clone()).unwrap_or_default();
    let mut total = Counters::default();
    let mut memory = MemStats::default();
    let mut infos = Vec::with_capacity(workers.len());
    for (pid, share, http, restarts) in workers {
        let vars: DebugVars = match view.http.get(format!("{http}/debug/vars")).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => DebugVars::default(),
        };
        total.add(&vars.emulator);
        memory.rss += vars.memstats.rss;
        memory.sys += vars.memstats.sys;
        memory.peak_rss += vars.memstats.peak_rss;
        memory.vm_size += vars.memstats.vm_size;
        infos.push(WorkerInfo {
            pid,
            first_instance: u64::from(share.first),
            instances: u64::from(share.count),
            http,
            restarts,
            memstats: vars.memstats,
            emulator: vars.emulator,
        });
    }
    // Instances configured is the fleet's, also while a worker is down.
    total.instances.configured = u64::from(view.config.instances);
    let config = &view.config;
    DebugVars {
        cmdline: config.cmdline.clone(),
        name: config.name.clone(),
        config: FleetConfig {
            instances: u64::from(config.instances),
            agents: u64::from(config.agents),
            collectives: config.collectives.len() as u64,
            pid: std::process::id(),
            tls: u8::from(config.tls.is_some()),
            tls_verify: u8::from(config.tls.as_ref().is_some_and(|t| t.verify)),
        },
        memstats: memory,
        emulator: total,
        brokers: view.brokers.clone(),
        workers: infos,
    }
}

async fn serve_vars(State(view): State<Arc<View>>) -> impl IntoResponse {
    axum::Json(fleet_vars(&view).await)
}

async fn serve_metrics(State(view): State<Arc<View>>) -> impl IntoResponse {
    let vars = fleet_vars(&view).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::prometheus(&vars.emulator, vars.memstats.rss),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Args;
    use clap::{CommandFactory as _, Parser as _};

    #[test]
    fn shares_cover_every_identity_once() {
        let shares = split(50_000, 3);
        assert_eq!(shares.iter().map(|s| s.count).sum::<u32>(), 50_000);
        assert_eq!(
            shares[0],
            Share {
                first: 0,
                count: 16_667
            }
        );
        assert_eq!(shares[1].first, 16_667);
        assert_eq!(shares[2].first + shares[2].count, 50_000);
        assert_eq!(split(5, 10).len(), 5, "no empty workers");
        assert_eq!(split(7, 1), vec![Share { first: 0, count: 7 }]);
    }

    /// Flags the supervisor keeps to itself: workers get their own value from it instead.
    const SUPERVISOR_ONLY: &[&str] = &[
        "help",
        "version",
        // the worker's own share, budget, restarts and HTTP port
        "workers",
        "worker-restarts",
        "brokers",
        "process-budget",
        "http-port",
    ];

    #[test]
    fn every_fleet_flag_reaches_the_workers_or_is_the_supervisor_s_own() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let (facts, conf, reg) = (
            file("facts.json", "{}"),
            file("choria.conf", ""),
            file("reg.json", "{}"),
        );
        let (ca, cert, key) = (file("ca.pem", ""), file("c.pem", ""), file("k.pem", ""));
        // Every flag, given a value (the paths have no spaces).
        let line = format!(
            "emulator --name n --instances 10 --agents 2 --collectives 2 --config {conf} \
             --server nats://127.0.0.1:4222 --http-port 0 --http-address 127.0.0.1 --tls \
             --verify --tls-ca {ca} --tls-cert {cert} --tls-key {key} --connect-rate 100 \
             --connect-concurrency 8 --bind 127.0.0.2 --server-strategy ordered \
             --connect-timeout 3 --max-message 2048 --facts {facts} --classes a,b --shards 3 \
             --faults fail=5% --seed 7 --registration filecontent --registration-file {reg} \
             --registerinterval 30 --no-registration-splay --registration-collective mcollective \
             --registration-target x.y --registration-epoch 1 --workers 2 --worker-restarts 1 \
             --brokers 1 --process-budget 100 --worker-offset 0 --fleet-instances 10 \
             --shutdown-timeout 2 --loglevel warn"
        );
        let argv: Vec<&str> = line.split_whitespace().collect();
        let args = Args::try_parse_from(&argv).unwrap();
        let config = Config::from_args(&args).unwrap();
        let share = Share { first: 0, count: 5 };
        let forwarded = worker_args(&config, share, &config.servers, None, 2);
        let mut missing = Vec::new();
        for arg in Args::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let flag = format!("--{long}");
            assert!(
                argv.contains(&flag.as_str()) || SUPERVISOR_ONLY.contains(&long),
                "{flag} is new: give it a value in this test"
            );
            if !SUPERVISOR_ONLY.contains(&long) && !forwarded.contains(&flag) {
                missing.push(flag);
            }
        }
        assert!(
            missing.is_empty(),
            "flags the workers never get (forward them in worker_args or list them in \
             SUPERVISOR_ONLY): {missing:?}"
        );
    }
}
