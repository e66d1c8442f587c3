//! What the benchmarks share: running `stepback` with a warm cache and
//! reading step and rollback times from its JSON events, and medians.

#![allow(dead_code)] // each bench uses its own part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Bench {
    pub root: PathBuf,
    pub cache: PathBuf,
}

/// What one `stepback` run reported.
pub struct Measured {
    pub wall: Duration,
    /// Sum of the steps' own times.
    pub steps: Duration,
    pub rollback: Option<Duration>,
    pub peak_rss_kib: Option<u64>,
    /// The steps' log lines (`step-log` events), in order.
    pub logs: Vec<String>,
}

impl Bench {
    /// A bench in a scratch directory under `STEPBACK_BENCH_DIR` (default:
    /// the target directory's filesystem), kept while the guard lives.
    pub fn in_scratch() -> (tempfile::TempDir, Bench) {
        let parent =
            std::env::var_os("STEPBACK_BENCH_DIR").unwrap_or_else(|| env!("CARGO_TARGET_TMPDIR").into());
        let scratch = tempfile::tempdir_in(parent).expect("scratch dir");
        let root = scratch.path().to_path_buf();
        let bench = Bench {
            cache: root.join("cache"),
            root,
        };
        (scratch, bench)
    }

    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    pub fn stepback(&self, args: &[&str], fault: Option<&str>) -> Measured {
        self.stepback_bin(Path::new(env!("CARGO_BIN_EXE_stepback")), args, fault)
    }

    /// [`Bench::stepback`] with another build of it, `bin` (to compare
    /// with an earlier one side by side).
    pub fn stepback_bin(&self, bin: &Path, args: &[&str], fault: Option<&str>) -> Measured {
        sync();
        let time = Path::new("/usr/bin/time").exists();
        let mut command = if time {
            let mut c = Command::new("/usr/bin/time");
            c.args(["-f", "peak-rss-kib %M"]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        command
            .args(["--output", "json"])
            .args(args)
            .env("STEPBACK_STATE_DIR", self.state())
            .env("STEPBACK_CACHE_DIR", &self.cache)
            // Errors the guests expect (a file not there yet) would capture
            // backtraces, which an operator's shell does not ask for.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .current_dir(&self.root);
        if let Some(f) = fault {
            command.env("STEPBACK_FAULT", f);
        }
        let start = Instant::now();
        let out = command.output().expect("running stepback");
        let wall = start.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut steps = Duration::ZERO;
        let mut rollback = None;
        let mut logs = Vec::new();
        for line in stdout.lines() {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let took = || Duration::from_micros(event["duration_us"].as_u64().unwrap_or(0));
            match event["event"].as_str() {
                Some("step-finished") => steps += took(),
                Some("rollback-finished") => rollback = Some(took()),
                Some("step-log") => logs.extend(event["message"].as_str().map(str::to_owned)),
                _ => {}
            }
        }
        let peak_rss_kib = stderr
            .lines()
            .find_map(|l| l.strip_prefix("peak-rss-kib "))
            .and_then(|v| v.trim().parse().ok());
        Measured {
            wall,
            steps,
            rollback,
            peak_rss_kib,
            logs,
        }
    }
}

pub fn sync() {
    let _ = Command::new("sync").status();
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

pub fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}", a.as_secs_f64() / b.as_secs_f64())
}
