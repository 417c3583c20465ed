//! Property tests: the decoders and filter evaluator never panic, whatever the input.

use std::borrow::Cow;

use agents::codec::{self, RequestParts};
use agents::{Filter, Node};
use proptest::prelude::*;

fn valid_request() -> Vec<u8> {
    codec::encode_request(&RequestParts {
        requestid: "4b1e7c0f9a2d4e6b8c3a5f7d9e1b2c4d",
        senderid: "c",
        callerid: "choria=x",
        collective: "mcollective",
        agent: "discovery",
        ttl: 60,
        time: 1,
        filter: &Filter::default(),
        message: "cGluZw==",
        reply_to: "r",
    })
}

struct N;

impl Node for N {
    fn identity(&self) -> &str {
        "n-1"
    }
    fn agents(&self) -> Vec<Cow<'_, str>> {
        vec!["discovery".into(), "emulated0".into()]
    }
    fn has_agent(&self, a: &str) -> bool {
        a == "discovery" || a == "emulated0"
    }
    fn classes(&self) -> Vec<Cow<'_, str>> {
        vec!["web".into()]
    }
    fn fact(&self, name: &str) -> Option<serde_json::Value> {
        (name == "shard").then(|| serde_json::json!(3))
    }
    fn facts(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
    fn collectives(&self) -> Vec<Cow<'_, str>> {
        vec!["mcollective".into()]
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = codec::decode_request(&bytes, Some("r"), 1 << 20);
        let _ = codec::decode_reply(&bytes);
    }

    #[test]
    fn mutated_valid_requests_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = valid_request();
        for (at, value) in flips {
            let i = at % bytes.len();
            bytes[i] = value;
        }
        let _ = codec::decode_request(&bytes, None, 1 << 20);
    }

    #[test]
    fn compound_expressions_never_panic(expr in "[a-z_\\.\\[\\]\\(\\)'\" =!<>~&|0-9,]{0,80}") {
        let _ = agents::compound::evaluate(&expr, &N);
    }

    #[test]
    fn filters_from_json_never_panic(identity in "[/a-z\\-\\(\\*\\[0-9]{0,12}", op in "[=!<>~]{1,2}", value in "[a-z0-9/\\(]{0,6}") {
        let filter: Filter = serde_json::from_value(serde_json::json!({
            "identity": [identity], "fact": [{"fact": "shard", "operator": op, "value": value}],
            "cf_class": [], "agent": [], "compound": [],
        })).unwrap();
        let _ = agents::filter::matches(&filter, &N);
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let expr = format!("{}true{}", "(".repeat(2_000), ")".repeat(2_000));
    assert!(agents::compound::evaluate(&expr, &N).is_err());
    let nots = format!("{}true", "!".repeat(4_000));
    assert!(agents::compound::evaluate(&nots, &N).is_err());
}
