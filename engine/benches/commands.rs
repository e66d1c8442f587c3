//! Commands benchmarks (issue 9), medians of runs interleaved side by
//! side. `cargo bench --bench commands`; `STEPBACK_BENCH_DIR` picks the
//! filesystem (the default is the target directory's).
//!
//! - C1: a command rewrites 10,000 small files of its mount: the step's
//!   time captured (overlay, then the apply through the journal) and
//!   uncaptured (`capture = "none"`), against the same command run plainly.
//! - C2: a command appends one line to a 1 GiB file: captured against
//!   plain. Overlayfs copies the whole file up before the first write to it
//!   (`metacopy` is off so that the upper layer holds plain files), so the
//!   captured append costs one copy of the file; the apply then moves it
//!   in by rename, and the original goes to the backup area by rename too.
//!
//! Step times come from `stepback`'s JSON events, so process start-up and
//! validation are excluded; the plain runs are timed around `sh`.

mod common;

use common::{Bench, median, ms, ratio, sync};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const FILES: usize = 10_000;
const REWRITE: &str = r#"for f in d*/f*; do echo rewritten > "$f"; done"#;
const APPEND: &str = "echo one more line >> big.bin";

fn flow(name: &str, script: &str, capture: &str) -> String {
    format!(
        r#"name = "{name}"
[[mounts]]
name = "m"
host = "m"
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

/// Puts a fresh copy of `template` at `m` (not timed).
fn fresh(root: &Path, template: &str) {
    let _ = std::fs::remove_dir_all(root.join("m"));
    assert!(
        Command::new("cp")
            .args(["-a", template, "m"])
            .current_dir(root)
            .status()
            .unwrap()
            .success()
    );
    sync();
}

fn plain(root: &Path, script: &str) -> Duration {
    let start = Instant::now();
    let status = Command::new("sh")
        .args(["-c", script])
        .current_dir(root.join("m"))
        .status()
        .unwrap();
    assert!(status.success());
    start.elapsed()
}

fn main() {
    let (_scratch, bench) = Bench::in_scratch();
    let root = bench.root.clone();
    for i in 0..FILES {
        let dir = root.join(format!("small/d{:03}", i / 100));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{:03}", i % 100)), vec![b'x'; 1024]).unwrap();
    }
    for (name, script, capture) in [
        ("c1", REWRITE, "overlay"),
        ("c1-none", REWRITE, "none"),
        ("c2", APPEND, "overlay"),
    ] {
        std::fs::write(root.join(format!("{name}.toml")), flow(name, script, capture)).unwrap();
    }
    let only: Vec<String> = std::env::args().skip(1).filter(|a| a.starts_with('C')).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    // Warm the compiled cache.
    fresh(&root, "small");
    bench.stepback(&["run", "--keep", "0", "c1-none.toml"], None);

    if wanted("C1") {
        println!("C1: a command rewrites {FILES} files of 1 KiB (median of {RUNS})");
        let (mut captured, mut uncaptured, mut plains) = (vec![], vec![], vec![]);
        for _ in 0..RUNS {
            fresh(&root, "small");
            captured.push(bench.stepback(&["run", "--keep", "0", "c1.toml"], None).steps);
            fresh(&root, "small");
            uncaptured.push(
                bench
                    .stepback(&["run", "--keep", "0", "c1-none.toml"], None)
                    .steps,
            );
            fresh(&root, "small");
            plains.push(plain(&root, REWRITE));
        }
        let (c, u, p) = (median(captured), median(uncaptured), median(plains));
        println!(
            "  captured {}  uncaptured {}  plain {}  captured/plain {} (target <= 1.5)  uncaptured/plain {}",
            ms(c),
            ms(u),
            ms(p),
            ratio(c, p),
            ratio(u, p)
        );
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
        let (mut captured, mut plains) = (vec![], vec![]);
        for _ in 0..3 {
            fresh(&root, "bigdir");
            captured.push(bench.stepback(&["run", "--keep", "0", "c2.toml"], None).steps);
            fresh(&root, "bigdir");
            plains.push(plain(&root, APPEND));
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
