//! A file's identity and version, as the kernel reports them.
//!
//! Hashing a large component (a Python or JavaScript plugin is tens of
//! megabytes) on every load costs tens of milliseconds. A stamp costs one
//! `fstat`: the file's device and inode say which file it is, and its
//! size, modification and change times say which version. A `write`,
//! truncation or rename moves the change time, which no system call sets
//! back, so an unchanged stamp means an unchanged file, as git's index and
//! ccache's direct mode rely on, with their caveats:
//!
//! - a filesystem's clock ticks coarsely (a jiffy on most; a second on
//!   ext4 with small inodes, two on FAT), so a file changed within a tick
//!   of being stamped may change again without moving its stamp: only a
//!   stamp taken more than [`TICK`] after the file's last change is
//!   [settled](FileStamp::settled), and only a settled one is trusted;
//! - on network and FUSE filesystems the times come from a server or a
//!   daemon, so their stamps are never settled;
//! - stores through a shared memory mapping of the file move no time at
//!   all until the kernel writes the pages back: whoever can write the
//!   file can so make the engine run the version it last hashed (not
//!   anyone else's code: the cache holds only what it compiled itself).

use std::fs::File;
use std::os::fd::AsFd;

/// Which file, and which version of it.
#[derive(Debug, Clone, Copy)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, u64),
    ctime: (i64, u64),
    /// Whether the file had last changed more than a tick before it was
    /// stamped: decided then, since what counts is whether a change could
    /// have followed unseen while the file was being read.
    settled: bool,
}

/// Two stamps are equal when they name the same file at the same version.
impl PartialEq for FileStamp {
    fn eq(&self, other: &FileStamp) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for FileStamp {}

/// More than any local filesystem's timestamp tick (FAT's is two seconds).
pub const TICK: std::time::Duration = std::time::Duration::from_millis(2500);

/// `statfs` types whose times come from another machine or process: NFS,
/// SMB (old and new), CIFS, FUSE, Ceph, 9p, AFS, Coda, Lustre.
const REMOTE: &[i64] = &[
    0x6969,
    0x517b,
    0xfe53_4d42,
    0xff53_4d42,
    0x6573_5546,
    0x00c3_6400,
    0x0102_1997,
    0x5346_414f,
    0x7375_7245,
    0x0bd0_0bd0,
];

impl FileStamp {
    /// The stamp of an open file (of the file itself, not of a path that
    /// could name another one by the time it is opened again).
    pub fn of(file: &File) -> std::io::Result<FileStamp> {
        let stat = rustix::fs::fstat(file.as_fd())?;
        let ctime = (stat.st_ctime as i64, stat.st_ctime_nsec as u64);
        let changed = std::time::UNIX_EPOCH + std::time::Duration::new(ctime.0.max(0) as u64, ctime.1 as u32);
        Ok(FileStamp {
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
            size: stat.st_size as u64,
            mtime: (stat.st_mtime as i64, stat.st_mtime_nsec as u64),
            ctime,
            settled: changed.elapsed().is_ok_and(|age| age > TICK) && !remote(file),
        })
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the file had last changed long enough before it was
    /// stamped (more than any kernel's timestamp tick) that any change
    /// since must have moved its stamp.
    pub fn settled(&self) -> bool {
        self.settled
    }

    /// The stamp as bytes, for keyed digests and names.
    pub fn bytes(&self) -> Vec<u8> {
        [
            self.dev,
            self.ino,
            self.size,
            self.mtime.0 as u64,
            self.mtime.1,
            self.ctime.0 as u64,
            self.ctime.1,
        ]
        .iter()
        .flat_map(|n| n.to_le_bytes())
        .collect()
    }
}

/// Whether `file` is on a network or FUSE filesystem (unknown: yes).
// `f_type`'s type differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn remote(file: &File) -> bool {
    rustix::fs::fstatfs(file.as_fd()).map_or(true, |fs| REMOTE.contains(&(fs.f_type as i64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_write_in_place_changes_the_stamp_and_reading_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"one").unwrap();
        let before = FileStamp::of(&File::open(&path).unwrap()).unwrap();
        let _ = std::fs::read(&path).unwrap();
        assert_eq!(before, FileStamp::of(&File::open(&path).unwrap()).unwrap());
        assert!(!before.settled(), "just written");
        // Past a tick of the filesystem's clock, a write of the same size
        // to the same inode moves the change time.
        std::thread::sleep(TICK + std::time::Duration::from_millis(100));
        let settled = FileStamp::of(&File::open(&path).unwrap()).unwrap();
        assert!(settled.settled() && settled == before);
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all(b"two").unwrap();
        drop(file);
        let after = FileStamp::of(&File::open(&path).unwrap()).unwrap();
        assert_ne!(before, after);
        assert_eq!(before.ino, after.ino);
    }
}
