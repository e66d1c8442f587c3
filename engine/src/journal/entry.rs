//! Small operations on one entry beneath a mount's root, shared by capture,
//! rollback and its checks: its state, its time, its attributes. None of
//! them follows a symlink out of the mount or opens a special file.

use super::record::{EntryState, FileId, OsBytes, Time, Xattr};
use cap_fs_ext::DirExt;
use cap_std::fs::{Dir, Metadata, MetadataExt};
use std::io::{self, ErrorKind};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `"."` for the mount's root, whose path is empty.
pub(super) fn at(path: &str) -> &str {
    if path.is_empty() { "." } else { path }
}

/// Sets the modification time of the entry at `path` (a symlink itself),
/// any time the filesystem can hold: before 1970 too (`SystemTime`-based
/// helpers panic on those). The entry's directory is opened beneath `dir`,
/// so no symlink leads out of it.
pub(super) fn set_mtime(dir: &Dir, path: &str, time: Time) -> io::Result<()> {
    set_mtime_atime(dir, path, time, None)
}

/// Sets the modification time of the entry at `path`, and its access time
/// too if `atime` says one, as [`set_mtime`] does.
pub(super) fn set_mtime_atime(dir: &Dir, path: &str, mtime: Time, atime: Option<Time>) -> io::Result<()> {
    use rustix::fs::{AtFlags, Timespec, Timestamps, UTIME_OMIT, utimensat};
    let spec = |t: Time| Timespec {
        tv_sec: t.0,
        tv_nsec: t.1.into(),
    };
    let times = Timestamps {
        last_access: atime.map_or(
            Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_OMIT,
            },
            spec,
        ),
        last_modification: spec(mtime),
    };
    let (parent, name) = match path.rsplit_once('/') {
        Some((parent, name)) => (Some(dir.open_dir(parent)?), name),
        None => (None, at(path)),
    };
    utimensat(
        parent.as_ref().unwrap_or(dir),
        name,
        &times,
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

pub(super) fn mtime(meta: &Metadata) -> Time {
    Time(meta.mtime(), meta.mtime_nsec() as u32)
}

/// The directory at `path` beneath `dir`, every component a directory:
/// `None` where one is missing or is not a directory (a file, or a
/// symlink, even one into the mount). A journal's paths name entries of
/// the mount's tree of directories, as the run met them; once a step
/// renamed a directory away and put a symlink in its place, the paths
/// beneath it name nothing, whatever the symlink points to (following it
/// would compare another entry, or fail at one leading out).
pub(crate) fn dir_beneath(dir: &Dir, path: impl AsRef<Path>) -> io::Result<Option<Dir>> {
    use rustix::fs::{Mode, OFlags, ResolveFlags, openat2};
    use rustix::io::Errno;
    // A path descriptor: looking entries up in it needs no read permission
    // on the directory (nor does listing it, which opens it again).
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let path = path.as_ref();
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    // A rename elsewhere on the filesystem can race the lookup (EAGAIN):
    // tried again, a bounded number of times.
    let mut tries = 0;
    loop {
        match openat2(dir, path, flags, Mode::empty(), resolve) {
            Ok(fd) => return Ok(Some(Dir::from_std_file(std::fs::File::from(fd)))),
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(None),
            Err(Errno::AGAIN) if tries < 100 => tries += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The directory holding the entry at `path` beneath `dir` (`None`: `dir`
/// itself), opened as [`dir_beneath`] opens it, and the entry's name
/// there; `Err(NotFound)` where one of its directories is not one.
fn parent_beneath<'p>(dir: &Dir, path: &'p Path) -> io::Result<(Option<Dir>, &'p Path)> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    match (parent, path.file_name()) {
        (Some(parent), Some(name)) => match dir_beneath(dir, parent)? {
            Some(parent) => Ok((Some(parent), Path::new(name))),
            None => Err(io::Error::new(
                ErrorKind::NotFound,
                format!("{} is not a directory", parent.display()),
            )),
        },
        _ => Ok((None, path)),
    }
}

/// The metadata of the entry at `path` itself (not what a symlink there
/// points to), its directories looked up as [`dir_beneath`] does.
pub(super) fn metadata_beneath(dir: &Dir, path: &str) -> io::Result<Metadata> {
    let (parent, name) = parent_beneath(dir, Path::new(at(path)))?;
    parent.as_ref().unwrap_or(dir).symlink_metadata(name)
}

/// The state of `path` as `stepback undo` compares it; `None` if absent.
pub fn entry_state(dir: &Dir, path: impl AsRef<Path>) -> io::Result<Option<EntryState>> {
    Ok(entry_with_id(dir, path)?.map(|(state, _)| state))
}

/// The state of `path`, and which inode is there.
pub(super) fn entry_with_id(dir: &Dir, path: impl AsRef<Path>) -> io::Result<Option<(EntryState, FileId)>> {
    let path = path.as_ref();
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let (parent, path) = match parent_beneath(dir, path) {
        Ok(found) => found,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let dir = parent.as_ref().unwrap_or(dir);
    let meta = match dir.symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let state = if meta.is_dir() {
        EntryState::Dir
    } else if meta.is_symlink() {
        EntryState::Symlink {
            target: dir.read_link_contents(path)?.as_os_str().as_bytes().into(),
        }
    } else {
        EntryState::File {
            size: meta.len(),
            mtime: mtime(&meta),
        }
    };
    Ok(Some((state, FileId::of(&meta))))
}

/// The extended attributes of an open file.
pub(crate) fn fd_xattrs(file: &impl std::os::fd::AsFd) -> io::Result<Vec<Xattr>> {
    let mut list = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::flistxattr(file, &mut list[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => list.resize(list.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in list[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 256];
        let len = loop {
            match rustix::fs::fgetxattr(file, name, &mut value[..]) {
                Ok(len) => break len,
                Err(rustix::io::Errno::RANGE) => value.resize(value.len() * 4, 0),
                Err(e) => return Err(e.into()),
            }
        };
        value.truncate(len);
        out.push(Xattr {
            name: OsBytes::from(name),
            value: OsBytes(value),
        });
    }
    Ok(out)
}

/// Makes the extended attributes of open `file` exactly `want`: those it
/// has and `want` lacks removed (but names `kept` keeps), the others set
/// where they differ.
pub(crate) fn replace_xattrs(
    file: &impl std::os::fd::AsFd,
    want: &[Xattr],
    kept: impl Fn(&[u8]) -> bool,
) -> io::Result<()> {
    let have = fd_xattrs(file)?;
    for x in have
        .iter()
        .filter(|x| !kept(&x.name.0) && !want.iter().any(|w| w.name == x.name))
    {
        rustix::fs::fremovexattr(file, &x.name.0[..])?;
    }
    for x in want.iter().filter(|w| !have.contains(w)) {
        rustix::fs::fsetxattr(file, &x.name.0[..], &x.value.0, rustix::fs::XattrFlags::empty())?;
    }
    Ok(())
}

/// Opens the directory at `path` beneath `dir`, not following a final
/// symlink, readable: extended attributes cannot be read or written
/// through the path-only descriptor cap-std opens directories with.
pub(crate) fn open_dir_readable(dir: &Dir, path: &str) -> io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags, openat};
    let located = dir.open_dir_nofollow(path)?;
    Ok(openat(
        &located,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Gives `name` in `dir` (a symlink itself, not what it points to) the
/// owner, mode and times of `meta`.
/// Sets file capabilities among `xattrs` on `file` again, after its owner
/// was set: a change of owner clears them (the kernel's guard against a
/// capability surviving a change of hands), while the file is to keep
/// them.
pub(crate) fn keep_capabilities(file: &impl std::os::fd::AsFd, xattrs: &[Xattr]) -> io::Result<()> {
    match xattrs.iter().find(|x| x.name.0 == b"security.capability") {
        Some(x) => Ok(rustix::fs::fsetxattr(
            file,
            "security.capability",
            &x.value.0,
            rustix::fs::XattrFlags::empty(),
        )?),
        None => Ok(()),
    }
}

pub(crate) fn set_attributes(dir: &Dir, name: &str, meta: &Metadata) -> io::Result<()> {
    set_owner_and_mode(dir, name, meta)?;
    set_times(dir, name, meta)
}

/// Gives `name` in `dir` (a symlink itself) the owner and mode of `meta`:
/// the owner first, since a change of owner clears set-id bits; a symlink
/// has no mode of its own.
pub(crate) fn set_owner_and_mode(dir: &Dir, name: &str, meta: &Metadata) -> io::Result<()> {
    use cap_std::fs::PermissionsExt;
    use rustix::fs::{AtFlags, Gid, Mode, Uid};
    rustix::fs::chownat(
        dir,
        name,
        Some(Uid::from_raw(meta.uid())),
        Some(Gid::from_raw(meta.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if !meta.is_symlink() {
        rustix::fs::chmodat(
            dir,
            name,
            Mode::from_raw_mode(meta.permissions().mode() & 0o7777),
            AtFlags::empty(),
        )?;
    }
    Ok(())
}

/// Gives `name` in `dir` (a symlink itself) the access and modification
/// times of `meta`.
pub(crate) fn set_times(dir: &Dir, name: &str, meta: &Metadata) -> io::Result<()> {
    use rustix::fs::{AtFlags, Timespec, Timestamps, utimensat};
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        },
    };
    utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}
