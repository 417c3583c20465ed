//! Hook order and failure rules (section 3 of the DSL), retries, `fail_ok` and `previous_task`.

use crate::test::Test;

fn hooks_playbook(task: &str, hooks: &[(&str, &str)]) -> String {
    let mut text = format!(
        "tasks:\n  - shell:\n      description: main\n      command: {task}\n  - shell:\n      description: second\n      command: echo second-ran\nhooks:\n"
    );
    for (list, command) in hooks {
        text.push_str(&format!("  {list}:\n    - shell:\n        description: {list} hook\n        command: {command}\n"));
    }
    text
}

const ALL_HOOKS: &[(&str, &str)] = &[
    ("pre_book", "echo pre-book-ran"),
    ("pre_task", "echo pre-task-ran"),
    ("post_task", "echo post-task-ran"),
    ("on_success", "echo on-success-ran"),
    ("on_fail", "echo on-fail-ran"),
    ("post_book", "echo post-book-ran"),
];

fn order(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|w| w.ends_with("-ran"))
        .collect()
}

#[test]
fn hooks_run_in_order_on_success() {
    let out = Test::new()
        .playbook(&hooks_playbook("echo main-ran", ALL_HOOKS))
        .args(&["run", "pb.yaml"])
        .run();
    assert_eq!(
        order(&out.stderr),
        vec![
            "pre-book-ran",
            "pre-task-ran",
            "main-ran",
            "post-task-ran",
            "pre-task-ran",
            "second-ran",
            "post-task-ran",
            "on-success-ran",
            "post-book-ran"
        ]
    );
}

#[test]
fn a_failed_task_runs_on_fail_then_post_book() {
    let out = Test::new()
        .playbook(&hooks_playbook("false", ALL_HOOKS))
        .args(&["run", "pb.yaml"])
        .status(1)
        .run();
    assert_eq!(
        order(&out.stderr),
        vec![
            "pre-book-ran",
            "pre-task-ran",
            "post-task-ran",
            "on-fail-ran",
            "post-book-ran"
        ]
    );
}

#[test]
fn a_failed_pre_book_skips_everything_else() {
    let mut hooks = ALL_HOOKS.to_vec();
    hooks[0] = ("pre_book", "false");
    let out = Test::new()
        .playbook(&hooks_playbook("echo main-ran", &hooks))
        .args(&["run", "pb.yaml"])
        .status(1)
        .stderr_has("Playbook pre_book hook failed to run, failing entire playbook")
        .run();
    assert!(order(&out.stderr).is_empty(), "{}", out.stderr);
}

#[test]
fn a_failed_pre_task_fails_the_task_without_running_it() {
    let out = Test::new()
        .playbook(&hooks_playbook(
            "echo main-ran",
            &[("pre_task", "false"), ("on_fail", "echo on-fail-ran")],
        ))
        .args(&["run", "pb.yaml"])
        .status(1)
        .stderr_has("Failing task because a critical pre_task hook failed")
        .run();
    assert_eq!(order(&out.stderr), vec!["on-fail-ran"]);
}

#[test]
fn a_failed_post_task_fails_the_task() {
    let out = Test::new()
        .playbook(&hooks_playbook(
            "echo main-ran",
            &[("post_task", "false"), ("on_fail", "echo on-fail-ran")],
        ))
        .args(&["run", "pb.yaml"])
        .status(1)
        .run();
    assert_eq!(order(&out.stderr), vec!["main-ran", "on-fail-ran"]);
}

#[test]
fn on_success_failure_fails_the_playbook_but_post_book_runs() {
    let out = Test::new()
        .playbook(&hooks_playbook(
            "echo main-ran",
            &[("on_success", "false"), ("post_book", "echo post-book-ran")],
        ))
        .args(&["run", "pb.yaml"])
        .status(1)
        .run();
    assert_eq!(
        order(&out.stderr),
        vec!["main-ran", "second-ran", "post-book-ran"]
    );
}

#[test]
fn post_book_failure_fails_the_playbook() {
    Test::new()
        .playbook(&hooks_playbook("echo main-ran", &[("post_book", "false")]))
        .args(&["run", "pb.yaml"])
        .status(1)
        .stdout_has("Overall outcome: failed")
        .run();
}

#[test]
fn on_fail_result_is_ignored() {
    Test::new()
        .playbook(&hooks_playbook("false", &[("on_fail", "true")]))
        .args(&["run", "pb.yaml"])
        .status(1)
        .run();
}

#[test]
fn retries_re_template_and_see_the_previous_attempt() {
    let out = Test::new()
        .playbook("tasks:\n  - shell:\n      description: flaky\n      tries: 3\n      try_sleep: 0\n      command: \"echo attempt prev={{{ previous_task.success }}}/{{{ previous_task.msg }}}; test -f marker || { touch marker; exit 4; }\"\n")
        .args(&["run", "pb.yaml", "--report", "r.yaml"])
        .stderr_has("attempt prev=false/No previous task were found")
        .stderr_has("Task failed on try 1/3, sleeping 0s: Command failed with code 4")
        .stderr_has("attempt prev=false/Command failed with code 4")
        .run();
    let report = out.read("r.yaml");
    assert_eq!(report.matches("description: flaky").count(), 2, "{report}");
    assert!(report.contains("task_count: 2"));
}

#[test]
fn fail_ok_only_applies_to_single_attempts() {
    Test::new()
        .playbook("tasks:\n  - shell:\n      command: 'false'\n      fail_ok: true\n  - shell:\n      command: echo prev={{{ previous_task.success }}}\n")
        .args(&["run", "pb.yaml"])
        .stderr_has("Task failed but fail_ok is true, treating as success")
        .stderr_has("prev=true")
        .run();
    Test::new()
        .playbook("tasks:\n  - shell:\n      command: 'false'\n      fail_ok: true\n      tries: 2\n      try_sleep: 0\n")
        .args(&["run", "pb.yaml"])
        .status(1)
        .run();
}

#[test]
fn previous_task_in_on_fail_describes_the_failed_task() {
    Test::new()
        .playbook("tasks:\n  - shell:\n      description: deploy {{{ metadata.version }}}\n      command: exit 2\nhooks:\n  on_fail:\n    - shell:\n        command: \"echo 'failed: {{{ previous_task.description }}} / {{{ previous_task.msg }}} / {{{ previous_task.data }}} / ok={{{ previous_task.success }}}'\"\n")
        .args(&["run", "pb.yaml"])
        .status(1)
        .stderr_has("failed: deploy 1.0.0 / Command failed with code 2 /  / ok=false")
        .run();
}

#[test]
fn pre_sleep_delays_the_first_attempt() {
    let started = std::time::Instant::now();
    Test::new()
        .playbook("tasks:\n  - shell:\n      command: 'true'\n      pre_sleep: 0.3\n")
        .args(&["run", "pb.yaml"])
        .run();
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
}

#[test]
fn descriptions_are_templated_before_pre_task_hooks() {
    Test::new()
        .playbook("tasks:\n  - shell:\n      description: first\n      command: 'true'\n  - shell:\n      description: after {{{ previous_task.description }}}\n      command: echo inside={{{ previous_task.description }}}\nhooks:\n  pre_task:\n    - shell:\n        description: the hook\n        command: 'true'\n")
        .args(&["run", "pb.yaml"])
        .stdout_has("after first")
        .stderr_has("inside=the hook")
        .run();
}
