//! The journaled filesystem layer: `wasi:filesystem` as guests see it.
//!
//! It shadows wasmtime-wasi's `wasi:filesystem/types` and `preopens` in the
//! linker. A call that changes a read-write mount is resolved first
//! ([`resolve`]: by the kernel, through directory handles, down to one open
//! directory and one plain name), captured by the run's [`Recorder`], and
//! then made by wasmtime-wasi on exactly that directory and name, so what
//! was journaled is what changes; the recorder hears whether it succeeded.
//! Calls that change nothing are delegated as they are. There is no other
//! path to the disk: core modules are refused, and descriptors carry no
//! write access outside the mounts.
//!
//! Special files (FIFOs, sockets, devices) are never opened: opening one
//! can block the engine where no time limit reaches it.

mod resolve;
mod stream;

use crate::grant::Access;
use crate::journal::{Capture, Entry, FileId, NewEntry, Outcome, Recorder, Room, SharedRecorder};
use cap_std::fs::{FileTypeExt, Metadata};
use resolve::{Parent, Parents, Resolved, rel_of, resolve};
use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};
use stream::FileStream;
use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::FsPerms;
use wasmtime_wasi::filesystem::{Descriptor, Dir as WasiDir, OpenMode, WasiFilesystemCtxView};
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
    /// The host directory, canonical: where the kernel says a directory
    /// of this mount is, relative to this, is its place in the mount.
    pub root: PathBuf,
    /// The directory as the run opened it when it started, which the
    /// guest's preopen is made from; `None`: wasmtime-wasi's preopen by path.
    pub pinned: Option<Arc<std::fs::File>>,
}

/// The per-step state of the layer.
pub struct FsLayer {
    recorder: Option<SharedRecorder>,
    /// The reserve that writes to journaled mounts must leave free.
    room: Option<Arc<Room>>,
    mounts: Vec<LayerMount>,
    /// What the layer knows of each descriptor, by resource rep.
    nodes: HashMap<u32, Node>,
    /// Bytes each mount's filesystem may still take before its free space
    /// is looked up again for the reserve (a look-up per write would cost
    /// a system call per file of a deploy), and the run's copied bytes when
    /// it was looked up: a copy taken since raises the reserve, so the
    /// figure no longer holds.
    headroom: Vec<(u64, u64)>,
    parents: Parents,
    /// Descriptors the guest opened and directory listings it holds, by
    /// resource rep: each costs the host a descriptor or memory, so a
    /// step may hold `max_held` at once.
    held: std::collections::HashSet<u32>,
    max_held: usize,
    /// Opens and listings refused because `max_held` were held.
    refused: u64,
}

impl FsLayer {
    /// `recorder` is `None` when nothing the step does needs recording
    /// (describing a plugin, or a run with journaling off).
    pub fn new(
        recorder: Option<SharedRecorder>,
        room: Option<Arc<Room>>,
        mounts: Vec<LayerMount>,
        max_held: usize,
    ) -> FsLayer {
        FsLayer {
            recorder,
            room,
            mounts,
            nodes: HashMap::new(),
            headroom: Vec::new(),
            parents: Parents::default(),
            held: Default::default(),
            max_held,
            refused: 0,
        }
    }

    /// The line for the step's log that says how many opens and listings
    /// were refused, if any were.
    pub fn refused_line(&self) -> Option<String> {
        (self.refused > 0).then(|| {
            format!(
                "{} open(s) or directory listing(s) refused: the step may hold {} at once (limits.descriptors)",
                self.refused, self.max_held
            )
        })
    }
}

/// What the layer knows of a descriptor.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// Index of its mount.
    mount: usize,
    /// It is the run's own (created by the run, or in a directory where
    /// everything is): changes through it need no capture.
    own: bool,
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

/// The most one `read` returns: large enough that a copy is bound by the
/// disk, not by host calls; small enough to bound the host's buffer.
const MAX_READ: u64 = 4 << 20;

