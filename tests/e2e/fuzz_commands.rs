//! Model-based fuzzing of commands' capture: a random shell script of
//! file operations (writes, appends, removals of files and trees, mkdir,
//! renames of files and directories, modes of files and directories,
//! symlinks, hard links, times, extended attributes, the mount root's
//! included) runs as commands of one to a few steps on a starting tree.
//! Properties: run and then failed, the mount is exactly as before (the
//! overlay's upper layer was applied through the journal and reverted),
//! also when the engine is killed, with power lost or not, at a random
//! operation of the apply or a random undo of the rollback and then
//! recovered (as root, in a quarter of the scripts);
//! run alone, it holds what the same script makes when run plainly on a
//! copy (types, contents, link targets, modes, hard-link groups, extended
//! attributes, the times the script set), or where
//! overlayfs itself makes the script do otherwise, what it makes in a bare
//! overlay with Stepback's options.
//!
//! `STEPBACK_FUZZ_CASES` sets the number of scripts (CI's budget is the
//! default); proptest shrinks a failing script to a minimal one.

use crate::support::{Env, FullSnapshot, Run, diff_full, env_number, fix_times, flow_head, snapshot_full};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::path::Path;
use stepback::exit;

const CI_CASES: u32 = 24;

/// The ordinary user of the runs without root.
const NOBODY: u32 = 65534;

const PATHS: &[&str] = &[
    "a", "b", "d", "d/c", "d/e", "d/e/f", "h", "n", "n/x", "l", "empty", "empty/y", ".",
];

fn path() -> impl Strategy<Value = &'static str> {
    prop::sample::select(PATHS)
}

/// One shell operation.
fn op() -> impl Strategy<Value = String> {
    prop_oneof![
        (path(), "[a-z]{0,12}").prop_map(|(p, c)| format!("printf '{c}' > {p}")),
        path().prop_map(|p| format!("echo more >> {p}")),
        path().prop_map(|p| format!("rm -rf {p}")),
        path().prop_map(|p| format!("mkdir -p {p}")),
        (path(), path()).prop_map(|(a, b)| format!("mv {a} {b}")),
        (
            path(),
            prop::sample::select(vec!["600", "755", "700", "644", "1777"])
        )
            .prop_map(|(p, m)| format!("chmod {m} {p}")),
        (path(), path()).prop_map(|(t, p)| format!("ln -sfn {t} {p}")),
        (path(), path()).prop_map(|(a, b)| format!("ln {a} {b}")),
        (path(), 1_000_000_000i64..1_700_000_000).prop_map(|(p, t)| format!("touch -h -d @{t} {p}")),
        (path(), "[a-z]{0,6}").prop_map(|(p, v)| format!(
            "python3 -c \"import os; os.setxattr('{p}', 'user.k', b'{v}', follow_symlinks=False)\""
        )),
        path().prop_map(|p| format!(
            "python3 -c \"import os; os.removexattr('{p}', 'user.s', follow_symlinks=False)\""
        )),
        // The next operations are another step's command.
        Just(STEP.to_owned()),
    ]
}

/// Splits a script into the commands of consecutive steps (a comment to
/// the shell: the plain run is the whole script at once).
const STEP: &str = "# another step";

/// The starting tree; as root (`linked`), with a file of two names too
/// (without root, a command that replaces one of its names, rather than
/// writing through it, is not told apart: README, "Root or not").
fn seed(env: &Env, dir: &str, linked: bool) {
    env.write(&format!("{dir}/a"), "alpha\n");
    env.write(&format!("{dir}/b"), "beta\n");
    env.write(&format!("{dir}/d/c"), "gamma\n");
    env.write(&format!("{dir}/d/e/f"), "delta\n");
    if linked {
        std::fs::hard_link(env.path(&format!("{dir}/d/c")), env.path(&format!("{dir}/h"))).unwrap();
    }
    env.mkdir(&format!("{dir}/empty"));
    std::os::unix::fs::symlink("a", env.path(&format!("{dir}/l"))).unwrap();
    for p in ["", "/d", "/a"] {
        let path = env.path(&format!("{dir}{p}"));
        rustix::fs::setxattr(&path, "user.s", b"seed", rustix::fs::XattrFlags::empty()).unwrap();
    }
}

