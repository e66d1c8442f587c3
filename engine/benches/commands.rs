//! Commands benchmarks (issue 9), medians of runs interleaved side by
//! side. `cargo bench --bench commands [C1|C2|C3|C4|C5]`, as root (overlays and
//! mounts). `STEPBACK_BENCH_DIR` picks the first filesystem (the default
//! is the target directory's).
//!
//! - C1: a command rewrites 10,000 small files of its mount, on three
//!   filesystems: the bench directory's, an ext4 with a journal (a loop
//!   image the bench makes, as devices run), and tmpfs. Four ways each:
//!   - `plain`: the command alone;
//!   - `overlay`: the command in a bare overlay with Stepback's options,
//!     no Stepback: what the kernel's copy-up costs, the floor for any
//!     capture by overlay;
//!   - `captured`: the step (overlay, then the apply through the
//!     journal; the apply's own time from the step's log);
//!   - `uncaptured`: the step with `capture = "none"`.
//!
//!   Every run gets its own copy of the files, made before anything is
//!   timed, and nothing is deleted until all runs are (`--keep` keeps
//!   every run's backups). On an ext4 without a journal (this project's
//!   machines), an inode made within seconds of a mass deletion is found
//!   only after a scan over the recently deleted ones (`recently_deleted`
//!   in ext4's allocator): that slows whatever makes files, copy-up
//!   among them, and not a plain rewrite, so back-to-back runs that
//!   delete their predecessors' files measure the allocator, not the
//!   capture.
//! - C2: a command appends one line to a 1 GiB file: captured against
//!   plain. Overlayfs copies the whole file up before the first write to it
//!   (`metacopy` is off so that the upper layer holds plain files), so the
//!   captured append costs one copy of the file; the apply then swaps it
//!   with the original (one `renameat2(RENAME_EXCHANGE)`).
//! - C3: as C1, but the command adds a new file of 1 KiB next to each
//!   of the 10,000 (ten thousand creations in existing directories, as an
//!   install does): the apply moves each in by one rename, all recorded
//!   with one sync.
//! - C4: as C1, but the command removes the 100 directories with their
//!   10,000 files (an old release deleted): the apply moves each directory
//!   whole into the backup area, one rename each.
//! - C5: as C1, but the command copies the 100 directories into a new
//!   one (a release unpacked into a new directory: 10,000 new files in
//!   101 new directories): the apply moves the new directory in whole.
//!
//! With `STEPBACK_BENCH_BASELINE=PATH` (another build of `stepback`, say
//! the last commit's), C1 and C3 also run the captured step with that
//! binary, interleaved with the others: a change's effect, side by side.
//!
//! Step times come from `stepback`'s JSON events, so process start-up and
//! validation are excluded; the plain runs are timed around `sh`.

mod common;

use common::{Bench, median, ms, ratio, sync};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const FILES: usize = 10_000;
const REWRITE: &str = r#"for f in d*/f*; do echo rewritten > "$f"; done"#;
const ADD: &str = r#"for f in d*/f*; do echo added > "$f.new"; done"#;
const REMOVE: &str = "rm -rf d*";
const COPY: &str = "mkdir new && cp -r d* new/";
const APPEND: &str = "echo one more line >> big.bin";
/// Stepback's overlay options (`sandbox/exec/namespace.rs`).
const OVERLAY_OPTIONS: &str = "redirect_dir=nofollow,metacopy=off,index=off,xino=off,volatile";

fn flow(name: &str, host: &str, script: &str, capture: &str) -> String {
    format!(
        r#"name = "{name}"
[[mounts]]
name = "m"
host = "{host}"
guest = "/m"
access = "read-write"
[[steps]]
name = "command"
uses = "builtin:run-command"
mounts = ["m"]
exec = ["sh"]
capture = "{capture}"
limits = {{ time = "1h" }}
with = {{ program = "sh", args = ["-c", '{script}'] }}
"#
    )
}

