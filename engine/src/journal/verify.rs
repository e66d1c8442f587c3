//! Checking a rollback's work: every path it restored against the first
//! record of that path, which describes it as it was before the run.

use super::entry::{at, fd_xattrs, mtime, open_dir_readable};
use super::mount::MountFs;
use super::places::{Places, relocated};
use super::record::{Meta, Owner, Record, UndoOp, Xattr, voided};
use super::report::{RollbackReport, problem};
use cap_std::fs::{Dir, MetadataExt};
use std::collections::{HashMap, HashSet};
use std::io::{self, ErrorKind};

/// Checks each path against its first record, which describes it as it
/// was before the run touched it.
pub(super) fn verify(
    records: &[Record],
    mounts: &HashMap<String, MountFs>,
    backup: &Dir,
    report: &mut RollbackReport,
) {
    let mut places = Places::default();
    for (mount, undo) in originals(records) {
        let Some(fs) = mounts.get(mount) else { continue };
        let path = undo.path();
        let checked = match places.locate(mount, &fs.dir, path) {
            Ok(Some((dir, name))) => check(dir, backup, &relocated(undo, name)),
            // At the root, or in a directory that is gone (its entries
            // are looked for, and not found, from the root).
            _ => check(&fs.dir, backup, undo),
        };
        if let Err(reason) = checked {
            report.problems.push(problem(mount, undo, reason));
        }
    }
}

/// The first record of each path, which describes it as it was before the
/// run, in journal order. Left out: voided records; paths beneath a name
/// that a rename moved before their first record (they stood elsewhere
/// before the run, so their first record does not describe the original);
/// paths beneath one the run created (they did not exist before).
pub(super) fn originals(records: &[Record]) -> Vec<(&str, &UndoOp)> {
    let voided = voided(records);
    let mut seen = HashSet::new();
    // Names a rename or a create gave a new meaning to, by mount: a path
    // at or beneath one of them is looked up, ancestor by ancestor.
    let mut renamed: HashSet<(&str, &str)> = HashSet::new();
    let mut out = Vec::new();
    for record in records {
        let Record::Undo { seq, mount, undo, .. } = record else {
            continue;
        };
        if voided.contains(seq) {
            continue;
        }
        let path = undo.path();
        let moved = std::iter::once(path)
            .chain(super::markers::ancestors(path))
            .any(|p| renamed.contains(&(mount.as_str(), p)));
        match undo {
            UndoOp::Renamed { from, to } => {
                renamed.insert((mount, from));
                renamed.insert((mount, to));
            }
            // What is beneath a snapshot was recorded after it changed.
            UndoOp::Created { path, .. } | UndoOp::Snapshot { path, .. } => {
                renamed.insert((mount, path));
            }
            _ => {}
        }
        if moved || !seen.insert((mount.as_str(), path)) {
            continue;
        }
        out.push((mount.as_str(), undo));
    }
    out
}

/// Type and size for every file; for a file moved back, its inode; for a
/// file restored from a copy, its contents' hash against the copy's.
fn check(dir: &Dir, backup: &Dir, op: &UndoOp) -> Result<(), String> {
    let meta = super::entry::metadata_beneath(dir, op.path());
    match (op, meta) {
        (UndoOp::Created { .. } | UndoOp::Snapshot { backup: None, .. }, Err(e))
            if e.kind() == ErrorKind::NotFound =>
        {
            Ok(())
        }
        (UndoOp::Created { .. } | UndoOp::Snapshot { backup: None, .. }, Ok(m)) => {
            Err(format!("should not exist, but is {}", found(&m)))
        }
        (UndoOp::Snapshot { backup: Some(_), .. }, Ok(_)) => Ok(()),
        (
            UndoOp::Attributes {
                path,
                mode,
                owner,
                xattrs,
            },
            Ok(m),
        ) if m.is_dir() => check_attributes(dir, path, &m, (*mode, *owner, xattrs.as_deref())),
        (UndoOp::Saved { ino, tree: true, .. }, Ok(m)) if m.is_dir() => match m.ino() == *ino {
            true => Ok(()),
            false => Err(format!(
                "is not the original directory (inode {} instead of {ino})",
                m.ino()
            )),
        },
        (UndoOp::Saved { tree: true, .. }, Ok(m)) => {
            Err(format!("should be a directory, but is {}", found(&m)))
        }
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
                size,
                backup: name,
                xattrs,
                ..
            },
            Ok(m),
        ) if m.is_file() && m.len() == *size => {
            check_copied(dir, op.path(), (backup, name), xattrs.as_deref())
        }
        (UndoOp::Saved { size, .. } | UndoOp::Copied { size, .. }, Ok(m)) => {
            Err(format!("should be a file of {size} bytes, but is {}", found(&m)))
        }
        (UndoOp::RemovedDir { meta, .. }, Ok(m)) if m.is_dir() => check_meta(dir, op.path(), &m, meta),
        (UndoOp::RemovedSymlink { target, owner, .. }, Ok(m)) if m.is_symlink() => {
            match dir.read_link_contents(op.path()) {
                Ok(t) if t == target.as_path() => check_owner(&m, *owner),
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
        // The first record of `to`: nothing was there before the run.
        (UndoOp::Renamed { .. }, Err(e)) if e.kind() == ErrorKind::NotFound => Ok(()),
        (UndoOp::Renamed { .. }, Ok(m)) => Err(format!("should not exist, but is {}", found(&m))),
        (_, Err(e)) => Err(format!("missing after rollback: {e}")),
        (_, Ok(m)) => Err(format!("has the wrong type: {}", found(&m))),
    }
}

