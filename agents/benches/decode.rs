//! Client-side decoding of replies: transport → secure reply → reply → body, hash checked.
//! Target: at least 300,000 replies per second on one core (docs/benchmarks.md).

use std::hint::black_box;

use agents::codec::{self, ReplyParts};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn replies(c: &mut Criterion) {
    let body = serde_json::json!({
        "statuscode": 0,
        "statusmsg": "OK",
        "data": {"message": agents::agent::digits(100)},
    })
    .to_string();
    let reply = codec::encode_reply(&ReplyParts {
        requestid: "4b1e7c0f9a2d4e6b8c3a5f7d9e1b2c4d",
        senderid: "emu1-12345",
        agent: "emulated0",
        time: 1_511_352_001,
        body: &body,
        federation: None,
        seen_by: None,
    });
    let mut group = c.benchmark_group("client");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_reply_with_hash_check", |b| {
        b.iter(|| {
            let decoded = codec::decode_reply(black_box(&reply)).expect("valid reply");
            black_box(agents::rpc::statuscode_of(&decoded.body).expect("body"));
        })
    });
    group.finish();

    let request = codec::encode_request(&codec::RequestParts {
        requestid: "4b1e7c0f9a2d4e6b8c3a5f7d9e1b2c4d",
        senderid: "shell1.example.net",
        callerid: "choria=rip.mcollective",
        collective: "mcollective",
        agent: "emulated0",
        ttl: 60,
        time: 1_511_352_000,
        filter: &agents::Filter::default(),
        message: r#"{"agent":"emulated0","action":"generate","data":{"size":100}}"#,
        reply_to: "mcollective.reply.37bdf08389145a56c13096c178802d3b.4b1e7c0f9a2d4e6b8c3a5f7d9e1b2c4d",
    });
    let mut group = c.benchmark_group("server");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_request_and_encode_reply", |b| {
        b.iter(|| {
            let req = codec::decode_request(black_box(&request), None, 1 << 20).expect("request");
            black_box(codec::encode_reply(&ReplyParts {
                requestid: &req.requestid,
                senderid: "emu1-12345",
                agent: &req.agent,
                time: req.time,
                body: &body,
                federation: None,
                seen_by: None,
            }));
        })
    });
    group.finish();
}

criterion_group!(benches, replies);
criterion_main!(benches);
