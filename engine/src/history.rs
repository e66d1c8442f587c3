//! Committed runs: undoing one later (`stepback undo`), and bounding the
//! disk their backups use (only the newest few keep theirs).
//!
//! A committed run's journal ends with the final state of every path it
//! changed. Undo compares those with the paths as they are now: if anything
//! changed since (another run, a person), undo refuses and lists the paths,
//! unless forced, because undoing would overwrite those later changes.

use crate::journal::{
    Ending, EntryState, Fault, JournalWriter, MountFs, MountLocks, Record, RollbackReport, RunState,
    RunStore, dir_beneath, entry_state, retry_rollback, rollback,
};
use std::path::Path;

/// How many committed runs keep their backups, and so can be undone.
pub const DEFAULT_KEEP: usize = 5;

#[derive(Debug)]
/// Why a committed run could not be undone.
#[non_exhaustive]
pub enum UndoError {
    /// No run has this id (or prefix, or none is `last`).
    NoSuchRun(String),
    /// The prefix names several runs (these).
    Ambiguous(String, Vec<String>),
    /// Only a committed run with its backups can be undone.
    NotUndoable(String),
    /// The run did not finish: recovery rolls it back.
    Unfinished(String),
    /// Paths changed since the run, each with how and by whom.
    Drifted(Vec<Drift>),
    /// A mount is in use by a running flow.
    Busy(crate::journal::InUse),
    /// The state directory could not be used.
    Io(anyhow::Error),
}

impl std::fmt::Display for UndoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UndoError::NoSuchRun(id) => write!(f, "no run {id:?}"),
            UndoError::Ambiguous(id, runs) => {
                write!(f, "{id:?} names {} runs: {}", runs.len(), runs.join(", "))
            }
            UndoError::NotUndoable(why) => f.write_str(why),
            UndoError::Unfinished(id) => write!(
                f,
                "run {id} did not finish: it is rolled back by recovery, not undone"
            ),
            UndoError::Drifted(paths) => {
                write!(
                    f,
                    "{} path(s) changed since the run; undoing it would overwrite those changes:",
                    paths.len()
                )?;
                paths.iter().try_for_each(|drift| write!(f, "\n  {drift}"))
            }
            UndoError::Busy(in_use) => in_use.fmt(f),
            UndoError::Io(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for UndoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UndoError::Busy(in_use) => Some(in_use),
            UndoError::Io(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// A path that is not as the run left it, found by undo.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Drift {
    /// `MOUNT:/PATH`.
    pub path: String,
    /// How the run left it, in words.
    pub then: String,
    /// How it is now, in words.
    pub now: String,
    /// The newest later run that changed it, if one did: else another
    /// process (or a person) did.
    pub by: Option<LaterRun>,
}

/// A run after the one being undone.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LaterRun {
    /// Its id.
    pub id: String,
    /// Its flow's name.
    pub flow: String,
    /// When it started, RFC 3339.
    pub started: String,
    /// Whether the path is as that run left it (if not, another process
    /// or a person changed it after).
    pub left_it: bool,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} when the run ended, {} now; ",
            self.path, self.then, self.now
        )?;
        match &self.by {
            Some(run) => {
                write!(
                    f,
                    "changed by run {} (flow {:?}, started {})",
                    run.id, run.flow, run.started
                )?;
                match run.left_it {
                    true => Ok(()),
                    false => f.write_str(", then by another process or a person"),
                }
            }
            None => f.write_str("no later Stepback run changed it: another process or a person did"),
        }
    }
}

/// The committed runs after one, with what each left at each path: who
/// changed a path since.
type Left = std::collections::HashMap<(std::path::PathBuf, String), Option<EntryState>>;
struct Later(Vec<(LaterRun, Left)>);

impl Later {
    /// The runs committed after run `id` (ids sort by time).
    fn after(store: &RunStore, id: &str) -> std::io::Result<Later> {
        let mut later = Vec::new();
        for run in store.list()? {
            if run.dir.id.as_str() <= id || !matches!(run.state, RunState::Committed { .. }) {
                continue;
            }
            let hosts: std::collections::HashMap<_, _> = run
                .mounts
                .iter()
                .map(|m| (m.name.clone(), m.host.clone()))
                .collect();
            let left = crate::journal::read_journal(&run.dir.journal())?
                .into_iter()
                .filter_map(|r| match r {
                    Record::Final { mount, path, state } => Some(((hosts.get(&mount)?.clone(), path), state)),
                    _ => None,
                })
                .collect();
            let who = LaterRun {
                id: run.dir.id.clone(),
                flow: run.flow.clone(),
                started: run.started.clone(),
                left_it: true,
            };
            later.push((who, left));
        }
        Ok(Later(later))
    }

