//! Rollback: applies a run's undo records newest first, marks them
//! `undone` in durable batches (see [`Markers`]), then checks every
//! restored path against what was recorded when it was first touched.
//!
//! Every undo is idempotent, so a rollback cut short by a crash is simply
//! run again: records already marked are skipped, and those applied but
//! not yet marked are applied again safely (a backup that is no longer in
//! the backup area has already been moved back).

use super::capture::{MountFs, mtime};
use super::fault::Fault;
use super::log::JournalWriter;
use super::record::{Meta, Record, Time, UndoOp};
use super::runs::RunDir;
use cap_fs_ext::{DirExt, SystemTimeSpec};
use cap_std::ambient_authority;
use cap_std::fs::MetadataExt;
use cap_std::fs::{Dir, OpenOptions, Permissions};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{self, ErrorKind};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A path a rollback could not restore.
#[derive(Debug, Clone)]
pub struct Problem {
    pub mount: String,
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:/{}: {}", self.mount, self.path, self.reason)
    }
}

#[derive(Debug, Default)]
pub struct RollbackReport {
    /// Undo records applied by this rollback.
    pub undone: usize,
    pub problems: Vec<Problem>,
}

/// Rolls back every change recorded in `records` that is not yet undone,
/// appending markers and the final `rolled-back` record through `writer`.
pub fn rollback(
    run: &RunDir,
    records: &[Record],
    writer: &mut JournalWriter,
    fault: Fault,
) -> RollbackReport {
    let mut report = RollbackReport::default();
    let mut mounts = HashMap::new();
    if let Some(Record::Begin { mounts: list, .. }) = records.first() {
        for m in list {
            match MountFs::open(&m.name, &m.host) {
                Ok(fs) => {
                    mounts.insert(m.name.clone(), fs);
                }
                Err(e) => report.problems.push(Problem {
                    mount: m.name.clone(),
                    path: String::new(),
                    reason: format!("cannot open {}: {e}", m.host.display()),
                }),
            }
        }
    }
    let backup = match Dir::open_ambient_dir(run.backup(), ambient_authority()) {
        Ok(dir) => dir,
        Err(e) => {
            report.problems.push(Problem {
                mount: String::new(),
                path: run.backup().display().to_string(),
                reason: format!("cannot open the backup area: {e}"),
            });
            return finish(writer, report);
        }
    };
    let done: HashSet<u64> = records
        .iter()
        .filter_map(|r| match r {
            Record::Undone { seq } => Some(*seq),
            _ => None,
        })
        .collect();
    let mut undos: Vec<(u64, &str, &UndoOp)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Undo { seq, mount, undo, .. } if !done.contains(seq) => {
                Some((*seq, mount.as_str(), undo))
            }
            _ => None,
        })
        .collect();
    undos.sort_by_key(|(seq, ..)| std::cmp::Reverse(*seq));
    if let Err(e) = writer.append(&Record::RollbackStarted) {
        report.problems.push(Problem {
            mount: String::new(),
            path: run.journal().display().to_string(),
            reason: format!("cannot record the start of the rollback: {e}"),
        });
        return finish(writer, report);
    }
    let mut markers = Markers::new(&mounts, run.backup());
    let mut places = Places::default();
    for (n, (seq, mount, op)) in undos.into_iter().enumerate() {
        fault.before_undo(n as u64 + 1);
        let Some(fs) = mounts.get(mount) else { continue };
        let footprint = footprint(mount, op);
        if let Err(e) = markers.before(&footprint, writer) {
            report
                .problems
                .push(problem(mount, op, format!("cannot mark undos as done: {e}")));
        }
        match places.apply(mount, &fs.dir, &backup, op) {
            Ok(()) => {
                report.undone += 1;
                markers.applied(seq, mount, op, footprint);
            }
            Err(e) => report
                .problems
                .push(problem(mount, op, format!("undo failed: {e}"))),
        }
    }
    if let Err(e) = markers.flush(writer) {
        report.problems.push(Problem {
            mount: String::new(),
            path: String::new(),
            reason: format!("cannot mark undos as done: {e}"),
        });
    }
    verify(records, &mounts, &backup, &mut report);
    finish(writer, report)
}