fn fs_error(e: io::Error) -> FsError {
    ErrorCode::from(e).into()
}

fn lock(recorder: &SharedRecorder) -> MutexGuard<'_, dyn Recorder + 'static> {
    recorder.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs a capture; if it fails, the call is over before it was made.
fn capture<T>(rec: &SharedRecorder, f: impl FnOnce(&mut dyn Recorder) -> io::Result<T>) -> FsResult<T> {
    let mut r = lock(rec);
    f(&mut *r).map_err(|e| {
        let _ = r.finish(Outcome::Failed);
        fs_error(e)
    })
}

/// Whether opening this could block: FIFOs, sockets and devices.
fn is_special(meta: &Metadata) -> bool {
    let t = meta.file_type();
    t.is_fifo() || t.is_socket() || t.is_char_device() || t.is_block_device()
}

/// A resolved path in a known mount, and the recorder when the mount is
/// journaled.
struct Target {
    mount: usize,
    resolved: Resolved,
    recorder: Option<SharedRecorder>,
}

impl Target {
    fn entry<'a>(&'a self, layer: &'a FsLayer, name: &'a str) -> Entry<'a> {
        let parent: &Parent = &self.resolved.parent;
        Entry {
            mount: &layer.mounts[self.mount].name,
            dir: &parent.dir,
            dir_id: parent.id,
            dir_rel: &parent.rel,
            name,
        }
    }

    /// What is at the named entry now, without following a symlink.
    fn metadata(&self) -> FsResult<Option<Metadata>> {
        let Some(name) = &self.resolved.name else {
            return self
                .resolved
                .parent
                .dir
                .dir_metadata()
                .map(Some)
                .map_err(fs_error);
        };
        match self.resolved.parent.dir.symlink_metadata(name) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(fs_error(e)),
        }
    }
}

