//! Fixtures: real nats-servers for the federation network and each collective, emulated fleets,
//! brokers, and a federated Choria client built from `agents::codec`.

#![allow(dead_code, unreachable_pub)]

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::time::Duration;

use agents::codec::{self, RequestParts};
use agents::protocol::{Federation, Filter, Transport};
use agents::subject;
use futures::StreamExt as _;
use testkit::NatsServer;

pub const CALLERID: &str = "choria=tester.mcollective";
pub const SENDER: &str = "test.client";

/// One Federation Member network: its nats-server and an emulated fleet on it.
pub struct Collective {
    pub nats: NatsServer,
    pub fleet: Option<emulator::Running>,
    pub name: String,
    pub instances: u32,
}

impl Collective {
    /// A nats-server with `instances` emulated daemons named `<name>-<i>`.
    pub async fn start(name: &str, instances: u32) -> Collective {
        let nats = NatsServer::start();
        let config = emulator::Config::builder(name, instances)
            .server(&nats.url())
            .expect("server URL")
            .build()
            .expect("fleet config");
        let fleet = emulator::start_ready(config, Duration::from_secs(120))
            .await
            .expect("fleet connects");
        Collective {
            nats,
            fleet: Some(fleet),
            name: name.to_owned(),
            instances,
        }
    }

    pub fn identities(&self) -> BTreeSet<String> {
        (0..self.instances)
            .map(|i| format!("{}-{i}", self.name))
            .collect()
    }

    pub fn vars(&self) -> agents::DebugVars {
        self.fleet.as_ref().expect("running").debug_vars()
    }

    pub async fn stop(&mut self) {
        if let Some(f) = self.fleet.take() {
            f.stop(Duration::from_secs(5)).await;
        }
    }
}

/// A broker of `cluster` between `federation` and `collective`, with `workers` workers.
pub async fn broker(
    cluster: &str,
    federation: &NatsServer,
    collective: &NatsServer,
    workers: usize,
) -> federation::Broker {
    let mut config = federation::Config::new(cluster, &[federation.url()], &[collective.url()]);
    config.workers = workers;
    federation::start(config).await.expect("broker starts")
}

/// A 32-character request id.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A client's federated request, as a Choria client publishes it on the federation network.
pub struct Request {
    pub requestid: String,
    pub reply_to: String,
    pub agent: String,
    pub message: String,
    pub filter: Filter,
    pub targets: Vec<String>,
    /// The client's own `seen-by` hop `["", sender, <federation url>]`.
    pub first_hop: Option<String>,
}

impl Request {
    /// Discovery (`ping`, Go dialect) broadcast to `mcollective`.
    pub fn discovery() -> Request {
        let requestid = request_id();
        Request {
            reply_to: subject::reply("mcollective", CALLERID, &requestid),
            requestid,
            agent: "discovery".into(),
            message: "cGluZw==".into(),
            filter: Filter::default(),
            targets: vec![subject::broadcast("mcollective", "discovery")],
            first_hop: None,
        }
    }

    /// An RPC (Go dialect body) broadcast to `mcollective`.
    pub fn rpc(agent: &str, action: &str, filter: Filter) -> Request {
        let requestid = request_id();
        Request {
            reply_to: subject::reply("mcollective", CALLERID, &requestid),
            requestid,
            agent: agent.into(),
            message: serde_json::json!({"agent": agent, "action": action, "data": {}}).to_string(),
            filter,
            targets: vec![subject::broadcast("mcollective", agent)],
            first_hop: None,
        }
    }

    /// The transport body: `agents::codec::encode_request` plus the federation header.
    pub fn body(&self) -> Vec<u8> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let plain = codec::encode_request(&RequestParts {
            requestid: &self.requestid,
            senderid: SENDER,
            callerid: CALLERID,
            collective: "mcollective",
            agent: &self.agent,
            ttl: 60,
            time: now,
            filter: &self.filter,
            message: &self.message,
            reply_to: &self.reply_to,
        });
        let mut transport: Transport<'_> = serde_json::from_slice(&plain).unwrap();
        transport.headers.federation = Some(Federation {
            req: Cow::Borrowed(&self.requestid),
            reply_to: None,
            target: self
                .targets
                .iter()
                .map(|t| Cow::Borrowed(t.as_str()))
                .collect(),
        });
        if let Some(url) = &self.first_hop {
            transport.headers.seen_by = Some(vec![[
                Cow::Borrowed(""),
                Cow::Borrowed(SENDER),
                Cow::Borrowed(url.as_str()),
            ]]);
        }
        serde_json::to_vec(&transport).unwrap()
    }
}

/// A client on the federation network.
pub struct Client {
    pub nats: async_nats::Client,
}

impl Client {
    pub async fn connect(federation: &NatsServer) -> Client {
        Client {
            nats: async_nats::connect(federation.url())
                .await
                .expect("client connects"),
        }
    }

    /// Subscribes to the request's reply subject, publishes it once to each cluster's
    /// federation subject, and collects replies until `expected` arrived (then 300 ms more, to
    /// catch duplicates) or `limit` passed.
    pub async fn call(
        &self,
        request: &Request,
        clusters: &[&str],
        expected: usize,
        limit: Duration,
    ) -> Vec<async_nats::Message> {
        let mut sub = self
            .nats
            .subscribe(request.reply_to.clone())
            .await
            .expect("subscribe");
        self.nats.flush().await.expect("flush");
        let body = bytes::Bytes::from(request.body());
        for cluster in clusters {
            self.nats
                .publish(
                    format!("choria.federation.{cluster}.federation"),
                    body.clone(),
                )
                .await
                .expect("publish");
        }
        self.nats.flush().await.expect("flush");
        collect(&mut sub, expected, limit).await
    }
}

/// Messages from `sub` until `expected` arrived (then 300 ms more) or `limit` passed.
pub async fn collect(
    sub: &mut async_nats::Subscriber,
    expected: usize,
    limit: Duration,
) -> Vec<async_nats::Message> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while out.len() < expected {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(m)) => out.push(m),
            Ok(None) | Err(_) => return out,
        }
    }
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
        out.push(m);
    }
    out
}

/// A reply as the client received it: decoded, plus its transport headers.
pub struct Received {
    pub reply: agents::InboundReply,
    pub seen_by: Vec<[String; 3]>,
    pub federated: bool,
}

pub fn decode(msg: &async_nats::Message) -> Received {
    let reply = codec::decode_reply(&msg.payload).expect("a valid reply");
    let transport: Transport<'_> = serde_json::from_slice(&msg.payload).unwrap();
    Received {
        reply,
        seen_by: transport
            .headers
            .seen_by
            .unwrap_or_default()
            .into_iter()
            .map(|h| h.map(Cow::into_owned))
            .collect(),
        federated: transport.headers.federation.is_some(),
    }
}

/// Polls `f` until it is true, at most `limit`.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}
