//! Where undos act: directory handles kept open across a rollback's undos
//! and checks, so that each resolves one name instead of its whole path.

use super::record::UndoOp;
use cap_std::fs::Dir;
use std::collections::HashMap;
use std::io;

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
            // Following no symlink: an undo acts only where its record
            // says (a symlink put where a directory was by another
            // process leads elsewhere, and the undo is not done there).
            std::collections::hash_map::Entry::Vacant(e) => match super::entry::dir_beneath(root, parent)? {
                Some(dir) => e.insert(dir),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{parent} is not a directory (missing, or a file or symlink in its place)"),
                    ));
                }
            },
        };
        Ok(Some((dir, name)))
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
        | UndoOp::Snapshot { path, .. }
        | UndoOp::Attributes { path, .. }
        | UndoOp::Renamed { to: path, .. } => *path = name.to_owned(),
    }
    op
}
