//! What the run left at the paths it touched: the `left` records of a
//! step's end and the `final` records of a commit, each directory opened
//! once for its entries.

use super::RunJournal;
use crate::journal::entry::{dir_beneath, entry_state, entry_with_id};
use crate::journal::record::{EntryState, FileId, Record};
use cap_std::fs::Dir;
use std::collections::BTreeSet;
use std::io;

impl RunJournal {
    /// A file the step wrote is described as the step left it: a change
    /// another process made since shows as a difference (see
    /// [`crate::journal::foreign`]).
    pub(super) fn as_left(&self, found: Option<(EntryState, FileId)>) -> Option<EntryState> {
        let (state, id) = found?;
        Some(match (state, self.tracked.known.written.get(&id)) {
            (EntryState::File { .. }, Some(&(size, mtime))) => EntryState::File { size, mtime },
            (state, _) => state,
        })
    }

    /// What the run left at each of `paths`.
    pub(super) fn states_of(
        &self,
        paths: BTreeSet<(String, String)>,
    ) -> io::Result<Vec<(String, String, Option<EntryState>)>> {
        let mut out = Vec::with_capacity(paths.len());
        let mut states: Option<(String, States)> = None;
        for (mount, path) in paths {
            if states.as_ref().is_none_or(|(m, _)| *m != mount) {
                states = Some((mount.clone(), States::new(self.dir(&mount)?.try_clone()?)));
            }
            let found = states.as_mut().map_or(Ok(None), |(_, s)| s.of(&path))?;
            out.push((mount, path, self.as_left(found)));
        }
        Ok(out)
    }

    /// Notes that the step touches `path` (a record of an earlier call
    /// names it): what it leaves there is the run's own.
    pub(super) fn touch(&mut self, mount: &str, path: String) {
        let key = (mount.to_owned(), path);
        if self.tracked.paths.contains(&key) {
            self.tracked.step_paths.insert(key);
        }
    }

    /// Notes where the paths beneath directory `from` that the run changed
    /// (or followed here before) go when it is renamed to `to`. Noted
    /// before the rename is made: if it fails, the final state of a path
    /// nothing went to is written all the same, and is true.
    pub(super) fn follow_rename(&mut self, from: (&str, &str), to: (&str, &str)) {
        let prefix = format!("{}/", from.1);
        let start = (from.0.to_owned(), prefix.clone());
        let beneath = |set: &BTreeSet<(String, String)>| -> Vec<String> {
            set.range(start.clone()..)
                .take_while(|(m, p)| m == from.0 && p.starts_with(&prefix))
                .map(|(_, p)| format!("{}/{}", to.1, &p[prefix.len()..]))
                .collect()
        };
        let went = [beneath(&self.tracked.paths), beneath(&self.tracked.moved)].concat();
        self.tracked
            .moved
            .extend(went.into_iter().map(|p| (to.0.to_owned(), p)));
    }

    /// Writes `left` records for the paths the step touched beneath
    /// `dir`, about to be renamed: after that, those paths name other
    /// entries (or nothing), and what the step left under them is what the
    /// rollback finds once it has renamed `dir` back.
    pub(super) fn leave_beneath(&mut self, mount: &str, dir: &str) -> io::Result<()> {
        let prefix = format!("{dir}/");
        let start = (mount.to_owned(), prefix.clone());
        let beneath: Vec<(String, String)> = self
            .tracked
            .step_paths
            .range(start..)
            .take_while(|(m, p)| m == mount && p.starts_with(&prefix))
            .cloned()
            .collect();
        if beneath.is_empty() {
            return Ok(());
        }
        let mut states = States::new(self.dir(mount)?.try_clone()?);
        let mut left = Vec::with_capacity(beneath.len());
        for key in beneath {
            self.tracked.step_paths.remove(&key);
            let state = self.as_left(states.of(&key.1)?);
            left.push(Record::Left {
                mount: key.0,
                path: key.1,
                state,
            });
        }
        self.writer.append_all(left)
    }
}

/// Looks up the states of many paths of one mount, sorted, each directory
/// opened once for its entries: resolving every path from the mount's
/// root costs a few system calls per path of a large step.
pub(super) struct States {
    root: Dir,
    /// The directory of the last path looked up (`None`: it is gone).
    parent: Option<(String, Option<Dir>)>,
}

impl States {
    pub(super) fn new(root: Dir) -> States {
        States { root, parent: None }
    }

    pub(super) fn of(&mut self, path: &str) -> io::Result<Option<(EntryState, FileId)>> {
        let Some((dir, name)) = path.rsplit_once('/') else {
            return entry_with_id(&self.root, path);
        };
        if self.parent.as_ref().is_none_or(|(d, _)| d != dir) {
            // Gone, or no longer a directory (a file or a symlink is
            // there now): the path names nothing.
            self.parent = Some((dir.to_owned(), dir_beneath(&self.root, dir)?));
        }
        match self.parent.as_ref().and_then(|(_, d)| d.as_ref()) {
            Some(d) => entry_with_id(d, name),
            None => Ok(None),
        }
    }
}

/// Final states of everything beneath a directory the run created (those
/// entries have no records of their own). Each directory is opened once and
/// its entries looked up by name: resolving every path from the mount's
/// root would cost a few system calls per entry of a large tree.
pub(super) fn final_states_beneath(
    dir: &Dir,
    mount: &str,
    path: &str,
    out: &mut Vec<Record>,
) -> io::Result<()> {
    let here = dir.open_dir(path)?;
    for entry in here.entries()? {
        // A name that is not UTF-8 is not the run's (a plugin's paths are
        // strings): `undo` finds it, unrecorded, and refuses.
        let Ok(name) = entry?.file_name().into_string() else {
            continue;
        };
        let child = format!("{path}/{name}");
        let state = entry_state(&here, &name)?;
        if state == Some(EntryState::Dir) {
            final_states_beneath(dir, mount, &child, out)?;
        }
        out.push(Record::Final {
            mount: mount.to_owned(),
            path: child,
            state,
        });
    }
    Ok(())
}
