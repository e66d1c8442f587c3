//! Exit codes: the one table, and the only place where outcomes and errors
//! become codes. README's table repeats it (a test keeps the two equal).
//! The library's enums are `#[non_exhaustive]`: an outcome or error this
//! CLI does not know yet is a failure (1) or an engine error (3), never 0.

use stepback::events::FlowStatus;
use stepback::history::UndoError;
use stepback::journal::RollbackReport;
use stepback::recovery::RecoverError;
use stepback::runner::{RunError, RunReport};

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

/// Every code with what it means, in a line: `--help` prints it (README's
/// table says more; a test keeps its codes equal to these).
pub const TABLE: &[(u8, &str)] = &[
    (SUCCESS, "success"),
    (
        FLOW_FAILED,
        "a step failed; the flow was rolled back (failed-rolled-back)",
    ),
    (
        INVALID_INPUT,
        "bad input: usage, an invalid flow, an unknown run; nothing ran",
    ),
    (
        ENGINE_ERROR,
        "the engine could not work (its WebAssembly engine or state directory)",
    ),
    (
        ROLLBACK_INCOMPLETE,
        "the rollback is incomplete: needs attention (failed-rollback-incomplete)",
    ),
    (
        BLOCKED,
        "nothing ran: a run needs `stepback recover`, or a mount is in use",
    ),
    (UNDO_REFUSED, "`undo` refused: paths changed since the run"),
    (
        COMMIT_FAILED,
        "every step succeeded but the run could not be committed: rolled back",
    ),
    (
        FAILED_NOT_ROLLED_BACK,
        "a step failed under on-failure = \"stop\": changes left in place",
    ),
    (
        INTERRUPTED,
        "interrupted by Ctrl-C and rolled back (interrupted-rolled-back)",
    ),
    (BROKEN_PIPE, "the reader of the output went away"),
    (
        TERMINATED,
        "interrupted by SIGTERM and rolled back (interrupted-rolled-back)",
    ),
];

/// [`TABLE`] as `--help` prints it.
pub fn help() -> String {
    let lines: Vec<String> = TABLE
        .iter()
        .map(|(code, what)| format!("  {code:>3}  {what}"))
        .collect();
    format!("Exit codes:\n{}", lines.join("\n"))
}

/// A rollback that left paths unrestored needs attention above all else.
fn incomplete(rollback: Option<&RollbackReport>) -> bool {
    rollback.is_some_and(|r| !r.problems.is_empty())
}

pub fn of_run(report: &RunReport) -> u8 {
    if incomplete(report.rollback.as_ref()) {
        return ROLLBACK_INCOMPLETE;
    }
    match report.status {
        FlowStatus::Succeeded => SUCCESS,
        FlowStatus::RolledBack => FLOW_FAILED,
        FlowStatus::RollbackIncomplete => ROLLBACK_INCOMPLETE,
        FlowStatus::NotRolledBack => FAILED_NOT_ROLLED_BACK,
        FlowStatus::Interrupted => INTERRUPTED,
        FlowStatus::Uncommitted => COMMIT_FAILED,
        // An outcome this CLI does not know: not a success.
        _ => FLOW_FAILED,
    }
}

pub fn of_run_error(e: &RunError) -> u8 {
    match e {
        RunError::NeedsRecovery(_) | RunError::Busy(_) => BLOCKED,
        RunError::Journal(_) => ENGINE_ERROR,
        _ => ENGINE_ERROR,
    }
}

pub fn of_rollback(report: &RollbackReport) -> u8 {
    match incomplete(Some(report)) {
        true => ROLLBACK_INCOMPLETE,
        false => SUCCESS,
    }
}

pub fn of_undo_error(e: &UndoError) -> u8 {
    match e {
        UndoError::NoSuchRun(_) | UndoError::Ambiguous(..) => INVALID_INPUT,
        UndoError::NotUndoable(_) | UndoError::Unfinished(_) | UndoError::Drifted(_) => UNDO_REFUSED,
        UndoError::Busy(_) => BLOCKED,
        UndoError::Io(_) => ENGINE_ERROR,
        _ => ENGINE_ERROR,
    }
}

pub fn of_recover_error(e: &RecoverError) -> u8 {
    match e {
        RecoverError::Busy(_) => BLOCKED,
        RecoverError::Io(_) => ENGINE_ERROR,
        _ => ENGINE_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_lists_every_exit_code_and_no_other() {
        let readme = include_str!("../../../README.md");
        let table = readme
            .split("Exit codes (")
            .nth(1)
            .expect("README has an exit code table");
        let mut listed: Vec<u8> = table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.trim_start_matches('|').split('|').next()?.trim().parse().ok())
            .collect();
        listed.sort();
        let mut all: Vec<u8> = TABLE.iter().map(|(code, _)| *code).collect();
        all.sort();
        assert_eq!(listed, all);
    }

    #[test]
    fn every_commands_help_ends_with_the_table() {
        let cli = super::super::args::command();
        for command in cli.get_subcommands().chain([&cli]) {
            let after = command.get_after_long_help().map(ToString::to_string);
            assert_eq!(after.as_deref(), Some(&*help()), "{}", command.get_name());
        }
    }
}
