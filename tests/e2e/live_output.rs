//! On a terminal the running step has a live line (spinner, elapsed time,
//! a command's latest output); piped output has plain lines only.

use crate::support::*;
use stepback::exit;

fn flow(env: &Env) -> std::path::PathBuf {
    env.mkdir("m");
    env.flow(format!(
        "{}\n[[steps]]\nname = \"talk\"\nuses = \"builtin:run-command\"\nmounts = [\"m\"]\nexec = [\"sh\"]\nwith = {{ program = \"sh\", args = [\"-c\", \"echo hello from the command; sleep 1\"] }}\n",
        flow_head("live", &["m"], &[])
    ))
}

#[test]
fn a_terminal_shows_the_running_commands_latest_line() {
    let env = Env::new();
    let flow = flow(&env);
    // `script` runs the engine on a pseudo-terminal and copies what it draws.
    let bin =
        std::env::var("STEPBACK_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_stepback").to_owned());
    let line = format!("{bin} run {}", flow.display());
    let out = env
        .command(&[], &shared_cache())
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .fold(std::process::Command::new("script"), |mut c, (k, v)| {
            c.env(k, v);
            c
        })
        .args(["-qec", &line, "/dev/null"])
        .current_dir(env.dir.path())
        .output()
        .expect("running script");
    let drawn = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{drawn}");
    assert!(
        drawn.contains("hello from the command"),
        "no live line: {drawn:?}"
    );
    assert!(drawn.contains("talk"), "{drawn:?}");
    assert!(drawn.contains("flow live succeeded"), "{drawn:?}");
}

#[test]
fn piped_output_has_plain_lines_only() {
    let env = Env::new();
    let flow = flow(&env);
    let run = env.stepback(&["run", flow.to_str().unwrap()]);
    run.expect_code(exit::SUCCESS)
        .expect_stdout("flow live succeeded");
    let all = run.stdout() + &run.stderr();
    assert!(!all.contains('\u{1b}'), "escape codes in piped output: {all:?}");
    assert!(!all.contains("hello from the command"), "{all:?}");
}
