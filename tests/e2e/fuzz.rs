//! Model-based fuzzing of the guarantee: a random starting tree (hard
//! links, symlinks in and out of the mount, sparse files, other owners,
//! extended attributes, odd modes, times before 1970 and with nanoseconds),
//! a random sequence of raw `wasi:filesystem` calls through the `fsops`
//! guest (every open and descriptor flag, `.`, `..`, empty and trailing-slash
//! paths, symlinks, hard links, descriptors kept open across renames and
//! deletions, calls meant to fail), split over up to three steps, then a
//! failure. Property: the mount and a directory beside it are exactly as
//! before, and nothing was taken for another process's change (nothing
//! else touches them); the same when the engine is killed in any phase
//! (at a random journaled operation of a step, at a random undo of the
//! rollback or of a forced `stepback undo`, with or without power lost),
//! then `stepback recover` killed too, up to twice, and run to the end.
//!
//! proptest shrinks a failing sequence to a minimal one and prints it.
//! `STEPBACK_FUZZ_CASES` sets the number of sequences (CI's budget is the
//! default); `STEPBACK_FUZZ_LONG=1` runs batches until stopped, printing
//! how many sequences were tried. For a long run beside other work, test a
//! copy of the binary: `STEPBACK_TEST_BIN=/tmp/stepback`.

use crate::fsops::{Op, script};
use crate::support::{Env, Run, diff_full, env_number, fix_times, fsops_steps, set_mtime, snapshot_full};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use stepback::exit;

/// Sequences per run of the test in CI.
const CI_CASES: u32 = 120;

/// Names a path can be made of: entries of the starting tree, names the
/// sequence may create, and a symlink's way out.
const NAMES: &[&str] = &[
    "a", "b", "d", "deep", "g", "n", "s", "h1", "h2", "sparse", "up", "x",
];

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(NAMES).prop_map(str::to_owned)
}

/// A path as a hostile plugin writes it: one to three names, and now and
/// then `.`, `..`, a trailing slash, an empty path or a way out.
fn path() -> impl Strategy<Value = String> {
    let plain = || prop::collection::vec(name(), 1..=3).prop_map(|parts| parts.join("/"));
    prop_oneof![
        8 => plain(),
        1 => plain().prop_map(|p| format!("{p}/")),
        1 => plain().prop_map(|p| format!("{p}/.")),
        1 => plain().prop_map(|p| format!("{p}/..")),
        1 => plain().prop_map(|p| format!("./{p}")),
        1 => prop::sample::select(vec!["", ".", "..", "../outside/o.txt", "d/../a", "/etc/hostname"])
            .prop_map(str::to_owned),
    ]
}

fn fd() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(0usize), 2 => 1usize..12]
}

/// Directories, and names a directory may be renamed to, for the renames
/// back and forth that flows moving releases around make (through
/// descriptors opened on them, which keep pointing at the directory).
fn dir_path() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["d", "n", "d/deep", "n/deep", "x", "d/n", "n/d"]).prop_map(str::to_owned)
}

fn subset(all: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
    prop::sample::subsequence(all, 0..=all.len())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (fd(), path(), any::<bool>(), subset(&["create", "directory", "exclusive", "truncate"]),
              subset(&["read", "write", "mutate-directory", "data-integrity-sync"]))
            .prop_map(|(fd, path, follow, oflags, flags)| Op::open(fd, path, &oflags, &flags).follow(follow)),
        2 => (fd(), path()).prop_map(|(fd, path)| Op::mkdir(fd, path)),
        2 => (fd(), path(), path()).prop_map(|(fd, target, path)| Op::symlink(fd, target, path)),
        2 => (fd(), any::<bool>(), path(), fd(), path()).prop_map(|(fd, follow, path, to_fd, to)|
            Op::link(fd, path, to_fd, to).follow(follow)),
        2 => (fd(), path()).prop_map(|(fd, path)| Op::unlink(fd, path)),
        2 => (fd(), path()).prop_map(|(fd, path)| Op::rmdir(fd, path)),
        3 => (fd(), path(), fd(), path()).prop_map(|(fd, path, to_fd, to)| Op::rename(fd, path, to_fd, to)),
        2 => (fd(), prop::option::of(path()), any::<bool>(), prop_oneof![Just(0i64), Just(-1), 1i64..2_000_000_000])
            .prop_map(|(fd, path, follow, seconds)| Op::SetTimes { fd, path, follow, seconds }),
        4 => (1usize..12, prop_oneof![0u64..64, Just(1 << 20), Just(5 << 30)], 1u64..9000)
            .prop_map(|(fd, offset, len)| Op::write(fd, offset, len, 66)),
        2 => (1usize..12, prop::option::of(0u64..100), 1u64..5000, 1u32..4)
            .prop_map(|(fd, offset, len, count)| Op::stream(fd, offset, len, 67, count)),
        2 => (1usize..12, prop_oneof![0u64..10, Just(3 << 30)])
            .prop_map(|(fd, size)| Op::set_size(fd, size)),
        1 => (1usize..12).prop_map(Op::close),
        3 => (dir_path(), dir_path()).prop_map(|(path, to)| Op::rename(0, path, 0, to)),
        2 => dir_path().prop_map(|path| Op::open(0, path, &["directory"], &["read", "mutate-directory"])),
    ]
}

