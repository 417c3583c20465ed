//! Golden tests: the worked messages of the protocol reference (§5.10), byte for byte.

use agents::codec::{self, ReplyParts, RequestParts};
use agents::protocol::Filter;
use agents::{AgentId, InboundRequest, subject};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/data/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

const REQUEST_ID: &str = "4b1e7c0f9a2d4e6b8c3a5f7d9e1b2c4d";
const CALLER: &str = "choria=rip.mcollective";

fn agent_filter() -> Filter {
    Filter {
        agent: vec!["emulated0".to_owned()],
        ..Filter::default()
    }
}

fn rpc_request_parts<'a>(filter: &'a Filter, reply_to: &'a str) -> RequestParts<'a> {
    RequestParts {
        requestid: REQUEST_ID,
        senderid: "shell1.example.net",
        callerid: CALLER,
        collective: "mcollective",
        agent: "emulated0",
        ttl: 60,
        time: 1511352000,
        filter,
        message: r#"{"agent":"emulated0","action":"generate","data":{"size":10}}"#,
        reply_to,
    }
}

#[test]
fn rpc_request_documents_match_b_c_d() {
    let filter = agent_filter();
    let reply_to = subject::reply("mcollective", CALLER, REQUEST_ID);
    let parts = rpc_request_parts(&filter, &reply_to);
    assert_eq!(codec::encode_request_json(&parts), fixture("b_request"));
    let transport = codec::encode_request(&parts);
    assert_eq!(
        String::from_utf8(transport).unwrap(),
        fixture("d_transport_request")
    );
}