fn run(program: &str, args: &[&str], dir: &Path) {
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

/// Puts a fresh copy of `template` at `m` (not timed).
fn fresh(root: &Path, template: &str) {
    let _ = std::fs::remove_dir_all(root.join("m"));
    run("cp", &["-a", template, "m"], root);
    sync();
}

fn plain(dir: &Path, script: &str) -> Duration {
    let start = Instant::now();
    run("sh", &["-c", script], dir);
    start.elapsed()
}

/// The command in an overlay of `lower` made with Stepback's options.
fn bare_overlay(root: &Path, lower: &str, script: &str) -> Duration {
    let [upper, work, merged] = ["upper", "work", "merged"].map(|d| root.join(format!("{lower}.{d}")));
    for d in [&upper, &work, &merged] {
        std::fs::create_dir(d).unwrap();
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={},{OVERLAY_OPTIONS}",
        root.join(lower).display(),
        upper.display(),
        work.display()
    );
    run(
        "mount",
        &[
            "-t",
            "overlay",
            "overlay",
            "-o",
            &options,
            merged.to_str().unwrap(),
        ],
        root,
    );
    let took = plain(&merged, script);
    run("umount", &[merged.to_str().unwrap()], root);
    took
}

/// A filesystem C1 runs on, unmounted when dropped.
struct Filesystem {
    label: String,
    bench: Bench,
    mounted: Option<PathBuf>,
}

impl Drop for Filesystem {
    fn drop(&mut self) {
        if let Some(dir) = &self.mounted {
            let _ = Command::new("umount").arg(dir).status();
        }
    }
}

/// The bench directory's filesystem, an ext4 image with a journal and a
/// tmpfs, each with its own state directory (so that the upper layers
/// and backups share the mount's filesystem, as they usually do).
fn filesystems(bench: &Bench) -> Vec<Filesystem> {
    let fstype = |dir: &Path| {
        let out = Command::new("stat").args(["-f", "-c", "%T"]).arg(dir).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let mut all = vec![Filesystem {
        label: format!("bench directory ({})", fstype(&bench.root)),
        bench: Bench {
            root: bench.root.join("here"),
            cache: bench.cache.clone(),
        },
        mounted: None,
    }];
    std::fs::create_dir(&all[0].bench.root).unwrap();
    let image = bench.root.join("ext4.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(6 << 30))
        .unwrap();
    let journaled = bench.root.join("ext4");
    let tmpfs = bench.root.join("tmpfs");
    for (label, dir, mount) in [
        (
            "ext4 with a journal (loop image)",
            &journaled,
            vec!["-o", "loop", image.to_str().unwrap()],
        ),
        ("tmpfs", &tmpfs, vec!["-t", "tmpfs", "-o", "size=8g", "tmpfs"]),
    ] {
        std::fs::create_dir(dir).unwrap();
        if dir == &journaled {
            let made = Command::new("mkfs.ext4")
                .args(["-q", "-F", "-i", "4096"])
                .arg(&image)
                .status();
            if !made.is_ok_and(|s| s.success()) {
                println!("  (no mkfs.ext4 here: C1 skips the ext4 image)");
                continue;
            }
        }
        let mut args = mount;
        args.push(dir.to_str().unwrap());
        run("mount", &args, &bench.root);
        all.push(Filesystem {
            label: label.to_owned(),
            bench: Bench {
                root: dir.clone(),
                cache: bench.cache.clone(),
            },
            mounted: Some(dir.clone()),
        });
    }
    all
}

/// The apply's time, from the step's log line that reports it.
fn apply_time(logs: &[String]) -> Duration {
    logs.iter()
        .find_map(|l| {
            let rest = l.strip_prefix("applied ")?;
            let millis = rest.rsplit_once(" in ")?.1.strip_suffix(" ms")?;
            millis.parse().ok()
        })
        .map(Duration::from_millis)
        .expect("the captured step logs its apply's time")
}

/// C1, C3, C4 or C5 on `fs`: `script` run the four ways (and with the
/// `baseline` binary) on copies of 10,000 files of 1 KiB in 100
/// directories; `case` names the runs' directories, `target` is the
/// issue's for captured/plain.
fn small_files(fs: &Filesystem, case: &str, script: &str, target: &str, baseline: Option<&Path>) {
    let root = &fs.bench.root;
    if !root.join("small").exists() {
        for i in 0..FILES {
            let dir = root.join(format!("small/d{:03}", i / 100));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("f{:03}", i % 100)), vec![b'x'; 1024]).unwrap();
        }
    }
    let ways = ["captured", "baseline", "uncaptured", "plain", "overlay"];
    for r in 0..RUNS {
        for way in ways.iter().filter(|w| baseline.is_some() || **w != "baseline") {
            run("cp", &["-a", "small", &format!("{case}-{way}{r}")], root);
        }
    }
    sync();
    let keep = (2 * RUNS + 1).to_string();
    // The baseline keeps its own state directory.
    let other = Bench {
        root: root.join("baseline"),
        cache: fs.bench.cache.clone(),
    };
    let _ = std::fs::create_dir(&other.root);
    let step = |name: &str, capture: &str, bin: Option<&Path>| {
        let toml = root.join(format!("{name}.toml"));
        std::fs::write(&toml, flow(name, name, script, capture)).unwrap();
        let args = ["run", "--keep", &keep, toml.to_str().unwrap()];
        let measured = match bin {
            None => fs.bench.stepback(&args, None),
            Some(bin) => other.stepback_bin(bin, &args, None),
        };
        assert!(measured.steps > Duration::ZERO, "{name}: the step did not finish");
        measured
    };
    let (mut captured, mut applies, mut uncaptured, mut plains, mut bare) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut base, mut base_applies) = (vec![], vec![]);
    for r in 0..RUNS {
        let m = step(&format!("{case}-captured{r}"), "overlay", None);
        captured.push(m.steps);
        applies.push(apply_time(&m.logs));
        if let Some(bin) = baseline {
            let m = step(&format!("{case}-baseline{r}"), "overlay", Some(bin));
            base.push(m.steps);
            base_applies.push(apply_time(&m.logs));
        }
        uncaptured.push(step(&format!("{case}-uncaptured{r}"), "none", None).steps);
        plains.push(plain(&root.join(format!("{case}-plain{r}")), script));
        sync();
        bare.push(bare_overlay(root, &format!("{case}-overlay{r}"), script));
        sync();
    }
    let [c, a, u, p, o] = [captured, applies, uncaptured, plains, bare].map(median);
    println!("  {}:", fs.label);
    println!("    plain      {:>8}", ms(p));
    println!(
        "    overlay    {:>8}  overlay/plain {} (the kernel's copy-up alone)",
        ms(o),
        ratio(o, p)
    );
    println!(
        "    captured   {:>8}  captured/plain {}{target}, of which the apply {}",
        ms(c),
        ratio(c, p),
        ms(a)
    );
    if baseline.is_some() {
        let [b, ba] = [base, base_applies].map(median);
        println!(
            "    baseline   {:>8}  baseline/plain {}, of which the apply {}; captured/baseline {}",
            ms(b),
            ratio(b, p),
            ms(ba),
            ratio(c, b)
        );
    }
    println!("    uncaptured {:>8}  uncaptured/plain {}", ms(u), ratio(u, p));
}

