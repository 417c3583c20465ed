//! Fixtures: a nats-server with an in-process emulator fleet, and a Choria client.

use std::time::Duration;

use agents::client::{Client, ClientOptions, Dialect};
use testkit::NatsServer;

pub(crate) struct Fleet {
    pub(crate) nats: NatsServer,
    pub(crate) running: Option<emulator::Running>,
    pub(crate) name: String,
    pub(crate) instances: u32,
}

impl Fleet {
    /// Starts nats-server and `instances` emulated daemons named `<name>-<i>`.
    pub(crate) async fn start(name: &str, instances: u32) -> Fleet {
        let nats = NatsServer::start();
        let running = start_emulator(&nats.url(), name, instances).await;
        Fleet {
            nats,
            running: Some(running),
            name: name.to_owned(),
            instances,
        }
    }

    pub(crate) fn identities(&self) -> Vec<String> {
        (0..self.instances)
            .map(|i| format!("{}-{i}", self.name))
            .collect()
    }

    pub(crate) async fn client(&self) -> Client {
        let options = ClientOptions {
            senderid: "test.client".into(),
            callerid: "choria=tester.mcollective".into(),
            dialect: Dialect::Go,
            ..ClientOptions::default()
        };
        Client::connect(&[self.nats.url()], options)
            .await
            .expect("client connects")
    }

    pub(crate) fn vars(&self) -> serde_json::Value {
        serde_json::to_value(self.running.as_ref().expect("running").debug_vars())
            .expect("/debug/vars serialises")
    }

    pub(crate) async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            let report = r.stop(Duration::from_secs(5)).await;
            assert!(report.drained_cleanly, "fleet did not drain cleanly");
        }
    }
}

/// Starts `instances` daemons `<name>-<i>` on `url` in this process, every one connected.
pub(crate) async fn start_emulator(url: &str, name: &str, instances: u32) -> emulator::Running {
    let config = emulator::Config::builder(name, instances)
        .server(url)
        .expect("valid server URL")
        .build()
        .expect("valid fleet");
    emulator::start_ready(config, Duration::from_secs(30))
        .await
        .expect("every instance connects within 30s")
}

/// Discovers `n` instances on `url` and checks one broadcast `generate` round gets every reply.
pub(crate) async fn assert_full_round(url: &str, n: usize) -> Vec<String> {
    use agents::client::{Call, Targets};
    let fleet = Client::connect(&[url.to_owned()], ClientOptions::default())
        .await
        .expect("client connects");
    let found = fleet
        .discover(agents::Filter::default(), Duration::from_secs(10), Some(n))
        .await
        .expect("discovery");
    assert_eq!(found.len(), n, "discovery finds every instance");
    let mut call = Call::rpc(
        "emulated0",
        "generate",
        Default::default(),
        Targets::Broadcast,
        Duration::from_secs(5),
    );
    call.expected = Some(n);
    assert_eq!(
        fleet.call(&call).await.expect("RPC").senders().len(),
        n,
        "every instance answers"
    );
    found
}
