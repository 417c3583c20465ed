//! The emulator: thousands of in-process fake Choria daemons, each on its own NATS connection,
//! answering discovery and RPC on the Choria v1 wire protocol.
//!
//! Layout, in start-up order:
//!
//! 1. [`cli`] → [`config`]: flags, environment and a Choria-style config file become a validated
//!    [`Config`]; [`facts`] renders what each node looks like to filters.
//! 2. [`limits`]: raise the open-file limit and refuse a fleet that cannot fit.
//! 3. private broker: without `--server`, start a private nats-server (the `natsproc` crate).
//! 4. `http`: bind `/debug/vars` and `/metrics`.
//! 5. `fleet`: ramp up the instances; each `instance` connects, subscribes and serves
//!    requests through the `agents` crate, counting everything in [`stats`]. With
//!    `--registration`, one fleet-wide scheduler (`schedule`) wakes each instance to publish
//!    the [`registration`] template.
//! 6. shutdown: the future given to [`run`] (the binary passes `natsproc::shutdown::signals`)
//!    cancels the fleet, which drains within a deadline.
//!
//! The `emulator` binary also runs `emulator measure` and `emulator scrape` from the `measure`
//! crate; this crate holds no measuring, scraping or node-daemon code.

pub mod brokers;
pub mod cli;
pub mod config;
pub mod facts;
pub mod faults;
mod fleet;
mod http;
mod instance;
pub mod limits;
pub mod metrics;
pub mod registration;
mod schedule;
mod shared;
pub mod stats;
pub mod supervisor;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use config::{Config, ConfigBuilder};
pub use fleet::StopReport;
pub use registration::RegistrationConfig;

use crate::fleet::Fleet;
use crate::limits::FitError;
use crate::shared::{Shared, TlsError};
use natsproc::NatsError;

