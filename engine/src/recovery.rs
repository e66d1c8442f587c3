//! Finishing what a stopped engine left behind: runs whose journal has no
//! end record are rolled back, newest change first, from where any earlier
//! rollback stopped.
//!
//! A run still in progress in another process also has no end record; its
//! mount locks tell it apart, and it is left alone.

use crate::journal::{
    Ending, Fault, JournalWriter, MountLocks, MountRecord, Record, RollbackReport, RunStore, RunSummary,
    adopt_orphans, end_rollback, rollback,
};
use std::path::{Path, PathBuf};

/// A run that recovery finished.
pub struct Recovered {
    /// The run, as its journal describes it.
    pub run: RunSummary,
    /// Backups whose journal records were lost with the journal's unsynced
    /// end (power loss), found by their names and rolled back with the rest.
    pub adopted: usize,
    /// What the rollback did; none when the run's failure said to keep its
    /// changes (`on-failure = "stop"`): it is committed instead, and can
    /// be undone.
    pub report: Option<RollbackReport>,
    /// The failure's actions that did not run, did not finish, or failed,
    /// which recovery does not run (they are the flow's, and it has no
    /// flow).
    pub actions: Vec<ActionLeft>,
}

/// An action of a run's failure that recovery found not done.
pub struct ActionLeft {
    /// Its name.
    pub name: String,
    /// What became of it.
    pub how: Left,
}

/// What became of an action the stopped engine had planned.
pub enum Left {
    /// It never started.
    NotRun,
    /// It started and the engine stopped while it ran.
    Unfinished,
    /// It ended with this error (before the engine stopped).
    Failed(String),
    /// The engine stopped during this step, before a failure was
    /// recorded: the action is one an interrupt there would have run.
    StoppedIn(String),
}

impl std::fmt::Display for Left {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Left::NotRun => f.write_str("did not run: the engine stopped before it"),
            Left::Unfinished => f.write_str("did not finish: the engine stopped while it ran"),
            Left::Failed(e) => write!(f, "failed: {e}"),
            Left::StoppedIn(step) => write!(
                f,
                "did not run: the engine stopped during step '{step}', whose failure runs it"
            ),
        }
    }
}

/// The actions the failure in `records` planned and did not end well,
/// each with its index; and the failure's policy.
fn actions_left(records: &[Record]) -> (Vec<(usize, ActionLeft)>, Option<&str>) {
    let failed = records.iter().rev().find_map(|r| match r {
        Record::Failed { actions, policy, .. } => Some((actions.as_slice(), policy.as_str())),
        _ => None,
    });
    let Some((planned, policy)) = failed else {
        return (stopped_in_step(records), None);
    };
    let ended = |i: usize| {
        records.iter().find_map(|r| match r {
            Record::ActionEnded { index, error } if *index == i => Some(error.clone()),
            _ => None,
        })
    };
    let started = |i: usize| {
        records
            .iter()
            .any(|r| matches!(r, Record::Action { index, .. } if *index == i))
    };
    let left = planned.iter().filter_map(|a| {
        let how = match ended(a.index) {
            Some(None) => return None,
            Some(Some(e)) => Left::Failed(e),
            None if started(a.index) => Left::Unfinished,
            None => Left::NotRun,
        };
        Some((
            a.index,
            ActionLeft {
                name: a.name.clone(),
                how,
            },
        ))
    });
    (left.collect(), Some(policy))
}

/// Without a failure recorded, the engine stopped during (or just after)
/// the last step that started: the actions an interrupt there runs.
fn stopped_in_step(records: &[Record]) -> Vec<(usize, ActionLeft)> {
    let last = records.iter().rev().find_map(|r| match r {
        Record::Step { name, if_stopped, .. } => Some((name, if_stopped)),
        _ => None,
    });
    let Some((step, actions)) = last else {
        return Vec::new();
    };
    actions
        .iter()
        .map(|a| {
            let how = Left::StoppedIn(step.clone());
            (
                a.index,
                ActionLeft {
                    name: a.name.clone(),
                    how,
                },
            )
        })
        .collect()
}

