//! The capture strategies: how the original of an entry about to change
//! is kept (a record alone, a move or link into the backup area, a copy),
//! the cheapest correct way for each (see the table in [`super`]).

use super::RunJournal;
use super::known::{Compensation, Mark};
use crate::journal::entry::{fd_xattrs, mtime, open_dir_readable};
use crate::journal::orphans;
use crate::journal::record::{Change, FileId, Meta, Owner, Record, Time, UndoOp, Xattr};
use crate::journal::recorder::{Entry, Outcome};
use cap_std::fs::{Dir, Metadata, MetadataExt, PermissionsExt};
use std::io;
use std::os::unix::ffi::OsStrExt;

/// Room a record needs, checked against the reserve: more than any record
/// but one naming a path near `PATH_MAX`.
pub(super) const RECORD_ROOM: u64 = 8 << 10;

impl RunJournal {
    /// Writes an undo record, synced unless `deferred` (its change leaves
    /// a durable trace of its own: see [`crate::journal::orphans`]); the caller
    /// makes the change only after this.
    pub(super) fn record(
        &mut self,
        mount: &str,
        change: Change,
        undo: UndoOp,
        deferred: bool,
    ) -> io::Result<u64> {
        let seq = self.seq + 1;
        self.fault.before_capture(seq)?;
        self.room.check(self.writer.file(), RECORD_ROOM)?;
        for path in std::iter::once(undo.path()).chain(match &undo {
            UndoOp::Renamed { from, .. } => Some(from.as_str()),
            _ => None,
        }) {
            let key = (mount.to_owned(), path.to_owned());
            self.tracked.paths.insert(key.clone());
            self.tracked.step_paths.insert(key);
        }
        let record = Record::Undo {
            seq,
            step: self.tracked.step,
            mount: mount.to_owned(),
            change,
            undo,
        };
        if deferred {
            self.writer.append_deferred(&record)?;
        } else {
            self.writer.append(&record)?;
        }
        self.seq = seq;
        self.tracked.call.seqs.push(seq);
        Ok(seq)
    }

    /// The capture of operation `seq` is complete; the change may proceed.
    pub(super) fn done(&self, seq: u64) {
        self.fault.after_record(seq, &self.writer);
    }

    /// Saves the mtime of the directory holding `at`, once per run;
    /// `deferred`: in a batch (synced with it, see [`Recorder::sync_batch`]).
    pub(super) fn touch_parent(&mut self, at: &Entry, deferred: bool) -> io::Result<()> {
        let pending = |m: &Mark| matches!(m, Mark::TimesSaved(id) if *id == at.dir_id);
        if self.is_fresh(at.dir_id)
            || self.tracked.known.times_saved.contains(&at.dir_id)
            || self.tracked.call.marks.iter().any(pending)
        {
            return Ok(());
        }
        let meta = at.dir.dir_metadata()?;
        self.save_times(at.mount, at.dir_rel, &meta, deferred)
    }

    pub(super) fn save_times(
        &mut self,
        mount: &str,
        rel: &str,
        meta: &Metadata,
        deferred: bool,
    ) -> io::Result<()> {
        let id = FileId::of(meta);
        let undo = UndoOp::Times {
            path: rel.to_owned(),
            mtime: mtime(meta),
            atime: Some(Time(meta.atime(), meta.atime_nsec() as u32)),
        };
        let seq = self.record(mount, Change::Touched, undo, deferred)?;
        self.tracked.call.marks.push(Mark::TimesSaved(id));
        self.done(seq);
        Ok(())
    }

    /// Records that the file at `at` is about to be moved or linked into
    /// the backup area; returns the record's number and the backup's name.
    /// The record is synced only when the name cannot say where the backup
    /// belongs (a path too long for a file name).
    pub(super) fn record_saved(
        &mut self,
        at: &Entry,
        meta: &Metadata,
        change: Change,
    ) -> io::Result<(u64, String)> {
        let path = at.rel();
        let named = orphans::name(self.seq + 1, change, at.mount, &path);
        let deferred = named.is_some();
        let backup = named.unwrap_or_else(|| format!("{}", self.seq + 1));
        // Its size when the run started: its contents may have changed
        // since they were copied, and the copy's undo puts them back.
        let size = self
            .tracked
            .known
            .preserved
            .get(&FileId::of(meta))
            .copied()
            .unwrap_or(meta.len());
        let saved = UndoOp::Saved {
            path,
            backup: backup.clone(),
            size,
            ino: meta.ino(),
            tree: meta.is_dir(),
        };
        Ok((self.record(at.mount, change, saved, deferred)?, backup))
    }

    /// Records a change of a batch ([`Recorder::sync_batch`]): the
    /// parent's times and the record itself written without a sync.
    pub(super) fn record_in_batch(&mut self, at: &Entry, change: Change, undo: UndoOp) -> io::Result<u64> {
        self.whole_call(|j| {
            j.touch(at.mount, at.rel());
            j.touch_parent(at, true)?;
            let seq = j.record(at.mount, change, undo, true)?;
            // What the parent's capture marked holds now; the change itself
            // is finished by `make_recorded`.
            j.end_call(Outcome::Succeeded {
                created: None,
                opened: None,
            })?;
            Ok(seq)
        })
    }

