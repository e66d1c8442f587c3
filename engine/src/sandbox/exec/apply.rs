//! Applying a command's overlay upper layer to the real mount, each change
//! through the run's [`Recorder`] exactly as a component's would be, so
//! that the rollback reverses it and a crash mid-apply is recovered like
//! any other change.
//!
//! What the upper layer holds (overlayfs with `redirect_dir`, `metacopy`
//! and `index` off) and what it becomes:
//!
//! | in the upper layer | on the mount |
//! | --- | --- |
//! | a whiteout (character device 0:0) | whatever is there is removed (a directory with all it holds) |
//! | a directory marked opaque | what the mount has there is replaced: entries the upper one lacks are removed |
//! | another directory | made where missing, or given its mode and owner where they changed; then its entries applied; its time set |
//! | a regular file | swapped with the file it replaces by one `renameat2(RENAME_EXCHANGE)` (the upper layer is in the backup area, so the original lands where it is kept; the swaps of a directory are recorded first, with one sync); moved in by rename where nothing was there or the original goes to the backup area otherwise; copied where the upper layer is on another filesystem, or written in place where the original must keep its inode |
//! | a symlink | moved in (made anew on another filesystem), over what was there |
//! | anything else (FIFO, socket, device) | refused: the apply fails |
//!
//! A directory's time: where the apply added or removed entries, the time
//! the command left it (the upper directory's); where it only replaced
//! files, the time it had (as if they were written in place).

use crate::journal::{
    Capture, Entry, FileId, NewEntry, Outcome, Recorder, open_dir_readable, set_attributes,
    set_owner_and_mode, set_times,
};
use cap_fs_ext::{DirExt, OpenOptionsFollowExt};
use cap_std::fs::{Dir, Metadata, MetadataExt, OpenOptions, PermissionsExt};
use std::collections::{BTreeSet, HashMap};
use std::io::{self, ErrorKind};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// Prefix of the extended attributes overlayfs keeps its bookkeeping in:
/// never carried onto the mount.
const OVERLAY_XATTRS: &[u8] = b"trusted.overlay.";

/// Applies one upper layer to one mount.
pub struct Apply<'a> {
    /// The mount's name, for records.
    pub mount: &'a str,
    /// The run's recorder; `None` for an unjournaled step.
    pub recorder: Option<&'a Arc<Mutex<dyn Recorder>>>,
    /// Where the upper layer is: a replaced file is exchanged with its
    /// original there when the recorder can keep the original in place.
    pub upper_path: &'a Path,
    /// Whether the upper layer is on the mount's filesystem (files are
    /// then moved in, not copied).
    pub same_fs: bool,
    /// Changes applied so far.
    pub changes: u64,
    /// Originals exchanged into the upper layer so far: it holds backups
    /// then, and stays until the run's backups are pruned.
    pub exchanged: u64,
}

/// A directory of the mount as the apply walks it.
struct Lower<'d> {
    dir: &'d Dir,
    id: FileId,
    rel: &'d str,
}

impl Lower<'_> {
    fn entry<'e>(&'e self, mount: &'e str, name: &'e str) -> Entry<'e> {
        Entry {
            mount,
            dir: self.dir,
            dir_id: self.id,
            dir_rel: self.rel,
            name,
        }
    }

    fn child(&self, name: &str) -> String {
        if self.rel.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.rel)
        }
    }
}

