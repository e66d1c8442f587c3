//! The recorder contract ([`crate::journal::Recorder`]) as the run journal
//! keeps it: each call's capture chosen from what the run knows.

use super::RunJournal;
use super::known::{Compensation, Mark};
use super::strategies::{allocated, may_own, owner};
use crate::journal::entry::mtime;
use crate::journal::record::{Change, FileId, Record, UndoOp, Xattr};
use crate::journal::recorder::{Capture, Entry, NewEntry, Outcome, Recorder, Sealed};
use cap_fs_ext::DirExt;
use cap_std::fs::{Metadata, MetadataExt, PermissionsExt};
use std::io::{self, ErrorKind};
use std::path::Path;

impl Recorder for RunJournal {
    fn before_create(&mut self, at: &Entry, kind: NewEntry) -> io::Result<()> {
        self.touch(at.mount, at.rel());
        self.tracked.call.marks.push(match kind {
            NewEntry::Dir => Mark::FreshDir,
            _ => Mark::Fresh,
        });
        if self.owns_dir(at.dir_id) {
            return Ok(());
        }
        self.touch_parent(at, false)?;
        let tree = kind == NewEntry::Dir;
        let path = at.rel();
        if tree {
            self.tracked
                .created_trees
                .insert((at.mount.to_owned(), path.clone()));
        }
        let undo = UndoOp::Created {
            path,
            tree,
            ino: None,
        };
        let seq = self.record(at.mount, Change::Created, undo, false)?;
        self.done(seq);
        Ok(())
    }

    fn before_link(&mut self, at: &Entry) -> io::Result<()> {
        self.touch(at.mount, at.rel());
        // The linked inode may not be the run's own: recorded even in a
        // directory of the run's, so that the rollback removes this name
        // before the directory goes (and no name of an original stays in
        // the backup area with it).
        self.tracked.known.whole.remove(&at.dir_id);
        self.mix(at)?;
        self.touch_parent(at, false)?;
        let undo = UndoOp::Created {
            path: at.rel(),
            tree: false,
            ino: None,
        };
        let seq = self.record(at.mount, Change::Created, undo, false)?;
        self.done(seq);
        Ok(())
    }

    fn before_truncate(&mut self, at: &Entry, meta: &Metadata) -> io::Result<Capture> {
        self.touch(at.mount, at.rel());
        let id = FileId::of(meta);
        if self.owned(at, id) || self.tracked.known.preserved.contains_key(&id) {
            return Ok(Capture::Nothing);
        }
        if meta.nlink() == 1 && self.can_move_aside(meta) && may_own(meta) {
            self.touch_parent(at, false)?;
            let dir_mtime = mtime(&at.dir.dir_metadata()?);
            let (seq, backup) = self.record_saved(at, meta, Change::Replaced)?;
            at.dir.rename(at.name, &self.backup, &backup)?;
            self.tracked.call.compensations.push(Compensation::MoveBack {
                backup: backup.clone(),
                dir: at.dir.try_clone()?,
                name: at.name.to_owned(),
                dir_mtime,
            });
            self.tracked.call.marks.push(Mark::Fresh);
            self.tracked.call.marks.push(Mark::Replaces(backup));
            self.done(seq);
            return Ok(Capture::MovedAside);
        }
        self.copy_aside(at, meta, Change::Replaced)?;
        Ok(Capture::Nothing)
    }

    fn before_exchange(
        &mut self,
        _: Sealed,
        at: &Entry,
        meta: &Metadata,
        replacement: &Path,
    ) -> io::Result<Option<u64>> {
        let id = FileId::of(meta);
        let Some(backup) = replacement
            .strip_prefix(&self.backup_path)
            .ok()
            .and_then(Path::to_str)
        else {
            return Ok(None);
        };
        if self.owned(at, id)
            || self.tracked.known.preserved.contains_key(&id)
            || meta.nlink() != 1
            || !self.can_move_aside(meta)
        {
            return Ok(None);
        }
        let saved = UndoOp::Saved {
            path: at.rel(),
            backup: backup.to_owned(),
            size: meta.len(),
            ino: meta.ino(),
            tree: false,
        };
        self.record_in_batch(at, Change::Replaced, saved).map(Some)
    }

    fn before_move_in(&mut self, _: Sealed, at: &Entry, ino: u64, kind: NewEntry) -> io::Result<Option<u64>> {
        if self.owns_dir(at.dir_id) {
            return Ok(None);
        }
        let tree = kind == NewEntry::Dir;
        let undo = UndoOp::Created {
            path: at.rel(),
            tree,
            ino: Some(ino),
        };
        let seq = self.record_in_batch(at, Change::Created, undo)?;
        if tree {
            self.tracked.created_trees.insert((at.mount.to_owned(), at.rel()));
            self.tracked.batched_trees.insert(seq);
        }
        Ok(Some(seq))
    }

