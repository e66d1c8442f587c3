//! The run's journal from its first record to its last: steps and actions
//! begun and ended (with what each left at the paths it touched), a
//! failure, and the commit with every changed path's final state.

use super::RunJournal;
use super::finals::final_states_beneath;
use crate::journal::record::{EntryState, FailureAction, FileLeft, Record};
use std::io;

impl RunJournal {
    /// Starts step `index`; `if_stopped`: the actions an interrupt
    /// during it would run, for `recover` to name.
    pub fn start_step(&mut self, index: usize, name: &str, if_stopped: &[FailureAction]) -> io::Result<()> {
        self.tracked.step = index;
        self.writer.append(&Record::Step {
            index,
            name: name.to_owned(),
            if_stopped: if_stopped.to_vec(),
        })
    }

    /// Starts an action a failure runs (`index` after the steps'): its
    /// changes are recorded like a step's, and never reverted.
    pub fn start_action(&mut self, index: usize, name: &str) -> io::Result<()> {
        self.tracked.step = index;
        self.writer.append(&Record::Action {
            index,
            name: name.to_owned(),
        })
    }

    /// Marks the step just started as one whose changes no rollback
    /// reverts (`revert = false`).
    pub fn keep_step(&mut self, index: usize) -> io::Result<()> {
        self.writer.append(&Record::NotReverted { index })
    }

    /// Records that a failure ended the flow (see [`Record::Failed`]).
    pub fn failed(
        &mut self,
        (step, policy): (&str, &str),
        interrupted: bool,
        actions: Vec<crate::journal::FailureAction>,
    ) -> io::Result<()> {
        self.writer.append(&Record::Failed {
            step: step.to_owned(),
            policy: policy.to_owned(),
            interrupted,
            actions,
        })
    }

    /// Records how an action ended.
    pub fn action_ended(&mut self, index: usize, error: Option<String>) -> io::Result<()> {
        self.writer.append(&Record::ActionEnded { index, error })
    }

    /// What the step's failed calls could not put back, emptied: when
    /// there is any, the step must fail (its records stand, and the
    /// rollback restores what they name).
    pub fn take_unrestored(&mut self) -> Vec<String> {
        std::mem::take(&mut self.tracked.unrestored)
    }

    /// Writes what the step left at every path it touched, and makes the
    /// step's records durable.
    pub fn end_step(&mut self) -> io::Result<()> {
        let touched = std::mem::take(&mut self.tracked.step_paths);
        let made = std::mem::take(&mut self.tracked.step_made);
        if !made.is_empty() {
            let ids = made.into_iter().map(|id| (id.dev, id.ino)).collect();
            self.writer.append_deferred(&Record::Made { ids })?;
        }
        let wrote = std::mem::take(&mut self.tracked.step_wrote);
        if !wrote.is_empty() {
            let files = wrote
                .into_iter()
                .filter_map(|id| {
                    let &(size, mtime) = self.tracked.known.written.get(&id)?;
                    Some(FileLeft { id, size, mtime })
                })
                .collect();
            self.writer.append_deferred(&Record::Wrote { files })?;
        }
        let mut left: Vec<Record> = self
            .states_of(touched)?
            .into_iter()
            .map(|(mount, path, state)| Record::Left { mount, path, state })
            .collect();
        left.push(Record::StepEnded {
            index: self.tracked.step,
        });
        self.writer.append_all(left)?;
        self.writer.sync()
    }

    /// Ends the journal of a successful run: the final state of every
    /// path it changed, then `committed`.
    pub fn commit(&mut self) -> io::Result<()> {
        self.fault.before_commit()?;
        let mut finals = Vec::new();
        let mut paths = std::mem::take(&mut self.tracked.paths);
        paths.append(&mut self.tracked.moved);
        for (mount, path, state) in self.states_of(paths)? {
            if self
                .tracked
                .created_trees
                .contains(&(mount.clone(), path.clone()))
                && state == Some(EntryState::Dir)
            {
                final_states_beneath(self.dir(&mount)?, &mount, &path, &mut finals)?;
            }
            finals.push(Record::Final { mount, path, state });
        }
        // A path the run touched in a tree it made is also found by the
        // walk of the tree: one record each.
        let mut seen = std::collections::HashSet::new();
        finals.retain(|r| match r {
            Record::Final { mount, path, .. } => seen.insert((mount.clone(), path.clone())),
            _ => true,
        });
        self.writer.append_all(finals)?;
        self.writer.append(&Record::Committed)
    }
}