/// The flow of `script`: a step per part [`STEP`] separates.
fn flow(script: &str, fail: bool) -> String {
    let mut text = flow_head("fuzz", &["m"], &[]);
    for (i, part) in script.split(STEP).enumerate() {
        text.push_str(&format!(
            "\n[[steps]]\nname = \"script {i}\"\nuses = \"builtin:run-command\"\nmounts = [\"m\"]\nexec = [\"sh\"]\nwith = {{ program = \"sh\", args = [\"-c\", '''{part}\ntrue'''] }}\n"
        ));
    }
    if fail {
        text.push_str("[[steps]]\nname = \"fail\"\nuses = \"builtin:fail\"\n");
    }
    text
}

/// What a plain run and a captured one must agree on: the times the
/// script set (`touch -d`), not the others (the command's own "now"
/// differs between runs); extended attributes too, so that overlayfs's
/// bookkeeping cannot reach the mount.
fn shape(s: &FullSnapshot) -> Vec<(String, String)> {
    s.iter()
        .map(|(p, f)| {
            let time = match f.mtime < 1_750_000_000 * 1_000_000_000 {
                true => f.mtime.to_string(),
                false => "now".to_owned(),
            };
            (
                p.display().to_string(),
                format!(
                    "{:?} {:o} {:?} {} {:?} {time}",
                    f.node,
                    f.mode,
                    f.owner,
                    f.link_group.display(),
                    f.xattrs
                ),
            )
        })
        .collect()
}

/// `script` (by `sh`) in `dir`, as `user` (root if `None`).
fn sh(user: Option<u32>, script: &str, dir: &Path) -> std::process::Output {
    let mut command = match user {
        None => std::process::Command::new("sh"),
        Some(id) => {
            let id = id.to_string();
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid", &id, "--regid", &id, "--clear-groups", "sh"]);
            c
        }
    };
    command.args(["-c", script]).current_dir(dir).output().unwrap()
}

/// Runs flow `text` as `user` (root if `None`).
fn run_as(env: &Env, user: Option<u32>, text: &str) -> Run {
    match user {
        None => env.run_flow(text),
        Some(id) => {
            let flow = env.flow(text);
            env.stepback_as(id, &["run", flow.to_str().unwrap()])
        }
    }
}

/// Where the failing run is killed: before its `n`th journaled operation
/// (the apply of the command's upper layer records its changes as such),
/// or before the `n`th undo of its rollback; `power`: with power lost (and
/// `recover` then run in another boot).
#[derive(Debug, Clone, Copy)]
enum Crash {
    Op { n: u64, power: bool },
    Undo { n: u64, power: bool },
}

fn crash() -> impl Strategy<Value = Option<Crash>> {
    let power = || prop_oneof![3 => Just(false), 1 => Just(true)];
    prop_oneof![
        3 => Just(None),
        1 => (1u64..30, power()).prop_map(|(n, power)| Some(Crash::Op { n, power })),
        1 => (1u64..30, power()).prop_map(|(n, power)| Some(Crash::Undo { n, power })),
    ]
}

/// Runs the failing flow `text` as root, killed where `crash` says, and
/// recovered if it was; returns what it printed.
fn run_failing(env: &Env, text: &str, crash: Option<Crash>) -> Result<String, TestCaseError> {
    let fault = match crash {
        None => None,
        Some(Crash::Op { n, power }) => Some((n, power, "op")),
        Some(Crash::Undo { n, power }) => Some((n, power, "undo")),
    };
    let kind = |power| if power { "power-loss" } else { "crash" };
    let fault = fault.map(|(n, power, what)| (format!("{}-before-{what}:{n}", kind(power)), power));
    let mut vars = vec![("STEPBACK_FAULT_BOOT", "before")];
    if let Some((f, _)) = &fault {
        vars.push(("STEPBACK_FAULT", f));
    }
    let flow = env.flow(text);
    let run = env.stepback_env(&["run", flow.to_str().unwrap()], &vars);
    let said = format!("{:?}\n{}\n{}", fault, run.stdout(), run.stderr());
    if !run.killed() {
        prop_assert_eq!(run.code(), i32::from(exit::FLOW_FAILED), "{}", said);
        return Ok(run.stdout());
    }
    let boot = if fault.is_some_and(|(_, power)| power) {
        "after"
    } else {
        "before"
    };
    let recovered = env.stepback_env(&["recover"], &[("STEPBACK_FAULT_BOOT", boot)]);
    prop_assert_eq!(
        recovered.code(),
        0,
        "{}\n--- recover\n{}",
        said,
        recovered.stdout()
    );
    Ok(format!("{}{}", run.stdout(), recovered.stdout()))
}

