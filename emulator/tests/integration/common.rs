//! Fixtures: a nats-server, an in-process emulator fleet, a Choria client.

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
    pub(crate) async fn start(name: &str, instances: u32, extra: &[&str]) -> Fleet {
        let nats = NatsServer::start();
        let running = start_emulator(&nats.url(), name, instances, extra).await;
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
        self.client_with(Dialect::Go).await
    }

    pub(crate) async fn client_with(&self, dialect: Dialect) -> Client {
        let options = ClientOptions {
            senderid: "test.client".into(),
            callerid: "choria=tester.mcollective".into(),
            dialect,
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

pub(crate) async fn start_emulator(
    url: &str,
    name: &str,
    instances: u32,
    extra: &[&str],
) -> emulator::Running {
    let mut argv = vec![
        "emulator".to_owned(),
        "--name".into(),
        name.into(),
        "-i".into(),
        instances.to_string(),
        "--server".into(),
        url.into(),
        "-p".into(),
        "0".into(),
        "--http-address".into(),
        "127.0.0.1".into(),
    ];
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    let args = <emulator::cli::Args as clap::Parser>::try_parse_from(argv).expect("valid flags");
    let config = emulator::Config::from_args(&args).expect("valid emulator config");
    emulator::start_ready(config, Duration::from_secs(30))
        .await
        .expect("every instance connects within 30s")
}
