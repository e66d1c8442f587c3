//! Whole trees: copied exactly, for snapshots (`capture = "snapshot"`):
//! files (reflink clones where the filesystem can), directories and
//! symlinks, each with its mode, owner, times and extended attributes.
//! Special files are refused: no step makes them, and a snapshot that
//! silently lacks one would not restore what was there. And removed, even
//! where their directories deny their owner (overlay layers, backups).

use super::entry::{fd_xattrs, open_dir_readable, set_attributes};
use cap_fs_ext::DirExt;
use cap_std::fs::Dir;
use std::io::{self, ErrorKind};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Copies the entry `name` of `from` (a tree, a file or a symlink) to
/// `to_name` in `to`, which must not exist; syncs what it writes.
pub(super) fn copy(from: &Dir, name: &str, to: &Dir, to_name: &str) -> io::Result<()> {
    let meta = from.symlink_metadata(name)?;
    if meta.is_dir() {
        to.create_dir(to_name)?;
        let source = from.open_dir_nofollow(name)?;
        let target = to.open_dir_nofollow(to_name)?;
        for entry in source.entries()? {
            let entry = entry?.file_name();
            let entry = entry.to_str().ok_or_else(|| {
                io::Error::new(
                    ErrorKind::InvalidData,
                    format!("a name that is not UTF-8: {entry:?}"),
                )
            })?;
            copy(&source, entry, &target, entry)?;
        }
        copy_xattrs(&open_dir_readable(from, name)?, &open_dir_readable(to, to_name)?)?;
        target.open(".").and_then(|d| d.sync_all())?;
    } else if meta.is_symlink() {
        to.symlink_contents(from.read_link_contents(name)?, to_name)?;
    } else if meta.is_file() {
        let source = from.open(name)?.into_std();
        let copy = to.create(to_name)?.into_std();
        if rustix::fs::ioctl_ficlone(&copy, &source).is_err() {
            super::sparse::copy_contents(&source, &copy)?;
        }
        copy_xattrs(&source, &copy)?;
        copy.sync_all()?;
    } else {
        return Err(io::Error::new(
            ErrorKind::Unsupported,
            format!("{name} is a special file (FIFO, socket or device), which a snapshot does not copy"),
        ));
    }
    set_attributes(to, to_name, &meta)
}

fn copy_xattrs(from: &impl std::os::fd::AsFd, to: &impl std::os::fd::AsFd) -> io::Result<()> {
    for x in fd_xattrs(from)? {
        rustix::fs::fsetxattr(to, &x.name.0[..], &x.value.0, rustix::fs::XattrFlags::empty())?;
    }
    Ok(())
}

/// Removes the tree at `path` (gone already is fine), even where its
/// directories deny their owner listing or writing: an overlay's work
/// directory is mode 000, and a command's upper layer keeps the modes it
/// gave directories. Without root, nothing else could remove them.
pub fn remove_all(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            open_up(path)?;
            std::fs::remove_dir_all(path)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        done => done,
    }
}

/// Lets the owner list and write every directory of the tree at `path`.
fn open_up(path: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
        for entry in std::fs::read_dir(path)? {
            open_up(&entry?.path())?;
        }
    }
    Ok(())
}
