//! Data stores: saving inputs, dynamic inputs, the data task, locks.

use crate::test::Test;

#[test]
fn saved_inputs_and_dynamic_reads_use_a_yaml_file_store() {
    let pb = "data_stores:\n  f:\n    type: file\n    file: store.yaml\n    format: yaml\n    create: true\ninputs:\n  port:\n    description: port\n    type: Integer\n    data: f/port\n    save: true\ntasks:\n  - shell:\n      command: echo port={{{ inputs.port }}}\n";
    let t = Test::new().playbook(pb);
    let dir = t.path().to_path_buf();
    let out = t
        .args(&["run", "pb.yaml", "--port", "4300"])
        .stderr_has("port=4300")
        .run();
    assert!(
        out.read("store.yaml").contains("port: 4300"),
        "{}",
        out.read("store.yaml")
    );
    // Without the flag the input is dynamic and read from the file.
    let pb_text = std::fs::read_to_string(dir.join("pb.yaml")).expect("pb");
    Test::new()
        .file("pb.yaml", &pb_text)
        .file("store.yaml", "port: 5500\n")
        .args(&["run", "pb.yaml"])
        .stderr_has("port=5500")
        .run();
}

#[test]
fn dynamic_inputs_are_re_read_after_a_data_write() {
    Test::new()
        .playbook("data_stores:\n  m:\n    type: memory\ninputs:\n  cluster:\n    description: c\n    type: String\n    default: alpha\n    validation: ':shellsafe'\n    data: m/cluster\ntasks:\n  - shell:\n      command: echo first={{{ inputs.cluster }}}\n  - data:\n      action: write\n      key: m/cluster\n      value: bravo\n  - shell:\n      command: echo second={{{ inputs.cluster }}}\n  - data:\n      action: write\n      key: m/cluster\n      value: 'x;y'\n  - shell:\n      command: echo third={{{ inputs.cluster }}}\n")
        .args(&["run", "pb.yaml"])
        .stderr_has("first=alpha")
        .stderr_has("Could not find m/cluster, returning default value")
        .stderr_has("second=bravo")
        .stderr_has("third=alpha")
        .run();
}

#[test]
fn dynamic_true_inputs_ignore_the_command_line() {
    Test::new()
        .playbook("data_stores:\n  m:\n    type: memory\ninputs:\n  c:\n    description: c\n    dynamic: true\n    data: m/c\n    default: from-default\ntasks:\n  - shell:\n      command: echo c={{{ inputs.c }}}\n")
        .args(&["run", "pb.yaml"])
        .stderr_has("c=from-default")
        .run();
}

#[test]
fn environment_store_writes_reach_later_shell_tasks() {
    Test::new()
        .playbook("data_stores:\n  env:\n    type: environment\n    prefix: PBT_\ninputs:\n  home:\n    description: from env\n    type: String\n    data: env/HOME_DIR\ntasks:\n  - shell:\n      command: echo home={{{ inputs.home }}}\n  - data:\n      action: write\n      key: env/NEW\n      value: fresh\n  - shell:\n      command: echo new=$PBT_NEW\n  - data:\n      action: delete\n      key: env/HOME_DIR\n  - shell:\n      command: echo gone=${PBT_HOME_DIR:-unset}\n")
        .env("PBT_HOME_DIR", "/home/x")
        .args(&["run", "pb.yaml"])
        .stderr_has("home=/home/x")
        .stderr_has("new=fresh")
        .stderr_has("gone=unset")
        .run();
}

#[test]
fn shell_store_protocol() {
    Test::new()
        .script("store.sh", "#!/bin/sh\necho \"$1 $CHORIA_DATA_ACTION $CHORIA_DATA_KEY ${CHORIA_DATA_VALUE:-}\" >> {dir}/calls\ncase \"$1\" in\n--read) echo stored-value ;;\nesac\n")
        .playbook("data_stores:\n  sh:\n    type: shell\n    command: ./store.sh\ninputs:\n  v:\n    description: v\n    type: String\n    data: sh/key1\ntasks:\n  - shell:\n      command: echo v={{{ inputs.v }}}\n  - data:\n      action: write\n      key: sh/key2\n      value: hello\n")
        .args(&["run", "pb.yaml"])
        .stderr_has("v=stored-value")
        .run()
        .read("calls")
        .contains("--write write key2 hello")
        .then_some(())
        .expect("write call recorded");
}

#[test]
fn memory_locks_are_taken_and_released() {
    Test::new()
        .playbook("data_stores:\n  m:\n    type: memory\nlocks:\n  - m\n  - m/custom\ntasks:\n  - shell:\n      command: 'true'\n")
        .args(&["run", "pb.yaml"])
        .stderr_has("Obtaining playbook lock m/choria/locks/playbook/test")
        .stderr_has("Obtaining playbook lock m/custom")
        .stderr_has("Releasing playbook lock m/custom")
        .run();
}

#[test]
fn locking_on_a_store_without_locks_is_an_error() {
    Test::new()
        .playbook("data_stores:\n  e:\n    type: environment\nlocks:\n  - e\ntasks:\n  - shell:\n      command: echo should-not-run\n")
        .args(&["run", "pb.yaml"])
        .status(1)
        .stdout_has("lock not implemented in the environment data store")
        .stderr_lacks("should-not-run")
        .run();
}

#[test]
fn consul_and_etcd_stores_validate_cleanly() {
    let pb = "data_stores:\n  c:\n    type: consul\n    ttl: 20\n    timeout: 120\n    lock_delay: 1\n  e:\n    type: etcd\n    url: http://127.0.0.1:2379\n    user: u\n    password: p\n    ttl: 10\nlocks:\n  - c\n  - e/x\ntasks:\n  - shell:\n      command: 'true'\n";
    Test::new()
        .playbook(pb)
        .args(&["validate", "pb.yaml"])
        .stdout_has("pb.yaml: ok (0 warning(s))")
        .stderr_lacks("not available")
        .run();
}

#[test]
fn data_stores_are_templated() {
    Test::new()
        .playbook("inputs:\n  file:\n    description: f\n    type: String\ndata_stores:\n  f:\n    type: file\n    file: '{{{ inputs.file }}}'\n    format: json\n    create: true\ntasks:\n  - data:\n      action: write\n      key: f/answer\n      value: 42\n")
        .args(&["run", "pb.yaml", "--file", "out.json"])
        .run()
        .read("out.json")
        .contains("\"answer\":42")
        .then_some(())
        .expect("templated file store written");
}
