//! Finishing what a stopped engine left behind: runs whose journal has no
//! end record are rolled back, newest change first, from where any earlier
//! rollback stopped.
//!
//! A run still in progress in another process also has no end record; its
//! mount locks tell it apart, and it is left alone.

use crate::journal::{
    Fault, JournalWriter, MountLocks, MountRecord, RollbackReport, RunStore, RunSummary, adopt_orphans,
    rollback,
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
        let report = rollback(&run.dir, &records, &mut writer, fault);
        recovered.push(Recovered { run, adopted, report });
    }
    Ok(recovered)
}