impl Apply<'_> {
    /// Applies `upper` (the layer's root) to `root` (the mount's).
    pub fn run(&mut self, upper: &Dir, root: &Dir) -> io::Result<()> {
        let before = root.dir_metadata()?;
        let lower = Lower {
            dir: root,
            id: FileId::of(&before),
            rel: "",
        };
        if self.directory(upper, &lower, false)? {
            // The upper root is the engine's own directory: its time says
            // when the command last added or removed an entry there.
            let now = root.dir_metadata()?;
            let time = upper.dir_metadata()?;
            if (now.mtime(), now.mtime_nsec()) != (time.mtime(), time.mtime_nsec()) {
                self.capture(|rec| rec.before_set_times(self.mount, "", &now))?;
                let set = set_times(root, ".", &time);
                self.finish(root, ".", set.is_ok(), false)?;
                set?;
            }
        }
        Ok(())
    }

    /// Applies the entries of upper directory `upper` to `lower`; with
    /// `opaque`, what `lower` holds is hidden from the command, so
    /// whatever `upper` lacks goes. Says whether entries were added or
    /// removed.
    fn directory(&mut self, upper: &Dir, lower: &Lower, opaque: bool) -> io::Result<bool> {
        let upper_names = names(upper)?;
        let mut reshaped = false;
        if opaque {
            for name in names(lower.dir)?.difference(&upper_names) {
                self.remove_tree(lower, name)?;
                reshaped = true;
            }
        }
        let entries = upper_names
            .iter()
            .map(|name| Ok((name, upper.symlink_metadata(name)?, lower_meta(lower.dir, name)?)))
            .collect::<io::Result<Vec<_>>>()?;
        let exchanges = self.record_exchanges(lower, &entries)?;
        for (name, meta, found) in entries {
            let kind = meta.file_type();
            if is_whiteout(&meta) {
                if found.is_some() {
                    self.remove_tree(lower, name)?;
                    reshaped = true;
                }
            } else if kind.is_dir() {
                reshaped |= self.subdirectory(upper, lower, name, &meta, found, opaque)?;
            } else if kind.is_file() {
                reshaped |= self.file(upper, lower, name, &meta, found, exchanges.get(name).copied())?;
            } else if kind.is_symlink() {
                reshaped |= self.symlink(upper, lower, name, &meta, found)?;
            } else {
                return Err(io::Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "the command made a special file (FIFO, socket or device) at {}, which Stepback does not journal",
                        lower.child(name)
                    ),
                ));
            }
        }
        Ok(reshaped)
    }

    /// Records, in one batch made durable by one sync, the exchanges of
    /// the files of `lower` that upper files replace; their numbers by name.
    fn record_exchanges(
        &self,
        lower: &Lower,
        entries: &[(&String, Metadata, Option<Metadata>)],
    ) -> io::Result<HashMap<String, u64>> {
        let mut seqs = HashMap::new();
        if !self.same_fs {
            return Ok(seqs);
        }
        for (name, meta, found) in entries {
            let Some(found) = found.as_ref().filter(|f| f.is_file() && meta.is_file()) else {
                continue;
            };
            let replacement = self.upper_path.join(lower.child(name));
            let at = lower.entry(self.mount, name);
            if let Some(Some(seq)) = self.capture(|rec| rec.before_exchange(&at, found, &replacement))? {
                seqs.insert(name.to_string(), seq);
            }
        }
        if !seqs.is_empty() {
            self.capture(|rec| rec.sync_exchanges())?;
        }
        Ok(seqs)
    }

    fn subdirectory(
        &mut self,
        upper: &Dir,
        lower: &Lower,
        name: &str,
        meta: &Metadata,
        found: Option<Metadata>,
        opaque: bool,
    ) -> io::Result<bool> {
        let up = upper.open_dir_nofollow(name)?;
        let rel = lower.child(name);
        let made = match found {
            Some(f) if f.is_dir() => {
                if f.permissions().mode() != meta.permissions().mode()
                    || (f.uid(), f.gid()) != (meta.uid(), meta.gid())
                {
                    self.capture(|rec| rec.before_set_attributes(self.mount, &rel, &f))?;
                    // Its times are set (and recorded) once its entries are applied.
                    let set = set_owner_and_mode(lower.dir, name, meta);
                    self.finish(lower.dir, name, set.is_ok(), false)?;
                    set?;
                    self.changes += 1;
                }
                false
            }
            other => {
                if other.is_some() {
                    self.remove_tree(lower, name)?;
                }
                self.create(lower, name, NewEntry::Dir, |dir| dir.create_dir(name))?;
                let fresh = lower.dir.open_dir_nofollow(name)?;
                set_attributes(&fresh, ".", meta)?;
                true
            }
        };
        let dir = lower.dir.open_dir_nofollow(name)?;
        let child = Lower {
            dir: &dir,
            id: FileId::of(&dir.dir_metadata()?),
            rel: &rel,
        };
        let before = dir.dir_metadata()?;
        let reshaped = self.directory(&up, &child, opaque || made || is_opaque(upper, name)?)?;
        let time = if reshaped || made { meta } else { &before };
        self.set_time(lower, name, time)?;
        Ok(made)
    }

    fn file(
        &mut self,
        upper: &Dir,
        lower: &Lower,
        name: &str,
        meta: &Metadata,
        found: Option<Metadata>,
        exchange: Option<u64>,
    ) -> io::Result<bool> {
        strip_overlay_xattrs(upper, name)?;
        match found {
            Some(f)
                if f.is_file()
                    && let (Some(seq), Some(rec)) = (exchange, self.recorder) =>
            {
                lock(rec).exchange(seq, &mut || exchange_file(upper, lower.dir, name, (meta, &f)))?;
                self.changes += 1;
                self.exchanged += 1;
                Ok(false)
            }
            Some(f) if f.is_file() => {
                let capture = self.capture(|rec| rec.before_truncate(&lower.entry(self.mount, name), &f))?;
                match capture {
                    // Unjournaled, the file is simply replaced.
                    None | Some(Capture::MovedAside) => {
                        let placed = place(upper, lower.dir, name, meta, self.same_fs);
                        self.finish(lower.dir, name, placed.is_ok(), true)?;
                        placed?;
                    }
                    _ => {
                        let written = write_in_place(upper, lower.dir, name, meta, false);
                        self.finish(lower.dir, name, written.is_ok(), false)?;
                        written?;
                    }
                }
                self.changes += 1;
                Ok(false)
            }
            other => {
                if other.is_some() {
                    self.remove_tree(lower, name)?;
                }
                let same_fs = self.same_fs;
                self.create(lower, name, NewEntry::File, |dir| {
                    place(upper, dir, name, meta, same_fs)
                })?;
                Ok(true)
            }
        }
    }

    fn symlink(
        &mut self,
        upper: &Dir,
        lower: &Lower,
        name: &str,
        meta: &Metadata,
        found: Option<Metadata>,
    ) -> io::Result<bool> {
        let target = upper.read_link_contents(name)?;
        // A symlink the command also linked elsewhere must stay one inode.
        if let Some(f) = &found
            && f.is_symlink()
            && meta.nlink() == 1
            && lower.dir.read_link_contents(name)? == target
            && (f.mtime(), f.mtime_nsec()) == (meta.mtime(), meta.mtime_nsec())
        {
            return Ok(false);
        }
        if found.is_some() {
            self.remove_tree(lower, name)?;
        }
        let same_fs = self.same_fs;
        self.create(lower, name, NewEntry::Symlink, |dir| match same_fs {
            true => upper.rename(name, dir, name),
            false => {
                dir.symlink_contents(&target, name)?;
                set_attributes(dir, name, meta)
            }
        })?;
        Ok(true)
    }

    /// Makes a new entry `name` in `lower` with `make`, recorded first.
    fn create(
        &mut self,
        lower: &Lower,
        name: &str,
        kind: NewEntry,
        make: impl FnOnce(&Dir) -> io::Result<()>,
    ) -> io::Result<()> {
        self.capture(|rec| rec.before_create(&lower.entry(self.mount, name), kind))?;
        let made = make(lower.dir);
        self.finish(lower.dir, name, made.is_ok(), true)?;
        made?;
        self.changes += 1;
        Ok(())
    }

    /// Removes `name` from `lower`, and all it holds, each entry recorded
    /// before it goes.
    fn remove_tree(&mut self, lower: &Lower, name: &str) -> io::Result<()> {
        let Some(meta) = lower_meta(lower.dir, name)? else {
            return Ok(());
        };
        if meta.is_dir() {
            let dir = lower.dir.open_dir_nofollow(name)?;
            let rel = lower.child(name);
            let child = Lower {
                dir: &dir,
                id: FileId::of(&meta),
                rel: &rel,
            };
            for entry in names(&dir)? {
                self.remove_tree(&child, &entry)?;
            }
        }
        self.capture(|rec| rec.before_remove(&lower.entry(self.mount, name), &meta))?;
        let removed = match meta.is_dir() {
            true => lower.dir.remove_dir(name),
            false => lower.dir.remove_file(name),
        };
        self.finish(lower.dir, name, removed.is_ok(), false)?;
        removed?;
        self.changes += 1;
        Ok(())
    }

    /// Sets the times of directory `name` in `lower` to those of `meta`.
    fn set_time(&mut self, lower: &Lower, name: &str, meta: &Metadata) -> io::Result<()> {
        let now = lower.dir.symlink_metadata(name)?;
        if now.mtime() == meta.mtime() && now.mtime_nsec() == meta.mtime_nsec() {
            return Ok(());
        }
        let rel = lower.child(name);
        self.capture(|rec| rec.before_set_times(self.mount, &rel, &now))?;
        let set = set_times(lower.dir, name, meta);
        self.finish(lower.dir, name, set.is_ok(), false)?;
        set
    }

    /// Runs a `before_*` call of the recorder, if there is one (`None`
    /// when there is not); a failed capture is finished as failed, and the
    /// change must not be made.
    fn capture<T>(&self, f: impl FnOnce(&mut dyn Recorder) -> io::Result<T>) -> io::Result<Option<T>> {
        let Some(rec) = self.recorder else {
            return Ok(None);
        };
        let mut rec = lock(rec);
        let captured = f(&mut *rec);
        if captured.is_err() {
            rec.finish(Outcome::Failed)?;
        }
        captured.map(Some)
    }

    /// Tells the recorder how the change to `name` in `dir` ended; `made`:
    /// it put a new inode there.
    fn finish(&self, dir: &Dir, name: &str, ok: bool, made: bool) -> io::Result<()> {
        let Some(rec) = self.recorder else {
            return Ok(());
        };
        let outcome = match ok {
            false => Outcome::Failed,
            true => Outcome::Succeeded {
                created: match made {
                    true => lower_meta(dir, name)?.map(|m| FileId::of(&m)),
                    false => None,
                },
                opened: None,
            },
        };
        lock(rec).finish(outcome)
    }
}

