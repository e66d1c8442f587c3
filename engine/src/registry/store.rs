//! The content-addressed store of pulled plugins, under the state
//! directory: what a locked flow runs. Every blob is hashed before it is
//! kept and again when it is read (the component's layer by the compiled
//! cache's stamp shortcut, see [`crate::plugin::PluginSource::Stored`]),
//! so a blob changed on disk is refused, never run.
//!
//! ```text
//! store/blobs/sha256/HEX              manifests, configs, components, signatures
//! store/tags/REGISTRY/REPOSITORY/TAG  the manifest digest a pull by tag found
//! store/signatures/REPOSITORY/HEX     the valid signatures pulled of manifest HEX in REPOSITORY
//! store/locks/HEX                     the path of a lock file `stepback lock` wrote
//!                                     (what it pins is never pruned)
//! ```

use super::digest::Digest;
use super::layout::{Descriptor, Manifest, WASM_CONFIG, WasmConfig};
use super::reference::PluginRef;
use super::signature::Signatures;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// The store in one directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// What the remembered locks pin.
#[derive(Debug, Default)]
pub struct Pins {
    /// Manifests, configs and components: never pruned from the store.
    pub blobs: std::collections::BTreeSet<Digest>,
    /// The components' SHA-256 (hex): their compiled code is never pruned
    /// from the compiled cache either, so a locked flow's run never compiles.
    pub components: std::collections::BTreeSet<String>,
}

/// A plugin the store holds in full: its manifest, config and component.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The manifest's digest: what a lock pins.
    pub manifest: Digest,
    /// The component's layer.
    pub layer: Descriptor,
    /// What the component imports and exports.
    pub config: WasmConfig,
    /// Where the component's bytes are.
    pub component: PathBuf,
}