use crate::brokers::PrivateBrokers;

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Fit(#[from] FitError),
    #[error(transparent)]
    Broker(#[from] NatsError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("invalid server list: {0}")]
    Servers(#[from] natsclient::Error),
    #[error("--connect-timeout {seconds}s passed: {summary}")]
    ConnectTimeout { seconds: f64, summary: String },
    #[error("only {ready} of {configured} instances connected within {seconds}s")]
    NotReady {
        ready: u64,
        configured: u32,
        seconds: f64,
    },
    #[error(transparent)]
    Supervisor(#[from] supervisor::SupervisorError),
    /// The OS error is part of the message, not a `source`, so that it is printed once.
    #[error("cannot listen for HTTP on {addr}: {error}")]
    Http {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// A started emulator.
pub struct Running {
    shared: Arc<Shared>,
    fleet: Fleet,
    broker: Option<PrivateBrokers>,
    http_addr: SocketAddr,
    servers: Vec<String>,
    http_cancel: CancellationToken,
    http_thread: Option<std::thread::JoinHandle<()>>,
    started: Instant,
}

/// Starts the emulator: checks limits, starts a private broker when needed, binds HTTP and
/// begins the connection ramp. Returns as soon as the ramp has begun.
pub async fn start(mut config: Config) -> Result<Running, Error> {
    let started = Instant::now();
    let nofile = limits::raise_nofile();
    let ports = limits::ephemeral_ports();
    let broker_addresses = config.servers.len().max(1) as u64;
    let auto_bind =
        config.bind.is_empty() && config.servers.iter().all(|s| limits::is_loopback_url(s));
    if auto_bind {
        config.bind = limits::auto_loopback_sources(u64::from(config.instances), ports);
    }
    // Refuse a fleet that cannot fit before saying anything about how it would be laid out.
    limits::check_fit(
        u64::from(config.instances),
        nofile,
        config.bind.len() as u64,
        broker_addresses,
        ports,
    )?;
    if auto_bind && !config.bind.is_empty() {
        tracing::info!(
            sources = config.bind.len(),
            "spreading instances over loopback source addresses (see --bind)"
        );
    }
    let mut broker = None;
    let servers = if config.servers.is_empty() {
        let members = config.brokers.unwrap_or_else(|| {
            PrivateBrokers::members_for(
                u64::from(config.instances),
                brokers::per_server_budget(nofile),
            )
        });
        let brokers = tokio::task::spawn_blocking(move || PrivateBrokers::start(members))
            .await
            .map_err(|e| NatsError::Spawn(std::io::Error::other(e)))??;
        tracing::info!(
            urls = ?brokers.client_urls(),
            monitor = %brokers.monitor_url(),
            "started a private nats-server{}",
            if members > 1 { " cluster" } else { "" }
        );
        let urls = brokers.client_urls();
        broker = Some(brokers);
        urls
    } else {
        config.servers.clone()
    };
    let listener = http::bind(config.http).map_err(|error| Error::Http {
        addr: config.http,
        error,
    })?;
    let http_addr = listener.local_addr().map_err(|error| Error::Http {
        addr: config.http,
        error,
    })?;
    let shared = Arc::new(Shared::new(config)?);
    if let (Some(b), Ok(mut infos)) = (&broker, shared.brokers.lock()) {
        *infos = b.infos();
    }
    let http_cancel = CancellationToken::new();
    let http_thread =
        http::spawn(listener, Arc::clone(&shared), http_cancel.clone()).map_err(|error| {
            Error::Http {
                addr: http_addr,
                error,
            }
        })?;
    tracing::info!(
        instances = shared.config.instances,
        agents = shared.config.agents,
        collectives = shared.config.collectives.len(),
        name = %shared.config.name,
        servers = ?servers,
        http = %http_addr,
        open_files = nofile,
        "starting instances"
    );
    let fleet = Fleet::start(Arc::clone(&shared), &servers)?;
    Ok(Running {
        shared,
        fleet,
        broker,
        http_addr,
        servers,
        http_cancel,
        http_thread: Some(http_thread),
        started,
    })
}

impl Running {
    /// Where `/debug/vars` is served.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The NATS URLs the instances use.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// The private nats-server (or cluster), when one was started.
    pub fn broker(&self) -> Option<&PrivateBrokers> {
        self.broker.as_ref()
    }

    /// Kills member `i` of the private cluster at once (as a crash would).
    pub fn kill_broker(&mut self, i: usize) {
        if let Some(PrivateBrokers::Cluster(c)) = &mut self.broker {
            c.kill(i);
        }
    }

    /// Starts member `i` of the private cluster again on its old ports.
    pub async fn restart_broker(&mut self, i: usize) -> Result<(), Error> {
        let Some(PrivateBrokers::Cluster(mut cluster)) = self.broker.take() else {
            return Ok(());
        };
        let (cluster, result) = tokio::task::spawn_blocking(move || {
            let r = cluster.restart(i);
            (cluster, r)
        })
        .await
        .map_err(|e| NatsError::Spawn(std::io::Error::other(e)))?;
        let brokers = PrivateBrokers::Cluster(cluster);
        if let Ok(mut infos) = self.shared.brokers.lock() {
            *infos = brokers.infos();
        }
        self.broker = Some(brokers);
        Ok(result?)
    }

    /// Instances connected and subscribed so far.
    pub fn ready_count(&self) -> u64 {
        self.fleet.ready_count()
    }

    /// Waits until every instance is connected and subscribed; returns the time since start.
    pub async fn wait_ready(&self) -> Duration {
        self.fleet.wait_ready().await
    }

    /// The current /debug/vars document.
    pub fn debug_vars(&self) -> agents::DebugVars {
        http::debug_vars(&self.shared)
    }

    /// Stops every instance (draining within `deadline`), the HTTP listener and the private
    /// broker.
    pub async fn stop(mut self, deadline: Duration) -> StopReport {
        let report = self.fleet.stop(deadline).await;
        self.http_cancel.cancel();
        if let Some(thread) = self.http_thread.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join());
            let _ = tokio::time::timeout(Duration::from_secs(2), joined).await;
        }
        if let Some(mut broker) = self.broker.take() {
            tokio::task::spawn_blocking(move || broker.stop())
                .await
                .ok();
        }
        tracing::info!(
            drained_cleanly = report.drained_cleanly,
            stop_s = report.elapsed.as_secs_f64(),
            uptime_s = self.started.elapsed().as_secs_f64(),
            requests = self.shared.stats.messages_received.get(),
            replies = self.shared.stats.replies_sent.get(),
            invalid = self.shared.stats.invalid_total(),
            "emulator stopped"
        );
        report
    }
}

/// Starts `config` and waits until every instance is connected and subscribed, at most
/// `limit` (tests and embedding programs).
pub async fn start_ready(config: Config, limit: Duration) -> Result<Running, Error> {
    let running = start(config).await?;
    match tokio::time::timeout(limit, running.wait_ready()).await {
        Ok(_) => Ok(running),
        Err(_) => {
            let ready = running.ready_count();
            let configured = running.shared.config.instances;
            running.stop(Duration::from_secs(2)).await;
            Err(Error::NotReady {
                ready,
                configured,
                seconds: limit.as_secs_f64(),
            })
        }
    }
}

/// How often the fleet reports its progress while instances are still connecting.
const CONNECT_SUMMARY_EVERY: Duration = Duration::from_secs(10);

impl Running {
    /// One line: connected M of N, and the latest connection error.
    fn connect_summary(&self) -> String {
        let error = self
            .shared
            .last_connect_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        format!(
            "connected {} of {} instances to {}{error}",
            self.ready_count(),
            self.shared.config.instances,
            self.servers.join(",")
        )
    }

    /// Waits until every instance is ready, printing a summary line every ten seconds; gives
    /// up after `--connect-timeout`.
    async fn wait_ready_reporting(&self) -> Result<Duration, Error> {
        let started = Instant::now();
        let limit = self.shared.config.connect_timeout;
        let ready = self.wait_ready();
        tokio::pin!(ready);
        let mut ticks = tokio::time::interval_at(
            tokio::time::Instant::now() + CONNECT_SUMMARY_EVERY,
            CONNECT_SUMMARY_EVERY,
        );
        let deadline = async {
            match limit {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                elapsed = &mut ready => return Ok(elapsed),
                _ = ticks.tick() => tracing::warn!(
                    seconds = started.elapsed().as_secs(),
                    "{}", self.connect_summary()
                ),
                () = &mut deadline => {
                    return Err(Error::ConnectTimeout {
                        seconds: limit.map_or(0.0, |l| l.as_secs_f64()),
                        summary: self.connect_summary(),
                    });
                }
            }
        }
    }
}

/// Runs the emulator until `shutdown` resolves, then stops it within the configured deadline.
///
/// A fleet bigger than this process's open-file budget (or `--workers N` above 1) runs as a
/// supervisor of worker processes instead ([`supervisor`]).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<StopReport, Error> {
    let budget = config.process_budget.map_or_else(
        || limits::raise_nofile().saturating_sub(limits::RESERVED_FDS),
        u64::from,
    );
    let workers = supervisor::workers_needed(&config, budget);
    if workers > limits::MAX_WORKERS {
        return Err(FitError::Workers {
            instances: u64::from(config.instances),
            workers,
            per_process: budget,
            max: limits::MAX_WORKERS,
            max_instances: budget * u64::from(limits::MAX_WORKERS),
        }
        .into());
    }
    if workers > 1 {
        let per_worker = u64::from(config.instances.div_ceil(workers));
        limits::check_fit(
            per_worker,
            limits::raise_nofile(),
            1,
            1,
            limits::ephemeral_ports(),
        )?;
        return supervisor::run(config, workers, shutdown).await;
    }
    let deadline = config.shutdown_timeout;
    let running = start(config).await?;
    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => {}
        ready = running.wait_ready_reporting() => {
            let elapsed = match ready {
                Ok(elapsed) => elapsed,
                Err(e) => {
                    running.stop(deadline).await;
                    return Err(e);
                }
            };
            tracing::info!(
                instances = running.ready_count(),
                seconds = elapsed.as_secs_f64(),
                rss_mb = stats::ProcessMemory::read().rss / (1024 * 1024),
                "all instances connected and subscribed"
            );
            let monitor = running
                .broker()
                .map(|b| format!(" (monitor {})", b.monitor_url()))
                .unwrap_or_default();
            println!(
                "emulator: {} instances answering on {}{monitor}, ready in {:.3}s, vars at http://{}/debug/vars",
                running.ready_count(),
                running.servers().join(","),
                elapsed.as_secs_f64(),
                running.http_addr()
            );
            shutdown.await;
        }
    }
    Ok(running.stop(deadline).await)
}
