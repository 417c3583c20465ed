//! `playbook run`: output, exit codes, reports, JSON, dry runs.

use crate::test::Test;

const TWO_TASKS: &str = "tasks:\n  - shell:\n      description: first {{{ metadata.name }}}\n      command: echo one\n  - shell:\n      description: second\n      command: echo two\n";

#[test]
fn a_successful_run_prints_one_line_per_task_and_a_summary() {
    let out = Test::new()
        .playbook(TWO_TASKS)
        .args(&["run", "pb.yaml"])
        .stdout_has("Overall outcome: success")
        .stdout_has("Tasks Ran: 2")
        .stderr_has("test#tasks.shell")
        .stderr_has("About to run task: first test")
        .run();
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("ok "))
        .collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(lines[0].contains("tasks.shell") && lines[0].ends_with("first test"));
    assert!(lines[1].ends_with("second"));
}

#[test]
fn a_failing_task_stops_the_list_and_exits_1() {
    Test::new()
        .playbook("tasks:\n  - shell:\n      command: exit 3\n  - shell:\n      command: echo never-runs\n")
        .args(&["run", "pb.yaml"])
        .status(1)
        .stdout_has("FAIL tasks.shell")
        .stdout_has("Overall outcome: failed")
        .stderr_has("Command failed with code 3")
        .stderr_lacks("never-runs")
        .run();
}

#[test]
fn the_report_has_every_section() {
    let out = Test::new()
        .playbook(&format!(
            "inputs:\n  who:\n    description: who\n    type: String\n    default: me\n{TWO_TASKS}"
        ))
        .args(&["run", "pb.yaml", "--report", "report.yaml"])
        .stdout_has("Report saved to report.yaml")
        .run();
    let report = out.read("report.yaml");
    for key in [
        "report:",
        "playbook:",
        "inputs:",
        "nodes:",
        "tasks:",
        "metrics:",
        "logs:",
        "playbook_error: null",
        "success: true",
        "version: 1",
        "task_count: 2",
        "static:",
        "who: me",
        "set: tasks",
        "ran: true",
        "msg: Command completed successfully",
    ] {
        assert!(report.contains(key), "report lacks {key:?}:\n{report}");
    }
    // Section order follows Choria's report.
    let pos = |k: &str| {
        report
            .find(&format!("\n{k}:"))
            .or(report.starts_with(&format!("{k}:")).then_some(0))
    };
    assert!(pos("report") < pos("playbook") && pos("tasks") < pos("metrics"));
}

#[test]
fn an_existing_report_file_is_refused_before_running() {
    Test::new()
        .playbook("tasks:\n  - shell:\n      command: touch ran\n")
        .file("report.yaml", "old")
        .args(&["run", "pb.yaml", "--report", "report.yaml"])
        .status(1)
        .stderr_has("Could not write report the file report.yaml: it already exists")
        .run();
}

