//! Discovery and RPC answered on the wire protocol, in both client dialects.

use std::collections::BTreeSet;
use std::time::Duration;

use agents::client::{Call, Dialect, ReplyOutcome, Targets};
use agents::{Filter, RpcReply, StatusCode};
use serde_json::json;

use crate::common::Fleet;

fn replies(collected: &agents::client::Collected) -> Vec<(String, RpcReply)> {
    collected
        .replies
        .iter()
        .map(|r| match &r.outcome {
            ReplyOutcome::Ok(reply) => (
                reply.sender.clone(),
                serde_json::from_str(&reply.body).expect("RPC reply body"),
            ),
            other => panic!("unexpected reply {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_gets_exactly_one_pong_per_instance_in_both_dialects() {
    let mut fleet = Fleet::start("disc", 25, &[]).await;
    let expected: BTreeSet<String> = fleet.identities().into_iter().collect();
    for dialect in [Dialect::Go, Dialect::Ruby] {
        let client = fleet.client_with(dialect).await;
        let collected = client
            .call(&Call::discovery(Filter::default(), Duration::from_secs(2)))
            .await
            .unwrap();
        assert_eq!(
            collected.replies.len(),
            25,
            "{dialect:?}: one reply each, no duplicates"
        );
        for r in &collected.replies {
            let ReplyOutcome::Ok(reply) = &r.outcome else {
                panic!("{dialect:?}: bad reply {r:?}");
            };
            assert_eq!(reply.body, "pong");
            assert_eq!(reply.agent, "discovery");
            assert_eq!(reply.requestid, collected.requestid);
        }
        let senders: BTreeSet<String> = collected.senders().into_iter().collect();
        assert_eq!(senders, expected, "{dialect:?}");
    }
    let vars = fleet.vars();
    assert_eq!(vars["emulator"]["agents"]["discovery"]["answered"], 50);
    assert_eq!(vars["emulator"]["replies"]["sent"], 50);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_answers_with_a_message_of_the_requested_size() {
    let mut fleet = Fleet::start("gen", 10, &["-a", "3"]).await;
    for dialect in [Dialect::Go, Dialect::Ruby] {
        let client = fleet.client_with(dialect).await;
        let mut data = serde_json::Map::new();
        data.insert("size".into(), json!(123));
        let call = Call::rpc(
            "emulated2",
            "generate",
            data,
            Targets::Broadcast,
            Duration::from_secs(2),
        );
        let got = replies(&client.call(&call).await.unwrap());
        assert_eq!(got.len(), 10, "{dialect:?}");
        for (_, reply) in got {
            assert_eq!(reply.statuscode, StatusCode::Ok);
            let message = reply.data["message"].as_str().unwrap();
            assert_eq!(message.len(), 123);
            assert!(message.starts_with("0123456789012"));
        }
    }
    let client = fleet.client().await;
    let default = Call::rpc(
        "emulated0",
        "generate",
        Default::default(),
        Targets::Broadcast,
        Duration::from_secs(2),
    );
    for (_, reply) in replies(&client.call(&default).await.unwrap()) {
        assert_eq!(
            reply.data["message"].as_str().unwrap().len(),
            20,
            "default size is 20"
        );
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_actions_and_inputs_get_status_codes() {
    let mut fleet = Fleet::start("err", 4, &[]).await;
    let client = fleet.client().await;
    let unknown = Call::rpc(
        "emulated0",
        "explode",
        Default::default(),
        Targets::Broadcast,
        Duration::from_secs(2),
    );
    for (_, reply) in replies(&client.call(&unknown).await.unwrap()) {
        assert_eq!(reply.statuscode, StatusCode::UnknownAction);
        assert_eq!(
            reply.statusmsg,
            "Unknown action explode for agent emulated0"
        );
    }
    for bad in [
        json!("abc"),
        json!(-5),
        json!(1.5),
        json!(10_000_000_000u64),
    ] {
        let mut data = serde_json::Map::new();
        data.insert("size".into(), bad.clone());
        let call = Call::rpc(
            "emulated0",
            "generate",
            data,
            Targets::Broadcast,
            Duration::from_secs(2),
        );
        let got = replies(&client.call(&call).await.unwrap());
        assert_eq!(got.len(), 4, "every instance answers {bad}");
        for (_, reply) in got {
            assert_eq!(reply.statuscode, StatusCode::InvalidData, "{bad}");
            assert!(reply.statusmsg.contains("size"), "{}", reply.statusmsg);
        }
    }
    let missing = Call::rpc(
        "rpcutil",
        "get_fact",
        Default::default(),
        Targets::Broadcast,
        Duration::from_secs(2),
    );
    for (_, reply) in replies(&client.call(&missing).await.unwrap()) {
        assert_eq!(reply.statuscode, StatusCode::MissingData);
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpcutil_reports_like_a_choria_server() {
    let mut fleet = Fleet::start("util", 3, &["-a", "2", "--collectives", "2"]).await;
    let client = fleet.client().await;
    let targets = Targets::Direct(vec!["util-1".into()]);
    let ask = |action: &str, data: serde_json::Value| {
        Call::rpc(
            "rpcutil",
            action,
            data.as_object().cloned().unwrap_or_default(),
            targets.clone(),
            Duration::from_secs(2),
        )
    };
    let one = |c: agents::client::Collected| {
        let mut r = replies(&c);
        assert_eq!(r.len(), 1);
        let (sender, reply) = r.remove(0);
        assert_eq!(sender, "util-1");
        assert_eq!(reply.statuscode, StatusCode::Ok, "{reply:?}");
        reply.data
    };
    let ping = one(client.call(&ask("ping", json!({}))).await.unwrap());
    assert!(ping["pong"].as_i64().unwrap() > 1_700_000_000);
    let info = one(client
        .call(&ask("collective_info", json!({})))
        .await
        .unwrap());
    assert_eq!(info["main_collective"], "mcollective");
    assert_eq!(info["collectives"], json!(["mcollective", "collective1"]));
    let inv = one(client.call(&ask("inventory", json!({}))).await.unwrap());
    assert_eq!(
        inv["agents"],
        json!(["discovery", "rpcutil", "emulated0", "emulated1"])
    );
    assert_eq!(inv["facts"]["identity"], "util-1");
    assert_eq!(inv["facts"]["index"], 1);
    assert!(
        inv["classes"]
            .as_array()
            .unwrap()
            .contains(&json!("shard_1"))
    );
    let agents = one(client
        .call(&ask("agent_inventory", json!({})))
        .await
        .unwrap());
    let list = agents["agents"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    let emulated1 = list.iter().find(|a| a["agent"] == "emulated1").unwrap();
    assert_eq!(emulated1["timeout"], 120);
    assert_eq!(emulated1["version"], "1.0.0");
    let fact = one(client
        .call(&ask("get_fact", json!({"fact": "shard"})))
        .await
        .unwrap());
    assert_eq!(fact, json!({"fact": "shard", "value": 1}));
    let stats = one(client.call(&ask("daemon_stats", json!({}))).await.unwrap());
    for key in [
        "total",
        "validated",
        "passed",
        "filtered",
        "replies",
        "ttlexpired",
        "pid",
        "starttime",
        "version",
    ] {
        assert!(stats.get(key).is_some(), "daemon_stats has {key}: {stats}");
    }
    assert!(
        stats["total"].as_u64().unwrap() >= 6,
        "this instance counted our requests: {stats}"
    );
    fleet.stop().await;
}