    fn sync_batch(&mut self, _: Sealed) -> io::Result<()> {
        self.writer.sync_batch()
    }

    fn make_recorded(
        &mut self,
        _: Sealed,
        seq: u64,
        change: &mut dyn FnMut() -> io::Result<FileId>,
    ) -> io::Result<()> {
        self.done(seq);
        match change() {
            Ok(id) => {
                self.tracked.known.fresh.insert(id);
                if self.tracked.batched_trees.remove(&seq) {
                    self.tracked.known.whole.insert(id);
                }
                self.tracked.step_made.push(id);
                Ok(())
            }
            Err(e) => {
                self.writer.append(&Record::Void { seqs: vec![seq] })?;
                Err(e)
            }
        }
    }

    fn abandon(&mut self, _: Sealed, seqs: Vec<u64>) -> io::Result<()> {
        match seqs.is_empty() {
            true => Ok(()),
            false => self.writer.append(&Record::Void { seqs }),
        }
    }

    fn before_write_open(&mut self, at: &Entry, meta: &Metadata) -> io::Result<()> {
        self.touch(at.mount, at.rel());
        let id = FileId::of(meta);
        if self.owned(at, id) || self.tracked.known.preserved.contains_key(&id) {
            return Ok(());
        }
        self.copy_aside(at, meta, Change::Modified)
    }

