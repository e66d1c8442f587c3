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

mod descriptor;
mod limits;
mod open;
mod resolve;
mod stream;
mod target;

use crate::grant::Access;
use crate::journal::{SharedRecorder, SpaceReserve, lock};
use cap_std::fs::{FileTypeExt, Metadata};
use resolve::Parents;
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::FsPerms;
use wasmtime_wasi::filesystem::{Descriptor, Dir as WasiDir, OpenMode, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, DirectoryEntryStream, ErrorCode, HostDirectoryEntryStream,
};
use wasmtime_wasi::p2::{FsError, FsResult};

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
    room: Option<Arc<SpaceReserve>>,
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
        room: Option<Arc<SpaceReserve>>,
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

/// Whether opening this could block: FIFOs, sockets and devices.
fn is_special(meta: &Metadata) -> bool {
    let t = meta.file_type();
    t.is_fifo() || t.is_socket() || t.is_char_device() || t.is_block_device()
}

impl FsView<'_> {
    /// Remembers the mount of a new descriptor: paths are resolved
    /// relative to a directory's, and `set-times` on a file's changes an
    /// entry of that mount.
    fn remember(&mut self, fd: &Resource<types::Descriptor>, mount: usize, own: bool) {
        self.layer.nodes.insert(fd.rep(), Node { mount, own });
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
