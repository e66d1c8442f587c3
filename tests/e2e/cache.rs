//! Each component is compiled once: the second run loads compiled code
//! from the cache.

use crate::support::{Env, flow_head};

#[test]
fn the_second_run_hits_the_compiled_cache() {
    let env = Env::new();
    env.mkdir("out");
    let flow = env.flow(
        flow_head("cache", &["out"], &[])
            + r#"
[[steps]]
name = "write"
uses = "builtin:write-file"
mounts = ["out"]
with = { path = "/out/x", content = "x" }
"#,
    );
    let cache = env.path("fresh-cache");
    let args = ["--verbose", "run", flow.to_str().unwrap()];
    env.stepback_with_cache(&args, &cache)
        .expect_code(0)
        .expect_stderr("plugin builtin:write-file (sha256 ")
        .expect_stderr("compiled and cached");
    let entries = std::fs::read_dir(&cache).unwrap().count();
    assert_eq!(entries, 1, "one compiled entry per component");
    let second = env.stepback_with_cache(&args, &cache);
    second.expect_code(0).expect_stderr("compiled cache hit");
    assert!(
        !second.stderr().contains("compiled and cached"),
        "{}",
        second.stderr()
    );
}

#[test]
fn a_corrupt_cache_entry_is_recompiled() {
    let env = Env::new();
    let flow = env
        .flow("name = \"c\"\n[[steps]]\nname = \"f\"\nuses = \"builtin:fail\"\non-failure = \"continue\"\n");
    let cache = env.path("fresh-cache");
    let args = ["--verbose", "run", flow.to_str().unwrap()];
    env.stepback_with_cache(&args, &cache).expect_code(0);
    for entry in std::fs::read_dir(&cache).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    env.stepback_with_cache(&args, &cache)
        .expect_code(0)
        .expect_stderr("compiled and cached");
    env.stepback_with_cache(&args, &cache)
        .expect_code(0)
        .expect_stderr("compiled cache hit");
}
