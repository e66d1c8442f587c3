//! `stepback plugin inspect` shows a plugin's description, config schema
//! and WIT imports and exports.

use crate::support::{Env, guest};
use stepback::exit;

#[test]
fn inspect_shows_description_schema_and_interfaces() {
    let env = Env::new();
    env.stepback(&["plugin", "inspect", "builtin:deploy-files"])
        .expect_code(exit::SUCCESS)
        .expect_stdout("deploy-files 0.1.0 (builtin:deploy-files)")
        .expect_stdout("mount \"destination\": ReadWrite")
        .expect_stdout("\"sha256\"")
        .expect_stdout("stepback:plugin/host@0.1.1")
        .expect_stdout("wasi:filesystem/types@0.2")
        .expect_stdout("exports:\n  describe\n  run");
}

#[test]
fn inspect_as_json_is_machine_readable() {
    let env = Env::new();
    let run = env.stepback(&["--output", "json", "plugin", "inspect", &guest("misbehave")]);
    run.expect_code(exit::SUCCESS);
    let stdout = run.stdout();
    let value: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(value["info"]["name"], "misbehave");
    assert!(value["info"]["config_schema"].is_object());
    assert!(value["exports"].as_array().unwrap().iter().any(|e| e == "run"));
}

#[test]
fn inspecting_a_missing_plugin_fails_cleanly() {
    Env::new()
        .stepback(&["plugin", "inspect", "builtin:nope"])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("unknown plugin \"builtin:nope\"");
}
