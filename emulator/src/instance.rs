//! One emulated Choria daemon: its own NATS connection, the subscriptions a real Choria server
//! holds, and the request loop.
//!
//! Stages for each message: decode (transport → secure request → request) → collective and agent
//! check → TTL check → filter → agent dispatch → encode reply → publish to the reply-to subject.
//! Every message that does not end in a reply is counted under the reason it stopped.
//!
//! The connection is a [`natsclient::Client`] driven by the instance's own task: its read path
//! dispatches every message, whatever the subscription, to [`Instance`] as the connection's
//! handler, which answers on the same connection (one task, no channel per subscription).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use agents::{AgentId, Daemon, DaemonStats, Invalid, Node, agent, subject};
use natsclient::{Client, Event, Handler, Message, Outbox};
use tokio_util::sync::CancellationToken;

use crate::facts::Subject;
use crate::faults::{self, Decision, Fault};
use crate::shared::Shared;
use crate::stats::ServerCounters;
use agents::admit::{self, Admitted, Refusal};
use agents::clock::unix_now;

/// The daemon as filters and agents see it.
pub(crate) struct Instance {
    index: u32,
    identity: String,
    shared: Arc<Shared>,
    stats: DaemonStats,
    /// The counters of the server this instance is connected to, while it is.
    server: Option<Arc<ServerCounters>>,
    /// Whether the instance has been connected at least once (later failures are reconnects).
    ever_connected: bool,
    /// How this instance misbehaves (`--faults`), if it does.
    fault: Option<Fault>,
    /// Replies a `slow` fault holds back: when each is due, where it goes, its bytes. Empty
    /// (and unallocated) for every other instance.
    delayed: VecDeque<(tokio::time::Instant, String, Vec<u8>, AgentId)>,
    /// Wakes the serve loop when a slow instance holds back a reply (slow instances only).
    held: Option<Arc<tokio::sync::Notify>>,
}

