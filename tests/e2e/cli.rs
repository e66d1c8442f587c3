//! CLI manners: a closed pipe, the order and length of `show`.

use crate::support::{Env, Run, flow_head};
use std::process::Stdio;
use stepback::exit;

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
        env.stepback(&["run", "flow.toml"]).expect_code(exit::SUCCESS);
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
        assert_eq!(
            run.0.status.code(),
            Some(i32::from(exit::BROKEN_PIPE)),
            "{args:?}: {}",
            run.stderr()
        );
        assert_eq!(run.stderr(), "", "{args:?} said something");
    }
}

#[test]
fn a_run_whose_output_is_gone_still_finishes() {
    let env = with_runs(1);
    let run = into_closed_pipe(&env, &["run", "flow.toml"]);
    run.expect_code(exit::SUCCESS);
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

/// `run DIR` runs the flow file in it.
#[test]
fn a_directory_stands_for_its_flow_file() {
    let env = Env::new();
    env.mkdir("m");
    env.write(
        "release/flow.toml",
        "name = \"dir\"\n[[mounts]]\nname = \"m\"\nhost = \"../m\"\nguest = \"/m\"\naccess = \"read-write\"\n[[steps]]\nname = \"write\"\nuses = \"builtin:write-file\"\nmounts = [\"m\"]\nwith = { path = \"/m/f\", content = \"x\" }\n",
    );
    env.stepback(&["run", "release"])
        .expect_code(exit::SUCCESS)
        .expect_stdout("flow dir succeeded");
    assert_eq!(env.read("m/f"), "x");
    env.stepback(&["validate", "release"]).expect_code(exit::SUCCESS);
}

/// `--version` says what was built, completions and a man page come from
/// the same definition as the parser.
#[test]
fn the_cli_describes_itself() {
    let env = Env::new();
    let version = env.stepback(&["--version"]);
    version
        .expect_code(exit::SUCCESS)
        .expect_stdout("(commit ")
        .expect_stdout(", WIT stepback:plugin@");
    let wit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/plugin.wit")).unwrap();
    let package = wit
        .lines()
        .find_map(|l| l.strip_prefix("package stepback:plugin@"))
        .unwrap();
    assert!(
        version.stdout().contains(package.trim_end_matches(';')),
        "{}",
        version.stdout()
    );
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef stepback"),
        ("fish", "complete -c stepback"),
    ] {
        let script = env.stepback(&["completions", shell]);
        script
            .expect_code(exit::SUCCESS)
            .expect_stdout(marker)
            .expect_stdout("recover");
    }
    env.stepback(&["man"])
        .expect_code(exit::SUCCESS)
        .expect_stdout(".TH stepback 1")
        .expect_stdout("Exit codes:");
    env.stepback(&["completions", "tcsh"])
        .expect_code(exit::INVALID_INPUT);
}

/// `-q` prints what went wrong and the verdict, nothing else.
#[test]
fn quiet_prints_only_what_went_wrong_and_the_verdict() {
    let env = Env::new();
    env.mkdir("m");
    let write = "[[steps]]\nname = \"write\"\nuses = \"builtin:write-file\"\nmounts = [\"m\"]\nwith = { path = \"/m/f\", content = \"x\" }\n";
    let ok = env.flow(format!("{}\n{write}", flow_head("quiet", &["m"], &[])));
    let run = env.stepback(&["-q", "run", ok.to_str().unwrap()]);
    run.expect_code(exit::SUCCESS);
    assert_eq!(
        run.stdout().lines().collect::<Vec<_>>().len(),
        1,
        "{}",
        run.stdout()
    );
    assert!(
        run.stdout().starts_with("flow quiet succeeded in "),
        "{}",
        run.stdout()
    );
    let failing = env.flow(format!(
        "{}\n{write}[[steps]]\nname = \"boom\"\nuses = \"builtin:fail\"\nwith = {{ message = \"no answer\" }}\n",
        flow_head("quiet", &["m"], &[])
    ));
    let run = env.stepback(&["--quiet", "run", failing.to_str().unwrap()]);
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("  FAILED  boom")
        .expect_stdout("no answer")
        .expect_stdout("flow quiet failed at step 'boom'");
    for chatter in [
        "  ok  ",
        "rolling back",
        "rolled back: 1 change",
        "flow quiet: 2 steps",
    ] {
        assert!(
            !run.stdout().contains(chatter),
            "{chatter:?} in\n{}",
            run.stdout()
        );
    }
    env.stepback(&["-q", "-v", "run", ok.to_str().unwrap()])
        .expect_code(exit::INVALID_INPUT);
}

