//! The update-flow failure model: customized actions and their triggers,
//! the documented order (step actions newest step first, the revert, the
//! flow's rollback action), action failures, `revert = false`, the
//! failure context actions get, interruption, and a crash during an action.

use crate::support::*;
use stepback::exit;

/// An action appending `line` to `/log/actions.log`.
fn note(line: &str, trigger: &str) -> String {
    format!(
        "[[steps.actions]]\nname = \"{line}\"\n{trigger}uses = \"builtin:write-file\"\nmounts = [\"log\"]\nwith = {{ path = \"/log/actions.log\", content = \"{line}\\n\", append = true }}\n"
    )
}

/// A deployment: four steps (the last one, `check`, fails under
/// `policy`), actions on steps 2, 3 and 4, and a flow rollback action.
fn deployment(policy: &str, extra: &str) -> String {
    let any = "trigger = \"any-step\"\n";
    let this = "trigger = \"this-step\"\n";
    format!(
        r#"{head}
[[steps]]
name = "stop service"
uses = "builtin:write-file"
mounts = ["out"]
with = {{ path = "/out/one", content = "1" }}
{extra}
[[steps]]
name = "migrate"
uses = "builtin:write-file"
mounts = ["out"]
with = {{ path = "/out/two", content = "2" }}
{migrate_this}{migrate_any}
[[steps]]
name = "start"
uses = "builtin:write-file"
mounts = ["out"]
with = {{ path = "/out/three", content = "3" }}
{start_any}
[[steps]]
name = "check"
uses = "builtin:fail"
on-failure = "{policy}"
with = {{ message = "health check failed" }}
{check_this}
[rollback.action]
name = "start previous"
uses = "builtin:write-file"
mounts = ["log"]
with = {{ path = "/log/actions.log", content = "start previous\n", append = true }}
"#,
        head = flow_head("deploy", &["out", "log"], &[]),
        migrate_this = note("migrate:this", this),
        migrate_any = note("migrate:any", any),
        start_any = note("start:any", any),
        check_this = note("check:this", ""),
    )
}

fn actions_log(env: &Env) -> String {
    std::fs::read_to_string(env.path("log/actions.log")).unwrap_or_default()
}

/// The order of the rollback's events: action names and revert markers.
fn rollback_order(run: &Run) -> Vec<String> {
    run.events()
        .iter()
        .filter_map(|e| match e["event"].as_str()? {
            "action-started" => Some(e["action"].as_str()?.to_owned()),
            "rollback-started" => Some("(revert)".to_owned()),
            _ => None,
        })
        .collect()
}

fn run_json(env: &Env, flow: &str) -> Run {
    let path = env.flow(flow);
    env.stepback(&["--output", "json", "run", path.to_str().unwrap()])
}

#[test]
fn actions_run_newest_step_first_then_the_revert_then_the_flow_action() {
    let env = Env::new();
    env.mkdir("out");
    env.mkdir("log");
    let run = run_json(&env, &deployment("rollback", ""));
    run.expect_code(exit::FLOW_FAILED);
    assert_eq!(
        rollback_order(&run),
        [
            "check:this",
            "start:any",
            "migrate:any",
            "(revert)",
            "start previous"
        ],
        "migrate's this-step action does not run: migrate did not fail"
    );
    assert_eq!(run.events().last().unwrap()["status"], "failed-rolled-back");
    // Every step's change is reverted; the actions' are the rollback's own.
    assert!(env.path("out").read_dir().unwrap().next().is_none());
    assert_eq!(
        actions_log(&env),
        "check:this\nstart:any\nmigrate:any\nstart previous\n"
    );
    // Recorded: every action, the flow's after the revert, and the run
    // still ends rolled back.
    let events = run.events();
    let started = events.iter().find(|e| e["event"] == "flow-started").unwrap();
    let id = started["run_id"].as_str().unwrap().to_owned();
    let shown = env.stepback(&["show", &id]);
    shown
        .expect_code(exit::SUCCESS)
        .expect_stdout("rolled back (failed-rolled-back)")
        .expect_stdout("failed in step 'check' (on-failure = \"rollback\"):");
    let text = shown.stdout();
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing:\n{text}"))
    };
    assert!(at("action 'check:this'") < at("action 'migrate:any'"));
    assert!(at("action 'migrate:any'") < at("rollback: "));
    assert!(at("rollback: ") < at("action 'start previous'"));
    // And for programs: every action, in order, and how it ended.
    let json = env.stepback(&["--output", "json", "show", &id]);
    let result: serde_json::Value = serde_json::from_str(json.stdout().lines().last().unwrap()).unwrap();
    let ended: Vec<(String, serde_json::Value)> = result["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["action"].as_str().unwrap().to_owned(), a["error"].clone()))
        .collect();
    let names: Vec<&str> = ended.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["check:this", "start:any", "migrate:any", "start previous"]
    );
    assert!(ended.iter().all(|(_, e)| e.is_null()), "{ended:?}");
    env.stepback(&["show"]).expect_stdout("rolled back");
    env.stepback(&["recover"]).expect_code(exit::SUCCESS);
    // As people read it.
    let env = Env::new();
    env.mkdir("out");
    env.mkdir("log");
    env.run_flow(&deployment("rollback", ""))
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("  action  start:any (step 'start', any-step)")
        .expect_stdout("  action  start previous (the flow's rollback)")
        .expect_stdout("rolled back: the machine is as before the run");
}

