//! Where a path a guest gives lands on disk.
//!
//! A path is resolved by the kernel, through directory handles: its parent
//! is opened beneath the descriptor the path is relative to
//! (`RESOLVE_BENEATH`, as wasmtime-wasi's own resolution through cap-std
//! confines it), which handles `.`, `..`, repeated and trailing slashes and
//! symlinks in the parents exactly as the call itself would. What remains is
//! one plain name in one open directory: the layer journals that entry and
//! then makes the call on that very directory and name, so the entry that
//! was journaled is the entry that changes. A directory's place in its mount
//! is read back from the kernel (`/proc/self/fd`), which follows every
//! rename, instead of being remembered.

use crate::journal::FileId;
use cap_std::fs::MetadataExt;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime_wasi::filesystem::Dir as WasiDir;
use wasmtime_wasi::p2::bindings::filesystem::types::ErrorCode;

/// How many symlinks one resolution follows, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// An open directory an entry lives in.
pub(crate) struct Parent {
    /// The directory as a wasmtime-wasi descriptor, with the permissions of
    /// the descriptor the path was given relative to: the call is made on it.
    pub wasi: WasiDir,
    /// The directory for the journal's own operations.
    pub dir: cap_std::fs::Dir,
    pub id: FileId,
    /// Its path in the mount: `""` for the mount's root.
    pub rel: String,
}

/// What a path names.
pub(crate) struct Resolved {
    pub parent: Arc<Parent>,
    /// One plain component; `None` when the path names `parent` itself
    /// (it is empty, or ends in `.` or `..`).
    pub name: Option<String>,
    /// The path ended with `/`: the entry must be a directory. Kept on the
    /// name the call is made with.
    pub slash: bool,
}

impl Resolved {
    /// The name to make the call with on `parent`.
    pub fn call_name(&self) -> String {
        match (&self.name, self.slash) {
            (Some(n), true) => format!("{n}/"),
            (Some(n), false) => n.clone(),
            (None, _) => ".".to_owned(),
        }
    }

    /// The entry's path in the mount.
    pub fn rel(&self) -> String {
        match &self.name {
            Some(n) if self.parent.rel.is_empty() => n.clone(),
            Some(n) => format!("{}/{n}", self.parent.rel),
            None => self.parent.rel.clone(),
        }
    }
}

/// Splits a path into the directory part and the last component:
/// `(parent, Some(name), slash)`, or `(dir, None, slash)` when the path
/// names a directory itself.
fn split(path: &str) -> Result<(&str, Option<&str>, bool), ErrorCode> {
    if path.starts_with('/') {
        return Err(ErrorCode::NotPermitted);
    }
    let trimmed = path.trim_end_matches('/');
    let slash = trimmed.len() < path.len();
    let (parent, last) = match trimmed.rsplit_once('/') {
        Some((parent, last)) => (parent, last),
        None => ("", trimmed),
    };
    Ok(match last {
        "" | "." | ".." => (trimmed, None, slash),
        name => (parent, Some(name), slash),
    })
}

/// Directories opened for recent resolutions, by descriptor and path:
/// a step that writes many files into a few directories opens each once.
/// Emptied whenever a rename or a removal may have changed what a path
/// resolves to.
#[derive(Default)]
pub(crate) struct Parents {
    open: HashMap<(u32, String), Arc<Parent>>,
}

/// More than this many open directories are dropped rather than kept.
const MAX_PARENTS: usize = 64;

impl Parents {
    pub fn clear(&mut self) {
        self.open.clear();
    }

    /// Forgets what was opened relative to descriptor `rep`, which is
    /// dropped (its number may name another descriptor next).
    pub fn forget(&mut self, rep: u32) {
        self.open.retain(|(r, _), _| *r != rep);
    }
}

