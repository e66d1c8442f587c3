//! Finding the engine and the component under test.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The engine: `$STEPBACK`, else `stepback` on `PATH`.
pub fn engine() -> PathBuf {
    std::env::var_os("STEPBACK").map_or_else(|| "stepback".into(), PathBuf::from)
}

/// The component of the project under test: `$STEPBACK_PLUGIN`, or the
/// project built once for this process.
pub fn component() -> PathBuf {
    if let Some(path) = std::env::var_os("STEPBACK_PLUGIN") {
        return path.into();
    }
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(build)
        .clone()
        .unwrap_or_else(|why| panic!("{why}"))
}

/// Builds the project in `CARGO_MANIFEST_DIR` with `stepback plugin build`.
fn build() -> Result<PathBuf, String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").ok_or(
        "no component to test: set $STEPBACK_PLUGIN, run the tests with `stepback plugin test`, \
         or under cargo (which sets CARGO_MANIFEST_DIR)",
    )?;
    let engine = engine();
    let out = Command::new(&engine)
        .args(["--output", "json", "plugin", "build"])
        .arg(&dir)
        .output()
        .map_err(|e| {
            format!(
                "running {} (set $STEPBACK or put stepback on PATH): {e}",
                engine.display()
            )
        })?;
    let printed = String::from_utf8_lossy(&out.stdout);
    let result: serde_json::Value = printed
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_default();
    match result["wasm"].as_str() {
        Some(wasm) if out.status.success() => Ok(wasm.into()),
        _ => Err(format!(
            "`stepback plugin build {}` failed ({}):\n{}{printed}",
            PathBuf::from(&dir).display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}
