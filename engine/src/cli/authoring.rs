//! `stepback plugin new`, `build` and `test`: the author's loop, over
//! [`stepback::authoring`]. The build's last stage is the engine's own:
//! the component is loaded (checked, and compiled into the cache) and
//! asked to describe itself, as `validate` would.

use super::args::OutputFormat;
use super::out::outln;
use super::{exit, json};
use serde_json::json;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;
use stepback::authoring::project::{Built, Project};
use stepback::authoring::{Lang, scaffold};
use stepback::events::CacheOutcome;
use stepback::plugin::PluginSource;
use stepback::sandbox::Sandbox;

/// `plugin new NAME --lang LANG [--dir DIR]`.
pub fn new(name: &str, lang: Lang, dir: Option<&Path>, output: OutputFormat) -> u8 {
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_owned);
    let created = match scaffold::create(name, lang, &dir) {
        Ok(created) => created,
        Err(e) => return super::error(exit::INVALID_INPUT, format_args!("{e:#}")),
    };
    match output {
        OutputFormat::Json => json::print_result(
            "plugin-new",
            json!({"name": name, "lang": lang.to_string(), "dir": created.dir, "files": created.files}),
        ),
        OutputFormat::Human => {
            outln!("created {lang} plugin `{name}` in {}", created.dir.display());
            outln!("next:");
            outln!("  cd {}", created.dir.display());
            outln!("  stepback plugin build   # builds {name}.wasm");
            outln!("  stepback plugin test    # runs its tests in the engine");
            outln!(
                "  stepback plugin run {name}.wasm --mount target=.:/target --with '{{\"path\": \"/target/hello.txt\", \"text\": \"hello\"}}' --rollback"
            );
        }
    }
    exit::SUCCESS
}

/// `plugin build [DIR]`.
pub async fn build(dir: &Path, sandbox: &Sandbox, output: OutputFormat) -> u8 {
    let (project, built, loaded) = match build_and_load(dir, sandbox, output).await {
        Ok(done) => done,
        Err((code, e)) => return super::error(code, format_args!("{e:#}")),
    };
    match output {
        OutputFormat::Json => json::print_result("plugin-build", built_json(&project, &built, &loaded)),
        OutputFormat::Human => outln!(
            "built {} ({} KiB) in {:.1} s; {} in {:.2} s",
            built.wasm.display(),
            built.bytes.div_ceil(1024),
            built.took.as_secs_f64(),
            match loaded.cache {
                CacheOutcome::Hit => "unchanged, already compiled",
                _ => "compiled for this host",
            },
            loaded.us as f64 / 1e6
        ),
    }
    exit::SUCCESS
}

/// `plugin test [DIR]`: the build, then the project's tests, given this
/// engine and the component (and the cache the build compiled into, so
/// that they compile nothing).
pub async fn test(dir: &Path, sandbox: &Sandbox, cache_dir: &Path, output: OutputFormat) -> u8 {
    let (project, built, loaded) = match build_and_load(dir, sandbox, output).await {
        Ok(done) => done,
        Err((code, e)) => return super::error(code, format_args!("{e:#}")),
    };
    let engine = match std::env::current_exe() {
        Ok(engine) => engine,
        Err(e) => {
            return super::error(
                exit::ENGINE_ERROR,
                format_args!("finding this engine's binary: {e}"),
            );
        }
    };
    // Absolute: the tests run in the project's directory.
    let cache_dir = std::path::absolute(cache_dir).unwrap_or_else(|_| cache_dir.to_owned());
    let env = [
        ("STEPBACK", engine.as_os_str()),
        ("STEPBACK_PLUGIN", built.wasm.as_os_str()),
        ("STEPBACK_CACHE_DIR", cache_dir.as_os_str()),
    ];
    let status = match project.test(tool_stdout(output), &env) {
        Ok(status) => status,
        Err(e) => return super::error(exit::INVALID_INPUT, format_args!("{e:#}")),
    };
    let passed = status.success();
    match output {
        OutputFormat::Json => {
            let mut value = built_json(&project, &built, &loaded);
            value["passed"] = json!(passed);
            json::print_result("plugin-test", value);
        }
        OutputFormat::Human if passed => outln!("tests of `{}` passed", project.name()),
        OutputFormat::Human => outln!("tests of `{}` failed ({status})", project.name()),
    }
    if passed { exit::SUCCESS } else { exit::FLOW_FAILED }
}

/// Builds the project in `dir`, loads what it made (refused if it is not a
/// step component, compiled into the cache if it is new), asks it to
/// describe itself, and only then installs it as `NAME.wasm`. The error
/// comes with its exit code.
async fn build_and_load(
    dir: &Path,
    sandbox: &Sandbox,
    output: OutputFormat,
) -> Result<(Project, Built, Loaded), (u8, anyhow::Error)> {
    let invalid = |e| (exit::INVALID_INPUT, e);
    let project = Project::open(dir).map_err(invalid)?;
    let made = project.build(tool_stdout(output)).map_err(invalid)?;
    let start = Instant::now();
    let loaded = sandbox
        .load(&PluginSource::File(made.path.clone()))
        .map_err(invalid)?;
    sandbox.describe(&loaded).await.map_err(invalid)?;
    let took = start.elapsed();
    let built = made.install().map_err(|e| (exit::ENGINE_ERROR, e))?;
    let loaded = Loaded {
        cache: loaded.cache,
        us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
    };
    Ok((project, built, loaded))
}

/// How the engine took what was built.
struct Loaded {
    /// Compiled now, or the cache had it (the component did not change).
    cache: CacheOutcome,
    /// Loading (compiling) and describing, microseconds.
    us: u64,
}

fn built_json(project: &Project, built: &Built, loaded: &Loaded) -> serde_json::Value {
    json!({
        "name": project.name(),
        "wasm": built.wasm,
        "bytes": built.bytes,
        "build_duration_us": u64::try_from(built.took.as_micros()).unwrap_or(u64::MAX),
        "cache": loaded.cache,
        "load_duration_us": loaded.us,
    })
}

/// Where the language tools' own output goes: the terminal, or stderr
/// when stdout carries JSON.
fn tool_stdout(output: OutputFormat) -> Stdio {
    match output {
        OutputFormat::Human => Stdio::inherit(),
        OutputFormat::Json => std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_or_else(|_| Stdio::null(), Stdio::from),
    }
}
