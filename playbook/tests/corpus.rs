//! Compatibility with the real Choria playbooks in `shared/corpus/choria-playbooks`.

use std::path::{Path, PathBuf};

use playbook::spec::{HookList, Mode, load, load_file};

use crate::test::Test;

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/corpus/choria-playbooks"
);

/// The corpus directory; a missing corpus fails the test instead of silently passing.
pub(crate) fn corpus(sub: &str) -> PathBuf {
    let dir = Path::new(CORPUS).join(sub);
    assert!(
        dir.is_dir(),
        "the Choria playbook corpus is missing at {} (expected shared/ beside the repository)",
        dir.display()
    );
    dir
}

fn files(sub: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus(sub))
        .expect("read corpus dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no files in corpus/{sub}");
    files
}

fn is_illegal(p: &Path) -> bool {
    p.to_string_lossy().ends_with("illegal.yaml")
}

#[test]
fn every_complete_playbook_loads() {
    let mut loaded = 0;
    for file in files("complete").iter().filter(|p| !is_illegal(p)) {
        let (pb, diags) = load_file(file);
        let pb = pb.unwrap_or_else(|| panic!("{} should load:\n{diags}", file.display()));
        assert!(!pb.metadata.name.is_empty());
        assert!(!pb.tasks.is_empty(), "{} has tasks", file.display());
        loaded += 1;
    }
    assert_eq!(loaded, 15);
}

#[test]
fn the_fixture_playbook_has_every_section() {
    let dir = corpus("complete");
    let (pb, diags) = load_file(
        &dir.join("choria-legacy__mcollective-choria__spec__fixtures__playbooks__playbook.yaml"),
    );
    let pb = pb.unwrap_or_else(|| panic!("loads: {diags}"));
    assert_eq!(pb.metadata.name, "test_playbook");
    assert_eq!(pb.inputs.len(), 5);
    assert_eq!(pb.data_stores.len(), 2);
    assert_eq!(pb.locks, vec!["mem_store/playbook", "mem_store"]);
    assert_eq!(pb.nodes.len(), 2);
    assert_eq!(pb.tasks[0].tries, 2);
    assert_eq!(pb.tasks[0].try_sleep, 20.0);
    // `:message:` arrives as `message`.
    let props = &pb.tasks[0].props["properties"];
    assert_eq!(props["message"], "hello world");
    assert_eq!(pb.hooks.get(HookList::PreTask).len(), 1);
    assert_eq!(pb.hooks.get(HookList::OnSuccess).len(), 1);
    let forced = pb.input("forced_dynamic").expect("input");
    assert!(forced.dynamic);
    let cluster = pb.input("cluster").expect("input");
    assert!(!cluster.required);
    assert_eq!(cluster.default, Some(serde_json::json!("alpha")));
}

#[test]
fn the_illegal_playbook_is_rejected_with_every_problem() {
    let dir = corpus("complete");
    let file =
        dir.join("choria-legacy__mcollective-choria__spec__fixtures__playbooks__illegal.yaml");
    let t = Test::new();
    let file = file.to_string_lossy().into_owned();
    let out = t
        .args(&["validate", &file])
        .status(1)
        .stdout_has("invalid (13 error(s)")
        .run();
    for expected in [
        "1:1: error: A playbook name is needed",
        "1:1: error: A playbook version is needed",
        "1:1: error: A playbook author is needed",
        "1:1: error: A playbook description is needed",
        "1:11: error: Invalid log level illegal, valid levels are debug, info, warn, error, fatal",
        "2:9: warning: Invalid callerid rspec",
        "4:1: error: Invalid playbook data items foo found",
        "6:7: error: uses should be a hash",
        "7:8: error: nodes should be a hash",
        "8:8: error: hooks should be a hash",
        "9:14: error: data_stores should be a hash",
        "10:9: error: inputs should be a hash",
        "11:8: error: locks should be a array",
        "12:8: error: tasks should be a array",
    ] {
        assert!(
            out.stderr.contains(expected),
            "missing {expected:?} in\n{}",
            out.stderr
        );
    }
}

