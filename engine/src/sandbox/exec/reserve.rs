//! The run's free-space reserve while a command runs.
//!
//! A wasm step's writes pass through the filesystem layer, which checks
//! each against the reserve ([`crate::journal::SpaceReserve`]); a command writes
//! its upper layers (or, uncaptured, its mounts) directly, at the kernel's
//! pace. So the reserve is *held*: before the command starts, an unnamed
//! file of the reserve's size is allocated on each filesystem it writes,
//! and freed once it has ended, before its changes are applied. Whatever
//! the command writes, it cannot take those blocks (it cannot see the
//! file, and an engine that dies frees it with its descriptors); a command
//! that filled a filesystem up to them is stopped and its step fails
//! ([`Held::filled`]), with room left for the rollback. (On a tmpfs with
//! room for the reserve and the command's whole memory limit, which its
//! tmpfs pages count against, nothing needs allocating.)

use rustix::fs::{Mode, OFlags};
use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// Below this much free space (beside the hold), a filesystem counts as
/// filled: a write of the command's has been, or is about to be, refused.
const FILLED: u64 = 1 << 20;

/// A reserve held on one filesystem; freed when dropped.
pub struct Held {
    file: OwnedFd,
    free_at_start: u64,
}

impl Held {
    /// Allocates `bytes` on the filesystem of directory `dir`, in a file
    /// without a name. On a tmpfs with room for the reserve and for all
    /// the command could write to it (`bound`: the memory its cgroup holds
    /// it to, tmpfs pages included), nothing is allocated (it would cost
    /// as much memory, and clearing it about 40 ms for 64 MiB): the
    /// reserve is only watched.
    pub fn take(dir: impl AsFd, bytes: u64, bound: Option<u64>) -> io::Result<Held> {
        let on_tmpfs = rustix::fs::fstatfs(&dir).is_ok_and(|st| st.f_type == libc::TMPFS_MAGIC);
        let free = crate::journal::free_on(&dir)?;
        if bound.is_some_and(|b| on_tmpfs && free >= bytes.saturating_add(b)) {
            let file = rustix::io::fcntl_dupfd_cloexec(&dir, 0)?;
            return Ok(Held {
                file,
                free_at_start: free,
            });
        }
        let file = rustix::fs::openat(
            dir,
            c".",
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        if bytes > 0 {
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, bytes)?;
        }
        let free_at_start = crate::journal::free_on(&file)?;
        Ok(Held { file, free_at_start })
    }

    /// Whether the command filled the filesystem up to the hold: less than
    /// [`FILLED`] is free, and less than when it started.
    pub fn filled(&self) -> bool {
        crate::journal::free_on(&self.file).is_ok_and(|free| free < FILLED && free < self.free_at_start)
    }
}
