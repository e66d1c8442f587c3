//! A soak of the headline promise: a heavy flow (a release directory
//! renamed back and forth a hundred and fifty times with a descriptor kept
//! on it, files made, replaced, written in place and deleted through it,
//! originals moved into a new directory that is then renamed, and a later
//! step putting some of it back by hand) fails, and its rollback is killed
//! with SIGKILL at a random moment, and so, every other round, is the
//! `stepback recover` that resumes it; the last `recover` must leave the
//! mount exactly as before, every round.
//!
//! `cargo test` runs `CI_ROUNDS`; `STEPBACK_SOAK_ROUNDS=300` runs more
//! (`STEPBACK_SOAK_SEED` replays a run: each round's delays derive from
//! it, and a failing round prints it).

use crate::fsops::{Op, script};
use crate::support::{
    Env, assert_same_full, env_number, fix_times, fsops_steps, shared_cache, snapshot_full,
};
use serde_json::Value;
use std::time::Duration;
use stepback::exit;

/// Rounds in CI.
const CI_ROUNDS: u64 = 24;

/// The `fsops` scripts of the heavy flow's steps (the last one fails).
struct Scripts {
    steps: Vec<Vec<Op>>,
    /// The next descriptor index of the current step (0 is the mount).
    next_fd: usize,
}

impl Scripts {
    fn step(&mut self) {
        self.steps.push(Vec::new());
        self.next_fd = 1;
    }

    fn push(&mut self, op: Op) {
        self.steps.last_mut().unwrap().push(op);
    }

    fn rename(&mut self, (fd, path): (usize, &str), (to_fd, to): (usize, &str)) {
        self.push(Op::rename(fd, path, to_fd, to));
    }

    /// Opens `path` beneath descriptor `fd`; returns the new descriptor.
    fn open(&mut self, fd: usize, path: &str, oflags: &[&str], flags: &[&str]) -> usize {
        self.push(Op::open(fd, path, oflags, flags));
        self.next_fd += 1;
        self.next_fd - 1
    }

    /// Opens, writes `len` bytes at `offset` and closes.
    fn write(&mut self, fd: usize, path: &str, oflags: &[&str], (offset, len): (u64, u64)) {
        let file = self.open(fd, path, oflags, &["write"]);
        self.push(Op::write(file, offset, len, 88));
        self.push(Op::close(file));
    }
}

fn lay_out(env: &Env) {
    for d in 0..4 {
        for f in 0..50 {
            env.write(&format!("m/app/v1/d{d}/f{f}"), vec![b'a' + d as u8; 1024]);
        }
    }
    env.write("m/app/config.txt", "release = 1\n");
    std::os::unix::fs::symlink("v1", env.path("m/app/current")).unwrap();
    fix_times(&env.path("m"));
}

fn heavy_flow(env: &Env) -> std::path::PathBuf {
    let mut s = Scripts {
        steps: Vec::new(),
        next_fd: 1,
    };
    s.step();
    let release = s.open(0, "app/v1", &["directory"], &["read", "mutate-directory"]);
    for i in 0..150u64 {
        let (d, f) = (i % 4, i % 50);
        s.rename((0, "app/v1"), (0, "app/v1.old"));
        s.write(release, &format!("new{i}"), &["create"], (0, 100 + i));
        match i % 5 {
            0 => s.push(Op::unlink(release, format!("d{d}/f{f}"))),
            1 => s.write(release, &format!("d{d}/f{f}"), &["truncate"], (0, 10)),
            2 => s.write(release, &format!("d{d}/f{f}"), &[], (i, 7)),
            _ => s.push(Op::set_times_at(release, format!("d{d}/f{f}"), i as i64)),
        }
        s.rename((0, "app/v1.old"), (0, "app/v1"));
    }
    s.push(Op::mkdir(0, "app/v2"));
    s.rename((release, "d0"), (0, "app/v2/d0"));
    s.rename((0, "app/v2"), (0, "app/v3"));
    s.write(0, "app/config.txt", &["truncate"], (0, 20));
    // A later step puts some of it back by hand.
    s.step();
    s.rename((0, "app/v3/d0"), (0, "app/v1/d0"));
    for i in (0..150u64).step_by(5) {
        s.write(
            0,
            &format!("app/v1/d{}/f{}", i % 4, i % 50),
            &["create"],
            (0, 1024),
        );
    }
    s.push(Op::rmdir(0, "app/v3"));
    s.step();
    let scripts: Vec<Value> = s.steps.iter().map(|ops| script(ops)).collect();
    fsops_steps(env, &scripts, true)
}