fn main() {
    let (_scratch, bench) = Bench::in_scratch();
    let root = bench.root.clone();
    let only: Vec<String> = std::env::args().skip(1).filter(|a| a.starts_with('C')).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    // Warm the compiled cache.
    std::fs::create_dir(root.join("m")).unwrap();
    std::fs::write(root.join("warm.toml"), flow("warm", "m", "true", "none")).unwrap();
    bench.stepback(&["run", "--keep", "0", "warm.toml"], None);

    let cases = [
        (
            "C1",
            format!("a command rewrites {FILES} files of 1 KiB"),
            REWRITE,
        ),
        (
            "C3",
            format!("a command adds a file of 1 KiB next to each of {FILES}"),
            ADD,
        ),
        (
            "C4",
            format!("a command removes the 100 directories of the {FILES} files"),
            REMOVE,
        ),
        (
            "C5",
            format!("a command copies the 100 directories of the {FILES} files into a new one"),
            COPY,
        ),
    ];
    let baseline = std::env::var_os("STEPBACK_BENCH_BASELINE").map(PathBuf::from);
    if let Some(bin) = &baseline {
        bench.stepback_bin(bin, &["run", "--keep", "0", "warm.toml"], None);
    }
    if cases.iter().any(|(name, ..)| wanted(name)) {
        let all = filesystems(&bench);
        for (name, what, script) in cases.into_iter().filter(|(name, ..)| wanted(name)) {
            println!("{name}: {what} (median of {RUNS})");
            let target = if name == "C1" { " (target <= 1.5)" } else { "" };
            for fs in &all {
                small_files(fs, &name.to_lowercase(), script, target, baseline.as_deref());
            }
        }
    }
    if wanted("C2") {
        println!("C2: a command appends a line to a 1 GiB file (median of 3)");
        let big = root.join("bigdir");
        std::fs::create_dir_all(&big).unwrap();
        let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 253) as u8).collect();
        let mut file = std::fs::File::create(big.join("big.bin")).unwrap();
        for _ in 0..1024 {
            std::io::Write::write_all(&mut file, &chunk).unwrap();
        }
        drop(file);
        std::fs::write(root.join("c2.toml"), flow("c2", "m", APPEND, "overlay")).unwrap();
        let (mut captured, mut plains) = (vec![], vec![]);
        for _ in 0..3 {
            fresh(&root, "bigdir");
            captured.push(bench.stepback(&["run", "--keep", "0", "c2.toml"], None).steps);
            fresh(&root, "bigdir");
            plains.push(plain(&root.join("m"), APPEND));
        }
        let (c, p) = (median(captured), median(plains));
        println!(
            "  captured {} ({:.2} GiB/s of copy-up)  plain {}",
            ms(c),
            1.0 / c.as_secs_f64(),
            ms(p)
        );
    }
}
