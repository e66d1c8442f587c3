//! A flow mount pinned as the run opened it: every later step, rollback,
//! `undo` and `recover` works through the directory the run recorded, and
//! refuses one that replaced it.

use super::record::FileId;
use cap_std::fs::Dir;
use std::io;
use std::path::{Path, PathBuf};

/// A flow mount, opened as a capability: every path below is resolved
/// beneath its root, never following a symlink out of it.
pub struct MountFs {
    pub name: String,
    pub host: PathBuf,
    pub dir: Dir,
    /// The directory's identity when it was opened.
    pub id: FileId,
}

impl MountFs {
    /// Opens the mount's directory at `host` (canonical), following no
    /// symlink in any component.
    pub fn open(name: &str, host: &Path) -> io::Result<MountFs> {
        use rustix::fs::{Mode, OFlags, ResolveFlags, openat2};
        let fd = openat2(
            rustix::fs::CWD,
            host,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", host.display())))?;
        let dir = Dir::from_std_file(std::fs::File::from(fd));
        let id = FileId::of(&dir.dir_metadata()?);
        Ok(MountFs {
            name: name.to_owned(),
            host: host.to_path_buf(),
            dir,
            id,
        })
    }

    /// Like [`MountFs::open`], refusing a directory that is not the one a
    /// run recorded (`pinned`): the mount was replaced or moved since, and
    /// undoing the run's changes there would change something else.
    pub fn open_pinned(name: &str, host: &Path, pinned: Option<FileId>) -> io::Result<MountFs> {
        let fs = MountFs::open(name, host)?;
        match pinned {
            Some(id) if id != fs.id => Err(io::Error::other(format!(
                "{} is not the directory the run changed (inode {} on device {}, the run's was inode {} on device {}): it was replaced or moved, so it is left as it is",
                host.display(),
                fs.id.ino,
                fs.id.dev,
                id.ino,
                id.dev
            ))),
            _ => Ok(fs),
        }
    }
}
