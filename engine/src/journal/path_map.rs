//! Sets and maps of paths in a run's mounts, looked up without allocating:
//! the journal consults them for every change a step makes, and a key of
//! two owned strings cost two allocations per lookup.

use std::collections::HashMap;

/// Values by mount name, then by path within the mount.
pub(super) struct PathMap<V> {
    by_mount: HashMap<String, HashMap<String, V>>,
}

/// A set of paths.
pub(super) type PathSet = PathMap<()>;

impl<V> Default for PathMap<V> {
    fn default() -> Self {
        PathMap {
            by_mount: HashMap::new(),
        }
    }
}

impl<V> PathMap<V> {
    pub(super) fn get(&self, mount: &str, path: &str) -> Option<&V> {
        self.by_mount.get(mount)?.get(path)
    }

    pub(super) fn contains(&self, mount: &str, path: &str) -> bool {
        self.get(mount, path).is_some()
    }

    pub(super) fn insert(&mut self, mount: &str, path: &str, value: V) -> Option<V> {
        match self.by_mount.get_mut(mount) {
            Some(paths) => paths.insert(path.to_owned(), value),
            None => {
                let paths = HashMap::from([(path.to_owned(), value)]);
                self.by_mount.insert(mount.to_owned(), paths);
                None
            }
        }
    }

    pub(super) fn remove(&mut self, mount: &str, path: &str) -> Option<V> {
        self.by_mount.get_mut(mount)?.remove(path)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_mount.values().all(HashMap::is_empty)
    }

    /// Keeps the paths of `mount` for which `keep` says so.
    pub(super) fn retain_in(&mut self, mount: &str, mut keep: impl FnMut(&str) -> bool) {
        if let Some(paths) = self.by_mount.get_mut(mount) {
            paths.retain(|path, _| keep(path));
        }
    }

    /// Renames every path of `mount` that `rename` maps to a new one.
    pub(super) fn rename_in(&mut self, mount: &str, rename: impl Fn(&str) -> Option<String>) {
        let Some(paths) = self.by_mount.get_mut(mount) else {
            return;
        };
        let moved: Vec<(String, String)> = paths
            .keys()
            .filter_map(|p| Some((p.clone(), rename(p)?)))
            .collect();
        for (old, new) in moved {
            if let Some(value) = paths.remove(&old) {
                paths.insert(new, value);
            }
        }
    }
}

impl PathSet {
    pub(super) fn add(&mut self, mount: &str, path: &str) {
        self.insert(mount, path, ());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_kept_per_mount_and_renamed_beneath_a_directory_only() {
        let mut set = PathSet::default();
        assert!(set.is_empty());
        for p in ["a/b", "a/b/c", "a/bc"] {
            set.add("m", p);
        }
        set.add("n", "a/b");
        set.rename_in("m", |p| {
            let rest = p.strip_prefix("a/b")?;
            (rest.is_empty() || rest.starts_with('/')).then(|| format!("z{rest}"))
        });
        assert!(set.contains("m", "z") && set.contains("m", "z/c") && set.contains("m", "a/bc"));
        assert!(!set.contains("m", "a/b") && set.contains("n", "a/b"));
        set.retain_in("m", |p| p.starts_with('z'));
        assert!(!set.contains("m", "a/bc"));
        assert_eq!(set.remove("n", "a/b"), Some(()));
        set.remove("m", "z");
        set.remove("m", "z/c");
        assert!(set.is_empty());
    }
}
