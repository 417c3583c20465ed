//! `playbook validate` and `playbook show`: positions, suggestions, bad input.

use crate::test::Test;

#[test]
fn every_problem_is_listed_with_its_position_and_a_suggestion() {
    let out = Test::new()
        .playbook("inputs:\n  cluster:\n    description: c\n    type: Strng\n    validaton: ':shellsafe'\nnodes:\n  web:\n    type: lst\ntaks: []\ntasks:\n  - shel:\n      command: x\n  - shell:\n      comand: echo {{{ inputs.clustr }}} {{{ nodes.webb }}}\n  - webhook:\n      uri: http://x\n      tries: many\nhooks:\n  on_failure: []\n  pre_book:\n    - data:\n        action: delete\n        key: mem/x\ndata_stores:\n  memory:\n    type: memory\n")
        .args(&["validate", "pb.yaml"])
        .status(1)
        .stdout_has("pb.yaml: invalid")
        .run();
    for expected in [
        "pb.yaml:9:11: error: Invalid input type Strng given for input cluster (did you mean `String`?)",
        "pb.yaml:10:5: warning: unknown property validaton in input cluster, it will be ignored (did you mean `validation`?)",
        "pb.yaml:13:11: error: Cannot find a handler for Node Set type lst (did you mean `list`?)",
        "pb.yaml:14:1: error: Invalid playbook data items taks found (did you mean `tasks`?)",
        "pb.yaml:16:5: error: Cannot find a handler for Task type shel (did you mean `shell`?)",
        "(did you mean `command`?)",
        "error: tasks shell task needs the property command",
        "Unknown input clustr (did you mean `cluster`?)",
        "Unknown node set webb (did you mean `web`?)",
        "tries of tasks webhook task should be an integer",
        "error: Unknown hook list on_failure (did you mean `on_fail`?)",
        "pb.yaml:28:14: error: Unknown data store mem (did you mean `memory`?)",
    ] {
        assert!(
            out.stderr.contains(expected),
            "missing {expected:?} in\n{}",
            out.stderr
        );
    }
}

#[test]
fn yaml_syntax_errors_have_positions() {
    Test::new()
        .file(
            "bad.yaml",
            "name: x\ntasks:\n  - shell: {command: [unclosed\n",
        )
        .args(&["validate", "bad.yaml"])
        .status(1)
        .stderr_has("bad.yaml:4:1: error: YAML syntax error")
        .run();
    Test::new()
        .file("bad.yaml", "name: x\n\tversion: 1\n")
        .args(&["run", "bad.yaml"])
        .status(1)
        .stderr_has(
            "bad.yaml:1:7: error: YAML syntax error: while scanning a plain scalar, found a tab",
        )
        .stderr_has("is not valid")
        .run();
}

#[test]
fn wrong_types_are_errors() {
    Test::new()
        .playbook("tasks:\n  - shell:\n      command: [not, a, string]\n      environment: nope\n")
        .args(&["validate", "pb.yaml"])
        .status(1)
        .stderr_has(
            "pb.yaml:8:16: error: tasks shell task property command should be a string, got array",
        )
        .stderr_has("property environment should be a hash, got string")
        .run();
}

#[test]
fn several_files_are_checked_together() {
    Test::new()
        .playbook("tasks: []\n")
        .file("other.yaml", "tasks: {}\n")
        .args(&["validate", "pb.yaml", "other.yaml", "missing.yaml"])
        .status(1)
        .stdout_has("pb.yaml: ok (0 warning(s))")
        .stdout_has("other.yaml: invalid")
        .stderr_has("missing.yaml:1:1: error: Cannot read playbook")
        .run();
}

#[test]
fn macros_and_merge_keys_expand() {
    Test::new()
        .playbook("macros:\n  hook: &hook\n    command: echo from-macro\n    environment:\n      X: 'y'\ntasks:\n  - shell:\n      <<: *hook\n      description: merged\n")
        .args(&["run", "pb.yaml"])
        .stderr_has("from-macro")
        .stdout_has("merged")
        .run();
}

#[test]
fn show_describes_the_playbook() {
    Test::new()
        .playbook("inputs:\n  cluster:\n    description: Cluster to deploy\n    type: String\n  many:\n    description: Several\n    type: Array\n    required: false\nnodes:\n  web:\n    type: list\n    nodes: [a]\ntasks:\n  - shell:\n      description: Deploy\n      command: 'true'\n      tries: 3\nhooks:\n  on_fail:\n    - slack:\n        token: t\n        channel: c\n        text: x\n")
        .args(&["show", "pb.yaml"])
        .stdout_has("Playbook: test version 1.0.0")
        .stdout_has("--cluster CLUSTER  Cluster to deploy [String, required]")
        .stdout_has("--many MANY (repeatable)")
        .stdout_has("web (list)")
        .stdout_has("1. shell          Deploy [tries 3 every 10s]")
        .stdout_has("Hook on_fail:")
        .run();
}

