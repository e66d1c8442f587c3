//! What the run knows of the inodes it met (made, saved, mixed), and the
//! call in progress: bookkeeping applied once a call succeeded, the
//! capture's own changes put back when it failed.

use super::RunJournal;
use crate::journal::entry::{fd_xattrs, set_mtime};
use crate::journal::record::{FileId, Record, Time};
use crate::journal::recorder::{Entry, Outcome};
use cap_std::fs::Dir;
use std::collections::{HashMap, HashSet};
use std::io;

/// What the rest of the run already knows of an inode.
#[derive(Default)]
pub(super) struct Known {
    /// Inodes the run created: they need no capture, wherever they are.
    pub(super) fresh: HashSet<FileId>,
    /// Inodes whose original contents are saved in a copy, with their
    /// size then: what a later record of the same inode must say it was.
    pub(super) preserved: HashMap<FileId, u64>,
    /// Entries whose original mtime is recorded.
    pub(super) times_saved: HashSet<FileId>,
    /// Directories whose original mode and owner are recorded.
    pub(super) attributes_saved: HashSet<FileId>,
    /// Directories the run made that nothing was moved or linked into:
    /// every entry in them is the run's own, whatever its inode.
    pub(super) whole: HashSet<FileId>,
    /// Files the run changed (wrote, resized, set the times of), with
    /// their size and time just after its last change.
    pub(super) written: HashMap<FileId, (u64, Time)>,
    /// Directories the run made that hold, or once held, something not
    /// the run's (an original moved or linked into them or beneath them):
    /// records name paths through them, so they are not the run's own
    /// to move or remove unrecorded. Moving or removing one is recorded
    /// like an original's, so that a rollback finds every path its older
    /// records name.
    pub(super) mixed: HashSet<FileId>,
}

/// Bookkeeping to apply once the call succeeded.
pub(super) enum Mark {
    /// The call creates a new inode (identified by [`Outcome`]).
    Fresh,
    /// The call creates a new directory, with nothing in it but the run's.
    FreshDir,
    Preserved(FileId, u64),
    /// Directories the run made that now hold something not the run's.
    Mixed(Vec<FileId>),
    TimesSaved(FileId),
    AttributesSaved(FileId),
    /// The file created by the call replaces `backup`, moved aside: it
    /// takes over its mode, owner and extended attributes.
    Replaces(String),
}

/// What to put back on disk if the call fails.
pub(super) enum Compensation {
    /// An original moved into the backup area goes back to its name, and
    /// its directory gets back the time the move changed.
    MoveBack {
        backup: String,
        dir: Dir,
        name: String,
        dir_mtime: Time,
    },
    /// A hard link made into the backup area is removed again.
    Unlink(String),
}

/// The capture of the call in progress.
#[derive(Default)]
pub(super) struct PendingCall {
    pub(super) seqs: Vec<u64>,
    pub(super) compensations: Vec<Compensation>,
    pub(super) marks: Vec<Mark>,
}

impl RunJournal {
    pub(super) fn is_fresh(&self, id: FileId) -> bool {
        self.tracked.known.fresh.contains(&id)
    }

    /// Whether directory `id` is the run's own, with nothing beneath it
    /// that is not: what is made in it needs no record.
    pub(super) fn owns_dir(&self, id: FileId) -> bool {
        self.is_fresh(id) && !self.tracked.known.mixed.contains(&id)
    }

    /// Whether the entry at `at`, of inode `id`, is the run's own: made
    /// by it, and no directory with something else beneath it.
    pub(super) fn owned(&self, at: &Entry, id: FileId) -> bool {
        (self.is_fresh(id) || self.tracked.known.whole.contains(&at.dir_id))
            && !self.tracked.known.mixed.contains(&id)
    }

    /// Notes (once the call succeeds) that directory `at.dir` is about to
    /// hold something not the run's: it, and every directory above it
    /// that the run made, are then mixed. (Above the first directory the
    /// run did not make, any the run made is mixed already.)
    pub(super) fn mix(&mut self, at: &Entry) -> io::Result<()> {
        let mut ids = Vec::new();
        let (mut id, mut rel) = (at.dir_id, at.dir_rel.to_owned());
        while self.owns_dir(id) {
            ids.push(id);
            let Some((parent, _)) = rel.rsplit_once('/') else {
                break;
            };
            rel = parent.to_owned();
            id = FileId::of(&self.dir(at.mount)?.symlink_metadata(&rel)?);
        }
        if !ids.is_empty() {
            self.tracked.call.marks.push(Mark::Mixed(ids));
        }
        Ok(())
    }

