//! The journaled filesystem layer: `wasi:filesystem` as guests see it.
//!
//! It shadows wasmtime-wasi's `wasi:filesystem/types` and `preopens` in the
//! linker. Every call is delegated to wasmtime-wasi's implementation;
//! before a call that changes a read-write mount goes through, the layer
//! resolves its path beneath the mount (as the delegated call will) and has
//! the run's [`RunJournal`] capture undo information. There is no other
//! path to the disk: core modules are refused, and descriptors carry no
//! write access outside the mounts.
//!
//! Descriptors carry no path, so the layer keeps one per descriptor,
//! keyed by the resource's `rep()`: filled by `get-directories` and
//! `open-at`, emptied by `drop`, renamed with `rename-at`.

use crate::flow::Access;
use crate::journal::{Capture, NewEntry, RunJournal};
use cap_std::fs::Metadata;
use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, Advice, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntryStream, ErrorCode, Filesize,
    HostDescriptor, HostDirectoryEntryStream, MetadataHashValue, NewTimestamp, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsError, FsResult};

/// A mount as the layer knows it.
#[derive(Debug, Clone)]
pub struct LayerMount {
    pub name: String,
    pub guest: String,
    pub access: Access,
}

/// What a descriptor refers to.
#[derive(Debug, Clone)]
struct Node {
    mount: String,
    /// Relative to the mount root, symlinks resolved.
    rel: PathBuf,
    journaled: bool,
}

/// The per-step state of the layer.
pub struct FsLayer {
    journal: Option<Arc<Mutex<RunJournal>>>,
    mounts: Vec<LayerMount>,
    nodes: HashMap<u32, Node>,
}

impl FsLayer {
    /// `journal` is `None` when nothing the step does needs recording
    /// (describing a plugin, or a run with journaling off).
    pub fn new(journal: Option<Arc<Mutex<RunJournal>>>, mounts: Vec<LayerMount>) -> FsLayer {
        FsLayer {
            journal,
            mounts,
            nodes: HashMap::new(),
        }
    }
}

/// The linker's `HasData` for the layer.
pub struct JournaledFs;

impl HasData for JournaledFs {
    type Data<'a> = FsView<'a>;
}

/// wasmtime-wasi's filesystem view, wrapped with the layer.
pub struct FsView<'a> {
    pub inner: WasiFilesystemCtxView<'a>,
    pub layer: &'a mut FsLayer,
}

/// Where a mutation lands, when it must be journaled.
struct Target {
    journal: Arc<Mutex<RunJournal>>,
    mount: String,
    rel: String,
    /// Beneath a directory the run created: files there need no capture.
    fresh: bool,
}

impl Target {
    fn lock(&self) -> MutexGuard<'_, RunJournal> {
        self.journal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What is at the target now, without following a final symlink.
    fn metadata(&self) -> io::Result<Option<Metadata>> {
        let journal = self.lock();
        let dir = journal
            .mount(&self.mount)
            .expect("the journal opened every mount");
        match dir.symlink_metadata(at(&self.rel)) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The most one `read` returns: large enough that a copy is bound by the
/// disk, not by host calls; small enough to bound the host's buffer.
const MAX_READ: u64 = 4 << 20;

fn at(rel: &str) -> &str {
    if rel.is_empty() { "." } else { rel }
}

fn fs_error(e: io::Error) -> FsError {
    ErrorCode::from(e).into()
}

/// Refusal of a path the layer cannot place beneath its mount.
fn refused() -> FsError {
    ErrorCode::NotPermitted.into()
}

impl FsView<'_> {
    fn node(&self, fd: &Resource<types::Descriptor>) -> Option<&Node> {
        self.layer.nodes.get(&fd.rep())
    }

    /// Resolves `path` relative to descriptor `fd` the way the delegated
    /// call will: beneath the mount, following symlinks in the parents
    /// (and the last component when `follow`). `Ok(None)`: nothing to
    /// journal (read-only mount, no journal, or a parent that does not
    /// exist, so that the call fails anyway).
    fn target(&self, fd: &Resource<types::Descriptor>, path: &str, follow: bool) -> FsResult<Option<Target>> {
        let Some(journal) = &self.layer.journal else {
            return Ok(None);
        };
        let node = self.node(fd).ok_or_else(refused)?;
        if !node.journaled {
            return Ok(None);
        }
        if Path::new(path).is_absolute() {
            return Err(refused());
        }
        let joined = node.rel.join(path);
        let guard = journal.lock().unwrap_or_else(|p| p.into_inner());
        let dir = guard.mount(&node.mount).ok_or_else(refused)?;
        // Fast path: inside a directory the run created, nothing needs
        // resolving unless a symlink of the run's own is on the way.
        if let Some(rel) = guard.fresh_resolution(&node.mount, &joined, follow) {
            drop(guard);
            return Ok(Some(Target {
                journal: journal.clone(),
                mount: node.mount.clone(),
                rel,
                fresh: true,
            }));
        }
        let canonical = |p: &Path| -> FsResult<Option<PathBuf>> {
            let p = if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            };
            match dir.canonicalize(p) {
                // The root canonicalizes to ".", which would prefix every path.
                Ok(c) if c == Path::new(".") => Ok(Some(PathBuf::new())),
                Ok(c) => Ok(Some(c)),
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(None),
                Err(_) => Err(refused()),
            }
        };
        let rel = match joined.components().next_back() {
            Some(Component::Normal(name)) => {
                let Some(parent) = canonical(joined.parent().unwrap_or(Path::new("")))? else {
                    return Ok(None);
                };
                let rel = parent.join(name);
                match dir.symlink_metadata(&rel) {
                    Ok(m) if follow && m.is_symlink() => match canonical(&rel)? {
                        Some(resolved) => resolved,
                        // Refuse to create through a dangling symlink.
                        None => return Err(refused()),
                    },
                    _ => rel,
                }
            }
            _ => match canonical(&joined)? {
                Some(c) => c,
                None => return Ok(None),
            },
        };
        let rel = rel.to_str().ok_or_else(refused)?.to_owned();
        drop(guard);
        Ok(Some(Target {
            journal: journal.clone(),
            mount: node.mount.clone(),
            rel,
            fresh: false,
        }))
    }