/// A starting tree chosen by `seed`: the same seed, the same tree.
fn lay_out(env: &Env, seed: u64) {
    let mut state = seed | 1;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let m = env.path("m");
    env.write("outside/o.txt", "outside");
    env.write("m/a", "alpha");
    env.write("m/b", vec![b'b'; 1 + next(70_000) as usize]);
    env.write("m/d/g", "golf");
    env.write("m/d/deep/x", "x-ray");
    if next(2) == 0 {
        env.mkdir("m/n");
    }
    // A sparse file: 4 KiB of data in 64 MiB.
    let sparse = fs::File::create(m.join("sparse")).unwrap();
    sparse.set_len(64 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, &[1; 4096], 1 << 20).unwrap();
    // Hard links: within the mount, and across its boundary.
    fs::hard_link(m.join("a"), m.join("d/h1")).unwrap();
    fs::hard_link(env.path("outside/o.txt"), m.join("h2")).unwrap();
    symlink("d", m.join("s")).unwrap();
    symlink("..", m.join("d/up")).unwrap();
    if next(2) == 0 {
        symlink("../outside", m.join("x")).unwrap();
    }
    for (rel, mode) in [("a", 0o600), ("b", 0o4755), ("d", 0o750), ("d/deep", 0o700)] {
        let mode = if next(3) == 0 { 0o644 } else { mode };
        fs::set_permissions(m.join(rel), fs::Permissions::from_mode(mode)).unwrap();
    }
    if rustix::process::geteuid().is_root() {
        for rel in ["b", "d/g", "s"] {
            let id = 1000 + next(3) as u32;
            rustix::fs::chownat(
                rustix::fs::CWD,
                m.join(rel),
                Some(rustix::fs::Uid::from_raw(id)),
                Some(rustix::fs::Gid::from_raw(id)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
        }
    }
    for rel in ["a", "d", "d/deep"] {
        let _ = rustix::fs::setxattr(
            m.join(rel),
            "user.stepback",
            b"kept",
            rustix::fs::XattrFlags::empty(),
        );
    }
    // Names and values are bytes, not text.
    let _ = rustix::fs::setxattr(
        m.join("d/deep"),
        &b"user.caf\xe9"[..],
        b"\xff\x00",
        rustix::fs::XattrFlags::empty(),
    );
    fix_times(&m);
    fix_times(&env.path("outside"));
    // One entry from before 1970, with nanoseconds.
    set_mtime(&m.join("d/g"), -86_400 * 365 - next(1000) as i64, 987_654_321);
}

/// Where the engine is killed (as `STEPBACK_FAULT` says), in each phase
/// that changes the mount; `power`: with what the journal had not synced
/// lost too, as a power cut would.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Before journaled operation `n` of a step.
    Step { n: u64, power: bool },
    /// Before undo `n` of the failed flow's rollback.
    Rollback { n: u64, power: bool },
    /// The flow succeeds, and `stepback undo --force` of it is killed
    /// before its undo `n`.
    Undo { n: u64, power: bool },
}

/// A crash in one phase, then `recover` killed before undo `n` of its
/// own rollback for each entry of `recover` in turn (a crash of the
/// recovery), then a `recover` that must finish.
#[derive(Debug, Clone)]
struct Crashes {
    first: Phase,
    recover: Vec<(u64, bool)>,
}

/// Runs the engine on one case's environment, each time in the boot the
/// machine is in (`STEPBACK_FAULT_BOOT`): a power cut starts a new one, in
/// which what the journal had not synced cannot be trusted.
struct Machine<'e> {
    env: &'e Env,
    boot: u32,
    /// What each invocation printed, for the failure message.
    said: String,
    outputs: Vec<String>,
}

impl Machine<'_> {
    /// `stepback ARGS`, killed before the `n`th operation (`what` = "op")
    /// or undo ("undo") where `fault` says, with power lost if `power`.
    fn stepback(&mut self, args: &[&str], fault: Option<(&str, u64, bool)>) -> Run {
        let boot = format!("boot-{}", self.boot);
        let mut vars = vec![("STEPBACK_FAULT_BOOT", boot)];
        if let Some((what, n, power)) = fault {
            let kind = if power { "power-loss" } else { "crash" };
            vars.push(("STEPBACK_FAULT", format!("{kind}-before-{what}:{n}")));
        }
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let run = self.env.stepback_env(args, &vars);
        if run.killed() && fault.is_some_and(|(_, _, power)| power) {
            self.boot += 1;
        }
        self.said.push_str(&format!(
            "\n--- stepback {} (fault {fault:?}): {}\n{}{}",
            args.join(" "),
            if run.killed() {
                "killed".to_owned()
            } else {
                format!("exit {}", run.code())
            },
            run.stdout(),
            run.stderr()
        ));
        self.outputs.push(run.stdout());
        run
    }
}

