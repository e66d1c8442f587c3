//! Every validation error names file, line, column and the offending
//! value; nothing runs and nothing changes.

use crate::support::{Env, assert_same, flow_head, guest, snapshot};
use stepback::exit;

const GOOD: &str = r#"name = "v"

[params.release]
default = "1.0"

[[mounts]]
name = "app"
host = "app"
guest = "/app"
access = "read-write"

[[steps]]
name = "write"
uses = "builtin:write-file"
mounts = ["app"]
[steps.with]
path = "/app/${release}.txt"
content = "release ${release}"
"#;

/// Runs `validate` on `GOOD` with `from` replaced by `to`, expecting
/// failure with every one of `needles` on stderr, and the mount untouched.
fn rejects(from: &str, to: &str, needles: &[&str]) {
    assert!(GOOD.contains(from), "{from:?} is not in the flow");
    let env = Env::new();
    env.write("app/keep", "kept");
    let flow = env.flow(GOOD.replacen(from, to, 1));
    let before = snapshot(&env.path("app"));
    for command in ["validate", "run"] {
        let run = env.stepback(&[command, flow.to_str().unwrap()]);
        run.expect_code(exit::INVALID_INPUT);
        for needle in needles {
            run.expect_stderr(needle);
        }
    }
    assert_same(
        &before,
        &snapshot(&env.path("app")),
        "a rejected flow changed the mount",
    );
}

#[test]
fn the_good_flow_validates_and_runs() {
    let env = Env::new();
    env.mkdir("app");
    let flow = env.flow(GOOD);
    env.stepback(&["validate", flow.to_str().unwrap()])
        .expect_code(exit::SUCCESS)
        .expect_stdout("flow \"v\" is valid: 1 step, 1 mount");
    assert!(!env.path("app/1.0.txt").exists(), "validate must not run steps");
    env.stepback(&["run", flow.to_str().unwrap(), "--param", "release=2.0"])
        .expect_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read_to_string(env.path("app/2.0.txt")).unwrap(),
        "release 2.0"
    );
}

#[test]
fn syntax_errors_are_located() {
    rejects("name = \"write\"", "name = \"write", &["flow.toml:13:", "string"]);
}

#[test]
fn unknown_keys_are_located() {
    rejects(
        "uses = ",
        "colour = \"red\"\nuses = ",
        &["flow.toml:14:1", "unknown field `colour`"],
    );
}

#[test]
fn wrong_types_are_located() {
    rejects(
        "mounts = [\"app\"]",
        "mounts = \"app\"",
        &[
            "flow.toml:15:10",
            "invalid type: string \"app\", expected a sequence",
        ],
    );
}

/// Found by a review: a step that is not a table was said to be no
/// `StepDecl` (a name of the engine's), and its stand-in's missing keys
/// were reported as the operator's.
#[test]
fn a_value_where_a_table_belongs_is_said_in_the_flows_terms() {
    let env = Env::new();
    env.write("f.toml", "name = \"x\"\nsteps = [1, 2]\n");
    let out = env.stepback(&["validate", "f.toml"]);
    out.expect_code(exit::INVALID_INPUT)
        .expect_stderr("f.toml:2:10: steps[0]: invalid type: integer `1`, expected a table")
        .expect_stderr("f.toml:2:13: steps[1]: invalid type: integer `2`, expected a table")
        .expect_stderr("2 errors");
    assert!(!out.stderr().contains("StepDecl"), "{}", out.stderr());
    assert!(!out.stderr().contains("missing field"), "{}", out.stderr());
}

/// Found by a review: an unknown key spelt as part of a dotted key was
/// blanked alone, and what was left of the line gave a syntax error too.
#[test]
fn an_unknown_dotted_key_is_one_error() {
    let env = Env::new();
    env.write("f.toml", "name = \"x\"\nfoo.bar = 1\n");
    let out = env.stepback(&["validate", "f.toml"]);
    out.expect_code(exit::INVALID_INPUT)
        .expect_stderr("f.toml:2:1: unknown field `foo`")
        .expect_stderr("missing field `steps`")
        .expect_stderr("2 errors");
    assert!(!out.stderr().contains("unquoted keys"), "{}", out.stderr());
    rejects(
        "mounts = [\"app\"]\n[steps.with]",
        "mounts = [\"app\"]\nlimits.tiem = \"1s\"\n[steps.with]",
        &["unknown field `tiem`", "did you mean `time`?", "1 error"],
    );
}

