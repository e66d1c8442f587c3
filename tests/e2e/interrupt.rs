//! Ctrl-C or SIGTERM during a run: the running step stops, and the flow
//! rolls back as if it had failed.

use crate::support::*;
use std::time::Duration;

fn interrupted_with(signal: rustix::process::Signal) {
    let env = Env::new();
    env.write("m/config.txt", "v1");
    let flow = serde_json::json!({
        "name": "interrupt",
        "mounts": [{"name": "m", "host": "m", "guest": "/m", "access": "read-write"}],
        "steps": [
            {"name": "deploy", "uses": guest("fsops"), "mounts": ["m"], "with": {"ops": [
                {"op": "open", "fd": 0, "path": "config.txt", "oflags": ["truncate"], "flags": ["write"]},
                {"op": "write", "fd": 1, "offset": 0, "len": 3, "byte": 110},
                {"op": "mkdir", "fd": 0, "path": "started"},
            ]}},
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
    run.expect_code(130)
        .expect_stderr("interrupted: stopping the running step")
        .expect_stdout("step 'spin' was stopped: the run was cancelled")
        .expect_stdout("skipped after")
        .expect_stdout("every path restored")
        .expect_stdout("flow interrupt interrupted in step 'spin'");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the rollback");
}

#[test]
fn ctrl_c_stops_the_step_and_rolls_back() {
    interrupted_with(rustix::process::Signal::INT);
}

#[test]
fn sigterm_does_the_same() {
    interrupted_with(rustix::process::Signal::TERM);
}
