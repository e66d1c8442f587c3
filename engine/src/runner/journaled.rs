//! A run's journal through the states of its life, each a type that
//! owns what it needs: [`Journaled`] while steps and actions run;
//! [`Journaled::finish`] takes it, so that nothing runs against a committed
//! journal, and gives a [`Finished`] run, rolled back or not; a
//! [`RolledBack`] one goes on as [`Resumed`] for the flow's rollback action
//! ([`RolledBack::resume`]), and either ends by stating how the rollback
//! ended.
//!
//! Every step's sandbox holds the journal as its recorder only while the
//! step runs; the states reach it through its lock, never by taking it
//! back from them.

use crate::events::{Emitter, Event};
use crate::flow::Plan;
use crate::grant::Mount;
use crate::journal::{
    Ending, Fault, MountFs, Problem, RollbackReport, RunDir, RunJournal, RunStore, SpaceReserve,
    end_rollback, rollback,
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

/// A run's journal while its steps (or, resumed, the flow's rollback
/// action) run, and where it is kept.
pub(super) struct Journaled {
    journal: Arc<Mutex<RunJournal>>,
    room: Arc<SpaceReserve>,
    pub dir: RunDir,
    /// Injected faults (tests), for the run and its rollback alike.
    fault: Fault,
}

impl Journaled {
    /// Begins the journal of run `run_id` of `plan` on its `writable`
    /// mounts.
    pub fn open(
        run_id: &str,
        plan: &Plan,
        writable: &[&Mount],
        options: &super::RunOptions,
    ) -> anyhow::Result<Journaled> {
        let dir = RunStore::new(&options.state_dir).create(run_id)?;
        let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let room = Arc::new(SpaceReserve::new(options.reserve));
        let fault = Fault::from_env();
        let journal = RunJournal::begin(
            &dir,
            (&plan.name, plan.app.clone()),
            started,
            open_mounts(writable)?,
            options.durability,
            fault,
            room.clone(),
        )?;
        Ok(Journaled {
            journal: Arc::new(Mutex::new(journal)),
            room,
            dir,
            fault,
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, RunJournal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The journal as a step's sandbox records into it.
    pub fn shared(&self) -> Arc<Mutex<RunJournal>> {
        self.journal.clone()
    }

    /// The free-space reserve the step's writes must leave.
    pub fn room(&self) -> Arc<SpaceReserve> {
        self.room.clone()
    }

    /// Commits a successful run, or rolls a `stopped` one back. A run
    /// whose commit fails is rolled back too: it would otherwise be an
    /// unfinished run, which blocks the next one until `recover` rolls it
    /// back. `ending`: whether the flow's rollback action follows.
    pub fn finish(self, (stopped, ending): (bool, Ending), events: &Emitter) -> Finished {
        let uncommitted = match stopped {
            true => false,
            false => match self.lock().commit() {
                Ok(()) => return Finished::Committed,
                Err(e) => {
                    events.emit(Event::Warning {
                        message: format!(
                            "every step succeeded, but the run could not be recorded as committed ({e}): rolling it back"
                        ),
                    });
                    true
                }
            },
        };
        let report = self.roll_back(ending, events);
        let rolled = RolledBack {
            uncommitted,
            journal: self,
        };
        Finished::RolledBack(report, rolled)
    }

    /// Reverts the run's changes, newest first, its records following the
    /// run's in the same journal.
    fn roll_back(&self, ending: Ending, events: &Emitter) -> RollbackReport {
        let mut journal = self.lock();
        let records = self.dir.records();
        events.emit(Event::RollbackStarted {
            changes: records.as_deref().map_or(0, crate::journal::changes_to_undo),
        });
        let started = Instant::now();
        let report = match records {
            Ok(records) => rollback(&self.dir, &records, journal.writer(), (self.fault, ending)),
            Err(e) => RollbackReport {
                undone: 0,
                problems: vec![Problem {
                    mount: String::new(),
                    path: self.dir.journal().display().to_string(),
                    reason: format!("cannot read the journal: {e}"),
                    kept_at: None,
                }],
                kept: Vec::new(),
                not_reversed: Vec::new(),
            },
        };
        events.emit(Event::RollbackFinished {
            undone: report.undone,
            problems: report.problems.clone(),
            kept: report.kept.clone(),
            not_reversed: report.not_reversed.clone(),
            duration_us: crate::events::micros_since(started),
        });
        report
    }
}

/// How a run's journal ended.
pub(super) enum Finished {
    Committed,
    /// The rollback's report, and the run.
    RolledBack(RollbackReport, RolledBack),
}

/// A rolled-back run, its journal to go on with for the flow's rollback
/// action.
pub(super) struct RolledBack {
    /// Why it was rolled back: every step succeeded, but the commit could
    /// not be recorded.
    pub uncommitted: bool,
    journal: Journaled,
}

impl RolledBack {
    /// The journal, for the flow's rollback action, on the run's
    /// `writable` mounts opened again. Where they cannot be, the action
    /// does not run: the journal is handed back to say so.
    pub fn resume(self, writable: &[&Mount]) -> Result<Resumed, (std::io::Error, Unresumed)> {
        match open_mounts(writable) {
            Ok(mounts) => {
                self.journal.lock().resume(mounts);
                Ok(Resumed {
                    journal: self.journal,
                })
            }
            Err(e) => Err((
                e,
                Unresumed {
                    journal: self.journal,
                },
            )),
        }
    }
}

/// A rolled-back run whose mounts could not be opened again for the
/// flow's rollback action, which therefore does not run.
pub(super) struct Unresumed {
    journal: Journaled,
}

impl Unresumed {
    /// Records that the actions `indexes` did not run, and why (so that
    /// `recover` says so, not that the engine stopped before them), then
    /// ends the journal with how the rollback ended (`report`).
    pub fn close(self, indexes: &[usize], why: &str, report: &RollbackReport) -> std::io::Result<()> {
        for &index in indexes {
            self.journal.lock().action_ended(index, Some(why.to_owned()))?;
        }
        end(&self.journal, report)
    }
}

/// A rolled-back run's journal, recording the flow's rollback action.
pub(super) struct Resumed {
    pub journal: Journaled,
}

impl Resumed {
    /// Ends the records of the flow's rollback action by stating again how
    /// the rollback ended (`report`): the run's state is its last record's.
    pub fn close(self, report: &RollbackReport) -> std::io::Result<()> {
        end(&self.journal, report)
    }
}

/// Ends the journal with the rollback's end record.
fn end(journal: &Journaled, report: &RollbackReport) -> std::io::Result<()> {
    end_rollback(journal.lock().writer(), report)
}

fn open_mounts(writable: &[&Mount]) -> std::io::Result<Vec<MountFs>> {
    writable.iter().map(|m| MountFs::open(&m.name, &m.host)).collect()
}