#[test]
fn unknown_plugins_are_located() {
    rejects(
        "builtin:write-file",
        "builtin:write-files",
        &[
            "flow.toml:14:8: steps[0].uses: unknown plugin \"builtin:write-files\"",
            "write-file",
        ],
    );
    rejects(
        "builtin:write-file",
        "plugins/missing.wasm",
        &["steps[0].uses: unknown plugin \"plugins/missing.wasm\""],
    );
}

#[test]
fn undefined_parameters_are_located() {
    rejects(
        "/app/${release}.txt",
        "/app/${relaese}.txt",
        &[
            "flow.toml:17:8: steps[0].with.path: undefined parameter `${relaese}`",
            "declared: release",
        ],
    );
}

#[test]
fn undeclared_and_missing_parameter_values_are_errors() {
    let env = Env::new();
    env.mkdir("app");
    let flow = env.flow(GOOD);
    env.stepback(&["validate", flow.to_str().unwrap(), "--param", "relase=2"])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("override relase=2: the flow declares no parameter `relase` (declared: release)")
        .expect_stderr("(a parameter's value is given with --param NAME=VALUE)");
    rejects(
        "default = \"1.0\"",
        "description = \"no default\"",
        // Said once: its uses are not also "undefined".
        &[
            "params.release: parameter `release` has no default and was given no value",
            "\n1 error",
        ],
    );
    env.stepback(&["validate", flow.to_str().unwrap(), "--param", "oops"])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("expected NAME=VALUE, got \"oops\"");
}

#[test]
fn a_guest_path_is_written_plainly() {
    for guest in ["/app/", "//app", "/app//x"] {
        rejects(
            "guest = \"/app\"",
            &format!("guest = \"{guest}\""),
            &[
                "mounts[0].guest: guest path",
                "without `.`, `..`, `//` or a trailing `/`",
            ],
        );
    }
}

#[test]
fn undefined_mounts_are_located() {
    rejects(
        "mounts = [\"app\"]",
        "mounts = [\"app\", \"data\"]",
        &["flow.toml:15:18: steps[0].mounts[1]: undefined mount \"data\" (defined: app)"],
    );
}

#[test]
fn missing_host_paths_are_located() {
    rejects(
        "host = \"app\"",
        "host = \"no-such-dir\"",
        &["flow.toml:8:8: mounts[0].host: host path", "no-such-dir"],
    );
    // As written, with the directory it is relative to (not `././x`).
    rejects(
        "host = \"app\"",
        "host = \"./distt\"",
        &[
            "mounts[0].host: host path \"./distt\" (relative to the flow's directory, /",
            "): No such file or directory",
        ],
    );
}

#[test]
fn duplicate_step_names_are_located() {
    let twice = format!("{}\n[[steps]]\nname = \"write\"\nuses = \"builtin:fail\"\n", GOOD);
    let env = Env::new();
    env.mkdir("app");
    let flow = env.flow(&twice);
    env.stepback(&["validate", flow.to_str().unwrap()])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("flow.toml:21:8: steps[1].name: duplicate step name \"write\"");
}

#[test]
fn configs_are_checked_against_the_plugin_schema() {
    rejects(
        "content = \"release ${release}\"",
        "content = 42",
        &["flow.toml:18:11: steps[0].with.content: 42 is not of type \"string\""],
    );
    rejects(
        "content = \"release ${release}\"",
        "content = \"x\"\ncolour = \"red\"",
        &[
            // At the key, as the parser places an unknown key of the flow's own.
            "flow.toml:19:1: steps[0].with.colour: unknown key `colour` (it knows: append, content, path) (config of plugin write-file)",
        ],
    );
    rejects(
        "content = \"release ${release}\"",
        "",
        &["steps[0].with: \"content\" is a required property"],
    );
}

#[test]
fn a_read_only_grant_for_a_writing_plugin_is_rejected() {
    rejects(
        "access = \"read-write\"",
        "access = \"read-only\"",
        &[
            "steps[0].mounts: plugin write-file writes its \"target\" mount, but the step is granted no read-write mount",
        ],
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let env = Env::new();
    env.mkdir("app");
    let text = GOOD
        .replace("builtin:write-file", "builtin:nope")
        .replace("mounts = [\"app\"]", "mounts = [\"x\"]");
    let flow = env.flow(&text);
    env.stepback(&["validate", flow.to_str().unwrap()])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("unknown plugin \"builtin:nope\"")
        .expect_stderr("undefined mount \"x\"")
        .expect_stderr("2 errors");
}

#[test]
fn json_flows_are_validated_with_positions_too() {
    let env = Env::new();
    env.mkdir("app");
    let text = r#"{
  "name": "j",
  "mounts": [{"name": "app", "host": "app", "guest": "/app", "access": "read-write"}],
  "steps": [
    {"name": "w", "uses": "builtin:write-file", "mounts": ["app"],
     "with": {"path": "/app/x", "content": 7}}
  ]
}
"#;
    let flow = env.write("flow.json", text);
    env.stepback(&["validate", flow.to_str().unwrap()])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("flow.json:6:44: steps[0].with.content: 7 is not of type \"string\"");
    env.write("flow.json", text.replace("7}", "\"seven\"}"));
    env.stepback(&["run", flow.to_str().unwrap()])
        .expect_code(exit::SUCCESS);
    assert_eq!(std::fs::read_to_string(env.path("app/x")).unwrap(), "seven");
    env.write("flow.json", text.replace("\"name\": \"j\",", "\"name\": \"j\""));
    env.stepback(&["validate", flow.to_str().unwrap()])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("flow.json:3:3: expected `,` or `}`");
}