/// One case: run the sequence, split into steps, and fail; the mount and
/// `outside/` must be as they were, and nothing may have been taken for
/// another process's change (nothing else touches them). With `crashes`,
/// the engine is killed where they say (and then `recover` too), and the
/// last `recover` must bring them back.
fn check(seed: u64, steps: &[Vec<Op>], crashes: Option<&Crashes>) -> Result<(), TestCaseError> {
    let env = Env::new();
    lay_out(&env, seed);
    let before = (snapshot_full(&env.path("m")), snapshot_full(&env.path("outside")));
    let scripts: Vec<Value> = steps.iter().map(|ops| script(ops)).collect();
    let first = crashes.map(|c| c.first);
    let undo_phase = matches!(first, Some(Phase::Undo { .. }));
    let flow = fsops_steps(&env, &scripts, !undo_phase);
    let mut machine = Machine {
        env: &env,
        boot: 0,
        said: format!(
            "seed {seed}, crashes {crashes:?}, calls:\n{}",
            serde_json::to_string(steps).unwrap()
        ),
        outputs: Vec::new(),
    };
    let fault = match first {
        Some(Phase::Step { n, power }) => Some(("op", n, power)),
        Some(Phase::Rollback { n, power }) => Some(("undo", n, power)),
        _ => None,
    };
    let run = machine.stepback(&["run", flow.to_str().unwrap()], fault);
    let mut crashed = run.killed();
    if let (Some(Phase::Undo { n, power }), false) = (first, crashed) {
        prop_assert_eq!(
            run.code(),
            i32::from(exit::SUCCESS),
            "the flow did not succeed:{}",
            machine.said
        );
        let undo = machine.stepback(&["undo", &run.run_id(), "--force"], Some(("undo", n, power)));
        crashed = undo.killed();
        if !crashed {
            prop_assert_eq!(
                undo.code(),
                i32::from(exit::SUCCESS),
                "the undo did not finish cleanly:{}",
                machine.said
            );
        }
    } else if !crashed {
        prop_assert_eq!(
            run.code(),
            1,
            "the flow did not roll back cleanly:{}",
            machine.said
        );
        prop_assert!(run.stdout().contains("every path restored"), "{}", machine.said);
    }
    if crashed {
        for &(n, power) in crashes.map_or(&[][..], |c| &c.recover[..]) {
            let recovered = machine.stepback(&["recover"], Some(("undo", n, power)));
            if !recovered.killed() {
                prop_assert_eq!(
                    recovered.code(),
                    i32::from(exit::SUCCESS),
                    "recover failed:{}",
                    machine.said
                );
                break;
            }
        }
        let recovered = machine.stepback(&["recover"], None);
        prop_assert_eq!(
            recovered.code(),
            0,
            "recover failed after a crash:{}",
            machine.said
        );
    }
    let said = &machine.said;
    prop_assert!(
        !machine.outputs.iter().any(|o| o.contains("KEPT ASIDE")),
        "a false alarm:{}",
        said
    );
    let after = (snapshot_full(&env.path("m")), snapshot_full(&env.path("outside")));
    let differs = diff_full(&before.0, &after.0, "the mount")
        .or_else(|| diff_full(&before.1, &after.1, "outside the mount"));
    if let Some(why) = differs {
        return Err(TestCaseError::fail(format!("{why}{said}")));
    }
    Ok(())
}

fn crashes() -> impl Strategy<Value = Crashes> {
    let power = || prop_oneof![3 => Just(false), 1 => Just(true)];
    let first = prop_oneof![
        2 => (1u64..40, power()).prop_map(|(n, power)| Phase::Step { n, power }),
        2 => (1u64..60, power()).prop_map(|(n, power)| Phase::Rollback { n, power }),
        1 => (1u64..60, power()).prop_map(|(n, power)| Phase::Undo { n, power }),
    ];
    (first, prop::collection::vec((1u64..40, power()), 0..=2))
        .prop_map(|(first, recover)| Crashes { first, recover })
}

fn case() -> impl Strategy<Value = (u64, Vec<Vec<Op>>, Option<Crashes>)> {
    (
        any::<u64>(),
        prop::collection::vec(prop::collection::vec(op(), 1..40), 1..=3),
        prop_oneof![3 => Just(None), 1 => crashes().prop_map(Some)],
    )
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 400,
        ..Config::default()
    })
}

#[test]
fn random_sequences_of_calls_are_rolled_back_exactly() {
    let long = std::env::var_os("STEPBACK_FUZZ_LONG").is_some();
    let cases = env_number("STEPBACK_FUZZ_CASES", CI_CASES);
    let mut tried = 0u64;
    loop {
        let result = runner(cases).run(&case(), |(seed, steps, crashes)| {
            check(seed, &steps, crashes.as_ref())
        });
        tried += u64::from(cases);
        if let Err(e) = result {
            panic!("after {tried} sequences (the last batch's count included): {e}");
        }
        println!("fuzz: {tried} sequences tried, 0 failures");
        if !long {
            break;
        }
    }
}
