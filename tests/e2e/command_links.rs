//! Hard links through commands (README, Commands): what a command does to
//! files with several names ends on the mount as a plain run of it leaves
//! it (every name with the contents it has there, the same link groups),
//! and a failed run puts every group back.

use crate::support::{Env, FullSnapshot, assert_same_full, fix_times, flow_head, snapshot_full};
use std::path::Path;
use stepback::exit;

/// A tree with a file of two names (`a`, `c`), another (`y`, `w`), a file
/// of one name (`s`) and a directory holding a file with another name
/// outside it (`d/f`, `g`).
fn seed(env: &Env, dir: &str) {
    env.write(&format!("{dir}/a"), "alpha\n");
    std::fs::hard_link(env.path(&format!("{dir}/a")), env.path(&format!("{dir}/c"))).unwrap();
    env.write(&format!("{dir}/y"), "why\n");
    std::fs::hard_link(env.path(&format!("{dir}/y")), env.path(&format!("{dir}/w"))).unwrap();
    env.write(&format!("{dir}/s"), "single\n");
    env.write(&format!("{dir}/d/f"), "f\n");
    std::fs::hard_link(env.path(&format!("{dir}/d/f")), env.path(&format!("{dir}/g"))).unwrap();
}

/// A flow whose steps run `steps`' scripts on mount `m`, then `more`.
fn flow(steps: &[&str], more: &str) -> String {
    let mut text = flow_head("links", &["m"], &[]);
    for (i, script) in steps.iter().enumerate() {
        text.push_str(&format!(
            "\n[[steps]]\nname = \"step {i}\"\nuses = \"builtin:run-command\"\nmounts = [\"m\"]\nexec = [\"sh\"]\nwith = {{ program = \"sh\", args = [\"-c\", '''{script}'''] }}\n"
        ));
    }
    text + more
}

/// Each path with its contents (or a directory) and its link group: what
/// a plain run and a captured one must agree on (not the number of names:
/// the backups of a committed run hold some until they are pruned).
fn links(s: &FullSnapshot) -> Vec<String> {
    s.iter()
        .map(|(p, f)| format!("{} {:?} {}", p.display(), f.node, f.link_group.display()))
        .collect()
}

fn plainly(dir: &Path, steps: &[&str]) {
    for script in steps {
        let ran = std::process::Command::new("sh")
            .args(["-c", script])
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(ran.success(), "{script}");
    }
}

/// Runs `steps` as commands, once failing (everything put back) and
/// once committed (as the plain run leaves it).
fn check(steps: &[&str]) {
    let env = Env::new();
    seed(&env, "m");
    fix_times(&env.path("m"));
    let before = snapshot_full(&env.path("m"));
    let failing = flow(steps, "\n[[steps]]\nname = \"fail\"\nuses = \"builtin:fail\"\n");
    env.run_flow(&failing)
        .expect_code(exit::FLOW_FAILED)
        .expect_stdout("every path restored");
    assert_same_full(
        &before,
        &snapshot_full(&env.path("m")),
        &format!("{steps:?} rolled back"),
    );

    let env = Env::new();
    seed(&env, "m");
    seed(&env, "plain");
    plainly(&env.path("plain"), steps);
    env.run_flow(&flow(steps, "")).expect_code(exit::SUCCESS);
    assert_eq!(
        links(&snapshot_full(&env.path("m"))),
        links(&snapshot_full(&env.path("plain"))),
        "{steps:?}"
    );
}

#[test]
fn a_new_name_of_a_file_with_other_names_is_a_link_to_it() {
    check(&["ln a b"]);
    check(&["ln a b && echo more >> b"]);
    check(&["mkdir n && ln c n/b"]);
}

#[test]
fn a_file_with_other_names_renamed_or_linked_over_another_stays_one_file() {
    check(&["mv a b"]);
    check(&["mv c s"]);
    check(&["ln -f a y"]);
    check(&["ln -f s a"]);
}

#[test]
fn a_file_made_anew_over_one_with_other_names_leaves_them_as_they_were() {
    check(&["echo new > t && mv t y"]);
    check(&["echo new > t && ln -f t a && ln t t2"]);
}

