//! Malformed messages on every subject: never a panic, never a dead instance, each counted.

use std::time::Duration;

use agents::client::{Call, Targets};
use agents::codec::{self, RequestParts};
use agents::{Filter, Invalid};
use base64::Engine as _;

use crate::common::Fleet;

fn wrap(secure: &str) -> String {
    serde_json::json!({
        "protocol": "choria:transport:1",
        "data": base64::engine::general_purpose::STANDARD.encode(secure),
        "headers": {"reply-to": "garbage.reply", "mc_sender": "evil"},
    })
    .to_string()
}

fn secure(request: &str) -> String {
    serde_json::json!({
        "protocol": "choria:secure:request:1",
        "message": request,
        "signature": "insecure",
        "pubcert": "insecure",
    })
    .to_string()
}

fn request_for(collective: &str, agent: &str) -> Vec<u8> {
    codec::encode_request(&RequestParts {
        requestid: &"c".repeat(32),
        senderid: "evil",
        callerid: "choria=evil",
        collective,
        agent,
        ttl: 60,
        time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        filter: &Filter::default(),
        message: "cGluZw==",
        reply_to: "garbage.reply",
    })
}

fn garbage() -> Vec<(Invalid, Vec<u8>)> {
    vec![
        (Invalid::NotJson, b"this is not json".to_vec()),
        (Invalid::NotJson, vec![0xff, 0xfe, 0x00, 0x7b]),
        (Invalid::NotJson, Vec::new()),
        (Invalid::WrongProtocol, br#"{"protocol":"choria:transport:9","data":"","headers":{}}"#.to_vec()),
        (Invalid::BadBase64, br#"{"protocol":"choria:transport:1","data":"!!!not base64!!!","headers":{}}"#.to_vec()),
        (Invalid::MissingField, br#"{"protocol":"choria:transport:1","headers":{}}"#.to_vec()),
        (Invalid::WrongType, br#"{"protocol":"choria:transport:1","data":42,"headers":{}}"#.to_vec()),
        (Invalid::NotJson, wrap("{{{{").into_bytes()),
        (Invalid::WrongProtocol, wrap(r#"{"protocol":"x","message":"m","signature":"s","pubcert":"p"}"#).into_bytes()),
        (Invalid::MissingField, wrap(&secure(r#"{"protocol":"choria:request:1","message":"cGluZw=="}"#)).into_bytes()),
        (
            Invalid::WrongType,
            wrap(&secure(r#"{"protocol":"choria:request:1","message":"cGluZw==","envelope":{"requestid":"x","senderid":"s","callerid":"c","collective":"mcollective","agent":"discovery","ttl":"sixty","time":1,"filter":{}}}"#)).into_bytes(),
        ),
        (Invalid::Oversized, vec![b'{'; 5000]),
        (Invalid::UnknownAgent, request_for("mcollective", "puppet")),
        (Invalid::UnknownCollective, request_for("elsewhere", "discovery")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_every_subject_leaves_every_instance_answering() {
    let mut fleet = Fleet::start("junk", 6, &["--max-message", "4096"]).await;
    let client = fleet.client().await;
    let nats = client.nats().clone();
    let mut subjects: Vec<String> = ["discovery", "rpcutil", "emulated0"]
        .iter()
        .map(|a| format!("mcollective.broadcast.agent.{a}"))
        .collect();
    subjects.extend(
        fleet
            .identities()
            .iter()
            .map(|i| format!("mcollective.node.{i}")),
    );
    let cases = garbage();
    for subject in &subjects {
        for (_, body) in &cases {
            nats.publish(subject.clone(), body.clone().into())
                .await
                .unwrap();
        }
    }
    nats.flush().await.unwrap();
    // Each broadcast subject reaches 6 instances, each node subject 1.
    let deliveries = 3 * 6 + 6;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let total = fleet.vars()["emulator"]["requests"]["received"]
            .as_u64()
            .unwrap();
        if total >= (deliveries * cases.len()) as u64 || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let vars = fleet.vars();
    let by_reason = &vars["emulator"]["requests"]["invalid_by_reason"];
    for reason in [
        Invalid::NotJson,
        Invalid::WrongProtocol,
        Invalid::BadBase64,
        Invalid::MissingField,
        Invalid::WrongType,
        Invalid::Oversized,
        Invalid::UnknownAgent,
        Invalid::UnknownCollective,
    ] {
        let expected = cases.iter().filter(|(r, _)| *r == reason).count() * deliveries;
        assert_eq!(
            by_reason[reason.as_str()],
            expected as u64,
            "{}: {vars}",
            reason.as_str()
        );
    }
    assert_eq!(
        vars["emulator"]["replies"]["sent"], 0,
        "garbage gets no reply"
    );
    let requests = &vars["emulator"]["requests"];
    assert_eq!(
        requests["valid"].as_u64().unwrap() + requests["invalid"].as_u64().unwrap(),
        requests["received"].as_u64().unwrap(),
        "every message is counted once, valid or invalid: {requests}"
    );

    let pongs = client
        .discover(Filter::default(), Duration::from_secs(2), None)
        .await
        .unwrap();
    assert_eq!(pongs.len(), 6, "every instance still answers discovery");
    let call = Call::rpc(
        "emulated0",
        "generate",
        Default::default(),
        Targets::Broadcast,
        Duration::from_secs(2),
    );
    assert_eq!(
        client.call(&call).await.unwrap().senders().len(),
        6,
        "and RPC"
    );
    fleet.stop().await;
}
