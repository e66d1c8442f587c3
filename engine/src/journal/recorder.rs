//! The recorder contract: what a caller that changes a mount on a step's
//! behalf (the filesystem layer, the apply of a command's changes) tells
//! the journal, and the two guards that are the only way to tell it.
//!
//! Four kinds of method, each used one way:
//! - **one call** — `before_*` captures a change before it is made, inside
//!   [`Call::begin`]; the [`Call`] it returns ends the call: kept and ended
//!   with [`Call::succeeded`] once the change was made, or dropped (the
//!   change failed, or was never tried) to put back what the capture did;
//! - **a batch** — many renames recorded first and made durable by one
//!   sync, through [`Batch`], then [`Synced`]: each made with
//!   [`Synced::make`], the rest voided when it is dropped or closed;
//! - **whole calls** — [`Recorder::remove_tree`] and
//!   [`Recorder::snapshot`] capture and make their change themselves;
//! - **notifications and queries** — what the step made, left or reaches,
//!   and what needs no capture.
//!
//! The methods that end a protocol take a [`Sealed`], which only this
//! module can make: no caller can end a call or a batch but through a
//! guard.
//!
//! One error policy for ending a call: a call that failed is put back
//! quietly (the caller reports the call's own error; where the capture
//! cannot be put back, its records stand, and a rollback copes with a
//! record whose change never happened, as after a crash right after the
//! capture); a call that succeeded but whose bookkeeping fails (a new file
//! that cannot take over its original's owner) is reported to the caller
//! as failed, its records standing so that a rollback undoes the change.

use super::record::{FileId, Xattr};
use cap_std::fs::{Dir, Metadata};
use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// An entry about to change, as the caller resolved it on disk: the
/// directory that holds it (open), and its one-component name there.
pub struct Entry<'a> {
    pub mount: &'a str,
    pub dir: &'a Dir,
    pub dir_id: FileId,
    /// The directory's path in the mount (`""` for its root).
    pub dir_rel: &'a str,
    pub name: &'a str,
}

impl Entry<'_> {
    /// The entry's path in the mount.
    pub fn rel(&self) -> String {
        if self.dir_rel.is_empty() {
            self.name.to_owned()
        } else {
            format!("{}/{}", self.dir_rel, self.name)
        }
    }
}

/// What a create makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewEntry {
    File,
    Dir,
    Symlink,
}

/// What the caller must do after a truncation was captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    Nothing,
    /// The original was moved aside: the open must create the file anew;
    /// [`Call::succeeded`] gives the new file the original's mode, owner
    /// and extended attributes.
    MovedAside,
}

/// How a call that was captured ended.
pub enum Outcome<'a> {
    /// The call failed: nothing it was captured for happened.
    Failed,
    Succeeded {
        /// The entry the call created, if it created one.
        created: Option<FileId>,
        /// The file the call opened, if it opened one.
        opened: Option<&'a std::fs::File>,
    },
}

/// Proof that a guard of this module ends a protocol: the methods that
/// do take one, and nothing outside this module can make it.
pub struct Sealed(());

/// A recorder the step's capabilities share.
pub type SharedRecorder = Arc<Mutex<dyn Recorder>>;