impl FsView<'_> {
    /// The mount of a directory descriptor, and the directory.
    fn directory(
        &self,
        fd: &Resource<types::Descriptor>,
    ) -> FsResult<Option<(usize, wasmtime_wasi::filesystem::Dir)>> {
        let Some(&Node { mount, .. }) = self.layer.nodes.get(&fd.rep()) else {
            return Ok(None);
        };
        match self.inner.table.get(fd)? {
            Descriptor::Dir(d) => Ok(Some((mount, d.clone()))),
            Descriptor::File(_) => Err(ErrorCode::NotDirectory.into()),
        }
    }

    /// Resolves `path` relative to `fd`; `None` for a descriptor the layer
    /// does not know (wasmtime-wasi then reports the error).
    fn target(
        &mut self,
        fd: &Resource<types::Descriptor>,
        path: &str,
        follow: bool,
    ) -> FsResult<Option<Target>> {
        let Some((mount, dir)) = self.directory(fd)? else {
            return Ok(None);
        };
        let m = &self.layer.mounts[mount];
        let resolved = resolve(&dir, fd.rep(), &m.root, path, follow, &mut self.layer.parents)?;
        let recorder = match m.access {
            Access::ReadWrite => self.layer.recorder.clone(),
            Access::ReadOnly => None,
        };
        Ok(Some(Target {
            mount,
            resolved,
            recorder,
        }))
    }

    /// The two ends of a rename or link: both in one mount, or neither
    /// journaled (a change across mounts would escape the journal).
    fn pair(
        &mut self,
        fd: &Resource<types::Descriptor>,
        path: &str,
        follow: bool,
        new_fd: &Resource<types::Descriptor>,
        new_path: &str,
    ) -> FsResult<Option<(Target, Target)>> {
        let (Some(from), Some(to)) = (
            self.target(fd, path, follow)?,
            self.target(new_fd, new_path, false)?,
        ) else {
            return Ok(None);
        };
        if from.mount != to.mount && (from.recorder.is_some() || to.recorder.is_some()) {
            return Err(ErrorCode::CrossDevice.into());
        }
        Ok(Some((from, to)))
    }

    /// Pushes a descriptor for `parent`, to make a call on one name in it;
    /// [`Self::close_parent`] takes it out again.
    fn open_parent(&mut self, parent: &Parent) -> FsResult<Resource<types::Descriptor>> {
        Ok(self.inner.table.push(Descriptor::Dir(parent.wasi.clone()))?)
    }

    fn close_parent(&mut self, rep: u32) {
        let _ = self
            .inner
            .table
            .delete(Resource::<types::Descriptor>::new_own(rep));
    }

    /// Remembers the mount of a new descriptor: paths are resolved
    /// relative to a directory's, and `set-times` on a file's changes an
    /// entry of that mount.
    fn remember(&mut self, fd: &Resource<types::Descriptor>, mount: usize, own: bool) {
        self.layer.nodes.insert(fd.rep(), Node { mount, own });
    }

    /// Where a descriptor itself is in its mount, for a change made
    /// through it (`set-times`), when that change needs capturing; refused
    /// if it has no name in the mount.
    fn descriptor_entry(
        &self,
        fd: &Resource<types::Descriptor>,
    ) -> FsResult<Option<(usize, String, Metadata)>> {
        let Some(&Node { mount, own }) = self.layer.nodes.get(&fd.rep()) else {
            return Ok(None);
        };
        let m = &self.layer.mounts[mount];
        let Some(rec) = self
            .layer
            .recorder
            .as_ref()
            .filter(|_| m.access == Access::ReadWrite && !own)
        else {
            return Ok(None);
        };
        let file = match self.inner.table.get(fd)? {
            Descriptor::Dir(d) => d.dir.clone(),
            Descriptor::File(f) => f.file.clone(),
        };
        let meta = Metadata::from_just_metadata(file.metadata().map_err(fs_error)?);
        // Most such calls are on files the run just made (a deploy sets
        // each file's time): no need to ask the kernel where they are.
        if lock(rec).times_kept(&meta) {
            return Ok(None);
        }
        Ok(Some((mount, rel_of(file.as_fd(), &m.root)?, meta)))
    }

    /// Tells the recorder what a file that `fd` (when `writable_only`, if
    /// it can write) reaches in a journaled mount is like now: the step is
    /// done changing it, for now.
    fn leave_file(&self, fd: &Resource<types::Descriptor>, writable_only: bool) {
        let Some(&Node { mount, .. }) = self.layer.nodes.get(&fd.rep()) else {
            return;
        };
        let Some(rec) = self
            .layer
            .recorder
            .as_ref()
            .filter(|_| self.layer.mounts[mount].access == Access::ReadWrite)
        else {
            return;
        };
        if let Ok(Descriptor::File(f)) = self.inner.table.get(fd)
            && !(writable_only && f.perms.write_not_permitted())
            && let Ok(meta) = f.file.metadata()
        {
            lock(rec).left(&Metadata::from_just_metadata(meta));
        }
    }

    /// At the end of a step: every file it could still write to is as it
    /// left it (descriptors the guest never closed are not dropped one by
    /// one).
    pub fn settle(&mut self) {
        let reps: Vec<u32> = self.layer.nodes.keys().copied().collect();
        for rep in reps {
            self.leave_file(&Resource::new_borrow(rep), true);
        }
    }

    /// Tells the recorder (when the call was captured) how it ended.
    fn finish(&self, target: &Target, captured: bool, ok: bool, created: Option<FileId>) {
        if let Some(rec) = target.recorder.as_ref().filter(|_| captured) {
            let outcome = match ok {
                true => Outcome::Succeeded {
                    created,
                    opened: None,
                },
                false => Outcome::Failed,
            };
            let _ = lock(rec).finish(outcome);
        }
    }
}

