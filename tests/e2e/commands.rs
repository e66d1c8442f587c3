//! Commands (`builtin:run-command`, the exec capability): their file
//! changes inside the step's mounts are captured by an overlay, applied
//! through the journal, and rolled back exactly; nothing outside changes;
//! nothing they start outlives them; grants are checked before anything runs.

use crate::support::*;
use std::path::Path;
use std::time::{Duration, Instant};
use stepback::exit;

/// A flow with mount `m` (read-write), whose first step runs `script`
/// with `sh` in it; `more` is appended (further keys of that step, then
/// further steps).
fn command_flow(script: &str, step_keys: &str, more: &str) -> String {
    format!(
        "{}\n[[steps]]\nname = \"command\"\nuses = \"builtin:run-command\"\nmounts = [\"m\"]\nexec = [\"sh\"]\n{step_keys}\n[steps.with]\nprogram = \"sh\"\nargs = [\"-c\", '''{script}''']\n{more}",
        flow_head("commands", &["m"], &["r"])
    )
}

const FAIL_AFTER: &str = "[[steps]]\nname = \"after\"\nuses = \"builtin:fail\"\n";

/// A tree with something for every kind of change to act on.
fn seed(env: &Env) {
    env.write("m/append.txt", "first line\n");
    env.write("m/overwrite.txt", "old contents\n");
    env.write("m/delete.txt", "doomed\n");
    env.write("m/deldir/one", "1");
    env.write("m/deldir/inner/two", "2");
    env.write("m/movedir/x", "x");
    env.write("m/move.txt", "moving\n");
    env.write("m/mode.txt", "mode\n");
    env.write("m/to-symlink.txt", "becomes a link\n");
    env.write("m/sub/deep/edit.txt", "deep\n");
    env.write("m/keep.txt", "untouched\n");
    std::os::unix::fs::symlink("keep.txt", env.path("m/old-link")).unwrap();
    std::os::unix::fs::symlink("keep.txt", env.path("m/touched-link")).unwrap();
    env.mkdir("r");
    env.write("r/ro.txt", "read-only\n");
}

/// An environment with [`seed`]'s tree, its times fixed (a restore is
/// then checked to the nanosecond), and the mount's snapshot.
fn seeded() -> (Env, FullSnapshot) {
    let env = Env::new();
    seed(&env);
    fix_times(&env.path("m"));
    let before = snapshot_full(&env.path("m"));
    (env, before)
}

/// Every kind of change a command can make inside its mount.
const CHANGES: &str = "set -e
echo second line >> append.txt
printf 'new contents' > overwrite.txt
rm delete.txt
rm -r deldir
mv movedir moved
mv move.txt moved.txt
chmod 600 mode.txt
rm to-symlink.txt && ln -s keep.txt to-symlink.txt
rm old-link && ln -s moved.txt old-link
touch -h -d @1500000000 touched-link
echo more >> sub/deep/edit.txt
chmod 750 sub/deep
mkdir -p new/dir && echo fresh > new/dir/file && touch -d @1600000000 new/dir/file
ln -s ../dir/file new/link && mv mode.txt new/
chmod 750 .
echo done";

#[test]
fn a_commands_changes_roll_back_exactly() {
    let (env, before) = seeded();
    let run = env.run_flow(&command_flow(CHANGES, "", FAIL_AFTER));
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("every path restored");
    // Everything the command made is the run's own: nothing is taken for
    // another process's.
    assert!(!run.stdout().contains("KEPT ASIDE"), "{}", run.stdout());
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the rollback");
}

/// Without root, a command is captured in a user namespace of its own
/// (unprivileged overlays): it runs as the operator, the rest of the
/// filesystem is read-only to it, and its changes roll back exactly.
#[test]
fn without_root_a_commands_changes_are_captured_in_a_user_namespace() {
    const NOBODY: u32 = 65534;
    let env = Env::new();
    seed(&env);
    env.give_to(NOBODY);
    fix_times(&env.path("m"));
    let before = snapshot_full(&env.path("m"));
    let script =
        format!("id -u; touch /etc/stepback-rootless 2>/dev/null || echo outside is read-only\n{CHANGES}");
    let flow = env.flow(command_flow(&script, "", FAIL_AFTER));
    let run = env.stepback_as(NOBODY, &["run", "-v", flow.to_str().unwrap()]);
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("every path restored");
    // The command's output (`-v`, on stderr).
    let log = run.stderr();
    assert!(log.contains(&format!("stdout: {NOBODY}")), "{log}");
    assert!(log.contains("stdout: outside is read-only"), "{log}");
    assert!(!Path::new("/etc/stepback-rootless").exists());
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the rollback");

    let flow = env.flow(command_flow(&script, "", ""));
    env.stepback_as(NOBODY, &["run", flow.to_str().unwrap()])
        .expect_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read_to_string(env.path("m/new/dir/file")).unwrap(),
        "fresh\n"
    );
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(env.path("m/new/dir/file")).unwrap());
    assert_eq!(owner, NOBODY, "a file the command made is the operator's");
    // Nothing of the command's layers is left but kept backups: the work
    // directories (mode 000, made by the kernel) are gone.
    let leftover = std::process::Command::new("find")
        .arg(env.path("state"))
        .args(["-name", "work"])
        .output()
        .unwrap();
    assert!(
        leftover.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&leftover.stdout)
    );
}