#[test]
fn a_change_through_a_name_the_command_then_removed_reaches_the_other_names() {
    check(&["echo more >> a && rm a"]);
    check(&["echo more >> a && mv a s"]);
    check(&["echo more >> d/f && rm -rf d"]);
    check(&["chmod 600 d/f && touch -d @1000000000 d/f && rm -rf d"]);
}

#[test]
fn a_link_to_a_file_an_earlier_step_made_or_linked_stays_a_link() {
    check(&["echo made > m1", "ln m1 m2"]);
    check(&["ln s s2", "ln s2 s3 && echo more >> s3"]);
    check(&["ln a b", "rm a && ln b e"]);
}

/// Found by a hostile review: a hard-linked file the apply writes in
/// place lost its file capabilities (its owner was set after them, which
/// clears them), and a rollback of a `chown` of it could not put them back.
#[test]
fn file_capabilities_of_a_file_with_other_names_survive_the_apply_and_the_rollback() {
    let capability = [1u8, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    for (script, then) in [
        ("chmod 750 a", ""),
        (
            "chown 1234:1234 a",
            "\n[[steps]]\nname = \"fail\"\nuses = \"builtin:fail\"\n",
        ),
    ] {
        let env = Env::new();
        seed(&env, "m");
        rustix::fs::setxattr(
            env.path("m/a"),
            "security.capability",
            &capability,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        fix_times(&env.path("m"));
        let before = snapshot_full(&env.path("m"));
        let run = env.run_flow(&flow(&[script], then));
        run.expect_code(if then.is_empty() {
            exit::SUCCESS
        } else {
            exit::FLOW_FAILED
        });
        let caps = crate::support::xattrs(&env.path("m/c"));
        assert!(
            caps.iter()
                .any(|(n, v)| n == b"security.capability" && v == &capability),
            "{script}: {caps:?}\n{}",
            run.stdout()
        );
        if !then.is_empty() {
            run.expect_stdout("every path restored");
            assert_same_full(&before, &snapshot_full(&env.path("m")), script);
        }
    }
}

/// Found by a hostile review: a sparse file with two names, written in
/// place by the apply, had its holes filled (64 MiB on disk where a plain
/// run keeps a few KiB).
#[test]
fn a_sparse_file_with_other_names_stays_sparse() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    env.mkdir("m");
    let file = std::fs::File::create(env.path("m/sp")).unwrap();
    file.set_len(64 << 20).unwrap();
    std::fs::hard_link(env.path("m/sp"), env.path("m/sp2")).unwrap();
    env.run_flow(&flow(&["chmod 600 sp && echo x >> sp2"], ""))
        .expect_code(exit::SUCCESS);
    let meta = std::fs::metadata(env.path("m/sp")).unwrap();
    assert_eq!(meta.len(), (64 << 20) + 2);
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "{} bytes allocated",
        meta.blocks() * 512
    );
    assert_eq!(meta.ino(), std::fs::metadata(env.path("m/sp2")).unwrap().ino());
}

/// Found by the command fuzzer: a symlink with two names (a hard link the
/// command made to it), whose time a later command set through one name,
/// became two symlinks on the mount (the apply moved the copy in under the
/// changed name), where a plain run leaves one with the new time.
#[test]
fn a_symlink_with_two_names_stays_one_whatever_changes_it() {
    check(&["ln -s a l && ln l d/l", "touch -h -d @1000000000 l"]);
    check(&["ln -s a l", "ln l d/l", "mv d/l k && ln k l2"]);
    check(&["ln -s a l && ln l d/l", "touch -h -d @1000000000 l && rm l"]);
    // And the time reaches both names, as it does plainly.
    let env = Env::new();
    seed(&env, "m");
    let steps = ["ln -s a l && ln l d/l", "touch -h -d @1000000000 d/l"];
    env.run_flow(&flow(&steps, "")).expect_code(exit::SUCCESS);
    let after = snapshot_full(&env.path("m"));
    for name in ["l", "d/l"] {
        let entry = &after[Path::new(name)];
        assert_eq!(entry.mtime, 1_000_000_000 * 1_000_000_000, "{name}");
        assert_eq!(entry.link_group, Path::new("d/l"), "{name}");
    }
}
