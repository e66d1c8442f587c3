//! Rollback: applies a run's undo records newest first, marking each one
//! as it goes and in durable batches ([`super::markers`]), then checks
//! every restored path ([`super::verify`]).
//!
//! A rollback cut short by a crash is simply run again (`recover`): the
//! undos its earlier attempts settled are skipped, and the one in flight
//! (after a power cut, those of the last unsynced batch) is applied again,
//! which changes nothing where its effect is there already (a backup that
//! is no longer in the backup area has already been moved back).

use super::entry::{at, open_dir_readable, set_mtime, set_mtime_atime};
use super::fault::Fault;
use super::foreign::Foreign;
use super::log::JournalWriter;
use super::markers::{Failed, Markers, footprint};
use super::mount::MountFs;
use super::places::{Places, relocated};
use super::record::{Meta, Owner, Record, Time, UndoOp, Xattr, voided};
use super::report::{Problem, RollbackReport, problem};
use super::runs::RunDir;
use super::verify::verify;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, Metadata, OpenOptions, Permissions};
use std::collections::{HashMap, HashSet};
use std::io::{self, ErrorKind};
use std::os::unix::fs::PermissionsExt;

/// How a rollback's records end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// With the run's end: `rolled-back`.
    Final,
    /// With `reverted`: the flow's rollback action follows, and its
    /// records end the run ([`end_rollback`]).
    ActionFollows,
}

/// Rolls back every change recorded in `records` that is not yet undone,
/// appending markers and the record `ending` says through `writer`.
pub fn rollback(
    run: &RunDir,
    records: &[Record],
    writer: &mut JournalWriter,
    (fault, ending): (Fault, Ending),
) -> RollbackReport {
    let report = revert(run, records, writer, (fault, Failed::Settled));
    end(writer, report, ending)
}

/// Rolls back again a run whose rollback ended with problems (once their
/// cause is fixed): the undos it could not apply are tried again, each
/// checking first whether its effect is there already; those it applied
/// are not.
pub fn retry_rollback(
    run: &RunDir,
    records: &[Record],
    writer: &mut JournalWriter,
    fault: Fault,
) -> RollbackReport {
    let report = revert(run, records, writer, (fault, Failed::Retried));
    end(writer, report, Ending::Final)
}

/// Ends the rollback's records as `ending` says.
fn end(writer: &mut JournalWriter, mut report: RollbackReport, ending: Ending) -> RollbackReport {
    let ended = match ending {
        Ending::Final => end_rollback(writer, &report),
        Ending::ActionFollows => writer.append(&Record::Reverted {
            problems: report.problems.iter().map(ToString::to_string).collect(),
            kept: report.kept.iter().map(ToString::to_string).collect(),
        }),
    };
    if let Err(e) = ended {
        report.problems.push(unrecorded_end(&e));
    }
    report
}

/// The problem of a rollback whose end could not be written (`e`).
pub(crate) fn unrecorded_end(e: &io::Error) -> Problem {
    Problem {
        mount: String::new(),
        path: String::new(),
        reason: format!("cannot record the end of the rollback: {e}"),
        kept_at: None,
    }
}

/// Ends a rolled-back run's journal: how its rollback ended (`report`).
pub fn end_rollback(writer: &mut JournalWriter, report: &RollbackReport) -> io::Result<()> {
    writer.append(&Record::RolledBack {
        problems: report.problems.iter().map(ToString::to_string).collect(),
        kept: report.kept.iter().map(ToString::to_string).collect(),
    })
}

/// The undos of [`rollback`], with their markers.
fn revert(
    run: &RunDir,
    records: &[Record],
    writer: &mut JournalWriter,
    (fault, failed): (Fault, Failed),
) -> RollbackReport {
    let records = &*reverted_records(records);
    let mut report = RollbackReport {
        not_reversed: records
            .iter()
            .filter_map(|r| match r {
                Record::Uncaptured { step, command } => Some(format!("step {step}: {command}")),
                _ => None,
            })
            .collect(),
        ..RollbackReport::default()
    };
    let mounts = open_mounts(records, &mut report);
    let backup = match Dir::open_ambient_dir(run.backup(), ambient_authority()) {
        Ok(dir) => dir,
        Err(e) => {
            report.problems.push(Problem {
                mount: String::new(),
                path: run.backup().display().to_string(),
                reason: format!("cannot open the backup area: {e}"),
                kept_at: None,
            });
            return report;
        }
    };
    let boot = super::markers::this_boot();
    let undos = pending_undos(records, (boot.as_deref(), failed), &mut report);
    if let Err(e) = writer.append(&Record::RollbackStarted { boot }) {
        report.problems.push(Problem {
            mount: String::new(),
            path: run.journal().display().to_string(),
            reason: format!("cannot record the start of the rollback: {e}"),
            kept_at: None,
        });
        return report;
    }
    let mut foreign = Foreign::new(records);
    report.kept.extend(foreign.kept_earlier(&backup, &run.backup()));
    let undo = Undo {
        run,
        mounts: &mounts,
        backup: &backup,
        fault,
    };
    undo.all(undos, &mut foreign, writer, &mut report);
    restore_directory_times(records, &mounts, &foreign.dir_times, &mut report);
    verify(records, &mounts, &backup, &mut report);
    report
}