/// As root without `CAP_SYS_ADMIN` (in a container, say), commands are
/// captured in a user namespace too, as root within it.
#[test]
fn as_root_without_cap_sys_admin_a_commands_changes_are_captured_in_a_user_namespace() {
    let (env, before) = seeded();
    let flow = env.flow(command_flow(CHANGES, "", FAIL_AFTER));
    let run = env.stepback_setpriv(
        &["--bounding-set", "-sys_admin"],
        &["run", flow.to_str().unwrap()],
    );
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("ok      command")
        .expect_stdout("sh exited with 0")
        .expect_stdout("every path restored");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the rollback");
}

/// Without root, the engine cannot work in a directory that denies its
/// owner, as root can: a command that changed entries of one (a read-only
/// directory it opened up) or left one (even the mount's root) fails its
/// step, whose changes are rolled back exactly; one that only reads such a
/// directory runs.
#[test]
fn without_root_a_directory_that_denies_its_owner_is_refused() {
    const NOBODY: u32 = 65534;
    let env = Env::new();
    env.write("m/ro/x", "x\n");
    env.write("m/w/a", "a\n");
    env.mkdir("r");
    std::fs::set_permissions(
        env.path("m/ro"),
        std::os::unix::fs::PermissionsExt::from_mode(0o555),
    )
    .unwrap();
    env.give_to(NOBODY);
    fix_times(&env.path("m"));
    let before = snapshot_full(&env.path("m"));
    for (script, refusal) in [
        (
            "echo b > w/b; chmod u+w ro && echo y > ro/y",
            "the command changed entries of ro, a directory that denies its owner (mode 555)",
        ),
        (
            "chmod u+w ro && echo y > ro/y && chmod 555 ro",
            "the command left ro a directory that denies its owner (mode 555)",
        ),
        (
            "echo b > w/b && chmod 600 w",
            "the command left w a directory that denies its owner (mode 600)",
        ),
        (
            "chmod 600 .",
            "the command left the mount's root a directory that denies its owner (mode 600)",
        ),
    ] {
        let flow = env.flow(command_flow(script, "", ""));
        let run = env.stepback_as(NOBODY, &["run", flow.to_str().unwrap()]);
        run.expect_code(exit::FLOW_FAILED)
            .expect_stdout(refusal)
            .expect_stdout("every path restored");
        assert_same_full(&before, &snapshot_full(&env.path("m")), script);
    }
    let flow = env.flow(command_flow("cat ro/x && echo b > w/b", "", ""));
    env.stepback_as(NOBODY, &["run", flow.to_str().unwrap()])
        .expect_code(exit::SUCCESS);
    assert_eq!(std::fs::read_to_string(env.path("m/w/b")).unwrap(), "b\n");
}

#[test]
fn a_commands_changes_are_those_of_a_plain_run() {
    let env = Env::new();
    seed(&env);
    // The same script run plainly, on a copy.
    let status = std::process::Command::new("cp")
        .args(["-a", "m", "plain"])
        .current_dir(env.dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let plain = std::process::Command::new("sh")
        .args(["-c", CHANGES])
        .current_dir(env.path("plain"))
        .output()
        .unwrap();
    assert!(plain.status.success(), "{plain:?}");

    env.run_flow(&command_flow(CHANGES, "", ""))
        .expect_code(exit::SUCCESS)
        .expect_stdout("sh exited with 0");
    let (got, want) = (snapshot_full(&env.path("m")), snapshot_full(&env.path("plain")));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same paths"
    );
    for (path, g) in &got {
        let w = &want[path];
        assert_eq!(g.node, w.node, "{}: contents or link target", path.display());
        assert_eq!(g.mode, w.mode, "{}: type and mode", path.display());
        assert_eq!(g.owner, w.owner, "{}: owner", path.display());
        assert!(
            g.xattrs.iter().all(|(n, _)| !n.starts_with(b"trusted.overlay.")),
            "{}: overlay bookkeeping leaked",
            path.display()
        );
    }
    // A time the command set is kept.
    assert_eq!(
        got[Path::new("new/dir/file")].mtime,
        1_600_000_000 * 1_000_000_000
    );
}

