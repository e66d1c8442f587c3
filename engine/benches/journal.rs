//! Journal benchmarks (B1–B5 of the journal issue), printed as medians of
//! runs interleaved side by side, so that the machine's drift hits every
//! variant alike. Run with `cargo bench --bench journal`; the figures go to
//! README.md and the issue.
//!
//! - B1: deploy 10,000 files of 4 KiB into a new directory: journaled vs
//!   journal off vs `cp -r`; peak RSS of the journaled run.
//! - B2: overwrite those 10,000 files: journaled vs journal off, and the
//!   bytes copied into backups (should be 0: originals are moved aside).
//! - B3: roll B2 back; compared with B2's own step time.
//! - B4: deploy one 1 GiB file vs `cp`.
//! - B5: `stepback recover` after a crash with 10,000 undo records.
//! - B6: roll back 20,000 renames, against the step that made them.
//! - B7: roll back 20,000 mixed changes to existing files (overwrites,
//!   appends, deletions, time changes, renames), against their step.
//!
//! Every run is a `stepback` process with a warm compiled cache; step
//! times come from its JSON events, so process start-up is excluded there.
//! `cargo bench --bench journal -- B3 B5` runs only the benchmarks named.
//! `STEPBACK_BENCH_DIR=/dev/shm` runs them on another filesystem than the
//! target directory's: on tmpfs, the engine's own cost shows without the
//! disk's noise.

mod common;
/// The tests' typed builder of fsops scripts (the guest's `ops`), shared
/// so that the benches and tests write one contract; the benches use part
/// of it.
#[allow(dead_code)]
#[path = "../../tests/e2e/fsops.rs"]
mod fsops;

use common::{Bench, median, ms, ratio, sync};
use fsops::{Op, script};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const FILES: usize = 10_000;

fn flow(name: &str, from: &str, fail: bool) -> String {
    let mut text = format!(
        r#"name = "{name}"
[params.to]
default = "tree"
[[mounts]]
name = "src"
host = "src"
guest = "/src"
access = "read-only"
[[mounts]]
name = "dst"
host = "dst"
guest = "/dst"
access = "read-write"
[[steps]]
name = "deploy"
uses = "builtin:deploy-files"
mounts = ["src", "dst"]
with = {{ from = "{from}", to = "/dst/${{to}}" }}
limits = {{ time = "1h", memory = "256MiB" }}
"#
    );
    if fail {
        text.push_str("[[steps]]\nname = \"fail\"\nuses = \"builtin:fail\"\n");
    }
    text
}

fn main() {
    let (_scratch, bench) = Bench::in_scratch();
    let root = bench.root.clone();
    std::fs::create_dir_all(root.join("dst")).unwrap();
    for i in 0..FILES {
        let dir = root.join(format!("src/tree/d{:03}", i / 100));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..4096u32).map(|b| (b as usize * 31 + i) as u8).collect();
        std::fs::write(dir.join(format!("f{:03}.bin", i % 100)), data).unwrap();
    }
    std::fs::write(root.join("deploy.toml"), flow("b1", "/src/tree", false)).unwrap();
    std::fs::write(root.join("deploy-fail.toml"), flow("b3", "/src/tree", true)).unwrap();
    std::fs::write(root.join("big.toml"), flow("b4", "/src/big.bin", false)).unwrap();
    // Warm the compiled cache.
    bench.stepback(&["run", "deploy.toml", "-p", "to=warm"], None);
    let only: Vec<String> = std::env::args().skip(1).filter(|a| a.starts_with('B')).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);

    if !wanted("B1") {
        // The later benchmarks overwrite the trees B1 deploys.
        for i in 0..RUNS {
            bench.stepback(
                &["run", "--no-journal", "deploy.toml", "-p", &format!("to=j{i}")],
                None,
            );
        }
    } else {
        b1(&bench, &root);
    }
    if wanted("B2") {
        b2(&bench);
    }
    if wanted("B3") {
        b3(&bench);
    }
    if wanted("B5") {
        b5(&bench);
    }
    if wanted("B4") {
        b4(&bench, &root);
    }
    if wanted("B6") || wanted("B7") {
        churn_tree(&root);
    }
    if wanted("B6") {
        b6_b7(&bench, &root, "B6", "20,000 renames", renames());
    }
    if wanted("B7") {
        b6_b7(
            &bench,
            &root,
            "B7",
            "20,000 mixed changes to existing files",
            mixed(),
        );
    }
}

const CHURN: usize = 20_000;

/// 20,000 files of 4 KiB in 200 directories, for B6 and B7.
fn churn_tree(root: &Path) {
    for i in 0..CHURN {
        let dir = root.join(format!("churn/d{:03}", i / 100));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{:03}", i % 100)), vec![i as u8; 4096]).unwrap();
    }
}

fn churn_name(i: usize) -> String {
    format!("d{:03}/f{:03}", i / 100, i % 100)
}

