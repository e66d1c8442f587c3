//! Checks that keep archive entries inside the destination directory.

use std::path::{Component, Path, PathBuf};
use stepback_sdk::Error;

/// Turns an archive entry name into a path relative to the destination,
/// refusing names that are absolute or climb out with `..`.
pub fn entry_path(name: &Path) -> Result<PathBuf, Error> {
    let mut out = PathBuf::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(Error::new(format!(
                    "archive entry {} would land outside the destination; refusing the archive",
                    name.display()
                )));
            }
        }
    }
    Ok(out)
}

/// Refuses a symlink entry at `entry` (relative to the destination) whose
/// target, resolved from the entry's directory, leaves the destination.
pub fn check_symlink(entry: &Path, target: &Path) -> Result<(), Error> {
    let refuse = || {
        Error::new(format!(
            "archive symlink {} -> {} points outside the destination; refusing the archive",
            entry.display(),
            target.display()
        ))
    };
    let mut depth: usize = entry.components().count().saturating_sub(1);
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => depth = depth.checked_sub(1).ok_or_else(refuse)?,
            Component::RootDir | Component::Prefix(_) => return Err(refuse()),
        }
    }
    Ok(())
}

/// Refuses an entry written beneath a symlink the archive itself creates,
/// which could redirect it anywhere.
pub fn check_not_through(entry: &Path, symlinks: &[PathBuf]) -> Result<(), Error> {
    match symlinks
        .iter()
        .find(|link| entry != link.as_path() && entry.starts_with(link))
    {
        Some(link) => Err(Error::new(format!(
            "archive entry {} is beneath the archive's symlink {}; refusing the archive",
            entry.display(),
            link.display()
        ))),
        None => Ok(()),
    }
}