#[test]
fn outside_its_mounts_a_command_gets_read_only_errors() {
    let env = Env::new();
    seed(&env);
    env.write("outside.txt", "outside\n");
    let script = "echo x > ../outside.txt || echo outside-refused
echo y > ../r/ro.txt || echo mount-refused
echo z > /etc/stepback-test-file || echo etc-refused
echo fine > ok.txt";
    let before_r = snapshot_full(&env.path("r"));
    let flow = command_flow(script, "", "").replace("mounts = [\"m\"]\n", "mounts = [\"m\", \"r\"]\n");
    let path = env.flow(flow);
    let run = env.stepback(&["--output", "json", "run", path.to_str().unwrap()]);
    run.expect_code(exit::SUCCESS);
    let lines: Vec<String> = run
        .events()
        .iter()
        .filter(|e| e["event"] == "step-log")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    for refused in ["outside-refused", "mount-refused", "etc-refused"] {
        assert!(
            lines.iter().any(|l| l == refused),
            "{refused} missing from {lines:?}"
        );
    }
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("Read-only file system"))
            .count()
            >= 3,
        "{lines:?}"
    );
    assert_eq!(
        std::fs::read_to_string(env.path("outside.txt")).unwrap(),
        "outside\n"
    );
    assert!(!Path::new("/etc/stepback-test-file").exists());
    assert_same_full(&before_r, &snapshot_full(&env.path("r")), "the read-only mount");
    assert_eq!(std::fs::read_to_string(env.path("m/ok.txt")).unwrap(), "fine\n");
}

#[test]
fn nothing_a_command_starts_outlives_it() {
    let env = Env::new();
    seed(&env);
    let run = env.run_flow(&command_flow("sleep 4321 & echo started", "", ""));
    run.expect_code(exit::SUCCESS);
    // Checked at once: the namespace is gone when the command is.
    assert_eq!(processes_with("sleep 4321"), Vec::<String>::new());
}

#[test]
fn a_timeout_kills_the_whole_tree_and_discards_its_changes() {
    let env = Env::new();
    seed(&env);
    let before = snapshot_full(&env.path("m"));
    let script = "echo partial > made.txt; sleep 5432 & sleep 5433";
    let flow = command_flow(script, "", "").replace("[steps.with]\n", "[steps.with]\ntimeout = \"500ms\"\n");
    let started = Instant::now();
    let run = env.run_flow(&flow);
    run.expect_code(exit::FLOW_FAILED).expect_stdout("sh timed out");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_gone("sleep 5432");
    assert_gone("sleep 5433");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the timeout");
}

#[test]
fn grants_are_checked_before_anything_runs() {
    let env = Env::new();
    seed(&env);
    let before = snapshot_full(&env.path("m"));
    // A program outside the grant.
    let flow = command_flow("echo hi > made", "", "").replace("program = \"sh\"", "program = \"bash\"");
    let run = env.run_flow(&flow);
    run.expect_code(exit::INVALID_INPUT)
        .expect_stderr("flow.toml:")
        .expect_stderr("program \"bash\" is not in the step's exec grant (sh)");
    // No grant at all.
    let flow = command_flow("echo hi > made", "", "").replace("exec = [\"sh\"]\n", "");
    env.run_flow(&flow)
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("runs commands, but the step grants none");
    // A program that is not there.
    let flow = command_flow("echo hi > made", "", "")
        .replace("exec = [\"sh\"]", "exec = [\"sh\", \"no-such-program-here\"]");
    env.run_flow(&flow)
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("program \"no-such-program-here\" is not found in PATH");
    // A grant for a plugin that runs nothing.
    let flow = format!(
        "{}\n[[steps]]\nname = \"w\"\nuses = \"builtin:write-file\"\nmounts = [\"m\"]\nexec = [\"sh\"]\nwith = {{ path = \"/m/x\", content = \"x\" }}\n",
        flow_head("commands", &["m"], &[])
    );
    env.run_flow(&flow)
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("grants programs, but the plugin runs no commands");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after refused runs");
}

#[test]
fn the_network_is_denied_unless_granted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let env = Env::new();
    seed(&env);
    let connect = format!(
        "{}\n[[steps]]\nname = \"connect\"\nuses = \"builtin:run-command\"\nmounts = [\"m\"]\nexec = [\"bash\"]\nNETWORK\nwith = {{ program = \"bash\", args = [\"-c\", \"echo hello > /dev/tcp/127.0.0.1/{port}\"] }}\n",
        flow_head("network", &["m"], &[])
    );
    env.run_flow(&connect.replace("NETWORK", ""))
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("bash exited with 1");
    assert!(listener.accept().is_err(), "a connection got through");
    env.run_flow(&connect.replace("NETWORK", "network = true"))
        .expect_code(exit::SUCCESS);
    assert!(listener.accept().is_ok(), "the granted connection did not arrive");
}

#[test]
fn a_kill_while_a_command_runs_is_recovered() {
    let (env, before) = seeded();
    let flow = format!(
        "{}\n[[steps]]\nname = \"first\"\nuses = \"builtin:write-file\"\nmounts = [\"m\"]\nwith = {{ path = \"/m/append.txt\", content = \"changed\" }}\n{}",
        flow_head("killed", &["m"], &["r"]),
        command_flow("echo x > made.txt; sleep 6543", "", "")
            .split_once("[[steps]]")
            .map(|(_, rest)| format!("[[steps]]{rest}"))
            .unwrap()
    );
    let path = env.flow(flow);
    let mut child = env.spawn_until_running(&path, "sleep 6543");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_gone("sleep 6543");
    env.stepback(&["run", path.to_str().unwrap()])
        .expect_code(exit::BLOCKED)
        .expect_stderr("must be rolled back first");
    env.stepback(&["recover"])
        .expect_code(exit::SUCCESS)
        .expect_stdout("rolled back");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after recover");
}

