//! What each step changed, in words, from its journal: one list that
//! `show RUN` prints and `show RUN --output json` gives, so that the two
//! agree. Beside the undo records (the first change a run makes to a
//! path), a step that changes again what the run already owns (a file an
//! earlier step created) has only its `left` records, and what it does
//! inside a directory the run created only its `made` and `wrote` ones
//! (by inode, without paths): those are listed too, so that a step that
//! reported changes never lists none.

use std::collections::{HashMap, HashSet};
use stepback::journal::{Change, EntryState, Record, UndoOp};

/// One change, as `show` lists it.
pub struct Listed<'r> {
    /// The record it comes from, by position in the journal.
    pub at: usize,
    /// The step (or action, by its journal index) that made it.
    pub step: usize,
    /// Its mount.
    pub mount: &'r str,
    /// Its path in the mount.
    pub path: &'r str,
    /// What happened, in words ("created (12 bytes)").
    pub what: String,
}

impl Listed<'_> {
    /// Changes counted, not at one path (`mount` and `path` empty).
    fn counted(at: usize, step: usize, what: String) -> Self {
        Listed {
            at,
            step,
            mount: "",
            path: "",
            what,
        }
    }
}

/// Every change the journal of a run holds, in the journal's order.
pub fn list(records: &[Record]) -> Vec<Listed<'_>> {
    let voided = stepback::journal::voided(records);
    let left = states_after(records);
    let mut listed = Vec::new();
    // The paths listed for the step being read, and which step it is.
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut step = 0;
    let mut made = HashSet::new();
    let own = by_path(records);
    for (at, record) in records.iter().enumerate() {
        match record {
            Record::Step { index, .. } | Record::Action { index, .. } => {
                (step, seen) = (*index, HashSet::new());
            }
            Record::Undo {
                seq,
                mount,
                change,
                undo,
                ..
            } if !voided.contains(seq) => {
                seen.insert((mount, undo.path()));
                let now = left.get(&at).copied();
                if let Some(what) = describe(*change, undo, now) {
                    listed.push(Listed {
                        at,
                        step,
                        mount,
                        path: undo.path(),
                        what,
                    });
                }
            }
            // Inside a directory the run created, entries have no records
            // of their own (the directory's undo removes them all): what
            // the step did there is counted.
            Record::Made { ids } => {
                // Counted once, by the step that made it, less the entries
                // with records of their own (what the step created).
                let new = ids.iter().filter(|id| made.insert(**id)).count();
                let what = match new.saturating_sub(own[&step].created) {
                    0 => continue,
                    1 => "made 1 entry of the run's own (in a directory it created)".to_owned(),
                    n => format!("made {n} entries of the run's own (in directories it created)"),
                };
                listed.push(Listed::counted(at, step, what));
            }
            Record::Wrote { files } => {
                // Less those left at a path the step has records of.
                let files: Vec<_> = files
                    .iter()
                    .filter(|f| !own[&step].left.contains(&(f.size, f.mtime.0, f.mtime.1)))
                    .collect();
                let bytes: u64 = files.iter().map(|f| f.size).sum();
                let what = match files.len() {
                    0 => continue,
                    1 => format!("wrote 1 file of the run's own ({bytes} bytes)"),
                    n => format!("wrote {n} files of the run's own ({bytes} bytes)"),
                };
                listed.push(Listed::counted(at, step, what));
            }
            Record::Left { mount, path, state } if seen.insert((mount, path)) => {
                if let Some(what) = again(state) {
                    listed.push(Listed {
                        at,
                        step,
                        mount,
                        path,
                        what,
                    });
                }
            }
            _ => {}
        }
    }
    listed
}

/// What a step (or action) has records of by path: how many entries it
/// created, and each file it left (size and time), to tell apart what it
/// did inside a directory the run created.
#[derive(Default)]
struct ByPath {
    created: usize,
    left: HashSet<(u64, i64, u32)>,
}