/// How many changes a rollback of `records` would undo now, counted as
/// its report counts them ([`super::is_change`]).
pub fn changes_to_undo(records: &[Record]) -> u64 {
    let records = &*reverted_records(records);
    let pending = pending_undos(records, (None, Failed::Settled), &mut RollbackReport::default());
    pending.iter().filter(|(.., counted)| *counted).count() as u64
}

/// The records a rollback reverts: what actions changed is the
/// rollback's own, and steps with `revert = false` keep theirs.
fn reverted_records(records: &[Record]) -> std::borrow::Cow<'_, [Record]> {
    let kept: HashSet<usize> = records
        .iter()
        .filter_map(|r| match r {
            Record::Action { index, .. } | Record::NotReverted { index } => Some(*index),
            _ => None,
        })
        .collect();
    match kept.is_empty() {
        true => records.into(),
        false => records
            .iter()
            .filter(|r| !matches!(r, Record::Undo { step, .. } if kept.contains(step)))
            .cloned()
            .collect::<Vec<_>>()
            .into(),
    }
}

/// The run's mounts, each the directory it recorded; one it cannot open
/// is a problem of the report.
fn open_mounts(records: &[Record], report: &mut RollbackReport) -> HashMap<String, MountFs> {
    let mut mounts = HashMap::new();
    let Some(Record::Begin { mounts: list, .. }) = records.first() else {
        return mounts;
    };
    for m in list {
        match MountFs::open_pinned(&m.name, &m.host, m.id) {
            Ok(fs) => {
                mounts.insert(m.name.clone(), fs);
            }
            Err(e) => report.problems.push(Problem {
                mount: m.name.clone(),
                path: String::new(),
                reason: format!("cannot open the mount: {e}"),
                kept_at: None,
            }),
        }
    }
    mounts
}

/// An undo still to apply: its record's place in the journal, its number,
/// mount and operation.
/// An undo to apply: its record's position, seq, mount and op, and
/// whether it counts as a change of its own ([`super::is_change`]).
type Pending<'r> = (usize, u64, &'r str, &'r UndoOp, bool);

/// The undos not done yet (by an earlier, interrupted rollback on `boot`,
/// or voided), newest first.
fn pending_undos<'r>(
    records: &'r [Record],
    (boot, failed): (Option<&str>, Failed),
    report: &mut RollbackReport,
) -> Vec<Pending<'r>> {
    let (mut done, settled_problems) = super::markers::settled(records, (boot, failed));
    report.problems.extend(settled_problems);
    done.extend(voided(records));
    let mut undos: Vec<Pending> = records
        .iter()
        .enumerate()
        .filter_map(|(pos, r)| match r {
            Record::Undo {
                seq,
                mount,
                undo,
                change,
                ..
            } if !done.contains(seq) => {
                Some((pos, *seq, mount.as_str(), undo, super::is_change(*change, undo)))
            }
            _ => None,
        })
        .collect();
    undos.sort_by_key(|(_, seq, ..)| std::cmp::Reverse(*seq));
    undos
}

/// What every undo of a rollback works with.
struct Undo<'a> {
    run: &'a RunDir,
    mounts: &'a HashMap<String, MountFs>,
    backup: &'a Dir,
    fault: Fault,
}

