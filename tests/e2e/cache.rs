//! Each component is compiled once: the second run loads compiled code
//! from the cache.

use crate::support::{Env, flow_head, guest};
use stepback::exit;

#[test]
fn the_second_run_hits_the_compiled_cache() {
    let (env, flow) = write_flow("");
    let cache = env.path("fresh-cache");
    let args = ["--verbose", "run", flow.to_str().unwrap()];
    env.stepback_with_cache(&args, &cache)
        .expect_code(exit::SUCCESS)
        .expect_stderr("plugin builtin:write-file (sha256 ")
        .expect_stderr("compiled and cached");
    assert_eq!(
        compiled_entries(&cache).len(),
        1,
        "one compiled entry per component"
    );
    let second = env.stepback_with_cache(&args, &cache);
    second
        .expect_code(exit::SUCCESS)
        .expect_stderr("compiled cache hit");
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
    env.stepback_with_cache(&args, &cache).expect_code(exit::SUCCESS);
    for entry in std::fs::read_dir(&cache).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    env.stepback_with_cache(&args, &cache)
        .expect_code(exit::SUCCESS)
        .expect_stderr("compiled and cached");
    env.stepback_with_cache(&args, &cache)
        .expect_code(exit::SUCCESS)
        .expect_stderr("compiled cache hit");
}

/// A warm load trusts a plugin file's stamp instead of hashing it: a
/// file rewritten in place, at the same size, is hashed and compiled
/// again, never run as the component it was before.
#[test]
fn a_plugin_rewritten_in_place_is_loaded_as_rewritten() {
    let (fsops, misbehave) = (
        std::fs::read(guest("fsops")).unwrap(),
        std::fs::read(guest("misbehave")).unwrap(),
    );
    let size = fsops.len().max(misbehave.len()) + 64;
    let env = Env::new();
    let plugin = env.path("plugin.wasm");
    std::fs::write(&plugin, padded(fsops, size)).unwrap();
    let flow = env
        .flow("name = \"p\"\n[[steps]]\nname = \"s\"\nuses = \"plugin.wasm\"\non-failure = \"continue\"\n");
    let cache = env.path("fresh-cache");
    let args = ["--verbose", "validate", flow.to_str().unwrap()];
    // Past the filesystem's timestamp tick (engine/src/plugin/stamp.rs's
    // TICK), so the stamp is trusted and remembered.
    std::thread::sleep(std::time::Duration::from_millis(2600));
    let first = env.stepback_with_cache(&args, &cache);
    first.expect_stderr("compiled and cached");
    let warm = env.stepback_with_cache(&args, &cache);
    warm.expect_stderr("compiled cache hit");
    assert_eq!(loaded_sha(&first), loaded_sha(&warm));
    let mut file = std::fs::OpenOptions::new().write(true).open(&plugin).unwrap();
    std::io::Write::write_all(&mut file, &padded(misbehave, size)).unwrap();
    drop(file);
    let rewritten = env.stepback_with_cache(&args, &cache);
    rewritten.expect_stderr("compiled and cached");
    assert_ne!(
        loaded_sha(&rewritten),
        loaded_sha(&first),
        "{}",
        rewritten.stderr()
    );
}

/// On a filesystem that lets no code run from it (`noexec`, as hardened
/// systems mount /home, /var or /dev/shm), entries are copied into memory
/// instead of mapped: the second run still hits the cache.
#[test]
fn a_cache_on_a_noexec_filesystem_is_still_hit() {
    let (env, flow) = write_flow("");
    let cache = env.path("noexec");
    std::fs::create_dir(&cache).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "noexec,mode=0700", "tmpfs"])
        .arg(&cache)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a tmpfs (the test needs root)");
    let args = ["--verbose", "run", flow.to_str().unwrap()];
    let first = env.stepback_with_cache(&args, &cache);
    std::fs::remove_file(env.path("out/x")).unwrap();
    let second = env.stepback_with_cache(&args, &cache);
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(&cache)
        .status();
    first
        .expect_code(exit::SUCCESS)
        .expect_stderr("compiled and cached");
    second
        .expect_code(exit::SUCCESS)
        .expect_stderr("compiled cache hit");
}

/// Two entries swapped together with their digests are recompiled, never
/// loaded as each other. (The renames move the entries' stamps, which is
/// what catches it here; the signed names would catch a swap that kept
/// the stamps, which no unprivileged call can do.)
#[test]
fn entries_swapped_with_their_digests_are_never_loaded() {
    tamper_and_rerun(|env, entries| {
        let tmp = env.path("swap.cwasm");
        for (from, to) in [
            (&entries[0], &tmp),
            (&entries[1], &entries[0]),
            (&tmp, &entries[1]),
        ] {
            std::fs::rename(from, to).unwrap();
            std::fs::rename(from.with_extension("cwasm.mac"), to.with_extension("cwasm.mac")).unwrap();
        }
    });
}