#[test]
fn secure_request_c_is_inside_d() {
    let d: serde_json::Value = serde_json::from_str(&fixture("d_transport_request")).unwrap();
    let inner = codec::decode_base64(d["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        String::from_utf8(inner).unwrap(),
        fixture("c_secure_request")
    );
}

#[test]
fn decoding_d_gives_the_request() {
    let req: InboundRequest =
        codec::decode_request(fixture("d_transport_request").as_bytes(), None, 1 << 20).unwrap();
    assert_eq!(req.requestid, REQUEST_ID);
    assert_eq!(req.agent, "emulated0");
    assert_eq!(req.collective, "mcollective");
    assert_eq!(req.callerid, CALLER);
    assert_eq!(req.ttl, 60);
    assert_eq!(req.time, 1511352000);
    assert_eq!(req.filter, agent_filter());
    assert_eq!(
        req.reply_to,
        "mcollective.reply.37bdf08389145a56c13096c178802d3b.4b1e7c0f9a2d4e6b8c3a5f7d9e1b2c4d"
    );
    assert_eq!(req.payload, fixture("a_rpc_body").as_bytes());
    assert!(req.is_fresh(1511352001));
    assert!(!req.is_fresh(1511352060));
    assert!(!req.is_fresh(1511351940));
}

#[test]
fn rpc_reply_documents_match_e_f_g_h() {
    let body = fixture("e_reply_body");
    let reply = codec::encode_reply(&ReplyParts {
        requestid: REQUEST_ID,
        senderid: "emu1-0",
        agent: "emulated0",
        time: 1511352001,
        body: &body,
        federation: None,
        seen_by: None,
    });
    assert_eq!(
        String::from_utf8(reply.clone()).unwrap(),
        fixture("h_transport_reply")
    );
    let h: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    let secure = codec::decode_base64(h["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        String::from_utf8(secure).unwrap(),
        fixture("g_secure_reply")
    );
    let g: serde_json::Value = serde_json::from_str(&fixture("g_secure_reply")).unwrap();
    assert_eq!(g["message"].as_str().unwrap(), fixture("f_reply"));
    assert_eq!(g["hash"], "jQ06d9XbI90u8TyHCbPORxsTZrukhVqgjN0RaNHjW9A=");
    assert_eq!(
        codec::reply_hash(&fixture("f_reply")),
        "jQ06d9XbI90u8TyHCbPORxsTZrukhVqgjN0RaNHjW9A="
    );
}

#[test]
fn the_emulated_agent_produces_body_e() {
    let reply =
        agents::rpc::RpcReply::ok(serde_json::json!({"message": agents::agent::digits(10)}));
    assert_eq!(reply.to_text(), fixture("e_reply_body"));
    let _ = AgentId::Emulated(0);
}

#[test]
fn decoding_h_checks_the_hash() {
    let reply = codec::decode_reply(fixture("h_transport_reply").as_bytes()).unwrap();
    assert_eq!(reply.sender, "emu1-0");
    assert_eq!(reply.requestid, REQUEST_ID);
    assert_eq!(reply.body, fixture("e_reply_body"));

    let mut tampered: serde_json::Value = serde_json::from_str(&fixture("g_secure_reply")).unwrap();
    tampered["message"] = serde_json::Value::String(fixture("f_reply").replace("0123", "9999"));
    let transport = serde_json::json!({
        "protocol": "choria:transport:1",
        "data": base64_encode(tampered.to_string().as_bytes()),
        "headers": {"mc_sender": "emu1-0"},
    });
    let err = codec::decode_reply(transport.to_string().as_bytes()).unwrap_err();
    assert_eq!(err.0, agents::Invalid::BadHash);
    assert_eq!(err.1.unwrap().sender, "emu1-0");
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn discovery_documents_match_i_j() {
    let filter = agent_filter();
    let reply_to = subject::reply("mcollective", CALLER, "9c8b7a6f5e4d4c3b2a1f0e9d8c7b6a5f");
    let parts = RequestParts {
        requestid: "9c8b7a6f5e4d4c3b2a1f0e9d8c7b6a5f",
        agent: "discovery",
        time: 1511352100,
        message: "cGluZw==",
        ..rpc_request_parts(&filter, &reply_to)
    };
    assert_eq!(
        codec::encode_request_json(&parts),
        fixture("i_discovery_request")
    );
    let decoded = codec::decode_request(&codec::encode_request(&parts), None, 1 << 20).unwrap();
    assert_eq!(decoded.payload, b"ping");

    let reply = codec::encode_reply(&ReplyParts {
        requestid: "9c8b7a6f5e4d4c3b2a1f0e9d8c7b6a5f",
        senderid: "emu1-0",
        agent: "discovery",
        time: 1511352100,
        body: "pong",
        federation: None,
        seen_by: None,
    });
    let h: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    let secure: serde_json::Value =
        serde_json::from_slice(&codec::decode_base64(h["data"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(
        secure["message"].as_str().unwrap(),
        fixture("j_discovery_reply")
    );
    assert_eq!(
        secure["hash"],
        "7RdBcMj8lM3oS7W8dUgw1hdMXDypVzpQw6TnQ3Rfs9o="
    );
}

#[test]
fn federation_headers_are_read_and_copied_to_the_reply() {
    // Example (k): a request after a federation broker rewrote its reply-to.
    for key in ["target", "targets"] {
        let secure = fixture("c_secure_request");
        let transport = serde_json::json!({
            "protocol": "choria:transport:1",
            "data": base64_encode(secure.as_bytes()),
            "headers": {
                "reply-to": "choria.federation.fed1.collective",
                "mc_sender": "shell1.example.net",
                "federation": {
                    "req": REQUEST_ID,
                    "reply-to": "mcollective.reply.37bdf08389145a56c13096c178802d3b.4b1e7c0f9a2d4e6b8c3a5f7d9e1b2c4d",
                    key: ["mcollective.node.emu1-0"],
                },
            },
        });
        let req = codec::decode_request(transport.to_string().as_bytes(), None, 1 << 20).unwrap();
        assert_eq!(req.reply_to, "choria.federation.fed1.collective");
        let fed = req.federation.clone().unwrap();
        assert_eq!(fed.target, vec!["mcollective.node.emu1-0"]);
        let reply = codec::encode_reply(&ReplyParts {
            requestid: &req.requestid,
            senderid: "emu1-0",
            agent: &req.agent,
            time: 1511352001,
            body: "pong",
            federation: req.federation.as_ref(),
            seen_by: None,
        });
        let h: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(h["headers"]["federation"]["req"], REQUEST_ID);
        assert_eq!(
            h["headers"]["federation"]["target"][0],
            "mcollective.node.emu1-0"
        );
        assert_eq!(h["headers"]["mc_sender"], "emu1-0");
    }
}

#[test]
fn ruby_dialect_requests_decode() {
    // Ruby sends the JSON string "ping" (with quotes) and RPC bodies with caller/process_results,
    // and sets the NATS reply subject as well as (or instead of) the reply-to header.
    let filter = Filter::default();
    let parts = RequestParts {
        message: "\"ping\"",
        agent: "discovery",
        ..rpc_request_parts(&filter, "")
    };
    let mut transport: serde_json::Value =
        serde_json::from_slice(&codec::encode_request(&parts)).unwrap();
    transport["headers"]
        .as_object_mut()
        .unwrap()
        .remove("reply-to");
    let body = transport.to_string();
    assert_eq!(
        codec::decode_request(body.as_bytes(), None, 1 << 20).unwrap_err(),
        agents::Invalid::NoReplyTo
    );
    let req =
        codec::decode_request(body.as_bytes(), Some("mcollective.reply.x.1.2"), 1 << 20).unwrap();
    assert_eq!(req.reply_to, "mcollective.reply.x.1.2");
    assert_eq!(req.payload, b"\"ping\"");
}

#[test]
fn base64_with_ruby_line_breaks_decodes() {
    let text = base64_encode(fixture("c_secure_request").as_bytes());
    let wrapped: String = text
        .as_bytes()
        .chunks(60)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        codec::decode_base64(&wrapped).unwrap(),
        fixture("c_secure_request").as_bytes()
    );
    assert!(codec::decode_base64("!!").is_err());
}
