//! A file's identity and version, as the kernel reports them.
//!
//! Hashing a large component (a Python or JavaScript plugin is tens of
//! megabytes) or its compiled code on every load costs tens of
//! milliseconds. A stamp costs one `fstat`: the file's device and inode
//! say which file it is, and its size, modification and change times say
//! which version. Every write, truncation or rename moves the change time,
//! which no system call sets back (only whoever owns the clock could
//! forge one, and they can read this user's files anyway). So an unchanged
//! stamp means an unchanged file, as git's index and ccache's direct mode
//! rely on, with git's caveat: the kernel's file clock ticks coarsely, so
//! a file changed within a tick of being stamped may change again without
//! moving its stamp. Only a [settled](FileStamp::settled) stamp is
//! remembered.

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

/// More than any kernel's timestamp tick (HZ=100 gives 10 ms).
const TICK: std::time::Duration = std::time::Duration::from_millis(100);

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
            settled: changed.elapsed().is_ok_and(|age| age > TICK),
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
        // Past a tick of the kernel's clock, a write of the same size to
        // the same inode moves the change time.
        std::thread::sleep(std::time::Duration::from_millis(150));
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
