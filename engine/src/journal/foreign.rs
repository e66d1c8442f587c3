//! Telling other processes' changes from the run's own during a rollback,
//! so that the rollback never overwrites them silently.
//!
//! The run writes a `left` record of every path it touched at the end of
//! each step (and, for paths beneath a directory about to be renamed, just
//! before the rename). A file the step wrote is described as the step left
//! it (when it closed the file, set its times, or ended), not as it is at
//! the end of the step: another process may have edited it since, while
//! the step went on. Undos run newest first, so when the rollback first
//! meets a path, every later change of the run is already undone and the
//! path should hold exactly what the run left there. If something else is
//! there, another process put it there: it is moved aside into the run's
//! backup area (kept, and named in the report) before the undos of that
//! path restore the original.
//!
//! A directory the run created is taken out of the mount whole; before
//! that, whatever in it the run did not make (by the inodes of its `made`
//! records and of the entries it created through captured calls) is moved
//! aside the same way.
//!
//! Which `left` record applies: the newest one written before the oldest
//! rename or move the rollback has undone so far of one of the path's
//! ancestors (before such a rename, the path named another entry).
//!
//! Not checked: entries another process deleted (the undos bring back the original), changes in
//! place to a file with several hard links (undos through its other names
//! change it too, so only its type is compared), entries other than files
//! the step wrote that another process replaced while the step that last
//! touched them still ran, a run whose
//! last step did not end (a crash: that step may have touched paths without
//! records), and a rollback resumed after a crash (its first attempt
//! already moved aside what it found; those are listed again).

use super::entry::{at, entry_with_id, mtime};
use super::places::Places;
use super::record::{EntryState, FileId, Record, Time, UndoOp};
use super::report::Problem;
use cap_fs_ext::DirExt;
use cap_std::fs::Dir;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The prefix of the backup-area names of entries moved aside.
const ASIDE: &str = "foreign-";

/// A path in a mount: (mount, path).
type Key<'r> = (&'r str, &'r str);

/// What the run left at each path, and where the rollback has got to.
pub(super) struct Foreign<'r> {
    enabled: bool,
    resumed: bool,
    /// Per path, its `left` records: position in the journal, state.
    left: HashMap<Key<'r>, Vec<(usize, &'r Option<EntryState>)>>,
    /// Paths already met (checked once, at their newest undo).
    met: HashSet<Key<'r>>,
    /// Paths renamed or moved by undos applied so far, with the position
    /// of the oldest such undo: what lies beneath them was last left
    /// before that.
    horizons: HashMap<Key<'r>, usize>,
    aside: usize,
    /// The modification time of each directory an entry was moved out of,
    /// from before the move: set back once the undos are done, as the
    /// run's own records set back the directories the run changed.
    pub(super) dir_times: HashMap<Key<'r>, Time>,
    /// Entries the run made without records (see `made` records): in a
    /// directory the run created, anything else is another process's.
    made: HashSet<FileId>,
    /// Files the run wrote, as it last left them (`wrote` records), then
    /// as the undos applied so far left them, through any of their names.
    wrote: HashMap<FileId, EntryState>,
}

/// What checking the paths of one undo found.
#[derive(Default)]
pub(super) struct Checked {
    /// Entries of other processes moved aside into the backup area.
    pub kept: Vec<Problem>,
    pub problems: Vec<Problem>,
    /// Something found could not be moved aside: the undo must leave its
    /// path alone, or it would overwrite it.
    pub leave: bool,
}

