//! Exit codes: the one table, and the only place where outcomes and errors
//! become codes, for the CLI and for programs that run it (and its tests)
//! to name them. README's table repeats it (a test of the CLI keeps the two
//! equal). Here, inside the crate, every outcome and error is matched
//! exhaustively: a new one cannot be added without its code.

use crate::events::FlowStatus;
use crate::history::UndoError;
use crate::journal::RollbackReport;
use crate::recovery::RecoverError;
use crate::runner::{RunError, RunReport};

/// Success (for `run`: steps with `on-failure = "continue"` may have failed).
pub const SUCCESS: u8 = 0;
/// A step failed and stopped the flow; every change was rolled back.
pub const FLOW_FAILED: u8 = 1;
/// Bad input: usage, an invalid flow, a plugin that cannot be loaded, an
/// unknown run. Nothing ran.
pub const INVALID_INPUT: u8 = 2;
/// The engine could not work: its WebAssembly engine, or its state
/// directory (journals, locks) could not be used.
pub const ENGINE_ERROR: u8 = 3;
/// A rollback could not restore every path, or an action it ran failed:
/// needs attention.
pub const ROLLBACK_INCOMPLETE: u8 = 4;
/// Nothing ran: an unfinished run needs recovery, or a mount is in use.
pub const BLOCKED: u8 = 5;
/// `undo` refused: paths changed since the run, or it cannot be undone.
pub const UNDO_REFUSED: u8 = 6;
/// Every step succeeded, but the run could not be recorded as committed;
/// it was rolled back.
pub const COMMIT_FAILED: u8 = 7;
/// A step failed under `on-failure = "stop"`: the flow's changes were
/// left in place (the run is committed; `undo` reverses it).
pub const FAILED_NOT_ROLLED_BACK: u8 = 8;
/// `run` was interrupted by Ctrl-C and rolled back: 128 + SIGINT, as
/// shells report an interrupted command.
pub const INTERRUPTED: u8 = 130;
/// The same, by SIGTERM: 128 + SIGTERM, as service managers expect.
pub const TERMINATED: u8 = 143;
/// A reporting command's reader went away: 128 + SIGPIPE.
pub const BROKEN_PIPE: u8 = 141;

/// Every code with its name and what it means, in a line: `--help`
/// prints it (README's table says more; a test keeps its codes and names
/// equal to these).
pub const TABLE: &[(u8, &str, &str)] = &[
    (SUCCESS, "SUCCESS", "success"),
    (
        FLOW_FAILED,
        "FLOW_FAILED",
        "a step failed; the flow was rolled back (failed-rolled-back)",
    ),
    (
        INVALID_INPUT,
        "INVALID_INPUT",
        "bad input: usage, an invalid flow, an unknown run; nothing ran",
    ),
    (
        ENGINE_ERROR,
        "ENGINE_ERROR",
        "the engine could not work (its WebAssembly engine or state directory)",
    ),
    (
        ROLLBACK_INCOMPLETE,
        "ROLLBACK_INCOMPLETE",
        "the rollback is incomplete: needs attention (failed-rollback-incomplete)",
    ),
    (
        BLOCKED,
        "BLOCKED",
        "nothing ran: an unfinished run needs recovering, or a mount is in use",
    ),
    (
        UNDO_REFUSED,
        "UNDO_REFUSED",
        "`undo` refused: paths changed since the run",
    ),
    (
        COMMIT_FAILED,
        "COMMIT_FAILED",
        "every step succeeded but the run could not be committed: rolled back",
    ),
    (
        FAILED_NOT_ROLLED_BACK,
        "FAILED_NOT_ROLLED_BACK",
        "a step failed under on-failure = \"stop\" (or without a journal): changes left in place",
    ),
    (
        INTERRUPTED,
        "INTERRUPTED",
        "interrupted by Ctrl-C and rolled back (interrupted-rolled-back)",
    ),
    (BROKEN_PIPE, "BROKEN_PIPE", "the reader of the output went away"),
    (
        TERMINATED,
        "TERMINATED",
        "interrupted by SIGTERM and rolled back (interrupted-rolled-back)",
    ),
];

/// The code of a run that ended: its status's, the one outcome the
/// runner decided and its last event says.
pub fn of_run(report: &RunReport) -> u8 {
    of_status(report.status)
}

/// The code of a run that ended with `status`.
pub fn of_status(status: FlowStatus) -> u8 {
    match status {
        FlowStatus::Succeeded => SUCCESS,
        FlowStatus::RolledBack => FLOW_FAILED,
        FlowStatus::RollbackIncomplete => ROLLBACK_INCOMPLETE,
        FlowStatus::NotRolledBack => FAILED_NOT_ROLLED_BACK,
        FlowStatus::Interrupted => INTERRUPTED,
        FlowStatus::Uncommitted => COMMIT_FAILED,
    }
}

/// The code of a run that could not start (or go on).
pub fn of_run_error(e: &RunError) -> u8 {
    match e {
        RunError::NeedsRecovery { .. } | RunError::Busy(_) => BLOCKED,
        RunError::Journal(_) => ENGINE_ERROR,
    }
}

/// The code of a rollback (`undo`'s, `recover`'s): 4 where a path is not
/// restored.
pub fn of_rollback(report: &RollbackReport) -> u8 {
    match !report.problems.is_empty() {
        true => ROLLBACK_INCOMPLETE,
        false => SUCCESS,
    }
}

/// The code of an undo that did not happen.
pub fn of_undo_error(e: &UndoError) -> u8 {
    match e {
        UndoError::NoSuchRun(_) | UndoError::Ambiguous(..) => INVALID_INPUT,
        UndoError::NotUndoable(_) | UndoError::Unfinished(_) | UndoError::Drifted(_) => UNDO_REFUSED,
        UndoError::Busy(_) => BLOCKED,
        UndoError::Io(_) => ENGINE_ERROR,
    }
}

/// The code of a recovery that could not run.
pub fn of_recover_error(e: &RecoverError) -> u8 {
    match e {
        RecoverError::Busy(_) => BLOCKED,
        RecoverError::Io(_) => ENGINE_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_that_needs_attention_is_4_and_a_busy_mount_5_everywhere() {
        assert_eq!(of_status(FlowStatus::RollbackIncomplete), ROLLBACK_INCOMPLETE);
        assert_eq!(of_status(FlowStatus::NotRolledBack), FAILED_NOT_ROLLED_BACK);
        let in_use = crate::journal::InUse {
            mount: "app".into(),
            host: "/srv/app".into(),
            holder: "run r".into(),
        };
        assert_eq!(of_run_error(&RunError::Busy(in_use.clone())), BLOCKED);
        assert_eq!(of_undo_error(&UndoError::Busy(in_use.clone())), BLOCKED);
        assert_eq!(of_recover_error(&RecoverError::Busy(in_use)), BLOCKED);
    }
}