#[test]
fn a_crash_while_a_commands_changes_are_applied_is_recovered() {
    for op in [2, 5, 9] {
        let (env, before) = seeded();
        let flow = env.flow(command_flow(CHANGES, "", ""));
        let run = env.stepback_env(
            &["run", flow.to_str().unwrap()],
            &[("STEPBACK_FAULT", &format!("crash-before-op:{op}"))],
        );
        assert!(run.killed(), "op {op}: the run was not aborted\n{}", run.stdout());
        env.stepback(&["recover"])
            .expect_code(exit::SUCCESS)
            .expect_stdout("rolled back");
        assert_same_full(
            &before,
            &snapshot_full(&env.path("m")),
            &format!("recovered after a crash before op {op}"),
        );
    }
}

/// Files a command rewrote are swapped with their originals (which land in
/// the backup area, where the overlay's upper layer is) and files and
/// symlinks it made are moved in, all recorded, across directories, with
/// one sync before the first rename: a crash or a power cut at any record
/// of such a batch, some renames made and the rest only recorded, is
/// recovered exactly, the originals back as the very inodes they were; a
/// full disk at any of its records fails the step, rolled back as exactly.
#[test]
fn a_crash_or_a_full_disk_inside_a_batch_of_renames_is_undone_to_the_original_inodes() {
    let files = ["a", "b", "sub/c"];
    let ino =
        |p: std::path::PathBuf| std::os::unix::fs::MetadataExt::ino(&std::fs::symlink_metadata(p).unwrap());
    // The batch: the times of `m` and `m/sub`, the three originals, the
    // three new entries.
    let script =
        "for f in a b sub/c; do echo rewritten > $f; done; echo new > new; echo new > sub/new; ln -s a link";
    for fault in ["crash-before-op", "power-loss-before-op", "enospc-at-op"] {
        for op in 1..=9 {
            let env = Env::new();
            for f in files {
                env.write(&format!("m/{f}"), format!("original {f}\n"));
            }
            env.mkdir("r");
            fix_times(&env.path("m"));
            let before = snapshot_full(&env.path("m"));
            let inodes = files.map(|f| ino(env.path(&format!("m/{f}"))));
            let flow = env.flow(command_flow(script, "", FAIL_AFTER));
            let run = env.stepback_env(
                &["run", flow.to_str().unwrap()],
                &[("STEPBACK_FAULT", &format!("{fault}:{op}"))],
            );
            let what = format!("{fault}:{op}");
            // One op more than the batch: the run ends, rolled back.
            if op == 9 {
                run.expect_code(exit::FLOW_FAILED);
                assert_same_full(&before, &snapshot_full(&env.path("m")), &what);
                continue;
            }
            if fault == "enospc-at-op" {
                run.expect_code(exit::FLOW_FAILED)
                    .expect_stdout("No space left on device")
                    .expect_stdout("every path restored");
            } else {
                assert!(run.killed(), "{what}: the run was not aborted\n{}", run.stdout());
                env.stepback(&["recover"])
                    .expect_code(exit::SUCCESS)
                    .expect_stdout("rolled back");
            }
            let what = format!("recovered after {what}");
            assert_same_full(&before, &snapshot_full(&env.path("m")), &what);
            assert_eq!(
                inodes,
                files.map(|f| ino(env.path(&format!("m/{f}")))),
                "{what}: inodes"
            );
        }
    }
}

/// A directory the command made moves onto the mount whole, by one rename
/// recorded in the batch: a crash or a power cut before or after that
/// rename is recovered exactly (the rollback removes the directory it
/// moved in, and nothing else).
#[test]
fn a_directory_the_command_made_moves_in_whole_and_out_on_rollback() {
    // Records: 1 the mount's time, 2 `new` (whole), 3 `zz`.
    let faults = [
        "crash-before-op:2",
        "power-loss-before-op:2",
        "crash-before-op:3",
        "power-loss-before-op:3",
    ];
    for fault in faults {
        let env = Env::new();
        env.write("m/keep", "keep\n");
        env.mkdir("r");
        fix_times(&env.path("m"));
        let before = snapshot_full(&env.path("m"));
        let flow = env.flow(command_flow(
            "mkdir -p new/sub && echo a > new/sub/a && ln -s sub/a new/l && echo z > zz",
            "",
            "",
        ));
        let run = env.stepback_env(&["run", flow.to_str().unwrap()], &[("STEPBACK_FAULT", fault)]);
        assert!(run.killed(), "{fault}: the run was not aborted\n{}", run.stdout());
        env.stepback(&["recover"])
            .expect_code(exit::SUCCESS)
            .expect_stdout("rolled back");
        assert_same_full(&before, &snapshot_full(&env.path("m")), fault);
    }
}