/// What an entry is, for a message.
fn found(m: &cap_std::fs::Metadata) -> String {
    if m.is_dir() {
        "a directory".to_string()
    } else if m.is_symlink() {
        "a symlink".to_string()
    } else {
        format!("a file of {} bytes", m.len())
    }
}

/// A directory's mode, owner and extended attributes as recorded.
fn check_attributes(
    dir: &Dir,
    path: &str,
    m: &cap_std::fs::Metadata,
    (mode, owner, xattrs): (u32, Owner, Option<&[Xattr]>),
) -> Result<(), String> {
    use cap_std::fs::PermissionsExt;
    if m.permissions().mode() & 0o7777 != mode & 0o7777 {
        return Err(format!(
            "mode not restored ({:o} instead of {:o})",
            m.permissions().mode() & 0o7777,
            mode & 0o7777
        ));
    }
    check_owner(m, Some(owner))?;
    same_xattrs(xattrs, || {
        open_dir_readable(dir, at(path)).and_then(|d| fd_xattrs(&d))
    })
}

/// A file restored from the copy `name` in `backup`: the same contents
/// and extended attributes.
fn check_copied(
    dir: &Dir,
    path: &str,
    (backup, name): (&Dir, &str),
    xattrs: Option<&[Xattr]>,
) -> Result<(), String> {
    match (hash(dir, path), hash(backup, name)) {
        (Ok(restored), Ok(saved)) if restored == saved => {
            same_xattrs(xattrs, || dir.open(path).and_then(|f| fd_xattrs(&f)))
        }
        (Ok(_), Ok(_)) => Err("contents differ from the saved copy".into()),
        (Err(e), _) | (_, Err(e)) => Err(format!("cannot compare with the saved copy: {e}")),
    }
}

fn hash(dir: &Dir, path: &str) -> io::Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    io::copy(&mut dir.open(path)?, &mut hasher)?;
    Ok(hasher.finalize().into())
}

fn check_owner(m: &cap_std::fs::Metadata, owner: Option<Owner>) -> Result<(), String> {
    match owner {
        Some(o) if (m.uid(), m.gid()) != (o.uid, o.gid) => Err(format!(
            "owner not restored ({}:{} instead of {}:{})",
            m.uid(),
            m.gid(),
            o.uid,
            o.gid
        )),
        _ => Ok(()),
    }
}

/// Mode, owner and extended attributes of a recreated directory.
/// Whether an entry has the extended attributes recorded (`saved`), all
/// and only those; `found` reads its own. `None`: none were recorded.
fn same_xattrs(
    saved: Option<&[Xattr]>,
    found: impl FnOnce() -> std::io::Result<Vec<Xattr>>,
) -> Result<(), String> {
    let Some(saved) = saved else {
        return Ok(());
    };
    let mut found = found().map_err(|e| format!("cannot read its extended attributes: {e}"))?;
    let mut saved = saved.to_vec();
    found.sort_by(|a, b| a.name.0.cmp(&b.name.0));
    saved.sort_by(|a, b| a.name.0.cmp(&b.name.0));
    match found == saved {
        true => Ok(()),
        false => Err("extended attributes not restored".to_owned()),
    }
}

fn check_meta(dir: &Dir, path: &str, m: &cap_std::fs::Metadata, meta: &Meta) -> Result<(), String> {
    use cap_std::fs::PermissionsExt;
    if m.permissions().mode() & 0o7777 != meta.mode & 0o7777 {
        return Err(format!(
            "mode not restored ({:o} instead of {:o})",
            m.permissions().mode() & 0o7777,
            meta.mode & 0o7777
        ));
    }
    check_owner(m, meta.owner)?;
    if meta.xattrs.is_empty() {
        return Ok(());
    }
    let found = open_dir_readable(dir, path)
        .and_then(|d| fd_xattrs(&d))
        .map_err(|e| format!("cannot read its extended attributes: {e}"))?;
    for x in &meta.xattrs {
        if !found.contains(x) {
            return Err(format!("extended attribute {} not restored", x.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{Change, Time, undo_in_m};

    fn undo(seq: u64, undo: UndoOp) -> Record {
        undo_in_m(seq, Change::Touched, undo)
    }

    fn times(path: &str, secs: i64) -> UndoOp {
        UndoOp::Times {
            path: path.into(),
            mtime: Time(secs, 0),
            atime: None,
        }
    }

    #[test]
    fn each_path_is_checked_against_its_first_record_only() {
        let records = vec![
            undo(1, times("a", 1)),
            undo(2, times("a", 2)),
            undo(3, times("b", 3)),
        ];
        let checked: Vec<_> = originals(&records)
            .into_iter()
            .map(|(_, op)| op.clone())
            .collect();
        assert_eq!(checked, [times("a", 1), times("b", 3)]);
    }

    #[test]
    fn paths_beneath_a_rename_or_a_create_and_voided_records_are_left_out() {
        let renamed = UndoOp::Renamed {
            from: "d".into(),
            to: "e".into(),
        };
        let created = UndoOp::Created {
            path: "n".into(),
            tree: true,
            ino: None,
        };
        let records = vec![
            undo(1, renamed.clone()),
            // Stood elsewhere before the run: its record says nothing of
            // the original.
            undo(2, times("e/x", 5)),
            undo(3, created.clone()),
            // Did not exist before the run.
            undo(4, times("n/y", 6)),
            undo(5, times("z", 7)),
            Record::Void { seqs: vec![5] },
            undo(6, times("d/x", 8)),
        ];
        let checked: Vec<_> = originals(&records)
            .into_iter()
            .map(|(_, op)| op.clone())
            .collect();
        assert_eq!(checked, [renamed, created]);
    }
}