/// What an undo touches: an entry itself (its existence, contents or
/// times), an entry and everything beneath it, or only a directory's
/// listing (an entry inside it appears or disappears), which must be
/// synced before the undo's marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Touches {
    Entry,
    Subtree,
    Listing,
}

type Footprint = Vec<(String, String, Touches)>;

fn footprint(mount: &str, op: &UndoOp) -> Footprint {
    let parent = |p: &str| {
        Path::new(p)
            .parent()
            .and_then(Path::to_str)
            .unwrap_or("")
            .to_owned()
    };
    let entry = |p: &str, touches| {
        vec![
            (mount.to_owned(), p.to_owned(), touches),
            (mount.to_owned(), parent(p), Touches::Listing),
        ]
    };
    match op {
        UndoOp::Created { path, tree: true } => entry(path, Touches::Subtree),
        UndoOp::Times { path, .. } => vec![(mount.to_owned(), path.clone(), Touches::Entry)],
        UndoOp::Renamed { from, to } => {
            let mut f = entry(from, Touches::Subtree);
            f.extend(entry(to, Touches::Subtree));
            f
        }
        other => entry(other.path(), Touches::Entry),
    }
}

/// Whether re-applying one undo could undo the other's work.
///
/// After a crash, the unmarked undos of the last batch are applied again,
/// newest first, each on the state the whole batch left. An undo applied a
/// second time finds its own work done and changes nothing (a moved-back
/// file's backup is gone, a removed entry is absent), so it cannot change a
/// directory listing or times again; it can only clobber an entry that an
/// older undo of the batch put at the same path, or beneath a subtree.
fn overlaps(a: &(String, String, Touches), b: &(String, String, Touches)) -> bool {
    let under = |p: &str, dir: &str| {
        p == dir || dir.is_empty() || p.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
    };
    use Touches::*;
    a.0 == b.0
        && match (a.2, b.2) {
            (Subtree, _) => under(&b.1, &a.1),
            (_, Subtree) => under(&a.1, &b.1),
            (Entry, Entry) => a.1 == b.1,
            (Listing, _) | (_, Listing) => false,
        }
}

/// Batches the `undone` markers of a rollback.
///
/// A marker may be written only once its undo's effect is on disk, so a
/// batch is written after the directories and files the batch changed are
/// synced: a few syncs per batch, not one per undo. Undos whose markers are
/// lost in a crash are applied again; that is safe because no two undos of
/// a batch touch the same entry (see [`overlaps`]): before an undo that
/// would, the batch is flushed. Markers are appended in the order the undos
/// were applied, so a torn append keeps a prefix.
struct Markers<'a> {
    mounts: &'a HashMap<String, MountFs>,
    backup: PathBuf,
    seqs: Vec<u64>,
    /// What the batch touched, by path (a path can be touched as an entry
    /// and as a listing), and the subtrees it touched, which are rare.
    touched: HashMap<(String, String), Vec<Touches>>,
    subtrees: Vec<(String, String, Touches)>,
    /// Host paths whose changes must be durable before the markers.
    to_sync: BTreeSet<PathBuf>,
}

impl<'a> Markers<'a> {
    /// Undos per batch at most.
    const BATCH: usize = 1024;

    fn new(mounts: &'a HashMap<String, MountFs>, backup: PathBuf) -> Self {
        Markers {
            mounts,
            backup,
            seqs: Vec::new(),
            touched: HashMap::new(),
            subtrees: Vec::new(),
            to_sync: BTreeSet::new(),
        }
    }

