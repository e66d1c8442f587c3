//! Checking a rollback's work: every path it restored against the first
//! record of that path, which describes it as it was before the run.

use super::capture::{MountFs, mtime};
use super::record::{Record, UndoOp};
use super::undo::{Places, RollbackReport, at, problem, relocated};
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
    let mut seen = HashSet::new();
    let mut places = Places::default();
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
