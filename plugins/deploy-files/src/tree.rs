//! Copying files and directory trees, and the file writing shared with
//! archive extraction.

use crate::io::{At, BUFFER};
use crate::progress::Progress;
use std::fs::{self, File};
use std::io::{self, BufWriter, ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use stepback_sdk::{Error, ResultExt};

/// Makes room for a new entry at `path`: creates its parent directories and
/// removes an existing symlink there (never a directory), so that it is
/// replaced, not written through.
pub fn prepare_slot(path: &Path) -> Result<(), Error> {
    ensure_parent(path)?;
    replace_symlink(path)
}

fn ensure_parent(path: &Path) -> Result<(), Error> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            fs::create_dir_all(parent).context(format!("creating {}", parent.display()))
        }
        _ => Ok(()),
    }
}

fn replace_symlink(path: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::remove_file(path).context(format!("replacing symlink {}", path.display()))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::new(format!("{}: {e}", path.display()))),
    }
}

/// Writes `data` to a new or replaced file at `path`; returns the byte
/// count. `size` (expected, not trusted) sizes the write buffer, so a small
/// file does not pay for a large one. The file is opened without following
/// a symlink at `path`: a symlink there is replaced, not written through.
/// Parent directories are created only when the open fails for want of
/// them: one call per file in the common case.
pub fn write_file(
    data: &mut dyn Read,
    path: &Path,
    mtime: Option<SystemTime>,
    size: u64,
) -> Result<u64, Error> {
    let file = create_nofollow(path).context(format!("creating {}", path.display()))?;
    let capacity = usize::try_from(size.saturating_add(1))
        .unwrap_or(BUFFER)
        .clamp(8 << 10, BUFFER);
    let mut out = BufWriter::with_capacity(capacity, At::new(file));
    let bytes = io::copy(data, &mut out).context(format!("writing {}", path.display()))?;
    let file = out
        .into_inner()
        .map_err(|e| Error::new(format!("writing {}: {}", path.display(), e.error())))?
        .into_file();
    if let Some(mtime) = mtime {
        file.set_modified(mtime)
            .context(format!("setting the time of {}", path.display()))?;
    }
    Ok(bytes)
}

/// Creates or truncates the file at `path` for writing, without following
/// a final symlink (wasi-libc maps `O_NOFOLLOW` to an `open-at` without
/// `symlink-follow`).
fn create_nofollow(path: &Path) -> io::Result<File> {
    use std::os::fd::FromRawFd;
    let name = c_path(path).map_err(|e| io::Error::new(ErrorKind::InvalidInput, e.to_string()))?;
    let open = || {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW;
        // SAFETY: `name` is a NUL-terminated string that outlives the call.
        match unsafe { libc::open(name.as_ptr(), flags, 0o666) } {
            -1 => Err(io::Error::last_os_error()),
            // SAFETY: a descriptor `open` just returned, owned by nobody else.
            fd => Ok(unsafe { File::from_raw_fd(fd) }),
        }
    };
    match open() {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            fs::remove_file(path)?;
            open()
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            ensure_parent(path).map_err(|e| io::Error::other(e.to_string()))?;
            open()
        }
        other => other,
    }
}

fn c_path(p: &Path) -> Result<std::ffi::CString, Error> {
    p.to_str()
        .and_then(|s| std::ffi::CString::new(s).ok())
        .ok_or_else(|| Error::new(format!("path {} is not valid UTF-8", p.display())))
}

