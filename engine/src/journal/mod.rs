//! The undo journal: how every change a step makes to a mount is recorded
//! before it reaches the disk, and reversed when the flow fails.
//!
//! The sandbox's filesystem layer calls the run's `Recorder` (a
//! `RunJournal`) *before* it lets a mutating call through, and tells it
//! afterwards whether the call succeeded (through a `Call` guard: a failed
//! call's capture is put back and its records voided). The journal writes
//! an undo record (and, where the
//! change destroys data, moves or links the original into the run's backup
//! area), syncs it, and only then returns; so an undo record is durable
//! before the change it covers can reach the disk (or, for an original
//! moved or linked aside, its backup's name says where it belongs; see
//! the module `orphans`). Rollback applies the
//! records newest first; each undo is idempotent, and `undone` markers are
//! written in batches once the undos' effects are synced, so a rollback
//! interrupted by a crash finishes on the next attempt (`stepback recover`).
//!
//! Ordering relied on: `fdatasync` of the journal before each change
//! (`--sync strict`, the default) except moves and links aside; within one
//! filesystem, the rename or
//! link that moves an original into the backup area reaching the disk no
//! later than the change that follows it (ext4 and XFS journal metadata in
//! order); `fsync` of the directories and files a batch of undos changed
//! before the batch's `undone` markers are written.
//!
//! Layout of a run: `STATE/runs/RUN/journal` (append-only, one checksummed
//! JSON record per line) and `STATE/runs/RUN/backup/` (originals: copies
//! named by record number, moved or linked files by record number, mount
//! and path; `discarded-SEQ`, what undo `SEQ` took out of a mount,
//! deleted with the rest when the run is pruned; and `foreign-N`, what
//! another process had put where the rollback was to restore an original,
//! kept: see the module `foreign`).

mod capture;
mod entry;
mod fault;
mod foreign;
mod lock;
mod log;
mod markers;
mod mount;
mod orphans;
mod places;
mod record;
mod recorder;
mod report;
mod runs;
mod space_reserve;
mod sparse;
mod tree;
mod undo;
mod verify;

// The writer side (capture, the journal writer, locks, rollback) is the
// engine's own; what a program reads of a run (records, runs, reports)
// is public.
pub(crate) use capture::RunJournal;
pub(crate) use entry::{
    dir_beneath, entry_state, fd_xattrs, keep_capabilities, open_dir_readable, replace_xattrs,
    set_attributes, set_owner_and_mode, set_times,
};
pub(crate) use fault::Fault;
pub use lock::InUse;
pub(crate) use lock::MountLocks;
pub use log::Durability;
pub(crate) use log::{JournalWriter, read_journal};
pub(crate) use mount::MountFs;
pub(crate) use orphans::adopt_orphans;
pub use record::{
    App, Change, EntryState, FailureAction, FileId, FileLeft, Meta, MountRecord, OsBytes, Owner, Record,
    Time, UndoOp, Xattr, voided,
};
pub(crate) use recorder::{Batch, Call, Capture, Entry, NewEntry, Recorder, SharedRecorder, Synced, lock};
pub use report::{Problem, RollbackReport, is_change};
pub use runs::{RunDir, RunState, RunStore, RunSummary};
pub(crate) use space_reserve::{SpaceReserve, free_on};
pub(crate) use sparse::copy_contents;
pub(crate) use tree::remove_all;
pub(crate) use undo::{Ending, changes_to_undo, end_rollback, retry_rollback, rollback, unrecorded_end};