    /// Called before an undo with this footprint is applied.
    fn before(&mut self, footprint: &Footprint, writer: &mut JournalWriter) -> io::Result<()> {
        let clash = footprint.iter().any(|f| {
            let same_path = self
                .touched
                .get(&(f.0.clone(), f.1.clone()))
                .into_iter()
                .flatten();
            same_path
                .into_iter()
                .any(|t| overlaps(f, &(f.0.clone(), f.1.clone(), *t)))
                || self.subtrees.iter().any(|s| overlaps(f, s))
                || (f.2 == Touches::Subtree
                    && self
                        .touched
                        .iter()
                        .any(|((m, p), ts)| ts.iter().any(|t| overlaps(f, &(m.clone(), p.clone(), *t)))))
        });
        if clash || self.seqs.len() >= Self::BATCH {
            self.flush(writer)
        } else {
            Ok(())
        }
    }

    fn applied(&mut self, seq: u64, mount: &str, op: &UndoOp, footprint: Footprint) {
        if let Some(fs) = self.mounts.get(mount) {
            // Directory listings changed, and entries whose own contents or
            // times changed; a moved-back file changes the backup area too.
            match op {
                UndoOp::Copied { path, .. }
                | UndoOp::RemovedDir { path, .. }
                | UndoOp::Times { path, .. } => {
                    self.to_sync.insert(fs.host.join(path));
                }
                UndoOp::Saved { .. } => {
                    self.to_sync.insert(self.backup.clone());
                }
                _ => {}
            }
            for (_, path, touches) in &footprint {
                if *touches == Touches::Listing {
                    self.to_sync.insert(fs.host.join(path));
                }
            }
        }
        self.seqs.push(seq);
        for (mount, path, touches) in footprint {
            if touches == Touches::Subtree {
                self.subtrees.push((mount.clone(), path.clone(), touches));
            }
            self.touched.entry((mount, path)).or_default().push(touches);
        }
    }