/// Creates a symlink at `path` pointing to `target` (std's wasi symlink is
/// unstable; wasi-libc's `symlink` is the same call).
pub fn symlink(target: &Path, path: &Path) -> Result<(), Error> {
    let (target_c, path_c) = (c_path(target)?, c_path(path)?);
    // SAFETY: both arguments are NUL-terminated strings that outlive the call.
    if unsafe { libc::symlink(target_c.as_ptr(), path_c.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(Error::new(format!(
            "creating symlink {}: {}",
            path.display(),
            io::Error::last_os_error()
        )))
    }
}

pub fn copy_file(from: &Path, to: &Path, progress: &mut Progress) -> Result<(), Error> {
    let meta = fs::metadata(from).context(format!("reading {}", from.display()))?;
    progress.set_totals(1, meta.len());
    copy_file_counted(from, to, meta.len(), meta.modified().ok(), progress)
}

/// An entry of a source tree, as the one walk over it found it.
enum Found {
    Dir,
    Symlink,
    /// Size and modification time.
    File(u64, Option<SystemTime>),
}

/// Copies the contents of directory `from` into `to`, keeping symlinks as
/// symlinks and file modification times. The source is walked once (one
/// `stat` per entry), its entries kept (about 100 bytes each) for the
/// progress totals and the copy.
pub fn copy_dir(from: &Path, to: &Path, progress: &mut Progress) -> Result<(), Error> {
    let mut entries = Vec::new();
    walk(from, Path::new(""), &mut entries)?;
    let (files, bytes) = entries
        .iter()
        .fold((0, 0), |(files, bytes), (_, found)| match found {
            Found::File(size, _) => (files + 1, bytes + size),
            _ => (files, bytes),
        });
    progress.set_totals(files, bytes);
    fs::create_dir_all(to).context(format!("creating {}", to.display()))?;
    for (rel, found) in &entries {
        let (source, target) = (from.join(rel), to.join(rel));
        match found {
            Found::Dir => fs::create_dir_all(&target).context(format!("creating {}", target.display()))?,
            Found::Symlink => {
                let link = fs::read_link(&source).context(format!("reading {}", source.display()))?;
                prepare_slot(&target)?;
                symlink(&link, &target)?;
            }
            Found::File(size, mtime) => copy_file_counted(&source, &target, *size, *mtime, progress)?,
        }
    }
    Ok(())
}

/// Lists everything beneath `dir`, parents before their children. Kinds
/// come with the listing; files are looked up relative to an open handle on
/// their directory, as a path from the mount's root would be resolved again,
/// component by component, for every file.
fn walk(dir: &Path, rel: &Path, out: &mut Vec<(PathBuf, Found)>) -> Result<(), Error> {
    let handle = File::open(dir).context(format!("opening {}", dir.display()))?;
    for entry in fs::read_dir(dir).context(format!("listing {}", dir.display()))? {
        let entry = entry.context(format!("listing {}", dir.display()))?;
        let kind = entry.file_type().context(format!("{}", entry.path().display()))?;
        let rel = rel.join(entry.file_name());
        if kind.is_dir() {
            out.push((rel.clone(), Found::Dir));
            walk(&entry.path(), &rel, out)?;
        } else if kind.is_symlink() {
            out.push((rel, Found::Symlink));
        } else {
            let (size, mtime) =
                stat_at(&handle, &entry.file_name()).context(format!("{}", entry.path().display()))?;
            out.push((rel, Found::File(size, Some(mtime))));
        }
    }
    Ok(())
}

/// Size and modification time of entry `name` of directory `dir`, not
/// following a symlink.
fn stat_at(dir: &File, name: &std::ffi::OsStr) -> io::Result<(u64, SystemTime)> {
    use std::os::fd::AsRawFd;
    let name = c_path(Path::new(name)).map_err(|e| io::Error::new(ErrorKind::InvalidInput, e.to_string()))?;
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated; `stat` is written in full on success.
    let stat = match unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            stat.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } {
        0 => unsafe { stat.assume_init() },
        _ => return Err(io::Error::last_os_error()),
    };
    let (secs, nanos) = (
        stat.st_mtim.tv_sec,
        Duration::from_nanos(stat.st_mtim.tv_nsec as u64),
    );
    let mtime = match u64::try_from(secs) {
        Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + nanos,
        Err(_) => SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos,
    };
    Ok((stat.st_size as u64, mtime))
}

/// Copies the file `from` (of `size` bytes, as listed) to `to`, giving it
/// `mtime`.
fn copy_file_counted(
    from: &Path,
    to: &Path,
    size: u64,
    mtime: Option<SystemTime>,
    progress: &mut Progress,
) -> Result<(), Error> {
    let source = File::open(from).context(format!("opening {}", from.display()))?;
    let bytes = write_file(&mut At::new(source), to, mtime, size)?;
    progress.file_done(bytes);
    Ok(())
}