/// A directory the command removes whole is moved into the backup area
/// by one rename, with one record: the rollback brings it back with every
/// inode in it (a hard link to a file outside it included). A crash or a
/// power cut after its record, or after the rename with its record lost
/// (the backup's name stands for it), is recovered as exactly.
#[test]
fn a_directory_removed_whole_comes_back_with_its_inodes() {
    let ino =
        |p: std::path::PathBuf| std::os::unix::fs::MetadataExt::ino(&std::fs::symlink_metadata(p).unwrap());
    let paths = ["m/tree", "m/tree/a", "m/tree/sub", "m/tree/sub/linked"];
    // Records: 1 the mount's time, 2 `tree` (whole), 3 `zz`.
    let faults = [
        None,
        Some("crash-before-op:2"),
        Some("power-loss-before-op:2"),
        Some("crash-before-op:3"),
        Some("power-loss-before-op:3"),
    ];
    for fault in faults {
        let env = Env::new();
        env.write("m/tree/a", "a\n");
        env.write("m/tree/sub/b", "b\n");
        env.write("m/outside", "outside\n");
        env.write("m/zz", "zz\n");
        std::fs::hard_link(env.path("m/outside"), env.path("m/tree/sub/linked")).unwrap();
        std::os::unix::fs::symlink("../a", env.path("m/tree/sub/l")).unwrap();
        env.mkdir("r");
        fix_times(&env.path("m"));
        let before = snapshot_full(&env.path("m"));
        let inodes = paths.map(|p| ino(env.path(p)));
        let flow = env.flow(command_flow("rm -rf tree zz", "", FAIL_AFTER));
        let what = format!("{fault:?}");
        match fault {
            None => {
                let run = env.stepback(&["run", flow.to_str().unwrap()]);
                run.expect_code(exit::FLOW_FAILED)
                    .expect_stdout("rolling back 2 changes")
                    .expect_stdout("every path restored");
                env.stepback(&["show", &run.run_id()])
                    .expect_stdout("/tree")
                    .expect_stdout("deleted directory");
            }
            Some(fault) => {
                let run = env.stepback_env(&["run", flow.to_str().unwrap()], &[("STEPBACK_FAULT", fault)]);
                assert!(run.killed(), "{what}: the run was not aborted\n{}", run.stdout());
                env.stepback(&["recover"])
                    .expect_code(exit::SUCCESS)
                    .expect_stdout("rolled back");
            }
        }
        assert_same_full(&before, &snapshot_full(&env.path("m")), &what);
        assert_eq!(inodes, paths.map(|p| ino(env.path(p))), "{what}: inodes");
    }
}

/// Another process replaces a file the command rewrote, and makes one
/// where the command made one, after the apply recorded its renames and
/// before it makes them: the apply stops there, the step fails, and the
/// rollback puts back what the apply had changed and leaves the other
/// process's files as they are. Whether the other process acts before the
/// apply reads their directory or after (just before the swap).
#[test]
fn files_another_process_changes_during_the_apply_are_left_to_it() {
    // Records: 1 the mount's time, 2 `a`, 3 the time of `sub`, 4 `sub/b`,
    // 5 `sub/c`.
    for op in [2, 4] {
        let env = Env::new();
        for f in ["a", "sub/b"] {
            env.write(&format!("m/{f}"), format!("original {f}\n"));
        }
        env.mkdir("r");
        fix_times(&env.path("m"));
        let flow = env.flow(command_flow(
            "for f in a sub/b; do echo rewritten > $f; done; echo new > sub/c",
            "",
            "",
        ));
        let m = env.path("m");
        let script = format!(
            "cd {} && echo theirs > sub/b.tmp && mv sub/b.tmp sub/b && echo theirs > sub/c",
            m.display()
        );
        let run = env.stepback_env(
            &["run", flow.to_str().unwrap()],
            &[
                ("STEPBACK_FAULT", &format!("other-process-before-op:{op}")),
                ("STEPBACK_FAULT_SCRIPT", &script),
            ],
        );
        run.expect_code(exit::FLOW_FAILED)
            .expect_stdout("sub/b was changed by another process while the command's changes were applied")
            .expect_stdout("every path restored");
        let read = |f: &str| std::fs::read_to_string(m.join(f)).unwrap();
        assert_eq!(read("a"), "original a\n", "op {op}");
        assert_eq!(read("sub/b"), "theirs\n", "op {op}");
        assert_eq!(read("sub/c"), "theirs\n", "op {op}");
    }
}

/// A flow with mount `m` and one `builtin:run-script` step with `with`
/// (a TOML inline table's insides) and grant `exec`.
fn script_flow(exec: &str, with: &str) -> String {
    format!(
        "{}\n[params.version]\ndefault = \"1.2.3\"\n[[steps]]\nname = \"script\"\nuses = \"builtin:run-script\"\nmounts = [\"m\"]\nexec = [{exec}]\nwith = {{ {with} }}\n",
        flow_head("scripts", &["m"], &[])
    )
}

#[test]
fn a_script_runs_by_its_shebang_or_a_named_interpreter() {
    let env = Env::new();
    env.write("m/deploy.sh", "#!/bin/sh\necho \"deployed $1\" > release.txt\n");
    env.run_flow(&script_flow(
        "\"sh\"",
        "path = \"/m/deploy.sh\", args = [\"${version}\"]",
    ))
    .expect_code(exit::SUCCESS)
    .expect_stdout("/m/deploy.sh exited with 0");
    assert_eq!(
        std::fs::read_to_string(env.path("m/release.txt")).unwrap(),
        "deployed 1.2.3\n"
    );

    env.run_flow(&script_flow(
        "\"bash\"",
        "inline = 'echo \"$0 $1 $VERSION\" > inline.txt', interpreter = \"bash\", args = [\"${version}\"], env = { VERSION = \"v${version}\" }",
    ))
    .expect_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read_to_string(env.path("m/inline.txt")).unwrap(),
        "inline-script 1.2.3 v1.2.3\n"
    );
}

