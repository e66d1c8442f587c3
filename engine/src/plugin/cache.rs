//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes far longer than running a
//! step, so each component is compiled once per engine configuration. An
//! entry's name is the component's SHA-256 and a hash of wasmtime's
//! compatibility key and this crate's version; wasmtime checks the
//! artifact's compatibility again on load, and a stale or corrupt entry is
//! recompiled and replaced. Entries are written to a temporary name and
//! renamed, so a crash never leaves a half-written entry.
//!
//! Loading an entry runs native code from it: the cache directory must be
//! writable only by the user running Stepback.

use anyhow::Context;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether a load compiled the component or reused compiled code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    Hit,
    Compiled,
}

#[derive(Debug, Clone)]
pub struct CompiledCache {
    dir: PathBuf,
}

impl CompiledCache {
    pub fn new(dir: PathBuf) -> Self {
        CompiledCache { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The component for `bytes`, from the cache or freshly compiled (and
    /// then stored). Returns the component's SHA-256 in hex too.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> anyhow::Result<(Component, CacheOutcome, String)> {
        let sha = hex(&Sha256::digest(bytes));
        let entry = self.dir.join(format!("{sha}-{}.cwasm", engine_key(engine)));
        if entry.is_file() {
            // SAFETY: entries are written only by `store` below, from
            // `Component::serialize` output, into a directory owned by the
            // operator; wasmtime re-checks compatibility on load.
            if let Ok(component) = unsafe { Component::deserialize_file(engine, &entry) } {
                return Ok((component, CacheOutcome::Hit, sha));
            }
        }
        let component = Component::new(engine, bytes)?;
        self.store(&entry, &component)
            .with_context(|| format!("writing compiled plugin to the cache at {}", entry.display()))?;
        Ok((component, CacheOutcome::Compiled, sha))
    }

    fn store(&self, entry: &Path, component: &Component) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let artifact = component.serialize()?;
        let tmp = entry.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, artifact)?;
        std::fs::rename(&tmp, entry)?;
        Ok(())
    }
}

fn engine_key(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