#[test]
fn inputs_that_would_clash_as_flags_are_refused() {
    Test::new()
        .playbook("inputs:\n  cluster:\n    description: a\n    type: String\n  Cluster:\n    description: b\n    type: String\n  report:\n    description: c\n    type: String\ntasks: []\n")
        .args(&["run", "pb.yaml", "--help"])
        .status(1)
        .stderr_has("pb.yaml:10:3: error: Input Cluster would give a second --cluster flag")
        .stderr_has("pb.yaml:13:3: error: Input report clashes with the built-in --report flag")
        .run();
}

#[test]
fn a_webhook_method_outside_get_and_post_is_refused_with_its_position() {
    Test::new()
        .playbook("tasks:\n  - webhook:\n      uri: http://127.0.0.1:9/\n      method: PUT\n")
        .args(&["validate", "pb.yaml"])
        .status(1)
        .stdout_has("pb.yaml: invalid (1 error(s)")
        .stderr_has(
            "pb.yaml:9:15: error: tasks webhook task property method should be GET or POST, got PUT",
        )
        .run();
    // The method is case-insensitive, as in Choria.
    Test::new()
        .playbook("tasks:\n  - webhook:\n      uri: http://127.0.0.1:9/\n      method: get\n")
        .args(&["validate", "pb.yaml"])
        .stdout_has("pb.yaml: ok (0 warning(s))")
        .run();
}

#[test]
fn an_unknown_template_namespace_is_refused_with_its_position_and_a_suggestion() {
    Test::new()
        .playbook("nodes:\n  n:\n    type: list\n    nodes: [a]\ntasks:\n  - shell:\n      command: echo {{{ nodez.n }}}\n")
        .args(&["validate", "pb.yaml"])
        .status(1)
        .stderr_has("pb.yaml:12:21: error: Unknown template expression `nodez.n`: nodez is unknown (did you mean `nodes`?)")
        .run();
    // Misspelt helpers and known names in a wrong form are refused too; positions point
    // inside quoted and block strings.
    Test::new()
        .playbook("tasks:\n  - shell:\n      command: \"echo {{ utc_dat(%F) }}\"\n  - shell:\n      command: |\n        echo one\n        echo {{{ uuid() }}}\n")
        .args(&["validate", "pb.yaml"])
        .status(1)
        .stderr_has("pb.yaml:8:22: error: Unknown template expression `utc_dat(%F)`: utc_dat is unknown (did you mean `utc_date`?)")
        .stderr_has("pb.yaml:12:14: error: Invalid template expression `uuid()`")
        .run();
    // Text that is not shaped like an expression is left alone, as Choria did.
    Test::new()
        .playbook(
            "tasks:\n  - shell:\n      command: \"docker inspect -f '{{ .State.Status }}' x\"\n",
        )
        .args(&["validate", "pb.yaml"])
        .stdout_has("pb.yaml: ok (0 warning(s))")
        .run();
    // Other unknown names only warn.
    Test::new()
        .playbook("tasks:\n  - shell:\n      command: echo {{ foo.bar }}\n")
        .args(&["validate", "pb.yaml"])
        .stdout_has("pb.yaml: ok (1 warning(s))")
        .stderr_has("pb.yaml:8:21: warning: `{{ foo.bar }}` is not a template expression (foo is unknown) and is left as text")
        .run();
}

#[test]
fn an_input_that_is_not_declared_is_refused_inside_the_string() {
    Test::new()
        .playbook("inputs:\n  cluster:\n    description: c\n    type: String\ntasks:\n  - shell:\n      command: echo {{{ inputs.cluster }}} {{{ inputs.x }}}\n")
        .args(&["validate", "pb.yaml"])
        .status(1)
        .stdout_has("pb.yaml: invalid (1 error(s)")
        .stderr_has("pb.yaml:12:44: error: Unknown input x")
        .run();
}

