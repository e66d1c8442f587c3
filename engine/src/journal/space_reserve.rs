//! The free-space reserve: room a rollback is sure to find.
//!
//! A rollback writes little: an `undone` marker per change (about 60
//! bytes) and its end record, and it moves originals back by rename, which
//! takes no space. What can need space is a file restored from a copy
//! (changed in place, then shrunk or deleted by the step): its original
//! contents are written back. So the reserve is a fixed part for the
//! journal (default 64 MiB, `--reserve`) plus the size of every copy the
//! run has taken. A step's writes, and the run's own backups, that would
//! leave less than that free on their filesystem fail with "no space"
//! before they start: the step fails cleanly, and its rollback has room.
//! (JFrog Connect asks for the folder's size plus the update's plus 10 MB,
//! because it copies whole folders; a journal of moves needs only this.)

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};

/// The reserve a run keeps on every filesystem it writes to.
#[derive(Debug)]
pub struct SpaceReserve {
    reserve: u64,
    copied: AtomicU64,
}

impl SpaceReserve {
    pub fn new(reserve: u64) -> SpaceReserve {
        SpaceReserve {
            reserve,
            copied: AtomicU64::new(0),
        }
    }

    /// Fails with "no space" unless `len` more bytes can be written to the
    /// filesystem of `file` and leave the reserve free.
    pub fn check(&self, file: impl AsFd, len: u64) -> io::Result<()> {
        self.headroom(file, len).map(drop)
    }

    /// Like [`SpaceReserve::check`]; on success, how many bytes more the
    /// filesystem of `file` could take after these `len` and still leave
    /// the reserve free.
    pub fn headroom(&self, file: impl AsFd, len: u64) -> io::Result<u64> {
        let free = free_on(file)?;
        match free.checked_sub(self.kept().saturating_add(len)) {
            Some(left) => Ok(left),
            // ENOSPC itself, so that the guest is told "insufficient
            // space", as the filesystem would.
            None => Err(io::Error::from_raw_os_error(
                rustix::io::Errno::NOSPC.raw_os_error(),
            )),
        }
    }

    /// A copy of `len` bytes was taken: a rollback may write it back.
    pub fn add_copy(&self, len: u64) {
        self.copied.fetch_add(len, Ordering::Relaxed);
    }

    /// The bytes every filesystem the run writes keeps free: the fixed
    /// part and the copies taken so far.
    pub fn kept(&self) -> u64 {
        self.reserve + self.copied.load(Ordering::Relaxed)
    }

    /// The bytes of copies taken so far, which the reserve includes.
    pub fn copied(&self) -> u64 {
        self.copied.load(Ordering::Relaxed)
    }
}

/// The bytes a process without privileges could still write to the
/// filesystem of `file`.
pub fn free_on(file: impl AsFd) -> io::Result<u64> {
    let st = rustix::fs::fstatvfs(file)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}