impl Instance {
    pub(crate) fn new(index: u32, shared: Arc<Shared>) -> Instance {
        Instance {
            index,
            identity: format!("{}-{}", shared.config.name, index),
            fault: shared.faults.of(index),
            delayed: VecDeque::new(),
            held: matches!(shared.faults.of(index), Some(Fault::Slow(_)))
                .then(|| Arc::new(tokio::sync::Notify::new())),
            shared,
            stats: DaemonStats::default(),
            server: None,
            ever_connected: false,
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

    /// This instance's connection, not connected yet: its source address is the next of
    /// `--bind` in turn.
    pub(crate) fn client(&self, nats: &Arc<natsclient::Config>) -> Client {
        let bind = &self.shared.config.bind;
        let source = (!bind.is_empty()).then(|| bind[self.index as usize % bind.len()]);
        Client::new(Arc::clone(nats), &self.identity, source)
    }

    /// Subscribes and connects (retrying with backoff until `cancel`).
    pub(crate) async fn connect(
        &mut self,
        client: &mut Client,
        cancel: &CancellationToken,
    ) -> bool {
        // Subscribed before connecting: the SUBs travel with CONNECT, and the handshake's PONG
        // means the server holds them (one round trip for the whole start of an instance).
        for s in self.subjects() {
            if let Err(e) = client.subscribe(&s, None) {
                tracing::warn!(identity = %self.identity, error = %e, "subscribe failed");
            }
        }
        client.connect(self, cancel.cancelled()).await
    }

    /// Serves requests until `cancel` (reconnecting whenever the connection is lost), then
    /// drains the connection (until `force`).
    pub(crate) async fn serve(
        mut self,
        mut client: Client,
        cancel: CancellationToken,
        force: CancellationToken,
    ) {
        // A flapping instance drops its connection every period (the client reconnects and
        // resubscribes by itself); a slow one publishes its held-back replies when due. Both
        // wake the loop with a timer; every other instance just runs the connection.
        let flap_every = match self.fault {
            Some(Fault::Flap(period)) => Some(period),
            Some(Fault::Slow(_) | Fault::Fail | Fault::Drop) | None => None,
        };
        let mut next_flap = flap_every.map(|p| tokio::time::Instant::now() + p);
        // With --registration, the fleet's scheduler wakes this instance through its slot.
        let schedule = self
            .shared
            .registration
            .as_ref()
            .map(|(_, s)| Arc::clone(s));
        let local = self.index.saturating_sub(self.shared.config.index_offset);
        loop {
            let wake = [next_flap, self.delayed.front().map(|d| d.0)]
                .into_iter()
                .flatten()
                .min();
            let registration_due = std::sync::atomic::AtomicBool::new(false);
            let stop = {
                let cancel = cancel.clone();
                let held = self.held.clone();
                let schedule = schedule.clone();
                let due = &registration_due;
                async move {
                    let held = async {
                        match held {
                            Some(n) => n.notified().await,
                            None => std::future::pending().await,
                        }
                    };
                    let timer = async {
                        match wake {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                    };
                    let register = async {
                        match schedule.as_ref().and_then(|s| s.slot(local)) {
                            Some(slot) => slot.notified().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = timer => {}
                        () = held => {}
                        () = register => due.store(true, std::sync::atomic::Ordering::Relaxed),
                    }
                }
            };
            client.run(&mut self, stop).await;
            if cancel.is_cancelled() {
                break;
            }
            if registration_due.load(std::sync::atomic::Ordering::Relaxed) {
                self.register(&mut client);
            }
            let now = tokio::time::Instant::now();
            while self.delayed.front().is_some_and(|d| d.0 <= now) {
                if let Some((_, subject, reply, agent)) = self.delayed.pop_front() {
                    let result = client.publish(&subject, None, &reply);
                    self.count_publish(result, reply.len(), agent);
                }
            }
            if let (Some(at), Some(period)) = (next_flap, flap_every)
                && at <= now
            {
                if let Some(fault) = self.fault {
                    self.shared.fault_counters.record(fault);
                }
                client.close().await;
                if let Some(server) = self.server.take() {
                    self.shared.stats.instances_connected.dec();
                    self.shared.stats.disconnects.inc();
                    server.connected.dec();
                }
                next_flap = Some(now + period);
            }
        }
        tokio::select! {
            () = force.cancelled() => {}
            r = client.drain(&mut self) => {
                if let Err(e) = r {
                    tracing::debug!(identity = %self.identity, error = %e, "drain failed");
                }
            }
        }
        client.close().await;
        if let Some(server) = self.server.take() {
            self.shared.stats.instances_connected.dec();
            server.connected.dec();
        }
    }

    fn handle(&mut self, msg: Message<'_>, out: &mut Outbox<'_>) {
        let stats = &self.shared.stats;
        stats.messages_received.inc();
        stats.bytes_in.add(msg.payload.len() as u64);
        self.stats.total += 1;
        let now = unix_now();
        let agents = self.shared.config.agents;
        let admitted = admit::admit(
            msg.payload,
            msg.reply,
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
                return self.refuse(reason, msg.subject);
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
        let (body, delay) =
            match faults::decide(self.fault, agent_id, body, &self.shared.fault_counters) {
                Decision::Answer(body) => (body, Duration::ZERO),
                Decision::Delay(body, delay) => (body, delay),
                Decision::Drop => return,
            };
        let reply = admit::reply(&request, &self.identity, &body, now, || {
            let server = out.server();
            format!("nats://{}:{}", server.host, server.port)
        });
        if !delay.is_zero() {
            self.delayed.push_back((
                tokio::time::Instant::now() + delay,
                request.reply_to,
                reply,
                agent_id,
            ));
            if let Some(held) = &self.held {
                held.notify_one();
            }
            return;
        }
        let result = out.publish(&request.reply_to, None, &reply);
        self.count_publish(result, reply.len(), agent_id);
    }

    /// Publishes this instance's registration (parked in the reconnect buffer while
    /// disconnected, as a real daemon's would be).
    fn register(&mut self, client: &mut Client) {
        let Some((registrar, _)) = &self.shared.registration else {
            return;
        };
        let body = registrar.message(self.subject(), &self.shared.config.facts, unix_now());
        let stats = &self.shared.stats;
        match client.publish(registrar.subject(), None, &body) {
            Ok(()) => {
                stats.registrations_published.inc();
                stats.registration_bytes.add(body.len() as u64);
            }
            Err(e) => {
                stats.registration_errors.inc();
                if self.shared.invalid_log.allow() {
                    tracing::warn!(identity = %self.identity, error = %e, "could not publish registration");
                }
            }
        }
    }

    /// Counts a reply handed to the connection, or the error that refused it.
    fn count_publish(&mut self, result: Result<(), natsclient::Error>, len: usize, agent: AgentId) {
        let stats = &self.shared.stats;
        match result {
            Ok(()) => {
                self.stats.replies += 1;
                stats.replies_sent.inc();
                stats.bytes_out.add(len as u64);
                if let Some(c) = stats.agent(agent) {
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

impl Handler for Instance {
    fn message(&mut self, msg: Message<'_>, out: &mut Outbox<'_>) {
        self.handle(msg, out);
    }

    fn event(&mut self, event: Event<'_>) {
        let stats = &self.shared.stats;
        match event {
            Event::Connected { server, reconnect } => {
                let counters = stats.server(&server.url);
                counters.connected.inc();
                stats.instances_connected.inc();
                if reconnect {
                    counters.reconnects.inc();
                    stats.reconnects.inc();
                }
                if let Some(old) = self.server.replace(counters) {
                    old.connected.dec();
                    stats.instances_connected.dec();
                }
                self.ever_connected = true;
            }
            Event::Disconnected { server, error } => {
                if let Some(old) = self.server.take() {
                    old.connected.dec();
                    stats.instances_connected.dec();
                }
                stats.disconnects.inc();
                if let natsclient::Error::Closed {
                    last_error: Some(e),
                    ..
                } = error
                    && e.contains("Slow Consumer")
                {
                    stats.slow_consumers.inc();
                }
                if self.shared.connect_log.allow() {
                    tracing::warn!(identity = %self.identity, server = %server.url, error = %error, "disconnected, reconnecting");
                }
            }
            Event::ConnectFailed { error } => {
                if self.ever_connected {
                    tracing::debug!(identity = %self.identity, error = %error, "reconnect failed");
                    return;
                }
                stats.connect_failures.inc();
                // Real daemons retry for ever, and so does this one; the fleet prints one
                // summary line every ten seconds instead of a warning per attempt.
                tracing::debug!(identity = %self.identity, error = %error, "connect failed, retrying");
                if let Ok(mut last) = self.shared.last_connect_error.lock() {
                    *last = Some(error.to_string());
                }
            }
            Event::ServerError { server, message } => {
                if message.contains("Slow Consumer") {
                    stats.slow_consumers.inc();
                }
                if self.shared.connect_log.allow() {
                    tracing::warn!(identity = %self.identity, server = %server.url, error = message, "server error");
                }
            }
            Event::LameDuck { server } => {
                tracing::debug!(identity = %self.identity, server = %server.url, "server in lame-duck mode");
            }
        }
    }
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