    /// The newest of them that changed `path` of host directory `host`,
    /// found `now`.
    fn changed(&self, host: &Path, path: &str, now: &Option<EntryState>) -> Option<LaterRun> {
        let key = (host.to_path_buf(), path.to_owned());
        self.0.iter().rev().find_map(|(run, left)| {
            let state = left.get(&key)?;
            Some(LaterRun {
                left_it: EntryState::same(state, now),
                ..run.clone()
            })
        })
    }
}

/// Reverses committed run `id`, or finishes the rollback of run `id`
/// that could not restore every path.
pub fn undo_run(state_dir: &Path, id: &str, force: bool) -> Result<RollbackReport, UndoError> {
    crate::state::ensure_private(state_dir).map_err(UndoError::Io)?;
    let store = RunStore::new(state_dir);
    let dir = match store.find(id).map_err(|e| UndoError::Io(e.into()))? {
        Ok(dir) => dir,
        Err(matching) if matching.len() > 1 => return Err(UndoError::Ambiguous(id.to_owned(), matching)),
        Err(_) => return Err(UndoError::NoSuchRun(id.to_owned())),
    };
    let (mut writer, records) = JournalWriter::resume(&dir.journal()).map_err(|e| UndoError::Io(e.into()))?;
    let undoing = undoable(id, &records)?;
    let mounts: Vec<(String, std::path::PathBuf)> = match records.first() {
        Some(Record::Begin { mounts, .. }) => {
            mounts.iter().map(|m| (m.name.clone(), m.host.clone())).collect()
        }
        _ => Vec::new(),
    };
    let holder = format!("undo of run {id} (pid {})", std::process::id());
    let _locks = MountLocks::acquire(state_dir, &mounts, &holder)
        .map_err(|e| crate::journal::InUse::of(&e).map_or(UndoError::Io(e), UndoError::Busy))?;
    if undoing == Undoing::Retry {
        return Ok(retry_rollback(&dir, &records, &mut writer, Fault::from_env()));
    }
    let opened = open_pinned(&records, &mounts)?;
    let drifted = drifted(&records, &opened)?;
    if !drifted.is_empty() && !force {
        let later = Later::after(&store, id).map_err(|e| UndoError::Io(e.into()))?;
        let hosts: std::collections::HashMap<_, _> = mounts.iter().cloned().collect();
        let drifts = drifted
            .into_iter()
            .map(
                |Found {
                     mount,
                     path,
                     then,
                     now,
                 }| Drift {
                    by: hosts
                        .get(&mount)
                        .and_then(|host| later.changed(host, &path, &now)),
                    path: format!("{mount}:/{path}"),
                    then,
                    now: EntryState::describe(&now),
                },
            )
            .collect();
        return Err(UndoError::Drifted(drifts));
    }
    Ok(rollback(
        &dir,
        &records,
        &mut writer,
        (Fault::from_env(), Ending::Final),
    ))
}

/// What undoing a run does.
#[derive(PartialEq, Eq)]
enum Undoing {
    /// Reverses a committed run, once nothing changed since (or forced).
    Committed,
    /// Tries again what a rollback could not restore. No final states
    /// tell what changed since; what another process put in the way is
    /// kept aside, as in any rollback.
    Retry,
}

/// Whether run `id` (its `records`) can be undone: committed, its
/// backups kept; or rolled back with paths it could not restore.
fn undoable(id: &str, records: &[Record]) -> Result<Undoing, UndoError> {
    match RunState::of(records) {
        RunState::Committed { pruned: false } => Ok(Undoing::Committed),
        RunState::Committed { pruned: true } => {
            let kept = match records.last() {
                Some(Record::Pruned { keep: Some(keep) }) => {
                    format!(" when the newest {keep} committed runs kept theirs")
                }
                _ => String::new(),
            };
            Err(UndoError::NotUndoable(format!(
                "run {id} can no longer be undone: its backups were pruned{kept}"
            )))
        }
        RunState::RolledBack { problems, .. } if problems > 0 => Ok(Undoing::Retry),
        RunState::RolledBack { .. } => Err(UndoError::NotUndoable(format!(
            "run {id} was already rolled back"
        ))),
        RunState::Unfinished => Err(UndoError::Unfinished(id.to_owned())),
    }
}