#[test]
fn validate_accepts_the_whole_corpus_except_illegal() {
    let mut args: Vec<String> = vec!["validate".into()];
    args.extend(
        files("complete")
            .iter()
            .filter(|p| !is_illegal(p))
            .map(|p| p.to_string_lossy().into_owned()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = Test::new().args(&args).run();
    assert_eq!(out.stdout.matches(": ok (").count(), 15, "{}", out.stdout);
}

/// Snippets that are deliberately incomplete and so cannot load on their own.
const INCOMPLETE_SNIPPETS: &[(&str, &str)] = &[
    // No `type:` on a non-dynamic input: Choria fails building the CLI flag too.
    ("inputs__index.md__snippet04", "Invalid input type"),
    // Shows only the `nodes:` line of a task.
    (
        "templates__index.md__snippet07",
        "needs the property action",
    ),
];

#[test]
fn every_snippet_parses_and_its_sections_load() {
    let mut checked = 0;
    for file in files("snippets") {
        let text = std::fs::read_to_string(&file).expect("read snippet");
        let name = file.to_string_lossy().into_owned();
        let (pb, diags) = load(&text, &file, Mode::Fragment);
        match INCOMPLETE_SNIPPETS.iter().find(|(n, _)| name.contains(n)) {
            Some((_, expected)) => {
                assert!(pb.is_none(), "{name} should not load");
                assert!(diags.to_string().contains(expected), "{name}: {diags}");
            }
            None => {
                assert!(pb.is_some(), "{name} should load: {diags}");
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 47);
}

fn snippet(name: &str) -> playbook::spec::Playbook {
    let file = corpus("snippets").join(format!(
        "choria-io__website__docs__content__playbooks__{name}.yaml"
    ));
    let text = std::fs::read_to_string(&file).expect("read snippet");
    let (pb, diags) = load(&text, &file, Mode::Fragment);
    pb.unwrap_or_else(|| panic!("{name}: {diags}"))
}

#[test]
fn snippet_contents_arrive_intact() {
    let hooks = snippet("tasks__index.md__snippet09");
    assert_eq!(hooks.hooks.get(HookList::OnFail).len(), 1);
    let merged = snippet("tips__index.md__snippet03");
    let on_success = merged.hooks.get(HookList::OnSuccess);
    assert_eq!(
        on_success[0].props["uri"],
        "https://hooks.example.net/webhook"
    );
    assert_eq!(on_success[0].props["headers"]["X-Acme-Token"], "TOKEN");
    let list = snippet("tasks__index.md__snippet08");
    assert_eq!(list.tasks[0].kind.name(), "graphite_event");
    let stores = snippet("data__index.md__snippet09");
    assert_eq!(stores.data_stores[0].kind.name(), "shell");
    let meta = snippet("templates__index.md__snippet05");
    assert_eq!(meta.metadata.on_fail, "fail");
}

#[test]
fn the_yaml_node_fixture_works_as_a_node_set() {
    let nodes = corpus("aux")
        .join("choria-legacy__mcollective-choria__spec__fixtures__playbooks__nodes.yaml");
    let nodes = nodes.to_string_lossy();
    Test::new()
        .playbook(&format!(
            "nodes:\n  uk:\n    type: yaml\n    source: {nodes}\n    group: uk\n    limit: 2\ntasks:\n  - shell:\n      command: 'echo nodes are {{{{{{ nodes.uk }}}}}}'\n"
        ))
        .args(&["run", "pb.yaml"])
        .stderr_has("nodes are node1.example.net, node2.example.net")
        .stderr_lacks("node3")
        .run();
    Test::new()
        .playbook(&format!(
            "nodes:\n  x:\n    type: yaml\n    source: {nodes}\n    group: empty_array\ntasks:\n  - shell:\n      command: 'true'\n"
        ))
        .args(&["run", "pb.yaml"])
        .status(1)
        .stdout_has("Data group empty_array is empty")
        .run();
}

#[test]
fn terraform_fixtures_through_a_terraform_binary() {
    let aux = corpus("aux");
    let list = aux
        .join("choria-legacy__mcollective-choria__spec__fixtures__playbooks__terraform_list.json");
    let string = aux.join(
        "choria-legacy__mcollective-choria__spec__fixtures__playbooks__terraform_string.json",
    );
    for (fixture, ok) in [(list, true), (string, false)] {
        let t = Test::new().script(
            "terraform",
            &format!(
                "#!/bin/sh\n[ \"$1 $2 $4\" = 'output -state -json' ] || exit 9\ncat {}\n",
                fixture.display()
            ),
        );
        let t = t.file("state.tfstate", "{}").playbook(
            "nodes:\n  dev:\n    type: terraform\n    statefile: state.tfstate\n    output: webservers\n    terraform: ./terraform\ntasks:\n  - shell:\n      command: 'echo got {{{ nodes.dev }}}'\n",
        );
        if ok {
            t.args(&["run", "pb.yaml"])
                .stderr_has(
                    "got ec2-52-57-66-150.eu-central-1.compute.amazonaws.com, ec2-52-57-74-75",
                )
                .run();
        } else {
            t.args(&["run", "pb.yaml"])
                .status(1)
                .stdout_has("Only terraform outputs of type list is supported")
                .run();
        }
    }
}

#[test]
fn the_file_data_fixture_backs_an_input() {
    let data = corpus("aux")
        .join("choria-legacy__mcollective-choria__spec__fixtures__playbooks__file_data.yaml");
    let t = Test::new();
    let copy = t.path().join("data.yaml");
    std::fs::copy(&data, &copy).expect("copy fixture");
    t.playbook(
        "data_stores:\n  f:\n    type: file\n    file: data.yaml\n    format: yaml\ninputs:\n  hello:\n    description: from file\n    type: String\n    data: f/hello\ntasks:\n  - shell:\n      command: 'echo hello is {{{ inputs.hello }}}'\n",
    )
    .args(&["run", "pb.yaml"])
    .stderr_has("hello is world")
    .run();
}