/// Renames every file of the churn tree within its directory.
fn renames() -> Vec<Op> {
    (0..CHURN)
        .map(|i| Op::rename(0, churn_name(i), 0, churn_name(i).replace("/f", "/g")))
        .collect()
}

/// One change to every file of the churn tree, five kinds in turn.
fn mixed() -> Vec<Op> {
    let mut ops = Vec::new();
    let mut fds = 0;
    for i in 0..CHURN {
        let path = churn_name(i);
        match i % 5 {
            0 | 1 => {
                let (oflags, offset): (&[&str], u64) = if i % 5 == 0 {
                    (&["truncate"], 0)
                } else {
                    (&[], 4096)
                };
                ops.push(Op::open(0, path, oflags, &["write"]));
                fds += 1;
                ops.push(Op::write(fds, offset, 16, 7));
                ops.push(Op::close(fds));
            }
            2 => ops.push(Op::unlink(0, path)),
            3 => ops.push(Op::set_times_at(0, path, 1_000_000)),
            _ => {
                let to = path.replace("/f", "/h");
                ops.push(Op::rename(0, path, 0, to));
            }
        }
    }
    ops
}

/// Runs `ops` on the churn tree in a step that then fails: the step's
/// time against its rollback's.
fn b6_b7(bench: &Bench, root: &Path, name: &str, what: &str, ops: Vec<Op>) {
    println!("{name}: roll back {what} (median of {RUNS})");
    let flow = serde_json::json!({
        "name": name,
        "mounts": [{"name": "churn", "host": "churn", "guest": "/churn", "access": "read-write"}],
        "steps": [{
            "name": "churn",
            "uses": format!("{}/fsops.wasm", env!("STEPBACK_PLUGIN_DIR")),
            "mounts": ["churn"],
            "limits": {"time": "1h", "memory": "1GiB"},
            "with": {"ops": script(&ops), "fail": true},
        }],
    });
    let file = root.join(format!("{name}.json"));
    std::fs::write(&file, flow.to_string()).unwrap();
    let file = file.display().to_string();
    step_and_rollback(bench, ("step", "0.5"), |_, _| {
        vec!["run".to_owned(), file.clone()]
    });
}

fn b1(bench: &Bench, root: &Path) {
    println!("B1: deploy {FILES} files of 4 KiB into a new directory (median of {RUNS})");
    let (mut journaled, mut off, mut cp, mut rss) = (vec![], vec![], vec![], vec![]);
    for i in 0..RUNS {
        let j = bench.stepback(&["run", "deploy.toml", "-p", &format!("to=j{i}")], None);
        rss.extend(j.peak_rss_kib);
        journaled.push(j.wall);
        off.push(
            bench
                .stepback(
                    &["run", "--no-journal", "deploy.toml", "-p", &format!("to=o{i}")],
                    None,
                )
                .wall,
        );
        sync();
        let start = Instant::now();
        let status = Command::new("cp")
            .args(["-r", "src/tree", &format!("dst/c{i}")])
            .current_dir(root)
            .status()
            .unwrap();
        assert!(status.success());
        cp.push(start.elapsed());
    }
    let (j, o, c) = (median(journaled), median(off), median(cp));
    println!("  journaled {}  journal off {}  cp -r {}", ms(j), ms(o), ms(c));
    println!(
        "  journaled/off {} (target <= 1.10)  journaled/cp {} (target <= 2.0)",
        ratio(j, o),
        ratio(j, c)
    );
    if let Some(peak) = rss.iter().max() {
        println!(
            "  peak RSS of the journaled runs: {} MiB (target < 100 MiB)",
            peak / 1024
        );
    }
}

fn b2(bench: &Bench) {
    println!("B2: overwrite those {FILES} files (median of {RUNS})");
    let (mut journaled, mut off, mut process) = (vec![], vec![], vec![]);
    for i in 0..RUNS {
        let target = format!("to=j{i}");
        journaled.push(bench.stepback(&["run", "deploy.toml", "-p", &target], None).steps);
        off.push(
            bench
                .stepback(&["run", "--no-journal", "deploy.toml", "-p", &target], None)
                .steps,
        );
        process.push(
            bench
                .stepback(&["run", "--sync", "process", "deploy.toml", "-p", &target], None)
                .steps,
        );
    }
    let (j, o, p) = (median(journaled), median(off), median(process));
    println!(
        "  step time: journaled {}  --sync process {}  journal off {}",
        ms(j),
        ms(p),
        ms(o)
    );
    println!(
        "  journaled/off {} (target <= 1.25)  process/off {}",
        ratio(j, o),
        ratio(p, o)
    );
    println!("  bytes copied into backups: {}", copied_bytes(bench));
}

/// Another build of `stepback` to run side by side with this one
/// (`STEPBACK_BENCH_BASELINE`), with a state directory of its own: an
/// older build need not read this one's journals.
fn baseline(bench: &Bench) -> Option<(PathBuf, String)> {
    let bin = PathBuf::from(std::env::var_os("STEPBACK_BENCH_BASELINE")?);
    Some((bin, bench.root.join("state-baseline").display().to_string()))
}

