//! Where a plugin's bytes come from, and the check that they are a component.

use super::builtin;
use super::stamp::FileStamp;
use anyhow::{Context, bail};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// Where a plugin's component comes from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PluginSource {
    /// Shipped inside this binary: its name and bytes.
    Builtin(&'static str, &'static [u8]),
    /// A component file on disk.
    File(PathBuf),
    /// A component pulled from a registry, in the store: it runs only
    /// while its bytes are still the digest it was pulled and locked at.
    Stored {
        /// How the flow names it (`oci://…`).
        label: String,
        /// Its file in the store.
        path: PathBuf,
        /// The SHA-256 (hex) its bytes must have.
        sha256: String,
    },
}

impl PluginSource {
    /// Resolves a flow's `uses`; relative paths are relative to `base`.
    pub fn resolve(uses: &str, base: &Path) -> anyhow::Result<PluginSource> {
        if let Some(name) = uses.strip_prefix("builtin:") {
            let (name, bytes) = builtin::BUILTINS
                .iter()
                .find(|(n, _)| *n == name)
                .copied()
                .with_context(|| {
                    let known: Vec<_> = builtin::names().collect();
                    format!(
                        "unknown plugin {uses:?}; the built-in plugins are: {}",
                        known.join(", ")
                    )
                })?;
            return Ok(PluginSource::Builtin(name, bytes));
        }
        let path = base.join(uses);
        if !path.is_file() {
            bail!(
                "unknown plugin {uses:?}: no file at {} (use `builtin:NAME` or a path to a component .wasm)",
                path.display()
            );
        }
        Ok(PluginSource::File(path))
    }

    /// How messages name the plugin.
    pub fn label(&self) -> String {
        match self {
            PluginSource::Builtin(name, _) => format!("builtin:{name}"),
            PluginSource::File(path) => path.display().to_string(),
            PluginSource::Stored { label, .. } => label.clone(),
        }
    }

    /// The SHA-256 (hex) the component must have, where it is known
    /// beforehand (a stored plugin's).
    pub fn expected_sha256(&self) -> Option<&str> {
        match self {
            PluginSource::Stored { sha256, .. } => Some(sha256),
            _ => None,
        }
    }

    fn file(&self) -> Option<&Path> {
        match self {
            PluginSource::Builtin(..) => None,
            PluginSource::File(path) | PluginSource::Stored { path, .. } => Some(path),
        }
    }

    /// The stamp of the component's file, for a shortcut past reading it
    /// (see [`super::CompiledCache::recall`]); `None` for a built-in one,
    /// or a file that cannot be opened (reading it says why).
    pub fn stamp(&self) -> Option<FileStamp> {
        FileStamp::of(&std::fs::File::open(self.file()?).ok()?).ok()
    }

    /// The component's bytes, checked to be a component, and the stamp of
    /// the file they were read from (taken before reading: a change while
    /// reading moves the file's stamp past this one).
    pub fn read(&self) -> anyhow::Result<(Cow<'static, [u8]>, Option<FileStamp>)> {
        let (bytes, stamp) = match (self, self.file()) {
            (PluginSource::Builtin(_, bytes), _) => (Cow::Borrowed(*bytes), None),
            (_, Some(path)) => {
                let (bytes, stamp) =
                    read_stamped(path).with_context(|| format!("reading plugin {}", path.display()))?;
                (Cow::Owned(bytes), Some(stamp))
            }
            (_, None) => unreachable!("only a built-in plugin has no file"),
        };
        if let Some(expected) = self.expected_sha256() {
            let actual = super::cache::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            if actual != expected {
                bail!(
                    "plugin {}: its component in the store ({}) is no longer what was pulled (sha256:{actual}, not sha256:{expected}): remove it and pull again",
                    self.label(),
                    self.file().expect("a stored plugin has a file").display()
                );
            }
        }
        check_component(&bytes, &self.label())?;
        Ok((bytes, stamp))
    }
}

fn read_stamped(path: &Path) -> std::io::Result<(Vec<u8>, FileStamp)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let stamp = FileStamp::of(&file)?;
    let mut bytes = Vec::with_capacity(stamp.size() as usize);
    file.read_to_end(&mut bytes)?;
    Ok((bytes, stamp))
}

/// Refuses anything but a WebAssembly component, saying how to make one.
fn check_component(bytes: &[u8], label: &str) -> anyhow::Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE: [u8; 4] = [1, 0, 0, 0];
    const COMPONENT_LAYER: [u8; 2] = [1, 0];
    match (bytes.get(..4), bytes.get(4..8)) {
        (Some(MAGIC), Some(v)) if v == CORE => bail!(
            "plugin {label} is a core WebAssembly module (WASI preview 1), not a component; \
             Stepback runs components only, so that every file change goes through the host. \
             Build it with `cargo build --target wasm32-wasip2`, or wrap a preview 1 module with \
             `wasm-tools component new MODULE.wasm --adapt wasi_snapshot_preview1.reactor.wasm`"
        ),
        (Some(MAGIC), Some(v)) if v[2..] == COMPONENT_LAYER => Ok(()),
        (Some(MAGIC), _) => bail!("plugin {label} is a WebAssembly binary of an unknown version"),
        _ => bail!("plugin {label} is not a WebAssembly component (no `\\0asm` header)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_modules_and_non_wasm_are_refused_with_advice() {
        let core = check_component(b"\0asm\x01\0\0\0", "m.wasm")
            .unwrap_err()
            .to_string();
        assert!(
            core.contains("core WebAssembly module") && core.contains("wasm32-wasip2"),
            "{core}"
        );
        let junk = check_component(b"#!/bin/sh", "x").unwrap_err().to_string();
        assert!(junk.contains("not a WebAssembly component"), "{junk}");
        assert!(check_component(b"\0asm\x0d\0\x01\0", "c").is_ok());
    }

    #[test]
    fn unknown_builtins_list_the_known_ones() {
        let e = PluginSource::resolve("builtin:nope", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown plugin \"builtin:nope\"") && e.contains("write-file"),
            "{e}"
        );
    }
}