/// The identity of what is at `name` in `parent` now.
fn id_at(parent: &Parent, name: &str) -> Option<FileId> {
    parent.dir.symlink_metadata(name).ok().map(|m| FileId::of(&m))
}

impl preopens::Host for FsView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<types::Descriptor>, String)>> {
        let mut dirs = Vec::new();
        for m in &self.layer.mounts {
            if let Some(dir) = &m.pinned {
                let (perms, mode) = match m.access {
                    Access::ReadOnly => (FsPerms::ReadOnly, OpenMode::READ),
                    Access::ReadWrite => (FsPerms::ReadWrite, OpenMode::READ | OpenMode::WRITE),
                };
                let dir = WasiDir::new(dir.try_clone()?, perms, mode, true);
                dirs.push((self.inner.table.push(Descriptor::Dir(dir))?, m.guest.clone()));
            }
        }
        dirs.extend(preopens::Host::get_directories(&mut self.inner)?);
        for (fd, guest) in &dirs {
            if let Some(m) = self.layer.mounts.iter().position(|m| &m.guest == guest) {
                self.layer.nodes.insert(fd.rep(), Node { mount: m, own: false });
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
        self.layer.held.remove(&stream.rep());
        HostDirectoryEntryStream::drop(&mut self.inner, stream)
    }
}

impl FsView<'_> {
    /// Whether the step may hold one more descriptor or listing; counts
    /// the refusal if not.
    fn may_hold_another(&mut self) -> FsResult<()> {
        if self.layer.held.len() < self.layer.max_held {
            return Ok(());
        }
        self.layer.refused += 1;
        Err(ErrorCode::InsufficientMemory.into())
    }

    /// Opens the entry `target` names, in its resolved directory, by its
    /// one plain name (resolution already followed a symlink where asked).
    async fn open_in_parent(
        &mut self,
        target: &Target,
        path_flags: PathFlags,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        let dir = self.open_parent(&target.resolved.parent)?;
        let rep = dir.rep();
        let opened = self
            .inner
            .open_at(dir, path_flags, target.resolved.call_name(), oflags, flags)
            .await;
        self.close_parent(rep);
        opened
    }

