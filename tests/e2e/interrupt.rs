//! Ctrl-C or SIGTERM during a run: the running step stops, and the flow
//! rolls back as if it had failed.

use crate::fsops::{Op, script};
use crate::support::*;
use std::time::Duration;
use stepback::exit;

fn interrupted_with(signal: rustix::process::Signal) {
    let env = Env::new();
    env.write("m/config.txt", "v1");
    let flow = serde_json::json!({
        "name": "interrupt",
        "mounts": [{"name": "m", "host": "m", "guest": "/m", "access": "read-write"}],
        "steps": [
            {"name": "deploy", "uses": guest("fsops"), "mounts": ["m"], "with": {"ops": script(&[
                Op::open(0, "config.txt", &["truncate"], &["write"]),
                Op::write(1, 0, 3, 110),
                Op::mkdir(0, "started"),
            ])}},
            {"name": "spin", "uses": guest("misbehave"), "with": {"mode": "spin"}},
            {"name": "after", "uses": "builtin:fail"},
        ],
    });
    env.write("flow.json", serde_json::to_string_pretty(&flow).unwrap());
    fix_times(&env.path("m"));
    let before = snapshot_full(&env.path("m"));
    let child = env.spawn_until_started("flow.json");
    // Into the spinning step.
    std::thread::sleep(Duration::from_millis(300));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
    let run = Run(child.wait_with_output().unwrap());
    run.expect_code(code_of(signal))
        .expect_stderr("interrupted: stopping the running step")
        .expect_stdout("step 'spin' was stopped: the run was cancelled")
        .expect_stdout("skipped after")
        .expect_stdout("every path restored")
        .expect_stdout("flow interrupt interrupted in step 'spin'");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the rollback");
}

/// 128 + the signal: as shells and service managers expect.
fn code_of(signal: rustix::process::Signal) -> u8 {
    match signal {
        rustix::process::Signal::TERM => exit::TERMINATED,
        _ => exit::INTERRUPTED,
    }
}

#[test]
fn ctrl_c_stops_the_step_and_rolls_back() {
    interrupted_with(rustix::process::Signal::INT);
}

#[test]
fn sigterm_does_the_same() {
    interrupted_with(rustix::process::Signal::TERM);
}

/// README's `examples/deploy-service`, with 1.4.2 deployed and running,
/// `edit` applied to its flow (a `sleep` where a phase should take long
/// enough to be interrupted).
fn deploy_service(edit: impl Fn(&str) -> String) -> Env {
    let env = Env::new();
    crate::support::deploy_service(&env, edit);
    env
}

/// What the example's machine holds: the app's files, the service's
/// state, the database.
fn machine(
    env: &Env,
) -> (
    std::collections::BTreeMap<std::path::PathBuf, Node>,
    String,
    String,
) {
    (
        snapshot(&env.path("deploy-service/app")),
        env.read("deploy-service/services/webapp"),
        env.read("deploy-service/db/data.db"),
    )
}