fn mounts_of(mounts: &[MountRecord]) -> Vec<(String, PathBuf)> {
    mounts.iter().map(|m| (m.name.clone(), m.host.clone())).collect()
}

/// Unfinished runs that no running process holds.
pub fn abandoned(state_dir: &Path) -> anyhow::Result<Vec<RunSummary>> {
    let mut runs = Vec::new();
    for run in RunStore::new(state_dir).unfinished()? {
        if MountLocks::acquire(state_dir, &mounts_of(&run.mounts), "a check for abandoned runs").is_ok() {
            runs.push(run);
        }
    }
    Ok(runs)
}

/// Why `recover` could not run.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecoverError {
    /// A mount of the run is locked by a flow that is running.
    Busy(crate::journal::InUse),
    /// The state directory or a journal could not be used.
    Io(anyhow::Error),
}

impl std::fmt::Display for RecoverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoverError::Busy(in_use) => in_use.fmt(f),
            RecoverError::Io(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for RecoverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecoverError::Busy(in_use) => Some(in_use),
            RecoverError::Io(e) => Some(e.as_ref()),
        }
    }
}

/// Rolls back every abandoned run.
pub fn recover(state_dir: &Path) -> Result<Vec<Recovered>, RecoverError> {
    let fault = Fault::from_env();
    let io = |e: anyhow::Error| RecoverError::Io(e);
    crate::state::ensure_private(state_dir).map_err(io)?;
    let mut recovered = Vec::new();
    for run in abandoned(state_dir).map_err(io)? {
        let holder = format!("recovery of run {} (pid {})", run.dir.id, std::process::id());
        let _locks = MountLocks::acquire(state_dir, &mounts_of(&run.mounts), &holder)
            .map_err(|e| crate::journal::InUse::of(&e).map_or(RecoverError::Io(e), RecoverError::Busy))?;
        let (mut writer, mut records) =
            JournalWriter::resume(&run.dir.journal()).map_err(|e| io(e.into()))?;
        let adopted = adopt_orphans(&run.dir, &mut records, &mut writer).map_err(|e| io(e.into()))?;
        let (left, policy) = actions_left(&records);
        let report = match policy {
            // Its changes stay, as its failure said: committed.
            Some("stop") => {
                end_actions(&mut writer, &left)
                    .and_then(|()| writer.append(&Record::Committed))
                    .map_err(|e| io(e.into()))?;
                None
            }
            _ => Some(finish_rollback(&run, &records, &mut writer, (fault, &left))),
        };
        recovered.push(Recovered {
            run,
            adopted,
            report,
            actions: left.into_iter().map(|(_, a)| a).collect(),
        });
    }
    Ok(recovered)
}

/// Ends each action in `left` that has not ended in the journal.
fn end_actions(writer: &mut JournalWriter, left: &[(usize, ActionLeft)]) -> std::io::Result<()> {
    for (index, action) in left {
        if !matches!(action.how, Left::Failed(_)) {
            writer.append(&Record::ActionEnded {
                index: *index,
                error: Some(format!("{} (`recover` runs no actions)", action.how)),
            })?;
        }
    }
    Ok(())
}

/// Rolls run `run` back; with actions `left` to end first, the revert
/// records `reverted` and the run ends after them.
fn finish_rollback(
    run: &RunSummary,
    records: &[Record],
    writer: &mut JournalWriter,
    (fault, left): (Fault, &[(usize, ActionLeft)]),
) -> RollbackReport {
    let unended = left.iter().any(|(_, a)| !matches!(a.how, Left::Failed(_)));
    let ending = match unended {
        true => Ending::ActionFollows,
        false => Ending::Final,
    };
    let mut report = rollback(&run.dir, records, writer, (fault, ending));
    if unended && let Err(e) = end_actions(writer, left).and_then(|()| end_rollback(writer, &report)) {
        report.problems.push(crate::journal::unrecorded_end(&e));
    }
    report
}