/// Locks the recorder; a panic that poisoned it left the journal as
/// consistent as a crash would, so it is used on.
pub fn lock(recorder: &SharedRecorder) -> MutexGuard<'_, dyn Recorder + 'static> {
    recorder.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the journal hears of a step's changes (see the module's doc for
/// which method is used how).
pub trait Recorder: Send {
    // One call: inside `Call::begin`, before the change.

    /// Before creating a file, directory, symlink at `at`, where nothing is.
    fn before_create(&mut self, at: &Entry, kind: NewEntry) -> io::Result<()>;
    /// Before giving the existing inode a new name at `at` (a hard link).
    fn before_link(&mut self, at: &Entry) -> io::Result<()>;
    /// Before opening the existing file at `at` with truncation.
    fn before_truncate(&mut self, at: &Entry, meta: &Metadata) -> io::Result<Capture>;
    /// Before opening the existing file at `at` for writing in place.
    fn before_write_open(&mut self, at: &Entry, meta: &Metadata) -> io::Result<()>;
    /// Before removing the file, symlink or (empty) directory at `at`.
    fn before_remove(&mut self, at: &Entry, meta: &Metadata) -> io::Result<()>;
    /// Before renaming `from` to `to`, within one mount.
    fn before_rename(
        &mut self,
        from: &Entry,
        from_meta: &Metadata,
        to: &Entry,
        to_meta: Option<&Metadata>,
    ) -> io::Result<()>;
    /// Before changing the timestamps of the entry at `rel` (`meta`: what
    /// is there).
    fn before_set_times(&mut self, mount: &str, rel: &str, meta: &Metadata) -> io::Result<()>;
    /// Before changing the mode, owner or extended attributes of the
    /// directory at `rel` (`meta` and `xattrs`: what it has now).
    fn before_set_attributes(
        &mut self,
        mount: &str,
        rel: &str,
        meta: &Metadata,
        xattrs: Vec<Xattr>,
    ) -> io::Result<()>;
    /// The call captured since the last `finish` has ended as `outcome`:
    /// the bookkeeping changes only now; a failed call's capture is put
    /// back and its records voided, so that a rollback never acts on a
    /// change that did not happen.
    fn finish(&mut self, _: Sealed, outcome: Outcome) -> io::Result<()>;

    // A batch: through `Batch` and `Synced`.

    /// Before swapping the file at `at` (`meta`: the original) with the
    /// step's own file at `replacement`, by one
    /// `renameat2(RENAME_EXCHANGE)`: when `replacement` is in the backup
    /// area, the original lands where it is kept, one rename instead of two.
    /// Records it in the current batch. `None` when the original cannot be
    /// kept that way; the caller then goes through a [`Call`].
    fn before_exchange(
        &mut self,
        _: Sealed,
        at: &Entry,
        meta: &Metadata,
        replacement: &Path,
    ) -> io::Result<Option<u64>>;
    /// Before moving the step's own file, symlink or directory (`kind`;
    /// a directory with all it holds, all the step's own), inode `ino`,
    /// by one rename to `at`, where nothing is. Records it in the current
    /// batch, naming the inode, so that a rollback removes only that inode.
    /// `None` when it needs no record (the directory is the run's own);
    /// the caller then goes through a [`Call`].
    fn before_move_in(&mut self, _: Sealed, at: &Entry, ino: u64, kind: NewEntry) -> io::Result<Option<u64>>;
    /// Makes the records of the batch so far durable, with one sync: the
    /// caller makes none of their changes before. A batch's records, and
    /// the directory times saved for them, are written without a sync,
    /// since a record whose change never happened (a crash before it) is
    /// harmless: the rollback moves back or removes only the inodes they
    /// name.
    fn sync_batch(&mut self, _: Sealed) -> io::Result<()>;
    /// Makes the change recorded in a batch as `seq` by calling `change`,
    /// which returns the inode it put in place. A failed change voids its
    /// record.
    fn make_recorded(
        &mut self,
        _: Sealed,
        seq: u64,
        change: &mut dyn FnMut() -> io::Result<FileId>,
    ) -> io::Result<()>;
    /// The changes recorded in a batch as `seqs` will not be made (the
    /// caller stopped before them): their records are voided, so that
    /// nothing expects them, neither the rollback nor its checks.
    fn abandon(&mut self, _: Sealed, seqs: Vec<u64>) -> io::Result<()>;

    // Whole calls: capture and change in one.

    /// Removes the directory at `at` (`meta`), with all it holds, by one
    /// rename into the backup area, recorded first like a removed file
    /// (the backup's name says where it belongs): a rollback moves it back
    /// as it was, every inode in it untouched, and a removal of thousands
    /// of entries costs one rename. `false` when it cannot be moved so (the
    /// run's own, on another filesystem or mount, or without root a
    /// directory its owner may not write): the caller then removes it
    /// entry by entry.
    fn remove_tree(&mut self, at: &Entry, meta: &Metadata) -> io::Result<bool>;
    /// Before a command that changes the mount without a capture
    /// (`capture = "snapshot"`): copies what is at `rel` whole, so that a
    /// rollback puts it back (once per path and run: an older snapshot
    /// already covers a later command).
    fn snapshot(&mut self, mount: &str, rel: &str) -> io::Result<()>;

    // Notifications.

    /// The step put entry `id` where it is without a capture (a file it
    /// opened in a directory that is all its own, a hard link it made).
    fn made(&mut self, id: FileId);
    /// The step moved in whole a directory it made
    /// ([`Recorder::before_move_in`]): `dirs`, the directories beneath it,
    /// and `others`, its other entries, are the run's own, as they would be
    /// had it made them one by one (and nothing is taken for another
    /// process's on rollback).
    fn made_tree(&mut self, dirs: &[FileId], others: &[FileId]);
    /// The step is done changing the file `meta` describes, for now (it
    /// closed a descriptor it could write through, set its times, or
    /// ended): what another process does to it later is not the run's.
    fn left(&mut self, meta: &Metadata);
    /// A command of the step is about to change the mounts without a
    /// capture (`command`, for the record): said before it starts.
    fn uncaptured(&mut self, command: &str) -> io::Result<()>;
    /// The step's commands run without some of its limits (`what`, with
    /// why): said once, before the first runs.
    fn unenforced(&mut self, what: &str) -> io::Result<()>;
    /// The step's commands reach beyond its mounts (`what`: the network,
    /// sockets, variables granted): said once, before the first runs.
    fn reach(&mut self, what: &str) -> io::Result<()>;

    // Queries.

    /// Whether changing the timestamps of the entry `meta` describes needs
    /// no capture (the run made it, or saved its times already): a caller
    /// can then skip finding out where it is.
    fn times_kept(&self, meta: &Metadata) -> bool;
    /// Whether everything in directory `dir` is the run's own (the run
    /// made it and moved or linked nothing into it): a change to any entry
    /// there needs no capture, and a caller need not even look at it.
    fn owns_all_in(&self, dir: FileId) -> bool;
}

/// One change in progress, captured and not yet ended. Dropping it ends
/// the call as failed: whatever happened in between (the change failed,
/// was never tried, an error or a panic came first), the capture is put
/// back. Held across the change, it holds no lock.
#[must_use = "a call dropped is a call that failed"]
pub struct Call {
    recorder: Option<SharedRecorder>,
}

impl Call {
    /// Captures a change before it is made: `before` runs the recorder's
    /// `before_*` methods. If it fails, the change must not be made: the
    /// call is over, and the capture's error returned.
    pub fn begin<T>(
        recorder: &SharedRecorder,
        before: impl FnOnce(&mut dyn Recorder) -> io::Result<T>,
    ) -> io::Result<(Call, T)> {
        let captured = before(&mut *lock(recorder));
        let call = Call {
            recorder: Some(recorder.clone()),
        };
        // On an error, `call` is dropped here: the capture is put back.
        captured.map(|value| (call, value))
    }

    /// The change was made: `created`, the entry it created, if any, is the
    /// run's own; `opened`, the file it opened, takes over the attributes of
    /// an original moved aside for it. An error means the change could not
    /// be completed as captured: the caller must report it failed.
    pub fn succeeded(mut self, created: Option<FileId>, opened: Option<&std::fs::File>) -> io::Result<()> {
        let recorder = self.recorder.take().expect("a call ends once");
        lock(&recorder).finish(Sealed(()), Outcome::Succeeded { created, opened })
    }

    /// Ends the call as `ok` says: made (`created()`, the entry it created,
    /// if it made one), or failed.
    pub fn ended(self, ok: bool, created: impl FnOnce() -> Option<FileId>) -> io::Result<()> {
        match ok {
            true => self.succeeded(created(), None),
            false => {
                drop(self);
                Ok(())
            }
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if let Some(recorder) = self.recorder.take() {
            // The call's own error is what the caller reports (see the
            // module's error policy).
            let _ = lock(&recorder).finish(Sealed(()), Outcome::Failed);
        }
    }
}

/// Renames being recorded together, before any is made: [`Batch::sync`]
/// makes them durable and gives the [`Synced`] batch that makes them.
/// Dropped unsynced, its records are voided.
#[must_use = "a batch dropped unsynced voids what it recorded"]
pub struct Batch {
    pending: Pending,
}

impl Batch {
    pub fn new(recorder: &SharedRecorder) -> Batch {
        Batch {
            pending: Pending {
                recorder: recorder.clone(),
                seqs: BTreeSet::new(),
            },
        }
    }

    /// Records a swap of the file at `at` with `replacement` (see
    /// [`Recorder::before_exchange`]); `None` when it cannot be batched.
    pub fn exchange(&mut self, at: &Entry, meta: &Metadata, replacement: &Path) -> io::Result<Option<u64>> {
        let seq = lock(&self.pending.recorder).before_exchange(Sealed(()), at, meta, replacement)?;
        Ok(self.pending.add(seq))
    }

    /// Records a move of inode `ino` to `at` (see
    /// [`Recorder::before_move_in`]); `None` when it needs no record.
    pub fn move_in(&mut self, at: &Entry, ino: u64, kind: NewEntry) -> io::Result<Option<u64>> {
        let seq = lock(&self.pending.recorder).before_move_in(Sealed(()), at, ino, kind)?;
        Ok(self.pending.add(seq))
    }

    /// Makes what was recorded durable, with one sync (none when nothing
    /// was): only then may the renames be made.
    pub fn sync(self) -> io::Result<Synced> {
        if !self.pending.seqs.is_empty() {
            lock(&self.pending.recorder).sync_batch(Sealed(()))?;
        }
        Ok(Synced {
            pending: self.pending,
        })
    }
}

/// A batch whose records are durable: each rename is made by
/// [`Synced::make`]; those not made are voided by [`Synced::close`] (or,
/// its error unheard, when it is dropped).
#[must_use = "close the batch to hear whether its rest was voided"]
pub struct Synced {
    pending: Pending,
}

impl Synced {
    /// Makes the rename recorded as `seq` by calling `change`, which
    /// returns the inode it put in place; a failed change voids its record.
    pub fn make(&mut self, seq: u64, change: &mut dyn FnMut() -> io::Result<FileId>) -> io::Result<()> {
        if !self.pending.seqs.remove(&seq) {
            return Err(io::Error::other(format!(
                "change {seq} is not pending in this batch"
            )));
        }
        lock(&self.pending.recorder).make_recorded(Sealed(()), seq, change)
    }

    /// Voids the records of the renames not made (the caller stopped
    /// before them, or found something else there than recorded).
    pub fn close(mut self) -> io::Result<()> {
        self.pending.abandon()
    }
}

/// The records of a batch not made yet; voided when dropped.
struct Pending {
    recorder: SharedRecorder,
    seqs: BTreeSet<u64>,
}

impl Pending {
    fn add(&mut self, seq: Option<u64>) -> Option<u64> {
        self.seqs.extend(seq);
        seq
    }

    fn abandon(&mut self) -> io::Result<()> {
        let seqs: Vec<u64> = std::mem::take(&mut self.seqs).into_iter().collect();
        match seqs.is_empty() {
            true => Ok(()),
            false => lock(&self.recorder).abandon(Sealed(()), seqs),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // Only after an error that the caller reports already.
        let _ = self.abandon();
    }
}
