//! Node sets: shell scripts, terraform state files, inline lists, common options.

use crate::test::Test;

#[test]
fn shell_node_sets_accept_arguments_and_check_host_names() {
    Test::new()
        .script("nodes.sh", "#!/bin/sh\nfor n in \"$@\"; do echo \"$n.example.net\"; done\n")
        .playbook("nodes:\n  web:\n    type: shell\n    script: ./nodes.sh a b a\n    at_least: 2\ntasks:\n  - shell:\n      command: echo web={{{ nodes.web }}}\n")
        .args(&["run", "pb.yaml"])
        .stderr_has("web=a.example.net, b.example.net")
        .run();
    Test::new()
        .script("nodes.sh", "#!/bin/sh\necho 'not a host'\n")
        .playbook("nodes:\n  web:\n    type: shell\n    script: ./nodes.sh\ntasks:\n  - shell:\n      command: echo never\n")
        .args(&["run", "pb.yaml"])
        .status(1)
        .stdout_has("NodeSetError: not a host is not a valid hostname")
        .run();
}

#[test]
fn terraform_state_files_are_read_without_the_binary() {
    Test::new()
        .file("terraform.tfstate", r#"{"version": 4, "outputs": {"web": {"value": ["w1.example", "w2.example"], "type": ["list", "string"]}, "name": {"value": "x", "type": "string"}}}"#)
        .playbook("nodes:\n  web:\n    type: terraform\n    statefile: terraform.tfstate\n    output: web\ntasks:\n  - shell:\n      command: echo web={{{ nodes.web }}}\n")
        .args(&["run", "pb.yaml"])
        .stderr_has("web=w1.example, w2.example")
        .run();
    Test::new()
        .file("terraform.tfstate", r#"{"version": 4, "outputs": {"name": {"value": "x", "type": "string"}}}"#)
        .playbook("nodes:\n  web:\n    type: terraform\n    statefile: terraform.tfstate\n    output: name\ntasks: []\n")
        .args(&["run", "pb.yaml"])
        .status(1)
        .stdout_has("Only terraform outputs of type list is supported")
        .run();
}

#[test]
fn at_least_and_when_empty() {
    Test::new()
        .playbook("nodes:\n  web:\n    type: list\n    nodes: [a]\n    at_least: 3\ntasks: []\nhooks:\n  on_fail:\n    - shell:\n        command: echo on-fail-ran\n")
        .args(&["run", "pb.yaml"])
        .status(1)
        .stdout_has("Node set web needs at least 3 nodes, got 1")
        .stderr_lacks("on-fail-ran")
        .run();
    Test::new()
        .playbook("inputs:\n  c:\n    description: c\n    type: String\nnodes:\n  web:\n    type: list\n    nodes: []\n    when_empty: 'nothing in {{{ inputs.c }}}'\ntasks: []\n")
        .args(&["run", "pb.yaml", "--c", "east"])
        .status(1)
        .stdout_has("NodeSetError: nothing in east")
        .run();
}

#[test]
fn array_inputs_work_as_node_lists() {
    Test::new()
        .playbook("inputs:\n  cluster:\n    description: nodes\n    type: ':array'\ntasks:\n  - shell:\n      command: echo deploy\n      nodes: '{{{ inputs.cluster }}}'\n")
        .args(&["run", "pb.yaml", "--cluster", "n1", "--cluster", "n2"])
        .stderr_has("deploy --nodes n1,n2")
        .run();
}
