//! The undo journal: how every change a step makes to a mount is recorded
//! before it reaches the disk, and reversed when the flow fails.
//!
//! The sandbox's filesystem layer calls a [`RunJournal`] *before* it lets a
//! mutating call through. The journal writes an undo record (and, where the
//! change destroys data, moves or links the original into the run's backup
//! area), syncs it, and only then returns; so an undo record is durable
//! before the change it covers can reach the disk. Rollback applies the
//! records newest first; each undo is idempotent and followed by a durable
//! `undone` marker, so a rollback interrupted by a crash finishes on the
//! next attempt (`stepback recover`).
//!
//! Layout of a run: `STATE/runs/RUN/journal` (append-only, one checksummed
//! JSON record per line) and `STATE/runs/RUN/backup/` (originals, named by
//! record number).

mod capture;
mod fault;
mod lock;
mod log;
mod record;
mod runs;
mod undo;

pub use capture::{Capture, MountFs, RunJournal, entry_state};
pub use fault::Fault;
pub use lock::MountLocks;
pub use log::{Durability, JournalWriter, read_journal};
pub use record::{Change, EntryState, Meta, MountRecord, Record, Time, UndoOp};
pub use runs::{RunDir, RunState, RunStore, RunSummary};
pub use undo::{Problem, RollbackReport, rollback};
