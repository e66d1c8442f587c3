//! Only components that fit the contract are run: a core module, an
//! import the host does not provide, or a missing export is refused
//! before anything runs, with a message that says what is wrong.

use crate::support::{Env, guest};
use stepback::exit;

fn flow_using(env: &Env, wasm: &[u8]) -> crate::support::Run {
    env.write("plugin.wasm", wasm);
    env.run_flow("name = \"p\"\n[[steps]]\nname = \"s\"\nuses = \"plugin.wasm\"\n")
}

#[test]
fn core_modules_are_refused_with_advice() {
    let env = Env::new();
    flow_using(&env, &wat::parse_str("(module)").unwrap())
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("flow.toml:4:8: steps[0].uses:")
        .expect_stderr("is a core WebAssembly module (WASI preview 1), not a component")
        .expect_stderr("--target wasm32-wasip2");
}

#[test]
fn unprovided_imports_are_named_with_their_version() {
    let env = Env::new();
    let wasm = wat::parse_str(
        r#"(component (import "example:missing/iface@1.2.0" (instance (export "f" (func)))))"#,
    )
    .unwrap();
    flow_using(&env, &wasm)
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("imports example:missing/iface@1.2.0, which Stepback does not provide");
    let http =
        wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#).unwrap();
    flow_using(&env, &http)
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("imports wasi:http/outgoing-handler@0.2.0, which Stepback does not provide");
}

#[test]
fn components_without_the_step_world_are_refused() {
    let env = Env::new();
    flow_using(&env, &wat::parse_str("(component)").unwrap())
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("does not export the stepback:plugin/step world");
}

#[test]
fn files_that_are_not_wasm_are_refused() {
    let env = Env::new();
    flow_using(&env, b"#!/bin/sh\necho hi\n")
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("is not a WebAssembly component");
}

/// The defaults in a plugin's config schema are applied to `with` before
/// the plugin sees it (a plugin in another language has no serde to fill
/// them), and `plugin inspect` lists them.
#[test]
fn schema_defaults_reach_the_plugin_and_are_listed() {
    let env = Env::new();
    env.flow(format!(
        "name = \"defaults\"\n[[steps]]\nname = \"echo\"\nuses = \"{}\"\nwith = {{ mode = \"echo\" }}\n",
        guest("misbehave")
    ));
    env.stepback(&["run", "flow.toml"])
        .expect_code(exit::SUCCESS)
        .expect_stdout("hello from the schema");
    env.stepback(&["plugin", "inspect", &guest("misbehave")])
        .expect_code(exit::SUCCESS)
        .expect_stdout("defaults (applied to `with` before the plugin sees it):")
        .expect_stdout("greeting = \"hello from the schema\"");
}

/// A plugin built against a newer `stepback:plugin` than this host's is
/// refused in Stepback's words, and an unlinkable one is refused before it
/// is compiled: nothing enters the compiled cache.
#[test]
fn unlinkable_plugins_are_refused_before_compiling() {
    let env = Env::new();
    let newer = wat::parse_str(r#"(component (import "stepback:plugin/host@0.1.9" (instance)))"#).unwrap();
    env.write("plugin.wasm", newer);
    env.write(
        "flow.toml",
        "name = \"p\"\n[[steps]]\nname = \"s\"\nuses = \"plugin.wasm\"\n",
    );
    let cache = env.mkdir("own-cache");
    env.stepback_with_cache(&["run", "flow.toml"], &cache)
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("was built against stepback:plugin 0.1.9; this host provides 0.1.1: upgrade stepback");
    let http =
        wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#).unwrap();
    env.write("plugin.wasm", http);
    env.stepback_with_cache(&["run", "flow.toml"], &cache)
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("which Stepback does not provide");
    let compiled: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".cwasm"))
        .collect();
    assert!(compiled.is_empty(), "compiled before refusing: {compiled:?}");
}

/// A plugin built against an older `stepback:plugin` of the host's series
/// (0.1.0, before `exec` was added) still links: past the linker, it is
/// refused only for exporting nothing.
#[test]
fn plugins_built_against_an_older_series_version_still_link() {
    let env = Env::new();
    let older = wat::parse_str(
        r#"(component
            (import "stepback:plugin/host@0.1.0" (instance))
            (import "stepback:plugin/exec@0.1.1" (instance)))"#,
    )
    .unwrap();
    let run = flow_using(&env, &older);
    run.expect_code(exit::INVALID_INPUT)
        .expect_stderr("does not export the stepback:plugin/step world");
    assert!(!run.stderr().contains("cannot be linked"), "{}", run.stderr());
}