    /// `open-at`, once the step may hold the descriptor it makes.
    async fn open_checked(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: PathFlags,
        path: String,
        mut oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        // A trailing slash resolves a final symlink as the kernel does.
        let follow = path_flags.contains(PathFlags::SYMLINK_FOLLOW) || path.ends_with('/');
        let Some(target) = self.target(&fd, &path, follow)? else {
            return self.inner.open_at(fd, path_flags, path, oflags, flags).await;
        };
        let mount = target.mount;
        let Some(name) = target.resolved.name.clone() else {
            // The directory itself: nothing to create or truncate.
            let opened = self.inner.open_at(fd, path_flags, path, oflags, flags).await?;
            self.remember(&opened, mount, false);
            return Ok(opened);
        };
        // Where everything is the run's own, nothing needs capturing, or
        // even looking at (and there are no special files: a guest cannot
        // make one).
        let own_dir = target
            .recorder
            .as_ref()
            .is_some_and(|rec| lock(rec).owns_all_in(target.resolved.parent.id));
        if own_dir {
            let opened = self.open_in_parent(&target, path_flags, oflags, flags).await?;
            self.remember(&opened, mount, true);
            if let (Some(rec), Ok(Descriptor::File(f))) = (&target.recorder, self.inner.table.get(&opened))
                && let Ok(meta) = f.file.metadata()
            {
                lock(rec).made(FileId::of(&Metadata::from_just_metadata(meta)));
            }
            return Ok(opened);
        }
        let meta = target.metadata()?;
        if meta.as_ref().is_some_and(is_special) {
            return Err(ErrorCode::NotPermitted.into());
        }
        // What wasmtime-wasi refuses before it touches the disk is refused
        // here before anything is captured.
        if flags.intersects(
            DescriptorFlags::FILE_INTEGRITY_SYNC
                | DescriptorFlags::DATA_INTEGRITY_SYNC
                | DescriptorFlags::REQUESTED_WRITE_SYNC,
        ) {
            return Err(ErrorCode::Unsupported.into());
        }
        if oflags.contains(OpenFlags::DIRECTORY)
            && oflags.intersects(OpenFlags::CREATE | OpenFlags::EXCLUSIVE | OpenFlags::TRUNCATE)
        {
            return Err(ErrorCode::Invalid.into());
        }
        let writes = flags.contains(DescriptorFlags::WRITE)
            || oflags.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE);
        let mut capture = Capture::Nothing;
        let recorder = target.recorder.clone().filter(|_| writes);
        if let Some(rec) = &recorder {
            let entry = target.entry(self.layer, &name);
            let mut r = lock(rec);
            let captured = match &meta {
                None if oflags.contains(OpenFlags::CREATE) => r.before_create(&entry, NewEntry::File),
                // EXCLUSIVE counts only with CREATE: alone, it is ignored.
                Some(m) if m.is_file() && !oflags.contains(OpenFlags::CREATE | OpenFlags::EXCLUSIVE) => {
                    if oflags.contains(OpenFlags::TRUNCATE) {
                        r.before_truncate(&entry, m).map(|c| capture = c)
                    } else {
                        // CREATE on an existing file opens it for writing too.
                        r.before_write_open(&entry, m)
                    }
                }
                _ => Ok(()),
            };
            if let Err(e) = captured {
                let _ = r.finish(Outcome::Failed);
                return Err(fs_error(e));
            }
        }
        if capture == Capture::MovedAside {
            oflags |= OpenFlags::CREATE;
        }
        let opened = self.open_in_parent(&target, path_flags, oflags, flags).await;
        let created = recorder.is_some() && (meta.is_none() || capture == Capture::MovedAside);
        if let Some(rec) = &recorder {
            let file = match &opened {
                Ok(new) => match self.inner.table.get(new)? {
                    Descriptor::File(f) => Some(f.file.clone()),
                    Descriptor::Dir(_) => None,
                },
                Err(_) => None,
            };
            let outcome = match &opened {
                Ok(_) => Outcome::Succeeded {
                    created: created.then(|| id_at(&target.resolved.parent, &name)).flatten(),
                    opened: file.as_deref(),
                },
                Err(_) => Outcome::Failed,
            };
            // A new file that cannot take over its original's attributes
            // is not handed to the guest.
            if let (Err(e), Ok(_)) = (lock(rec).finish(outcome), &opened) {
                let _ = HostDescriptor::drop(&mut self.inner, opened?);
                return Err(fs_error(e));
            }
        }
        let opened = opened?;
        self.remember(&opened, mount, created);
        Ok(opened)
    }
}

