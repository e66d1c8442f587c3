//! Rollback: applies a run's undo records newest first, marks them
//! `undone` in durable batches ([`super::markers`]), then checks every
//! restored path ([`super::verify`]).
//!
//! Every undo is idempotent, so a rollback cut short by a crash is simply
//! run again: records already marked are skipped, and those applied but
//! not yet marked are applied again safely (a backup that is no longer in
//! the backup area has already been moved back).

use super::capture::MountFs;
use super::fault::Fault;
use super::foreign::Foreign;
use super::log::JournalWriter;
use super::markers::{Markers, footprint};
use super::record::{Meta, Owner, Record, Time, UndoOp, voided};
use super::runs::RunDir;
use super::verify::verify;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, Permissions};
use std::collections::{HashMap, HashSet};
use std::io::{self, ErrorKind};
use std::os::unix::fs::PermissionsExt;

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
    /// Entries that other processes changed at paths the run had changed,
    /// found in the way of the undos: moved aside into the run's backup
    /// area (which is then never pruned) rather than overwritten. The
    /// paths themselves are restored.
    pub kept: Vec<Problem>,
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
            match MountFs::open_pinned(&m.name, &m.host, m.id) {
                Ok(fs) => {
                    mounts.insert(m.name.clone(), fs);
                }
                Err(e) => report.problems.push(Problem {
                    mount: m.name.clone(),
                    path: String::new(),
                    reason: format!("cannot open the mount: {e}"),
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
    let mut done: HashSet<u64> = records
        .iter()
        .filter_map(|r| match r {
            Record::Undone { seq } => Some(*seq),
            _ => None,
        })
        .collect();
    done.extend(voided(records));
    let mut undos: Vec<(usize, u64, &str, &UndoOp)> = records
        .iter()
        .enumerate()
        .filter_map(|(pos, r)| match r {
            Record::Undo { seq, mount, undo, .. } if !done.contains(seq) => {
                Some((pos, *seq, mount.as_str(), undo))
            }
            _ => None,
        })
        .collect();
    undos.sort_by_key(|(_, seq, ..)| std::cmp::Reverse(*seq));
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
    let mut foreign = Foreign::new(records);
    report.kept.extend(foreign.kept_earlier(&backup, &run.backup()));
    let mut left_alone = HashSet::new();
    for (n, (pos, seq, mount, op)) in undos.into_iter().enumerate() {
        fault.before_undo(n as u64 + 1);
        let Some(fs) = mounts.get(mount) else { continue };
        let checked = foreign.before(mount, op, (&fs.dir, &mut places), &backup, &run.backup());
        report.kept.extend(checked.kept);
        report.problems.extend(checked.problems);
        if checked.leave {
            left_alone.insert((mount, op.path()));
        }
        if left_alone.contains(&(mount, op.path())) {
            continue;
        }
        let footprint = footprint(mount, op);
        if let Err(e) = markers.before(&footprint, writer) {
            report
                .problems
                .push(problem(mount, op, format!("cannot mark undos as done: {e}")));
        }
        match places.apply(mount, &fs.dir, &backup, seq, op) {
            Ok(()) => {
                report.undone += 1;
                foreign.applied(mount, pos, op);
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
    restore_directory_times(records, &mounts, &foreign.dir_times, &mut report);
    verify(records, &mounts, &backup, &mut report);
    finish(writer, report)
}

/// Sets every directory's original modification time once more, deepest
/// first, after all undos: an undo inside a directory (a file moved back,
/// an entry removed) moves its time, and an older undo may act inside a
/// directory whose time a newer one already set back. `aside`: the times
/// of directories that entries of other processes were moved out of, for
/// those the run did not change itself.
fn restore_directory_times(
    records: &[Record],
    mounts: &HashMap<String, MountFs>,
    aside: &HashMap<(&str, &str), Time>,
    report: &mut RollbackReport,
) {
    let mut times = super::verify::originals(records)
        .into_iter()
        .filter_map(|(mount, op)| match op {
            UndoOp::Times { path, mtime } => Some((mount, path.as_str(), *mtime)),
            UndoOp::RemovedDir { path, meta } => Some((mount, path.as_str(), meta.mtime)),
            _ => None,
        })
        .collect::<Vec<_>>();
    let recorded: HashSet<(&str, &str)> = times.iter().map(|(m, p, _)| (*m, *p)).collect();
    times.extend(
        aside
            .iter()
            .filter(|(key, _)| !recorded.contains(*key))
            .map(|((m, p), t)| (*m, *p, *t)),
    );
    times.sort_by_key(|(_, path, _)| {
        std::cmp::Reverse(path.matches('/').count() + usize::from(!path.is_empty()))
    });
    for (mount, path, time) in times {
        let Some(fs) = mounts.get(mount) else { continue };
        match fs.dir.symlink_metadata(at(path)) {
            Ok(m) if m.is_dir() => {
                if let Err(e) = set_mtime(&fs.dir, path, time) {
                    report.problems.push(Problem {
                        mount: mount.to_owned(),
                        path: path.to_owned(),
                        reason: format!("cannot restore its modification time: {e}"),
                    });
                }
            }
            _ => {}
        }
    }
}

fn finish(writer: &mut JournalWriter, mut report: RollbackReport) -> RollbackReport {
    let problems = report.problems.iter().map(ToString::to_string).collect();
    let kept = report.kept.iter().map(ToString::to_string).collect();
    if let Err(e) = writer.append(&Record::RolledBack { problems, kept }) {
        report.problems.push(Problem {
            mount: String::new(),
            path: String::new(),
            reason: format!("cannot record the end of the rollback: {e}"),
        });
    }
    report
}

pub(super) fn problem(mount: &str, op: &UndoOp, reason: String) -> Problem {
    Problem {
        mount: mount.to_owned(),
        path: op.path().to_owned(),
        reason,
    }
}

pub(super) fn at(path: &str) -> &str {
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

/// Sets the modification time of the entry at `path` (a symlink itself),
/// any time the filesystem can hold: before 1970 too (`SystemTime`-based
/// helpers panic on those). The entry's directory is opened beneath `dir`,
/// so no symlink leads out of it.
pub(super) fn set_mtime(dir: &Dir, path: &str, time: Time) -> io::Result<()> {
    use rustix::fs::{AtFlags, Timespec, Timestamps, UTIME_OMIT, utimensat};
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: time.0,
            tv_nsec: time.1.into(),
        },
    };
    let (parent, name) = match path.rsplit_once('/') {
        Some((parent, name)) => (Some(dir.open_dir(parent)?), name),
        None => (None, at(path)),
    };
    utimensat(
        parent.as_ref().unwrap_or(dir),
        name,
        &times,
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

fn set_meta(dir: &Dir, path: &str, meta: &Meta) -> io::Result<()> {
    // The owner first: changing it clears set-id bits.
    if let Some(owner) = meta.owner {
        set_owner(dir, path, owner)?;
    }
    // Only directories' attributes are recorded: a file is restored as
    // the same inode, which keeps its own.
    if !meta.xattrs.is_empty() {
        let file = super::capture::open_dir_readable(dir, path)?;
        for x in &meta.xattrs {
            rustix::fs::fsetxattr(&file, &x.name.0[..], &x.value.0, rustix::fs::XattrFlags::empty())?;
        }
    }
    dir.set_permissions(
        path,
        Permissions::from_std(std::fs::Permissions::from_mode(meta.mode)),
    )?;
    set_mtime(dir, path, meta.mtime)
}

/// Gives the entry at `path` (a symlink itself, not what it points to)
/// its recorded owner, where it differs.
fn set_owner(dir: &Dir, path: &str, owner: Owner) -> io::Result<()> {
    use cap_std::fs::MetadataExt;
    let m = dir.symlink_metadata(at(path))?;
    if (m.uid(), m.gid()) == (owner.uid, owner.gid) {
        return Ok(());
    }
    rustix::fs::chownat(
        dir,
        at(path),
        Some(rustix::fs::Uid::from_raw(owner.uid)),
        Some(rustix::fs::Gid::from_raw(owner.gid)),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Open handles on the directories undos act in, so that an undo resolves
/// one name instead of its whole path: rollbacks act on thousands of
/// entries in few directories. Dropped whenever an undo moves, creates or
/// removes a directory, which could leave a handle pointing elsewhere.
#[derive(Default)]
pub(super) struct Places {
    pub(super) dirs: HashMap<(String, String), Dir>,
}

impl Places {
    /// The directory holding `path` and its name there; `None` for an
    /// entry of the mount's root.
    pub(super) fn locate<'p>(
        &mut self,
        mount: &str,
        root: &Dir,
        path: &'p str,
    ) -> io::Result<Option<(&Dir, &'p str)>> {
        let Some((parent, name)) = path.rsplit_once('/') else {
            return Ok(None);
        };
        let dir = match self.dirs.entry((mount.to_owned(), parent.to_owned())) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(root.open_dir(parent)?),
        };
        Ok(Some((dir, name)))
    }

    fn apply(&mut self, mount: &str, root: &Dir, backup: &Dir, seq: u64, op: &UndoOp) -> io::Result<()> {
        let in_place = matches!(
            op,
            UndoOp::Saved { .. }
                | UndoOp::Copied { .. }
                | UndoOp::Times { .. }
                | UndoOp::RemovedSymlink { .. }
        );
        if !in_place {
            self.dirs.clear();
            return apply(root, backup, seq, op);
        }
        match self.locate(mount, root, op.path())? {
            Some((dir, name)) => apply(dir, backup, seq, &relocated(op, name)),
            None => apply(root, backup, seq, op),
        }
    }
}

/// `op` with its path (for a rename, the new name) replaced by `name`, for
/// applying or checking it within its parent directory.
pub(super) fn relocated(op: &UndoOp, name: &str) -> UndoOp {
    let mut op = op.clone();
    match &mut op {
        UndoOp::Created { path, .. }
        | UndoOp::Saved { path, .. }
        | UndoOp::Copied { path, .. }
        | UndoOp::RemovedDir { path, .. }
        | UndoOp::Times { path, .. }
        | UndoOp::RemovedSymlink { path, .. }
        | UndoOp::Renamed { to: path, .. } => *path = name.to_owned(),
    }
    op
}

/// Takes the entry at `path` (a file, or a tree the run created) out of
/// the mount by moving it into the backup area, to be deleted when the
/// run's backups are pruned: a rollback need not wait for the filesystem to
/// free a whole release's blocks before the originals are back. Deleted
/// here only when it cannot be moved (another filesystem).
fn discard(dir: &Dir, path: &str, backup: &Dir, seq: u64) -> io::Result<()> {
    match dir.rename(path, backup, format!("discarded-{seq}")) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(_) => match dir.symlink_metadata(path) {
            Ok(m) if m.is_dir() => dir.remove_dir_all(path),
            _ => clear(dir, path),
        },
    }
}

fn apply(dir: &Dir, backup: &Dir, seq: u64, op: &UndoOp) -> io::Result<()> {
    match op {
        // Something else than the inode the run put there: not the run's.
        UndoOp::Created {
            path, ino: Some(ino), ..
        } if dir
            .symlink_metadata(path)
            .is_ok_and(|m| cap_std::fs::MetadataExt::ino(&m) != *ino) =>
        {
            Ok(())
        }
        UndoOp::Created { path, tree: true, .. } => discard(dir, path, backup, seq),
        UndoOp::Created {
            path, tree: false, ..
        } => match dir.symlink_metadata(path) {
            // Not a tree of the run's: a directory must be empty by now.
            Ok(m) if m.is_dir() => dir.remove_dir(path),
            _ => discard(dir, path, backup, seq),
        },
        UndoOp::Saved {
            path, backup: name, ..
        } => {
            if exists(backup, name)? {
                match dir.symlink_metadata(path) {
                    Ok(m) if m.is_dir() => dir.remove_dir(path)?,
                    _ => discard(dir, path, backup, seq)?,
                }
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
                // (Synced with the rest of its batch, before its marker.)
                Ok(m) if m.is_file() => {
                    let target = dir.open_with(path, OpenOptions::new().write(true))?.into_std();
                    super::sparse::copy_contents(&backup.open(name)?.into_std(), &target)?;
                }
                _ => {
                    clear(dir, path)?;
                    let target = dir.create(path)?.into_std();
                    super::sparse::copy_contents(&backup.open(name)?.into_std(), &target)?;
                }
            }
            set_meta(dir, path, meta)
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
            set_meta(dir, path, meta)
        }
        UndoOp::RemovedSymlink {
            path,
            target,
            mtime,
            owner,
        } => {
            let current = dir.read_link_contents(path).ok();
            if current.as_deref() != Some(target.as_path()) {
                clear(dir, path)?;
                dir.symlink(target.as_path(), path)?;
            }
            if let Some(owner) = owner {
                set_owner(dir, path, *owner)?;
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