/// Step and rollback times of `args` run `RUNS` times (with `args_of(i)`),
/// and the same with the baseline build interleaved; prints both.
fn step_and_rollback(bench: &Bench, what: (&str, &str), args_of: impl Fn(usize, &str) -> Vec<String>) {
    let (step_name, target) = what;
    let base = baseline(bench);
    let (mut step, mut rollback, mut base_step, mut base_rollback) = (vec![], vec![], vec![], vec![]);
    for i in 0..RUNS {
        let args = args_of(i, "j");
        let m = bench.stepback(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
        step.push(m.steps);
        rollback.push(m.rollback.expect("the flow is rolled back"));
        if let Some((bin, state)) = &base {
            let mut args = vec!["--state-dir".to_owned(), state.clone()];
            args.extend(args_of(i, "b"));
            let m = bench.stepback_bin(bin, &args.iter().map(String::as_str).collect::<Vec<_>>(), None);
            base_step.push(m.steps);
            base_rollback.push(m.rollback.expect("the flow is rolled back"));
        }
    }
    let (s, r) = (median(step), median(rollback));
    println!(
        "  {step_name} {}  rollback {}  rollback/{step_name} {} (target <= {target})",
        ms(s),
        ms(r),
        ratio(r, s)
    );
    if let Some((bin, _)) = base {
        let (bs, br) = (median(base_step), median(base_rollback));
        println!(
            "  baseline {}: {step_name} {}  rollback {}  rollback/{step_name} {}; rollback now/baseline {}",
            bin.display(),
            ms(bs),
            ms(br),
            ratio(br, bs),
            ratio(r, br)
        );
    }
}

fn b3(bench: &Bench) {
    println!("B3: roll back an overwrite of {FILES} files (median of {RUNS})");
    // What is overwritten: B1's deploys, made here when B1 did not run.
    for i in 0..RUNS {
        for tag in ["j", "b"] {
            if !bench.root.join(format!("dst/{tag}{i}")).exists() {
                let to = format!("to={tag}{i}");
                bench.stepback(&["run", "--no-journal", "deploy.toml", "-p", &to], None);
            }
        }
    }
    step_and_rollback(bench, ("overwrite", "0.5"), |i, tag| {
        ["run", "deploy-fail.toml", "-p", &format!("to={tag}{i}")]
            .map(str::to_owned)
            .to_vec()
    });
}

fn b5(bench: &Bench) {
    println!("B5: recover after a crash with {FILES} undo records (median of {RUNS})");
    let mut recover = vec![];
    for i in 0..RUNS {
        bench.stepback(
            &["run", "deploy.toml", "-p", &format!("to=j{i}")],
            Some(&format!("crash-before-op:{}", FILES + 50)),
        );
        recover.push(bench.stepback(&["recover"], None).wall);
    }
    println!("  stepback recover: {} (target < 1 s)", ms(median(recover)));
}

fn b4(bench: &Bench, root: &Path) {
    println!("B4: deploy one 1 GiB file (median of 3)");
    let big = root.join("src/big.bin");
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 253) as u8).collect();
    let mut file = std::fs::File::create(&big).unwrap();
    for _ in 0..1024 {
        std::io::Write::write_all(&mut file, &chunk).unwrap();
    }
    drop(file);
    let (mut engine, mut cp) = (vec![], vec![]);
    for i in 0..3 {
        engine.push(
            bench
                .stepback(&["run", "big.toml", "-p", &format!("to=big{i}.bin")], None)
                .steps,
        );
        sync();
        let start = Instant::now();
        let target = format!("dst/cpbig{i}.bin");
        assert!(
            Command::new("cp")
                .args(["src/big.bin", &target])
                .current_dir(root)
                .status()
                .unwrap()
                .success()
        );
        cp.push(start.elapsed());
        let _ = std::fs::remove_file(root.join(&target));
        let _ = std::fs::remove_file(root.join(format!("dst/big{i}.bin")));
    }
    let (e, c) = (median(engine), median(cp));
    let gib = |d: Duration| format!("{:.2} GiB/s", 1.0 / d.as_secs_f64());
    println!(
        "  stepback {} ({})  cp {} ({})  throughput ratio {} (target >= 0.8)",
        ms(e),
        gib(e),
        ms(c),
        gib(c),
        ratio(c, e)
    );
}

/// Bytes of `copied` records in the newest run's journal.
fn copied_bytes(bench: &Bench) -> u64 {
    let runs = bench.state().join("runs");
    let mut ids: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ids.sort();
    let journal = std::fs::read_to_string(ids.last().unwrap().join("journal")).unwrap();
    journal
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(_, json)| serde_json::from_str::<serde_json::Value>(json).ok())
        .filter(|r| r["undo"]["op"] == "copied")
        .map(|r| r["undo"]["size"].as_u64().unwrap_or(0))
        .sum()
}
