//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes far longer than running a
//! step, so each component is compiled once per engine configuration. An
//! entry's name is the component's SHA-256 and a hash of wasmtime's
//! compatibility key and this crate's version; wasmtime checks the
//! artifact's compatibility again on load, and a stale entry is recompiled
//! and replaced. Entries are written to a temporary name, synced and
//! renamed, so a crash never leaves a half-written entry.
//!
//! Loading an entry runs native code from it: the cache directory must be
//! this user's and writable by no one else (checked, see
//! [`crate::state::ensure_private`]), and every entry is checked before it
//! is loaded against a keyed digest (HMAC-SHA256, in a file beside it,
//! under a key only this user can read) of its name, of its
//! [stamp](FileStamp) taken when it was stored, and of an XXH3 checksum of
//! its bytes. The stamp makes the digest the entry's own: an entry
//! replaced, renamed or rewritten by anything that cannot read the key is
//! recompiled, never run. The checksum catches what moves no stamp (a
//! failing disk, a write to the block device): it is not a defence against
//! a forger (XXH3 collisions can be made; the stamp is that defence), and
//! costs a few milliseconds on tens of megabytes where a keyed hash of the
//! bytes cost tens.
//!
//! A plugin file's own SHA-256 is remembered the same way (by the file's
//! stamp, under the key), so that a warm load of an unchanged file does not
//! read and hash it (see [`FileStamp`] for when a stamp is trusted).

use anyhow::Context;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::stamp::FileStamp;
pub use crate::events::CacheOutcome;

/// The extension of a remembered plugin file's SHA-256.
const SOURCE: &str = "source";

/// The cache's default bound: compiled code of a large component is tens
/// of megabytes, so this keeps dozens.
pub const DEFAULT_CACHE_LIMIT: u64 = 1 << 30;

/// The compiled-plugin cache in one directory, bounded in size.
#[derive(Debug, Clone)]
pub struct CompiledCache {
    dir: PathBuf,
    /// Bytes the entries may take: past it, the least recently used go
    /// when a new one is stored (never the new one, nor a pinned one).
    limit: u64,
    /// Components (SHA-256, hex) whose compiled code stays whatever the
    /// limit: those a flow's lock pins, so that its run never compiles.
    pinned: Pinned,
}

/// Says which components are pinned; asked only when a compile bounds the
/// cache (finding out reads every remembered lock: not for every command).
#[derive(Clone)]
struct Pinned(std::sync::Arc<dyn Fn() -> std::collections::BTreeSet<String> + Send + Sync>);

