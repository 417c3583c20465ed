//! Inputs as flags: types, validation, required, sensitive values.

use crate::test::Test;

const INPUTS: &str = "inputs:
  cluster:
    description: Cluster to deploy
    type: String
    validation: ':shellsafe'
  port:
    description: Port
    type: Integer
    default: 4222
  tls:
    description: Use TLS
    type: Boolean
    required: false
  servers:
    description: Servers
    type: Array
    required: false
    default: []
  mode:
    description: Mode
    type: String
    default: fast
    validation: [fast, slow]
tasks:
  - shell:
      command: \"echo cluster={{{ inputs.cluster }}} port={{ inputs.port }} tls={{{ inputs.tls }}} servers={{{ inputs.servers }}} mode={{{ input.mode }}}\"
";

#[test]
fn every_input_type_becomes_a_flag() {
    Test::new()
        .playbook(INPUTS)
        .args(&[
            "run",
            "pb.yaml",
            "--cluster",
            "alpha",
            "--port=4300",
            "--tls",
            "--servers",
            "a:1",
            "--servers",
            "b:2",
        ])
        .stderr_has("cluster=alpha port=4300 tls=true servers=a:1, b:2 mode=fast")
        .run();
}

#[test]
fn flags_may_come_before_the_file() {
    Test::new()
        .playbook(INPUTS)
        .args(&["run", "--cluster", "beta", "pb.yaml"])
        .stderr_has("cluster=beta port=4222 tls=false")
        .run();
}

#[test]
fn required_inputs_must_be_given() {
    Test::new()
        .playbook(INPUTS)
        .args(&["run", "pb.yaml"])
        .status(1)
        .stdout_has("Values were required but not given for inputs: cluster")
        .run();
}

#[test]
fn shell_unsafe_values_are_refused() {
    Test::new()
        .playbook(INPUTS)
        .args(&["run", "pb.yaml", "--cluster", "a; rm -rf /"])
        .status(1)
        .stdout_has("Failed to validate value for input cluster: Is not shellsafe, ';' found")
        .stderr_lacks("cluster=a")
        .run();
}

#[test]
fn enumerations_validate() {
    Test::new()
        .playbook(INPUTS)
        .args(&["run", "pb.yaml", "--cluster", "a", "--mode", "medium"])
        .status(1)
        .stdout_has("Failed to validate value for input mode: value should be one of fast, slow")
        .run();
}

#[test]
fn bad_integers_are_refused() {
    Test::new()
        .playbook(INPUTS)
        .args(&["run", "pb.yaml", "--cluster", "a", "--port", "many"])
        .status(2)
        .stderr_has("many is not an integer")
        .run();
}

#[test]
fn unknown_input_flags_are_refused_with_a_suggestion() {
    Test::new()
        .playbook(INPUTS)
        .args(&["run", "pb.yaml", "--clustr", "a"])
        .status(2)
        .stderr_has("unexpected argument '--clustr'")
        .stderr_has("--cluster")
        .run();
}

#[test]
fn sensitive_inputs_are_masked_everywhere() {
    let out = Test::new()
        .playbook("inputs:\n  password:\n    description: The password\n    type: String\n    sensitive: true\n  user:\n    description: user\n    type: String\n    default: bob\ntasks:\n  - shell:\n      description: login with {{{ inputs.password }}}\n      command: \"echo user={{{ inputs.user }}} pass={{{ inputs.password }}}; exit 1\"\n")
        .args(&["run", "pb.yaml", "--password", "s3cr3t-value", "--report", "r.yaml", "--json"])
        .status(1)
        .stderr_has("user=bob pass=*****")
        .stderr_lacks("s3cr3t-value")
        .stdout_lacks("s3cr3t-value")
        .run();
    let report = out.read("r.yaml");
    assert!(!report.contains("s3cr3t-value"), "{report}");
    assert!(report.contains("password: '*****'"), "{report}");
}

#[test]
fn required_booleans_cannot_be_satisfied_by_absence() {
    Test::new()
        .playbook("inputs:\n  force:\n    description: force\n    type: Boolean\ntasks: []\n")
        .args(&["run", "pb.yaml"])
        .status(1)
        .stdout_has("Values were required but not given for inputs: force")
        .run();
}