/// The run's `mounts`, each the directory it recorded.
fn open_pinned(
    records: &[Record],
    mounts: &[(String, std::path::PathBuf)],
) -> Result<std::collections::HashMap<String, MountFs>, UndoError> {
    let pinned: std::collections::HashMap<&str, _> = match records.first() {
        Some(Record::Begin { mounts, .. }) => mounts.iter().map(|m| (m.name.as_str(), m.id)).collect(),
        _ => Default::default(),
    };
    let mut opened = std::collections::HashMap::new();
    for (name, host) in mounts {
        let id = pinned.get(name.as_str()).copied().flatten();
        opened.insert(
            name.clone(),
            MountFs::open_pinned(name, host, id).map_err(|e| UndoError::Io(e.into()))?,
        );
    }
    Ok(opened)
}

/// What changed since the run committed: every path whose final state is
/// not what is there now, and what was added beneath the directories it
/// made.
fn drifted(
    records: &[Record],
    opened: &std::collections::HashMap<String, MountFs>,
) -> Result<Vec<Found>, UndoError> {
    let mut drifted = Vec::new();
    for record in records {
        let Record::Final { mount, path, state } = record else {
            continue;
        };
        let Some(fs) = opened.get(mount) else { continue };
        let now = entry_state(&fs.dir, path).map_err(|e| UndoError::Io(e.into()))?;
        if !EntryState::same(state, &now) {
            drifted.push(Found {
                mount: mount.clone(),
                path: path.clone(),
                then: EntryState::describe(state),
                now,
            });
        }
    }
    drifted.extend(added_since(records, opened).map_err(|e| UndoError::Io(e.into()))?);
    Ok(drifted)
}

/// Deletes the backups of committed runs older than the newest `keep`, and
/// of cleanly rolled-back runs (their originals are back in place, and
/// nothing of another process's was kept aside).
/// Returns the ids of the runs pruned.
pub fn prune(state_dir: &Path, keep: usize) -> anyhow::Result<Vec<String>> {
    let runs = RunStore::new(state_dir).list()?;
    let committed: Vec<_> = runs
        .iter()
        .filter(|r| r.state == RunState::Committed { pruned: false })
        .collect();
    let old = committed.len().saturating_sub(keep);
    let mut pruned = Vec::new();
    for run in &committed[..old] {
        if run.dir.backup().exists() {
            crate::journal::remove_all(&run.dir.backup())?;
        }
        JournalWriter::open(&run.dir.journal())?.append(&Record::Pruned { keep: Some(keep) })?;
        pruned.push(run.dir.id.clone());
    }
    for run in runs
        .iter()
        .filter(|r| r.state == (RunState::RolledBack { problems: 0, kept: 0 }))
    {
        if run.dir.backup().exists() {
            crate::journal::remove_all(&run.dir.backup())?;
        }
    }
    Ok(pruned)
}

/// A path undo found changed since the run.
struct Found {
    mount: String,
    path: String,
    /// How the run left it, in words.
    then: String,
    /// What is there now.
    now: Option<EntryState>,
}

/// Entries that appeared since the run inside directories the run created
/// (undo would delete them with the directory).
fn added_since(
    records: &[Record],
    mounts: &std::collections::HashMap<String, MountFs>,
) -> std::io::Result<Vec<Found>> {
    use crate::journal::UndoOp;
    use std::collections::HashSet;
    let finals: HashSet<(&str, &str)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Final { mount, path, .. } => Some((mount.as_str(), path.as_str())),
            _ => None,
        })
        .collect();
    let mut added = Vec::new();
    let mut pending: Vec<(String, String)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Undo {
                mount,
                undo: UndoOp::Created { path, tree: true, .. },
                ..
            } => Some((mount.clone(), path.clone())),
            _ => None,
        })
        .collect();
    while let Some((mount, dir)) = pending.pop() {
        let Some(fs) = mounts.get(&mount) else { continue };
        // Gone, or a file or symlink now: nothing was added beneath it.
        let Some(opened) = dir_beneath(&fs.dir, &dir)? else {
            continue;
        };
        for entry in opened.entries()? {
            let name = entry?.file_name();
            let path = Path::new(&dir).join(&name);
            let now = entry_state(&fs.dir, &path)?;
            let was = match name.to_str().map(|name| format!("{dir}/{name}")) {
                Some(path) if finals.contains(&(mount.as_str(), path.as_str())) => {
                    if now == Some(EntryState::Dir) {
                        pending.push((mount.clone(), path));
                    }
                    continue;
                }
                Some(_) => "absent",
                // A plugin's paths are strings: not the run's.
                None => "absent (a name that is not UTF-8 is never the run's)",
            };
            let path = path.to_string_lossy().into_owned();
            added.push(Found {
                mount: mount.clone(),
                path,
                then: was.to_owned(),
                now,
            });
        }
    }
    Ok(added)
}
