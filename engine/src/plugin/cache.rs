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
//! this user's and writable by no one else (checked, see
//! [`crate::state::ensure_private`]), and every entry is checked against a
//! keyed digest (HMAC-SHA256, in a file beside it, under a key only this
//! user can read) before it is loaded: an entry replaced by anything that
//! cannot read the key is recompiled, never run.

use anyhow::Context;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

pub use crate::events::CacheOutcome;

/// The cache's default bound: compiled code of a large component is tens
/// of megabytes, so this keeps dozens.
pub const DEFAULT_CACHE_LIMIT: u64 = 1 << 30;

/// The compiled-plugin cache in one directory, bounded in size.
#[derive(Debug, Clone)]
pub struct CompiledCache {
    dir: PathBuf,
    /// Bytes the entries may take: past it, the least recently used go
    /// when a new one is stored (never the new one).
    limit: u64,
}

/// One compiled component in the cache.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    /// The component's SHA-256, hex.
    pub sha256: String,
    /// Bytes on disk, its keyed digest included.
    pub size: u64,
    /// When it was last stored or loaded.
    pub last_used: std::time::SystemTime,
    path: PathBuf,
}

impl CompiledCache {
    /// The cache in `dir` (created, private, on first use), bounded by the default limit.
    pub fn new(dir: PathBuf) -> Self {
        CompiledCache {
            dir,
            limit: DEFAULT_CACHE_LIMIT,
        }
    }

    /// The same cache, bounded to `limit` bytes.
    pub fn with_limit(self, limit: u64) -> Self {
        CompiledCache { limit, ..self }
    }

    /// Every entry, least recently used first.
    pub fn entries(&self) -> std::io::Result<Vec<CacheEntry>> {
        let listing = match std::fs::read_dir(&self.dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut entries = Vec::new();
        for item in listing {
            let path = item?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".cwasm") else {
                continue;
            };
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let mac = std::fs::metadata(digest_path(&path)).map_or(0, |m| m.len());
            entries.push(CacheEntry {
                sha256: stem.split('-').next().unwrap_or(stem).to_owned(),
                size: meta.len() + mac,
                last_used: meta.modified()?,
                path,
            });
        }
        entries.sort_by_key(|e| e.last_used);
        Ok(entries)
    }

    /// Removes entries unused for longer than `older_than`, then the least
    /// recently used until the rest take at most `max_bytes`, sparing
    /// `keep`. Returns what it removed.
    pub fn prune(
        &self,
        max_bytes: u64,
        older_than: Option<std::time::Duration>,
        keep: Option<&Path>,
    ) -> std::io::Result<Vec<CacheEntry>> {
        let entries = self.entries()?;
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        let now = std::time::SystemTime::now();
        let mut removed = Vec::new();
        for entry in entries {
            let stale =
                older_than.is_some_and(|age| now.duration_since(entry.last_used).unwrap_or_default() > age);
            if Some(entry.path.as_path()) == keep || (!stale && total <= max_bytes) {
                continue;
            }
            for path in [digest_path(&entry.path), entry.path.clone()] {
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            total -= entry.size;
            removed.push(entry);
        }
        Ok(removed)
    }

    /// Where it is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The component for `bytes`, from the cache or freshly compiled (and
    /// then stored). Returns the component's SHA-256 in hex too.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> anyhow::Result<(Component, CacheOutcome, String)> {
        crate::state::ensure_private(&self.dir).context("the compiled-plugin cache")?;
        let key = self.key().context("the compiled-plugin cache's key")?;
        let sha = hex(&Sha256::digest(bytes));
        let entry = self.dir.join(format!("{sha}-{}.cwasm", engine_key(engine)));
        if let Some(artifact) = verified(&entry, &key) {
            // SAFETY: the artifact's keyed digest proves it was written by
            // `store` below, from `Component::serialize` output; wasmtime
            // re-checks compatibility on load.
            #[allow(unsafe_code)]
            let deserialized = unsafe { Component::deserialize(engine, &artifact) };
            if let Ok(component) = deserialized {
                // Used now: the least recently used go first.
                if let Ok(file) = std::fs::File::open(&entry) {
                    let _ = file.set_modified(std::time::SystemTime::now());
                }
                return Ok((component, CacheOutcome::Hit, sha));
            }
        }
        let component = Component::new(engine, bytes)?;
        self.store(&entry, &component, &key)
            .with_context(|| format!("writing compiled plugin to the cache at {}", entry.display()))?;
        self.prune(self.limit, None, Some(&entry))
            .with_context(|| format!("bounding the compiled-plugin cache in {}", self.dir.display()))?;
        Ok((component, CacheOutcome::Compiled, sha))
    }

    fn store(&self, entry: &Path, component: &Component, key: &[u8]) -> anyhow::Result<()> {
        let artifact = component.serialize()?;
        let digest = mac(key, &artifact);
        let tmp = entry.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, artifact)?;
        std::fs::rename(&tmp, entry)?;
        std::fs::write(&tmp, hex(&digest))?;
        std::fs::rename(&tmp, digest_path(entry))?;
        Ok(())
    }

    /// The cache's key, made on first use: 32 random bytes, readable by
    /// this user only.
    fn key(&self) -> std::io::Result<Vec<u8>> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join("key");
        match std::fs::read(&path) {
            Ok(key) if key.len() == 32 => return Ok(key),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut key = vec![0; 32];
        let mut filled = 0;
        while filled < key.len() {
            filled += rustix::rand::getrandom(&mut key[filled..], rustix::rand::GetRandomFlags::empty())?;
        }
        let tmp = self.dir.join(format!("key.tmp.{}", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?
            .write_all(&key)?;
        std::fs::rename(&tmp, &path)?;
        Ok(key)
    }
}

/// The artifact in `entry`, if its digest matches.
fn verified(entry: &Path, key: &[u8]) -> Option<Vec<u8>> {
    let artifact = std::fs::read(entry).ok()?;
    let digest = std::fs::read_to_string(digest_path(entry)).ok()?;
    (digest.trim() == hex(&mac(key, &artifact))).then_some(artifact)
}

fn digest_path(entry: &Path) -> PathBuf {
    entry.with_extension("cwasm.mac")
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
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
