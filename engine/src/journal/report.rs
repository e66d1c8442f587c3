//! What a rollback reports: what it undid, what it could not restore, and
//! what of other processes' it kept aside.

use super::record::{Change, UndoOp};

pub use crate::events::Problem;

/// What a rollback did.
#[derive(Debug, Default)]
pub struct RollbackReport {
    /// Changes this rollback undid, counted as `show` lists them (see
    /// [`is_change`]).
    pub undone: usize,
    /// Paths it could not restore.
    pub problems: Vec<Problem>,
    /// Entries that other processes changed at paths the run had changed,
    /// found in the way of the undos: moved aside into the run's backup
    /// area (which is then never pruned) rather than overwritten. The
    /// paths themselves are restored.
    pub kept: Vec<Problem>,
    /// Commands the run let change its mounts without a capture
    /// (`capture = "none"`), whose changes the rollback could not reverse.
    pub not_reversed: Vec<String>,
}

pub(super) fn problem(mount: &str, op: &UndoOp, reason: String) -> Problem {
    Problem::new(mount, op.path(), reason)
}

/// Whether an undo record is a change of its own, as `show` lists changes
/// and a rollback counts what it undid: a path's times or a directory's
/// listing (`touched`) change along with the changes made in it, and the
/// records a rename makes besides its own (the entry it replaced) belong
/// to the rename.
pub fn is_change(change: Change, op: &UndoOp) -> bool {
    match change {
        Change::Touched => false,
        Change::Renamed => matches!(op, UndoOp::Renamed { .. }),
        _ => true,
    }
}
