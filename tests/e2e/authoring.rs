//! The author's loop in each language, on the real tools: `plugin new`
//! writes a project, `plugin test` builds it with the language's own tool
//! (cargo; componentize-py from PyPI and componentize-js from npm, at the
//! versions the project pins) and runs its own tests in the engine; the
//! component then runs alone (`plugin run`, with and without
//! `--rollback`) and in a flow whose failing step rolls it back, loading
//! from the cache the build compiled into.

use crate::support::Env;
use serde_json::Value;
use stepback::exit;

/// The JSON values of `stdout`, one a line.
fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A flow whose second step writes again what the first wrote, and so
/// fails (the file exists): the first step's file must be rolled back.
const FLOW: &str = r#"
name = "greet"

[[mounts]]
name = "site"
host = "./site"
guest = "/site"
access = "read-write"

[[steps]]
name = "first"
uses = "./hello/hello.wasm"
mounts = ["site"]
with = { path = "/site/a.txt", text = "first" }

[[steps]]
name = "again"
uses = "./hello/hello.wasm"
mounts = ["site"]
with = { path = "/site/a.txt", text = "again" }
"#;

/// Scaffolds `hello` in `lang`, tests it, runs it alone and in [`FLOW`];
/// returns the env (its cache in `cache/`, the project in `hello/`).
fn author(lang: &str) -> Env {
    let env = Env::new();
    let cache = env.path("cache");
    let stepback = |args: &[&str]| env.stepback_with_cache(args, &cache);
    stepback(&["--output", "json", "plugin", "new", "hello", "--lang", lang]).expect_code(exit::SUCCESS);
    if lang == "rust" {
        keep_cargo_builds(&env);
    }
    let tested = stepback(&["--output", "json", "plugin", "test", "hello"]);
    tested.expect_code(exit::SUCCESS);
    let result = lines(&tested.stdout()).pop().unwrap();
    assert_eq!(
        (result["kind"].as_str(), result["passed"].as_bool()),
        (Some("plugin-test"), Some(true))
    );
    assert_eq!(
        result["cache"], "compiled",
        "the build compiles it into the cache: {result}"
    );
    assert!(env.path("hello/hello.wasm").is_file());

    let with = r#"{"path": "/target/hi.txt", "text": "hi"}"#;
    let alone = [
        "plugin",
        "run",
        "hello/hello.wasm",
        "--with",
        with,
        "--mount",
        "target=./t:/target",
    ];
    env.mkdir("t");
    stepback(&alone)
        .expect_code(exit::SUCCESS)
        .expect_stdout("created (2 bytes)");
    assert_eq!(env.read("t/hi.txt"), "hi");
    std::fs::remove_file(env.path("t/hi.txt")).unwrap();
    stepback(&[&alone[..], &["--rollback"]].concat())
        .expect_code(exit::SUCCESS)
        .expect_stdout("rollback: ");
    assert!(!env.path("t/hi.txt").exists());

    env.mkdir("site");
    env.flow(FLOW);
    let run = stepback(&["--output", "json", "run", "flow.toml"]);
    run.expect_code(exit::FLOW_FAILED).expect_stdout("already exists");
    assert!(
        !env.path("site/a.txt").exists(),
        "the first step's file was rolled back"
    );
    let loads: Vec<Value> = lines(&run.stdout())
        .into_iter()
        .filter(|v| v["event"] == "plugin-loaded")
        .collect();
    assert!(
        !loads.is_empty() && loads.iter().all(|v| v["cache"] == "hit"),
        "the run compiled: {loads:?}"
    );
    env
}

/// The scaffold's cargo builds go to a `target/` kept between test runs
/// (a symlink in the project), so that only the first one compiles its
/// dependencies.
fn keep_cargo_builds(env: &Env) {
    let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-rust-target");
    std::fs::create_dir_all(&kept).unwrap();
    std::os::unix::fs::symlink(&kept, env.path("hello/target")).unwrap();
}

#[test]
fn a_rust_plugin_is_scaffolded_built_tested_and_run_alone_and_in_a_flow() {
    let env = author("rust");
    let toml = env.read("hello/Cargo.toml");
    assert!(
        toml.contains("opt-level = \"s\""),
        "a size-optimised release: {toml}"
    );
    // Building again what did not change finds it compiled already.
    env.stepback_with_cache(&["plugin", "build", "hello"], &env.path("cache"))
        .expect_code(exit::SUCCESS)
        .expect_stdout("unchanged, already compiled");
    // A plain `cargo test`: stepback-test builds the project itself (a
    // build of its own inside cargo's test run) and runs every test.
    let tests = std::process::Command::new("cargo")
        .arg("test")
        .current_dir(env.path("hello"))
        .env("STEPBACK", env!("CARGO_BIN_EXE_stepback"))
        .env("STEPBACK_CACHE_DIR", env.path("cache"))
        .env("STEPBACK_CONFIG", "")
        .env_remove("STEPBACK_PLUGIN")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&tests.stdout);
    assert!(
        tests.status.success() && printed.contains("test result: ok. 3 passed"),
        "{printed}{}",
        String::from_utf8_lossy(&tests.stderr)
    );
}

#[test]
fn a_python_plugin_is_scaffolded_built_tested_and_run_alone_and_in_a_flow() {
    let env = author("python");
    assert!(env.read("hello/requirements.txt").contains("componentize-py=="));
}

#[test]
fn a_javascript_plugin_is_scaffolded_built_tested_and_run_alone_and_in_a_flow() {
    let env = author("js");
    let package = env.read("hello/package.json");
    assert!(
        package.contains("\"@bytecodealliance/componentize-js\": \"0."),
        "pinned: {package}"
    );
}

#[test]
fn plugin_new_refuses_a_bad_name_and_a_directory_in_use_and_writes_nothing() {
    let env = Env::new();
    env.stepback(&["plugin", "new", "Hello", "--lang", "rust"])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("is not a plugin name");
    assert!(!env.path("Hello").exists());
    env.write("taken/mine.txt", "mine");
    env.stepback(&["plugin", "new", "taken", "--lang", "python"])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("is not empty");
    assert_eq!(std::fs::read_dir(env.path("taken")).unwrap().count(), 1);
    env.stepback(&["plugin", "new", "x", "--lang", "go"])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("one of rust, python, js");
}

#[test]
fn a_failing_build_says_so_and_leaves_no_component() {
    let env = Env::new();
    env.stepback(&["plugin", "new", "broken", "--lang", "python"])
        .expect_code(exit::SUCCESS);
    env.write(
        "broken/plugin.toml",
        "name = \"broken\"\n[build]\ncommand = \"exit 3\"\noutput = \"x.wasm\"\n",
    );
    env.stepback(&["plugin", "build", "broken"])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("the build command `exit 3` failed");
    assert!(!env.path("broken/broken.wasm").exists());
    // What the build made must be a step component before it is installed.
    env.write(
        "broken/plugin.toml",
        "name = \"broken\"\n[build]\ncommand = \"true\"\noutput = \"app.py\"\n",
    );
    env.stepback(&["plugin", "build", "broken"])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("broken/app.py");
    assert!(!env.path("broken/broken.wasm").exists());
    env.stepback(&["plugin", "build", "nowhere"])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("nowhere/plugin.toml");
}
