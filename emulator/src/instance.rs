//! One emulated Choria daemon: its own NATS connection, the subscriptions a real Choria server
//! holds, and the request loop.
//!
//! Stages for each message: decode (transport → secure request → request) → collective and agent
//! check → TTL check → filter → agent dispatch → encode reply → publish to the reply-to subject.
//! Every message that does not end in a reply is counted under the reason it stopped.
//!
//! All subscriptions of an instance are merged into one stream served by one task, which keeps
//! the per-instance cost down (one task, not one per subscription).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use agents::{AgentId, Daemon, DaemonStats, Invalid, Node, agent, subject};
use async_nats::{Client, ConnectOptions, Event};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::facts::Subject;
use crate::faults::{self, Fault};
use crate::shared::Shared;
use agents::admit::{self, Admitted, Refusal};
use agents::clock::unix_now;

const NEVER: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;
const CLOSED: u8 = 3;

/// The daemon as filters and agents see it.
pub(crate) struct Instance {
    index: u32,
    identity: String,
    shared: Arc<Shared>,
    stats: DaemonStats,
    /// How this instance misbehaves (`--faults`), if it does.
    fault: Option<Fault>,
}

impl Instance {
    pub(crate) fn new(index: u32, shared: Arc<Shared>) -> Instance {
        Instance {
            index,
            identity: format!("{}-{}", shared.config.name, index),
            fault: shared.faults.of(index),
            shared,
            stats: DaemonStats::default(),
        }
    }