#[test]
fn json_goes_to_stdout_alone() {
    let out = Test::new()
        .playbook(TWO_TASKS)
        .args(&["run", "pb.yaml", "--json"])
        .stderr_has("Overall outcome: success")
        .run();
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("stdout is JSON");
    assert_eq!(json["report"]["success"], true);
    assert_eq!(json["tasks"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["playbook"]["name"], "test");
    assert_eq!(json["metrics"]["task_types"]["shell"]["pass"], 2);
}

#[test]
fn dry_run_shows_tasks_without_running_them() {
    let out = Test::new()
        .playbook("nodes:\n  web:\n    type: list\n    nodes: [a, b]\ninputs:\n  n:\n    description: n\n    type: String\ntasks:\n  - shell:\n      command: touch created-{{{ inputs.n }}}\n      nodes: '{{{ nodes.web }}}'\nhooks:\n  post_book:\n    - webhook:\n        uri: http://127.0.0.1:9/x\n        data:\n          n: '{{{ inputs.n }}}'\n")
        .args(&["run", "pb.yaml", "--dry-run", "--n", "x"])
        .stdout_has("would run tasks[1] shell task: shell: touch created-x --nodes a,b")
        .stdout_has("would run post_book[1] webhook task: webhook: POST http://127.0.0.1:9/x data {\"n\":\"x\"}")
        .stdout_has("node set web: a, b")
        .run();
    assert!(!out.exists("created-x"));
}

#[test]
fn loglevel_flag_filters_logs() {
    Test::new()
        .playbook(TWO_TASKS)
        .args(&["run", "pb.yaml", "--loglevel", "error"])
        .stderr_lacks("About to run task")
        .stdout_has("Overall outcome: success")
        .run();
    Test::new()
        .playbook(TWO_TASKS)
        .args(&["run", "pb.yaml", "--loglevel", "loud"])
        .status(2)
        .stderr_has("invalid value 'loud'")
        .run();
}

#[test]
fn a_missing_playbook_is_a_clear_error() {
    Test::new()
        .args(&["run", "nope.yaml"])
        .status(1)
        .stderr_has("nope.yaml:1:1: error: Cannot read playbook")
        .run();
}

#[test]
fn template_errors_at_run_time_abort_without_later_hooks() {
    let out = Test::new()
        .playbook("data_stores:\n  m:\n    type: memory\ninputs:\n  d:\n    description: d\n    type: String\n    data: m/missing\ntasks:\n  - shell:\n      command: echo {{{ inputs.d }}}\nhooks:\n  on_fail:\n    - shell:\n        command: echo on-fail-ran\n  post_book:\n    - shell:\n        command: echo post-book-ran\n")
        .args(&["run", "pb.yaml", "--report", "r.yaml"])
        .status(1)
        .stdout_has("Error: Playbook test failed: InputError: Could not resolve m/missing for input d: No such key missing")
        .stderr_lacks("on-fail-ran")
        .stderr_lacks("post-book-ran")
        .run();
    assert!(
        out.read("r.yaml")
            .contains("playbook_error: 'Playbook test failed: InputError")
    );
}

#[test]
fn task_property_errors_abort_the_run() {
    // A literal `method: PUT` is refused when the playbook loads (see validate.rs); a
    // templated one is only known after expansion and aborts the run with the task's position.
    Test::new()
        .playbook("inputs:\n  method:\n    description: m\n    type: String\ntasks:\n  - webhook:\n      uri: http://127.0.0.1:9/\n      method: '{{{ inputs.method }}}'\nhooks:\n  on_fail:\n    - shell:\n        command: echo on-fail-ran\n")
        .args(&["run", "pb.yaml", "--method", "PUT"])
        .status(1)
        .stdout_has("TaskValidationError: pb.yaml:11:5: tasks webhook task property method should be GET or POST, got PUT")
        .stderr_lacks("on-fail-ran")
        .run();
}

#[test]
fn unavailable_task_types_fail_honestly() {
    Test::new()
        .playbook("tasks:\n  - bolt:\n      command: uptime\n      nodes: [a]\nhooks:\n  on_fail:\n    - shell:\n        command: echo on-fail-ran\n")
        .args(&["run", "pb.yaml"])
        .status(1)
        .stderr_has("the bolt task type is not available in this build yet")
        .stderr_has("on-fail-ran")
        .run();
}

#[test]
fn help_lists_the_input_flags() {
    Test::new()
        .playbook("inputs:\n  cluster:\n    description: Cluster to deploy\n    type: String\n    default: alpha\n  servers:\n    description: Servers\n    type: Array\n    required: false\n  tls:\n    description: Use TLS\n    type: Boolean\n    required: false\n  hidden:\n    description: only from the store\n    dynamic: true\n    data: m/x\ndata_stores:\n  m:\n    type: memory\ntasks: []\n")
        .args(&["run", "pb.yaml", "--help"])
        .stdout_has("--cluster <CLUSTER>")
        .stdout_has("Cluster to deploy (String) default: alpha")
        .stdout_has("--servers <SERVERS>")
        .stdout_has("--tls")
        .stdout_lacks("--hidden")
        .run();
}

#[test]
fn no_arguments_prints_usage_and_fails() {
    Test::new().status(2).stderr_has("Usage: playbook").run();
}

#[test]
fn usage_errors_exit_2_on_one_line_even_with_rust_backtrace() {
    for args in [
        &["run", "pb.yaml", "--bogus"][..],
        &["run", "pb.yaml", "--loglevel", "loud"][..],
        &["run"][..],
        &["frobnicate"][..],
        &["run", "pb.yaml", "--config", "/nonexistent/client.cfg"][..],
    ] {
        let out = Test::new()
            .playbook(TWO_TASKS)
            .env("RUST_BACKTRACE", "1")
            .args(args)
            .status(2)
            .stderr_lacks("backtrace")
            .stderr_lacks("panicked")
            .stdout_lacks("Tasks Ran")
            .run();
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        assert!(lines[0].starts_with("playbook: "), "{args:?}: {lines:?}");
    }
}

#[test]
fn logs_carry_no_ansi_colour_when_stderr_is_not_a_terminal() {
    Test::new()
        .playbook(TWO_TASKS)
        .env("PLAYBOOK_TRACE", "debug")
        .env("CLICOLOR_FORCE", "0")
        .args(&["run", "pb.yaml"])
        .stderr_has("About to run task")
        .stderr_lacks("\u{1b}[")
        .run();
}

#[test]
fn shell_tasks_use_cwd_environment_and_timeout() {
    let started = std::time::Instant::now();
    Test::new()
        .file("sub/marker", "")
        .playbook("tasks:\n  - shell:\n      command: ls; echo HELLO=$HELLO\n      cwd: sub\n      environment:\n        HELLO: world\n  - shell:\n      command: sleep 5\n      timeout: 0.5\n")
        .args(&["run", "pb.yaml"])
        .status(1)
        .stderr_has("marker")
        .stderr_has("HELLO=world")
        .stderr_has("Command timed out after 0.5s")
        .run();
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
}

#[test]
fn console_and_report_show_the_same_task_time() {
    let out = Test::new()
        .playbook("tasks:\n  - shell:\n      description: slept first\n      command: 'sleep 0.2'\n      pre_sleep: 1\n")
        .args(&["run", "pb.yaml", "--json"])
        .run();
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("ok   tasks.shell"))
        .unwrap_or_else(|| panic!("no task line:\n{}", out.stderr));
    let shown: f64 = line
        .split_whitespace()
        .find_map(|w| w.strip_suffix('s').and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no time in {line:?}"));
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON report");
    let recorded = report["tasks"][0]["run_time"].as_f64().expect("run_time");
    assert_eq!(shown, recorded, "console {line:?} vs report {recorded}");
    assert!(
        (0.15..1.0).contains(&recorded),
        "pre_sleep is not the task's time: {recorded}"
    );
}

#[test]
fn store_errors_name_the_store_and_its_position_or_the_lock() {
    Test::new()
        .playbook("data_stores:\n  f:\n    type: file\n    file: nope.json\n    format: json\ntasks:\n  - shell:\n      command: echo must-not-run\n")
        .args(&["run", "pb.yaml"])
        .status(1)
        .stdout_has("DataStoreError: data store f (file) at pb.yaml:7:3: Cannot find data file nope.json")
        .stderr_lacks("must-not-run")
        .run();
    Test::new()
        .playbook("data_stores:\n  e:\n    type: environment\nlocks:\n  - e/x\ntasks: []\n")
        .args(&["run", "pb.yaml"])
        .status(1)
        .stdout_has("DataStoreError: lock e/x: lock not implemented in the environment data store")
        .run();
}
