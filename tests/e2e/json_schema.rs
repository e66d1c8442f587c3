//! The JSON output against its schema, `engine/schema/output-1.schema.json`:
//! every test that reads `--output json` checks each line it got against
//! its definition (`support::check_schema`); this one makes every command
//! and every event appear at least once and compares what it saw with
//! the schema's definitions, both ways: an event or result the CLI prints
//! and the schema lacks fails, and so does a definition nothing printed.

use crate::support::{Env, deploy_service, output_schema, schema_name};
use std::collections::BTreeSet;
use stepback::exit;

/// The definitions each line of `stdout` is checked against.
fn seen(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| schema_name(&serde_json::from_str(l).unwrap()))
        .collect()
}

#[test]
fn every_event_and_result_is_in_the_schema_and_printed() {
    let env = Env::new();
    deploy_service(&env, str::to_owned);
    env.mkdir("tried");
    let json = |args: &[&str]| {
        let mut all = vec!["--output", "json", "--verbose"];
        all.extend_from_slice(args);
        env.stepback(&all)
    };
    let mut names = BTreeSet::new();
    // Undo of the committed run the example made.
    let undo = json(&["undo", "last"]);
    undo.expect_code(exit::SUCCESS);
    names.extend(seen(&undo.stdout()));
    let flow = "deploy-service/flow.toml";
    // A run that succeeds, one whose health check fails (actions and the
    // rollback), and one without a journal (a warning).
    for (code, extra) in [
        (exit::SUCCESS, vec!["--param", "release=1.4.2"]),
        (
            exit::FLOW_FAILED,
            vec!["--param", "release=1.4.3", "--param", "healthy=no"],
        ),
        (
            exit::FAILED_NOT_ROLLED_BACK,
            vec!["--param", "healthy=no", "--no-journal"],
        ),
    ] {
        let mut args = vec!["run", flow];
        args.extend(extra);
        let run = json(&args);
        run.expect_code(code);
        names.extend(seen(&run.stdout()));
    }
    env.write("bad.toml", "name = 1\n");
    for (code, args) in [
        (exit::SUCCESS, vec!["validate", flow]),
        (exit::INVALID_INPUT, vec!["validate", "bad.toml"]),
        (exit::SUCCESS, vec!["show"]),
        (exit::SUCCESS, vec!["show", "last"]),
        (exit::SUCCESS, vec!["status"]),
        (exit::SUCCESS, vec!["plugin", "inspect", "builtin:write-file"]),
        (
            exit::SUCCESS,
            vec![
                "plugin",
                "run",
                "builtin:write-file",
                "--with",
                r#"{"path": "/tried/x", "content": "y"}"#,
                "--mount",
                "tried=./tried",
                "--rollback",
            ],
        ),
        (exit::SUCCESS, vec!["cache", "list"]),
        (exit::SUCCESS, vec!["recover"]),
        (exit::INVALID_INPUT, vec!["undo", "no-such-run"]),
    ] {
        let run = json(&args);
        run.expect_code(code);
        names.extend(seen(&run.stdout()));
    }
    // A plugin project whose build copies a component the tests have
    // (the languages' own builds are tests/e2e/authoring.rs's).
    let plugin = crate::support::guest("fsops");
    let manifest = format!(
        "name = \"p\"\n[build]\ncommand = \"cp {plugin} made.wasm\"\noutput = \"made.wasm\"\n[test]\ncommand = \"true\"\n"
    );
    for args in [
        vec!["plugin", "new", "p", "--lang", "js"],
        vec!["plugin", "build", "p"],
        vec!["plugin", "test", "p"],
    ] {
        let run = json(&args);
        run.expect_code(exit::SUCCESS);
        names.extend(seen(&run.stdout()));
        env.write("p/plugin.toml", &manifest);
    }
    let cache = env.path("own-cache");
    let pruned = env.stepback_with_cache(&["--output", "json", "cache", "prune", "--max", "0"], &cache);
    pruned.expect_code(exit::SUCCESS);
    names.extend(seen(&pruned.stdout()));

    for stdout in crate::registry::json_results(&env) {
        names.extend(seen(&stdout));
    }

    let schema = output_schema();
    // Events and results (the other definitions are their parts).
    let defined: BTreeSet<String> = schema["$defs"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("event-") || k.starts_with("result-"))
        .cloned()
        .collect();
    let missing: Vec<_> = defined.difference(&names).collect();
    assert!(
        missing.is_empty(),
        "defined in the schema, never printed: {missing:?}"
    );
    assert!(names.is_subset(&defined));
    // The top level admits each definition.
    let listed: BTreeSet<String> = schema["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["$ref"]
                .as_str()
                .unwrap()
                .trim_start_matches("#/$defs/")
                .to_owned()
        })
        .collect();
    assert_eq!(listed, defined);
}

#[test]
fn the_schema_refuses_what_the_cli_must_not_print() {
    // The checks are real: a field the schema does not know, a float
    // duration, a missing version all fail.
    let ok = r#"{"schema":1,"run_id":"r","time":"t","event":"warning","message":"m"}"#;
    crate::support::check_schema(ok);
    for bad in [
        r#"{"schema":1,"run_id":"r","time":"t","event":"warning","message":"m","extra":1}"#,
        r#"{"run_id":"r","time":"t","event":"warning","message":"m"}"#,
        r#"{"schema":1,"run_id":"r","time":"t","event":"rollback-started","changes":1.5}"#,
        r#"{"schema":1,"kind":"error","message":"m"}"#,
    ] {
        let refused = std::panic::catch_unwind(|| crate::support::check_schema(bad));
        assert!(refused.is_err(), "accepted: {bad}");
    }
}
