//! CLI manners: a closed pipe, the order and length of `show`.

use crate::support::{Env, Run, flow_head};
use std::process::Stdio;

/// An env with `n` committed runs of a one-step flow.
fn with_runs(n: usize) -> Env {
    let env = Env::new();
    env.mkdir("m");
    for i in 0..n {
        env.flow(
            flow_head(&format!("flow-{i}"), &["m"], &[])
                + r#"
[[steps]]
name = "write"
uses = "builtin:write-file"
mounts = ["m"]
with = { path = "/m/x", content = "x" }
"#,
        );
        env.stepback(&["run", "flow.toml"]).expect_code(0);
    }
    env
}

/// Runs `stepback ARGS` with its stdout a pipe nobody reads: the read end
/// is closed before it starts, so its first write meets a broken pipe.
fn into_closed_pipe(env: &Env, args: &[&str]) -> Run {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let cache = crate::support::shared_cache();
    let output = env
        .command(args, &cache)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    Run(output)
}

#[test]
fn reporting_into_a_closed_pipe_ends_quietly() {
    let env = with_runs(1);
    for args in [
        &["show"][..],
        &["plugin", "inspect", "builtin:write-file"],
        &["--output", "json", "show"],
    ] {
        let run = into_closed_pipe(&env, args);
        assert_eq!(run.0.status.code(), Some(141), "{args:?}: {}", run.stderr());
        assert_eq!(run.stderr(), "", "{args:?} said something");
    }
}

#[test]
fn a_run_whose_output_is_gone_still_finishes() {
    let env = with_runs(1);
    let run = into_closed_pipe(&env, &["run", "flow.toml"]);
    run.expect_code(0);
    assert_eq!(run.stderr(), "");
    env.stepback(&["show", "--limit", "1"])
        .expect_stdout("committed (can be undone)");
    env.stepback(&["recover"]).expect_stdout("nothing to recover");
}

#[test]
fn show_lists_newest_first_and_takes_a_limit() {
    let env = with_runs(3);
    let all = env.stepback(&["show"]).stdout();
    let flows: Vec<&str> = all
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(flows, ["flow-2", "flow-1", "flow-0"]);
    let two = env.stepback(&["show", "-n", "2"]);
    assert_eq!(two.stdout().lines().count(), 2);
    assert!(two.stdout().lines().next().unwrap().contains("flow-2"));
}