impl<'r> Foreign<'r> {
    pub(super) fn new(records: &'r [Record]) -> Foreign<'r> {
        let last_step_ended = records
            .iter()
            .rev()
            .find_map(|r| match r {
                Record::Step { .. } => Some(false),
                Record::StepEnded { .. } => Some(true),
                _ => None,
            })
            .unwrap_or(true);
        let resumed = records
            .iter()
            .any(|r| matches!(r, Record::RollbackStarted { .. }));
        let mut left: HashMap<_, Vec<_>> = HashMap::new();
        let mut made = HashSet::new();
        let mut wrote = HashMap::new();
        for (pos, record) in records.iter().enumerate() {
            match record {
                Record::Left { mount, path, state } => left
                    .entry((mount.as_str(), path.as_str()))
                    .or_default()
                    .push((pos, state)),
                Record::Made { ids } => made.extend(ids.iter().map(|&(dev, ino)| FileId { dev, ino })),
                Record::Wrote { files } => wrote.extend(files.iter().map(|f| {
                    let state = EntryState::File {
                        size: f.size,
                        mtime: f.mtime,
                    };
                    (f.id, state)
                })),
                _ => {}
            }
        }
        Foreign {
            enabled: last_step_ended && !resumed,
            resumed,
            left,
            met: HashSet::new(),
            horizons: HashMap::new(),
            aside: 0,
            dir_times: HashMap::new(),
            made,
            wrote,
        }
    }

    /// Before an undo: checks each path it names that the rollback meets
    /// for the first time, and moves aside into the backup area whatever
    /// another process put there.
    pub(super) fn before(
        &mut self,
        mount: &'r str,
        op: &'r UndoOp,
        (root, places): (&Dir, &mut Places),
        backup: &Dir,
        backup_path: &Path,
    ) -> Checked {
        let mut checked = Checked::default();
        if !self.enabled {
            return checked;
        }
        let from = match op {
            UndoOp::Renamed { from, .. } => Some(from.as_str()),
            _ => None,
        };
        for path in std::iter::once(op.path()).chain(from) {
            if !self.met.insert((mount, path)) {
                continue;
            }
            let Some(expected) = self.expected(mount, path) else {
                continue;
            };
            let problem = |reason: String| Problem::new(mount, path, reason);
            // Looked up in its directory, opened once for all its entries.
            let now = match places.locate(mount, root, path) {
                Ok(Some((dir, name))) => entry_with_id(dir, name),
                Ok(None) => entry_with_id(root, path),
                // A path whose directory is not one names nothing.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    Ok(None)
                }
                Err(e) => Err(e),
            };
            let now = match now {
                Ok(now) => now,
                Err(e) => {
                    checked
                        .problems
                        .push(problem(format!("cannot compare it with what the run left: {e}")));
                    continue;
                }
            };
            let (now, last_written) = match now {
                Some((state, id)) => (Some(state), self.wrote.get(&id)),
                None => (None, None),
            };
            // A file the run wrote again after this `left` record, under
            // another name, is as the run last left it.
            let rewritten = matches!(expected, Some(EntryState::File { .. }))
                && last_written.is_some()
                && now.as_ref() == last_written;
            if now.is_none()
                || EntryState::same(expected, &now)
                || rewritten
                || shared_file(root, path, expected, &now)
            {
                continue;
            }
            let found = format!(
                "{} where the run left {}: changed by another process",
                EntryState::describe(&now),
                EntryState::describe(expected)
            );
            self.aside += 1;
            let name = format!("{ASIDE}{}", self.aside);
            // Moving an entry aside can leave a cached directory stale.
            places.dirs.clear();
            let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
            if let std::collections::hash_map::Entry::Vacant(e) = self.dir_times.entry((mount, parent))
                && let Ok(m) = root.symlink_metadata(at(parent))
            {
                e.insert(mtime(&m));
            }
            match root.rename(path, backup, &name) {
                Ok(()) => checked.kept.push(problem(found).kept_at(backup_path.join(&name))),
                Err(e) => {
                    checked.leave = true;
                    checked.problems.push(problem(format!(
                        "{found}; left as it is, not restored (cannot move it into {}: {e})",
                        backup_path.display()
                    )));
                }
            }
        }
        if let UndoOp::Created { path, tree: true, .. } = op {
            self.foreign_in_tree(mount, path, root, (backup, backup_path), &mut checked);
        }
        checked
    }