    /// Remembers what a new descriptor refers to.
    fn remember(&mut self, fd: &Resource<types::Descriptor>, parent: Option<Node>, target: Option<&Target>) {
        if let Some(parent) = parent {
            let rel = target.map_or_else(|| parent.rel.clone(), |t| PathBuf::from(&t.rel));
            self.layer.nodes.insert(fd.rep(), Node { rel, ..parent });
        }
    }
}

impl preopens::Host for FsView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<types::Descriptor>, String)>> {
        let dirs = preopens::Host::get_directories(&mut self.inner)?;
        for (fd, guest) in &dirs {
            if let Some(m) = self.layer.mounts.iter().find(|m| &m.guest == guest) {
                let node = Node {
                    mount: m.name.clone(),
                    rel: PathBuf::new(),
                    journaled: m.access == Access::ReadWrite && self.layer.journal.is_some(),
                };
                self.layer.nodes.insert(fd.rep(), node);
            }
        }
        Ok(dirs)
    }
}

impl types::Host for FsView<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        types::Host::convert_error_code(&mut self.inner, err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.inner, err)
    }
}

impl HostDirectoryEntryStream for FsView<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        self.inner.read_directory_entry(stream).await
    }

    fn drop(&mut self, stream: Resource<DirectoryEntryStream>) -> wasmtime::Result<()> {
        HostDirectoryEntryStream::drop(&mut self.inner, stream)
    }
}

