//! The undo journal: a failed flow is reversed exactly (contents, types,
//! symlink targets, modes, modification times), also after the engine is
//! killed at any journaled operation or at any undo of a rollback.

use crate::fsops::{Op, script};
use crate::support::{
    Env, Snapshot, assert_same_full, assert_same_meta, fix_times, flow_head, fsops_flow, guest,
    snapshot_full, snapshot_meta,
};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};
use stepback::exit;

/// Lays out the tree the `churn` test plugin changes: files, a multi-MiB
/// file, nested directories, a symlink, two hard links, odd modes, and
/// fixed modification times on everything.
pub fn fixture(root: &Path) {
    let write = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    };
    write("a.txt", b"alpha");
    write("b.txt", b"bravo");
    write("c.txt", b"charlie");
    write("d.txt", b"delta");
    write("e.txt", b"echo");
    write(
        "big.bin",
        &(0..3 << 20).map(|i: u32| (i % 251) as u8).collect::<Vec<_>>(),
    );
    write("dir1/x.txt", b"x-ray");
    write("dir1/nested/y.txt", b"yankee");
    write("olddir/z.txt", b"zulu");
    write("olddir/inner/w.txt", b"whiskey");
    write("hard1", b"shared by two names");
    fs::hard_link(root.join("hard1"), root.join("hard2")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    symlink("a.txt", root.join("link")).unwrap();
    fs::set_permissions(root.join("a.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(root.join("big.bin"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(root.join("dir1"), fs::Permissions::from_mode(0o750)).unwrap();
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    // Deepest first: setting a directory's time after its children's.
    let entries = [
        "a.txt",
        "b.txt",
        "c.txt",
        "d.txt",
        "e.txt",
        "big.bin",
        "dir1/x.txt",
        "dir1/nested/y.txt",
        "olddir/z.txt",
        "olddir/inner/w.txt",
        "hard1",
        "dir1/nested",
        "olddir/inner",
        "dir1",
        "olddir",
        "empty",
        "",
    ];
    for (i, rel) in entries.iter().enumerate() {
        let t = base + Duration::from_secs(i as u64 * 3600) + Duration::from_nanos(123_456_789);
        fs::File::open(root.join(rel)).unwrap().set_modified(t).unwrap();
    }
}

pub fn churn_flow(env: &Env, fail: bool) {
    env.flow(
        flow_head("churn", &["m"], &[])
            + &format!(
                r#"
[[steps]]
name = "write first"
uses = "builtin:write-file"
mounts = ["m"]
with = {{ path = "/m/first.txt", content = "from the first step" }}
[[steps]]
name = "churn"
uses = "{}"
mounts = ["m"]
with = {{ mode = "churn", root = "/m", fail = {fail} }}
"#,
                guest("misbehave")
            ),
    );
}

/// A fresh scratch directory with the fixture in `m/` and the churn flow,
/// and a snapshot of the fixture as it was before anything ran.
pub fn churn_env(fail: bool) -> (Env, Snapshot) {
    let env = Env::new();
    fixture(&env.path("m"));
    let before = snapshot_meta(&env.path("m"));
    churn_flow(&env, fail);
    (env, before)
}

/// A churn env whose failing flow was run with `fault` and crashed.
fn crashed_churn(fault: &str) -> (Env, Snapshot) {
    let (env, before) = churn_env(true);
    let crashed = env.stepback_env(&["run", "flow.toml"], &[("STEPBACK_FAULT", fault)]);
    assert!(crashed.killed(), "{fault} did not crash:\n{}", crashed.stdout());
    (env, before)
}

/// Recovers a crashed churn env and checks that the mount is as `before`
/// and that a second `recover` finds nothing left; returns what the first
/// printed.
fn recover_exactly(env: &Env, before: &Snapshot, what: &str) -> String {
    let recovered = env.stepback(&["recover"]);
    recovered.expect_code(exit::SUCCESS).expect_stdout("rolled back");
    assert_same_meta(before, &snapshot_meta(&env.path("m")), what);
    env.stepback(&["recover"])
        .expect_code(exit::SUCCESS)
        .expect_stdout("nothing to recover");
    recovered.stdout().to_string()
}

/// How many undo records the churn flow writes.
fn churn_records(fail: bool) -> usize {
    let (probe, _) = churn_env(fail);
    probe
        .stepback(&["run", "flow.toml"])
        .expect_code(if fail { exit::FLOW_FAILED } else { exit::SUCCESS });
    undo_records(&probe, &runs(&probe)[0])
}

/// The run ids in the env's state dir.
pub fn runs(env: &Env) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(env.path("state/runs"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Undo records in a run's journal, read through `stepback show`.
fn undo_records(env: &Env, run: &str) -> usize {
    let show = env.stepback(&["show", run, "--records"]);
    show.expect_code(exit::SUCCESS);
    show.stdout()
        .lines()
        .filter(|l| l.contains("\"t\":\"undo\""))
        .count()
}

#[test]
fn a_failed_flow_is_rolled_back_exactly() {
    let (env, before) = churn_env(true);
    env.stepback(&["run", "flow.toml"])
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("churned, now failing on purpose")
        .expect_stdout("every path restored");
    assert_same_meta(&before, &snapshot_meta(&env.path("m")), "after rollback");

    let run = &runs(&env)[0];
    env.stepback(&["show", run])
        .expect_code(exit::SUCCESS)
        .expect_stdout("step 0 'write first':")
        .expect_stdout("replaced (was 5 bytes, now ")
        .expect_stdout("rollback: ");
    // What each change was and how it is undone, from the records.
    let records = env.stepback(&["show", run, "--records"]).events();
    let undos: Vec<(String, String, String)> = records
        .iter()
        .filter(|r| r["t"] == "undo")
        .map(|r| {
            let field = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            let path = if r["undo"]["op"] == "renamed" {
                &r["undo"]["to"]
            } else {
                &r["undo"]["path"]
            };
            (field(&r["change"]), field(&r["undo"]["op"]), field(path))
        })
        .collect();
    for expected in [
        ("created", "created", "first.txt"),
        ("replaced", "saved", "a.txt"),
        ("modified", "copied", "b.txt"),
        ("modified", "copied", "big.bin"),
        ("deleted", "removed-dir", "olddir"),
        ("deleted", "removed-symlink", "link"),
        ("renamed", "renamed", "moved"),
    ] {
        let expected = (
            expected.0.to_owned(),
            expected.1.to_owned(),
            expected.2.to_owned(),
        );
        assert!(undos.contains(&expected), "no {expected:?} in {undos:?}");
    }
    env.stepback(&["show"])
        .expect_code(exit::SUCCESS)
        .expect_stdout("churn")
        .expect_stdout("rolled back");
}

/// A rollback moves what it takes away into the run's backup area instead
/// of deleting it (it need not wait for the blocks to be freed); pruning,
/// at the end of a run, deletes it.
#[test]
fn what_a_recovery_removes_is_kept_aside_until_the_next_run_prunes_it() {
    let (env, _) = crashed_churn("crash-before-undo:1");
    env.stepback(&["recover"]).expect_code(exit::SUCCESS);
    let failed = runs(&env)[0].clone();
    let backup = env.path(&format!("state/runs/{failed}/backup"));
    let discarded: Vec<String> = fs::read_dir(&backup)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("discarded-"))
        .collect();
    assert!(
        !discarded.is_empty(),
        "nothing discarded into {}",
        backup.display()
    );
    assert!(!env.path("m/first.txt").exists());

    churn_flow(&env, false);
    env.stepback(&["run", "flow.toml"]).expect_code(exit::SUCCESS);
    assert!(!backup.exists(), "the rolled-back run's backups were not pruned");
}

#[test]
fn a_successful_flow_is_committed_and_keeps_its_changes() {
    let env = Env::new();
    fixture(&env.path("m"));
    churn_flow(&env, false);
    env.stepback(&["run", "flow.toml"]).expect_code(exit::SUCCESS);
    assert_eq!(fs::read_to_string(env.path("m/a.txt")).unwrap(), "overwritten");
    assert_eq!(
        fs::read_to_string(env.path("m/hard2")).unwrap(),
        "written through one of two hard links"
    );
    assert!(!env.path("m/olddir").exists());
    env.stepback(&["show"])
        .expect_code(exit::SUCCESS)
        .expect_stdout("committed");
}

#[test]
fn a_crash_at_every_journaled_operation_is_recovered() {
    let total = churn_records(true);
    assert!(
        total >= 20,
        "the churn flow journals every kind of change ({total} records)"
    );

    for n in 1..=total {
        let (env, before) = crashed_churn(&format!("crash-before-op:{n}"));
        env.stepback(&["run", "flow.toml"])
            .expect_code(exit::BLOCKED)
            .expect_stderr("did not finish")
            .expect_stderr("stepback recover");
        recover_exactly(&env, &before, &format!("crash before operation {n}"));
    }
    println!("checked {total} crash points during the flow");
}

/// A power cut also loses what the journal had not synced: records of
/// files moved or linked aside, which are written without a sync of their
/// own. Recovery finds those backups by their names.
#[test]
fn a_power_loss_at_every_journaled_operation_is_recovered() {
    let total = churn_records(true);
    let mut lost = 0;
    for n in 1..=total {
        let (env, before) = crashed_churn(&format!("power-loss-before-op:{n}"));
        let said = recover_exactly(&env, &before, &format!("power loss before operation {n}"));
        if said.contains("known only by their backups") {
            lost += 1;
        }
    }
    assert!(lost > 0, "no power cut lost a journal record: nothing was tested");
    println!("checked {total} power-loss points; at {lost} the journal had lost records");
}

#[test]
fn a_crash_at_every_undo_of_a_rollback_is_recovered() {
    let total = churn_records(true);

    for n in 1..=total {
        let (env, before) = crashed_churn(&format!("crash-before-undo:{n}"));
        recover_exactly(&env, &before, &format!("crash before undo {n}"));
    }
    println!("checked {total} crash points during rollback");
}

#[test]
fn disk_full_and_io_errors_while_capturing_fail_the_step_and_lose_nothing() {
    let total = churn_records(false);

    for (fault, message) in [
        ("enospc-at-op", "No space left on device"),
        ("eio-at-op", "I/O error"),
    ] {
        for n in [1, 2, total / 2, total] {
            let (env, before) = churn_env(false);
            env.stepback_env(
                &["run", "flow.toml"],
                &[("STEPBACK_FAULT", &format!("{fault}:{n}"))],
            )
            .expect_code(exit::FLOW_FAILED)
            .expect_stdout(message)
            .expect_stdout("every path restored");
            assert_same_meta(&before, &snapshot_meta(&env.path("m")), &format!("{fault}:{n}"));
        }
    }
}

/// A flow (`flow.toml`) holding mount `m` for `seconds`, started and
/// running.
fn running_slow_flow(env: &Env, seconds: u64) -> std::process::Child {
    env.mkdir("m");
    env.flow(
        flow_head("slow", &["m"], &[])
            + &format!(
                "\n[[steps]]\nname = \"sleep\"\nuses = \"{}\"\nmounts = [\"m\"]\nwith = {{ mode = \"sleep\", seconds = {seconds} }}\n",
                guest("misbehave")
            ),
    );
    let cache = crate::support::shared_cache();
    let slow = env.command(&["run", "flow.toml"], &cache).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while runs(env).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow flow never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    slow
}

#[test]
fn a_mount_in_use_by_a_running_flow_is_refused() {
    let env = Env::new();
    let mut slow = running_slow_flow(&env, 30);
    let second = env.stepback(&["run", "flow.toml"]);
    // Recovery leaves a running run alone, and says which it is.
    let left = env.stepback(&["recover"]);
    slow.kill().unwrap();
    slow.wait().unwrap();
    left.expect_code(exit::SUCCESS)
        .expect_stdout("nothing to recover: run ")
        .expect_stdout("of flow 'slow' is still running (it holds its mounts)");
    second
        .expect_code(exit::BLOCKED)
        .expect_stderr("mount 'm' (")
        .expect_stderr("is in use by another flow: run ")
        .expect_stderr("of flow 'slow'");
    // The killed run is abandoned now, and recovery finishes it.
    env.stepback(&["recover"])
        .expect_code(exit::SUCCESS)
        .expect_stdout("rolled back");
}

/// `--wait` waits for a mount another flow holds: at most as long as it
/// says, or as long as it takes.
#[test]
fn a_run_told_to_wait_waits_for_a_mount_in_use() {
    let env = Env::new();
    let mut slow = running_slow_flow(&env, 4);
    env.stepback(&["run", "--wait=300ms", "flow.toml"])
        .expect_code(exit::BLOCKED)
        .expect_stderr("warning: waiting: mount 'm' (")
        .expect_stderr("is in use by another flow: run ");
    let waited = std::time::Instant::now();
    env.stepback(&["run", "--wait", "flow.toml"])
        .expect_code(exit::SUCCESS);
    assert!(slow.wait().unwrap().success());
    assert!(
        waited.elapsed() >= Duration::from_secs(2),
        "it did not wait: {:?}",
        waited.elapsed()
    );
    env.stepback(&["run", "--wait=soon", "flow.toml"])
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("a duration such as 30s");
}

#[test]
fn a_rollback_that_cannot_restore_everything_says_which_paths() {
    let (env, _) = crashed_churn("crash-before-op:12");
    // Lose the backups, as a careless clean-up of the state dir would.
    let backup = env.path(&format!("state/runs/{}/backup", runs(&env)[0]));
    fs::remove_dir_all(&backup).unwrap();
    fs::create_dir(&backup).unwrap();
    env.stepback(&["recover"])
        .expect_code(exit::ROLLBACK_INCOMPLETE)
        .expect_stdout("NOT RESTORED m:/a.txt: should be a file of 5 bytes, but is a file of 11 bytes");
    env.stepback(&["show"]).expect_stdout("rolled back, ");
}

#[test]
fn per_step_sync_rolls_back_the_same() {
    let (env, before) = churn_env(true);
    env.stepback(&["run", "--sync", "process", "flow.toml"])
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("every path restored");
    assert_same_meta(
        &before,
        &snapshot_meta(&env.path("m")),
        "after rollback with --sync process",
    );
    let crashed = env.stepback_env(
        &["run", "--sync", "process", "flow.toml"],
        &[("STEPBACK_FAULT", "crash-before-op:10")],
    );
    assert!(crashed.killed());
    env.stepback(&["recover"]).expect_code(exit::SUCCESS);
    assert_same_meta(
        &before,
        &snapshot_meta(&env.path("m")),
        "after a crash with --sync process",
    );
}

#[test]
fn directories_the_run_created_are_removed_whole_and_renames_out_of_them_come_back() {
    let env = Env::new();
    env.write("m/keep.txt", "keep");
    let before = snapshot_meta(&env.path("m"));
    env.flow(
        flow_head("fresh", &["m"], &["src"])
            + r#"
[[steps]]
name = "deploy"
uses = "builtin:deploy-files"
mounts = ["m", "src"]
with = { from = "/src", to = "/m/release" }
[[steps]]
name = "boom"
uses = "builtin:fail"
"#,
    );
    for i in 0..50 {
        env.write(&format!("src/d{}/f{i}.txt", i % 5), format!("{i}"));
    }
    env.stepback(&["run", "flow.toml"])
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("every path restored");
    assert_same_meta(
        &before,
        &snapshot_meta(&env.path("m")),
        "after rolling back a deploy into a new directory",
    );
    let run = runs(&env).pop().unwrap();
    let show = env.stepback(&["show", &run, "--records"]);
    let undos = show
        .stdout()
        .lines()
        .filter(|l| l.contains("\"t\":\"undo\""))
        .count();
    assert!(
        undos <= 3,
        "50 files in a new directory need no records of their own ({undos} records)"
    );
}

/// A run whose steps all succeeded but whose commit cannot be written is
/// rolled back (it would otherwise block the next run until `recover`
/// rolled it back), with its own exit code.
#[test]
fn a_failed_commit_rolls_the_run_back_with_its_own_code() {
    let env = Env::new();
    env.write("m/config.txt", "v1");
    env.flow(
        flow_head("commit", &["m"], &[])
            + r#"
[[steps]]
name = "write"
uses = "builtin:write-file"
mounts = ["m"]
with = { path = "/m/config.txt", content = "v2" }
"#,
    );
    let run = env.stepback_env(&["run", "flow.toml"], &[("STEPBACK_FAULT", "eio-at-commit:1")]);
    run.expect_code(exit::COMMIT_FAILED)
        .expect_stderr("every step succeeded, but the run could not be recorded as committed")
        .expect_stdout("every path restored")
        .expect_stdout("so it was rolled back");
    assert_eq!(fs::read_to_string(env.path("m/config.txt")).unwrap(), "v1");
    env.stepback(&["show"]).expect_stdout("rolled back");
    env.stepback(&["run", "flow.toml"]).expect_code(exit::SUCCESS);
}

/// Found beside the crash-during-rollback issue: a file about to be
/// renamed over or deleted is hard-linked into the backup area first; a
/// crash or power cut after the link and before the change left, once
/// recovered, every byte restored but a second name of the original in
/// the backup area (its link count one too high until the next run's
/// pruning).
#[test]
fn a_crash_between_linking_an_original_aside_and_the_change_leaves_no_extra_link() {
    let ops = script(&[
        Op::rename(0, "a", 0, "b"),
        Op::unlink(0, "c"),
        Op::rename(0, "e", 0, "d/x"),
    ]);
    let mut crashed = 0;
    for n in 1..=8 {
        for kind in ["crash", "power-loss"] {
            let env = Env::new();
            for name in ["a", "b", "c", "e", "d/x"] {
                env.write(&format!("m/{name}"), name);
            }
            fix_times(&env.path("m"));
            let before = snapshot_full(&env.path("m"));
            let flow = fsops_flow(&env, &ops, true);
            let fault = format!("{kind}-before-op:{n}");
            let run = env.stepback_env(&["run", flow.to_str().unwrap()], &[("STEPBACK_FAULT", &fault)]);
            if run.killed() {
                crashed += 1;
                env.stepback(&["recover"]).expect_code(exit::SUCCESS);
            } else {
                run.expect_code(exit::FLOW_FAILED);
            }
            assert_same_full(&before, &snapshot_full(&env.path("m")), &fault);
        }
    }
    assert!(
        crashed >= 8,
        "only {crashed} runs crashed: the faults missed the captures"
    );
}