/// Starts the example's 1.4.3 (`healthy`: whether its check passes) and
/// waits until `sleep` runs.
fn start_1_4_3(env: &Env, healthy: &str, sleep: &str) -> std::process::Child {
    let child = env
        .command(
            &[
                "run",
                "deploy-service/flow.toml",
                "--param",
                "release=1.4.3",
                "--param",
                &format!("healthy={healthy}"),
            ],
            &shared_cache(),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(sleep, || !processes_with(sleep).is_empty());
    child
}

fn send(child: &std::process::Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

/// Found by an operator trying README's example: Ctrl-C during the health
/// check left the interrupted command's scratch directory behind, the
/// action "stop new service" reused its name and failed ("overlay ...
/// Invalid argument"), and the run ended incomplete.
fn interrupted_in_the_health_check(signal: rustix::process::Signal) {
    // The check of 1.4.3 only takes long.
    let slow = "inline = \"[ ${release} = 1.4.2 ] || sleep 6301; test";
    let env = deploy_service(|flow| flow.replace("inline = \"test", slow));
    let running = machine(&env);
    assert_eq!(running.1, "running 1.4.2\n");
    let child = start_1_4_3(&env, "yes", "sleep 6301");
    send(&child, signal);
    let run = Run(child.wait_with_output().unwrap());
    run.expect_code(code_of(signal))
        .expect_stderr("interrupted: stopping the running step")
        .expect_stdout("action  stop new service")
        .expect_stdout("action  restore the database")
        .expect_stdout("action  start previous version")
        .expect_stdout("every path restored")
        .expect_stdout("flow deploy-service interrupted in step 'health check'");
    assert_gone("sleep 6301");
    assert_eq!(machine(&env), running, "1.4.2 runs again, as it was");
    env.stepback(&["show", &run.run_id()])
        .expect_stdout("(interrupted-rolled-back)");
    // Nothing is left for `recover`, and the next run has a clean slate.
    env.stepback(&["recover"])
        .expect_code(exit::SUCCESS)
        .expect_stdout("nothing to recover");
}

#[test]
fn ctrl_c_in_the_examples_health_check_rolls_back_and_restarts_the_previous_release() {
    interrupted_in_the_health_check(rustix::process::Signal::INT);
}

#[test]
fn sigterm_in_the_examples_health_check_does_the_same() {
    interrupted_in_the_health_check(rustix::process::Signal::TERM);
}

/// Three interrupts while `sleep` runs in an action of the failing 1.4.3
/// (its check fails): the engine stops there; `recover` reverts the files
/// and names every action that did not run or finish, exit 4.
fn stopped_in_an_action(edit: impl Fn(&str) -> String, sleep: &str) -> (Env, Run, Run) {
    let env = deploy_service(edit);
    let child = start_1_4_3(&env, "no", sleep);
    for _ in 0..3 {
        send(&child, rustix::process::Signal::INT);
        std::thread::sleep(Duration::from_millis(200));
    }
    let run = Run(child.wait_with_output().unwrap());
    run.expect_code(exit::INTERRUPTED)
        .expect_stderr("interrupted again: the rollback goes on")
        .expect_stderr("stopping now: run `stepback recover` to finish the rollback");
    assert_gone(sleep);
    let recovered = env.stepback(&["recover"]);
    recovered
        .expect_code(exit::ROLLBACK_INCOMPLETE)
        .expect_stdout("rolled back");
    (env, run, recovered)
}

#[test]
fn an_engine_stopped_in_the_flows_rollback_action_leaves_recover_to_name_it() {
    let edit = |flow: &str| flow.replace("inline = \"previous=", "inline = \"sleep 6302; previous=");
    let (env, run, recovered) = stopped_in_an_action(edit, "sleep 6302");
    recovered.expect_stdout(
        "ACTION NOT RUN 'start previous version': did not finish: the engine stopped while it ran",
    );
    assert!(
        !recovered.stdout().contains("'stop new service'"),
        "{}",
        recovered.stdout()
    );
    // The files are as before 1.4.3; the database was restored by its action.
    assert_eq!(
        std::fs::read_link(env.path("deploy-service/app/current")).unwrap(),
        std::path::Path::new("releases/1.4.2")
    );
    assert!(!env.path("deploy-service/app/releases/1.4.3").exists());
    assert_eq!(env.read("deploy-service/db/data.db"), "schema for 1.4.2\n");
    env.stepback(&["show", &run.run_id()])
        .expect_stdout("(failed-rollback-incomplete)")
        .expect_stdout("action 'start previous version' (the rollback's own")
        .expect_stdout("  ACTION FAILED: did not finish: the engine stopped while it ran");
}

#[test]
fn an_engine_stopped_in_a_steps_action_leaves_recover_to_name_every_action_left() {
    let edit = |flow: &str| {
        flow.replace(
            "\"echo stopped > webapp\"] }\n\n[[steps]]\nname = \"health check\"",
            "\"sleep 6303; echo stopped > webapp\"] }\n\n[[steps]]\nname = \"health check\"",
        )
    };
    let (env, run, recovered) = stopped_in_an_action(edit, "sleep 6303");
    recovered
        .expect_stdout("ACTION NOT RUN 'stop new service': did not finish: the engine stopped while it ran")
        .expect_stdout("ACTION NOT RUN 'restore the database': did not run: the engine stopped before it")
        .expect_stdout("ACTION NOT RUN 'start previous version': did not run: the engine stopped before it");
    assert_eq!(
        std::fs::read_link(env.path("deploy-service/app/current")).unwrap(),
        std::path::Path::new("releases/1.4.2")
    );
    // What no action put back is as the interrupted run left it.
    assert_eq!(
        env.read("deploy-service/db/data.db"),
        "schema for 1.4.2\nschema for 1.4.3\n"
    );
    assert_eq!(env.read("deploy-service/services/webapp"), "running 1.4.3\n");
    env.stepback(&["show", &run.run_id()])
        .expect_stdout("(failed-rollback-incomplete)")
        .expect_stdout("ACTION 'restore the database' FAILED: did not run: the engine stopped before it")
        .expect_stdout("ACTION 'start previous version' FAILED: did not run");
}

/// Killed during the health check, before any failure was recorded: the
/// journal's step record says what an interrupt there runs, and `recover`
/// names each of those actions as not run, exit 4 (it reverts the files,
/// and runs no actions).
#[test]
fn an_engine_killed_in_a_step_leaves_recover_to_name_the_actions_its_failure_runs() {
    let slow = "inline = \"[ ${release} = 1.4.2 ] || sleep 6304; test";
    let env = deploy_service(|flow| flow.replace("inline = \"test", slow));
    let child = start_1_4_3(&env, "yes", "sleep 6304");
    send(&child, rustix::process::Signal::KILL);
    let killed = Run(child.wait_with_output().unwrap());
    assert!(killed.killed());
    crate::support::wait_until("sleep 6304 to be gone", || {
        processes_with("sleep 6304").is_empty()
    });
    let recovered = env.stepback(&["recover"]);
    let why = "did not run: the engine stopped during step 'health check', whose failure runs it";
    recovered
        .expect_code(exit::ROLLBACK_INCOMPLETE)
        .expect_stdout("rolled back")
        .expect_stdout(&format!("ACTION NOT RUN 'stop new service': {why}"))
        .expect_stdout(&format!("ACTION NOT RUN 'restore the database': {why}"))
        .expect_stdout(&format!("ACTION NOT RUN 'start previous version': {why}"));
    // Newest step first, the flow's action last, as a failure runs them.
    let out = recovered.stdout();
    let at = |name: &str| out.find(name).unwrap();
    assert!(at("'stop new service'") < at("'restore the database'"), "{out}");
    assert!(
        at("'restore the database'") < at("'start previous version'"),
        "{out}"
    );
    // The files are as before 1.4.3; what only actions put back is not.
    assert_eq!(
        std::fs::read_link(env.path("deploy-service/app/current")).unwrap(),
        std::path::Path::new("releases/1.4.2")
    );
    assert!(!env.path("deploy-service/app/releases/1.4.3").exists());
    assert_eq!(env.read("deploy-service/services/webapp"), "running 1.4.3\n");
    // The run's record names them too.
    env.stepback(&["show", "last"])
        .expect_stdout(&format!("ACTION 'stop new service' FAILED: {why}"))
        .expect_stdout(&format!("ACTION 'start previous version' FAILED: {why}"));
    // Said once: a second recover has nothing to do.
    env.stepback(&["recover"])
        .expect_code(exit::SUCCESS)
        .expect_stdout("nothing to recover");
}