#[test]
fn a_scripts_interpreter_must_be_granted() {
    let env = Env::new();
    env.write("m/tool.pl", "#!/usr/bin/env perl\nprint 1;\n");
    env.run_flow(&script_flow("\"sh\"", "path = \"/m/tool.pl\""))
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("flow.toml:")
        .expect_stderr("the #! line of /m/tool.pl runs \"perl\", which is not in the step's exec grant (sh)");
    env.run_flow(&script_flow("\"sh\"", "inline = 'echo hi'"))
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("interpreter");
    assert!(!env.path("m/hi").exists());
}

#[test]
fn an_uncaptured_command_is_marked_as_not_reversible() {
    let env = Env::new();
    seed(&env);
    let flow = command_flow("echo direct > direct.txt", "capture = \"none\"", FAIL_AFTER);
    let run = env.run_flow(&flow);
    run.expect_code(exit::FLOW_FAILED)
        .expect_stderr("runs `sh -c 'echo direct > direct.txt'` uncaptured")
        .expect_stdout("NOT REVERSED: 1 command(s) changed the mounts outside a capture")
        .expect_stdout("step 0: sh -c 'echo direct > direct.txt' (capture = \"none\")");
    // Written straight to the mount, and left there.
    assert_eq!(
        std::fs::read_to_string(env.path("m/direct.txt")).unwrap(),
        "direct\n"
    );
    env.stepback(&["show", &run.run_id()])
        .expect_code(exit::SUCCESS)
        .expect_stdout("NOT REVERSIBLE: sh -c 'echo direct > direct.txt' (capture = \"none\")");
}

#[test]
fn a_snapshot_puts_its_paths_back_whole() {
    let env = Env::new();
    seed(&env);
    env.write("m/data/db/state", "v1");
    env.write("m/data/db/log", "entries");
    env.write("m/data/keep", "k");
    std::os::unix::fs::symlink("db/state", env.path("m/data/link")).unwrap();
    fix_times(&env.path("m"));
    let before = snapshot_full(&env.path("m/data"));
    let script = "set -e
echo v2 > data/db/state
rm data/db/log
mkdir -p data/db/new && echo n > data/db/new/file
chmod 700 data/db
rm data/link && ln -s keep data/link
mkdir fresh && echo f > fresh/file
echo outside > keep.txt";
    let flow = command_flow(
        script,
        "capture = \"snapshot\"\nsnapshot = [\"/m/data\", \"/m/fresh\"]",
        FAIL_AFTER,
    );
    let run = env.run_flow(&flow);
    run.expect_code(exit::FLOW_FAILED)
        .expect_stderr("with snapshots of m:/data, m:/fresh only")
        .expect_stdout("every path restored")
        .expect_stdout("NOT REVERSED: 1 command(s) changed the mounts outside a capture")
        .expect_stdout("(capture = \"snapshot\": changes outside m:/data, m:/fresh)");
    assert_same_full(
        &before,
        &snapshot_full(&env.path("m/data")),
        "the snapshotted tree",
    );
    assert!(
        !env.path("m/fresh").exists(),
        "a snapshotted path that was absent is removed"
    );
    // Outside the snapshots, the change stays.
    assert_eq!(
        std::fs::read_to_string(env.path("m/keep.txt")).unwrap(),
        "outside\n"
    );
}

#[test]
fn snapshot_paths_are_checked() {
    let env = Env::new();
    seed(&env);
    let flow = command_flow("true", "capture = \"snapshot\"", "");
    env.run_flow(&flow)
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("capture = \"snapshot\" needs the paths to copy");
    let flow = command_flow(
        "true",
        "capture = \"snapshot\"\nsnapshot = [\"/r/ro.txt\", \"/elsewhere\"]",
        "",
    )
    .replace("mounts = [\"m\"]\n", "mounts = [\"m\", \"r\"]\n");
    env.run_flow(&flow)
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("\"/r/ro.txt\" is in mount 'r', which the step may only read")
        .expect_stderr("\"/elsewhere\" is not an absolute guest path");
}

#[test]
fn a_kill_while_a_snapshotted_command_runs_is_recovered() {
    let env = Env::new();
    seed(&env);
    env.write("m/data/state", "v1");
    fix_times(&env.path("m"));
    let before = snapshot_full(&env.path("m"));
    let flow = command_flow(
        "echo v2 > data/state; rm append.txt; sleep 7654",
        "capture = \"snapshot\"\nsnapshot = [\"/m/data\", \"/m/append.txt\"]",
        "",
    );
    let path = env.flow(flow);
    let mut child = env.spawn_until_running(&path, "sleep 7654");
    // The command has changed the mount directly by now.
    assert_eq!(std::fs::read_to_string(env.path("m/data/state")).unwrap(), "v2\n");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_gone("sleep 7654");
    env.stepback(&["recover"])
        .expect_code(exit::SUCCESS)
        .expect_stdout("rolled back");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after recover");
}