#[test]
fn a_failure_under_continue_triggers_nothing() {
    let env = Env::new();
    env.mkdir("out");
    env.mkdir("log");
    let run = run_json(&env, &deployment("continue", ""));
    run.expect_code(exit::SUCCESS);
    assert_eq!(rollback_order(&run), Vec::<String>::new());
    assert_eq!(actions_log(&env), "");
    assert!(env.path("out/three").exists());
}

#[test]
fn stop_runs_the_actions_and_leaves_the_changes() {
    let env = Env::new();
    env.mkdir("out");
    env.mkdir("log");
    let run = run_json(&env, &deployment("stop", ""));
    run.expect_code(exit::FAILED_NOT_ROLLED_BACK);
    assert_eq!(rollback_order(&run), ["check:this", "start:any", "migrate:any"]);
    assert_eq!(run.events().last().unwrap()["status"], "failed-not-rolled-back");
    let started = run
        .events()
        .into_iter()
        .find(|e| e["event"] == "flow-started")
        .unwrap();
    env.stepback(&["show", started["run_id"].as_str().unwrap()])
        .expect_stdout("(failed-not-rolled-back)");
    assert!(env.path("out/one").exists() && env.path("out/three").exists());
}

#[test]
fn a_failing_action_leaves_the_rollback_incomplete_and_the_rest_runs() {
    let env = Env::new();
    env.mkdir("out");
    env.mkdir("log");
    let flow = deployment("rollback", "").replacen(
        "name = \"start:any\"\ntrigger = \"any-step\"\nuses = \"builtin:write-file\"",
        "name = \"start:any\"\ntrigger = \"any-step\"\nuses = \"builtin:fail\"",
        1,
    );
    let flow = flow.replacen(
        "with = { path = \"/log/actions.log\", content = \"start:any\\n\", append = true }",
        "with = { message = \"cannot stop the new service\" }",
        1,
    );
    let run = run_json(&env, &flow);
    run.expect_code(exit::ROLLBACK_INCOMPLETE);
    assert_eq!(
        rollback_order(&run),
        [
            "check:this",
            "start:any",
            "migrate:any",
            "(revert)",
            "start previous"
        ]
    );
    assert_eq!(
        run.events().last().unwrap()["status"],
        "failed-rollback-incomplete"
    );
    let failed = run
        .events()
        .into_iter()
        .find(|e| e["event"] == "action-finished" && e["status"] == "failed")
        .unwrap();
    assert_eq!(failed["action"], "start:any");
    assert!(
        env.path("out").read_dir().unwrap().next().is_none(),
        "the revert still ran"
    );
    assert_eq!(actions_log(&env), "check:this\nmigrate:any\nstart previous\n");
    // Shown, and recorded for `show`.
    let env = Env::new();
    env.mkdir("out");
    env.mkdir("log");
    let run = env.run_flow(&flow);
    run.expect_code(exit::ROLLBACK_INCOMPLETE)
        .expect_stdout("FAILED in")
        .expect_stdout("cannot stop the new service")
        .expect_stdout("ROLLBACK INCOMPLETE");
    let id = run.run_id();
    env.stepback(&["show", &id])
        .expect_code(exit::SUCCESS)
        .expect_stdout("action 'start:any' (the rollback's own changes, not reverted):")
        .expect_stdout("ACTION FAILED: cannot stop the new service")
        .expect_stdout("(failed-rollback-incomplete)");
}

