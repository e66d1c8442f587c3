//! Finishing what a stopped engine left behind: runs whose journal has no
//! end record are rolled back, newest change first, from where any earlier
//! rollback stopped.
//!
//! A run still in progress in another process also has no end record; its
//! mount locks tell it apart, and it is left alone.

use crate::journal::{
    Fault, JournalWriter, MountLocks, Record, RollbackReport, RunStore, RunSummary, rollback,
};
use std::path::{Path, PathBuf};

pub struct Recovered {
    pub run: RunSummary,
    pub report: RollbackReport,
}

fn mounts_of(records: &[Record]) -> Vec<(String, PathBuf)> {
    match records.first() {
        Some(Record::Begin { mounts, .. }) => {
            mounts.iter().map(|m| (m.name.clone(), m.host.clone())).collect()
        }
        _ => Vec::new(),
    }
}

/// Unfinished runs that no running process holds, with their records.
pub fn abandoned(state_dir: &Path) -> anyhow::Result<Vec<(RunSummary, Vec<Record>)>> {
    let mut runs = Vec::new();
    for run in RunStore::new(state_dir).unfinished()? {
        let records = run.dir.records()?;
        if MountLocks::acquire(state_dir, &mounts_of(&records), "a check for abandoned runs").is_ok() {
            runs.push((run, records));
        }
    }
    Ok(runs)
}

/// Rolls back every abandoned run.
pub fn recover(state_dir: &Path, fault: Fault) -> anyhow::Result<Vec<Recovered>> {
    let mut recovered = Vec::new();
    for (run, records) in abandoned(state_dir)? {
        let holder = format!("recovery of run {} (pid {})", run.dir.id, std::process::id());
        let _locks = MountLocks::acquire(state_dir, &mounts_of(&records), &holder)?;
        let mut writer = JournalWriter::open(&run.dir.journal())?;
        let report = rollback(&run.dir, &records, &mut writer, fault);
        recovered.push(Recovered { run, report });
    }
    Ok(recovered)
}