/// One unknown key no longer hides the rest: every unknown key is said
/// with the key it most likely meant, and the flow's other problems too.
#[test]
fn every_problem_is_reported_at_once_with_what_was_meant() {
    let env = Env::new();
    env.mkdir("m");
    let flow = env.flow(
        "name = \"typos\"\ndescripton = \"x\"\n[[mounts]]\nname = \"m\"\nhost = \"m\"\nguest = \"/m\"\naccess = \"read-write\"\n[[steps]]\nname = \"a\"\nuses = \"builtin:nope\"\nmounts = [\"m\"]\nrevret = false\n",
    );
    let run = env.stepback(&["validate", flow.to_str().unwrap()]);
    run.expect_code(exit::INVALID_INPUT)
        .expect_stderr("flow.toml:2:1: unknown field `descripton`")
        .expect_stderr("did you mean `description`?")
        .expect_stderr("flow.toml:12:1: unknown field `revret`")
        .expect_stderr("did you mean `revert`?")
        .expect_stderr("builtin:nope")
        .expect_stderr("3 errors");
}

/// A typo in a plugin's config is one problem, with the key meant (not an
/// unknown key and a missing one).
#[test]
fn a_config_typo_comes_with_the_key_meant() {
    let env = Env::new();
    env.mkdir("m");
    let flow = env.flow(
        flow_head("typo", &["m"], &[])
            + "[[steps]]\nname = \"w\"\nuses = \"builtin:write-file\"\nmounts = [\"m\"]\nwith = { path = \"/m/a\", contnet = \"x\" }\n",
    );
    let run = env.stepback(&["validate", flow.to_str().unwrap()]);
    run.expect_code(exit::INVALID_INPUT)
        .expect_stderr("steps[0].with.contnet: unknown key `contnet` (it knows: append, content, path); did you mean `content`?")
        .expect_stderr("1 error");
    assert!(!run.stderr().contains("required"), "{}", run.stderr());
}

/// A missing key or a value of the wrong type does not end the checks:
/// each is reported, and so is every other problem of the flow, but none
/// about the stand-in put in its place.
#[test]
fn missing_keys_and_wrong_types_hide_nothing_else() {
    let env = Env::new();
    env.mkdir("m");
    let flow = env.flow(
        "name = \"x\"\n[[mounts]]\nname = \"m\"\nhost = \"./nope\"\nguest = \"/m\"\n[[mounts]]\nname = \"n\"\nhost = \"m\"\nguest = \"/n\"\naccess = 5\n[[steps]]\nname = \"a\"\nuses = \"builtin:fail\"\nrevert = \"no\"\nmounts = [\"q\"]\nwith = { message = 7 }\n[[steps]]\nuses = \"builtin:fail\"\n",
    );
    let run = env.stepback(&["--output", "json", "validate", flow.to_str().unwrap()]);
    run.expect_code(exit::INVALID_INPUT);
    // The result, after the events of the plugins loaded to check it.
    let result = run.events().pop().unwrap();
    let found: Vec<(u64, String, String)> = result["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let message = d["message"].as_str().unwrap();
            (
                d["line"].as_u64().unwrap(),
                d["field"].as_str().unwrap().to_owned(),
                message.to_owned(),
            )
        })
        .collect();
    let fields: Vec<(u64, &str)> = found.iter().map(|(l, f, _)| (*l, f.as_str())).collect();
    assert_eq!(
        fields,
        [
            (2, "mounts[0].access"),
            (4, "mounts[0].host"),
            (10, "mounts[1].access"),
            (14, "steps[0].revert"),
            (15, "steps[0].mounts[0]"),
            (16, "steps[0].with.message"),
            (17, "steps[1].name"),
        ],
        "{found:#?}"
    );
    assert!(found[0].2.starts_with("missing field `access`"), "{found:#?}");
    assert!(found[3].2.contains("expected a boolean"), "{found:#?}");
    assert!(found[6].2.starts_with("missing field `name`"), "{found:#?}");
    // A flow without its steps still has its mounts checked.
    let flow = env.flow(
        "name = \"x\"\n[[mounts]]\nname = \"m\"\nhost = \"./nope\"\nguest = \"/m\"\naccess = \"read-only\"\n",
    );
    let run = env.stepback(&["validate", flow.to_str().unwrap()]);
    run.expect_code(exit::INVALID_INPUT)
        .expect_stderr("flow.toml:1:1: steps: missing field `steps`")
        .expect_stderr("flow.toml:4:8: mounts[0].host: host path \"./nope\"")
        .expect_stderr("2 errors");
}

