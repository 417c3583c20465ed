//! Template functions, metadata, type rules and the warnings for unavailable checks.

use crate::test::Test;

#[test]
fn functions_and_metadata_render() {
    let out = Test::new()
        .playbook("tags: [a, b]\ntasks:\n  - shell:\n      command: \"echo 'utc={{{ utc_date(%Y-%m-%dT%H:%M) }}} local={{ date('%Y') }} id={{{ uuid }}} el={{{ elapsed_time }}} tags={{{ metadata.tags }}} level={{{ metadata.loglevel }}} raw={ input.x } {{ foo }}'\"\n")
        .args(&["run", "pb.yaml"])
        .stderr_has("tags=a, b level=info raw={ input.x } {{ foo }}")
        .run();
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("utc="))
        .expect("output line");
    let re = regex::Regex::new(
        r"utc=\d{4}-\d\d-\d\dT\d\d:\d\d local=\d{4} id=[0-9a-f-]{36} el=\d+(\.\d+)?",
    )
    .expect("regex");
    assert!(re.is_match(line), "{line}");
}

#[test]
fn whole_templates_keep_types_in_json_bodies() {
    let server = crate::server::Server::start(200, "{}");
    Test::new()
        .playbook(&format!(
            "inputs:\n  n:\n    description: n\n    type: Integer\n  on:\n    description: on\n    type: Boolean\n    required: false\ntasks:\n  - webhook:\n      uri: {}/x\n      data:\n        n: '{{{{{{ inputs.n }}}}}}'\n        on: '{{{{ inputs.on }}}}'\n        text: 'n is {{{{ inputs.n }}}}'\n",
            server.url
        ))
        .args(&["run", "pb.yaml", "--n", "7", "--on"])
        .run();
    assert_eq!(
        server.requests()[0].json(),
        serde_json::json!({"n": 7, "on": true, "text": "n is 7"})
    );
}

#[test]
fn connectivity_tests_need_a_broker() {
    Test::new()
        .playbook("uses:\n  rpcutil: '~1.0.0'\n  puppet: latest\nnodes:\n  web:\n    type: list\n    nodes: [a]\n    test: true\ntasks: []\n")
        .env("CHORIA_SERVERS", "")
        .env("NATS_URL", "")
        .args(&["run", "pb.yaml"])
        .stderr_has("warning: uses: cannot understand the version range latest of agent puppet")
        .stderr_has("Agent puppet has an invalid version range")
        .stderr_has("Testing connectivity to 1 node(s)")
        .stdout_has("no Choria broker configured")
        .status(1)
        .run();
}

#[test]
fn tracing_can_be_switched_on() {
    Test::new()
        .playbook("tasks:\n  - shell:\n      command: echo traced\n")
        .env("PLAYBOOK_TRACE", "info")
        .args(&["run", "pb.yaml"])
        .stderr_has("INFO")
        .stderr_has("from=\"tasks.shell\"")
        .run();
}
