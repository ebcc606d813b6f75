//! The binary's command line: usage errors, exit codes and the empty journal.
//!
//! (Having an integration test also makes `cargo test --workspace` build the `hk8s` binary,
//! which the end-to-end suite in `tests/` drives.)

use std::process::Command;

fn hk8s(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hk8s"))
        .args(args)
        .env("HK8S_HOME", home)
        .env_remove("HK8S_JOURNAL")
        .env_remove("HCLOUD_TOKEN")
        .env_remove("HCLOUD_ENDPOINT")
        .output()
        .expect("run hk8s")
}

#[test]
fn help_lists_the_commands_and_exit_codes() {
    let home = tempfile::tempdir().unwrap();
    let out = hk8s(home.path(), &["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["run", "resume", "history", "sandbox", "130 interrupted"] {
        assert!(text.contains(word), "help lacks {word:?}: {text}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let home = tempfile::tempdir().unwrap();
    let out = hk8s(home.path(), &["run", "create-cluster"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config FILE is required"));
    let out = hk8s(home.path(), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = hk8s(home.path(), &["resume", "0000"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn empty_history() {
    let home = tempfile::tempdir().unwrap();
    let out = hk8s(home.path(), &["history"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no runs");
    let out = hk8s(home.path(), &["-o", "json", "history"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    assert!(
        home.path().join("journal.db").exists(),
        "the journal lives in HK8S_HOME"
    );
}
