//! Tied children and the emergency clean-up. A test binary of its own: the clean-up kills every
//! child the process registered, so it must not share a process with other tests' servers.

use std::process::Command;

use natsproc::process::{emergency_cleanup, is_alive, register_cleanup, spawn_tied};

#[test]
fn tied_children_start_and_the_emergency_clean_up_kills_them_and_removes_their_dirs() {
    let mut sleeper = Command::new("sleep");
    sleeper.arg("30");
    let mut child = spawn_tied(sleeper).unwrap();
    assert!(is_alive(child.id()));
    let dir = std::env::temp_dir().join(format!("natsproc-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    register_cleanup(child.id(), Some(dir.clone()));
    assert_eq!(emergency_cleanup(), 1);
    assert!(!dir.exists());
    let _ = child.wait();
    assert!(!is_alive(child.id()));
}