impl Undo<'_> {
    /// Applies `undos` in order, each marked done (in batches, once its
    /// effects are synced) or failed; what another process put in the way
    /// is kept aside or left alone (see [`Foreign`]).
    fn all<'r>(
        &self,
        undos: Vec<Pending<'r>>,
        foreign: &mut Foreign<'r>,
        writer: &mut JournalWriter,
        report: &mut RollbackReport,
    ) {
        let mut markers = Markers::new(self.mounts, self.run.backup());
        let mut places = Places::default();
        let mut left_alone = HashSet::new();
        for (n, (pos, seq, mount, op, counted)) in undos.into_iter().enumerate() {
            self.fault.before_undo(n as u64 + 1, writer);
            let Some(fs) = self.mounts.get(mount) else {
                continue;
            };
            let checked = foreign.before(mount, op, (&fs.dir, &mut places), self.backup, &self.run.backup());
            report.kept.extend(checked.kept);
            report.problems.extend(checked.problems);
            if checked.leave {
                left_alone.insert((mount, op.path()));
            }
            if left_alone.contains(&(mount, op.path())) {
                let why = problem(
                    mount,
                    op,
                    "left alone: another process's entry is in the way".into(),
                );
                super::markers::note(writer, seq, Some(&why));
                continue;
            }
            let footprint = footprint(mount, op);
            if let Err(e) = markers.before(&footprint, writer) {
                report
                    .problems
                    .push(problem(mount, op, format!("cannot mark undos as done: {e}")));
            }
            match apply_in(&mut places, mount, &fs.dir, self.backup, seq, op) {
                Ok(()) => {
                    super::markers::note(writer, seq, None);
                    report.undone += usize::from(counted);
                    foreign.applied((mount, &fs.dir), pos, op);
                    markers.applied(seq, mount, op, footprint);
                }
                Err(e) => {
                    let failed = problem(mount, op, format!("undo failed: {e}"));
                    super::markers::note(writer, seq, Some(&failed));
                    report.problems.push(failed);
                }
            }
        }
        if let Err(e) = markers.flush(writer) {
            report.problems.push(Problem {
                mount: String::new(),
                path: String::new(),
                reason: format!("cannot mark undos as done: {e}"),
                kept_at: None,
            });
        }
    }
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
            UndoOp::Times { path, mtime, .. } => Some((mount, path.as_str(), *mtime)),
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
                        kept_at: None,
                    });
                }
            }
            _ => {}
        }
    }
}