    fn remove_tree(&mut self, at: &Entry, meta: &Metadata) -> io::Result<bool> {
        // Moving a directory to another parent rewrites its `..`.
        let writable = meta.permissions().mode() & 0o200 != 0 || rustix::process::geteuid().is_root();
        if self.owned(at, FileId::of(meta)) || !self.can_move_aside(meta) || !writable {
            return Ok(false);
        }
        self.whole_call(|j| {
            j.touch(at.mount, at.rel());
            j.touch_parent(at, false)?;
            let (seq, backup) = j.record_saved(at, meta, Change::Deleted)?;
            j.done(seq);
            match at.dir.rename(at.name, &j.backup, &backup) {
                Ok(()) => {
                    j.end_call(Outcome::Succeeded {
                        created: None,
                        opened: None,
                    })?;
                    Ok(true)
                }
                Err(e) => {
                    j.end_call(Outcome::Failed)?;
                    match e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) {
                        true => Ok(false),
                        false => Err(e),
                    }
                }
            }
        })
    }

    fn before_remove(&mut self, at: &Entry, meta: &Metadata) -> io::Result<()> {
        self.touch(at.mount, at.rel());
        self.touch_parent(at, false)?;
        if self.owned(at, FileId::of(meta)) {
            return Ok(());
        }
        self.save_entry(at, meta, Change::Deleted)
    }

    fn before_rename(
        &mut self,
        from: &Entry,
        from_meta: &Metadata,
        to: &Entry,
        to_meta: Option<&Metadata>,
    ) -> io::Result<()> {
        let id = FileId::of(from_meta);
        // Renaming a name onto another name of the same inode changes nothing.
        if to_meta.is_some_and(|t| FileId::of(t) == id) {
            return Ok(());
        }
        let (from_path, to_path) = (from.rel(), to.rel());
        self.touch(from.mount, from_path.clone());
        self.touch(to.mount, to_path.clone());
        if from_meta.is_dir() {
            self.leave_beneath(from.mount, &from_path)?;
            self.follow_rename((from.mount, &from_path), (to.mount, &to_path));
        }
        if to_meta.is_some_and(Metadata::is_dir) {
            self.leave_beneath(to.mount, &to_path)?;
        }
        let own = self.owned(from, id);
        if !own {
            self.tracked.known.whole.remove(&to.dir_id);
            self.mix(to)?;
        }
        self.touch_parent(from, false)?;
        self.touch_parent(to, false)?;
        if let Some(t) = to_meta
            && !self.owned(to, FileId::of(t))
        {
            self.save_entry(to, t, Change::Replaced)?;
        }
        if own {
            // The run's own entry: undo removes it from where it lands,
            // unless that is inside something the run created anyway.
            if !self.owns_dir(to.dir_id) {
                let tree = from_meta.is_dir();
                if tree {
                    self.tracked
                        .created_trees
                        .insert((to.mount.to_owned(), to_path.clone()));
                }
                let undo = UndoOp::Created {
                    path: to_path,
                    tree,
                    ino: Some(id.ino),
                };
                let seq = self.record(to.mount, Change::Renamed, undo, false)?;
                self.done(seq);
            }
            return Ok(());
        }
        // (Where nothing was at `to`, the rename is that path's first
        // record, which tells verification it must be absent again.)
        let undo = UndoOp::Renamed {
            from: from_path,
            to: to_path,
        };
        let seq = self.record(from.mount, Change::Renamed, undo, false)?;
        self.done(seq);
        Ok(())
    }

    fn before_set_times(&mut self, mount: &str, rel: &str, meta: &Metadata) -> io::Result<()> {
        self.touch(mount, rel.to_owned());
        if self.times_kept(meta) {
            return Ok(());
        }
        self.save_times(mount, rel, meta, false)
    }

    fn before_set_attributes(
        &mut self,
        mount: &str,
        rel: &str,
        meta: &Metadata,
        xattrs: Vec<Xattr>,
    ) -> io::Result<()> {
        self.touch(mount, rel.to_owned());
        let id = FileId::of(meta);
        if self.is_fresh(id) || self.tracked.known.attributes_saved.contains(&id) {
            return Ok(());
        }
        let undo = UndoOp::Attributes {
            path: rel.to_owned(),
            mode: meta.permissions().mode(),
            owner: owner(meta),
            xattrs: Some(xattrs),
        };
        let seq = self.record(mount, Change::Modified, undo, false)?;
        self.tracked.call.marks.push(Mark::AttributesSaved(id));
        self.done(seq);
        Ok(())
    }

    fn times_kept(&self, meta: &Metadata) -> bool {
        let id = FileId::of(meta);
        self.is_fresh(id) || self.tracked.known.times_saved.contains(&id)
    }

    fn owns_all_in(&self, dir: FileId) -> bool {
        self.tracked.known.whole.contains(&dir)
    }

    fn made(&mut self, id: FileId) {
        self.tracked.step_made.push(id);
    }

    fn made_tree(&mut self, dirs: &[FileId], others: &[FileId]) {
        self.tracked.known.whole.extend(dirs);
        for &id in dirs.iter().chain(others) {
            self.tracked.known.fresh.insert(id);
            self.tracked.step_made.push(id);
        }
    }

    fn snapshot(&mut self, mount: &str, rel: &str) -> io::Result<()> {
        if !self.tracked.snapshots.insert((mount.to_owned(), rel.to_owned())) {
            return Ok(());
        }
        let root = self.dir(mount)?.try_clone()?;
        let (parent_rel, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let parent = match parent_rel {
            "" => root,
            p => root.open_dir_nofollow(p)?,
        };
        let parent_meta = parent.dir_metadata()?;
        self.whole_call(|j| {
            if !j.times_kept(&parent_meta) {
                j.save_times(mount, parent_rel, &parent_meta, false)?;
            }
            let backup = match parent.symlink_metadata(name) {
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => return Err(e),
                Ok(meta) => {
                    let copy = format!("snapshot-{}", j.seq + 1);
                    j.fault.before_capture(j.seq + 1)?;
                    j.room.check(&j.backup, allocated(&meta))?;
                    crate::journal::tree::copy(&parent, name, &j.backup, &copy)?;
                    if meta.is_dir() {
                        j.tracked.created_trees.insert((mount.to_owned(), rel.to_owned()));
                    }
                    Some(copy)
                }
            };
            let undo = UndoOp::Snapshot {
                path: rel.to_owned(),
                backup,
            };
            let seq = j.record(mount, Change::Replaced, undo, false)?;
            j.done(seq);
            j.end_call(Outcome::Succeeded {
                created: None,
                opened: None,
            })
        })
    }

    fn uncaptured(&mut self, command: &str) -> io::Result<()> {
        self.writer.append(&Record::Uncaptured {
            step: self.tracked.step,
            command: command.to_owned(),
        })
    }

    fn unenforced(&mut self, what: &str) -> io::Result<()> {
        self.writer.append(&Record::Unenforced {
            step: self.tracked.step,
            what: what.to_owned(),
        })
    }

    fn reach(&mut self, what: &str) -> io::Result<()> {
        self.writer.append(&Record::Reach {
            step: self.tracked.step,
            what: what.to_owned(),
        })
    }

    fn left(&mut self, meta: &Metadata) {
        if meta.is_file() {
            let id = FileId::of(meta);
            self.tracked.known.written.insert(id, (meta.len(), mtime(meta)));
            self.tracked.step_wrote.insert(id);
        }
    }

    fn finish(&mut self, _: Sealed, outcome: Outcome) -> io::Result<()> {
        self.end_call(outcome)
    }
}