impl Store {
    /// The store inside `state_dir`.
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join("store"),
        }
    }

    /// Where it is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    /// Keeps `bytes` as the blob `expected`; refuses bytes with another
    /// digest, naming `what` they were said to be.
    pub fn put(&self, expected: &Digest, bytes: &[u8], what: &str) -> anyhow::Result<()> {
        let actual = Digest::of(bytes);
        if &actual != expected {
            bail!(
                "the {what} that arrived has digest {actual}, not {expected}: refused (altered in the registry or on the way)"
            );
        }
        self.write(&self.blob_path(expected), bytes)
    }

    /// The blob's bytes, hashed again (`None`: not in the store).
    pub fn read(&self, digest: &Digest) -> anyhow::Result<Option<Vec<u8>>> {
        let path = self.blob_path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if Digest::of(&bytes) != *digest {
            bail!(
                "the store's copy of {digest} ({}) was changed on disk: remove it and pull again",
                path.display()
            );
        }
        Ok(Some(bytes))
    }

    /// The plugin whose manifest is `manifest`, if the store holds its
    /// manifest, config and component (`Err`: it holds something that is
    /// not a plugin, or was altered).
    pub fn artifact(&self, manifest: &Digest) -> anyhow::Result<Option<Artifact>> {
        let Some(bytes) = self.read(manifest)? else {
            return Ok(None);
        };
        let parsed = Manifest::parse(&bytes).map_err(anyhow::Error::msg)?;
        let layer = parsed.component().map_err(anyhow::Error::msg)?.clone();
        let Some(config) = self.read(&parsed.config.digest)? else {
            return Ok(None);
        };
        debug_assert_eq!(parsed.config.media_type, WASM_CONFIG);
        let config: WasmConfig =
            serde_json::from_slice(&config).context("the plugin's config is not a Wasm artifact config")?;
        let component = self.blob_path(&layer.digest);
        if !component.is_file() {
            return Ok(None);
        }
        Ok(Some(Artifact {
            manifest: manifest.clone(),
            layer,
            config,
            component,
        }))
    }

    fn tag_path(&self, reference: &PluginRef, tag: &str) -> PathBuf {
        self.dir
            .join("tags")
            .join(&reference.registry)
            .join(&reference.repository)
            .join(tag)
    }

    /// Remembers that `reference`'s tag named `manifest` when it was pulled.
    pub fn set_tag(&self, reference: &PluginRef, manifest: &Digest) -> anyhow::Result<()> {
        match &reference.tag {
            Some(tag) => self.write(&self.tag_path(reference, tag), manifest.to_string().as_bytes()),
            None => Ok(()),
        }
    }

    /// Every tag pulled, with the manifest it named, sorted.
    pub fn tags(&self) -> Vec<(PluginRef, Digest)> {
        let root = self.dir.join("tags");
        let mut found = Vec::new();
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&root) else {
                    continue;
                };
                let rel = rel.to_string_lossy();
                let Some((name, tag)) = rel.rsplit_once('/') else {
                    continue;
                };
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let parsed = PluginRef::parse(&format!("{}{name}:{tag}", super::reference::SCHEME));
                if let (Ok(r), Ok(d)) = (parsed, Digest::parse(text.trim())) {
                    found.push((r, d));
                }
            }
        }
        found.sort();
        found
    }

    fn signatures_path(&self, repository: &str, manifest: &Digest) -> PathBuf {
        self.dir.join("signatures").join(repository).join(manifest.hex())
    }

    /// Adds those of `found`'s signatures that verify (each under its own
    /// key) to those kept of its manifest in its repository: merged, so
    /// that a signature pulled later (another key's) adds to those a lock
    /// relies on, and only valid ones, so that a forged entry under a
    /// trusted key never replaces a good one.
    pub fn add_signatures(&self, found: &Signatures) -> anyhow::Result<()> {
        let (repository, manifest) = (&found.repository, &found.manifest);
        let mut kept = self
            .signatures(repository, manifest)?
            .unwrap_or_else(|| Signatures::new(repository, manifest));
        for signature in found.valid().signatures {
            kept.add(signature);
        }
        self.write(&self.signatures_path(repository, manifest), &kept.bytes())
    }

    /// The signatures kept of `manifest` in `repository`, if any were pulled.
    pub fn signatures(&self, repository: &str, manifest: &Digest) -> anyhow::Result<Option<Signatures>> {
        let path = self.signatures_path(repository, manifest);
        match std::fs::read(&path) {
            Ok(bytes) => Signatures::parse(&bytes)
                .map(Some)
                .with_context(|| path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Remembers the lock file at `lock` (canonical), so that pruning
    /// never removes what it pins.
    pub fn remember_lock(&self, lock: &Path) -> anyhow::Result<()> {
        let path = std::fs::canonicalize(lock).with_context(|| format!("{}", lock.display()))?;
        let text = path.to_string_lossy().into_owned();
        let remembered = self.dir.join("locks").join(Digest::of(text.as_bytes()).hex());
        match remembered.is_file() {
            true => Ok(()),
            false => self.write(&remembered, text.as_bytes()),
        }
    }

    /// What the remembered locks that still exist pin. Locks gone are
    /// forgotten; one that cannot be read is an error (what it pins is not
    /// known, so nothing may be pruned).
    pub fn pinned(&self) -> anyhow::Result<Pins> {
        let mut pins = Pins::default();
        let locks = self.dir.join("locks");
        for entry in std::fs::read_dir(&locks).into_iter().flatten().flatten() {
            let lock_path = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lock = match super::lock::Lock::read(Path::new(&lock_path)) {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    let _ = std::fs::remove_file(entry.path());
                    continue;
                }
                Err(why) => {
                    bail!(
                        "{why}: a lock that cannot be read may pin what would be pruned; fix it or remove it"
                    )
                }
            };
            for plugin in lock.plugins {
                if let Ok(Some(bytes)) = self.read(&plugin.manifest)
                    && let Ok(manifest) = Manifest::parse(&bytes)
                {
                    pins.blobs.insert(manifest.config.digest);
                }
                pins.components.insert(plugin.layer.hex().to_owned());
                pins.blobs.extend([plugin.manifest, plugin.layer]);
            }
        }
        Ok(pins)
    }

    /// Removes every blob no remembered lock pins (with `older_than`, only
    /// those stored longer ago), and the tags and signatures of manifests
    /// removed. Returns what it removed, with sizes.
    pub fn prune(&self, older_than: Option<std::time::Duration>) -> anyhow::Result<Vec<(Digest, u64)>> {
        let pinned = self.pinned()?.blobs;
        let now = std::time::SystemTime::now();
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(self.dir.join("blobs/sha256"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name();
            let Some(digest) = name.to_str().and_then(Digest::from_hex) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            if pinned.contains(&digest) || older_than.is_some_and(|limit| age <= limit) {
                continue;
            }
            std::fs::remove_file(entry.path()).with_context(|| entry.path().display().to_string())?;
            removed.push((digest, meta.len()));
        }
        self.forget_signatures(&removed);
        for (reference, manifest) in self.tags() {
            if !self.blob_path(&manifest).is_file() {
                let _ = std::fs::remove_file(
                    self.tag_path(&reference, reference.tag.as_deref().unwrap_or_default()),
                );
            }
        }
        Ok(removed)
    }

    /// Removes the signatures kept of the manifests among `removed`.
    fn forget_signatures(&self, removed: &[(Digest, u64)]) {
        let mut pending = vec![self.dir.join("signatures")];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    pending.push(entry.path());
                } else if removed.iter().any(|(d, _)| d.hex() == name) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }

    /// Writes `bytes` as `path`, whole or not at all (a temporary file,
    /// synced, renamed over it).
    fn write(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
        crate::state::ensure_private(&self.dir).context("the plugin store")?;
        let parent = path.parent().expect("store paths have a parent");
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        super::lock::write_whole(parent, path, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::signature::SecretKey;

    #[test]
    fn blobs_are_kept_only_as_their_digest_and_read_back_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let blob = b"component bytes";
        let digest = Digest::of(blob);
        let e = store
            .put(&digest, b"other bytes", "layer")
            .unwrap_err()
            .to_string();
        assert!(e.contains("refused"), "{e}");
        assert_eq!(store.read(&digest).unwrap(), None);
        store.put(&digest, blob, "layer").unwrap();
        assert_eq!(store.read(&digest).unwrap().as_deref(), Some(&blob[..]));
        std::fs::write(store.blob_path(&digest), b"changed").unwrap();
        let e = store.read(&digest).unwrap_err().to_string();
        assert!(e.contains("changed on disk"), "{e}");
    }

    #[test]
    fn signatures_of_one_manifest_are_merged_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let manifest = Digest::of(b"m");
        let (a, b) = (SecretKey::generate().unwrap(), SecretKey::generate().unwrap());
        for key in [&a, &b, &a] {
            let mut found = Signatures::new("acme/x", &manifest);
            found.add(key.sign("acme/x", &manifest));
            store.add_signatures(&found).unwrap();
        }
        // A forged entry under a's key does not replace a's good one.
        let mut forged = Signatures::new("acme/x", &manifest);
        forged.add(b.sign("acme/other", &manifest));
        forged.signatures[0].key = a.public().to_string();
        store.add_signatures(&forged).unwrap();
        let kept = store.signatures("acme/x", &manifest).unwrap().unwrap();
        assert_eq!(kept.signatures.len(), 2);
        assert_eq!(kept.verify("acme/x", &manifest, &[a.public()]), Ok(a.public()));
        assert_eq!(kept.verify("acme/x", &manifest, &[b.public()]), Ok(b.public()));
        assert!(store.signatures("acme/y", &manifest).unwrap().is_none());
    }

    #[test]
    fn pruning_spares_what_a_remembered_lock_pins() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("state"));
        let (kept, gone) = (b"pinned".as_slice(), b"loose".as_slice());
        for blob in [kept, gone] {
            store.put(&Digest::of(blob), blob, "layer").unwrap();
        }
        let lock = super::super::lock::Lock {
            version: super::super::lock::VERSION,
            plugins: vec![super::super::lock::Locked {
                uses: "oci://reg.example/a:1".into(),
                manifest: Digest::of(b"no such manifest"),
                layer: Digest::of(kept),
                signed_by: None,
            }],
        };
        let lock_path = dir.path().join("flow.lock");
        lock.write(&lock_path).unwrap();
        store.remember_lock(&lock_path).unwrap();
        let removed = store.prune(None).unwrap();
        assert_eq!(removed, vec![(Digest::of(gone), gone.len() as u64)]);
        assert!(store.read(&Digest::of(kept)).unwrap().is_some());
        assert_eq!(
            store.pinned().unwrap().components,
            [Digest::of(kept).hex().to_owned()].into()
        );
        // A lock that cannot be read stops the pruning.
        std::fs::write(&lock_path, "garbage[[").unwrap();
        assert!(
            store
                .prune(None)
                .unwrap_err()
                .to_string()
                .contains("cannot be read")
        );
        // The lock gone, nothing is pinned.
        std::fs::remove_file(&lock_path).unwrap();
        assert_eq!(store.prune(None).unwrap().len(), 1);
    }
}