impl std::fmt::Debug for Pinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pinned(..)")
    }
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
            pinned: Pinned(std::sync::Arc::new(std::collections::BTreeSet::new)),
        }
    }

    /// The same cache, bounded to `limit` bytes.
    pub fn with_limit(self, limit: u64) -> Self {
        CompiledCache { limit, ..self }
    }

    /// The same cache, never evicting the compiled code of the components
    /// (SHA-256, hex) `pinned` names to stay within its limit; asked when
    /// a compile bounds the cache.
    pub fn pinning(
        self,
        pinned: impl Fn() -> std::collections::BTreeSet<String> + Send + Sync + 'static,
    ) -> Self {
        CompiledCache {
            pinned: Pinned(std::sync::Arc::new(pinned)),
            ..self
        }
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
            // The digest's file keeps the time of last use (see `hit`).
            let digest = std::fs::metadata(digest_path(&path)).unwrap_or(meta.clone());
            entries.push(CacheEntry {
                sha256: stem.split('-').next().unwrap_or(stem).to_owned(),
                size: meta.len() + digest.len(),
                last_used: digest.modified()?,
                path,
            });
        }
        entries.sort_by_key(|e| e.last_used);
        Ok(entries)
    }

    /// Removes entries unused for longer than `older_than`, then the least
    /// recently used until the rest take at most `max_bytes`, sparing those
    /// `spare` says to (the one just stored; those a lock pins). Returns
    /// what it removed.
    pub fn prune(
        &self,
        max_bytes: u64,
        older_than: Option<std::time::Duration>,
        spare: &dyn Fn(&CacheEntry) -> bool,
    ) -> std::io::Result<Vec<CacheEntry>> {
        let entries = self.entries()?;
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        let now = std::time::SystemTime::now();
        let mut removed = Vec::new();
        for entry in entries {
            let stale =
                older_than.is_some_and(|age| now.duration_since(entry.last_used).unwrap_or_default() > age);
            if spare(&entry) || (!stale && total <= max_bytes) {
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
        self.forget_orphans()?;
        Ok(removed)
    }

    /// Removes the remembered SHA-256 of files whose compiled entry is gone.
    fn forget_orphans(&self) -> std::io::Result<()> {
        let kept: std::collections::HashSet<String> = self.entries()?.into_iter().map(|e| e.sha256).collect();
        let listing = match std::fs::read_dir(&self.dir) {
            Ok(listing) => listing,
            // No cache yet: nothing remembered.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for item in listing {
            let path = item?.path();
            if path.extension().is_none_or(|e| e != SOURCE) {
                continue;
            }
            let record = std::fs::read_to_string(&path).unwrap_or_default();
            if !record.split_once(' ').is_some_and(|(sha, _)| kept.contains(sha)) {
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Where it is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The component a plugin file with this stamp was compiled to, when
    /// the file is unchanged since it was last loaded and its entry is
    /// intact; `None` sends the caller to [`CompiledCache::load`]. Returns
    /// the component's SHA-256 in hex too.
    ///
    /// A remembered file passed the host's import checks when it was first
    /// loaded, by this same engine (entries are per engine version).
    pub fn recall(&self, engine: &Engine, file: &FileStamp) -> Option<(Component, String)> {
        crate::state::ensure_private(&self.dir).ok()?;
        let key = self.key().ok()?;
        let sha = self.remembered(file, &key)?;
        let component = self.hit(engine, &self.entry(engine, &sha), &key)?;
        Some((component, sha))
    }

    /// The component for `bytes`, from the cache or freshly compiled (and
    /// then stored). Returns the component's SHA-256 in hex too. `file`,
    /// the stamp of the file the bytes were read from, is remembered for
    /// [`CompiledCache::recall`].
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        file: Option<FileStamp>,
    ) -> anyhow::Result<(Component, CacheOutcome, String)> {
        crate::state::ensure_private(&self.dir).context("the compiled-plugin cache")?;
        let key = self.key().context("the compiled-plugin cache's key")?;
        let sha = hex(&Sha256::digest(bytes));
        let entry = self.entry(engine, &sha);
        let (component, outcome) = match self.hit(engine, &entry, &key) {
            Some(component) => (component, CacheOutcome::Hit),
            None => (self.compile(engine, bytes, &entry, &key)?, CacheOutcome::Compiled),
        };
        if let Some(file) = file.filter(FileStamp::settled) {
            // Only a shortcut: a file not remembered is hashed next time.
            let _ = self.remember(&file, &sha, &key);
        }
        Ok((component, outcome, sha))
    }

    fn entry(&self, engine: &Engine, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}-{}.cwasm", engine_key(engine)))
    }

    /// The entry's component, if its digest matches its name, stamp and
    /// bytes; loaded from the very file the stamp is of.
    fn hit(&self, engine: &Engine, entry: &Path, key: &[u8]) -> Option<Component> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(entry).ok()?;
        let stamp = FileStamp::of(&file).ok()?;
        let digest = std::fs::read_to_string(digest_path(entry)).ok()?;
        // SAFETY: a private read-only mapping of an entry of this user's
        // private cache, read here and dropped before this returns.
        #[allow(unsafe_code)]
        let artifact = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        if digest.trim() != entry_digest(key, entry, &stamp, &artifact) {
            return None;
        }
        // SAFETY (both calls): the keyed digest proves the file is the one
        // `compile` stored from `Component::serialize` output, unchanged
        // since; wasmtime re-checks compatibility on load. The file is
        // reopened through its descriptor, so the path cannot name another
        // file by then; entries are replaced by rename, never rewritten.
        // Mapped by wasmtime when the filesystem lets code run from it; a
        // copy where it does not (`noexec`) or without /proc.
        let reopened = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        #[allow(unsafe_code)]
        let component = match reopened.exists() {
            true => unsafe { Component::deserialize_file(engine, reopened) },
            false => Err(wasmtime::Error::msg("no /proc")),
        }
        .or_else(|_| unsafe { Component::deserialize(engine, &artifact[..]) })
        .ok()?;
        // Used now: the least recently used go first. The digest's file
        // keeps the time, so the entry's own stamp stays as it was signed.
        if let Ok(digest) = std::fs::File::open(digest_path(entry)) {
            let _ = digest.set_modified(std::time::SystemTime::now());
        }
        Some(component)
    }

    /// Compiles `bytes` and stores the result as `entry`, then bounds the cache.
    fn compile(&self, engine: &Engine, bytes: &[u8], entry: &Path, key: &[u8]) -> anyhow::Result<Component> {
        let component = Component::new(engine, bytes)?;
        self.store(entry, &component, key)
            .with_context(|| format!("writing compiled plugin to the cache at {}", entry.display()))?;
        let pinned = (self.pinned.0)();
        self.prune(self.limit, None, &|e| {
            e.path == entry || pinned.contains(&e.sha256)
        })
        .with_context(|| format!("bounding the compiled-plugin cache in {}", self.dir.display()))?;
        Ok(component)
    }

    fn store(&self, entry: &Path, component: &Component, key: &[u8]) -> anyhow::Result<()> {
        use std::io::Write;
        let tmp = entry.with_extension(format!("tmp.{}", std::process::id()));
        let mut file = std::fs::File::create(&tmp)?;
        let artifact = component.serialize()?;
        file.write_all(&artifact)?;
        // Synced before the rename: the digest covers the stamp only, so
        // a power loss must not leave the name on unwritten blocks.
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, entry)?;
        let stamp = FileStamp::of(&std::fs::File::open(entry)?)?;
        std::fs::write(&tmp, entry_digest(key, entry, &stamp, &artifact))?;
        std::fs::rename(&tmp, digest_path(entry))?;
        Ok(())
    }

    /// The SHA-256 remembered for a file with this stamp, if its digest matches.
    fn remembered(&self, file: &FileStamp, key: &[u8]) -> Option<String> {
        let record = std::fs::read_to_string(self.source_path(file)).ok()?;
        let (sha, digest) = record.trim().split_once(' ')?;
        (digest == hex(&mac(key, &[&file.bytes(), sha.as_bytes()].concat()))).then(|| sha.to_owned())
    }

    fn remember(&self, file: &FileStamp, sha: &str, key: &[u8]) -> std::io::Result<()> {
        let digest = hex(&mac(key, &[&file.bytes(), sha.as_bytes()].concat()));
        let path = self.source_path(file);
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, format!("{sha} {digest}\n"))?;
        std::fs::rename(&tmp, path)
    }

    /// Where the SHA-256 of the file with this stamp is remembered.
    fn source_path(&self, file: &FileStamp) -> PathBuf {
        let name = hex(&Sha256::digest(file.bytes()));
        self.dir.join(format!("{}.{SOURCE}", &name[..32]))
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

/// An entry's keyed digest: of its name (the component it was compiled
/// from), its stamp (the file that holds it, as stored) and a checksum of
/// its bytes (against corruption that moves no stamp).
fn entry_digest(key: &[u8], entry: &Path, stamp: &FileStamp, artifact: &[u8]) -> String {
    let name = entry
        .file_name()
        .map(|n| n.as_encoded_bytes())
        .unwrap_or_default();
    let checksum = xxhash_rust::xxh3::xxh3_128(artifact).to_le_bytes();
    hex(&mac(key, &[name, &stamp.bytes(), &checksum].concat()))
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

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plugin file written, then left until its stamp is settled.
    fn settled_plugin(dir: &Path, wat: &str) -> (PathBuf, Vec<u8>) {
        let bytes = wat::parse_str(wat).unwrap();
        let path = dir.join("plugin.wasm");
        std::fs::write(&path, &bytes).unwrap();
        std::thread::sleep(super::super::stamp::TICK + std::time::Duration::from_millis(100));
        (path, bytes)
    }

    fn stamp(path: &Path) -> FileStamp {
        FileStamp::of(&std::fs::File::open(path).unwrap()).unwrap()
    }

    #[test]
    fn an_unchanged_file_is_recalled_and_a_rewritten_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = settled_plugin(dir.path(), "(component)");
        let (engine, cache) = (Engine::default(), CompiledCache::new(dir.path().join("cache")));
        let before = stamp(&path);
        assert!(before.settled());
        let (_, outcome, sha) = cache.load(&engine, &bytes, Some(before)).unwrap();
        assert_eq!(outcome, CacheOutcome::Compiled);
        let (_, recalled) = cache
            .recall(&engine, &stamp(&path))
            .expect("recalled by its stamp");
        assert_eq!(recalled, sha);
        std::fs::write(&path, wat::parse_str("(component (core module))").unwrap()).unwrap();
        assert!(
            cache.recall(&engine, &stamp(&path)).is_none(),
            "a rewritten file is hashed again"
        );
        // An unsettled stamp is not remembered: the next load hashes.
        let (_, _, other) = cache
            .load(&engine, &std::fs::read(&path).unwrap(), Some(stamp(&path)))
            .unwrap();
        assert_ne!(other, sha);
        assert!(cache.recall(&engine, &stamp(&path)).is_none());
    }

    /// Corruption that moves no stamp (a failing disk, a write to the
    /// block device) is caught by the checksum under the digest.
    #[test]
    fn an_entry_whose_bytes_changed_under_its_stamp_is_recompiled() {
        let dir = tempfile::tempdir().unwrap();
        let (_, bytes) = settled_plugin(dir.path(), "(component)");
        let (engine, cache) = (Engine::default(), CompiledCache::new(dir.path().join("cache")));
        let (_, _, sha) = cache.load(&engine, &bytes, None).unwrap();
        let entry = cache.entry(&engine, &sha);
        let original = std::fs::read(&entry).unwrap();
        let mut corrupt = original.clone();
        let middle = corrupt.len() / 2;
        corrupt[middle] ^= 0xff;
        std::fs::write(&entry, &corrupt).unwrap();
        // Signed as if the stamp had not moved: only the bytes differ.
        let key = cache.key().unwrap();
        let forged = entry_digest(&key, &entry, &stamp(&entry), &original);
        std::fs::write(digest_path(&entry), forged).unwrap();
        assert!(cache.hit(&engine, &entry, &key).is_none());
        let (_, outcome, _) = cache.load(&engine, &bytes, None).unwrap();
        assert_eq!(outcome, CacheOutcome::Compiled);
        assert!(
            cache.hit(&engine, &entry, &key).is_some(),
            "stored again, and good"
        );
    }
}
