//! Limits and guest faults are step failures with a clear reason; the
//! engine itself reports them and exits cleanly.

use crate::support::{Env, guest};

fn misbehave(mode: &str, limits: &str) -> String {
    format!(
        r#"
name = "limits"
[[steps]]
name = "{mode}"
uses = "{}"
with = {{ mode = "{mode}" }}
limits = {{ {limits} }}

[[steps]]
name = "after"
uses = "builtin:fail"
"#,
        guest("misbehave")
    )
}

#[test]
fn an_endless_loop_is_stopped_at_the_time_limit() {
    Env::new()
        .run_flow(&misbehave("spin", "time = \"1s\""))
        .expect_code(1)
        .expect_stdout("step 'spin' exceeded its 1s time limit")
        .expect_stdout("skipped after");
}

#[test]
fn a_step_blocked_in_a_host_call_is_stopped_at_the_time_limit() {
    let text =
        misbehave("sleep", "time = \"1s\"").replace("mode = \"sleep\"", "mode = \"sleep\", seconds = 600");
    Env::new()
        .run_flow(&text)
        .expect_code(1)
        .expect_stdout("step 'sleep' exceeded its 1s time limit");
}

#[test]
fn unbounded_allocation_is_stopped_at_the_memory_limit() {
    Env::new()
        .run_flow(&misbehave("hog", "memory = \"32MiB\""))
        .expect_code(1)
        .expect_stdout("step 'hog' exceeded its 32.0 MiB memory limit");
}

#[test]
fn a_panic_is_a_step_failure_with_its_message() {
    Env::new()
        .run_flow(&misbehave("panic", ""))
        .expect_code(1)
        .expect_stdout("plugin panicked: the misbehave plugin panicked on purpose")
        .expect_stdout("| stderr: thread");
}

#[test]
fn bad_limits_are_rejected_with_their_position() {
    Env::new()
        .run_flow(&misbehave("spin", "time = \"soon\""))
        .expect_code(2)
        .expect_stderr("steps[0].limits.time: invalid duration \"soon\"");
    Env::new()
        .run_flow(&misbehave("spin", "memory = \"1KiB\""))
        .expect_code(2)
        .expect_stderr("steps[0].limits.memory: memory limit 1.0 KiB is below the minimum");
}

/// Finding 16: logs and progress were kept without bound in the host
/// (2,048 one-MiB lines took ~2 GiB). Finding 17: their control
/// characters reached the terminal, so a plugin could print a fake
/// "flow ... succeeded" line.
#[test]
fn a_flooding_plugin_is_cut_off_and_cannot_fake_output() {
    let env = Env::new();
    env.flow(format!(
        "name = \"flood\"\n[[steps]]\nname = \"flood\"\nuses = \"{}\"\nwith = {{ mode = \"flood\", lines = 3000, bytes = 65536, units = 5000 }}\n",
        guest("misbehave")
    ));
    let run = env.stepback(&["run", "flow.toml"]);
    run.expect_code(1)
        .expect_stdout("fake\\nflow x succeeded\\u{1b}[2K")
        .expect_stdout("[49177 more bytes cut]")
        .expect_stdout("4984 progress report(s) in new units dropped");
    assert!(
        !run.stdout().lines().any(|l| l.starts_with("flow x succeeded")),
        "a plugin printed a line of its own:\n{}",
        &run.stdout()[..2000]
    );
    // Lines are cut to 16 KiB and 4 MiB of log are kept: about 255 of
    // 3000; the rest are counted.
    let shown = run.stdout().lines().filter(|l| l.contains("fake\\n")).count();
    assert!((200..=256).contains(&shown), "{shown} log lines kept");
    run.expect_stdout(&format!("{} log line(s)", 3000 - shown));
}
