//! Copying files and directory trees, and the file writing shared with
//! archive extraction.

use crate::io::{At, BUFFER};
use crate::progress::Progress;
use std::fs::{self, File};
use std::io::{self, BufWriter, ErrorKind, Read};
use std::path::Path;
use std::time::SystemTime;
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
/// count. Parent directories are created only when the create fails for
/// want of them: two calls per file in the common case, not four.
pub fn write_file(data: &mut dyn Read, path: &Path, mtime: Option<SystemTime>) -> Result<u64, Error> {
    replace_symlink(path)?;
    let created = match File::create(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            ensure_parent(path)?;
            File::create(path)
        }
        other => other,
    };
    let file = created.context(format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(BUFFER, At::new(file));
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

/// Creates a symlink at `path` pointing to `target` (std's wasi symlink is
/// unstable; wasi-libc's `symlink` is the same call).
pub fn symlink(target: &Path, path: &Path) -> Result<(), Error> {
    use std::ffi::CString;
    let c = |p: &Path| {
        p.to_str()
            .and_then(|s| CString::new(s).ok())
            .ok_or_else(|| Error::new(format!("path {} is not valid UTF-8", p.display())))
    };
    let (target_c, path_c) = (c(target)?, c(path)?);
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
    let size = fs::metadata(from).map(|m| m.len()).unwrap_or(0);
    progress.set_totals(1, size);
    copy_file_counted(from, to, progress)
}

/// Copies the contents of directory `from` into `to`, keeping symlinks as
/// symlinks and file modification times.
pub fn copy_dir(from: &Path, to: &Path, progress: &mut Progress) -> Result<(), Error> {
    let (files, bytes) = measure(from)?;
    progress.set_totals(files, bytes);
    fs::create_dir_all(to).context(format!("creating {}", to.display()))?;
    copy_entries(from, to, progress)
}

fn measure(dir: &Path) -> Result<(u64, u64), Error> {
    let mut totals = (0, 0);
    for entry in fs::read_dir(dir).context(format!("listing {}", dir.display()))? {
        let entry = entry.context(format!("listing {}", dir.display()))?;
        let kind = entry.file_type().context(format!("{}", entry.path().display()))?;
        if kind.is_dir() {
            let (files, bytes) = measure(&entry.path())?;
            totals = (totals.0 + files, totals.1 + bytes);
        } else if kind.is_file() {
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            totals = (totals.0 + 1, totals.1 + len);
        }
    }
    Ok(totals)
}

fn copy_entries(from: &Path, to: &Path, progress: &mut Progress) -> Result<(), Error> {
    for entry in fs::read_dir(from).context(format!("listing {}", from.display()))? {
        let entry = entry.context(format!("listing {}", from.display()))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().context(format!("{}", source.display()))?;
        if kind.is_dir() {
            fs::create_dir_all(&target).context(format!("creating {}", target.display()))?;
            copy_entries(&source, &target, progress)?;
        } else if kind.is_symlink() {
            let link = fs::read_link(&source).context(format!("reading {}", source.display()))?;
            prepare_slot(&target)?;
            symlink(&link, &target)?;
        } else {
            copy_file_counted(&source, &target, progress)?;
        }
    }
    Ok(())
}

fn copy_file_counted(from: &Path, to: &Path, progress: &mut Progress) -> Result<(), Error> {
    let source = File::open(from).context(format!("opening {}", from.display()))?;
    let mtime = source.metadata().and_then(|m| m.modified()).ok();
    let bytes = write_file(&mut At::new(source), to, mtime)?;
    progress.file_done(bytes);
    Ok(())
}