    fn subject(&self) -> Subject<'_> {
        Subject {
            index: self.index,
            identity: &self.identity,
            name: &self.shared.config.name,
        }
    }

    /// Every subject this daemon subscribes to: per collective, its node subject and one
    /// broadcast subject per agent.
    pub(crate) fn subjects(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.shared.config.collectives {
            out.push(subject::node(c, &self.identity));
            for a in &self.shared.agent_ids {
                out.push(subject::broadcast(c, &a.name()));
            }
        }
        out
    }

    /// Connection options for this instance.
    fn options(&self, state: Arc<AtomicU8>) -> ConnectOptions {
        let shared = Arc::clone(&self.shared);
        let config = &self.shared.config;
        let mut options = ConnectOptions::new()
            .name(&self.identity)
            .no_echo()
            .read_buffer_capacity(1024)
            .client_capacity(256)
            .subscription_capacity(1024)
            .connection_timeout(Duration::from_secs(5))
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                let shared = Arc::clone(&shared);
                let state = Arc::clone(&state);
                async move { on_event(&shared, &state, event) }
            });
        if !config.bind.is_empty() {
            let ip = config.bind[self.index as usize % config.bind.len()];
            options = options.local_address(std::net::SocketAddr::new(ip, 0));
        }
        if let Some((user, pass)) = &config.user {
            options = options.user_and_password(user.clone(), pass.clone());
        }
        if let Some(tls) = &self.shared.tls {
            options = tls.apply(options);
        }
        options
    }

    /// Connects (retrying with backoff until `cancel`), subscribes and flushes.
    pub(crate) async fn connect(
        &self,
        servers: &[String],
        cancel: &CancellationToken,
    ) -> Option<(Client, Vec<async_nats::Subscriber>)> {
        let mut attempt = 0u32;
        loop {
            let state = Arc::new(AtomicU8::new(NEVER));
            let connect = self.options(state).connect(servers);
            let result = tokio::select! {
                () = cancel.cancelled() => return None,
                r = connect => r,
            };
            match result {
                Ok(client) => {
                    let mut subs = Vec::new();
                    for s in self.subjects() {
                        match client.subscribe(s).await {
                            Ok(sub) => subs.push(sub),
                            Err(e) => {
                                tracing::warn!(identity = %self.identity, error = %e, "subscribe failed");
                            }
                        }
                    }
                    if let Err(e) = client.flush().await {
                        tracing::debug!(identity = %self.identity, error = %e, "flush after subscribe failed");
                    }
                    return Some((client, subs));
                }
                Err(e) => {
                    self.shared.stats.connect_failures.inc();
                    // Real daemons retry for ever, and so does this one; the fleet prints one
                    // summary line every ten seconds instead of a warning per attempt.
                    tracing::debug!(identity = %self.identity, attempt, error = %e, "connect failed, retrying");
                    if let Ok(mut last) = self.shared.last_connect_error.lock() {
                        *last = Some(e.to_string());
                    }
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        () = cancel.cancelled() => return None,
                        () = tokio::time::sleep(reconnect_delay(attempt as usize + 1)) => {}
                    }
                }
            }
        }
    }

    /// Serves requests until `cancel`, then drains the connection (until `force`).
    pub(crate) async fn serve(
        mut self,
        client: Client,
        subs: Vec<async_nats::Subscriber>,
        cancel: CancellationToken,
        force: CancellationToken,
    ) {
        let mut messages = futures::stream::select_all(subs);
        // A flapping instance drops its connection every period; the client reconnects and
        // resubscribes by itself. Other instances hold no timer.
        let mut flap = match self.fault {
            Some(Fault::Flap(period)) => Some((period, Box::pin(tokio::time::sleep(period)))),
            Some(Fault::Slow(_) | Fault::Fail | Fault::Drop) | None => None,
        };
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = async {
                    match flap.as_mut() {
                        Some((_, timer)) => timer.as_mut().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let (Some(fault), Some((period, timer))) = (self.fault, flap.as_mut()) {
                        self.shared.fault_counters.record(fault);
                        timer.as_mut().reset(tokio::time::Instant::now() + *period);
                    }
                    if let Err(e) = client.force_reconnect().await {
                        tracing::debug!(identity = %self.identity, error = %e, "flap reconnect failed");
                    }
                }
                msg = messages.next() => match msg {
                    // Boxed for the same reason as connect: only a message in flight pays for it.
                    Some(msg) => Box::pin(self.handle(&client, msg)).await,
                    None => break,
                },
            }
        }
        drop(messages);
        tokio::select! {
            () = force.cancelled() => {}
            r = Box::pin(client.drain()) => {
                if let Err(e) = r {
                    tracing::debug!(identity = %self.identity, error = %e, "drain failed");
                }
            }
        }
    }

    async fn handle(&mut self, client: &Client, msg: async_nats::Message) {
        let stats = &self.shared.stats;
        stats.messages_received.inc();
        stats.bytes_in.add(msg.payload.len() as u64);
        self.stats.total += 1;
        let now = unix_now();
        let agents = self.shared.config.agents;
        let admitted = admit::admit(
            &msg.payload,
            msg.reply.as_deref(),
            self.shared.config.max_message,
            &*self,
            |name| AgentId::parse(name, agents),
            now,
        );
        let Admitted {
            request,
            agent: agent_id,
        } = match admitted {
            Ok(a) => a,
            // Each message is counted exactly once: invalid (undecodable, or a request this
            // daemon cannot route or evaluate), or valid and then expired, filtered or passed.
            Err(Refusal::Undecodable(reason) | Refusal::Unroutable(reason)) => {
                return self.refuse(reason, &msg.subject);
            }
            Err(Refusal::Expired) => {
                self.stats.validated += 1;
                stats.requests_valid.inc();
                self.stats.ttlexpired += 1;
                stats.requests_expired.inc();
                return;
            }
            Err(Refusal::Filtered) => {
                self.stats.validated += 1;
                stats.requests_valid.inc();
                self.stats.filtered += 1;
                stats.requests_filtered.inc();
                return;
            }
        };
        self.stats.validated += 1;
        stats.requests_valid.inc();
        self.stats.passed += 1;
        stats.requests_passed.inc();
        let counters = stats.agent(agent_id);
        if let Some(c) = counters {
            c.requests.inc();
        }
        let Some(body) = agent::handle(agent_id, &request.payload, &*self, now, self.shared.limits)
        else {
            return;
        };
        let Some(body) =
            faults::apply(self.fault, agent_id, body, &self.shared.fault_counters).await
        else {
            return;
        };
        let reply = admit::reply(&request, &self.identity, &body, now, || {
            let server = client.server_info();
            format!("nats://{}:{}", server.host, server.port)
        });
        let len = reply.len() as u64;
        match client.publish(request.reply_to, reply.into()).await {
            Ok(()) => {
                self.stats.replies += 1;
                stats.replies_sent.inc();
                stats.bytes_out.add(len);
                if let Some(c) = counters {
                    c.answered.inc();
                }
            }
            Err(e) => {
                stats.publish_errors.inc();
                if self.shared.invalid_log.allow() {
                    tracing::warn!(identity = %self.identity, error = %e, "could not publish a reply");
                }
            }
        }
    }

    fn refuse(&mut self, reason: Invalid, subject: &str) {
        self.stats.unvalidated += 1;
        self.shared.stats.invalid(reason);
        if self.shared.invalid_log.allow() {
            tracing::debug!(identity = %self.identity, subject, reason = reason.as_str(), "refused a message");
        }
    }
}