/// Starts `stepback ARGS`, waits until it prints a line holding `ready`
/// (any line when empty), then lets it go on for `delay` and kills it;
/// returns whether it was still running then.
fn kill_after(env: &Env, args: &[&str], ready: &str, delay: Duration) -> bool {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let mut child = env
        .command(args, &shared_cache())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    if !ready.is_empty() {
        // Until the line, or the end of the output (it finished first).
        lines
            .by_ref()
            .map_while(Result::ok)
            .find(|line| line.contains(ready));
    }
    std::thread::sleep(delay);
    let _ = child.kill();
    // Drained, so that it never blocks on a full pipe before the kill.
    lines.for_each(drop);
    child.wait().unwrap().signal() == Some(9)
}

/// How long an uninterrupted rollback of the heavy flow takes here.
fn rollback_time() -> Duration {
    let env = Env::new();
    lay_out(&env);
    let flow = heavy_flow(&env);
    let run = env.stepback(&["run", flow.to_str().unwrap()]);
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("every path restored");
    let out = run.stdout();
    let ms: u64 = out
        .split("changes undone in ")
        .nth(1)
        .and_then(|rest| rest.split("ms").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rollback time in {out}"));
    assert!(out.contains("rolling back"), "{out}");
    Duration::from_millis(ms.max(1))
}

fn check_round(seed: u64, round: u64, window: Duration) -> (bool, bool) {
    let mut state = (seed ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
    let mut random = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n.max(1)
    };
    let env = Env::new();
    lay_out(&env);
    let before = snapshot_full(&env.path("m"));
    let flow = heavy_flow(&env);
    let delay = |random: &mut dyn FnMut(u64) -> u64| Duration::from_micros(random(window.as_micros() as u64));
    let run = ["run", flow.to_str().unwrap()];
    let in_rollback = kill_after(&env, &run, "rolling back", delay(&mut random));
    let in_recover = round % 2 == 1 && kill_after(&env, &["recover"], "", delay(&mut random));
    let recovered = env.stepback(&["recover"]);
    let said = format!("seed {seed}, round {round}:\n{}", recovered.stdout());
    assert_eq!(recovered.code(), i32::from(exit::SUCCESS), "{said}");
    assert!(!said.contains("KEPT ASIDE"), "a false alarm: {said}");
    assert_same_full(&before, &snapshot_full(&env.path("m")), &said);
    (in_rollback, in_recover)
}

#[test]
fn a_rollback_and_its_recovery_killed_at_random_moments_restore_the_mount_exactly() {
    let rounds = env_number("STEPBACK_SOAK_ROUNDS", CI_ROUNDS);
    let now = std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_nanos() as u64;
    let seed = env_number("STEPBACK_SOAK_SEED", now);
    // Kills spread over the whole rollback, and a little past it; when
    // one comes too late (the machine got faster than when measured, other
    // tests having finished), the next ones come earlier.
    let measured = rollback_time();
    let mut window = measured * 5 / 4;
    let (mut mid_rollback, mut mid_recover) = (0, 0);
    for round in 0..rounds {
        let (a, b) = check_round(seed, round, window);
        mid_rollback += u64::from(a);
        mid_recover += u64::from(b);
        if !a {
            window = window * 3 / 4;
        }
    }
    println!(
        "soak (seed {seed}): {rounds} rounds, {mid_rollback} rollbacks and {mid_recover} recoveries killed midway, \
         every mount restored exactly (rollback {} ms uninterrupted)",
        measured.as_millis()
    );
    assert!(
        mid_rollback * 2 >= rounds,
        "only {mid_rollback} of {rounds} kills landed in the rollback: the soak tests too little"
    );
}
