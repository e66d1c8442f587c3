//! `builtin:write-file`, `builtin:remove` and `builtin:fail`.

use crate::support::{Env, flow_head};
use stepback::exit;

fn flow(steps: &str) -> String {
    flow_head("small", &["out"], &[])
        + &format!(
            r#"
{steps}
"#
        )
}

#[test]
fn write_file_creates_parents_replaces_and_appends() {
    let env = Env::new();
    env.write("out/existing", "old contents that are longer");
    env.run_flow(&flow(
        r#"
[[steps]]
name = "new"
uses = "builtin:write-file"
mounts = ["out"]
with = { path = "/out/a/b/new.txt", content = "new" }
[[steps]]
name = "replace"
uses = "builtin:write-file"
mounts = ["out"]
with = { path = "/out/existing", content = "short" }
[[steps]]
name = "append"
uses = "builtin:write-file"
mounts = ["out"]
with = { path = "/out/existing", content = "+more", append = true }
"#,
    ))
    .expect_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read_to_string(env.path("out/a/b/new.txt")).unwrap(),
        "new"
    );
    assert_eq!(
        std::fs::read_to_string(env.path("out/existing")).unwrap(),
        "short+more"
    );
}

#[test]
fn remove_deletes_files_and_trees() {
    let env = Env::new();
    env.write("out/file", "x");
    env.write("out/tree/a/b", "x");
    env.write("out/tree/c", "x");
    env.write("out/kept", "x");
    env.run_flow(&flow(
        r#"
[[steps]]
name = "file"
uses = "builtin:remove"
mounts = ["out"]
with = { path = "/out/file" }
[[steps]]
name = "tree"
uses = "builtin:remove"
mounts = ["out"]
with = { path = "/out/tree" }
[[steps]]
name = "gone"
uses = "builtin:remove"
mounts = ["out"]
with = { path = "/out/never-was", missing-ok = true }
"#,
    ))
    .expect_code(exit::SUCCESS)
    .expect_stdout("/out/never-was was already absent");
    assert!(!env.path("out/file").exists() && !env.path("out/tree").exists());
    assert!(env.path("out/kept").exists());
}

/// Found by a review: removing a mount's root emptied the mount, then
/// failed (the root itself cannot go), leaving the rollback to restore it.
#[test]
fn remove_refuses_a_mount_root_before_removing_anything() {
    let env = Env::new();
    env.write("out/kept", "k");
    for path in ["/out", "/out/", "/out/sub/..", "//out/."] {
        env.run_flow(&flow(&format!(
            "[[steps]]\nname = \"root\"\nuses = \"builtin:remove\"\nmounts = [\"out\"]\nwith = {{ path = \"{path}\" }}\n"
        )))
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("is the root of mount 'out'")
        .expect_stdout("0 changes undone");
        assert_eq!(
            std::fs::read_to_string(env.path("out/kept")).unwrap(),
            "k",
            "{path}"
        );
    }
}

#[test]
fn remove_fails_on_a_missing_path_by_default() {
    let env = Env::new();
    env.mkdir("out");
    env.run_flow(&flow(
        "[[steps]]\nname = \"gone\"\nuses = \"builtin:remove\"\nmounts = [\"out\"]\nwith = { path = \"/out/nope\" }\n",
    ))
    .expect_code(exit::FLOW_FAILED)
    .expect_stdout("/out/nope: No such file or directory");
}

#[test]
fn fail_fails_with_its_message() {
    let env = Env::new();
    env.mkdir("out");
    let text = env.flow(flow(
        "[[steps]]\nname = \"f\"\nuses = \"builtin:fail\"\nwith = { message = \"boom\" }\n",
    ));
    let run = env.stepback(&["--output", "json", "run", text.to_str().unwrap()]);
    run.expect_code(exit::FLOW_FAILED);
    assert_eq!(run.step_statuses(), [("f".to_owned(), "failed".to_owned())]);
    let failed = run
        .events()
        .into_iter()
        .find(|e| e["event"] == "step-finished")
        .unwrap();
    assert_eq!(failed["error"], "boom");
}