#[test]
fn colour_follows_color_and_no_color() {
    let env = with_runs(0);
    let flow = env.flow(
        flow_head("paint", &["m"], &[])
            + "[[steps]]\nname = \"boom\"\nuses = \"builtin:fail\"\nwith = { message = \"no\" }\n",
    );
    let flow = flow.to_str().unwrap();
    const ESC: char = '\u{1b}';
    // Into a pipe, `auto` paints nothing; `always` paints the tags.
    let plain = env.stepback(&["run", flow]);
    plain.expect_code(exit::FLOW_FAILED);
    assert!(!plain.stdout().contains(ESC), "{}", plain.stdout());
    let painted = env.stepback(&["--color", "always", "run", flow]);
    painted.expect_code(exit::FLOW_FAILED);
    assert!(
        painted.stdout().contains("\u{1b}[1m\u{1b}[31mFAILED"),
        "{:?}",
        painted.stdout()
    );
    // Without the codes, the same text.
    assert_eq!(
        strip(&painted.stdout()).lines().count(),
        plain.stdout().lines().count()
    );
    // CLICOLOR_FORCE paints into a pipe; NO_COLOR wins over it under `auto`.
    let forced = env.stepback_env(&["run", flow], &[("CLICOLOR_FORCE", "1")]);
    assert!(forced.stdout().contains(ESC));
    let none = env.stepback_env(&["run", flow], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(!none.stdout().contains(ESC), "{}", none.stdout());
    // CLICOLOR_FORCE=0 forces nothing: a pipe stays plain.
    let zero = env.stepback_env(&["run", flow], &[("CLICOLOR_FORCE", "0")]);
    assert!(!zero.stdout().contains(ESC), "{}", zero.stdout());
    // JSON is never painted.
    let json = env.stepback(&["--color", "always", "--output", "json", "run", flow]);
    assert!(!json.stdout().contains(ESC));
    env.stepback(&["--color", "sometimes", "show"])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("invalid value 'sometimes'");
}

/// `text` without its ANSI styles.
fn strip(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn a_config_file_sets_defaults_under_env_and_flags() {
    let env = with_runs(1);
    let config = env.write(
        "config.toml",
        format!(
            "state-dir = \"{}\"\noutput = \"json\"\n[run]\nkeep = 1\n",
            env.path("from-config").display()
        ),
    );
    let with_config = |args: &[&str], vars: &[(&str, &str)]| {
        let mut command = env.command(args, &crate::support::shared_cache());
        command
            .env("STEPBACK_CONFIG", &config)
            .env_remove("STEPBACK_STATE_DIR");
        command.envs(vars.iter().copied());
        Run(command.output().unwrap())
    };
    // The file's output and state directory (which has no runs yet).
    let listed = with_config(&["show"], &[]);
    listed.expect_code(exit::SUCCESS);
    let value: serde_json::Value = serde_json::from_str(&listed.stdout()).unwrap();
    assert_eq!(
        (value["kind"].as_str(), value["runs"].as_array().map(Vec::len)),
        (Some("runs"), Some(0))
    );
    // The environment beats the file; a flag beats both.
    let state = env.path("state");
    let state = state.to_str().unwrap();
    let by_env = with_config(&["show"], &[("STEPBACK_STATE_DIR", state)]);
    assert!(by_env.stdout().contains("\"runs\":[{"), "{}", by_env.stdout());
    with_config(&["--output", "human", "--state-dir", state, "show"], &[])
        .expect_code(exit::SUCCESS)
        .expect_stdout("flow-0");
    // `[run]` keys are `run`'s options: keep = 1 prunes all but the newest.
    for _ in 0..2 {
        with_config(&["run", "flow.toml"], &[]).expect_code(exit::SUCCESS);
    }
    let pruned = with_config(&["--output", "human", "show"], &[]);
    assert_eq!(
        pruned.stdout().matches("backups pruned").count(),
        1,
        "{}",
        pruned.stdout()
    );
    // Every problem of the file at once, each at its line, with a guess;
    // and nothing runs.
    env.write(
        "config.toml",
        "stat-dir = \"/x\"\ncolor = \"purple\"\n[run]\nkep = 2\nno-journal = \"yes\"\n",
    );
    let refused = with_config(&["show"], &[]);
    refused
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr(":1: unknown key `stat-dir`; did you mean `state-dir`?")
        .expect_stderr(":2: `color` = \"purple\": invalid value 'purple' for '--color <WHEN>'")
        .expect_stderr(":4: unknown key `run.kep`; did you mean `run.keep`?")
        .expect_stderr(":5: `run.no-journal` is a flag: true or false");
    assert!(refused.stdout().is_empty());
    // A key in the other section is told where it belongs.
    env.write(
        "config.toml",
        "keep = 3\n[validate]\nx = 1\n[run]\ncolor = \"never\"\n",
    );
    with_config(&["show"], &[])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr(":1: `keep` is an option of `run`: put it under [run]")
        .expect_stderr(":2: unknown table [validate]")
        .expect_stderr(":5: `color` is an option of every command: put it at the top, before [run]");
    env.write("config.toml", "state-dir = \n");
    with_config(&["show"], &[])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("config.toml:1: ");
    // With --output json, a bad file is an error result too.
    let json = with_config(&["--output", "json", "show"], &[]);
    json.expect_code(exit::INVALID_INPUT);
    let error: serde_json::Value = serde_json::from_str(&json.stdout()).unwrap();
    assert_eq!(
        (error["kind"].as_str(), error["exit_code"].as_u64()),
        (Some("error"), Some(2))
    );
    // The environment's colour beats the file's; a flag beats both.
    env.write("config.toml", "color = \"always\"\n");
    let flow =
        env.flow(flow_head("paint", &["m"], &[]) + "[[steps]]\nname = \"boom\"\nuses = \"builtin:fail\"\n");
    let flow = flow.to_str().unwrap();
    assert!(with_config(&["run", flow], &[]).stdout().contains('\u{1b}'));
    assert!(
        !with_config(&["run", flow], &[("NO_COLOR", "1")])
            .stdout()
            .contains('\u{1b}')
    );
    let flag = with_config(&["--color", "always", "run", flow], &[("NO_COLOR", "1")]);
    assert!(flag.stdout().contains('\u{1b}'));
    env.write("config.toml", "[run\n");
    with_config(&["show"], &[])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("config file");
    // A missing file is no defaults.
    fs_remove(&config);
    with_config(&["--output", "human", "show"], &[("STEPBACK_STATE_DIR", state)])
        .expect_code(exit::SUCCESS)
        .expect_stdout("flow-0");
}

fn fs_remove(path: &std::path::Path) {
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_usage_error_is_an_error_result_in_json_too() {
    let env = Env::new();
    for args in [
        &["--output", "json", "frobnicate"][..],
        &["--output", "json", "run"],
        &["--output=json", "show", "-n", "many"],
    ] {
        let run = env.stepback(args);
        run.expect_code(exit::INVALID_INPUT);
        let error: serde_json::Value =
            serde_json::from_str(&run.stdout()).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_eq!(error["kind"], "error", "{args:?}");
        assert!(!error["message"].as_str().unwrap().is_empty());
        // And the text, for people, on stderr.
        run.expect_stderr("error: ");
    }
    // Without JSON, stdout stays empty.
    assert!(env.stepback(&["frobnicate"]).stdout().is_empty());
}