#[test]
fn a_commands_committed_changes_can_be_undone_later() {
    let (env, before) = seeded();
    let run = env.run_flow(&command_flow(CHANGES, "", ""));
    run.expect_code(exit::SUCCESS);
    env.stepback(&["undo", &run.run_id()])
        .expect_code(exit::SUCCESS)
        .expect_stdout("undone");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after undo");
}

/// A script is run by its `#!` line only if it is in one of the step's
/// mounts: a symlink there to a script outside is refused when it runs
/// (validation, reading through the host's path, let it pass).
#[test]
fn a_script_reached_through_a_symlink_out_of_the_mount_is_refused() {
    let env = Env::new();
    env.write(
        "outside.sh",
        "#!/bin/sh\necho escaped > /dev/null\ntouch escaped\n",
    );
    env.mkdir("m");
    std::os::unix::fs::symlink("../outside.sh", env.path("m/link.sh")).unwrap();
    env.run_flow(&script_flow("\"sh\"", "path = \"/m/link.sh\""))
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("is not in the step's exec grant");
    assert!(!env.path("m/escaped").exists() && !env.path("escaped").exists());
}

/// The grant is what runs: a variable of the plugin's that would make the
/// granted program load or run other code (the dynamic loader's, a shell's
/// start-up file, an interpreter's module path, `PATH`) fails the command
/// unless the step grants it by name, and a grant of a harmless name is
/// refused at its line.
#[test]
fn environment_variables_that_change_what_runs_must_be_granted() {
    let env = Env::new();
    seed(&env);
    let before = snapshot_full(&env.path("m"));
    for (name, value) in [
        ("LD_PRELOAD", "/m/evil.so"),
        ("BASH_ENV", "/m/evil.sh"),
        ("PATH", "/m"),
        // Python's user site runs the `.pth` files under $HOME; Git runs
        // the pager or ssh its variables name; OpenSSL loads the engines
        // its configuration names; make runs $CC.
        ("HOME", "/m"),
        ("GIT_CONFIG_COUNT", "1"),
        ("XDG_CONFIG_HOME", "/m"),
        ("OPENSSL_CONF", "/m/evil.cnf"),
        ("CC", "/m/evil"),
    ] {
        let flow = command_flow(
            "echo ran > ran.txt",
            "",
            &format!("env = {{ {name} = \"{value}\" }}\n"),
        );
        env.run_flow(&flow)
            .expect_code(exit::FLOW_FAILED)
            .expect_stdout(&format!(
                "environment variable {name} changes what code \"sh\" loads or runs"
            ))
            .expect_stdout(&format!("exec-env = [\"{name}\"]"));
        assert_same_full(&before, &snapshot_full(&env.path("m")), name);
    }
    // Granted by name, it reaches the program.
    let flow = command_flow(
        "echo \"$PYTHONSTARTUP\" > startup.txt",
        "exec-env = [\"PYTHONSTARTUP\"]",
        "env = { PYTHONSTARTUP = \"/opt/start.py\" }\n",
    );
    env.run_flow(&flow).expect_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read_to_string(env.path("m/startup.txt")).unwrap(),
        "/opt/start.py\n"
    );
    // Other variables need no grant.
    let flow = command_flow(
        "echo \"$GREETING\" > greeting.txt",
        "",
        "env = { GREETING = \"hi\" }\n",
    );
    env.run_flow(&flow).expect_code(exit::SUCCESS);
    let flow = command_flow("true", "exec-env = [\"GREETING\"]", "");
    env.run_flow(&flow)
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("exec-env[0]")
        .expect_stderr("\"GREETING\" is not a variable that changes what code a program runs");
}

/// The grant is what runs: a granted program in a mount a step can write
/// is pinned by its digest at validation; a plugin that rewrites it (here
/// with a `#!` line naming an interpreter the grant never listed) gets
/// the command refused, and the rollback puts the program back.
#[test]
fn a_granted_program_a_step_can_rewrite_runs_only_as_validated() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    seed(&env);
    let tool = env.write("m/bin/tool", "#!/bin/sh\necho validated > \"$1\"\n");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tool = tool.to_str().unwrap().to_owned();
    let out = env.path("m/out.txt");
    let out = out.to_str().unwrap();
    let step = |name: &str| {
        format!(
            "[[steps]]\nname = \"{name}\"\nuses = \"builtin:run-command\"\nmounts = [\"m\"]\nexec = [\"{tool}\"]\nwith = {{ program = \"{tool}\", args = [\"{out}\"] }}\n"
        )
    };
    let head = flow_head("pinned", &["m"], &["r"]);
    // Unchanged, it runs.
    env.run_flow(&format!("{head}{}", step("tool")))
        .expect_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read_to_string(env.path("m/out.txt")).unwrap(),
        "validated\n"
    );
    // Rewritten by an earlier step, it is refused.
    let before = snapshot_full(&env.path("m"));
    let rewrite = "[[steps]]\nname = \"rewrite\"\nuses = \"builtin:write-file\"\nmounts = [\"m\"]\nwith = { path = \"/m/bin/tool\", content = \"#!/usr/bin/perl\\nsystem('touch /m/evil');\\n\" }\n";
    env.run_flow(&format!("{head}{rewrite}{}", step("tool")))
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("changed since the flow was validated")
        .expect_stdout("every path restored");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the refused run");
}