/// Resolves `path` relative to the directory `start` (descriptor `rep`)
/// in a mount rooted at `root` (canonical host path). With `follow`, a
/// symlink in the last component is followed too, staying beneath `start`.
pub(crate) fn resolve(
    start: &WasiDir,
    rep: u32,
    root: &Path,
    path: &str,
    follow: bool,
    parents: &mut Parents,
) -> Result<Resolved, ErrorCode> {
    let mut path = path.to_owned();
    for _ in 0..=MAX_SYMLINKS {
        let (dir, name, slash) = split(&path)?;
        let key = (rep, dir.to_owned());
        let parent = match parents.open.get(&key).filter(|p| still_there(p, root)) {
            Some(p) => p.clone(),
            None => {
                let p = Arc::new(open_parent(start, root, dir)?);
                if parents.open.len() >= MAX_PARENTS {
                    parents.clear();
                }
                parents.open.insert(key, p.clone());
                p
            }
        };
        let name = name.map(str::to_owned);
        if follow && let Some(n) = &name {
            let meta = parent.dir.symlink_metadata(n);
            if meta.is_ok_and(|m| m.is_symlink()) {
                let target = parent.dir.read_link_contents(n).map_err(ErrorCode::from)?;
                let target = target.to_str().ok_or(ErrorCode::IllegalByteSequence)?;
                if target.starts_with('/') {
                    return Err(ErrorCode::NotPermitted);
                }
                // Continue from the symlink's directory, as seen from `start`.
                let base = beneath(&parent.rel, &rel_of(start.dir.as_fd(), root)?)?;
                let joined = if base.is_empty() {
                    target.to_owned()
                } else {
                    format!("{base}/{target}")
                };
                path = if slash { format!("{joined}/") } else { joined };
                continue;
            }
        }
        return Ok(Resolved { parent, name, slash });
    }
    Err(ErrorCode::Loop)
}

/// Whether a remembered parent is still where it was opened: a command of
/// the step, or another process, may have moved or removed it since (or
/// moved another directory to its name), and a change made through it
/// would then be journaled under a path it is not at. One `readlink`,
/// where opening it again costs an `openat2`, an `fstat`, a `readlink`
/// and a `dup`.
fn still_there(parent: &Parent, root: &Path) -> bool {
    rel_of(parent.dir.as_fd(), root).is_ok_and(|now| now == parent.rel)
}

/// `rel` relative to `base` (both paths in the mount).
fn beneath(rel: &str, base: &str) -> Result<String, ErrorCode> {
    if base.is_empty() {
        return Ok(rel.to_owned());
    }
    match rel.strip_prefix(base) {
        Some("") => Ok(String::new()),
        Some(rest) if rest.starts_with('/') => Ok(rest[1..].to_owned()),
        _ => Err(ErrorCode::NotPermitted),
    }
}

fn open_parent(start: &WasiDir, root: &Path, dir: &str) -> Result<Parent, ErrorCode> {
    let fd: OwnedFd = rustix::fs::openat2(
        start.dir.as_fd(),
        if dir.is_empty() { "." } else { dir },
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| match e {
        // Escaping `start`, as cap-std reports it.
        rustix::io::Errno::XDEV => ErrorCode::NotPermitted,
        e => ErrorCode::from(std::io::Error::from(e)),
    })?;
    let dir = cap_std::fs::Dir::from_std_file(std::fs::File::from(fd));
    let meta = dir.dir_metadata().map_err(ErrorCode::from)?;
    if meta.nlink() == 0 {
        // Removed while a descriptor still refers to it.
        return Err(ErrorCode::NoEntry);
    }
    let rel = rel_of(dir.as_fd(), root)?;
    let copy = dir.try_clone().map_err(ErrorCode::from)?.into_std_file();
    Ok(Parent {
        wasi: WasiDir::new(copy, start.perms, start.open_mode, true),
        dir,
        id: FileId::of(&meta),
        rel,
    })
}

