//! Limits and guest faults are step failures with a clear reason; the
//! engine itself reports them and exits cleanly.

use crate::fsops::{Op, script};
use crate::support::{Env, Run, assert_same_full, guest, snapshot_full};
use stepback::exit;

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
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("step 'spin' exceeded its 1s time limit")
        .expect_stdout("skipped after");
}

#[test]
fn a_step_blocked_in_a_host_call_is_stopped_at_the_time_limit() {
    let text =
        misbehave("sleep", "time = \"1s\"").replace("mode = \"sleep\"", "mode = \"sleep\", seconds = 600");
    Env::new()
        .run_flow(&text)
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("step 'sleep' exceeded its 1s time limit");
}

#[test]
fn unbounded_allocation_is_stopped_at_the_memory_limit() {
    Env::new()
        .run_flow(&misbehave("hog", "memory = \"32MiB\""))
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("step 'hog' exceeded its 32.0 MiB memory limit");
}

#[test]
fn a_panic_is_a_step_failure_with_its_message() {
    Env::new()
        .run_flow(&misbehave("panic", ""))
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("plugin panicked: the misbehave plugin panicked on purpose")
        .expect_stdout("| stderr: thread");
}

#[test]
fn bad_limits_are_rejected_with_their_position() {
    Env::new()
        .run_flow(&misbehave("spin", "time = \"soon\""))
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("steps[0].limits.time: invalid duration \"soon\"");
    Env::new()
        .run_flow(&misbehave("spin", "memory = \"1KiB\""))
        .expect_code(exit::INVALID_INPUT)
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
    run.expect_code(exit::FLOW_FAILED)
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

/// A flow whose one step opens `c.txt` `opens` times without closing, then
/// closes its first descriptor, creates `w.txt`, writes to it and fails.
fn descriptor_bomb(env: &Env, opens: usize, descriptors: usize) {
    env.write("m/c.txt", "charlie");
    let mut ops: Vec<Op> = (0..opens).map(|_| Op::open(0, "c.txt", &[], &["read"])).collect();
    let create = Op::open(0, "w.txt", &["create"], &["write"]);
    ops.push(create.clone());
    ops.push(Op::close(1));
    ops.push(create);
    ops.push(Op::write(opens + 2, 0, 5, 119));
    let flow = serde_json::json!({
        "name": "descriptors",
        "mounts": [{"name": "m", "host": "m", "guest": "/m", "access": "read-write"}],
        "steps": [{
            "name": "bomb",
            "uses": guest("fsops"),
            "mounts": ["m"],
            "limits": {"descriptors": descriptors},
            "with": {"ops": script(&ops), "fail": true},
        }],
    });
    env.write("flow.json", serde_json::to_string_pretty(&flow).unwrap());
}

#[test]
fn descriptors_a_step_holds_are_bounded_and_counted() {
    let env = Env::new();
    descriptor_bomb(&env, 20, 8);
    let before = snapshot_full(&env.path("m"));
    let run = env.stepback(&["run", "flow.json"]);
    // 8 opens succeed; 12 more and the first create are refused; after a
    // close, the create and its write go through, and are rolled back.
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("13 open(s) or directory listing(s) refused: the step may hold 8 at once")
        .expect_stdout("op 20 Open")
        .expect_stdout("insufficient-memory")
        .expect_stdout("rolled back: 1 change undone")
        .expect_stdout("every path restored");
    assert!(
        !run.stdout().contains("op 23"),
        "the write after the close failed:\n{}",
        run.stdout()
    );
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the rollback");
    Env::new()
        .run_flow(&misbehave("spin", "descriptors = 0"))
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("steps[0].limits.descriptors: descriptor limit 0 is out of range: 1 to 4096");
}

/// When the engine itself runs out of descriptors (EMFILE from the
/// kernel, below the step's limit), the calls that meet it fail and the
/// rollback is still exact. Descriptors are freed a few at a time, so that
/// the changes tried in between meet the limit at different points: in
/// resolving the path, in capturing (copying the original aside), in the
/// open itself.
#[test]
fn running_out_of_process_descriptors_fails_calls_not_the_guarantee() {
    let env = Env::new();
    env.write("m/c.txt", "charlie");
    let opens = 300;
    let mut ops: Vec<Op> = (0..opens).map(|_| Op::open(0, "c.txt", &[], &["read"])).collect();
    let mut next = opens + 1;
    for k in 0..8 {
        // One descriptor more each time.
        for fd in k * (k + 1) / 2..(k + 1) * (k + 2) / 2 {
            ops.push(Op::close(1 + fd));
        }
        for (path, oflags) in [("c.txt", vec![]), (&*format!("n{k}"), vec!["create"])] {
            ops.push(Op::open(0, path, &oflags, &["write"]));
            ops.push(Op::write(next, k as u64, 1, 120));
            next += 1;
        }
    }
    let flow = serde_json::json!({
        "name": "emfile",
        "mounts": [{"name": "m", "host": "m", "guest": "/m", "access": "read-write"}],
        "steps": [{"name": "bomb", "uses": guest("fsops"), "mounts": ["m"],
                   "limits": {"descriptors": 4096}, "with": {"ops": script(&ops), "fail": true}}],
    });
    env.write("flow.json", serde_json::to_string_pretty(&flow).unwrap());
    let before = snapshot_full(&env.path("m"));
    let cache = crate::support::shared_cache();
    let bin = env.command(&[], &cache).get_program().to_owned();
    let run = Run(std::process::Command::new("sh")
        .args(["-c", "ulimit -n 128 && exec \"$0\" run flow.json"])
        .arg(&bin)
        .env("STEPBACK_STATE_DIR", env.path("state"))
        .env("STEPBACK_CACHE_DIR", &cache)
        .current_dir(env.path(""))
        .output()
        .unwrap());
    // The first write-open has one descriptor to spare: its capture
    // cannot create the copy of the original, and the call fails.
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("op 301 Open")
        .expect_stdout("name: \"io\"")
        .expect_stdout("every path restored");
    assert!(
        !run.stdout().contains("op 367 Write"),
        "the last write failed too:\n{}",
        run.stdout()
    );
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the rollback");
}