fn lock(rec: &Arc<Mutex<dyn Recorder>>) -> MutexGuard<'_, dyn Recorder + 'static> {
    rec.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The names in `dir`, sorted (so that an apply is repeatable).
fn names(dir: &Dir) -> io::Result<BTreeSet<String>> {
    dir.entries()?
        .map(|e| {
            let name = e?.file_name();
            name.into_string().map_err(|n| {
                io::Error::new(ErrorKind::InvalidData, format!("a name that is not UTF-8: {n:?}"))
            })
        })
        .collect()
}

fn lower_meta(dir: &Dir, name: &str) -> io::Result<Option<Metadata>> {
    match dir.symlink_metadata(name) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether overlayfs marks this entry as deleted.
fn is_whiteout(meta: &Metadata) -> bool {
    use cap_std::fs::FileTypeExt;
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether overlayfs marks the upper directory `name` in `upper` as
/// hiding the lower one's entries (a directory made where one was
/// removed). Read through a descriptor that can read attributes: the
/// directories cap-std opens cannot.
fn is_opaque(upper: &Dir, name: &str) -> io::Result<bool> {
    let dir = open_dir_readable(upper, name)?;
    let mut value = [0u8; 4];
    Ok(matches!(rustix::fs::fgetxattr(&dir, "trusted.overlay.opaque", &mut value), Ok(1) if value[0] == b'y'))
}

/// Removes overlayfs's own extended attributes from upper file `name`
/// before it moves onto the mount.
fn strip_overlay_xattrs(upper: &Dir, name: &str) -> io::Result<()> {
    let file = upper.open(name)?;
    let mut list = vec![0u8; 4096];
    let n = match rustix::fs::flistxattr(&file, &mut list) {
        Ok(n) => n,
        Err(rustix::io::Errno::RANGE) => {
            let size = rustix::fs::flistxattr(&file, &mut [0u8; 0][..])?;
            list.resize(size, 0);
            rustix::fs::flistxattr(&file, &mut list)?
        }
        Err(e) => return Err(e.into()),
    };
    for attr in list[..n]
        .split(|b| *b == 0)
        .filter(|a| a.starts_with(OVERLAY_XATTRS))
    {
        rustix::fs::fremovexattr(&file, attr)?;
    }
    Ok(())
}

/// Swaps upper file `name` (`new`) with `original`, the file of the same
/// name in `lower`; the inode now in `lower`. Should another process have
/// put something else there meanwhile, the swap is undone and fails: only
/// the recorded original may go to the backup area.
fn exchange_file(
    upper: &Dir,
    lower: &Dir,
    name: &str,
    (new, original): (&Metadata, &Metadata),
) -> io::Result<FileId> {
    let swap = || rustix::fs::renameat_with(upper, name, lower, name, rustix::fs::RenameFlags::EXCHANGE);
    swap()?;
    let kept = upper.symlink_metadata(name)?;
    if FileId::of(&kept) != FileId::of(original) {
        swap()?;
        return Err(io::Error::other(format!(
            "{name} was replaced by another process while the command's changes were applied"
        )));
    }
    Ok(FileId::of(new))
}

/// Moves the upper file `name` to the same name in `lower`, or copies it
/// there (replacing what is there) when they are on different filesystems.
fn place(upper: &Dir, lower: &Dir, name: &str, meta: &Metadata, same_fs: bool) -> io::Result<()> {
    if same_fs {
        return upper.rename(name, lower, name);
    }
    write_in_place(upper, lower, name, meta, true)
}

/// Writes the upper file's contents, mode, owner and times into the file
/// at `name` in `lower`, keeping its inode (its other names see the change).
/// With `create`, the file is made where missing.
fn write_in_place(upper: &Dir, lower: &Dir, name: &str, meta: &Metadata, create: bool) -> io::Result<()> {
    let mut from = upper.open(name)?;
    let mut to = lower.open_with(
        name,
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .create(create)
            .follow(cap_fs_ext::FollowSymlinks::No),
    )?;
    io::copy(&mut from, &mut to)?;
    to.sync_all()?;
    drop(to);
    set_attributes(lower, name, meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(path: &Path) -> Dir {
        std::fs::create_dir_all(path).unwrap();
        Dir::open_ambient_dir(path, cap_std::ambient_authority()).unwrap()
    }

    #[test]
    fn an_exchange_swaps_only_the_recorded_original() {
        let tmp = tempfile::tempdir().unwrap();
        let (upper, lower) = (dir(&tmp.path().join("upper")), dir(&tmp.path().join("lower")));
        upper.write("f", "new").unwrap();
        lower.write("f", "original").unwrap();
        let (new, original) = (upper.metadata("f").unwrap(), lower.metadata("f").unwrap());
        // Another process put a file of its own there after the record.
        lower.write("g", "someone else's").unwrap();
        lower.rename("g", &lower, "f").unwrap();
        let refused = exchange_file(&upper, &lower, "f", (&new, &original));
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(lower.read_to_string("f").unwrap(), "someone else's");
        assert_eq!(upper.read_to_string("f").unwrap(), "new");

        let original = lower.metadata("f").unwrap();
        let placed = exchange_file(&upper, &lower, "f", (&new, &original)).unwrap();
        assert_eq!(placed, FileId::of(&new));
        assert_eq!(lower.read_to_string("f").unwrap(), "new");
        assert_eq!(upper.read_to_string("f").unwrap(), "someone else's");
    }
}