#[test]
fn a_step_with_revert_off_keeps_its_changes() {
    let env = Env::new();
    env.mkdir("out");
    env.mkdir("log");
    let flow = deployment("rollback", "revert = false\n");
    run_json(&env, &flow).expect_code(exit::FLOW_FAILED);
    assert_eq!(std::fs::read_to_string(env.path("out/one")).unwrap(), "1");
    assert!(!env.path("out/two").exists() && !env.path("out/three").exists());
}

/// A flow whose step `deploy` writes `/out/release` and has an any-step
/// action running `action` with `sh` in `/log`; `then` is the step after.
fn deploy_with_action(flow: &str, action: &str, then: &str) -> String {
    format!(
        r#"{}
[[steps]]
name = "deploy"
uses = "builtin:write-file"
mounts = ["out"]
with = {{ path = "/out/release", content = "2" }}
[[steps.actions]]
trigger = "any-step"
uses = "builtin:run-command"
mounts = ["log"]
exec = ["sh"]
with = {{ program = "sh", args = ["-c", '{action}'] }}
[[steps]]
{then}
"#,
        flow_head(flow, &["out", "log"], &[])
    )
}

#[test]
fn actions_are_told_what_failed_and_can_run_commands() {
    let env = Env::new();
    env.mkdir("out");
    env.mkdir("log");
    let flow = deploy_with_action(
        "context",
        r#"echo "$STEPBACK_FAILED_STEP|$STEPBACK_ERROR|$STEPBACK_TRIGGER" > context.txt"#,
        "name = \"health\"\nuses = \"builtin:fail\"\nwith = { message = \"no answer on :8080\" }",
    );
    env.run_flow(&flow).expect_code(exit::FLOW_FAILED);
    assert_eq!(
        std::fs::read_to_string(env.path("log/context.txt")).unwrap(),
        "health|no answer on :8080|any-step\n"
    );
    assert!(!env.path("out/release").exists());
}

/// The action and the second step both sleep (`sleep N` marks each).
fn sleeping_flow(step_sleep: &str, action_sleep: &str) -> String {
    deploy_with_action(
        "sleepy",
        &format!("echo action > action.txt; sleep {action_sleep}"),
        &format!(
            "name = \"migrate\"\nuses = \"builtin:run-command\"\nmounts = [\"out\"]\nexec = [\"sh\"]\nwith = {{ program = \"sh\", args = [\"-c\", \"echo half > half; sleep {step_sleep}\"] }}"
        ),
    )
}

