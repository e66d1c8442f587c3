//! What a step may take: descriptors and listings held at once
//! (`limits.descriptors`), and the free-space reserve its writes to
//! journaled mounts must leave (see [`crate::journal::SpaceReserve`]).

use super::{FsView, Node, fs_error};
use crate::grant::Access;
use crate::journal::SpaceReserve;
use std::sync::Arc;
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::FsResult;
use wasmtime_wasi::p2::bindings::filesystem::types::{self, ErrorCode};

impl FsView<'_> {
    /// Whether the step may hold one more descriptor or listing; counts
    /// the refusal if not.
    pub(super) fn may_hold_another(&mut self) -> FsResult<()> {
        if self.layer.held.len() < self.layer.max_held {
            return Ok(());
        }
        self.layer.refused += 1;
        Err(ErrorCode::InsufficientMemory.into())
    }

    /// A file descriptor of a journaled mount and the reserve its writes
    /// must leave; `None` where there is no reserve to keep.
    pub(super) fn room_for(
        &self,
        fd: &Resource<types::Descriptor>,
    ) -> FsResult<Option<(Arc<std::fs::File>, Arc<SpaceReserve>)>> {
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
    pub(super) fn check_room(&mut self, fd: &Resource<types::Descriptor>, len: u64) -> FsResult<()> {
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
    pub(super) fn writable_file(&self, fd: &Resource<types::Descriptor>) -> FsResult<Arc<std::fs::File>> {
        match self.inner.table.get(fd)? {
            Descriptor::File(f) if !f.perms.write_not_permitted() => Ok(f.file.clone()),
            Descriptor::File(_) => Err(ErrorCode::NotPermitted.into()),
            Descriptor::Dir(_) => Err(ErrorCode::BadDescriptor.into()),
        }
    }
}
