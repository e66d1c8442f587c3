//! Authoring benchmarks: for the project `stepback plugin new` writes in
//! each language, built with its own tool, side by side in one run:
//!
//! - the component's size;
//! - first compile: loading it with an empty cache (what `plugin build`
//!   pays, so that a flow does not);
//! - warm load: loading it again, the file unchanged and the cache warm
//!   (what every run of a flow pays per plugin; target < 20 ms): a stat,
//!   two keyed digests of stamps, wasmtime mapping and deserializing the
//!   compiled artifact, and pre-linking;
//! - what a load pays on top when the file changed since it was last
//!   loaded: reading the component, hashing it (the cache key and the
//!   SHA-256 a run records) and reading its imports;
//! - instantiate+describe: a store, an instance and one call;
//! - `plugin run`: the release binary running the step alone, process
//!   start to exit, warm cache, the languages interleaved.
//!
//! Run with `cargo bench --bench authoring` (needs what the projects'
//! builds need: rustup's wasm32-wasip2, Python 3 with venv and PyPI,
//! Node.js with npm).

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stepback::authoring::project::Project;
use stepback::authoring::{Lang, scaffold};
use stepback::events::Discard;
use stepback::plugin::{CompiledCache, PluginSource};
use stepback::sandbox::Sandbox;

const LOADS: usize = 30;
const RUNS: usize = 11;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The median time of `f` over `n` calls.
fn timed<T>(n: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..n)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(f());
                start.elapsed()
            })
            .collect(),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// A project in `lang`, built; its component's path.
fn built(lang: Lang, scratch: &Path) -> PathBuf {
    let dir = scratch.join(format!("p-{lang}"));
    scaffold::create("bench", lang, &dir).expect("scaffold");
    let project = Project::open(&dir).expect("project");
    let made = project.build(Stdio::null()).expect("the project builds");
    made.install().expect("install").wasm
}

/// One `plugin run` of the component writing one file, process start to exit.
fn plugin_run(wasm: &Path, scratch: &Path, cache: &Path, round: usize) -> Duration {
    // One directory per run and language: the step refuses to overwrite.
    let target = scratch.join(format!("t-{round}-{}", wasm.parent().unwrap().display()).replace('/', "_"));
    std::fs::create_dir_all(&target).expect("target dir");
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_stepback"))
        .arg("plugin")
        .arg("run")
        .arg(wasm)
        .args(["--with", r#"{"path": "/target/x.txt", "text": "x"}"#, "--mount"])
        .arg(format!("target={}:/target", target.display()))
        .env("STEPBACK_STATE_DIR", scratch.join("state"))
        .env("STEPBACK_CACHE_DIR", cache)
        .stdout(Stdio::null())
        .status()
        .expect("running stepback");
    assert!(status.success(), "plugin run of {} failed", wasm.display());
    start.elapsed()
}

#[tokio::main]
async fn main() {
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir");
    let cache = scratch.path().join("cache");
    let sandbox = Sandbox::new(CompiledCache::new(cache.clone()), Arc::new(Discard)).expect("sandbox");
    let mut components = Vec::new();
    for lang in Lang::ALL {
        let wasm = built(lang, scratch.path());
        let source = PluginSource::File(wasm.clone());
        let start = Instant::now();
        let plugin = sandbox.load(&source).expect("first load");
        let first = start.elapsed();
        let warm = timed(LOADS, || sandbox.load(&source).expect("warm load"));
        let bytes = std::fs::read(&wasm).expect("component");
        let read = timed(LOADS, || std::fs::read(&wasm).expect("component"));
        let hash = timed(LOADS, || Sha256::digest(&bytes));
        let imports = timed(LOADS, || {
            stepback::plugin::component_imports(&bytes).expect("imports")
        });
        let artifact = std::fs::read_dir(&cache)
            .expect("cache")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.extension().is_some_and(|x| x == "cwasm")
                    && p.display().to_string().contains(&plugin.sha256)
            })
            .expect("the compiled artifact");
        let artifact_size = std::fs::metadata(&artifact).expect("artifact").len();
        let mut describe = Vec::new();
        for _ in 0..LOADS {
            let start = Instant::now();
            sandbox.describe(&plugin).await.expect("describe");
            describe.push(start.elapsed());
        }
        println!(
            "{lang:<7} component {:>6} KiB, compiled {:>7} KiB; first compile {:>9}; warm load {:>8}; a file changed since adds read {}, hash {}, imports {}; instantiate+describe {}",
            bytes.len() / 1024,
            artifact_size / 1024,
            ms(first),
            ms(warm),
            ms(read),
            ms(hash),
            ms(imports),
            ms(median(describe)),
        );
        components.push((lang, wasm));
    }
    let mut runs = vec![Vec::new(); components.len()];
    for round in 0..RUNS {
        for ((_, wasm), samples) in components.iter().zip(&mut runs) {
            samples.push(plugin_run(wasm, scratch.path(), &cache, round));
        }
    }
    for ((lang, _), samples) in components.iter().zip(runs) {
        println!(
            "{lang:<7} plugin run (process, warm cache) median {} over {RUNS} runs",
            ms(median(samples))
        );
    }
}
