//! The workspace's layout rules (STYLE.md), checked from `cargo metadata`: testkit depends on
//! no program it tests, nothing depends on a binary-only crate, and the emulator holds no
//! measuring, scraping, HTML or node-daemon code. (The live page it serves at `/` is
//! `measure::live`, kept with the other pages in `measure`; the emulator only routes to it.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Each workspace package with its normal (not dev) dependencies on other workspace packages,
/// and whether it has a library target.
fn packages() -> BTreeMap<String, (BTreeSet<String>, bool)> {
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let members: BTreeSet<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .filter(|d| members.contains(d))
                .collect();
            let has_lib = p["targets"].as_array().unwrap().iter().any(|t| {
                t["kind"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k == "lib" || k == "rlib")
            });
            (p["name"].as_str().unwrap().to_owned(), (deps, has_lib))
        })
        .collect()
}

#[test]
fn testkit_depends_on_no_program_and_nothing_on_a_binary_only_crate() {
    let packages = packages();
    let (testkit, _) = &packages["testkit"];
    for program in ["emulator", "measure", "node", "playbook", "bench"] {
        assert!(!testkit.contains(program), "testkit depends on {program}");
    }
    for (name, (deps, _)) in &packages {
        for dep in deps {
            let (_, dep_has_lib) = &packages[dep];
            assert!(
                *dep_has_lib,
                "{name} depends on the binary-only crate {dep}"
            );
            assert!(
                !["node", "bench", "e2e"].contains(&dep.as_str()),
                "{name} depends on {dep}, which nothing may depend on"
            );
        }
    }
}

#[test]
fn the_emulator_crate_holds_no_measuring_scraping_html_or_node_code() {
    let src = workspace().join("emulator/src");
    let mut files = Vec::new();
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for banned in ["measure", "scrape", "report", "node", "html", "plot"] {
            assert!(!name.contains(banned), "emulator/src holds {name}");
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for banned in ["plotters", "<html", "hdrhistogram", "indicatif"] {
            assert!(!text.contains(banned), "{} uses {banned}", file.display());
        }
    }
}
