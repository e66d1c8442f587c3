//! `stepback plugin run`: one step alone, journaled like a flow's, with
//! its log and changes printed, `--rollback` reversing them, and the same
//! validation (and JSON) as a flow.

use crate::fsops::{Op, script};
use crate::support::{Env, assert_same_full, guest, snapshot_full};
use stepback::exit;

fn write_file(path: &str) -> String {
    serde_json::json!({"path": path, "content": "hello\n"}).to_string()
}

#[test]
fn a_step_alone_runs_prints_its_log_and_changes_and_is_recorded() {
    let env = Env::new();
    env.mkdir("app");
    let run = env.stepback(&[
        "plugin",
        "run",
        "builtin:write-file",
        "--with",
        &write_file("/srv/hello.txt"),
        "--mount",
        "app=./app:/srv",
    ]);
    run.expect_code(exit::SUCCESS)
        .expect_stdout("wrote 6 bytes to /srv/hello.txt")
        .expect_stdout("created (6 bytes)")
        .expect_stdout("app:/hello.txt");
    assert_eq!(env.read("app/hello.txt"), "hello\n");
    // A run like any other: `show` has it, and `undo` reverses it.
    env.stepback(&["show"]).expect_stdout("plugin-run");
    env.stepback(&["undo", "last"]).expect_code(exit::SUCCESS);
    assert!(!env.path("app/hello.txt").exists());
}

#[test]
fn rollback_reverses_every_change_of_the_step() {
    let env = Env::new();
    env.write("app/old.txt", "before\n");
    env.write("with.json", write_file("/app/old.txt"));
    let before = snapshot_full(&env.path("app"));
    env.stepback(&[
        "plugin",
        "run",
        "builtin:write-file",
        "--with",
        "@with.json",
        "--mount",
        "app=./app",
        "--rollback",
    ])
    .expect_code(exit::SUCCESS)
    .expect_stdout("replaced")
    .expect_stdout("rollback: ");
    assert_same_full(
        &before,
        &snapshot_full(&env.path("app")),
        "after plugin run --rollback",
    );
    env.stepback(&["show"]).expect_stdout("undone");
}

#[test]
fn a_failing_step_is_rolled_back_and_says_why() {
    let env = Env::new();
    env.write("m/keep.txt", "kept\n");
    let before = snapshot_full(&env.path("m"));
    let ops = script(&[
        Op::open(0, "new.txt", &["create"], &["write"]),
        Op::write(1, 0, 100, b'x'),
        Op::unlink(0, "keep.txt"),
    ]);
    let with = serde_json::json!({"ops": ops, "fail": true}).to_string();
    env.stepback(&[
        "plugin",
        "run",
        &guest("fsops"),
        "--with",
        &with,
        "--mount",
        "m=./m:/m",
    ])
    .expect_code(exit::FLOW_FAILED)
    .expect_stdout("rollback");
    assert_same_full(
        &before,
        &snapshot_full(&env.path("m")),
        "after a failing plugin run",
    );
}

#[test]
fn a_command_runs_under_the_exec_grant_and_only_under_it() {
    let env = Env::new();
    env.mkdir("out");
    let with = serde_json::json!({"program": "sh", "args": ["-c", "echo made > made.txt"]}).to_string();
    let args = [
        "plugin",
        "run",
        "builtin:run-command",
        "--with",
        &with,
        "--mount",
        "out=./out",
    ];
    // Without the grant, refused before anything runs.
    env.stepback(&args)
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("sh");
    assert!(!env.path("out/made.txt").exists());
    let granted: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--exec", "sh", "--rollback"])
        .collect();
    env.stepback(&granted)
        .expect_code(exit::SUCCESS)
        .expect_stdout("made.txt");
    assert!(
        !env.path("out/made.txt").exists(),
        "--rollback removed what the command made"
    );
}

#[test]
fn a_config_the_plugin_does_not_take_is_refused_at_its_key() {
    let env = Env::new();
    env.mkdir("app");
    let with = r#"{"path": "/app/x", "contnt": "y"}"#;
    env.stepback(&[
        "plugin",
        "run",
        "builtin:write-file",
        "--with",
        with,
        "--mount",
        "app=./app",
    ])
    .expect_code(exit::INVALID_INPUT)
    .expect_stderr("steps[0].with.contnt")
    .expect_stderr("did you mean `content`?")
    .expect_stderr("--with");
    env.stepback(&["show"]).expect_stdout("no runs recorded");
    for (bad, says) in [
        ("[1]", "--with: expected a JSON object"),
        ("{x", "--with: not JSON"),
        ("@missing.json", "--with: cannot read missing.json"),
    ] {
        env.stepback(&["plugin", "run", "builtin:write-file", "--with", bad])
            .expect_code(exit::INVALID_INPUT)
            .expect_stderr(says);
    }
    env.stepback(&["plugin", "run", "builtin:write-file", "--mount", "app"])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("NAME=HOST:GUEST");
}

#[test]
fn a_read_only_mount_is_read_only() {
    let env = Env::new();
    env.mkdir("app");
    env.stepback(&[
        "plugin",
        "run",
        "builtin:write-file",
        "--with",
        &write_file("/app/x"),
        "--mount",
        "app=./app:/app:ro",
    ])
    .expect_code(exit::INVALID_INPUT)
    .expect_stderr("read-write");
    assert!(!env.path("app/x").exists());
}

#[test]
fn json_output_has_the_events_then_the_result() {
    let env = Env::new();
    env.mkdir("app");
    let run = env.stepback(&[
        "--output",
        "json",
        "plugin",
        "run",
        "builtin:write-file",
        "--with",
        &write_file("/app/x"),
        "--mount",
        "app=./app",
        "--rollback",
    ]);
    run.expect_code(exit::SUCCESS);
    let stdout = run.stdout();
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "step-finished" && l["status"] == "succeeded")
    );
    let result = lines.last().unwrap();
    assert_eq!(result["kind"], "plugin-run");
    assert_eq!(result["outcome"], "undone");
    assert_eq!(result["changes"][0]["path"], "x");
    assert_eq!(result["changes"][0]["change"], "created (6 bytes)");
    assert!(result["rollback"]["undone"].as_u64().unwrap() >= 1);
    assert!(!env.path("app/x").exists());
}