    fn flush(&mut self, writer: &mut JournalWriter) -> io::Result<()> {
        if self.seqs.is_empty() {
            return Ok(());
        }
        for path in std::mem::take(&mut self.to_sync) {
            match std::fs::File::open(&path).and_then(|f| f.sync_all()) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        writer.append_all(self.seqs.drain(..).map(|seq| Record::Undone { seq }))?;
        self.touched.clear();
        self.subtrees.clear();
        Ok(())
    }
}

fn finish(writer: &mut JournalWriter, mut report: RollbackReport) -> RollbackReport {
    let problems = report.problems.iter().map(ToString::to_string).collect();
    if let Err(e) = writer.append(&Record::RolledBack { problems }) {
        report.problems.push(Problem {
            mount: String::new(),
            path: String::new(),
            reason: format!("cannot record the end of the rollback: {e}"),
        });
    }
    report
}

fn problem(mount: &str, op: &UndoOp, reason: String) -> Problem {
    Problem {
        mount: mount.to_owned(),
        path: op.path().to_owned(),
        reason,
    }
}

fn at(path: &str) -> &str {
    if path.is_empty() { "." } else { path }
}

fn exists(dir: &Dir, path: &str) -> io::Result<bool> {
    match dir.symlink_metadata(at(path)) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes whatever is at `path` (a directory must be empty by now).
fn clear(dir: &Dir, path: &str) -> io::Result<()> {
    match dir.symlink_metadata(path) {
        Ok(m) if m.is_dir() => dir.remove_dir(path),
        Ok(_) => dir.remove_file(path),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_mtime(dir: &Dir, path: &str, time: Time) -> io::Result<()> {
    let spec = SystemTimeSpec::Absolute(cap_std::time::SystemTime::from_std(time.to_system()));
    if dir.symlink_metadata(at(path))?.is_symlink() {
        dir.set_symlink_times(path, None, Some(spec))
    } else {
        dir.set_times(at(path), None, Some(spec))
    }
}

fn set_meta(dir: &Dir, path: &str, meta: Meta) -> io::Result<()> {
    dir.set_permissions(
        path,
        Permissions::from_std(std::fs::Permissions::from_mode(meta.mode)),
    )?;
    set_mtime(dir, path, meta.mtime)
}

/// Open handles on the directories undos act in, so that an undo resolves
/// one name instead of its whole path: rollbacks act on thousands of
/// entries in few directories. Dropped whenever an undo moves, creates or
/// removes a directory, which could leave a handle pointing elsewhere.
#[derive(Default)]
struct Places {
    dirs: HashMap<(String, String), Dir>,
}

impl Places {
    fn apply(&mut self, mount: &str, root: &Dir, backup: &Dir, op: &UndoOp) -> io::Result<()> {
        let path = op.path();
        let in_place = match op {
            UndoOp::Saved { .. }
            | UndoOp::Copied { .. }
            | UndoOp::Times { .. }
            | UndoOp::RemovedSymlink { .. } => path.rsplit_once('/'),
            _ => None,
        };
        let Some((parent, name)) = in_place else {
            self.dirs.clear();
            return apply(root, backup, op);
        };
        let key = (mount.to_owned(), parent.to_owned());
        let dir = match self.dirs.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(root.open_dir(parent)?),
        };
        apply(dir, backup, &relocated(op, name))
    }
}

/// `op` with its path replaced by `name`, for applying it within its
/// parent directory.
fn relocated(op: &UndoOp, name: &str) -> UndoOp {
    let mut op = op.clone();
    match &mut op {
        UndoOp::Saved { path, .. }
        | UndoOp::Copied { path, .. }
        | UndoOp::Times { path, .. }
        | UndoOp::RemovedSymlink { path, .. } => *path = name.to_owned(),
        // These change directories and are applied from the mount's root.
        UndoOp::Created { .. } | UndoOp::RemovedDir { .. } | UndoOp::Renamed { .. } => {}
    }
    op
}

fn apply(dir: &Dir, backup: &Dir, op: &UndoOp) -> io::Result<()> {
    match op {
        UndoOp::Created { path, tree: true } => match dir.symlink_metadata(path) {
            Ok(m) if m.is_dir() => dir.remove_dir_all(path),
            _ => clear(dir, path),
        },
        UndoOp::Created { path, tree: false } => clear(dir, path),
        UndoOp::Saved {
            path, backup: name, ..
        } => {
            if exists(backup, name)? {
                clear(dir, path)?;
                backup.rename(name, dir, path)?;
            }
            Ok(())
        }
        UndoOp::Copied {
            path,
            backup: name,
            meta,
            ..
        } => {
            if !exists(backup, name)? {
                return Err(io::Error::new(
                    ErrorKind::NotFound,
                    format!("backup {name} is missing"),
                ));
            }
            match dir.symlink_metadata(path) {
                // In place, so that the file's other hard links see it too.
                Ok(m) if m.is_file() => {
                    let mut target = dir.open_with(path, OpenOptions::new().write(true).truncate(true))?;
                    io::copy(&mut backup.open(name)?, &mut target)?;
                    target.sync_all()?;
                }
                _ => {
                    clear(dir, path)?;
                    backup.copy(name, dir, path)?;
                }
            }
            set_meta(dir, path, *meta)
        }
        UndoOp::RemovedDir { path, meta } => {
            match dir.symlink_metadata(path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    dir.remove_file(path)?;
                    dir.create_dir(path)?;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => dir.create_dir(path)?,
                Err(e) => return Err(e),
            }
            set_meta(dir, path, *meta)
        }
        UndoOp::RemovedSymlink { path, target, mtime } => {
            let current = dir.read_link_contents(path).ok();
            if current.as_deref() != Some(std::path::Path::new(target)) {
                clear(dir, path)?;
                dir.symlink(target, path)?;
            }
            set_mtime(dir, path, *mtime)
        }
        UndoOp::Times { path, mtime } => {
            if exists(dir, path)? {
                set_mtime(dir, path, *mtime)?;
            }
            Ok(())
        }
        UndoOp::Renamed { from, to } => {
            if exists(dir, to)? && !exists(dir, from)? {
                dir.rename(to, dir, from)?;
            }
            Ok(())
        }
    }
}

/// Checks each path against its first record, which describes it as it
/// was before the run touched it.
fn verify(records: &[Record], mounts: &HashMap<String, MountFs>, backup: &Dir, report: &mut RollbackReport) {
    let mut seen = HashSet::new();
    // After a rename, paths beneath either name stood elsewhere before the
    // run; their first record does not describe the original.
    let mut renamed: Vec<(&str, &str)> = Vec::new();
    let under =
        |p: &str, dir: &str| p == dir || p.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'));
    for record in records {
        let Record::Undo { mount, undo, .. } = record else {
            continue;
        };
        let Some(fs) = mounts.get(mount) else { continue };
        let path = undo.path();
        let moved = renamed
            .iter()
            .any(|(m, p)| *m == mount.as_str() && under(path, p));
        if let UndoOp::Renamed { from, to } = undo {
            renamed.push((mount, from));
            renamed.push((mount, to));
        }
        if moved || !seen.insert((mount.clone(), path.to_owned())) {
            continue;
        }
        if let Err(reason) = check(&fs.dir, backup, undo) {
            report.problems.push(problem(mount, undo, reason));
        }
    }
}

/// Type and size for every file; for a file moved back, its inode; for a
/// file restored from a copy, its contents' hash against the copy's.
fn check(dir: &Dir, backup: &Dir, op: &UndoOp) -> Result<(), String> {
    let meta = dir.symlink_metadata(at(op.path()));
    let found = |m: &cap_std::fs::Metadata| {
        if m.is_dir() {
            "a directory".to_string()
        } else if m.is_symlink() {
            "a symlink".to_string()
        } else {
            format!("a file of {} bytes", m.len())
        }
    };
    match (op, meta) {
        (UndoOp::Created { .. }, Err(e)) if e.kind() == ErrorKind::NotFound => Ok(()),
        (UndoOp::Created { .. }, Ok(m)) => Err(format!("should not exist, but is {}", found(&m))),
        (UndoOp::Saved { size, ino, .. }, Ok(m)) if m.is_file() && m.len() == *size => {
            if m.ino() == *ino {
                Ok(())
            } else {
                Err(format!(
                    "is not the original file (inode {} instead of {ino})",
                    m.ino()
                ))
            }
        }
        (
            UndoOp::Copied {
                size, backup: name, ..
            },
            Ok(m),
        ) if m.is_file() && m.len() == *size => match (hash(dir, op.path()), hash(backup, name)) {
            (Ok(restored), Ok(saved)) if restored == saved => Ok(()),
            (Ok(_), Ok(_)) => Err("contents differ from the saved copy".into()),
            (Err(e), _) | (_, Err(e)) => Err(format!("cannot compare with the saved copy: {e}")),
        },
        (UndoOp::Saved { size, .. } | UndoOp::Copied { size, .. }, Ok(m)) => {
            Err(format!("should be a file of {size} bytes, but is {}", found(&m)))
        }
        (UndoOp::RemovedDir { .. }, Ok(m)) if m.is_dir() => Ok(()),
        (UndoOp::RemovedSymlink { target, .. }, Ok(m)) if m.is_symlink() => {
            match dir.read_link_contents(op.path()) {
                Ok(t) if t == std::path::Path::new(target) => Ok(()),
                Ok(t) => Err(format!("should point to {target}, but points to {}", t.display())),
                Err(e) => Err(e.to_string()),
            }
        }
        (UndoOp::Times { mtime: want, .. }, Ok(m)) if m.is_dir() || m.is_file() || m.is_symlink() => {
            if mtime(&m) == *want || !m.is_dir() {
                Ok(())
            } else {
                Err(format!("modification time not restored ({}s)", m.mtime()))
            }
        }
        (UndoOp::Renamed { .. }, _) => Ok(()),
        (_, Err(e)) => Err(format!("missing after rollback: {e}")),
        (_, Ok(m)) => Err(format!("has the wrong type: {}", found(&m))),
    }
}

fn hash(dir: &Dir, path: &str) -> io::Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    io::copy(&mut dir.open(path)?, &mut hasher)?;
    Ok(hasher.finalize().into())
}
