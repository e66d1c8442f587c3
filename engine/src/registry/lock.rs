//! A flow's lock file: every registry plugin it uses, pinned to the digest
//! that was checked when it was locked, so that what runs today is what
//! ran in staging, whatever a tag names since.
//!
//! `stepback lock FLOW` writes it beside the flow, as `NAME.lock` for
//! `NAME.toml` (or `.json`):
//!
//! ```toml
//! version = 1
//!
//! [[plugin]]
//! uses = "oci://registry.example/acme/hello:1.0"   # as the flow writes it
//! manifest = "sha256:…"                            # what `uses` named when locked
//! layer = "sha256:…"                               # the component
//! signed-by = "ed25519:…"                          # absent: unsigned, as the trust policy allowed
//! ```

use super::digest::Digest;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The format this Stepback writes and reads.
pub const VERSION: u32 = 1;

/// A lock file's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// The format: 1, the one this Stepback writes and reads.
    pub version: u32,
    /// One entry per registry `uses` of the flow.
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<Locked>,
}

/// One plugin, pinned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Locked {
    /// The flow's `uses`, as written.
    pub uses: String,
    /// The manifest's digest.
    pub manifest: Digest,
    /// The component's digest.
    pub layer: Digest,
    /// The key whose signature the trust policy accepted, if signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

impl Lock {
    /// The lock file of the flow at `flow`.
    pub fn path_for(flow: &Path) -> PathBuf {
        flow.with_extension("lock")
    }

    /// The lock at `path`, if there is one; `Err` says what is wrong with
    /// it, and where.
    pub fn read(path: &Path) -> Result<Option<Lock>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let lock: Lock = toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(1, |s| text[..s.start].matches('\n').count() + 1);
            format!("{}:{line}: {}", path.display(), e.message())
        })?;
        let mut seen = std::collections::BTreeSet::new();
        if let Some(twice) = lock.plugins.iter().find(|p| !seen.insert(&p.uses)) {
            return Err(format!(
                "{}: {} is pinned twice: lock the flow again",
                path.display(),
                twice.uses
            ));
        }
        if lock.version != VERSION {
            return Err(format!(
                "{}: lock format version {} (this Stepback reads {VERSION}): lock the flow again",
                path.display(),
                lock.version
            ));
        }
        Ok(Some(lock))
    }

    /// The entry of `uses`.
    pub fn get(&self, uses: &str) -> Option<&Locked> {
        self.plugins.iter().find(|p| p.uses == uses)
    }

    /// The file's text: a header saying what it is, then the entries by `uses`.
    pub fn text(&self) -> String {
        let mut sorted = self.clone();
        sorted.plugins.sort_by(|a, b| a.uses.cmp(&b.uses));
        sorted.plugins.dedup_by(|a, b| a.uses == b.uses);
        format!(
            "# The registry plugins of this flow, pinned: a run or validation of it\n\
             # runs exactly these. Written when the flow is locked; lock it again\n\
             # after changing a `uses`.\n{}",
            toml::to_string(&sorted).expect("a lock serializes")
        )
    }

    /// Writes the lock to `path`, whole or not at all.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        write_whole(dir, path, self.text().as_bytes())
    }
}

/// Writes `bytes` as `path` (in `dir`), whole or not at all: a temporary
/// file beside it, synced, renamed over it (a symlink there is replaced,
/// not followed).
pub(super) fn write_whole(dir: &Path, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let mut file =
        tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing into {}", dir.display()))?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_reads_back_what_was_written_and_refuses_other_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = Lock::path_for(&dir.path().join("flow.toml"));
        assert_eq!(path, dir.path().join("flow.lock"));
        assert_eq!(Lock::read(&path), Ok(None));
        let lock = Lock {
            version: VERSION,
            plugins: vec![Locked {
                uses: "oci://reg.example/a:1".into(),
                manifest: Digest::of(b"m"),
                layer: Digest::of(b"l"),
                signed_by: None,
            }],
        };
        lock.write(&path).unwrap();
        assert_eq!(Lock::read(&path), Ok(Some(lock)));
        std::fs::write(&path, "version = 2\n").unwrap();
        assert!(Lock::read(&path).unwrap_err().contains("version 2"));
        std::fs::write(
            &path,
            "version = 1\n[[plugin]]\nuses = \"x\"\nmanifest = \"sha256:00\"\nlayer = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n",
        )
        .unwrap();
        let e = Lock::read(&path).unwrap_err();
        assert!(e.contains("flow.lock:4") && e.contains("64 lowercase hex"), "{e}");
    }
}