fn signal(child: &std::process::Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

#[test]
fn ctrl_c_during_a_command_rolls_back_and_a_second_says_what_a_third_would_do() {
    let env = Env::new();
    env.write("out/release", "1");
    env.mkdir("log");
    fix_times(&env.path("out"));
    let before = snapshot_full(&env.path("out"));
    let flow = env.flow(sleeping_flow("6101", "2"));
    let child = env
        .command(&["run", flow.to_str().unwrap()], &shared_cache())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the step's command", || !processes_with("sleep 6101").is_empty());
    signal(&child, rustix::process::Signal::INT);
    // The action (sleeping 2 s) runs during the rollback.
    wait_until("the action's command", || !processes_with("sleep 2").is_empty());
    assert_gone("sleep 6101");
    signal(&child, rustix::process::Signal::INT);
    let run = Run(child.wait_with_output().unwrap());
    run.expect_code(exit::INTERRUPTED)
        .expect_stderr("interrupted: stopping the running step")
        .expect_stderr("two more interrupts stop the engine at once")
        .expect_stderr("one more interrupt stops the engine at once, leaving the rest to `stepback recover`")
        .expect_stdout("flow sleepy interrupted in step 'migrate'")
        .expect_stdout("rolled back");
    assert_same_full(
        &before,
        &snapshot_full(&env.path("out")),
        "after the interrupted run",
    );
    assert_eq!(
        std::fs::read_to_string(env.path("log/action.txt")).unwrap(),
        "action\n"
    );
    env.stepback(&["show", &run.run_id()])
        .expect_stdout("(interrupted-rolled-back)")
        .expect_stdout("interrupted in step 'migrate'");
}

#[test]
fn a_kill_during_an_action_is_recovered() {
    let env = Env::new();
    env.write("out/release", "1");
    env.mkdir("log");
    fix_times(&env.path("out"));
    let before = snapshot_full(&env.path("out"));
    let flow = env.flow(sleeping_flow("0", "6202").replace("sleep 0\"", "sleep 0; exit 3\""));
    let mut child = env.spawn_until_running(&flow, "sleep 6202");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_gone("sleep 6202");
    // The action was cut short: `recover` reverts the run, and says so
    // (it runs no actions).
    env.stepback(&["recover"])
        .expect_code(exit::ROLLBACK_INCOMPLETE)
        .expect_stdout("rolled back")
        .expect_stdout(
            "ACTION NOT RUN 'deploy: action 1 (on any failure)': did not finish: the engine stopped while it ran",
        );
    assert_same_full(&before, &snapshot_full(&env.path("out")), "after recover");
}

/// Found by a hostile review: a run whose failure says "stop" (keep the
/// changes), killed during its action, was rolled back by `recover`; and
/// an action that had failed before the kill went unmentioned.
#[test]
fn recover_keeps_a_stopped_runs_changes_and_names_its_failed_actions() {
    let env = Env::new();
    env.mkdir("out");
    env.mkdir("log");
    let flow = format!(
        r#"{}
[[steps]]
name = "deploy"
uses = "builtin:write-file"
mounts = ["out"]
with = {{ path = "/out/release", content = "2" }}
[[steps]]
name = "check"
uses = "builtin:fail"
on-failure = "stop"
[[steps.actions]]
name = "first"
trigger = "this-step"
uses = "builtin:run-command"
mounts = ["log"]
exec = ["sh"]
with = {{ program = "sh", args = ["-c", "exit 3"] }}
[[steps.actions]]
name = "second"
trigger = "this-step"
uses = "builtin:run-command"
mounts = ["log"]
exec = ["sh"]
with = {{ program = "sh", args = ["-c", "sleep 6401"] }}
"#,
        flow_head("stopped", &["out", "log"], &[])
    );
    let flow = env.flow(flow);
    let mut child = env.spawn_until_running(&flow, "sleep 6401");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_gone("sleep 6401");
    env.stepback(&["recover"])
        .expect_code(exit::ROLLBACK_INCOMPLETE)
        .expect_stdout("kept, as its failure said (on-failure = \"stop\")")
        .expect_stdout("ACTION FAILED 'first': failed: ")
        .expect_stdout("ACTION NOT RUN 'second': did not finish");
    assert_eq!(env.read("out/release"), "2");
    // An action failed: the outcome says it needs attention, as the run
    // itself and `recover` (exit 4) do, though nothing was rolled back.
    env.stepback(&["show"])
        .expect_stdout("failed-rollback-incomplete");
    env.stepback(&["undo", "last"]).expect_code(exit::SUCCESS);
    assert!(!env.path("out/release").exists());
}

/// Found by a review: a failed run without a journal said "rolled back:
/// the machine is as before the run" (exit 1) while its changes stayed.
#[test]
fn a_failed_run_without_a_journal_says_its_changes_stay() {
    let env = Env::new();
    env.mkdir("m");
    let flow = flow_head("unjournaled", &["m"], &[])
        + "[[steps]]\nname = \"write\"\nuses = \"builtin:write-file\"\nmounts = [\"m\"]\nwith = { path = \"/m/a.txt\", content = \"x\" }\n[[steps]]\nname = \"boom\"\nuses = \"builtin:fail\"\n";
    let flow = env.flow(flow);
    let flow = flow.to_str().unwrap();
    let run = env.stepback(&["run", "--no-journal", flow]);
    run.expect_code(exit::FAILED_NOT_ROLLED_BACK)
        .expect_stdout("NOT ROLLED BACK: the run kept no journal");
    assert!(!run.stdout().contains("as before the run"), "{}", run.stdout());
    assert_eq!(env.read("m/a.txt"), "x");
    let json = env.stepback(&["--output", "json", "run", "--no-journal", flow]);
    let finished = json.events().pop().unwrap();
    assert_eq!(
        (finished["status"].as_str(), finished["journaled"].as_bool()),
        (Some("failed-not-rolled-back"), Some(false)),
        "{finished}"
    );
    // With the journal, the same flow rolls back, and says so.
    std::fs::remove_file(env.path("m/a.txt")).unwrap();
    env.stepback(&["run", flow])
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("the machine is as before the run");
    assert!(!env.path("m/a.txt").exists());
}

/// Reviewer's F9: the mount was moved away while a step ran. The
/// rollback cannot restore it (it is not where the run pinned it) and
/// says so; the flow's rollback action then ran unjournaled on whatever
/// was at the path (its changes could be neither rolled back nor
/// recovered, and a kill during it left `recover` nothing to say). It does
/// not run now: it is reported failed, with why, and nothing is made for
/// it. With the mount back in place, `undo` finishes the rollback.
#[test]
fn the_flows_rollback_action_does_not_run_where_it_cannot_be_journaled() {
    for crash in [false, true] {
        let env = Env::new();
        env.mkdir("m");
        let flow = format!(
            "{}[[steps]]\nname = \"start\"\nuses = \"builtin:write-file\"\nmounts = [\"m\"]\nwith = {{ path = \"/m/started\", content = \"x\" }}\n[[steps]]\nname = \"nap\"\nuses = \"{}\"\nwith = {{ mode = \"sleep\", seconds = 2 }}\n[[steps]]\nname = \"boom\"\nuses = \"builtin:fail\"\n[rollback.action]\nname = \"start previous\"\nuses = \"builtin:write-file\"\nmounts = [\"m\"]\nwith = {{ path = \"/m/previous\", content = \"y\" }}\n",
            flow_head("moved", &["m"], &[]),
            guest("misbehave")
        );
        let flow = env.flow(flow);
        let child = env.spawn_until_started(flow.to_str().unwrap());
        std::fs::rename(env.path("m"), env.path("moved")).unwrap();
        let run = Run(child.wait_with_output().unwrap());
        run.expect_code(exit::ROLLBACK_INCOMPLETE)
            .expect_stdout("cannot open the mount")
            .expect_stdout("FAILED in 0ms  not run: the run's mounts cannot be opened again to journal it");
        assert!(!env.path("moved/previous").exists() && !env.path("m").exists());
        env.stepback(&["show", "last"])
            .expect_stdout("not run: the run's mounts cannot be opened again to journal it");
        // The mount back in place, `undo` finishes the rollback, once.
        std::fs::rename(env.path("moved"), env.path("m")).unwrap();
        if crash {
            // A crash of the retry is finished by `recover`, as any
            // rollback's; it names the flow's action, which never ran.
            let crashed = env.stepback_env(&["undo", "last"], &[("STEPBACK_FAULT", "crash-before-undo:1")]);
            assert!(crashed.killed(), "the fault did not stop the retry");
            env.stepback(&["recover"])
                .expect_code(exit::ROLLBACK_INCOMPLETE)
                .expect_stdout("rolled back (1 change undone)")
                .expect_stdout("'start previous': failed: not run: the run's mounts cannot be opened again");
        } else {
            env.stepback(&["undo", "last"])
                .expect_code(exit::SUCCESS)
                .expect_stdout("1 change reversed");
        }
        assert!(
            !env.path("m/started").exists(),
            "the retried rollback did not undo the step"
        );
        env.stepback(&["undo", "last"])
            .expect_code(exit::UNDO_REFUSED)
            .expect_stderr("was already rolled back");
    }
}
