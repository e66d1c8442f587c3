//! Builds the guest workspace (`plugins/`, `tests/guests/`) for
//! `wasm32-wasip2`, so that a plain `cargo build`, `cargo run` or
//! `cargo test` also builds the plugins, and the built-in ones can be
//! embedded in the `stepback` binary.
//!
//! The nested cargo has its own target directory, so it never waits on the
//! outer build's lock, and keeps its own incremental state between builds.
//!
//! rust-toolchain.toml lists the wasm32-wasip2 target, but rustup installs
//! listed targets only when it installs the toolchain, not when the
//! toolchain is already there (or auto-install is off). So a missing
//! target is added here with rustup, which keeps the README's two commands
//! sufficient on a fresh machine.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Variables the outer cargo sets that must not leak into the nested
/// build: they would retarget it, re-flag it, or wrap rustc in clippy.
const LEAKY_VARS: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_PRIMARY_PACKAGE",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("engine/ is inside the workspace");
    for watched in ["plugins", "plugin-sdk", "wit", "tests/guests"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("plugins");
    version_env(root);
    ensure_wasm_target();
    build_guests(&root.join("plugins/Cargo.toml"), &target_dir);
    let out = target_dir.join(TARGET).join("release");
    println!("cargo:rustc-env=STEPBACK_PLUGIN_DIR={}", out.display());
}

const TARGET: &str = "wasm32-wasip2";

/// What `--version` says besides the crate's version: the commit built
/// (`unknown` outside a git checkout) and the WIT package version plugins
/// are built against.
fn version_env(root: &Path) {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    // Only what exists: a missing path would rerun this script, and
    // rebuild the crate, on every build.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]).map(PathBuf::from) {
        for watched in ["HEAD", "refs/heads", "packed-refs"].map(|p| dir.join(p)) {
            if watched.exists() {
                println!("cargo:rerun-if-changed={}", watched.display());
            }
        }
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=STEPBACK_COMMIT={commit}");
    let wit = std::fs::read_to_string(root.join("wit/plugin.wit")).expect("wit/plugin.wit");
    let version = wit
        .lines()
        .find_map(|l| l.trim().strip_prefix("package stepback:plugin@"))
        .and_then(|v| v.strip_suffix(';'))
        .expect("wit/plugin.wit names its package, versioned");
    println!("cargo:rustc-env=STEPBACK_WIT_VERSION={version}");
}

fn ensure_wasm_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = sysroot.is_some_and(|root| root.join("lib/rustlib").join(TARGET).is_dir());
    if installed {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup to build the plugins");
    let status = Command::new("rustup").args(["target", "add", TARGET]).status();
    if !matches!(status, Ok(s) if s.success()) {
        panic!("the {TARGET} target is missing and `rustup target add {TARGET}` failed ({status:?})");
    }
}

fn build_guests(manifest: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--locked", "--target", TARGET])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir);
    for var in LEAKY_VARS {
        command.env_remove(var);
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("could not start cargo to build the plugins: {e}"));
    if !status.success() {
        panic!("building the plugins for {TARGET} failed ({status}); see the errors above");
    }
}
