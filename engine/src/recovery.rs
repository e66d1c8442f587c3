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

pub struct Recovered {
    pub run: RunSummary,
    /// Backups whose journal records were lost with the journal's unsynced
    /// end (power loss), found by their names and rolled back with the rest.
    pub adopted: usize,
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

/// Rolls back every abandoned run.
pub fn recover(state_dir: &Path, fault: Fault) -> anyhow::Result<Vec<Recovered>> {
    crate::state::ensure_private(state_dir)?;
    let mut recovered = Vec::new();
    for run in abandoned(state_dir)? {
        let holder = format!("recovery of run {} (pid {})", run.dir.id, std::process::id());
        let _locks = MountLocks::acquire(state_dir, &mounts_of(&run.mounts), &holder)?;
        let (mut writer, mut records) = JournalWriter::resume(&run.dir.journal())?;
        let adopted = adopt_orphans(&run.dir, &mut records, &mut writer)?;
        let report = rollback(&run.dir, &records, &mut writer, fault);
        recovered.push(Recovered { run, adopted, report });
    }
    Ok(recovered)
}