fn on_event(shared: &Shared, state: &AtomicU8, event: Event) {
    let stats = &shared.stats;
    match event {
        Event::Connected => match state.swap(UP, Ordering::Relaxed) {
            NEVER => stats.instances_connected.inc(),
            DOWN => {
                stats.instances_connected.inc();
                stats.reconnects.inc();
            }
            _ => {}
        },
        Event::Disconnected => {
            if state.swap(DOWN, Ordering::Relaxed) == UP {
                stats.instances_connected.dec();
                stats.disconnects.inc();
            }
        }
        Event::Closed => {
            if state.swap(CLOSED, Ordering::Relaxed) == UP {
                stats.instances_connected.dec();
            }
        }
        Event::SlowConsumer(_) => stats.slow_consumers.inc(),
        Event::LameDuckMode | Event::Draining => {}
        Event::ServerError(e) => {
            if shared.connect_log.allow() {
                tracing::warn!(error = %e, "server error");
            }
        }
        Event::ClientError(e) => {
            if shared.connect_log.allow() {
                tracing::warn!(error = %e, "client error");
            }
        }
    }
}

/// Reconnect backoff. async-nats counts the attempt before asking, so `1` is the first try
/// after a disconnect (or the initial connect) and goes at once; later tries wait 100 ms doubling
/// to 5 s, with ±50 % jitter so a restarted broker is not hit by every instance at once.
pub(crate) fn reconnect_delay(attempts: usize) -> Duration {
    use rand::RngExt as _;
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = (attempts - 2).min(6) as u32;
    let base = (100u64 << exp).min(5_000);
    let jitter = rand::rng().random_range(0.5..1.5);
    Duration::from_millis((base as f64 * jitter) as u64)
}

impl Node for Instance {
    fn identity(&self) -> &str {
        &self.identity
    }

    fn agents(&self) -> Vec<Cow<'_, str>> {
        self.shared.agent_ids.iter().map(|a| a.name()).collect()
    }

    fn has_agent(&self, agent: &str) -> bool {
        AgentId::parse(agent, self.shared.config.agents).is_some()
    }

    fn classes(&self) -> Vec<Cow<'_, str>> {
        self.shared
            .config
            .facts
            .classes(self.subject())
            .into_iter()
            .map(Cow::Owned)
            .collect()
    }

    fn fact(&self, name: &str) -> Option<serde_json::Value> {
        self.shared.config.facts.fact(name, self.subject())
    }

    fn facts(&self) -> serde_json::Map<String, serde_json::Value> {
        self.shared.config.facts.facts(self.subject())
    }

    fn collectives(&self) -> Vec<Cow<'_, str>> {
        self.shared
            .config
            .collectives
            .iter()
            .map(|c| Cow::Borrowed(c.as_str()))
            .collect()
    }
}

impl Daemon for Instance {
    fn stats(&self) -> DaemonStats {
        self.stats
    }

    fn start_time(&self) -> i64 {
        self.shared.start_time
    }

    fn config_file(&self) -> &str {
        &self.shared.config_file
    }

    fn agent_ids(&self) -> Vec<AgentId> {
        self.shared.agent_ids.clone()
    }
}