impl HostDescriptor for FsView<'_> {
    async fn open_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: PathFlags,
        path: String,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        self.may_hold_another()?;
        let opened = self.open_checked(fd, path_flags, path, oflags, flags).await?;
        self.layer.held.insert(opened.rep());
        Ok(opened)
    }

    async fn create_directory_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        let Some(target) = self.target(&fd, &path, false)? else {
            return self.inner.create_directory_at(fd, path).await;
        };
        let Some(name) = target.resolved.name.clone() else {
            return Err(ErrorCode::Exist.into());
        };
        let captured = match &target.recorder {
            Some(rec) if target.metadata()?.is_none() => {
                capture(rec, |r| {
                    r.before_create(&target.entry(self.layer, &name), NewEntry::Dir)
                })?;
                true
            }
            _ => false,
        };
        let dir = self.open_parent(&target.resolved.parent)?;
        let rep = dir.rep();
        let result = self
            .inner
            .create_directory_at(dir, target.resolved.call_name())
            .await;
        self.close_parent(rep);
        let created = result
            .is_ok()
            .then(|| id_at(&target.resolved.parent, &name))
            .flatten();
        self.finish(&target, captured, result.is_ok(), created);
        result
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        src: String,
        dest: String,
    ) -> FsResult<()> {
        let Some(target) = self.target(&fd, &dest, false)? else {
            return self.inner.symlink_at(fd, src, dest).await;
        };
        let Some(name) = target.resolved.name.clone() else {
            return Err(ErrorCode::Exist.into());
        };
        let captured = match &target.recorder {
            Some(rec) if target.metadata()?.is_none() => {
                capture(rec, |r| {
                    r.before_create(&target.entry(self.layer, &name), NewEntry::Symlink)
                })?;
                true
            }
            _ => false,
        };
        let dir = self.open_parent(&target.resolved.parent)?;
        let rep = dir.rep();
        let result = self.inner.symlink_at(dir, src, target.resolved.call_name()).await;
        self.close_parent(rep);
        let created = result
            .is_ok()
            .then(|| id_at(&target.resolved.parent, &name))
            .flatten();
        self.finish(&target, captured, result.is_ok(), created);
        result
    }

    async fn link_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_flags: PathFlags,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let follow = old_flags.contains(PathFlags::SYMLINK_FOLLOW);
        let Some((from, to)) = self.pair(&fd, &old_path, follow, &new_fd, &new_path)? else {
            return self
                .inner
                .link_at(fd, old_flags, old_path, new_fd, new_path)
                .await;
        };
        let (Some(_), Some(name)) = (&from.resolved.name, to.resolved.name.clone()) else {
            return Err(ErrorCode::NotPermitted.into());
        };
        let captured = match &to.recorder {
            Some(rec) if to.metadata()?.is_none() => {
                capture(rec, |r| r.before_link(&to.entry(self.layer, &name)))?;
                true
            }
            _ => false,
        };
        let src = self.open_parent(&from.resolved.parent)?;
        let dst = self.open_parent(&to.resolved.parent)?;
        let reps = (src.rep(), dst.rep());
        // Not following: resolution followed a symlink where asked.
        let result = self
            .inner
            .link_at(
                src,
                PathFlags::empty(),
                from.resolved.call_name(),
                dst,
                to.resolved.call_name(),
            )
            .await;
        self.close_parent(reps.0);
        self.close_parent(reps.1);
        self.finish(&to, captured, result.is_ok(), None);
        if let (Some(rec), Ok(())) = (&to.recorder, &result)
            && let Some(id) = id_at(&to.resolved.parent, &name)
        {
            lock(rec).made(id);
        }
        result
    }

    async fn unlink_file_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        self.remove(fd, path, false).await
    }

    async fn remove_directory_at(&mut self, fd: Resource<types::Descriptor>, path: String) -> FsResult<()> {
        self.remove(fd, path, true).await
    }

    async fn rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let Some((from, to)) = self.pair(&fd, &old_path, false, &new_fd, &new_path)? else {
            return self.inner.rename_at(fd, old_path, new_fd, new_path).await;
        };
        let (Some(from_name), Some(to_name)) = (from.resolved.name.clone(), to.resolved.name.clone()) else {
            return Err(ErrorCode::Busy.into());
        };
        let captured = match (&from.recorder, from.metadata()?) {
            (Some(rec), Some(from_meta)) => {
                let to_meta = to.metadata()?;
                capture(rec, |r| {
                    r.before_rename(
                        &from.entry(self.layer, &from_name),
                        &from_meta,
                        &to.entry(self.layer, &to_name),
                        to_meta.as_ref(),
                    )
                })?;
                true
            }
            _ => false,
        };
        let src = self.open_parent(&from.resolved.parent)?;
        let dst = self.open_parent(&to.resolved.parent)?;
        let reps = (src.rep(), dst.rep());
        let result = self
            .inner
            .rename_at(src, from.resolved.call_name(), dst, to.resolved.call_name())
            .await;
        self.close_parent(reps.0);
        self.close_parent(reps.1);
        self.finish(&from, captured, result.is_ok(), None);
        self.layer.parents.clear();
        result
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: PathFlags,
        path: String,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        // A trailing slash resolves a final symlink as the kernel does.
        let follow = path_flags.contains(PathFlags::SYMLINK_FOLLOW) || path.ends_with('/');
        let Some(target) = self.target(&fd, &path, follow)? else {
            return self.inner.set_times_at(fd, path_flags, path, atim, mtim).await;
        };
        let captured = match (&target.recorder, target.metadata()?) {
            (Some(rec), Some(meta)) => {
                let mount = &self.layer.mounts[target.mount].name;
                capture(rec, |r| r.before_set_times(mount, &target.resolved.rel(), &meta))?;
                true
            }
            _ => false,
        };
        let dir = self.open_parent(&target.resolved.parent)?;
        let rep = dir.rep();
        // Not following: resolution followed a symlink where asked.
        let result = self
            .inner
            .set_times_at(dir, PathFlags::empty(), target.resolved.call_name(), atim, mtim)
            .await;
        self.close_parent(rep);
        self.finish(&target, captured, result.is_ok(), None);
        if let (Some(rec), Ok(Some(meta))) = (&target.recorder, target.metadata()) {
            lock(rec).left(&meta);
        }
        result
    }

    async fn set_times(
        &mut self,
        fd: Resource<types::Descriptor>,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        let Some((mount, rel, meta)) = self.descriptor_entry(&fd)? else {
            let result = self
                .inner
                .set_times(Resource::new_borrow(fd.rep()), atim, mtim)
                .await;
            self.leave_file(&fd, false);
            return result;
        };
        let rec = self.layer.recorder.clone().expect("descriptor_entry checks it");
        let name = self.layer.mounts[mount].name.clone();
        capture(&rec, |r| r.before_set_times(&name, &rel, &meta))?;
        let result = self
            .inner
            .set_times(Resource::new_borrow(fd.rep()), atim, mtim)
            .await;
        let outcome = match &result {
            Ok(()) => Outcome::Succeeded {
                created: None,
                opened: None,
            },
            Err(_) => Outcome::Failed,
        };
        let _ = lock(&rec).finish(outcome);
        self.leave_file(&fd, false);
        result
    }

    // Writes through a descriptor need no capture here: a descriptor can
    // write only if it was opened for writing, and `open_at` captured the
    // file then (or the run created it).
    // (Writes still leave the free-space reserve: see [`Room`].)
    async fn set_size(&mut self, fd: Resource<types::Descriptor>, size: Filesize) -> FsResult<()> {
        if let Some((file, _)) = self.room_for(&fd)? {
            let now = file.metadata().map_err(fs_error)?.len();
            self.check_room(&fd, size.saturating_sub(now))?;
        }
        self.inner.set_size(fd, size).await
    }

    async fn write(
        &mut self,
        fd: Resource<types::Descriptor>,
        buf: Vec<u8>,
        offset: Filesize,
    ) -> FsResult<Filesize> {
        self.check_room(&fd, buf.len() as u64)?;
        self.inner.write(fd, buf, offset).await
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        let file = self.writable_file(&fd)?;
        let room = self.room_for(&fd)?.map(|(_, room)| room);
        let stream: DynOutputStream = Box::new(FileStream::at(file, offset, room));
        Ok(self.inner.table.push(stream)?)
    }

    fn append_via_stream(&mut self, fd: Resource<types::Descriptor>) -> FsResult<Resource<DynOutputStream>> {
        let file = self.writable_file(&fd)?;
        let room = self.room_for(&fd)?.map(|(_, room)| room);
        let stream: DynOutputStream = Box::new(FileStream::append(file, room));
        Ok(self.inner.table.push(stream)?)
    }

    fn drop(&mut self, fd: Resource<types::Descriptor>) -> wasmtime::Result<()> {
        self.leave_file(&fd, true);
        self.layer.nodes.remove(&fd.rep());
        self.layer.held.remove(&fd.rep());
        self.layer.parents.forget(fd.rep());
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
        // A listing holds the directory's entries in the host's memory.
        self.may_hold_another()?;
        let listing = self.inner.read_directory(fd).await?;
        self.layer.held.insert(listing.rep());
        Ok(listing)
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

impl FsView<'_> {
    /// A file descriptor of a journaled mount and the reserve its writes
    /// must leave; `None` where there is no reserve to keep.
    fn room_for(
        &self,
        fd: &Resource<types::Descriptor>,
    ) -> FsResult<Option<(Arc<std::fs::File>, Arc<Room>)>> {
        let (Some(room), Some(&Node { mount, .. })) = (&self.layer.room, self.layer.nodes.get(&fd.rep()))
        else {
            return Ok(None);
        };
        if self.layer.mounts[mount].access != Access::ReadWrite {
            return Ok(None);
        }
        match self.inner.table.get(fd)? {
            Descriptor::File(f) => Ok(Some((f.file.clone(), room.clone()))),
            Descriptor::Dir(_) => Ok(None),
        }
    }

    /// Checks that `len` more bytes written through `fd` leave the reserve
    /// free. The free space is looked up again only once the writes since
    /// the last look-up could have used half of what was left.
    fn check_room(&mut self, fd: &Resource<types::Descriptor>, len: u64) -> FsResult<()> {
        let Some((file, room)) = self.room_for(fd)? else {
            return Ok(());
        };
        let mount = self.layer.nodes[&fd.rep()].mount;
        if self.layer.headroom.len() <= mount {
            self.layer.headroom.resize(mount + 1, (0, 0));
        }
        let (left, copied) = &mut self.layer.headroom[mount];
        if len <= *left && *copied == room.copied() {
            *left -= len;
            return Ok(());
        }
        *copied = room.copied();
        *left = room.headroom(&*file, len).map_err(fs_error)? / 2;
        Ok(())
    }

    /// The file of a descriptor a stream may write to, checked as
    /// wasmtime-wasi checks it.
    fn writable_file(&self, fd: &Resource<types::Descriptor>) -> FsResult<Arc<std::fs::File>> {
        match self.inner.table.get(fd)? {
            Descriptor::File(f) if !f.perms.write_not_permitted() => Ok(f.file.clone()),
            Descriptor::File(_) => Err(ErrorCode::NotPermitted.into()),
            Descriptor::Dir(_) => Err(ErrorCode::BadDescriptor.into()),
        }
    }

    /// Unlinks a file or symlink, or removes an empty directory.
    async fn remove(&mut self, fd: Resource<types::Descriptor>, path: String, dir: bool) -> FsResult<()> {
        let Some(target) = self.target(&fd, &path, false)? else {
            return match dir {
                true => self.inner.remove_directory_at(fd, path).await,
                false => self.inner.unlink_file_at(fd, path).await,
            };
        };
        let Some(name) = target.resolved.name.clone() else {
            return Err(if dir {
                ErrorCode::Invalid
            } else {
                ErrorCode::IsDirectory
            }
            .into());
        };
        let captured = match (&target.recorder, target.metadata()?) {
            (Some(rec), Some(meta)) if meta.is_dir() == dir => {
                capture(rec, |r| r.before_remove(&target.entry(self.layer, &name), &meta))?;
                true
            }
            _ => false,
        };
        let parent = self.open_parent(&target.resolved.parent)?;
        let rep = parent.rep();
        let name = target.resolved.call_name();
        let result = match dir {
            true => self.inner.remove_directory_at(parent, name).await,
            false => self.inner.unlink_file_at(parent, name).await,
        };
        self.close_parent(rep);
        self.finish(&target, captured, result.is_ok(), None);
        self.layer.parents.clear();
        result
    }
}