fn ino_of(dir: &Dir, path: &str) -> io::Result<Option<u64>> {
    match dir.symlink_metadata(at(path)) {
        Ok(m) => Ok(Some(cap_std::fs::MetadataExt::ino(&m))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn exists(dir: &Dir, path: &str) -> io::Result<bool> {
    Ok(ino_of(dir, path)?.is_some())
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

/// Makes symlink `path` beneath `dir` with `target`, whatever it is:
/// cap-std's `symlink` refuses an absolute target (`/opt/app/1.4`), which
/// a link of the mount's may well have. The parent is opened beneath
/// `dir` (nothing leads out of it), the link made there by `symlinkat`.
fn symlink(dir: &Dir, target: &std::path::Path, path: &str) -> io::Result<()> {
    let (parent, name) = match path.rsplit_once('/') {
        Some((parent, name)) => (cap_fs_ext::DirExt::open_dir_nofollow(dir, parent)?, name),
        None => (dir.try_clone()?, path),
    };
    Ok(rustix::fs::symlinkat(target, &parent, name)?)
}

fn set_meta(dir: &Dir, path: &str, meta: &Meta) -> io::Result<()> {
    // The owner first: changing it clears set-id bits.
    if let Some(owner) = meta.owner {
        set_owner(dir, path, owner)?;
    }
    // Only directories' attributes are recorded: a file is restored as
    // the same inode, which keeps its own.
    if !meta.xattrs.is_empty() {
        let file = open_dir_readable(dir, path)?;
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

/// Applies `op` through `places`: an undo that leaves every directory
/// where it is resolves one name in its cached directory.
fn apply_in(
    places: &mut Places,
    mount: &str,
    root: &Dir,
    backup: &Dir,
    seq: u64,
    op: &UndoOp,
) -> io::Result<()> {
    let in_place = matches!(
        op,
        UndoOp::Saved { tree: false, .. }
            | UndoOp::Copied { .. }
            | UndoOp::Times { .. }
            | UndoOp::Attributes { .. }
            | UndoOp::RemovedSymlink { .. }
    );
    if !in_place {
        places.dirs.clear();
        return apply(root, backup, seq, op);
    }
    match places.locate(mount, root, op.path())? {
        Some((dir, name)) => apply(dir, backup, seq, &relocated(op, name)),
        None => apply(root, backup, seq, op),
    }
}

/// Takes the entry at `path` (a file, or a tree the run created) out of
/// the mount by moving it into the backup area, to be deleted when the
/// run's backups are pruned: a rollback need not wait for the filesystem to
/// free a whole release's blocks before the originals are back. Deleted
/// here when it cannot be moved (another filesystem) or frees nothing.
fn discard(dir: &Dir, (path, found): (&str, &Metadata), backup: &Dir, seq: u64) -> io::Result<()> {
    // A name of a file with other names frees nothing: removed, so that
    // no link to a file that stays (an original among them) is left in
    // the backup area.
    if !found.is_dir() && cap_std::fs::MetadataExt::nlink(found) > 1 {
        return dir.remove_file(path);
    }
    match dir.rename(path, backup, format!("discarded-{seq}")) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(_) => match found.is_dir() {
            true => dir.remove_dir_all(path),
            false => clear(dir, path),
        },
    }
}

/// [`discard`] of whatever is at `path`, if anything.
fn discard_any(dir: &Dir, path: &str, backup: &Dir, seq: u64) -> io::Result<()> {
    match dir.symlink_metadata(path) {
        Ok(found) => discard(dir, (path, &found), backup, seq),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Applies one undo: each kind puts back what its capture kept, and is
/// idempotent (a resumed rollback applies it again).
fn apply(dir: &Dir, backup: &Dir, seq: u64, op: &UndoOp) -> io::Result<()> {
    match op {
        UndoOp::Created { path, tree, ino } => undo_created(dir, (path, *tree, *ino), backup, seq),
        UndoOp::Saved {
            path,
            backup: name,
            ino,
            ..
        } => undo_saved(dir, path, (backup, name, *ino), seq),
        UndoOp::Copied {
            path,
            backup: name,
            meta,
            xattrs,
            ..
        } => undo_copied(dir, path, (backup, name), (meta, xattrs.as_deref())),
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
            aside,
        } => {
            undo_removed_symlink(dir, path, (target.as_path(), aside.as_ref()), backup)?;
            if let Some(owner) = owner {
                set_owner(dir, path, *owner)?;
            }
            set_mtime(dir, path, *mtime)
        }
        UndoOp::Times { path, mtime, atime } => {
            if exists(dir, path)? {
                set_mtime_atime(dir, path, *mtime, *atime)?;
            }
            Ok(())
        }
        UndoOp::Renamed { from, to } => {
            if exists(dir, to)? && !exists(dir, from)? {
                dir.rename(to, dir, from)?;
            }
            Ok(())
        }
        UndoOp::Attributes {
            path,
            mode,
            owner,
            xattrs,
        } => undo_attributes(dir, path, (*mode, *owner, xattrs.as_deref())),
        UndoOp::Snapshot { path, backup: None } => discard_any(dir, path, backup, seq),
        UndoOp::Snapshot {
            path,
            backup: Some(name),
        } => undo_snapshot(dir, path, (backup, name), seq),
    }
}

/// Takes out what the run created at `path` (`tree`: a directory with all
/// it holds; `ino`: the inode it put there, where known).
fn undo_created(
    dir: &Dir,
    (path, tree, ino): (&str, bool, Option<u64>),
    backup: &Dir,
    seq: u64,
) -> io::Result<()> {
    let found = match dir.symlink_metadata(path) {
        Ok(found) => found,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // Something else than the inode the run put there: not the run's.
    if ino.is_some_and(|ino| cap_std::fs::MetadataExt::ino(&found) != ino) {
        return Ok(());
    }
    match (tree, found.is_dir()) {
        // Not a tree of the run's: a directory must be empty by now.
        (false, true) => dir.remove_dir(path),
        _ => discard(dir, (path, &found), backup, seq),
    }
}

/// Moves the original kept as `name` in the backup area (inode `ino`)
/// back to `path`, over what the run left there.
fn undo_saved(dir: &Dir, path: &str, (backup, name, ino): (&Dir, &str, u64), seq: u64) -> io::Result<()> {
    // Only the original's inode is the original: an exchange that
    // was recorded but never made leaves the step's own file there.
    if ino_of(backup, name)? != Some(ino) {
        return Ok(());
    }
    match dir.symlink_metadata(path) {
        // Linked aside, and the change never made (a crash between
        // the two): the original is in place; drop the link.
        Ok(m) if !m.is_dir() && cap_std::fs::MetadataExt::ino(&m) == ino => {
            return backup.remove_file(name);
        }
        Ok(m) if m.is_dir() => dir.remove_dir(path)?,
        Ok(m) => discard(dir, (path, &m), backup, seq)?,
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    backup.rename(name, dir, path)
}

/// Writes the copy kept as `name` back into the file at `path`, in place
/// where a file is there, and gives it its recorded attributes.
fn undo_copied(
    dir: &Dir,
    path: &str,
    (backup, name): (&Dir, &str),
    (meta, xattrs): (&Meta, Option<&[Xattr]>),
) -> io::Result<()> {
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
    let Some(xattrs) = xattrs else {
        return set_meta(dir, path, meta);
    };
    let file = dir.open(path)?;
    super::entry::replace_xattrs(&file, xattrs, |_| false)?;
    set_meta(dir, path, meta)?;
    super::entry::keep_capabilities(&file, xattrs)
}

/// Puts the symlink at `path` back: the original itself where the backup
/// area still has it (`aside`), else one made anew to `target`.
fn undo_removed_symlink(
    dir: &Dir,
    path: &str,
    (target, aside): (&std::path::Path, Option<&super::record::Aside>),
    backup: &Dir,
) -> io::Result<()> {
    let current = dir.read_link_contents(path).ok();
    let original = match aside {
        Some(aside) if ino_of(backup, &aside.backup)? == Some(aside.ino) => Some(aside),
        _ => None,
    };
    let there = original.is_some_and(|a| ino_of(dir, path).ok().flatten() == Some(a.ino));
    if current.as_deref() != Some(target) || (original.is_some() && !there) {
        clear(dir, path)?;
        return match original {
            Some(aside) => backup.rename(&aside.backup, dir, path),
            None => symlink(dir, target, path),
        };
    }
    match original.filter(|_| there) {
        // Never removed (a crash between its link and its removal): the
        // backup area's name of it goes.
        Some(aside) => backup.remove_file(&aside.backup),
        None => Ok(()),
    }
}

/// Gives the directory at `path` back its mode, owner and extended
/// attributes.
fn undo_attributes(
    dir: &Dir,
    path: &str,
    (mode, owner, xattrs): (u32, Owner, Option<&[Xattr]>),
) -> io::Result<()> {
    if !exists(dir, path)? {
        return Ok(());
    }
    set_owner(dir, path, owner)?;
    if let Some(xattrs) = xattrs {
        super::entry::replace_xattrs(&open_dir_readable(dir, at(path))?, xattrs, |_| false)?;
    }
    dir.set_permissions(
        at(path),
        Permissions::from_std(std::fs::Permissions::from_mode(mode)),
    )
}

/// Puts the snapshot kept as `name` back at `path`, whole.
fn undo_snapshot(dir: &Dir, path: &str, (backup, name): (&Dir, &str), seq: u64) -> io::Result<()> {
    // Done already (a resumed rollback) once the copy is back.
    if !exists(backup, name)? {
        return Ok(());
    }
    discard_any(dir, path, backup, seq)?;
    match backup.rename(name, dir, path) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
            super::tree::copy(backup, name, dir, path)?;
            match backup.symlink_metadata(name)?.is_dir() {
                true => backup.remove_dir_all(name),
                false => backup.remove_file(name),
            }
        }
        done => done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{Change, MountRecord, undo_in_m};
    use crate::journal::runs::RunStore;

    fn undo(seq: u64, undo: UndoOp) -> Record {
        undo_in_m(seq, Change::Renamed, undo)
    }

    /// The run renamed the original `a` to `b`, then created a new `a`.
    /// Newest first, the new `a` goes and `b` is renamed back; oldest
    /// first, the rename back would find `a` taken and the original would
    /// stay at `b`.
    #[test]
    fn undos_apply_newest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let m = tmp.path().join("m");
        std::fs::create_dir(&m).unwrap();
        std::fs::write(m.join("b"), "original").unwrap();
        std::fs::write(m.join("a"), "made by the run").unwrap();
        let run = RunStore::new(&tmp.path().join("state")).create("r").unwrap();
        let records = vec![
            Record::Begin {
                run: "r".into(),
                flow: "f".into(),
                app: None,
                started: String::new(),
                mounts: vec![MountRecord {
                    name: "m".into(),
                    host: m.canonicalize().unwrap(),
                    id: None,
                }],
            },
            Record::Step {
                index: 0,
                name: "s".into(),
                if_stopped: Vec::new(),
            },
            undo(
                1,
                UndoOp::Renamed {
                    from: "a".into(),
                    to: "b".into(),
                },
            ),
            undo_in_m(
                2,
                Change::Created,
                UndoOp::Created {
                    path: "a".into(),
                    tree: false,
                    ino: None,
                },
            ),
        ];
        let mut writer = JournalWriter::create(&run.journal()).unwrap();
        for record in &records {
            writer.append(record).unwrap();
        }
        let report = rollback(&run, &records, &mut writer, (Fault::None, Ending::Final));
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.undone, 2);
        assert_eq!(std::fs::read_to_string(m.join("a")).unwrap(), "original");
        assert!(!m.join("b").exists());
        // The rollback is recorded, each undo marked done.
        let written = run.records().unwrap();
        assert!(matches!(written.last(), Some(Record::RolledBack { .. })));
        assert_eq!(
            written
                .iter()
                .filter(|r| matches!(r, Record::Undone { .. }))
                .count(),
            2
        );
    }
}
