//! Discovery filters select exactly the matching instances; TTL-expired requests get nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use agents::client::{Call, Targets};
use agents::codec::{self, RequestParts};
use agents::{FactFilter, Filter};
use futures::StreamExt as _;
use serde_json::json;

use crate::common::Fleet;

async fn discover(fleet: &Fleet, filter: Filter) -> BTreeSet<String> {
    let client = fleet.client().await;
    client
        .discover(filter, Duration::from_secs(1), None)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

fn names(ids: &[u32]) -> BTreeSet<String> {
    ids.iter().map(|i| format!("f-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_exactly_the_matching_nodes() {
    let mut fleet = Fleet::start("f", 30, &["-a", "2"]).await;

    let identity_agent_fact = Filter {
        identity: vec!["/^f-1\\d$/".into(), "f-3".into()],
        agent: vec!["emulated0".into()],
        fact: vec![FactFilter {
            fact: "shard".into(),
            operator: "<=".into(),
            value: "4".into(),
        }],
        ..Filter::default()
    };
    assert_eq!(
        discover(&fleet, identity_agent_fact.clone()).await,
        names(&[3, 10, 11, 12, 13, 14])
    );

    // The same filter on an RPC: exactly those nodes answer, all with statuscode 0.
    let client = fleet.client().await;
    let mut call = Call::rpc(
        "emulated1",
        "generate",
        Default::default(),
        Targets::Broadcast,
        Duration::from_secs(2),
    );
    call.filter = identity_agent_fact;
    let collected = client.call(&call).await.unwrap();
    assert_eq!(collected.replies.len(), 6);
    assert_eq!(
        collected.senders().into_iter().collect::<BTreeSet<_>>(),
        names(&[3, 10, 11, 12, 13, 14])
    );

    let class = Filter {
        cf_class: vec!["/^shard_[12]$/".into()],
        ..Filter::default()
    };
    assert_eq!(
        discover(&fleet, class).await,
        names(&[1, 2, 11, 12, 21, 22])
    );

    let exact_class = Filter {
        cf_class: vec!["shard_7".into(), "emulator".into()],
        ..Filter::default()
    };
    assert_eq!(discover(&fleet, exact_class).await, names(&[7, 17, 27]));

    let missing_agent = Filter {
        agent: vec!["emulated5".into()],
        ..Filter::default()
    };
    assert!(discover(&fleet, missing_agent).await.is_empty());

    let regex_fact = Filter {
        fact: vec![FactFilter {
            fact: "identity".into(),
            operator: "=~".into(),
            value: "/-2[5-9]$/".into(),
        }],
        ..Filter::default()
    };
    assert_eq!(
        discover(&fleet, regex_fact).await,
        names(&[25, 26, 27, 28, 29])
    );

    let not_equal = Filter {
        fact: vec![
            FactFilter {
                fact: "shard".into(),
                operator: "!=".into(),
                value: "0".into(),
            },
            FactFilter {
                fact: "index".into(),
                operator: ">".into(),
                value: "25".into(),
            },
        ],
        ..Filter::default()
    };
    assert_eq!(discover(&fleet, not_equal).await, names(&[26, 27, 28, 29]));

    let compound = Filter {
        compound: vec![
            json!([{"expr": "facts.shard == 5 && with('emulated1') && !(identity == 'f-25')"}]),
        ],
        ..Filter::default()
    };
    assert_eq!(discover(&fleet, compound).await, names(&[5, 15]));

    let unsupported = Filter {
        compound: vec![json!([{"statement": "country=uk"}, {"and": "and"}])],
        ..Filter::default()
    };
    assert!(discover(&fleet, unsupported).await.is_empty());
    let vars = fleet.vars();
    assert_eq!(
        vars["emulator"]["requests"]["invalid_by_reason"]["unsupported_filter"], 30,
        "refused and counted, never silently matched"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_outside_their_ttl_are_dropped_and_counted() {
    let mut fleet = Fleet::start("ttl", 5, &[]).await;
    let client = fleet.client().await;
    let nats = client.nats().clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (requestid, time) in [("a".repeat(32), now - 120), ("b".repeat(32), now + 120)] {
        let reply_to = format!("test.reply.{}", &requestid[..4]);
        let mut sub = nats.subscribe(reply_to.clone()).await.unwrap();
        let filter = Filter::default();
        let body = codec::encode_request(&RequestParts {
            requestid: &requestid,
            senderid: "test.client",
            callerid: "choria=tester.mcollective",
            collective: "mcollective",
            agent: "discovery",
            ttl: 60,
            time,
            filter: &filter,
            message: "cGluZw==",
            reply_to: &reply_to,
        });
        nats.publish("mcollective.broadcast.agent.discovery", body.into())
            .await
            .unwrap();
        nats.flush().await.unwrap();
        let got = tokio::time::timeout(Duration::from_millis(800), sub.next()).await;
        assert!(got.is_err(), "no instance answers a request from {time}");
    }
    assert_eq!(fleet.vars()["emulator"]["requests"]["expired"], 10);
    let fresh = client
        .discover(Filter::default(), Duration::from_secs(1), None)
        .await
        .unwrap();
    assert_eq!(fresh.len(), 5);
    fleet.stop().await;
}