/// The properties for one script, with Stepback (and the plain run) as
/// `user`, or root (and then killed where `crash` says, if anywhere).
fn check(ops: &[String], user: Option<u32>, crash: Option<Crash>) -> Result<(), TestCaseError> {
    let script = ops
        .iter()
        .map(|o| match o == STEP {
            true => o.clone(),
            false => format!("{o} 2>/dev/null"),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\ntrue";
    // Run, then failed: exactly as before.
    let env = Env::new();
    seed(&env, "m", user.is_none());
    if let Some(id) = user {
        env.give_to(id);
    }
    fix_times(&env.path("m"));
    let before = snapshot_full(&env.path("m"));
    let said = match user {
        None => run_failing(&env, &flow(&script, true), crash)?,
        Some(_) => {
            let run = run_as(&env, user, &flow(&script, true));
            prop_assert_eq!(
                run.code(),
                i32::from(exit::FLOW_FAILED),
                "{}\n{}",
                run.stdout(),
                run.stderr()
            );
            run.stdout()
        }
    };
    // No other process runs here: nothing may be taken for one's.
    prop_assert!(!said.contains("KEPT ASIDE"), "{}", said);
    if let Some(diff) = diff_full(&before, &snapshot_full(&env.path("m")), "after the rollback") {
        return Err(TestCaseError::fail(diff));
    }
    // Run alone: what the script makes plainly.
    let env = Env::new();
    seed(&env, "m", user.is_none());
    seed(&env, "plain", user.is_none());
    if let Some(id) = user {
        env.give_to(id);
    }
    prop_assert!(sh(user, &script, &env.path("plain")).status.success());
    let before = snapshot_full(&env.path("m"));
    let run = run_as(&env, user, &flow(&script, false));
    let refused = user.is_some()
        && [
            "a directory that denies its owner",
            "which cannot be applied as one",
        ]
        .iter()
        .any(|s| run.stdout().contains(s));
    if refused {
        // Refused without root (README, "Root or not"): a directory that
        // denies its owner, or two names of one file changed apart in the
        // overlay (which has no index then, README, "Where a command sees a
        // difference"): the step failed, and nothing is left of it.
        prop_assert_eq!(run.code(), i32::from(exit::FLOW_FAILED));
        if let Some(diff) = diff_full(&before, &snapshot_full(&env.path("m")), "after the refusal") {
            return Err(TestCaseError::fail(diff));
        }
        return Ok(());
    }
    prop_assert_eq!(
        run.code(),
        i32::from(exit::SUCCESS),
        "{}\n{}",
        run.stdout(),
        run.stderr()
    );
    let (captured_full, plain_full) = (snapshot_full(&env.path("m")), snapshot_full(&env.path("plain")));
    if user.is_some() && links_split_only(&captured_full, &plain_full) {
        // README, "Root or not": without root, a new hard link to a file
        // that had other names, or that an earlier step made, is a file of
        // its own (the overlay has no index).
        return Ok(());
    }
    let captured = shape(&captured_full);
    if captured != shape(&plain_full) {
        // Where overlayfs itself differs from a plain run, the command saw
        // what the kernel gave it, and the apply must carry over exactly
        // that: without redirects, a directory from before the
        // command cannot be renamed (EXDEV), so `mv` copies it, splitting
        // hard links between files inside and outside it.
        prop_assert_eq!(captured, in_bare_overlay(&env, user, &script));
    }
    Ok(())
}

/// Whether `captured` is `plain` but for hard links: every name the same
/// but for its link group, and names one file in `captured` one file in
/// `plain` too (some of plain's links are files of their own).
fn links_split_only(captured: &FullSnapshot, plain: &FullSnapshot) -> bool {
    let unlinked = |s: &FullSnapshot| -> Vec<(String, String)> {
        shape(s)
            .into_iter()
            .zip(s.values())
            .map(|((p, text), f)| (p, text.replace(&format!(" {} ", f.link_group.display()), " ")))
            .collect()
    };
    unlinked(captured) == unlinked(plain)
        && captured.iter().all(|(p, f)| {
            plain.get(&f.link_group).is_some() && {
                let group = |s: &FullSnapshot, q: &std::path::Path| s.get(q).map(|f| f.link_group.clone());
                group(plain, p) == group(plain, &f.link_group)
            }
        })
}

/// What `script` leaves in an overlay of the seed tree made with
/// Stepback's options, without Stepback.
fn in_bare_overlay(env: &Env, user: Option<u32>, script: &str) -> Vec<(String, String)> {
    seed(env, "lower", user.is_none());
    for d in ["upper", "work", "merged"] {
        env.mkdir(d);
    }
    // The upper layer's root is the merged root: with the lower root's
    // extended attributes, as Stepback gives it them (README, Commands),
    // and the user's, as the mount's is.
    for (name, value) in crate::support::xattrs(&env.path("lower")) {
        rustix::fs::setxattr(
            env.path("upper"),
            &name[..],
            &value,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }
    if let Some(id) = user {
        env.give_to(id);
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=nofollow,metacopy=off,index={},xino=off",
        env.path("lower").display(),
        env.path("upper").display(),
        env.path("work").display(),
        // As root, Stepback's overlays have their index.
        if user.is_some() { "off" } else { "on" },
    );
    let merged = env.path("merged");
    let mount = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(&merged)
        .status()
        .unwrap();
    assert!(mount.success(), "mounting a bare overlay");
    let ran = sh(user, script, &merged);
    let shape = shape(&snapshot_full(&merged));
    let unmounted = std::process::Command::new("umount")
        .arg(&merged)
        .status()
        .unwrap();
    assert!(ran.status.success() && unmounted.success());
    shape
}

#[test]
fn random_commands_are_applied_and_rolled_back_exactly() {
    let cases = env_number("STEPBACK_FUZZ_CASES", CI_CASES);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&(prop::collection::vec(op(), 1..12), crash()), |(ops, crash)| {
        check(&ops, None, crash)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The same, with Stepback and the plain runs as an ordinary user: the
/// overlays are made in a user namespace and keep their bookkeeping in
/// `user.` extended attributes. Half of the budget.
#[test]
fn random_commands_without_root_are_applied_and_rolled_back_exactly() {
    let cases = env_number("STEPBACK_FUZZ_CASES", CI_CASES).div_ceil(2);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(op(), 1..12), |ops| {
        check(&ops, Some(NOBODY), None)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn a_fixed_script_covers_every_kind_of_operation() {
    let ops: Vec<String> = [
        "printf 'x' > n",
        "echo more >> a",
        "mkdir -p d/e/g",
        "mv d/c d/e/moved",
        "chmod 700 d",
        "ln -sfn b l",
        "ln a hard",
        "rm -rf empty",
        "touch -h -d @1500000000 b",
        "mv d dd",
    ]
    .map(str::to_owned)
    .to_vec();
    check(&ops, None, None).unwrap();
    // Found by the fuzzer: a symlink to itself where a directory with
    // changed entries was.
    check(&["rm -rf d".to_owned(), "ln -sfn d d".to_owned()], None, None).unwrap();
    // Found by the fuzzer: a hard link into a directory from before the
    // command, which is then renamed (copied by `mv`, see `check`).
    check(&["ln l empty".to_owned(), "mv empty n".to_owned()], None, None).unwrap();
    // Found by the fuzzer: the same without root (the bare overlay it is
    // compared with was made with a root-owned root the user could not
    // write in).
    let ops = ["ln a d/e", "mv a b", "mv d a"].map(str::to_owned);
    check(&ops, Some(NOBODY), None).unwrap();
    // Found by the fuzzer once scripts ran as several steps: a hard link
    // made by one step's command, its two names changed apart by the
    // next's (the apply wrote both into the one file, the last winning):
    // refused, and rolled back.
    let ops = [
        "ln a empty/y",
        STEP,
        "echo more >> l",
        "python3 -c \"import os; os.removexattr('empty/y', 'user.s', follow_symlinks=False)\"",
    ]
    .map(str::to_owned);
    check(&ops, None, None).unwrap();
    // Found by the fuzzer: a file with two names the run made, written in
    // place through one by the next step's command; its other name was
    // then taken for another process's change.
    let ops = ["ln a n", STEP, "touch -h -d @1000000000 n"].map(str::to_owned);
    check(&ops, None, None).unwrap();
    check(&ops, Some(NOBODY), None).unwrap();
    // Found by the fuzzer once removed symlinks were kept in the backup
    // area: a crash between the link and the removal left the original in
    // place, and its backup-area name behind it after recovery.
    let ops = ["touch -h -d @1000000000 l", "rm -rf d/e", "ln -sfn a empty"].map(str::to_owned);
    check(&ops, None, Some(Crash::Op { n: 6, power: false })).unwrap();
}
