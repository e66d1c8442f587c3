//! Changes that something other than the flow makes to a mount while the
//! flow runs: the rollback restores the paths the run changed, and keeps
//! what the other process put there aside, never overwriting it silently.

use crate::fsops::{Op, script};
use crate::support::*;
use std::fs;
use std::path::Path;
use stepback::exit;

/// A flow whose first step replaces `config.txt` and creates `new.txt`,
/// and whose second step waits for `sig/go` and then fails.
fn two_step_flow(env: &Env) {
    flow_with(
        env,
        "other-processes",
        serde_json::json!([
            {"name": "deploy", "uses": guest("fsops"), "mounts": ["m"], "with": {"ops": script(&[
                Op::open(0, "config.txt", &["create", "truncate"], &["write"]),
                Op::write(1, 0, 3, 110),
                Op::open(0, "new.txt", &["create", "truncate"], &["write"]),
                Op::write(2, 0, 3, 114),
            ])}},
            waiting_step(),
        ]),
    );
}

/// Writes `flow.json`: mount `m` read-write, mount `sig` (where the test
/// says `go`) read-only, and `steps`.
fn flow_with(env: &Env, name: &str, steps: serde_json::Value) {
    env.mkdir("sig");
    let flow = serde_json::json!({
        "name": name,
        "mounts": [
            {"name": "m", "host": "m", "guest": "/m", "access": "read-write"},
            {"name": "sig", "host": "sig", "guest": "/sig", "access": "read-only"},
        ],
        "steps": steps,
    });
    env.write("flow.json", serde_json::to_string_pretty(&flow).unwrap());
}

/// A step that says it has started (`m/started`), waits for `sig/go`,
/// then fails: the test changes the mount meanwhile.
fn waiting_step() -> serde_json::Value {
    let ops = script(&[Op::mkdir(0, "started"), Op::wait_for(1, "go")]);
    serde_json::json!({"name": "check", "uses": guest("fsops"), "mounts": ["m", "sig"],
        "with": {"ops": ops, "fail": true}})
}

/// Runs the flow, calling `meddle` while its waiting step waits.
fn run_with(env: &Env, meddle: impl FnOnce()) -> Run {
    let child = env.spawn_until_started("flow.json");
    meddle();
    fs::write(env.path("sig/go"), "").unwrap();
    Run(child.wait_with_output().unwrap())
}

/// The path in a `kept at PATH` line of the output.
fn kept_path(out: &str, mount_path: &str) -> String {
    let line = out
        .lines()
        .find(|l| l.contains("KEPT ASIDE") && l.contains(mount_path))
        .unwrap_or_else(|| panic!("no KEPT ASIDE line for {mount_path}:\n{out}"));
    line.rsplit_once("kept at ").unwrap().1.to_owned()
}

#[test]
fn a_file_another_process_changed_during_the_run_is_kept_aside_not_overwritten() {
    let env = Env::new();
    env.write("m/config.txt", "v1");
    env.write("m/other.txt", "untouched");
    two_step_flow(&env);
    fix_times(&env.path("m"));
    let before = snapshot_full(&env.path("m"));
    let run = run_with(&env, || {
        fs::write(env.path("m/config.txt"), "edited by hand").unwrap();
        fs::write(env.path("m/new.txt"), "replaced by hand").unwrap();
    });
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("2 change(s) made by another process during the run")
        .expect_stdout("m:/config.txt: a file of 14 bytes")
        .expect_stdout("where the run left a file of 3 bytes");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the rollback");
    let out = run.stdout();
    assert_eq!(
        fs::read_to_string(kept_path(&out, "m:/config.txt")).unwrap(),
        "edited by hand"
    );
    assert_eq!(
        fs::read_to_string(kept_path(&out, "m:/new.txt")).unwrap(),
        "replaced by hand"
    );
    env.stepback(&["show"])
        .expect_stdout("2 change(s) by other processes kept aside");
    // For programs, each is an object: mount, path, what was found, where it is kept.
    let report = env.stepback(&["--output", "json", "show", &run.run_id()]);
    let report: serde_json::Value = serde_json::from_str(&report.stdout()).unwrap();
    let finished = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "rollback-finished")
        .unwrap()
        .clone();
    let config = finished["kept"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["mount"] == "m" && k["path"] == "config.txt")
        .unwrap_or_else(|| panic!("{finished}"));
    assert_eq!(
        config["kept_at"].as_str(),
        Some(kept_path(&out, "m:/config.txt").as_str())
    );
    assert!(
        config["reason"]
            .as_str()
            .unwrap()
            .contains("changed by another process"),
        "{config}"
    );
    // A later run prunes clean rollbacks' backups, never this one's.
    env.stepback(&["run", "flow.json"]).expect_code(exit::FLOW_FAILED);
    assert!(Path::new(&kept_path(&out, "m:/config.txt")).exists());
}

