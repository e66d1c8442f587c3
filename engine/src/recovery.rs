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

/// A run that recovery rolled back.
pub struct Recovered {
    /// The run, as its journal describes it.
    pub run: RunSummary,
    /// Backups whose journal records were lost with the journal's unsynced
    /// end (power loss), found by their names and rolled back with the rest.
    pub adopted: usize,
    /// What the rollback did.
    pub report: RollbackReport,
    /// The failure's actions the stopped engine never finished, which
    /// recovery does not run (they are the flow's, and it has no flow):
    /// each with why.
    pub actions_not_run: Vec<(String, &'static str)>,
}

/// The actions the failure in `records` planned and did not end, each
/// with why.
fn unfinished_actions(records: &[Record]) -> Vec<(usize, String, &'static str)> {
    let planned = records.iter().rev().find_map(|r| match r {
        Record::Failed { actions, .. } => Some(actions.as_slice()),
        _ => None,
    });
    let has = |want: &dyn Fn(&Record) -> bool| records.iter().any(want);
    planned
        .unwrap_or_default()
        .iter()
        .filter(|a| !has(&|r| matches!(r, Record::ActionEnded { index, .. } if *index == a.index)))
        .map(|a| {
            let why = match has(&|r| matches!(r, Record::Action { index, .. } if *index == a.index)) {
                true => "did not finish: the engine stopped while it ran",
                false => "did not run: the engine stopped before it",
            };
            (a.index, a.name.clone(), why)
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
    Busy(anyhow::Error),
    /// The state directory or a journal could not be used.
    Io(anyhow::Error),
}

impl std::fmt::Display for RecoverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoverError::Busy(e) | RecoverError::Io(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for RecoverError {}

/// Rolls back every abandoned run.
pub fn recover(state_dir: &Path) -> Result<Vec<Recovered>, RecoverError> {
    let fault = Fault::from_env();
    let io = |e: anyhow::Error| RecoverError::Io(e);
    crate::state::ensure_private(state_dir).map_err(io)?;
    let mut recovered = Vec::new();
    for run in abandoned(state_dir).map_err(io)? {
        let holder = format!("recovery of run {} (pid {})", run.dir.id, std::process::id());
        let _locks =
            MountLocks::acquire(state_dir, &mounts_of(&run.mounts), &holder).map_err(RecoverError::Busy)?;
        let (mut writer, mut records) =
            JournalWriter::resume(&run.dir.journal()).map_err(|e| io(e.into()))?;
        let adopted = adopt_orphans(&run.dir, &mut records, &mut writer).map_err(|e| io(e.into()))?;
        let unfinished = unfinished_actions(&records);
        let ending = match unfinished.is_empty() {
            true => Ending::Final,
            false => Ending::ActionFollows,
        };
        let mut report = rollback(&run.dir, &records, &mut writer, (fault, ending));
        if ending == Ending::ActionFollows {
            let ended = unfinished
                .iter()
                .try_for_each(|(index, _, why)| {
                    writer.append(&Record::ActionEnded {
                        index: *index,
                        error: Some(format!("{why} (`recover` runs no actions)")),
                    })
                })
                .and_then(|()| end_rollback(&mut writer, &report));
            if let Err(e) = ended {
                report.problems.push(crate::journal::Problem {
                    mount: String::new(),
                    path: String::new(),
                    reason: format!("cannot record the end of the rollback: {e}"),
                });
            }
        }
        let actions_not_run = unfinished.into_iter().map(|(_, name, why)| (name, why)).collect();
        recovered.push(Recovered {
            run,
            adopted,
            report,
            actions_not_run,
        });
    }
    Ok(recovered)
}
