//! A guest sees only its mounts: `../`, absolute host paths, symlinks
//! pointing out of a mount, writes to a read-only mount and the network
//! are all refused, and nothing outside the mounts changes.

use crate::support::{Env, assert_same, flow_head, guest, snapshot};
use std::os::unix::fs::symlink;
use std::path::Path;
use stepback::exit;

#[test]
fn escape_attempts_fail_and_change_nothing() {
    let env = Env::new();
    env.write("outside/secret", "secret");
    env.write("ro/existing", "original");
    env.mkdir("rw");
    symlink("../outside", env.path("rw/rel-link")).unwrap();
    symlink(env.path("outside"), env.path("rw/abs-link")).unwrap();
    let outside = env.path("outside");
    let before = snapshot(env.dir.path());

    let text = flow_head("escape", &["rw"], &["ro"])
        + &format!(
            r#"
[[steps]]
name = "escape"
uses = "{guest}"
mounts = ["rw", "ro"]
[steps.with]
mode = "escape"
writes = [
    "/rw/../outside/dotdot",
    "/rw/../../dotdot",
    "{outside}/absolute",
    "/rw/rel-link/through-relative-symlink",
    "/rw/abs-link/through-absolute-symlink",
    "/ro/new-file",
    "/ro/existing",
    "/etc/stepback-escape",
]
reads = ["/rw/rel-link/secret", "/rw/abs-link/secret", "/rw/../outside/secret", "{outside}/secret"]
"#,
            guest = guest("misbehave"),
            outside = outside.display()
        );
    env.run_flow(&text)
        .expect_code(exit::SUCCESS)
        .expect_stdout("12 attempts refused");

    let mut after = snapshot(env.dir.path());
    after.retain(|p, _| !p.starts_with("state") && p != Path::new("flow.toml"));
    assert_same(&before, &after, "escape attempts");
    assert!(!Path::new("/etc/stepback-escape").exists());
}

#[test]
fn the_network_is_denied() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let env = Env::new();
    let text = format!(
        r#"
name = "network"
[[steps]]
name = "connect"
uses = "{}"
with = {{ mode = "connect", address = "{address}" }}
"#,
        guest("misbehave")
    );
    env.run_flow(&text)
        .expect_code(exit::SUCCESS)
        .expect_stdout("refused");
    assert!(listener.accept().is_err(), "the guest reached the listener");
}

#[test]
fn a_write_outside_every_mount_says_that_mounts_are_why() {
    let env = Env::new();
    env.mkdir("m");
    let flow = flow_head("outside", &["m"], &[])
        + "[[steps]]\nname = \"write\"\nuses = \"builtin:write-file\"\nmounts = [\"m\"]\nwith = { path = \"/etc/stepback-outside\", content = \"x\" }\n";
    let run = env.run_flow(&flow);
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("FAILED  write")
        .expect_stdout(
            "/etc is outside every mount of this step (its mounts: /m): a step reaches only the mounts its `mounts` lists",
        );
    assert!(!Path::new("/etc/stepback-outside").exists());
    // The same hint is in the event's details, for programs.
    let json = env.stepback(&["--output", "json", "run", "flow.toml"]);
    let failed = json
        .events()
        .into_iter()
        .find(|e| e["event"] == "step-finished")
        .unwrap();
    assert!(
        failed["details"]
            .as_str()
            .unwrap()
            .contains("outside every mount"),
        "{failed}"
    );
    // A write inside the mount that fails for another reason gets no hint.
    env.write("m/dir/keep", "");
    let inside = flow_head("inside", &["m"], &[])
        + "[[steps]]\nname = \"write\"\nuses = \"builtin:write-file\"\nmounts = [\"m\"]\nwith = { path = \"/m/dir\", content = \"x\" }\n";
    let run = env.run_flow(&inside);
    run.expect_code(exit::FLOW_FAILED);
    assert!(!run.stdout().contains("outside every mount"), "{}", run.stdout());
}
