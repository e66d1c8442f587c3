//! `on-failure`: "continue" goes on after a failing step; "rollback" (the
//! default) ends the flow with the failure reported, the later steps
//! skipped and every change rolled back; "stop" ends it and leaves the
//! changes, undoable later.

use crate::support::{Env, flow_head};
use stepback::exit;

fn flow(policy: &str) -> String {
    flow_head("policies", &["out"], &[])
        + &format!(
            r#"
[[steps]]
name = "first"
uses = "builtin:write-file"
mounts = ["out"]
with = {{ path = "/out/first", content = "1" }}

[[steps]]
name = "breaks"
uses = "builtin:fail"
on-failure = "{policy}"
with = {{ message = "the database is locked" }}

[[steps]]
name = "last"
uses = "builtin:write-file"
mounts = ["out"]
with = {{ path = "/out/last", content = "3" }}
"#
        )
}

#[test]
fn continue_goes_on_after_a_failing_step() {
    let env = Env::new();
    env.mkdir("out");
    let text = env.flow(flow("continue"));
    let run = env.stepback(&["--output", "json", "run", text.to_str().unwrap()]);
    run.expect_code(exit::SUCCESS);
    let expected = [
        ("first", "succeeded"),
        ("breaks", "failed-ignored"),
        ("last", "succeeded"),
    ]
    .map(|(s, t)| (s.to_owned(), t.to_owned()));
    assert_eq!(run.step_statuses(), expected);
    assert_eq!(run.events().last().unwrap()["status"], "succeeded");
    // As people read it.
    env.run_flow(&flow("continue"))
        .expect_code(exit::SUCCESS)
        .expect_stdout("the database is locked (ignored: on-failure = \"continue\")");
    assert!(env.path("out/first").is_file());
    assert!(env.path("out/last").is_file());
}

#[test]
fn rollback_ends_the_flow_reports_the_failure_and_rolls_back() {
    let env = Env::new();
    env.mkdir("out");
    let text = env.flow(flow("rollback"));
    let json = env.stepback(&["--output", "json", "run", text.to_str().unwrap()]);
    json.expect_code(exit::FLOW_FAILED);
    let expected = [("first", "succeeded"), ("breaks", "failed"), ("last", "skipped")]
        .map(|(s, t)| (s.to_owned(), t.to_owned()));
    assert_eq!(json.step_statuses(), expected);
    let finished = json
        .events()
        .into_iter()
        .find(|e| e["event"] == "step-finished" && e["status"] == "failed")
        .unwrap();
    assert!(
        finished["error"]
            .as_str()
            .unwrap()
            .contains("the database is locked")
    );
    let rolled = json
        .events()
        .into_iter()
        .find(|e| e["event"] == "rollback-finished")
        .unwrap();
    // One change: `first` created (its directory's listing goes with it).
    assert_eq!(rolled["undone"], 1);
    assert_eq!(rolled["problems"], serde_json::json!([]));
    assert!(
        env.path("out").read_dir().unwrap().next().is_none(),
        "rolled back"
    );
    assert_eq!(json.events().last().unwrap()["status"], "failed-rolled-back");
    // The same, as people read it.
    env.run_flow(&flow("rollback"))
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("FAILED")
        .expect_stdout("the database is locked")
        // The failed step's log is shown.
        .expect_stdout("| error: failing on purpose: the database is locked")
        .expect_stdout("skipped last")
        .expect_stdout("rolled back: 1 change undone")
        .expect_stdout("flow policies failed at step 'breaks'")
        .expect_stdout("rolled back: the machine is as before the run");
    assert!(
        !env.path("out/first").exists(),
        "the first step's file is rolled back"
    );
    assert!(!env.path("out/last").exists());
}

#[test]
fn rollback_is_the_default() {
    let env = Env::new();
    env.mkdir("out");
    let text = flow("rollback").replace("on-failure = \"rollback\"\n", "");
    assert!(!text.contains("on-failure"));
    env.run_flow(&text)
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("skipped last")
        .expect_stdout("rolled back: 1 change undone");
    assert!(!env.path("out/first").exists());
}

#[test]
fn stop_leaves_the_changes_and_undo_reverses_them_later() {
    let env = Env::new();
    env.mkdir("out");
    let run = env.run_flow(&flow("stop"));
    run.expect_code(exit::FAILED_NOT_ROLLED_BACK)
        .expect_stdout("skipped last")
        .expect_stdout("its changes were left in place (on-failure = \"stop\")");
    assert!(!run.stdout().contains("rolling back"), "{}", run.stdout());
    assert_eq!(std::fs::read_to_string(env.path("out/first")).unwrap(), "1");
    let id = run.run_id();
    env.stepback(&["undo", &id]).expect_code(exit::SUCCESS);
    assert!(!env.path("out/first").exists(), "undo reverses the stopped run");
}

#[test]
fn a_flow_without_rollback_stops_by_default() {
    let env = Env::new();
    env.mkdir("out");
    let text =
        flow("rollback").replace("on-failure = \"rollback\"\n", "") + "\n[rollback]\nenabled = false\n";
    env.run_flow(&text)
        .expect_code(exit::FAILED_NOT_ROLLED_BACK)
        .expect_stdout("left in place");
    assert!(env.path("out/first").exists());
    // Asking a step for the rollback the flow turned off is an error.
    env.run_flow(&(flow("rollback") + "\n[rollback]\nenabled = false\n"))
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("on-failure = \"rollback\", but the flow turns its rollback off");
}