impl HostDescriptor for FsView<'_> {
    async fn open_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: PathFlags,
        path: String,
        mut oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        let follow = path_flags.contains(PathFlags::SYMLINK_FOLLOW);
        let parent = self.node(&fd).cloned();
        let target = self.target(&fd, &path, follow)?;
        let mut restore_mode = None;
        let writes = flags.contains(DescriptorFlags::WRITE)
            || oflags.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE);
        // A file beneath a directory the run created needs no capture,
        // whatever is there now: skip looking.
        if let (Some(t), true) = (&target, writes && !target.as_ref().is_some_and(|t| t.fresh)) {
            match t.metadata().map_err(fs_error)? {
                None if oflags.contains(OpenFlags::CREATE) => {
                    t.lock()
                        .before_create(&t.mount, &t.rel, NewEntry::File)
                        .map_err(fs_error)?;
                }
                Some(m) if m.is_file() && !oflags.contains(OpenFlags::EXCLUSIVE) => {
                    if oflags.contains(OpenFlags::TRUNCATE) {
                        let capture = t.lock().before_truncate(&t.mount, &t.rel, &m).map_err(fs_error)?;
                        if let Capture::MovedAside { mode } = capture {
                            oflags |= OpenFlags::CREATE;
                            restore_mode = Some(mode);
                        }
                    } else if flags.contains(DescriptorFlags::WRITE) {
                        t.lock()
                            .before_write_open(&t.mount, &t.rel, &m)
                            .map_err(fs_error)?;
                    }
                }
                _ => {}
            }
        }
        let opened = self.inner.open_at(fd, path_flags, path, oflags, flags).await?;
        if let (Some(t), Some(mode)) = (&target, restore_mode) {
            use std::os::unix::fs::PermissionsExt;
            let journal = t.lock();
            let dir = journal.mount(&t.mount).expect("the journal opened every mount");
            let perms = cap_std::fs::Permissions::from_std(std::fs::Permissions::from_mode(mode));
            dir.set_permissions(&t.rel, perms).map_err(fs_error)?;
        }
        self.remember(&opened, parent, target.as_ref());
        Ok(opened)
    }

    async fn create_directory_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        if let Some(t) = self.target(&fd, &path, false)?
            && t.metadata().map_err(fs_error)?.is_none()
        {
            t.lock()
                .before_create(&t.mount, &t.rel, NewEntry::Dir)
                .map_err(fs_error)?;
        }
        self.inner.create_directory_at(fd, path).await
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        src: String,
        dest: String,
    ) -> FsResult<()> {
        if let Some(t) = self.target(&fd, &dest, false)?
            && t.metadata().map_err(fs_error)?.is_none()
        {
            t.lock()
                .before_create(&t.mount, &t.rel, NewEntry::Symlink)
                .map_err(fs_error)?;
        }
        self.inner.symlink_at(fd, src, dest).await
    }

    async fn link_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_flags: PathFlags,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        // The new name shares the source's inode, so writing through it
        // changes the source: save the source's contents now.
        let follow = old_flags.contains(PathFlags::SYMLINK_FOLLOW);
        if let Some(src) = self.target(&fd, &old_path, follow)?
            && let Some(m) = src.metadata().map_err(fs_error)?
            && m.is_file()
        {
            src.lock()
                .before_write_open(&src.mount, &src.rel, &m)
                .map_err(fs_error)?;
        }
        if let Some(t) = self.target(&new_fd, &new_path, false)?
            && t.metadata().map_err(fs_error)?.is_none()
        {
            t.lock()
                .before_create(&t.mount, &t.rel, NewEntry::File)
                .map_err(fs_error)?;
        }
        self.inner
            .link_at(fd, old_flags, old_path, new_fd, new_path)
            .await
    }

    async fn unlink_file_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        if let Some(t) = self.target(&fd, &path, false)?
            && let Some(m) = t.metadata().map_err(fs_error)?
            && !m.is_dir()
        {
            t.lock().before_unlink(&t.mount, &t.rel, &m).map_err(fs_error)?;
        }
        self.inner.unlink_file_at(fd, path).await
    }

    async fn remove_directory_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        if let Some(t) = self.target(&fd, &path, false)?
            && let Some(m) = t.metadata().map_err(fs_error)?
            && m.is_dir()
        {
            t.lock()
                .before_remove_dir(&t.mount, &t.rel, &m)
                .map_err(fs_error)?;
        }
        self.inner.remove_directory_at(fd, path).await
    }

    async fn rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let from = self.target(&fd, &old_path, false)?;
        let to = self.target(&new_fd, &new_path, false)?;
        let mut renamed = None;
        match (&from, &to) {
            (Some(f), Some(t)) if f.mount != t.mount => return Err(ErrorCode::CrossDevice.into()),
            (Some(f), Some(t)) => {
                if let Some(from_meta) = f.metadata().map_err(fs_error)? {
                    let to_meta = t.metadata().map_err(fs_error)?;
                    f.lock()
                        .before_rename(&f.mount, &f.rel, &t.rel, from_meta.is_dir(), to_meta.as_ref())
                        .map_err(fs_error)?;
                    renamed = Some((f.mount.clone(), PathBuf::from(&f.rel), PathBuf::from(&t.rel)));
                }
            }
            // One side journaled and the other not cannot happen within a
            // mount; across mounts it would escape the journal.
            (Some(_), None) | (None, Some(_)) if self.layer.journal.is_some() => {
                return Err(ErrorCode::CrossDevice.into());
            }
            _ => {}
        }
        self.inner.rename_at(fd, old_path, new_fd, new_path).await?;
        if let Some((mount, from, to)) = renamed {
            for node in self.layer.nodes.values_mut() {
                if node.mount == mount
                    && let Ok(rest) = node.rel.strip_prefix(&from)
                {
                    node.rel = to.join(rest);
                }
            }
        }
        Ok(())
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: PathFlags,
        path: String,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        let follow = path_flags.contains(PathFlags::SYMLINK_FOLLOW);
        if let Some(t) = self.target(&fd, &path, follow)?
            && t.metadata().map_err(fs_error)?.is_some()
        {
            t.lock().before_set_times(&t.mount, &t.rel).map_err(fs_error)?;
        }
        self.inner.set_times_at(fd, path_flags, path, atim, mtim).await
    }

    async fn set_times(
        &mut self,
        fd: Resource<types::Descriptor>,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        if let Some(t) = self.target(&fd, "", false)? {
            t.lock().before_set_times(&t.mount, &t.rel).map_err(fs_error)?;
        }
        self.inner.set_times(fd, atim, mtim).await
    }

    // Writes through a descriptor need no capture here: a descriptor can
    // write only if it was opened for writing, and `open_at` captured the
    // file then (or the run created it).
    async fn set_size(&mut self, fd: Resource<types::Descriptor>, size: Filesize) -> FsResult<()> {
        self.inner.set_size(fd, size).await
    }

    async fn write(
        &mut self,
        fd: Resource<types::Descriptor>,
        buf: Vec<u8>,
        offset: Filesize,
    ) -> FsResult<Filesize> {
        self.inner.write(fd, buf, offset).await
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        self.inner.write_via_stream(fd, offset)
    }

    fn append_via_stream(&mut self, fd: Resource<types::Descriptor>) -> FsResult<Resource<DynOutputStream>> {
        self.inner.append_via_stream(fd)
    }

    fn drop(&mut self, fd: Resource<types::Descriptor>) -> wasmtime::Result<()> {
        self.layer.nodes.remove(&fd.rep());
        HostDescriptor::drop(&mut self.inner, fd)
    }

    // Calls that change nothing are delegated as they are.

    fn read_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        self.inner.read_via_stream(fd, offset)
    }

    async fn advise(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: Filesize,
        len: Filesize,
        advice: Advice,
    ) -> FsResult<()> {
        self.inner.advise(fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        self.inner.sync_data(fd).await
    }

    async fn get_flags(&mut self, fd: Resource<types::Descriptor>) -> FsResult<DescriptorFlags> {
        self.inner.get_flags(fd).await
    }

    async fn get_type(&mut self, fd: Resource<types::Descriptor>) -> FsResult<DescriptorType> {
        self.inner.get_type(fd).await
    }

    /// wasmtime-wasi returns at most 64 KiB per `read`; a guest copying a
    /// large file with large buffers (deploy-files asks for 1 MiB) would make
    /// sixteen times the host calls. Up to [`MAX_READ`] is read here instead.
    async fn read(
        &mut self,
        fd: Resource<types::Descriptor>,
        len: Filesize,
        offset: Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        use std::os::unix::fs::FileExt;
        use wasmtime_wasi::filesystem::Descriptor;
        let file = match self.inner.table.get(&fd)? {
            Descriptor::File(f) if len > 64 << 10 => f.file.clone(),
            _ => return self.inner.read(fd, len, offset).await,
        };
        let mut buffer = vec![0; len.min(MAX_READ) as usize];
        let n = file.read_at(&mut buffer, offset).map_err(fs_error)?;
        buffer.truncate(n);
        Ok((buffer, n == 0))
    }

    async fn read_directory(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<DirectoryEntryStream>> {
        self.inner.read_directory(fd).await
    }

    async fn sync(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        self.inner.sync(fd).await
    }

    async fn stat(&mut self, fd: Resource<types::Descriptor>) -> FsResult<DescriptorStat> {
        self.inner.stat(fd).await
    }

    async fn stat_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        flags: PathFlags,
        path: String,
    ) -> FsResult<DescriptorStat> {
        self.inner.stat_at(fd, flags, path).await
    }

    async fn readlink_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<String> {
        self.inner.readlink_at(fd, path).await
    }

    async fn is_same_object(
        &mut self,
        a: Resource<types::Descriptor>,
        b: Resource<types::Descriptor>,
    ) -> wasmtime::Result<bool> {
        self.inner.is_same_object(a, b).await
    }

    async fn metadata_hash(&mut self, fd: Resource<types::Descriptor>) -> FsResult<MetadataHashValue> {
        self.inner.metadata_hash(fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        flags: PathFlags,
        path: String,
    ) -> FsResult<MetadataHashValue> {
        self.inner.metadata_hash_at(fd, flags, path).await
    }
}
