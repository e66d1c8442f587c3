//! Sandbox benchmarks: prints medians over repeated runs on this machine.
//!
//! - `instantiate+describe`: a fresh store, a component instance from a
//!   warm `InstancePre`, and one `describe` call (an upper bound of the
//!   per-step instantiate cost; target < 1 ms);
//! - `step run`: the same for a `write-file` step that writes a file;
//! - `20-step flow`: wall time of `stepback run` on a flow of 20 trivial
//!   steps with a warm compiled cache, process start to exit (target < 200 ms);
//! - `command step`: `stepback run` of a flow whose one step runs `true`,
//!   against the same with one `write-file` step, interleaved, process
//!   start to exit: what the jail costs a command. With
//!   `STEPBACK_BENCH_BASELINE=PATH` another build runs beside it (its
//!   hardening may add at most 5 ms).
//!
//! Run with `cargo bench --bench sandbox` (the command step as root).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stepback::events::Discard;
use stepback::grant::{Access, Mount};
use stepback::plugin::{CompiledCache, PluginSource};
use stepback::sandbox::{Limits, Sandbox, StepRequest};

const SAMPLES: usize = 200;
const FLOW_RUNS: usize = 15;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn report(name: &str, samples: Vec<Duration>, target: Option<Duration>) {
    let n = samples.len();
    let m = median(samples);
    let verdict = match target {
        Some(t) if m <= t => format!("  (target < {t:?}: met)"),
        Some(t) => format!("  (target < {t:?}: MISSED)"),
        None => String::new(),
    };
    println!(
        "{name:<24} median {:>9.3} ms over {n} runs{verdict}",
        m.as_secs_f64() * 1e3
    );
}

fn main() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let cache = scratch.path().join("cache");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(in_process(&cache, scratch.path()));
    flow_wall_time(&cache, scratch.path());
    command_step(&cache, scratch.path());
}

/// Wall time of `bin run FLOW`, process start to exit.
fn wall(bin: &Path, flow: &Path, state: &Path, cache: &Path) -> Duration {
    let start = Instant::now();
    let status = Command::new(bin)
        .arg("run")
        .arg(flow)
        .env("STEPBACK_STATE_DIR", state)
        .env("STEPBACK_CACHE_DIR", cache)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running stepback");
    assert!(status.success(), "the benchmark flow {} failed", flow.display());
    start.elapsed()
}

fn command_step(cache: &Path, scratch: &Path) {
    let head = "[[mounts]]\nname = \"app\"\nhost = \"app\"\nguest = \"/app\"\naccess = \"read-write\"\n";
    let command = scratch.join("command.toml");
    let write = scratch.join("write.toml");
    std::fs::write(
        &command,
        format!("name = \"c\"\n{head}[[steps]]\nname = \"true\"\nuses = \"builtin:run-command\"\nmounts = [\"app\"]\nexec = [\"true\"]\nwith = {{ program = \"true\" }}\n"),
    )
    .expect("flow file");
    std::fs::write(
        &write,
        format!("name = \"w\"\n{head}[[steps]]\nname = \"write\"\nuses = \"builtin:write-file\"\nmounts = [\"app\"]\nwith = {{ path = \"/app/x\", content = \"x\" }}\n"),
    )
    .expect("flow file");
    let mut builds = vec![(
        "this build",
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_stepback")),
    )];
    if let Some(base) = std::env::var_os("STEPBACK_BENCH_BASELINE") {
        builds.push(("baseline", base.into()));
    }
    let mut samples: Vec<(Vec<Duration>, Vec<Duration>)> = vec![(Vec::new(), Vec::new()); builds.len()];
    for round in 0..=FLOW_RUNS * 2 {
        for ((tag, bin), (c, w)) in builds.iter().zip(&mut samples) {
            let state = scratch.join(format!("state-{tag}"));
            let cache = cache.join(tag.replace(' ', "-"));
            let (tc, tw) = (
                wall(bin, &command, &state, &cache),
                wall(bin, &write, &state, &cache),
            );
            // The first round compiles the plugins.
            if round > 0 {
                c.push(tc);
                w.push(tw);
            }
        }
    }
    for ((tag, bin), (c, w)) in builds.iter().zip(samples) {
        let (c, w) = (median(c), median(w));
        println!(
            "command step ({tag}: {}) median {:.1} ms, write-file step {:.1} ms: the command costs {:.1} ms more",
            bin.display(),
            c.as_secs_f64() * 1e3,
            w.as_secs_f64() * 1e3,
            (c.as_secs_f64() - w.as_secs_f64()) * 1e3
        );
    }
}

async fn in_process(cache: &Path, scratch: &Path) {
    let sandbox = Sandbox::new(CompiledCache::new(cache.to_path_buf()), Arc::new(Discard)).expect("sandbox");
    let source = PluginSource::resolve("builtin:write-file", Path::new(".")).expect("builtin");
    sandbox.load(&source).expect("compile once");
    let plugin = sandbox.load(&source).expect("load from the warm cache");

    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let start = Instant::now();
        sandbox.describe(&plugin).await.expect("describe");
        samples.push(start.elapsed());
    }
    report("instantiate+describe", samples, Some(Duration::from_millis(1)));

    let out = scratch.join("out");
    std::fs::create_dir_all(&out).expect("out dir");
    let mounts = [Mount {
        name: "out".into(),
        host: out,
        guest: "/out".into(),
        access: Access::ReadWrite,
    }];
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let start = Instant::now();
        let run = sandbox
            .run(
                &plugin,
                StepRequest {
                    journal: None,
                    room: None,
                    pinned: Vec::new(),
                    flow: "bench",
                    step: "write",
                    run_id: "bench",
                    events: std::sync::Arc::new(stepback::events::Discard),
                    cancel: Default::default(),
                    config: r#"{"path": "/out/x", "content": "x"}"#,
                    mounts: &mounts,
                    params: Vec::new(),
                    limits: Limits::default(),
                    exec: &Default::default(),
                    scratch: scratch.join("exec"),
                },
            )
            .await;
        samples.push(start.elapsed());
        run.result.expect("the step succeeds");
    }
    report("step run (write-file)", samples, None);
}

fn flow_wall_time(cache: &Path, scratch: &Path) {
    std::fs::create_dir_all(scratch.join("app")).expect("app dir");
    let mut flow = String::from(
        "name = \"bench\"\n[[mounts]]\nname = \"app\"\nhost = \"app\"\nguest = \"/app\"\naccess = \"read-write\"\n",
    );
    for i in 0..20 {
        flow.push_str(&format!(
            "[[steps]]\nname = \"step {i}\"\nuses = \"builtin:write-file\"\nmounts = [\"app\"]\n\
             with = {{ path = \"/app/{i}.txt\", content = \"{i}\" }}\n"
        ));
    }
    let flow_path = scratch.join("flow.toml");
    std::fs::write(&flow_path, flow).expect("flow file");
    let bin = Path::new(env!("CARGO_BIN_EXE_stepback"));
    let run = || wall(bin, &flow_path, &scratch.join("state"), cache);
    run();
    let samples = (0..FLOW_RUNS).map(|_| run()).collect();
    report(
        "20-step flow (process)",
        samples,
        Some(Duration::from_millis(200)),
    );
}