    /// Moves aside whatever in the directory the run created at `path`
    /// (about to be taken out of the mount whole) the run did not make.
    fn foreign_in_tree(
        &mut self,
        mount: &str,
        path: &str,
        root: &Dir,
        (backup, backup_path): (&Dir, &Path),
        checked: &mut Checked,
    ) {
        let mut pending = vec![path.to_owned()];
        while let Some(dir_path) = pending.pop() {
            let Ok(dir) = root.open_dir_nofollow(at(&dir_path)) else {
                continue;
            };
            let Ok(entries) = dir.entries() else { continue };
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name();
                let Ok(meta) = dir.symlink_metadata(&name) else {
                    continue;
                };
                let shown = format!("{dir_path}/{}", name.to_string_lossy());
                if self.made.contains(&FileId::of(&meta)) {
                    if meta.is_dir() {
                        pending.push(shown);
                    }
                    continue;
                }
                self.aside += 1;
                let aside = format!("{ASIDE}{}", self.aside);
                let problem = |reason: String| Problem::new(mount, &shown, reason);
                match dir.rename(&name, backup, &aside) {
                    Ok(()) => checked.kept.push(
                        problem(
                            "not the run's, in a directory the run created: put there by another process"
                                .into(),
                        )
                        .kept_at(backup_path.join(&aside)),
                    ),
                    Err(e) => {
                        checked.leave = true;
                        checked.problems.push(problem(format!(
                            "not the run's, in a directory the run created: left as it is with the directory (cannot move it into {}: {e})",
                            backup_path.display()
                        )));
                    }
                }
            }
        }
    }

    /// After the undo at position `pos` was applied in `root`: a rename or
    /// move undone changes what the paths beneath its names refer to; a
    /// file's contents or time set back change what it must be found as
    /// under its other names.
    pub(super) fn applied(&mut self, (mount, root): (&'r str, &Dir), pos: usize, op: &'r UndoOp) {
        match op {
            UndoOp::Copied { path, size, meta, .. } => self.set_back(root, path, Some(*size), meta.mtime),
            UndoOp::Times { path, mtime, .. } => self.set_back(root, path, None, *mtime),
            UndoOp::Renamed { from, to } => {
                self.horizons.insert((mount, from), pos);
                self.horizons.insert((mount, to), pos);
            }
            UndoOp::Created { path, .. } | UndoOp::Snapshot { path, .. } => {
                self.horizons.insert((mount, path), pos);
            }
            _ => {}
        }
    }

    /// Notes that a file the run wrote, now at `path`, was given this size
    /// (`None`: unchanged) and time by an undo.
    fn set_back(&mut self, root: &Dir, path: &str, size: Option<u64>, mtime: Time) {
        if !self.enabled || self.wrote.is_empty() {
            return;
        }
        let Ok(meta) = root.symlink_metadata(at(path)) else {
            return;
        };
        if let Some(EntryState::File { size: now, mtime: t }) = self.wrote.get_mut(&FileId::of(&meta)) {
            *now = size.unwrap_or(*now);
            *t = mtime;
        }
    }

    /// The state the run left at `path`, as the rollback should find it now.
    fn expected(&self, mount: &str, path: &str) -> Option<&'r Option<EntryState>> {
        let horizon = super::markers::ancestors(path)
            .filter_map(|a| self.horizons.get(&(mount, a)).copied())
            .min()
            .unwrap_or(usize::MAX);
        self.left
            .get(&(mount, path))?
            .iter()
            .rev()
            .find(|(pos, _)| *pos < horizon)
            .map(|(_, state)| *state)
    }

    /// In a rollback resumed after a crash, what its first attempt moved
    /// aside (it checks nothing itself), to be reported as kept.
    pub(super) fn kept_earlier(&self, backup: &Dir, backup_path: &Path) -> Vec<Problem> {
        if !self.resumed {
            return Vec::new();
        }
        let Ok(entries) = backup.entries() else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(ASIDE))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let reason =
                    "changed by another process (moved aside by an interrupted attempt of this rollback)";
                Problem::new("", "", reason).kept_at(backup_path.join(name))
            })
            .collect()
    }
}

/// Whether a file found with other size or time than the run left is one
/// with several hard links: the undos of changes made through its other
/// names (a time set back, contents written back) change it too, so only
/// a different type says that someone else was here.
fn shared_file(root: &Dir, path: &str, expected: &Option<EntryState>, now: &Option<EntryState>) -> bool {
    use cap_std::fs::MetadataExt;
    matches!(
        (expected, now),
        (Some(EntryState::File { .. }), Some(EntryState::File { .. }))
    ) && root.symlink_metadata(path).is_ok_and(|m| m.nlink() > 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{Change, undo_in_m};

    fn file(size: u64) -> Option<EntryState> {
        Some(EntryState::File {
            size,
            mtime: Time(1, 0),
        })
    }

    fn left(path: &str, size: u64) -> Record {
        Record::Left {
            mount: "m".into(),
            path: path.into(),
            state: file(size),
        }
    }

    #[test]
    fn the_newest_left_record_applies_until_an_ancestor_rename_is_undone() {
        let rename = UndoOp::Renamed {
            from: "d".into(),
            to: "e".into(),
        };
        let records = vec![
            Record::Step {
                index: 0,
                name: "s".into(),
                if_stopped: Vec::new(),
            },
            // d/x as the step left it before renaming d away...
            left("d/x", 1),
            undo_in_m(1, Change::Renamed, rename.clone()),
            // ...and what a later step left at d/x, a new entry.
            left("d/x", 2),
            Record::StepEnded { index: 0 },
        ];
        let mut foreign = Foreign::new(&records);
        assert!(foreign.enabled);
        assert_eq!(foreign.expected("m", "d/x"), Some(&file(2)));
        // Once the rollback has renamed e back to d, d/x is the older entry.
        let root = Dir::open_ambient_dir(".", cap_std::ambient_authority()).unwrap();
        foreign.applied(("m", &root), 2, &rename);
        assert_eq!(foreign.expected("m", "d/x"), Some(&file(1)));
        assert_eq!(foreign.expected("m", "other"), None);
    }

    #[test]
    fn nothing_is_checked_after_a_crash_mid_step_or_in_a_resumed_rollback() {
        let step = Record::Step {
            index: 0,
            name: "s".into(),
            if_stopped: Vec::new(),
        };
        let crashed = vec![step.clone(), left("a", 1)];
        assert!(!Foreign::new(&crashed).enabled);
        let resumed = vec![
            step,
            left("a", 1),
            Record::StepEnded { index: 0 },
            Record::RollbackStarted { boot: None },
        ];
        assert!(!Foreign::new(&resumed).enabled);
    }
}
