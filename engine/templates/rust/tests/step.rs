//! Runs the built component in the real engine, alone against a temporary
//! directory, as a flow would run it (`stepback-test`). `stepback plugin
//! test` builds it first; a plain `cargo test` builds it with `stepback
//! plugin build`.

use serde_json::json;
use stepback_test::{Outcome, Step};

/// The step with `config`, granted `dir` as mount `target` at `/target`.
fn step(dir: &tempfile::TempDir, config: serde_json::Value) -> Step {
    Step::built().with(config).mount("target", dir.path(), "/target")
}

#[test]
fn writes_the_file_and_journals_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = step(&dir, json!({"path": "/target/hello.txt", "text": "hello"}))
        .run()
        .unwrap();
    assert_eq!(run.outcome, Outcome::Succeeded, "{run}");
    assert_eq!(std::fs::read_to_string(dir.path().join("hello.txt")).unwrap(), "hello");
    assert_eq!(run.changes[0].path, "hello.txt", "{run}");
    assert!(run.changes[0].change.starts_with("created"), "{run}");
}

#[test]
fn a_rollback_leaves_the_directory_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let run = step(&dir, json!({"path": "/target/hello.txt", "text": "hello"}))
        .rollback()
        .run()
        .unwrap();
    assert_eq!(run.outcome, Outcome::Undone, "{run}");
    assert!(run.rollback.unwrap().undone >= 1);
    assert!(!dir.path().join("hello.txt").exists());
}

#[test]
fn an_existing_file_fails_the_step_and_stays_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "before").unwrap();
    let run = step(&dir, json!({"path": "/target/hello.txt", "text": "hello"}))
        .run()
        .unwrap();
    assert_eq!(run.outcome, Outcome::FailedRolledBack, "{run}");
    assert!(run.error.as_deref().unwrap_or_default().contains("already exists"), "{run}");
    assert_eq!(std::fs::read_to_string(dir.path().join("hello.txt")).unwrap(), "before");
}