#[test]
fn what_the_run_left_as_it_was_is_restored_without_keeping_anything() {
    let env = Env::new();
    env.write("m/config.txt", "v1");
    two_step_flow(&env);
    fix_times(&env.path("m"));
    let before = snapshot_full(&env.path("m"));
    // Another process changes only what the run never touched: nothing of
    // it is in the rollback's way.
    let run = run_with(&env, || {
        fs::write(env.path("m/unrelated.txt"), "by hand").unwrap();
    });
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("every path restored");
    assert!(!run.stdout().contains("KEPT ASIDE"), "{}", run.stdout());
    fs::remove_file(env.path("m/unrelated.txt")).unwrap();
    let mut after = snapshot_full(&env.path("m"));
    // The root's time moved with the unrelated file.
    after.retain(|p, _| !p.as_os_str().is_empty());
    let mut before = before;
    before.retain(|p, _| !p.as_os_str().is_empty());
    assert_same_full(&before, &after, "after the rollback");
}

#[test]
fn a_file_renamed_with_its_directory_is_checked_where_it_is_restored() {
    // The run changes `d/x`, then renames `d` to `e` in the same step; the
    // rollback renames it back and must find `d/x` as the run left it (no
    // false alarm), while a change by hand to `e/x` is found there and
    // kept aside.
    let env = Env::new();
    env.write("m/d/x", "orig");
    flow_with(
        &env,
        "renamed",
        serde_json::json!([
            {"name": "change", "uses": guest("fsops"), "mounts": ["m"], "with": {"ops": script(&[
                Op::open(0, "d/x", &[], &["write"]),
                Op::write(1, 0, 6, 120),
                Op::rename(0, "d", 0, "e"),
            ]), "fail": false}},
            waiting_step(),
        ]),
    );
    fix_times(&env.path("m"));
    let before = snapshot_full(&env.path("m"));
    let quiet = run_with(&env, || {});
    quiet
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("every path restored");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after a quiet rollback");
    fs::remove_file(env.path("sig/go")).unwrap();
    let meddled = run_with(&env, || fs::write(env.path("m/e/x"), "by hand!").unwrap());
    meddled
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("KEPT ASIDE m:/d/x: a file of 8 bytes")
        .expect_stdout("where the run left a file of 6 bytes");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the rollback");
}

#[test]
fn a_file_changed_by_another_process_while_its_step_still_runs_is_kept_aside() {
    // The step writes `config.txt` and closes it, then goes on (waits);
    // meanwhile another process edits the file. The step's end is after
    // that edit, but what the step left is what it wrote.
    let env = Env::new();
    env.write("m/config.txt", "v1");
    flow_with(
        &env,
        "in-step",
        serde_json::json!([
            {"name": "deploy", "uses": guest("fsops"), "mounts": ["m", "sig"], "with": {"ops": script(&[
                Op::open(0, "config.txt", &["truncate"], &["write"]),
                Op::write(2, 0, 3, 110),
                Op::close(2),
                Op::mkdir(0, "started"),
                Op::wait_for(1, "go"),
            ]), "fail": true}},
        ]),
    );
    fix_times(&env.path("m"));
    let before = snapshot_full(&env.path("m"));
    let run = run_with(&env, || {
        fs::write(env.path("m/config.txt"), "edited by hand").unwrap()
    });
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("KEPT ASIDE m:/config.txt: a file of 14 bytes")
        .expect_stdout("where the run left a file of 3 bytes");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the rollback");
    assert_eq!(
        fs::read_to_string(kept_path(&run.stdout(), "m:/config.txt")).unwrap(),
        "edited by hand"
    );
}