#[test]
fn every_wrong_type_is_reported_at_its_value() {
    let out = Test::new()
        .playbook("data_stores:\n  f:\n    type: file\n    file: x.yaml\n    format: toml\n    create: maybe\nnodes:\n  n:\n    type: list\n    nodes: [a]\n    limit: [1]\ntasks:\n  - shell:\n      command: 'true'\n      timeout: [1]\n      cwd: {a: b}\n  - mcollective:\n      action: a.b\n      nodes: [a]\n      post: [summary]\n      batch_size: many\n")
        .args(&["validate", "pb.yaml"])
        .status(1)
        .stdout_has("pb.yaml: invalid (7 error(s)")
        .run();
    for expected in [
        "pb.yaml:10:13: error: data store f property format should be json or yaml, got toml",
        "pb.yaml:11:13: error: data store f property create should be a boolean, got string \"maybe\"",
        "pb.yaml:16:12: error: node set n property limit should be an integer, got array",
        "pb.yaml:20:16: error: tasks shell task property timeout should be a number of seconds, got array",
        "pb.yaml:21:12: error: tasks shell task property cwd should be a string, got hash",
        "pb.yaml:25:14: error: tasks mcollective task property post[0] should be summarize, got summary (did you mean `summarize`?)",
        "pb.yaml:26:19: error: tasks mcollective task property batch_size should be an integer, got string \"many\"",
    ] {
        assert!(
            out.stderr.contains(expected),
            "missing {expected:?} in\n{}",
            out.stderr
        );
    }
}

#[test]
fn unknown_properties_are_refused_with_a_suggestion() {
    Test::new()
        .playbook("tasks:\n  - webhook:\n      uri: http://127.0.0.1:9/\n      methd: GET\n")
        .args(&["validate", "pb.yaml"])
        .status(1)
        .stderr_has("pb.yaml:9:7: error: unknown property methd in tasks webhook task (did you mean `method`?)")
        .run();
}

#[test]
fn templated_values_are_checked_after_expansion_with_the_declarations_position() {
    let body = "inputs:\n  limit:\n    description: l\n    type: String\n  timeout:\n    description: t\n    type: String\nnodes:\n  n:\n    type: list\n    nodes: [a]\n    limit: '{{{ inputs.limit }}}'\ntasks:\n  - shell:\n      command: 'echo ran'\n      timeout: '{{{ inputs.timeout }}}'\n";
    // Templated values cannot be judged literally: the playbook is valid.
    Test::new()
        .playbook(body)
        .args(&["validate", "pb.yaml"])
        .stdout_has("pb.yaml: ok (0 warning(s))")
        .run();
    Test::new()
        .playbook(body)
        .args(&["run", "pb.yaml", "--limit", "1", "--timeout", "5"])
        .stderr_has("ran")
        .run();
    Test::new()
        .playbook(body)
        .args(&["run", "pb.yaml", "--limit", "one", "--timeout", "5"])
        .status(1)
        .stdout_has("NodeSetError: pb.yaml:14:3: node set n property limit should be an integer, got string \"one\"")
        .stderr_lacks("ran")
        .run();
    Test::new()
        .playbook(body)
        .args(&["run", "pb.yaml", "--limit", "1", "--timeout", "soon"])
        .status(1)
        .stdout_has("TaskValidationError: pb.yaml:19:5: tasks shell task property timeout should be a number of seconds, got string \"soon\"")
        .stderr_lacks("ran")
        .run();
}

#[test]
fn show_and_help_say_which_inputs_must_be_given() {
    let pb = "data_stores:\n  m:\n    type: memory\ninputs:\n  cluster:\n    description: bound cluster\n    type: String\n    data: m/cluster\n  tls:\n    description: use tls\n    type: Boolean\n  verbose:\n    description: be loud\n    type: Boolean\n    required: false\n  name:\n    description: the name\n    type: String\ntasks:\n  - shell:\n      command: 'true'\n";
    let out = Test::new().playbook(pb).args(&["show", "pb.yaml"]).run();
    let line = |needle: &str| {
        out.stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{}", out.stdout))
            .to_string()
    };
    let bound = line("bound cluster");
    assert!(!bound.contains("required"), "{bound}");
    assert!(bound.contains("optional (data-bound)"), "{bound}");
    assert!(
        line("use tls").contains("required: the flag must be given"),
        "{}",
        out.stdout
    );
    assert!(!line("be loud").contains("required"), "{}", out.stdout);
    assert!(line("the name").contains("required"), "{}", out.stdout);
    let help = Test::new()
        .playbook(pb)
        .args(&["run", "pb.yaml", "--help"])
        .run()
        .stdout;
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("use tls (Boolean) [required: the flag must be given]"),
        "{help}"
    );
    assert!(flat.contains("the name (String) [required]"), "{help}");
    assert!(
        flat.contains("bound cluster (String) [data-bound]"),
        "{help}"
    );
    assert!(!flat.contains("[data-bound] [required"), "{help}");
    // As the help says, the run needs --tls.
    Test::new()
        .playbook(pb)
        .args(&["run", "pb.yaml", "--name", "x"])
        .status(1)
        .stdout_has("Values were required but not given for inputs: tls")
        .run();
}