/// Where the open file or directory `fd` is in the mount rooted at `root`,
/// as the kernel knows it now. Refused if it is not in the mount (any
/// more), or no longer has a name.
pub(crate) fn rel_of(fd: BorrowedFd<'_>, root: &Path) -> Result<String, ErrorCode> {
    use std::os::fd::AsRawFd;
    let link = rustix::fs::readlink(format!("/proc/self/fd/{}", fd.as_raw_fd()), Vec::new())
        .map_err(|e| ErrorCode::from(std::io::Error::from(e)))?;
    let path = PathBuf::from(std::ffi::OsString::from_vec(link.into_bytes()));
    let rest = path.strip_prefix(root).map_err(|_| ErrorCode::NotPermitted)?;
    let rest = rest.to_str().ok_or(ErrorCode::IllegalByteSequence)?;
    if rest.ends_with(" (deleted)") {
        return Err(ErrorCode::NoEntry);
    }
    Ok(rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_every_form_of_path_into_a_directory_and_one_plain_name() {
        assert_eq!(split("a"), Ok(("", Some("a"), false)));
        assert_eq!(split("a/b/c"), Ok(("a/b", Some("c"), false)));
        assert_eq!(split("a/b/"), Ok(("a", Some("b"), true)));
        assert_eq!(split("a//b//"), Ok(("a/", Some("b"), true)));
        assert_eq!(split(""), Ok(("", None, false)));
        assert_eq!(split("."), Ok((".", None, false)));
        assert_eq!(split("ghost/."), Ok(("ghost/.", None, false)));
        assert_eq!(split("a/.."), Ok(("a/..", None, false)));
        assert_eq!(split("./"), Ok((".", None, true)));
        assert_eq!(split("/etc/passwd"), Err(ErrorCode::NotPermitted));
    }

    #[test]
    fn a_path_in_the_mount_is_taken_relative_to_a_base_only_beneath_it() {
        assert_eq!(beneath("a/b", ""), Ok("a/b".into()));
        assert_eq!(beneath("a/b", "a"), Ok("b".into()));
        assert_eq!(beneath("a", "a"), Ok(String::new()));
        assert_eq!(beneath("ab/c", "a"), Err(ErrorCode::NotPermitted));
        assert_eq!(beneath("b", "a"), Err(ErrorCode::NotPermitted));
    }

    /// Resolution on a real tree: through `.`, `..`, symlinks (followed
    /// only when asked, never out of the start directory), trailing
    /// slashes, and a directory renamed after it was opened.
    #[test]
    fn resolves_through_the_kernel_and_follows_renames() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("victim")).unwrap();
        std::os::unix::fs::symlink("a/b", root.join("to-b")).unwrap();
        std::os::unix::fs::symlink("../victim", root.join("a/up")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        let start = WasiDir::new(
            std::fs::File::open(&root).unwrap(),
            wasmtime_wasi::FsPerms::ReadWrite,
            wasmtime_wasi::filesystem::OpenMode::READ,
            true,
        );
        let get = |path: &str, follow: bool| resolve(&start, 0, &root, path, follow, &mut Parents::default());
        let r = get("a/./b/../b/f", false).unwrap();
        assert_eq!((r.rel(), r.name.as_deref()), ("a/b/f".into(), Some("f")));
        let r = get("to-b/f/", false).unwrap();
        assert_eq!(
            (r.rel(), r.slash, r.call_name()),
            ("a/b/f".into(), true, "f/".into())
        );
        // The last component is followed only when asked.
        assert_eq!(get("a/up", false).unwrap().rel(), "a/up");
        assert_eq!(get("a/up", true).unwrap().rel(), "victim");
        let r = get("a/..", false).unwrap();
        assert_eq!((r.rel(), r.name), (String::new(), None));
        assert_eq!(get("../x", false).err(), Some(ErrorCode::NotPermitted));
        assert_eq!(get("abs/x", false).err(), Some(ErrorCode::NotPermitted));
        assert_eq!(get("abs", true).err(), Some(ErrorCode::NotPermitted));
        assert_eq!(get("nothing/x", false).err(), Some(ErrorCode::NoEntry));
        // A directory opened before a rename is found where it is now.
        let r = get("a/b/x", false).unwrap();
        std::fs::rename(root.join("a"), root.join("moved")).unwrap();
        assert_eq!(rel_of(r.parent.dir.as_fd(), &root), Ok("moved/b".into()));
        std::fs::remove_dir_all(root.join("moved")).unwrap();
        assert_eq!(rel_of(r.parent.dir.as_fd(), &root), Err(ErrorCode::NoEntry));
    }
}
