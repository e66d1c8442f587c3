//! Runs the built component in the real engine, alone against a temporary
//! directory, as a flow would run it: `stepback plugin test` builds it and
//! sets `$STEPBACK` (the engine) and `$STEPBACK_PLUGIN` (the component).

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

/// Runs the step on `dir` (granted as mount `target` at `/target`) with
/// `config`; returns the exit code, the run's `plugin-run` result and what
/// it printed.
fn plugin_run(dir: &Path, config: Value, extra: &[&str]) -> (i32, Value, String) {
    let stepback = std::env::var("STEPBACK").unwrap_or_else(|_| "stepback".into());
    let plugin = std::env::var("STEPBACK_PLUGIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/{{name}}.wasm").into());
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(&stepback)
        .env("STEPBACK_STATE_DIR", state.path())
        .args(["--output", "json", "plugin", "run", &plugin, "--with", &config.to_string()])
        .arg("--mount")
        .arg(format!("target={}:/target", dir.display()))
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("running {stepback} (set $STEPBACK or put it on PATH): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|value| value["kind"] == "plugin-run")
        .unwrap_or_else(|| panic!("no result in:\n{stdout}{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), result, stdout.into_owned())
}

#[test]
fn writes_the_file_and_journals_it() {
    let dir = tempfile::tempdir().unwrap();
    let (code, result, _) = plugin_run(dir.path(), json!({"path": "/target/hello.txt", "text": "hello"}), &[]);
    assert_eq!((code, result["outcome"].as_str()), (0, Some("succeeded")), "{result}");
    assert_eq!(std::fs::read_to_string(dir.path().join("hello.txt")).unwrap(), "hello");
    let change = &result["changes"][0];
    assert_eq!(change["path"], "hello.txt", "{result}");
    assert!(change["change"].as_str().unwrap().starts_with("created"), "{result}");
}

#[test]
fn a_rollback_leaves_the_directory_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"path": "/target/hello.txt", "text": "hello"});
    let (code, result, _) = plugin_run(dir.path(), config, &["--rollback"]);
    assert_eq!(code, 0, "{result}");
    assert!(result["rollback"]["undone"].as_u64().unwrap() >= 1, "{result}");
    assert!(!dir.path().join("hello.txt").exists());
}

#[test]
fn an_existing_file_fails_the_step_and_stays_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "before").unwrap();
    let config = json!({"path": "/target/hello.txt", "text": "hello"});
    let (code, result, printed) = plugin_run(dir.path(), config, &[]);
    assert_eq!((code, result["outcome"].as_str()), (1, Some("failed-rolled-back")), "{result}");
    assert!(printed.contains("already exists"), "{printed}");
    assert_eq!(std::fs::read_to_string(dir.path().join("hello.txt")).unwrap(), "before");
}