    /// Puts back what the capture of a failed call did, newest first, and
    /// voids its records. A compensation that fails leaves its record
    /// standing, so that the rollback still undoes the capture.
    pub(super) fn compensate(&mut self, call: PendingCall) -> io::Result<()> {
        let mut clean = true;
        for c in call.compensations.into_iter().rev() {
            let (undone, what) = match c {
                Compensation::MoveBack {
                    backup,
                    dir,
                    name,
                    dir_mtime,
                } => (
                    self.backup
                        .rename(&backup, &dir, &name)
                        .and_then(|()| set_mtime(&dir, "", dir_mtime)),
                    format!("putting {name} back after a failed call"),
                ),
                Compensation::Unlink(backup) => (
                    self.backup.remove_file(&backup),
                    format!("removing the backup {backup} of a failed call"),
                ),
            };
            if let Err(e) = undone {
                clean = false;
                self.tracked.unrestored.push(format!("{what}: {e}"));
            }
        }
        if clean && !call.seqs.is_empty() {
            self.writer.append(&Record::Void { seqs: call.seqs })?;
        }
        Ok(())
    }

    /// Runs `capture`, a capture that ends its own call (a whole call, or a
    /// batch's record): on an error before it did, the call is ended as
    /// failed, so that none of its records or bookkeeping is left for the
    /// next call to end (a failed capture's records are voided, as a
    /// [`crate::journal::Call`] dropped voids them).
    pub(super) fn whole_call<T>(
        &mut self,
        capture: impl FnOnce(&mut Self) -> io::Result<T>,
    ) -> io::Result<T> {
        let done = capture(self);
        if done.is_err() {
            // Ended already if the error came from ending it: then empty.
            let _ = self.end_call(Outcome::Failed);
        }
        done
    }

    /// Ends the call in progress (see [`crate::journal::Recorder::finish`]).
    pub(super) fn end_call(&mut self, outcome: Outcome) -> io::Result<()> {
        let call = std::mem::take(&mut self.tracked.call);
        let Outcome::Succeeded { created, opened } = outcome else {
            return self.compensate(call);
        };
        for mark in call.marks {
            match mark {
                Mark::Fresh => {
                    if let Some(id) = created {
                        self.tracked.known.fresh.insert(id);
                        self.tracked.step_made.push(id);
                    }
                }
                Mark::FreshDir => {
                    if let Some(id) = created {
                        self.tracked.known.fresh.insert(id);
                        self.tracked.known.whole.insert(id);
                        self.tracked.step_made.push(id);
                    }
                }
                Mark::Preserved(id, size) => {
                    self.tracked.known.preserved.insert(id, size);
                }
                Mark::Mixed(ids) => {
                    for id in ids {
                        self.tracked.known.whole.remove(&id);
                        self.tracked.known.mixed.insert(id);
                    }
                }
                Mark::TimesSaved(id) => {
                    self.tracked.known.times_saved.insert(id);
                }
                Mark::AttributesSaved(id) => {
                    self.tracked.known.attributes_saved.insert(id);
                }
                Mark::Replaces(backup) => {
                    if let Some(file) = opened {
                        take_over_attributes(&self.backup.open(&backup)?.into_std(), file)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Gives `new` the mode, owner and extended attributes of `original`.
fn take_over_attributes(original: &std::fs::File, new: &std::fs::File) -> io::Result<()> {
    use rustix::fs::{Gid, Mode, Uid, fchmod, fchown, fstat};
    let st = fstat(original)?;
    let new_st = fstat(new)?;
    if (st.st_uid, st.st_gid) != (new_st.st_uid, new_st.st_gid) {
        fchown(
            new,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        )?;
    }
    for x in fd_xattrs(original)? {
        rustix::fs::fsetxattr(new, &x.name.0[..], &x.value.0, rustix::fs::XattrFlags::empty())?;
    }
    // After the owner: chown clears set-id bits.
    fchmod(new, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    Ok(())
}