    /// Whether an original can be moved or linked into the backup area:
    /// only on the backup area's filesystem (elsewhere it is copied).
    pub(super) fn can_move_aside(&self, meta: &Metadata) -> bool {
        meta.dev() == self.backup_dev
    }

    /// Copies the file into the backup area and syncs it, then records it:
    /// a crash mid-copy leaves an unreferenced backup, never a record
    /// pointing at a partial one.
    pub(super) fn copy_aside(&mut self, at: &Entry, meta: &Metadata, change: Change) -> io::Result<()> {
        let backup = format!("{}", self.seq + 1);
        self.fault.before_capture(self.seq + 1)?;
        // The copy is sparse, and so is its restore: what it costs is the
        // file's allocation, not its apparent size.
        let cost = allocated(meta);
        self.room.check(&self.backup, cost)?;
        let xattrs = clone_or_copy(at.dir, at.name, &self.backup, &backup)?;
        self.room.add_copy(cost);
        let undo = UndoOp::Copied {
            path: at.rel(),
            backup,
            size: meta.len(),
            meta: meta_of(meta, Vec::new()),
            xattrs: Some(xattrs),
        };
        let seq = self.record(at.mount, change, undo, false)?;
        self.tracked
            .call
            .marks
            .push(Mark::Preserved(FileId::of(meta), meta.len()));
        self.done(seq);
        Ok(())
    }

    /// Records how to bring back the entry at `at`, about to disappear.
    pub(super) fn save_entry(&mut self, at: &Entry, meta: &Metadata, change: Change) -> io::Result<()> {
        let path = at.rel();
        if meta.is_symlink() {
            let target = at.dir.read_link_contents(at.name)?;
            let aside = self.can_move_aside(meta).then(|| crate::journal::record::Aside {
                backup: format!("symlink-{}", self.seq + 1),
                ino: meta.ino(),
            });
            let undo = UndoOp::RemovedSymlink {
                path,
                target: target.as_os_str().as_bytes().into(),
                mtime: mtime(meta),
                owner: Some(owner(meta)),
                aside: aside.clone(),
            };
            let seq = self.record(at.mount, change, undo, false)?;
            if let Some(aside) = aside {
                // A link to the symlink itself: linkat does not follow it.
                at.dir.hard_link(at.name, &self.backup, &aside.backup)?;
                self.tracked
                    .call
                    .compensations
                    .push(Compensation::Unlink(aside.backup));
            }
            self.done(seq);
        } else if meta.is_dir() {
            let xattrs = dir_xattrs(at.dir, at.name)?;
            let undo = UndoOp::RemovedDir {
                path,
                meta: meta_of(meta, xattrs),
            };
            let seq = self.record(at.mount, change, undo, false)?;
            self.done(seq);
        } else if self.can_move_aside(meta) {
            let (seq, backup) = self.record_saved(at, meta, change)?;
            at.dir.hard_link(at.name, &self.backup, &backup)?;
            self.tracked.call.compensations.push(Compensation::Unlink(backup));
            self.done(seq);
        } else {
            self.copy_aside(at, meta, change)?;
        }
        Ok(())
    }
}

/// Whether this process can give a new file the owner of `meta`: a new
/// file replacing a moved-aside original must look like it.
pub(super) fn may_own(meta: &Metadata) -> bool {
    let euid = rustix::process::geteuid();
    euid.is_root() || (meta.uid() == euid.as_raw() && meta.gid() == rustix::process::getegid().as_raw())
}

pub(super) fn dir_xattrs(parent: &Dir, name: &str) -> io::Result<Vec<Xattr>> {
    fd_xattrs(&open_dir_readable(parent, name)?)
}

/// The bytes a file's data takes on disk (holes take none).
pub(super) fn allocated(meta: &Metadata) -> u64 {
    meta.blocks().saturating_mul(512)
}

pub(super) fn owner(meta: &Metadata) -> Owner {
    Owner {
        uid: meta.uid(),
        gid: meta.gid(),
    }
}

pub(super) fn meta_of(meta: &Metadata, xattrs: Vec<Xattr>) -> Meta {
    Meta {
        mode: meta.permissions().mode(),
        mtime: mtime(meta),
        owner: Some(owner(meta)),
        xattrs,
    }
}

/// Copies `path` into the backup area as `name`, durably: a reflink clone
/// (shared blocks, no data copied) where the filesystem supports one
/// (btrfs, XFS), else its data extents only (holes stay holes).
pub(super) fn clone_or_copy(dir: &Dir, path: &str, backup: &Dir, name: &str) -> io::Result<Vec<Xattr>> {
    let source = dir.open(path)?.into_std();
    let copy = backup.create(name)?.into_std();
    if rustix::fs::ioctl_ficlone(&copy, &source).is_err() {
        crate::journal::sparse::copy_contents(&source, &copy)?;
    }
    copy.sync_all()?;
    fd_xattrs(&source)
}