#[test]
fn entries_another_process_puts_in_a_directory_the_run_created_are_kept_aside() {
    // The run makes `new/` with a file, a subdirectory and a hard link of
    // an existing file in it; while a later step runs, another process adds
    // a file and a directory there. The rollback takes `new/` out of the
    // mount and keeps the other process's entries, and only those, aside.
    let env = Env::new();
    env.write("m/config.txt", "v1");
    flow_with(
        &env,
        "tree",
        serde_json::json!([
            {"name": "deploy", "uses": guest("fsops"), "mounts": ["m"], "with": {"ops": script(&[
                Op::mkdir(0, "new"),
                Op::open(0, "new/app.bin", &["create"], &["write"]),
                Op::write(1, 0, 10, 97),
                Op::mkdir(0, "new/lib"),
                Op::open(0, "new/lib/x.so", &["create"], &["write"]),
                Op::link(0, "config.txt", 0, "new/config.txt"),
            ])}},
            waiting_step(),
        ]),
    );
    fix_times(&env.path("m"));
    let before = snapshot_full(&env.path("m"));
    let run = run_with(&env, || {
        fs::write(env.path("m/new/notes.txt"), "by hand").unwrap();
        fs::create_dir(env.path("m/new/lib/extra")).unwrap();
        fs::write(env.path("m/new/lib/extra/y"), "y").unwrap();
    });
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("2 change(s) made by another process")
        .expect_stdout("KEPT ASIDE m:/new/notes.txt: not the run's")
        .expect_stdout("KEPT ASIDE m:/new/lib/extra: not the run's");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the rollback");
    let out = run.stdout();
    assert_eq!(
        fs::read_to_string(kept_path(&out, "m:/new/notes.txt")).unwrap(),
        "by hand"
    );
    let extra = std::path::PathBuf::from(kept_path(&out, "m:/new/lib/extra"));
    assert_eq!(fs::read_to_string(extra.join("y")).unwrap(), "y");
}

/// Found by review: the layer remembered a directory it had opened by the
/// path it was opened at. Another process then moved it away and another
/// directory to its name; the step's next file there was made in the moved
/// directory but journaled at the old path, and the rollback removed the
/// other process's file of that name instead of the step's.
#[test]
fn a_directory_moved_while_its_step_runs_is_looked_up_again() {
    let env = Env::new();
    env.write("m/a/keep.txt", "keep");
    env.write("m/c/y", "FOREIGN\n");
    flow_with(
        &env,
        "moved",
        serde_json::json!([
            {"name": "deploy", "uses": guest("fsops"), "mounts": ["m", "sig"], "with": {"ops": script(&[
                Op::open(0, "a/keep.txt", &[], &["read"]),
                Op::open(0, "a/keep.txt", &[], &["write"]),
                Op::mkdir(0, "started"),
                Op::wait_for(1, "go"),
                Op::open(0, "a/y", &["create"], &["write"]),
                Op::write(4, 0, 5, 65),
            ]), "fail": true}},
        ]),
    );
    let run = run_with(&env, || {
        fs::rename(env.path("m/a"), env.path("m/b")).unwrap();
        fs::rename(env.path("m/c"), env.path("m/a")).unwrap();
    });
    run.expect_code(exit::FLOW_FAILED);
    assert_eq!(
        fs::read_to_string(env.path("m/a/y")).unwrap(),
        "FOREIGN\n",
        "{}",
        run.stdout()
    );
    assert_eq!(fs::read_to_string(env.path("m/b/keep.txt")).unwrap(), "keep");
    assert!(
        !env.path("m/b/y").exists(),
        "the step's own file was left:\n{}",
        run.stdout()
    );
}