/// Each command's scratch directory is its own, whatever step runs it:
/// the second step's command once reused the first's name, whose upper
/// layer still held the original it had replaced (a backup), so that it
/// saw that original instead of the file as the first left it, and its
/// apply put the original back in the mount: the rollback then failed
/// with "not the original file".
#[test]
fn commands_of_different_steps_do_not_share_a_scratch_directory() {
    let (env, _) = seeded();
    let second = "[[steps]]\nname = \"second\"\nuses = \"builtin:run-command\"\nmounts = [\"m\"]\nexec = [\"sh\"]\n[steps.with]\nprogram = \"sh\"\nargs = [\"-c\", \"cat overwrite.txt > seen.txt; echo third > overwrite.txt\"]\n";
    let flow = command_flow("echo second > overwrite.txt", "", second);
    env.run_flow(&flow).expect_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read_to_string(env.path("m/seen.txt")).unwrap(),
        "second\n"
    );
    assert_eq!(
        std::fs::read_to_string(env.path("m/overwrite.txt")).unwrap(),
        "third\n"
    );

    let (env, before) = seeded();
    let run = env.run_flow(&format!("{flow}{FAIL_AFTER}"));
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("every path restored");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the rollback");
}

/// A mount and a state directory beneath `/dev/shm` (tmpfs, where the
/// benchmarks run): the command's own `/dev/shm` shows the mount, and the
/// state directory's mask is not made where its path is not.
#[test]
fn a_mount_and_the_state_directory_beneath_dev_shm_work() {
    let base = std::path::PathBuf::from(format!("/dev/shm/stepback-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("m")).unwrap();
    std::fs::create_dir_all(base.join("r")).unwrap();
    std::fs::write(base.join("m/kept"), "original\n").unwrap();
    let flow = base.join("flow.toml");
    std::fs::write(
        &flow,
        command_flow("echo changed > kept; echo new > made", "", FAIL_AFTER),
    )
    .unwrap();
    let env = Env::new();
    let state = base.join("state");
    let run = env.stepback(&[
        "--state-dir",
        state.to_str().unwrap(),
        "run",
        flow.to_str().unwrap(),
    ]);
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("every path restored");
    assert_eq!(
        std::fs::read_to_string(base.join("m/kept")).unwrap(),
        "original\n"
    );
    assert!(!base.join("m/made").exists());
    std::fs::write(&flow, command_flow("echo changed > kept", "", "")).unwrap();
    let run = env.stepback(&[
        "--state-dir",
        state.to_str().unwrap(),
        "run",
        flow.to_str().unwrap(),
    ]);
    run.expect_code(exit::SUCCESS);
    assert_eq!(std::fs::read_to_string(base.join("m/kept")).unwrap(), "changed\n");
    std::fs::remove_dir_all(&base).unwrap();
}

/// Found by a hostile review: a symlink with an absolute target (a
/// release's `current -> /opt/app/1.4`) that a command removed or changed
/// could not be put back (cap-std's `symlink` refuses absolute targets):
/// the rollback lost it.
#[test]
fn symlinks_with_absolute_targets_are_put_back() {
    let env = Env::new();
    env.mkdir("m/sub");
    env.mkdir("r");
    std::os::unix::fs::symlink("/nonexistent", env.path("m/dangling")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", env.path("m/sub/abs")).unwrap();
    fix_times(&env.path("m"));
    let before = snapshot_full(&env.path("m"));
    let script = "rm dangling; ln -sfn /other sub/abs";
    env.run_flow(&command_flow(script, "", FAIL_AFTER))
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("every path restored");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the rollback");
}

/// Found by a hostile review: a symlink's new owner (`chown -h`) was
/// dropped by the apply, which took a link with the same target and time
/// for unchanged.
#[test]
fn a_symlinks_owner_changed_by_a_command_is_applied_and_rolled_back() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    env.mkdir("m");
    env.mkdir("r");
    std::os::unix::fs::symlink("/etc/hostname", env.path("m/abs")).unwrap();
    fix_times(&env.path("m"));
    let before = snapshot_full(&env.path("m"));
    let flow = command_flow("chown -h 5:5 abs", "", FAIL_AFTER);
    env.run_flow(&flow)
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("every path restored");
    assert_same_full(&before, &snapshot_full(&env.path("m")), "after the rollback");
    env.run_flow(&command_flow("chown -h 5:5 abs", "", ""))
        .expect_code(exit::SUCCESS);
    let meta = std::fs::symlink_metadata(env.path("m/abs")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (5, 5));
    assert_eq!(
        std::fs::read_link(env.path("m/abs")).unwrap(),
        std::path::Path::new("/etc/hostname")
    );
}
