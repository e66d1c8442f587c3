//! What a call on a path works on: the mount and the resolved entry
//! ([`Target`]), the captured call that journals its change, and the
//! parent directory the call is made in, through a descriptor that lives
//! exactly as long as the call.

use super::resolve::{Parent, Resolved, rel_of, resolve};
use super::{FsLayer, FsView, Node, fs_error};
use crate::grant::Access;
use crate::journal::{Call, Entry, FileId, Recorder, SharedRecorder, lock};
use cap_std::fs::Metadata;
use std::io;
use std::os::fd::AsFd;
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView};
use wasmtime_wasi::p2::FsResult;
use wasmtime_wasi::p2::bindings::filesystem::types::{self, ErrorCode};

/// A resolved path in a known mount, and the recorder when the mount is
/// journaled.
pub(super) struct Target {
    pub mount: usize,
    pub resolved: Resolved,
    pub recorder: Option<SharedRecorder>,
}

impl Target {
    pub fn entry<'a>(&'a self, layer: &'a FsLayer, name: &'a str) -> Entry<'a> {
        let parent: &Parent = &self.resolved.parent;
        Entry {
            mount: &layer.mounts[self.mount].name,
            dir: &parent.dir,
            dir_id: parent.id,
            dir_rel: &parent.rel,
            name,
        }
    }

    /// Captures the call about to change this entry, when its mount is
    /// journaled (`None`: nothing to capture): `before` runs the
    /// recorder's `before_*`; the [`Call`] ends the capture.
    pub fn capture(
        &self,
        before: impl FnOnce(&mut dyn Recorder) -> io::Result<()>,
    ) -> FsResult<Option<Call>> {
        let Some(rec) = &self.recorder else {
            return Ok(None);
        };
        let (call, ()) = Call::begin(rec, before).map_err(fs_error)?;
        Ok(Some(call))
    }

    /// What is at the named entry now, without following a symlink.
    pub fn metadata(&self) -> FsResult<Option<Metadata>> {
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

/// The identity of what is at `name` in `parent` now.
pub(super) fn id_at(parent: &Parent, name: &str) -> Option<FileId> {
    parent.dir.symlink_metadata(name).ok().map(|m| FileId::of(&m))
}

impl FsView<'_> {
    /// The mount of a directory descriptor, and the directory.
    pub(super) fn directory(
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
    pub(super) fn target(
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
    pub(super) fn pair(
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

    /// Where a descriptor itself is in its mount, for a change made
    /// through it (`set-times`), when that change needs capturing; refused
    /// if it has no name in the mount.
    pub(super) fn descriptor_entry(
        &self,
        fd: &Resource<types::Descriptor>,
    ) -> FsResult<Option<(SharedRecorder, usize, String, Metadata)>> {
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
        Ok(Some((rec.clone(), mount, rel_of(file.as_fd(), &m.root)?, meta)))
    }
}

/// Ends a captured call (if there was one) as `ok` says; `created`: the
/// entry the call made, looked up only if it succeeded.
pub(super) fn end(call: Option<Call>, ok: bool, created: impl FnOnce() -> Option<FileId>) -> FsResult<()> {
    call.map_or(Ok(()), |call| call.ended(ok, created))
        .map_err(fs_error)
}

impl FsView<'_> {
    /// Makes `call` on one name in `parent`, through a descriptor of the
    /// parent pushed for it and taken out again whatever it returns.
    pub(super) async fn in_parent<T>(
        &mut self,
        parent: &Parent,
        call: impl AsyncFnOnce(&mut WasiFilesystemCtxView<'_>, Resource<types::Descriptor>) -> FsResult<T>,
    ) -> FsResult<T> {
        let dir = self.inner.table.push(Descriptor::Dir(parent.wasi.clone()))?;
        let rep = dir.rep();
        let result = call(&mut self.inner, dir).await;
        self.close_parent(rep);
        result
    }

    /// [`Self::in_parent`] with two parents (a link or a rename): neither
    /// descriptor outlives the call, nor the first a failure to push the
    /// second.
    pub(super) async fn in_parents<T>(
        &mut self,
        (from, to): (&Parent, &Parent),
        call: impl AsyncFnOnce(
            &mut WasiFilesystemCtxView<'_>,
            Resource<types::Descriptor>,
            Resource<types::Descriptor>,
        ) -> FsResult<T>,
    ) -> FsResult<T> {
        let src = self.inner.table.push(Descriptor::Dir(from.wasi.clone()))?;
        let dst = match self.inner.table.push(Descriptor::Dir(to.wasi.clone())) {
            Ok(dst) => dst,
            Err(e) => {
                self.close_parent(src.rep());
                return Err(e.into());
            }
        };
        let reps = (src.rep(), dst.rep());
        let result = call(&mut self.inner, src, dst).await;
        self.close_parent(reps.0);
        self.close_parent(reps.1);
        result
    }

    fn close_parent(&mut self, rep: u32) {
        let _ = self
            .inner
            .table
            .delete(Resource::<types::Descriptor>::new_own(rep));
    }
}
