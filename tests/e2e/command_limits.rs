//! A command's whole process tree is held to its step's limits (memory,
//! processes, CPU time) by a cgroup of its own, and to the run's
//! free-space reserve; past one it is stopped, its changes discarded, its
//! step failed and rolled back. Where a limit cannot be enforced, the
//! output and `show` say so.

use crate::disk_full::SmallFs;
use crate::support::*;
use std::time::{Duration, Instant};
use stepback::exit;

/// A flow with mount `m` whose step runs `script` with `sh` (granted
/// `programs` too) under `limits`, after a step that writes `m/before`.
fn limited(script: &str, programs: &str, limits: &str) -> String {
    format!(
        "{}
[[steps]]
name = \"first\"
uses = \"builtin:write-file\"
mounts = [\"m\"]
with = {{ path = \"/m/before\", content = \"from the first step\" }}

[[steps]]
name = \"command\"
uses = \"builtin:run-command\"
mounts = [\"m\"]
exec = [\"sh\"{programs}]
limits = {{ {limits} }}
[steps.with]
program = \"sh\"
args = [\"-c\", '''{script}''']
",
        flow_head("limits", &["m"], &[])
    )
}

/// Runs `flow` in a fresh environment with a file in `m`: the run must
/// fail at the command, say `why`, and leave `m` as it was.
fn stopped(flow: &str, why: &str) -> Run {
    let env = Env::new();
    env.write("m/kept", "original\n");
    fix_times(&env.path("m"));
    let before = snapshot_full(&env.path("m"));
    let run = env.run_flow(flow);
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("FAILED  command")
        .expect_stdout(why)
        .expect_stdout("every path restored");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the rollback");
    run
}

#[test]
fn memory_is_the_whole_trees_and_a_command_past_it_is_stopped() {
    // Each process alone stays far below the limit; together they do not.
    let script = "echo changed > kept
for i in 1 2 3 4; do python3 -c 'import time; b = b\"x\" * (40 << 20); time.sleep(5)' & done
wait";
    let run = stopped(
        &limited(script, ", \"python3\"", "memory = \"64MiB\""),
        "went over the step's limits.memory (64.0 MiB",
    );
    assert!(
        run.stdout().contains("its file changes were discarded"),
        "{}",
        run.stdout()
    );
}

#[test]
fn the_private_tmps_files_count_against_the_memory_limit() {
    stopped(
        &limited(
            "echo changed > kept; head -c 300m /dev/zero > /tmp/big; sleep 5",
            ", \"head\", \"sleep\"",
            "memory = \"64MiB\"",
        ),
        "went over the step's limits.memory",
    );
}

#[test]
fn a_command_that_starts_too_many_processes_is_stopped_with_all_of_them() {
    let started = Instant::now();
    stopped(
        &limited(
            "echo changed > kept; for i in $(seq 100); do sleep 30 & done; wait",
            ", \"seq\", \"sleep\"",
            "processes = 20",
        ),
        "more than the step's limits.processes (20) processes at once",
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped only after {:?}",
        started.elapsed()
    );
    assert_gone("sleep 30");
}

#[test]
fn a_command_past_its_cpu_time_is_stopped() {
    let started = Instant::now();
    stopped(
        &limited(
            "echo changed > kept; while :; do :; done",
            "",
            "cpu = \"1s\", time = \"60s\"",
        ),
        "more CPU time than the step's limits.cpu (1s)",
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stopped only after {:?}",
        started.elapsed()
    );
}

#[test]
fn a_command_within_its_limits_runs_and_its_changes_are_applied() {
    let env = Env::new();
    env.mkdir("m");
    let script =
        "for i in 1 2 3 4 5; do sleep 0.2 & done; wait; head -c 8m /dev/zero > /tmp/scratch; echo done > out";
    let run = env.run_flow(&limited(
        script,
        ", \"sleep\", \"head\"",
        "processes = 20, memory = \"64MiB\", cpu = \"10s\"",
    ));
    run.expect_code(exit::SUCCESS);
    assert!(!run.stderr().contains("without these limits"), "{}", run.stderr());
    assert_eq!(std::fs::read_to_string(env.path("m/out")).unwrap(), "done\n");
}

#[test]
fn a_command_that_fills_the_filesystem_stops_at_the_reserve_and_the_rollback_has_room() {
    let env = Env::new();
    let _small = SmallFs::mount(&env.path("small"), "48m");
    env.write("small/m/kept", "original\n");
    fix_times(&env.path("small/m"));
    let before = snapshot_full(&env.path("small/m"));
    let flow = env.path("small/flow.toml");
    std::fs::write(
        &flow,
        limited(
            // It goes on when a write fails: only the engine stops it.
            "echo changed > kept; head -c 100m /dev/zero > big; echo head ended; sleep 30",
            ", \"head\", \"sleep\"",
            "",
        ),
    )
    .unwrap();
    let state = env.path("small/state");
    let started = Instant::now();
    let run = env.stepback(&[
        "--state-dir",
        state.to_str().unwrap(),
        "run",
        "--reserve",
        "8MiB",
        flow.to_str().unwrap(),
    ]);
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("filled the filesystem it writes up to the run's free-space reserve")
        .expect_stdout("every path restored");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped only after {:?}",
        started.elapsed()
    );
    assert_same_full(
        &before,
        &snapshot_full(&env.path("small/m")),
        "after the rollback",
    );
    assert_gone("sleep 30");
}

#[test]
fn where_a_limit_cannot_be_enforced_the_output_and_show_say_so() {
    // Without root the engine may not make cgroups on this machine.
    const NOBODY: u32 = 65534;
    let env = Env::new();
    env.mkdir("m");
    let flow = env.flow(limited("echo ran > out", "", "processes = 20"));
    let run = env.stepback_as(NOBODY, &["run", flow.to_str().unwrap()]);
    run.expect_code(exit::SUCCESS)
        .expect_stderr("step 'command' runs its commands without these limits: limits.memory: ");
    assert!(run.stderr().contains("limits.processes: "), "{}", run.stderr());
    let shown = env.stepback_as(NOBODY, &["show", &run.run_id()]);
    shown.expect_stdout("LIMITS NOT ENFORCED: limits.memory: ");
}

#[test]
fn limits_out_of_range_are_refused_at_their_line() {
    let env = Env::new();
    env.mkdir("m");
    let run = env.run_flow(&limited("true", "", "processes = 0, cpu = \"fast\""));
    run.expect_code(exit::INVALID_INPUT)
        .expect_stderr("process limit 0 is out of range: 1 to 32768")
        .expect_stderr("invalid duration \"fast\"");
}
