//! Layouts that would let a step reach behind the journal are refused
//! before anything runs (nested or repeated mounts, mounts holding
//! Stepback's own state), and locks keep flows whose mounts overlap from
//! running at once.

use crate::journal::runs;
use crate::support::{Env, guest};
use std::time::{Duration, Instant};
use stepback::exit;

fn mount(name: &str, host: &str, access: &str) -> String {
    format!("[[mounts]]\nname = \"{name}\"\nhost = \"{host}\"\nguest = \"/{name}\"\naccess = \"{access}\"\n")
}

fn write_step(mount: &str) -> String {
    format!(
        "[[steps]]\nname = \"write\"\nuses = \"builtin:write-file\"\nmounts = [\"{mount}\"]\nwith = {{ path = \"/{mount}/x\", content = \"x\" }}\n"
    )
}

/// Finding 10: a step with `data` could replace `data/sub` by a symlink,
/// and the next step's `sub` mount would resolve outside.
#[test]
fn nested_mounts_are_refused_when_either_is_writable() {
    let env = Env::new();
    env.mkdir("data/sub");
    let text = format!(
        "name = \"nested\"\n{}{}{}",
        mount("data", "data", "read-write"),
        mount("sub", "data/sub", "read-only"),
        write_step("data")
    );
    env.run_flow(&text)
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("flow.toml:9:8: mounts[1].host: host path ")
        .expect_stderr("overlaps mount 'data'");
    assert!(!env.path("data/x").exists());
    // Both read-only: nothing can change either, so they may nest.
    let text = format!(
        "name = \"nested\"\n{}{}{}",
        mount("data", "data", "read-only"),
        mount("sub", "data/sub", "read-only"),
        "[[steps]]\nname = \"f\"\nuses = \"builtin:fail\"\non-failure = \"continue\"\n"
    );
    env.run_flow(&text).expect_code(exit::SUCCESS);
}

/// Finding 11: the same directory mounted twice was refused as "in use by
/// another flow" naming the flow's own process.
#[test]
fn the_same_directory_twice_is_refused_with_the_reason() {
    let env = Env::new();
    env.mkdir("data");
    let text = format!(
        "name = \"twice\"\n{}{}{}",
        mount("a", "data", "read-write"),
        mount("b", "./data/", "read-only"),
        write_step("a")
    );
    env.run_flow(&text)
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("is mounted already, as 'a'");
}

/// Finding 13: a mount holding the state directory let a plugin forge
/// journal records; one inside it is refused too.
#[test]
fn mounts_holding_or_inside_the_state_directory_are_refused() {
    let env = Env::new();
    env.mkdir("state/runs");
    for host in [".", "state", "state/runs"] {
        let text = format!(
            "name = \"own\"\n{}{}",
            mount("m", host, "read-write"),
            write_step("m")
        );
        let run = env.run_flow(&text);
        run.expect_code(exit::INVALID_INPUT)
            .expect_stderr("where Stepback keeps its journals");
    }
}

/// A bind mount names the directory holding the state directory by
/// another path: comparing paths let a command granted it rewrite the
/// compiled cache (native code the engine later runs). Compared by
/// identity, it is refused like the directory's own path.
#[test]
fn a_bind_mount_of_a_directory_holding_the_state_is_refused() {
    let env = Env::new();
    env.mkdir("state/runs");
    let alias = std::env::temp_dir().join(format!("stepback-alias-{}", std::process::id()));
    std::fs::create_dir_all(&alias).unwrap();
    let bound = std::process::Command::new("mount")
        .arg("--bind")
        .arg(env.path("."))
        .arg(&alias)
        .status()
        .unwrap();
    assert!(bound.success(), "mount --bind (the test needs root)");
    let text = format!(
        "name = \"alias\"\n{}{}",
        mount("m", alias.to_str().unwrap(), "read-write"),
        write_step("m")
    );
    let run = env.run_flow(&text);
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(&alias)
        .status();
    let _ = std::fs::remove_dir(&alias);
    run.expect_code(exit::INVALID_INPUT)
        .expect_stderr("where Stepback keeps its journals");
}

