//! The registration adapter: 1,000 senders' Choria v1 registration requests, published on core
//! NATS, all land in the JetStream stream under their own subject.

use std::time::Duration;

use futures::StreamExt as _;

const SENDERS: usize = 1000;
const CONNECTIONS: usize = 50;
const ROUNDS: usize = 2;

fn registration(sender: &str, n: usize) -> Vec<u8> {
    let filter = agents::protocol::Filter::default();
    let message = serde_json::json!({"identity": sender, "n": n}).to_string();
    agents::codec::encode_request(&agents::codec::RequestParts {
        requestid: &format!("{sender}-{n}"),
        senderid: sender,
        callerid: &format!("choria={sender}"),
        collective: "mcollective",
        agent: "registration",
        ttl: 60,
        time: 0,
        filter: &filter,
        message: &message,
        reply_to: "",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_senders_land_in_the_stream_counted_by_sender() {
    let store = tempfile::tempdir().expect("store");
    let nats = testkit::NatsServer::start_jetstream(store.path());
    let config = replicator::adapter::AdapterConfig {
        source_url: nats.url(),
        collective: "mcollective".into(),
        target_url: nats.url(),
        stream: "REGISTRATION".into(),
        queue: 10_000,
        monitor_port: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(replicator::adapter::run(config, async move {
        let _ = stopped.await;
    }));
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    // Wait for the adapter's subscription.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !nats
        .connections_by_name()
        .await
        .get("stream-replicator adapter")
        .is_some_and(|c| {
            c.subjects
                .iter()
                .any(|s| s == "mcollective.broadcast.agent.registration")
        })
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "adapter did not subscribe"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut publishers = Vec::new();
    for c in 0..CONNECTIONS {
        let url = nats.url();
        publishers.push(tokio::spawn(async move {
            let client = async_nats::connect(url).await.expect("connect");
            for round in 0..ROUNDS {
                for s in (c..SENDERS).step_by(CONNECTIONS) {
                    let sender = format!("node{s}.example.net");
                    client
                        .publish(
                            "mcollective.broadcast.agent.registration",
                            registration(&sender, round).into(),
                        )
                        .await
                        .expect("publish");
                }
            }
            client.flush().await.expect("flush");
        }));
    }
    for p in publishers {
        p.await.expect("publisher");
    }
    let want = (SENDERS * ROUNDS) as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut s = js.get_stream("REGISTRATION").await.expect("stream");
        let n = s.info().await.expect("info").state.messages;
        if n == want {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} of {want} registrations stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = js.get_stream("REGISTRATION").await.expect("stream");
    let mut info = s
        .info_with_subjects("choria.stream.input.registration.>")
        .await
        .expect("subjects");
    let mut by_subject = std::collections::BTreeMap::new();
    while let Some(entry) = info.next().await {
        let (subject, n) = entry.expect("subject entry");
        by_subject.insert(subject, n);
    }
    assert_eq!(by_subject.len(), SENDERS);
    for s in 0..SENDERS {
        let subject = format!("choria.stream.input.registration.node{s}.example.net");
        assert_eq!(by_subject.get(&subject), Some(&ROUNDS), "{subject}");
    }
    let _ = stop.send(());
    run.await.expect("join").expect("adapter");
}