/// [`ByPath`] of each step, by index.
fn by_path(records: &[Record]) -> HashMap<usize, ByPath> {
    let mut steps: HashMap<usize, ByPath> = HashMap::from([(0, ByPath::default())]);
    let mut step = 0;
    for record in records {
        match record {
            Record::Step { index, .. } | Record::Action { index, .. } => step = *index,
            Record::Undo {
                change: Change::Created,
                ..
            } => steps.entry(step).or_default().created += 1,
            Record::Left {
                state: Some(EntryState::File { size, mtime }),
                ..
            } => {
                steps
                    .entry(step)
                    .or_default()
                    .left
                    .insert((*size, mtime.0, mtime.1));
            }
            _ => {}
        }
        steps.entry(step).or_default();
    }
    steps
}

/// For each undo record, by position, what the run left at its path when
/// the step was done with it: the next `left` (or `final`) record of it.
fn states_after(records: &[Record]) -> HashMap<usize, &Option<EntryState>> {
    let mut next: HashMap<(&str, &str), &Option<EntryState>> = HashMap::new();
    let mut after = HashMap::new();
    for (at, record) in records.iter().enumerate().rev() {
        match record {
            Record::Left { mount, path, state } | Record::Final { mount, path, state } => {
                next.insert((mount, path), state);
            }
            Record::Undo { mount, undo, .. } => {
                if let Some(state) = next.get(&(mount.as_str(), undo.path())) {
                    after.insert(at, *state);
                }
            }
            _ => {}
        }
    }
    after
}

/// A path the run already owned, changed again by a later step (its
/// directories are not listed: any change inside moves them).
fn again(state: &Option<EntryState>) -> Option<String> {
    Some(match state {
        Some(EntryState::File { size, .. }) => format!("changed again ({size} bytes)"),
        Some(EntryState::Symlink { target }) => format!("changed again (symlink -> {target})"),
        None => "removed again".to_owned(),
        // Directories, and kinds of a newer engine.
        Some(_) => return None,
    })
}

/// One line per change a step made; bookkeeping records (directory times
/// saved because an entry inside changed) are not shown. `now`: what the
/// run left at the path, for the size of what it created.
fn describe(change: Change, undo: &UndoOp, now: Option<&Option<EntryState>>) -> Option<String> {
    if !stepback::journal::is_change(change, undo) {
        return None;
    }
    Some(match (change, undo) {
        (Change::Created, UndoOp::Created { tree: true, .. }) => "created directory".into(),
        (Change::Created, _) => match now {
            Some(Some(EntryState::File { size, .. })) => format!("created ({size} bytes)"),
            Some(Some(EntryState::Symlink { target })) => format!("created symlink (-> {target})"),
            Some(Some(EntryState::Dir)) => "created directory".into(),
            _ => "created".into(),
        },
        (Change::Replaced, UndoOp::Saved { size, .. } | UndoOp::Copied { size, .. }) => match now {
            Some(Some(EntryState::File { size: new, .. })) => {
                format!("replaced (was {size} bytes, now {new})")
            }
            _ => format!("replaced (was {size} bytes)"),
        },
        (Change::Modified, UndoOp::Copied { size, .. }) => format!("modified in place (was {size} bytes)"),
        (Change::Deleted, UndoOp::Saved { tree: true, .. }) => "deleted directory".into(),
        (Change::Deleted, UndoOp::Saved { size, .. } | UndoOp::Copied { size, .. }) => {
            format!("deleted file ({size} bytes)")
        }
        (Change::Deleted | Change::Replaced, UndoOp::RemovedDir { .. }) => "deleted directory".into(),
        (Change::Deleted | Change::Replaced, UndoOp::RemovedSymlink { target, .. }) => {
            format!("deleted symlink (-> {target})")
        }
        (Change::Renamed, UndoOp::Renamed { from, .. }) => format!("renamed from /{from}"),
        (_, UndoOp::Attributes { mode, .. }) => format!("mode or owner changed (was {:o})", mode & 0o7777),
        (_, UndoOp::Snapshot { backup: Some(_), .. }) => "snapshot before a command (restored whole)".into(),
        (_, UndoOp::Snapshot { backup: None, .. }) => "absent before a command (removed on rollback)".into(),
        (_, _) => "changed".into(),
    })
}
