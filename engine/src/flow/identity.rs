//! Whether one directory holds another, by what they are rather than by
//! how they are named: a bind mount (or any second path) naming an
//! ancestor of Stepback's state directory holds the state directory as
//! surely as the ancestor's own path does, and comparing paths misses it.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A directory's device and inode.
type Identity = (u64, u64);

fn identity(path: &Path) -> Option<Identity> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// `path` and every directory above it (by its canonical path), as identities.
fn ancestry(path: &Path) -> HashSet<Identity> {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    canonical.ancestors().filter_map(identity).collect()
}

/// Whether `outer` is `inner` or one of the directories above it, however
/// either is named.
pub(super) fn holds(outer: &Path, inner: &Path) -> bool {
    identity(outer).is_some_and(|outer| ancestry(inner).contains(&outer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_name_of_an_ancestor_holds_what_is_beneath_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("srv/state");
        std::fs::create_dir_all(&state).unwrap();
        // A symlink stands in for a bind mount: another name, same inode.
        let alias = dir.path().join("alias");
        std::os::unix::fs::symlink(dir.path().join("srv"), &alias).unwrap();
        assert!(holds(&alias, &state));
        assert!(holds(&state, &state));
        assert!(!holds(&state, &alias), "state holds neither srv nor its alias");
        std::fs::create_dir(dir.path().join("other")).unwrap();
        assert!(!holds(&dir.path().join("other"), &state));
    }
}
