//! Starting and stopping the whole fleet of instances.
//!
//! Start: a ramp task paces connection attempts (`--connect-rate` per second) and caps how many
//! are in flight (`--connect-concurrency`), so 20,000 connects do not arrive as one SYN flood.
//! Each instance connects, subscribes, flushes, then serves until cancelled.
//!
//! Stop: cancel every instance, let each drain its connection, report stragglers every two
//! seconds, and force the rest down at the deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::instance::Instance;
use crate::shared::Shared;

/// A running fleet.
pub(crate) struct Fleet {
    shared: Arc<Shared>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    force: CancellationToken,
    ready: Arc<Ready>,
    started_at: Instant,
}

/// Counts instances that are connected and subscribed.
struct Ready {
    count: AtomicU64,
    target: u64,
    notify: Notify,
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopReport {
    /// Instances that finished draining before the deadline.
    pub drained_cleanly: bool,
    pub elapsed: Duration,
}

impl Fleet {
    /// Starts the ramp; returns at once. Every instance picks servers from one pool of
    /// `servers` by the configured strategy.
    pub(crate) fn start(
        shared: Arc<Shared>,
        servers: &[String],
    ) -> Result<Fleet, natsclient::Error> {
        let pool = natsclient::Pool::new(servers, shared.config.server_strategy)?;
        let mut nats = natsclient::Config::new(Arc::new(pool));
        nats.user.clone_from(&shared.config.user);
        nats.tls.clone_from(&shared.tls);
        // Reconnects after a broker restart are capped like the ramp's initial connects:
        // `--connect-concurrency` per server of the pool, since each server has its own accept
        // queue.
        let limit = in_flight_limit(shared.config.connect_concurrency, servers.len());
        nats.in_flight = Some(Arc::new(Semaphore::new(limit)));
        let nats = Arc::new(nats);
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let force = CancellationToken::new();
        let ready = Arc::new(Ready {
            count: AtomicU64::new(0),
            target: u64::from(shared.config.instances),
            notify: Notify::new(),
        });
        let ramp = ramp(
            Arc::clone(&shared),
            nats,
            limit,
            tracker.clone(),
            cancel.clone(),
            force.clone(),
            Arc::clone(&ready),
        );
        tracker.spawn(ramp);
        if let (Some((registrar, schedule)), Some(config)) =
            (&shared.registration, &shared.config.registration)
        {
            let phases = crate::schedule::Phases::new(
                config.epoch_ms,
                config.interval,
                config.splay,
                shared.config.seed,
                shared.config.index_offset,
                shared.config.instances,
            );
            tracing::info!(
                subject = registrar.subject(),
                kind = config.kind.plugin(),
                interval_s = config.interval.as_secs_f64(),
                splay = config.splay,
                "registration scheduled"
            );
            tracker.spawn(crate::schedule::drive(
                Arc::clone(schedule),
                phases,
                cancel.clone(),
            ));
        }
        Ok(Fleet {
            shared,
            tracker,
            cancel,
            force,
            ready,
            started_at: Instant::now(),
        })
    }

    /// Instances connected and subscribed so far.
    pub(crate) fn ready_count(&self) -> u64 {
        self.ready.count.load(Ordering::Relaxed)
    }

    /// Waits until every instance is connected and subscribed; returns the time since start.
    pub(crate) async fn wait_ready(&self) -> Duration {
        loop {
            let notified = self.ready.notify.notified();
            if self.ready_count() >= self.ready.target {
                return self.started_at.elapsed();
            }
            notified.await;
        }
    }

    /// Cancels every instance and waits for them to drain, up to `deadline`.
    pub(crate) async fn stop(self, deadline: Duration) -> StopReport {
        let begun = Instant::now();
        self.cancel.cancel();
        self.tracker.close();
        let wait = self.tracker.wait();
        tokio::pin!(wait);
        let limit = tokio::time::sleep(deadline);
        tokio::pin!(limit);
        let mut report = tokio::time::interval(Duration::from_secs(2));
        report.tick().await;
        let drained_cleanly = loop {
            tokio::select! {
                () = &mut wait => break true,
                () = &mut limit => break false,
                _ = report.tick() => {
                    tracing::info!(
                        still_running = self.tracker.len(),
                        connected = self.shared.stats.instances_connected.get(),
                        "waiting for instances to drain"
                    );
                }
            }
        };
        if !drained_cleanly {
            tracing::warn!(
                still_running = self.tracker.len(),
                deadline_s = deadline.as_secs_f64(),
                "shutdown deadline reached, closing the remaining connections"
            );
            self.force.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), self.tracker.wait()).await;
        }
        StopReport {
            drained_cleanly,
            elapsed: begun.elapsed(),
        }
    }
}

/// Connections in flight at once for the whole process: `per_server` for each server of the
/// pool (at least one).
pub(crate) fn in_flight_limit(per_server: u32, servers: usize) -> usize {
    (per_server as usize).saturating_mul(servers.max(1))
}

async fn ramp(
    shared: Arc<Shared>,
    nats: Arc<natsclient::Config>,
    limit: usize,
    tracker: TaskTracker,
    cancel: CancellationToken,
    force: CancellationToken,
    ready: Arc<Ready>,
) {
    let in_flight = Arc::new(Semaphore::new(limit));
    let rate = f64::from(shared.config.connect_rate);
    let begun = tokio::time::Instant::now();
    for index in 0..shared.config.instances {
        // Pace: instance i may start no earlier than i / rate seconds after the ramp began.
        let due = begun + Duration::from_secs_f64(f64::from(index) / rate);
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(due) => {}
        }
        let permit = tokio::select! {
            () = cancel.cancelled() => return,
            p = Arc::clone(&in_flight).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let mut instance = Instance::new(shared.config.index_offset + index, Arc::clone(&shared));
        let mut client = instance.client(&nats);
        let cancel = cancel.clone();
        let force = force.clone();
        let ready = Arc::clone(&ready);
        let shared = Arc::clone(&shared);
        let task = async move {
            // Boxed: the connect future is several KB, and a task's allocation is the size of
            // its largest state, so inlining it would cost every idle instance that much.
            let connect = Box::pin(instance.connect(&mut client, &cancel));
            if !connect.await {
                return;
            }
            drop(permit);
            shared.stats.instances_started.inc();
            if ready.count.fetch_add(1, Ordering::Relaxed) + 1 >= ready.target {
                ready.notify.notify_waiters();
            }
            instance.serve(client, cancel, force).await;
        };
        if index == 0 {
            tracing::debug!(bytes = std::mem::size_of_val(&task), "instance task size");
        }
        tracker.spawn(task);
    }
    tracing::debug!(instances = shared.config.instances, "ramp finished");
}

#[cfg(test)]
mod tests {
    use super::in_flight_limit;

    #[test]
    fn connections_in_flight_scale_with_the_servers_of_the_pool() {
        assert_eq!(in_flight_limit(512, 1), 512);
        assert_eq!(in_flight_limit(170, 4), 680);
        // An empty pool still lets one server's worth through.
        assert_eq!(in_flight_limit(512, 0), 512);
        assert_eq!(in_flight_limit(u32::MAX, usize::MAX), usize::MAX);
    }
}
