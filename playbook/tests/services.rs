//! Webhook, Slack and Graphite tasks against a local axum server.

use crate::server::Server;
use crate::test::Test;

#[test]
fn webhook_post_sends_json_and_headers() {
    let server = Server::start(200, "{\"ok\":true}");
    Test::new()
        .playbook(&format!(
            "nodes:\n  web:\n    type: list\n    nodes: [w1, w2]\ntasks:\n  - webhook:\n      uri: {}/hook\n      headers:\n        X-Token: ho ho\n      data:\n        message: deployed {{{{{{ metadata.version }}}}}}\n        nodes: '{{{{{{ nodes.web }}}}}}'\n",
            server.url
        ))
        .args(&["run", "pb.yaml"])
        .run();
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.uri, "/hook");
    assert_eq!(r.header("x-token"), Some("ho ho"));
    assert_eq!(
        r.header("user-agent"),
        Some("Choria Playbooks http://choria.io")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        r.header("x-choria-request-id")
            .is_some_and(|id| id.len() == 36)
    );
    assert_eq!(
        r.json(),
        serde_json::json!({"message": "deployed 1.0.0", "nodes": ["w1", "w2"]})
    );
}

#[test]
fn webhook_get_puts_data_in_the_query() {
    let server = Server::start(201, "created");
    Test::new()
        .playbook(&format!(
            "tasks:\n  - webhook:\n      uri: {}/get\n      method: get\n      headers:\n        user-agent: custom\n      data:\n        a: one two\n",
            server.url
        ))
        .args(&["run", "pb.yaml"])
        .run();
    let r = &server.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.uri, "/get?a=one+two");
    assert_eq!(r.header("content-type"), None);
    assert_eq!(r.header("user-agent"), Some("custom"));
    assert_eq!(
        r.headers.iter().filter(|(k, _)| k == "user-agent").count(),
        1
    );
}

#[test]
fn webhook_errors_fail_the_task() {
    let server = Server::start(500, "boom");
    Test::new()
        .playbook(&format!(
            "tasks:\n  - webhook:\n      uri: {}/x\n",
            server.url
        ))
        .args(&["run", "pb.yaml"])
        .status(1)
        .stderr_has("HTTP 500")
        .run();
}

#[test]
fn slack_posts_json_with_a_bearer_token() {
    let server = Server::start(200, "{\"ok\":true,\"ts\":\"1\"}");
    Test::new()
        .playbook("tasks:\n  - shell:\n      description: the deploy\n      command: 'false'\nhooks:\n  on_fail:\n    - slack:\n        description: notify\n        token: xoxb-1\n        channel: '#ops'\n        text: 'task {{{ previous_task.description }}} failed: {{{ previous_task.msg }}}'\n        color: danger\n")
        .env("PLAYBOOK_SLACK_API", &server.url)
        .args(&["run", "pb.yaml"])
        .status(1)
        .stderr_has("Message submitted to slack channel #ops")
        .run();
    let r = &server.requests()[0];
    assert_eq!(r.uri, "/chat.postMessage");
    assert_eq!(r.header("authorization"), Some("Bearer xoxb-1"));
    let body = r.json();
    assert_eq!(body["channel"], "#ops");
    assert_eq!(body["username"], "Choria");
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["text"],
        "task the deploy failed: Command failed with code 1"
    );
    assert_eq!(attachment["color"], "danger");
    assert_eq!(attachment["pretext"], "Task: notify");
    assert_eq!(attachment["fields"][1]["value"], "test");
}

#[test]
fn slack_not_ok_fails() {
    let server = Server::start(200, "{\"ok\":false,\"error\":\"channel_not_found\"}");
    Test::new()
        .playbook("tasks:\n  - slack:\n      token: t\n      channel: '#nope'\n      text: hi\n")
        .env("PLAYBOOK_SLACK_API", &server.url)
        .args(&["run", "pb.yaml"])
        .status(1)
        .stderr_has("channel_not_found")
        .run();
}

#[test]
fn graphite_events_post_what_tags_when_data() {
    let server = Server::start(200, "");
    Test::new()
        .playbook(&format!(
            "tasks:\n  - graphite_event:\n      graphite: {}/events/\n      what: deploy\n      data: app {{{{{{ metadata.name }}}}}}\n      tags: [a, b]\n",
            server.url
        ))
        .args(&["run", "pb.yaml"])
        .run();
    let body = server.requests()[0].json();
    assert_eq!(body["what"], "deploy");
    assert_eq!(body["tags"], "a,b");
    assert_eq!(body["data"], "app test");
    assert!(body["when"].as_i64().is_some_and(|w| w > 1_700_000_000));
}