#[test]
fn a_state_directory_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.mkdir("m");
    env.mkdir("state");
    std::fs::set_permissions(env.path("state"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let text = format!(
        "name = \"w\"\n{}{}",
        mount("m", "m", "read-write"),
        write_step("m")
    );
    env.run_flow(&text)
        .expect_code(exit::ENGINE_ERROR)
        .expect_stderr("can be written by others (mode 777)");
    // (Which code `recover` exits with here is for README's exit-code
    // table to say; that it refuses and says why is this test's.)
    let recover = env.stepback(&["recover"]);
    recover.expect_stderr("chmod go-w");
    assert_ne!(recover.code(), i32::from(exit::SUCCESS));
    assert!(!env.path("m/x").exists());
}

/// Starts a flow that holds `host` read-write for 30 s; returns it once
/// its run has started.
fn hold(env: &Env, host: &str) -> std::process::Child {
    let text = format!(
        "name = \"slow\"\n{}[[steps]]\nname = \"sleep\"\nuses = \"{}\"\nmounts = [\"m\"]\nwith = {{ mode = \"sleep\", seconds = 30 }}\n",
        mount("m", host, "read-write"),
        guest("misbehave")
    );
    env.write("slow.toml", text);
    let cache = crate::support::shared_cache();
    let child = env.command(&["run", "slow.toml"], &cache).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while runs(env).is_empty() {
        assert!(Instant::now() < deadline, "the slow flow never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Finding 12: locks were per exact path, so a flow mounting `data/sub`
/// changed and committed files while another flow held `data`, and that
/// flow's rollback erased them.
#[test]
fn flows_whose_mounts_overlap_exclude_each_other() {
    for (held, wanted) in [("data", "data/sub"), ("data/sub", "data")] {
        let env = Env::new();
        env.mkdir("data/sub");
        let mut slow = hold(&env, held);
        let text = format!(
            "name = \"other\"\n{}{}",
            mount("m", wanted, "read-write"),
            write_step("m")
        );
        let second = env.run_flow(&text);
        slow.kill().unwrap();
        slow.wait().unwrap();
        second
            .expect_code(exit::BLOCKED)
            .expect_stderr("is in use by another flow");
        assert!(!env.path(&format!("{wanted}/x")).exists());
    }
    // Mounts beside each other do not exclude each other.
    let env = Env::new();
    env.mkdir("data/a");
    env.mkdir("data/b");
    let mut slow = hold(&env, "data/a");
    let text = format!(
        "name = \"other\"\n{}{}",
        mount("m", "data/b", "read-write"),
        write_step("m")
    );
    let second = env.run_flow(&text);
    slow.kill().unwrap();
    slow.wait().unwrap();
    second.expect_code(exit::SUCCESS);
}

/// Principle 4: a mount is pinned by its directory's identity when the run
/// starts. Replaced between steps (here by another process, while a step
/// sleeps), the next step is not run on the new directory, and the
/// rollback leaves the new directory alone instead of undoing the run's
/// changes there, saying why.
#[test]
fn a_mount_replaced_during_a_run_is_neither_used_nor_rolled_back() {
    let env = Env::new();
    env.mkdir("m");
    let text = format!(
        "name = \"pinned\"\n{}{}[[steps]]\nname = \"sleep\"\nuses = \"{}\"\nmounts = [\"m\"]\nwith = {{ mode = \"sleep\", seconds = 3 }}\n[[steps]]\nname = \"again\"\nuses = \"builtin:write-file\"\nmounts = [\"m\"]\nwith = {{ path = \"/m/y\", content = \"y\" }}\n",
        mount("m", "m", "read-write"),
        write_step("m"),
        guest("misbehave")
    );
    env.write("flow.toml", text);
    let cache = crate::support::shared_cache();
    let child = env
        .command(&["run", "flow.toml"], &cache)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !env.path("m/x").exists() {
        assert!(Instant::now() < deadline, "the first step never wrote");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::rename(env.path("m"), env.path("m.old")).unwrap();
    env.write("m/keep", "not the run's");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(i32::from(exit::ROLLBACK_INCOMPLETE)),
        "{stdout}"
    );
    assert!(
        stdout.contains("is no longer the directory the run started with"),
        "{stdout}"
    );
    assert!(
        stdout.contains("is not the directory the run changed"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(env.path("m/keep")).unwrap(),
        "not the run's"
    );
    assert!(!env.path("m/y").exists());
}
