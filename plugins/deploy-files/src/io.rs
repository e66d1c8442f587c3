//! Positioned reads and writes with large buffers.
//!
//! Through `std::fs::File`'s `Read`/`Write`, wasi-libc moves file data in
//! stream chunks of a few KiB, one host call each; `pread`/`pwrite` map to
//! the descriptor's own `read`/`write`, which take up to 64 KiB and any
//! size respectively, so copying a large file takes a fraction of the calls.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

/// A file read or written at an advancing offset.
pub struct At {
    file: File,
    offset: u64,
}

impl At {
    pub fn new(file: File) -> Self {
        At { file, offset: 0 }
    }

    pub fn into_file(self) -> File {
        self.file
    }
}

impl At {
    /// Moves the offset past a `pread`/`pwrite` that returned `n`.
    fn advance(&mut self, n: isize) -> io::Result<usize> {
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.file.as_raw_fd();
        // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
        let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), self.offset as libc::off_t) };
        self.advance(n)
    }
}

impl Write for At {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.file.as_raw_fd();
        // SAFETY: `buf` is valid for `buf.len()` bytes of reads.
        let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), self.offset as libc::off_t) };
        self.advance(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Write buffer for copies: few host calls, bounded guest memory.
pub const BUFFER: usize = 1 << 20;

/// Read buffer: the most the host returns per read.
pub const READ_BUFFER: usize = 64 << 10;
