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
use std::sync::Arc;

use agents::{AgentId, Daemon, DaemonStats, Invalid, Node, agent, subject};
use natsclient::{Client, Event, Handler, Message, Outbox};
use tokio_util::sync::CancellationToken;

use crate::facts::Subject;
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
}

impl Instance {
    pub(crate) fn new(index: u32, shared: Arc<Shared>) -> Instance {
        Instance {
            index,
            identity: format!("{}-{}", shared.config.name, index),
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
        client.run(&mut self, cancel.cancelled()).await;
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
        let reply = admit::reply(&request, &self.identity, &body, now, || {
            let server = out.server();
            format!("nats://{}:{}", server.host, server.port)
        });
        let len = reply.len() as u64;
        match out.publish(&request.reply_to, None, &reply) {
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