/// A parameter or a mount the flow does not declare comes with the one it
/// most likely meant.
#[test]
fn undeclared_names_come_with_what_was_meant() {
    let env = Env::new();
    env.mkdir("site");
    let flow = env.flow(
        "name = \"typos\"\n[params.release]\ndefault = \"1\"\n[[mounts]]\nname = \"site\"\nhost = \"site\"\nguest = \"/site\"\naccess = \"read-write\"\n[[steps]]\nname = \"a\"\nuses = \"builtin:write-file\"\nmounts = [\"sites\"]\nwith = { path = \"/site/${relase}\", content = \"x\" }\n",
    );
    env.stepback(&["validate", flow.to_str().unwrap(), "--param", "releas=2"])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("undefined mount \"sites\" (defined: site); did you mean `site`?")
        .expect_stderr("(declared: release); did you mean `release`?")
        .expect_stderr("override releas=2: the flow declares no parameter `releas` (declared: release); did you mean `release`?");
}

/// A plugin whose config is one of several variants (a tagged enum: a
/// `oneOf` in its schema): a misspelt key of the variant its tag names is
/// named as one, with the keys that variant knows, at the key.
#[test]
fn a_misspelt_key_of_a_config_variant_is_named_with_what_was_meant() {
    let env = Env::new();
    let flow_text = format!(
        "name = \"f\"\n\n[[steps]]\nname = \"nap\"\nuses = \"{}\"\nwith = {{ mode = \"sleep\", secnds = 1 }}\n",
        guest("misbehave")
    );
    let flow = env.flow(&flow_text);
    env.stepback(&["validate", flow.to_str().unwrap()])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr(
            "flow.toml:6:26: steps[0].with.secnds: unknown key `secnds` (it knows: mode, seconds); did you mean `seconds`?",
        );
    // A tag that names no variant is said to, with the variants.
    let flow = env.flow(flow_text.replace("\"sleep\", secnds", "\"slep\", seconds"));
    env.stepback(&["validate", flow.to_str().unwrap()])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("flow.toml:6:17: steps[0].with.mode: \"slep\" names no variant (it is one of: escape, spin, hog, panic, sleep, connect, flood, churn, echo); did you mean `sleep`?");
}

/// A program named by its guest path (where the step sees it) instead of
/// its host path: the error says which is which, and it is the only one
/// (the grant as written is not taken for no grant). A file that is there
/// but may not be run says so, with its mode.
#[test]
fn a_program_that_cannot_run_is_said_to_be_missing_or_not_executable() {
    let env = Env::new();
    let script = env.write("app/deploy.sh", "#!/bin/sh\n");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let step = |program: &str| {
        format!(
            "{}[[steps]]\nname = \"deploy\"\nuses = \"builtin:run-command\"\nmounts = [\"app\"]\nexec = [\"{program}\"]\nwith = {{ program = \"{program}\" }}\n",
            flow_head("f", &["app"], &[])
        )
    };
    let flow = env.flow(step("/app/deploy.sh"));
    let run = env.stepback(&["validate", flow.to_str().unwrap()]);
    let host = std::fs::canonicalize(env.path("app")).unwrap();
    run.expect_code(exit::INVALID_INPUT)
        .expect_stderr(&format!(
            "steps[0].exec[0]: program \"/app/deploy.sh\" does not exist on the host: `exec` names a program by its host path, and /app/deploy.sh is in mount \"app\" (seen at /app), whose host directory is {}: on the host it is {}/deploy.sh, which is not executable (mode 644)",
            host.display(),
            host.display()
        ))
        .expect_stderr("\n1 error");
    let script = host.join("deploy.sh");
    let flow = env.flow(step(script.to_str().unwrap()));
    env.stepback(&["validate", flow.to_str().unwrap()])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr(&format!(
            "program {:?} is not executable (mode 644): `chmod +x` it",
            script.display().to_string()
        ))
        .expect_stderr("\n1 error");
}