/// Finding 13: whoever could write the cache could make a later flow load
/// any compiled code as a plugin. An entry swapped for another valid
/// artifact (here: another plugin's) fails its keyed digest and is
/// recompiled, never loaded.
#[test]
fn a_replaced_cache_entry_is_never_loaded() {
    tamper_and_rerun(|_, entries| {
        let (a, b) = (
            std::fs::read(&entries[0]).unwrap(),
            std::fs::read(&entries[1]).unwrap(),
        );
        std::fs::write(&entries[0], &b).unwrap();
        std::fs::write(&entries[1], &a).unwrap();
    });
}

/// Runs a flow of two plugins, lets `tamper` change their two cache
/// entries, and checks the next run compiles both again and works.
fn tamper_and_rerun(tamper: impl FnOnce(&Env, &[std::path::PathBuf])) {
    let (env, flow) =
        write_flow("[[steps]]\nname = \"fail\"\nuses = \"builtin:fail\"\non-failure = \"continue\"\n");
    let cache = env.path("fresh-cache");
    let args = ["--verbose", "run", flow.to_str().unwrap()];
    env.stepback_with_cache(&args, &cache).expect_code(exit::SUCCESS);
    let entries = compiled_entries(&cache);
    assert_eq!(entries.len(), 2);
    tamper(&env, &entries);
    let again = env.stepback_with_cache(&args, &cache);
    again.expect_code(exit::SUCCESS);
    assert_eq!(
        again.stderr().matches("compiled and cached").count(),
        2,
        "a tampered entry was loaded:\n{}",
        again.stderr()
    );
    assert_eq!(std::fs::read_to_string(env.path("out/x")).unwrap(), "x");
}

/// The SHA-256 a `--verbose` run printed for the plugin it loaded.
fn loaded_sha(run: &crate::support::Run) -> String {
    let stderr = run.stderr();
    let at = stderr.find("(sha256 ").expect("a plugin-loaded line") + 8;
    stderr[at..].chars().take_while(char::is_ascii_hexdigit).collect()
}

/// `wasm` with a custom section appended so that it is `size` bytes long.
fn padded(mut wasm: Vec<u8>, size: usize) -> Vec<u8> {
    let leb = |mut n: usize| {
        let mut out = Vec::new();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                return out;
            }
        }
    };
    let body = (0..size)
        .map(|payload| 4 + payload)
        .find(|body| wasm.len() + 1 + leb(*body).len() + body == size)
        .expect("room for a custom section");
    wasm.push(0);
    wasm.extend(leb(body));
    wasm.extend([3, b'p', b'a', b'd']);
    wasm.resize(size, 0);
    wasm
}

/// A scratch env whose flow writes `/out/x` with `builtin:write-file`,
/// then has the `extra` steps.
fn write_flow(extra: &str) -> (Env, std::path::PathBuf) {
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
"# + extra,
    );
    (env, flow)
}

fn compiled_entries(cache: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    entries.sort();
    entries
}

#[test]
fn the_cache_is_listed_and_pruned() {
    let (env, flow) = write_flow("");
    let cache = env.path("fresh-cache");
    env.stepback_with_cache(&["run", flow.to_str().unwrap()], &cache)
        .expect_code(exit::SUCCESS);
    let listed = env.stepback_with_cache(&["--output", "json", "cache", "list"], &cache);
    listed.expect_code(exit::SUCCESS);
    let result: serde_json::Value = serde_json::from_str(&listed.stdout()).unwrap();
    assert_eq!(result["kind"], "cache");
    let entries = result["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{}", listed.stdout());
    assert_eq!(result["total_bytes"], entries[0]["bytes"]);
    assert_eq!(entries[0]["sha256"].as_str().unwrap().len(), 64);
    assert!(entries[0]["bytes"].as_u64().unwrap() > 1000);
    env.stepback_with_cache(&["cache", "list"], &cache)
        .expect_stdout("1 compiled plugin(s)");
    // Used just now: not older than an hour, and within the limit.
    env.stepback_with_cache(&["cache", "prune", "--older-than", "1h"], &cache)
        .expect_code(exit::SUCCESS)
        .expect_stdout("removed 0 compiled plugin(s)");
    env.stepback_with_cache(&["cache", "prune", "--max", "0"], &cache)
        .expect_code(exit::SUCCESS)
        .expect_stdout("removed 1 compiled plugin(s)");
    assert!(compiled_entries(&cache).is_empty());
    env.stepback_with_cache(&["--verbose", "run", flow.to_str().unwrap()], &cache)
        .expect_code(exit::SUCCESS)
        .expect_stderr("compiled and cached");
}

#[test]
fn the_cache_stays_within_its_limit() {
    let (env, flow) =
        write_flow("[[steps]]\nname = \"f\"\nuses = \"builtin:fail\"\non-failure = \"continue\"\n");
    let cache = env.path("fresh-cache");
    // A limit below one entry: each new entry pushes the others out.
    env.stepback_with_cache(&["--cache-limit", "1", "run", flow.to_str().unwrap()], &cache)
        .expect_code(exit::SUCCESS);
    assert_eq!(compiled_entries(&cache).len(), 1);
    env.stepback_with_cache(&["run", flow.to_str().unwrap()], &cache)
        .expect_code(exit::SUCCESS);
    assert_eq!(compiled_entries(&cache).len(), 2, "the default limit keeps both");
}
