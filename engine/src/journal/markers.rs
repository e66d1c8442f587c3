//! A rollback's markers: which undos are done, so that a rollback cut
//! short finishes exactly what it began.
//!
//! Two kinds. Right after each undo, an unsynced `applied` (or
//! `not-applied`) record: a killed process loses nothing it wrote (the
//! kernel keeps it), so a rollback resumed in the same boot re-applies at
//! most the one undo that was in flight, and every undo is idempotent on
//! its own (it checks that its effect is not there yet: a backup still in
//! the backup area, by its inode; an entry still where the undo finds it).
//! And `undone` markers, written in batches once the batch's effects are
//! synced: all that survives a power cut (after a reboot the unsynced
//! records may be on disk without the effects they report), when the
//! undos of the last batch are applied again, which [`overlaps`] makes
//! safe.

use super::log::JournalWriter;
use super::mount::MountFs;
use super::record::{Record, UndoOp};
use super::report::Problem;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

/// What an undo touches: an entry itself (its existence, contents or
/// times), an entry and everything beneath it, or only a directory's
/// listing (an entry inside it appears or disappears), which must be
/// synced before the undo's marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Touches {
    Entry,
    Subtree,
    Listing,
}

pub(super) type Footprint = Vec<(String, String, Touches)>;

pub(super) fn footprint(mount: &str, op: &UndoOp) -> Footprint {
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
        // A directory appearing or going changes what every path beneath
        // it names.
        UndoOp::Created { path, tree: true, .. }
        | UndoOp::Saved { path, tree: true, .. }
        | UndoOp::RemovedDir { path, .. }
        | UndoOp::Snapshot { path, .. } => entry(path, Touches::Subtree),
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
fn overlaps(a: (&str, &str, Touches), b: (&str, &str, Touches)) -> bool {
    let under = |p: &str, dir: &str| {
        p == dir || dir.is_empty() || p.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
    };
    use Touches::*;
    a.0 == b.0
        && match (a.2, b.2) {
            (Subtree, _) => under(b.1, a.1),
            (_, Subtree) => under(a.1, b.1),
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
pub(super) struct Markers<'a> {
    mounts: &'a HashMap<String, MountFs>,
    backup: PathBuf,
    seqs: Vec<u64>,
    /// What the batch touched, by path (a path can be touched as an entry
    /// and as a listing); the paths it touched as subtrees; and every
    /// directory above a touched path. With these, whether a new undo
    /// clashes with the batch is a few lookups per path component, not a
    /// scan of the batch (a rollback of 20,000 renames is 40,000 subtrees).
    touched: HashMap<(String, String), Vec<Touches>>,
    subtrees: HashSet<(String, String)>,
    above: HashSet<(String, String)>,
    /// Host paths whose changes must be durable before the markers.
    to_sync: BTreeSet<PathBuf>,
}

impl<'a> Markers<'a> {
    /// Undos per batch at most.
    const BATCH: usize = 1024;

    pub(super) fn new(mounts: &'a HashMap<String, MountFs>, backup: PathBuf) -> Self {
        Markers {
            mounts,
            backup,
            seqs: Vec::new(),
            touched: HashMap::new(),
            subtrees: HashSet::new(),
            above: HashSet::new(),
            to_sync: BTreeSet::new(),
        }
    }

    /// Called before an undo with this footprint is applied.
    pub(super) fn before(&mut self, footprint: &Footprint, writer: &mut JournalWriter) -> io::Result<()> {
        let clash = footprint.iter().any(|(m, p, t)| {
            let key = (m.clone(), p.clone());
            let at_path = self.touched.get(&key).into_iter().flatten();
            // At the same path, as `overlaps` says; beneath a subtree of
            // the batch; or, as a subtree, above anything the batch touched.
            at_path
                .into_iter()
                .any(|touched| overlaps((m, p, *t), (m, p, *touched)))
                || ancestors(p).any(|a| self.subtrees.contains(&(m.clone(), a.to_owned())))
                || (*t == Touches::Subtree && self.above.contains(&key))
        });
        if clash || self.seqs.len() >= Self::BATCH {
            self.flush(writer)
        } else {
            Ok(())
        }
    }

    pub(super) fn applied(&mut self, seq: u64, mount: &str, op: &UndoOp, footprint: Footprint) {
        if let Some(fs) = self.mounts.get(mount) {
            // Directory listings changed, and entries whose own contents or
            // times changed; a moved-back or discarded entry changes the
            // backup area too.
            match op {
                UndoOp::Copied { path, .. }
                | UndoOp::RemovedDir { path, .. }
                | UndoOp::Attributes { path, .. }
                | UndoOp::Times { path, .. } => {
                    self.to_sync.insert(fs.host.join(path));
                }
                // What was there is discarded into the backup area; the
                // backup itself can come from a directory in it (an
                // original exchanged into a command's upper layer).
                UndoOp::Saved { backup, .. } => {
                    let moved_from = self.backup.join(backup);
                    if let Some(dir) = moved_from.parent() {
                        self.to_sync.insert(dir.to_path_buf());
                    }
                    self.to_sync.insert(self.backup.clone());
                }
                UndoOp::Created { .. } | UndoOp::Snapshot { .. } => {
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
            for a in ancestors(&path) {
                self.above.insert((mount.clone(), a.to_owned()));
            }
            if touches == Touches::Subtree {
                self.subtrees.insert((mount.clone(), path.clone()));
            }
            self.touched.entry((mount, path)).or_default().push(touches);
        }
    }

    pub(super) fn flush(&mut self, writer: &mut JournalWriter) -> io::Result<()> {
        if self.seqs.is_empty() {
            return Ok(());
        }
        for path in std::mem::take(&mut self.to_sync) {
            sync_entry(&path)?;
        }
        writer.append_all(self.seqs.drain(..).map(|seq| Record::Undone { seq }))?;
        self.touched.clear();
        self.subtrees.clear();
        self.above.clear();
        Ok(())
    }
}

/// This boot's identity, to tell a resumed rollback whether the
/// unsynced markers of an earlier attempt can be trusted; `None` where
/// the kernel does not say.
pub(super) fn this_boot() -> Option<String> {
    if let Some(id) = super::fault::Fault::boot() {
        return Some(id);
    }
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_owned()).filter(|id| !id.is_empty())
}

/// What a rollback does with the undos an earlier attempt of it, in this
/// boot, could not apply (their `not-applied` markers).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Failed {
    /// They stay failed: resuming an attempt cut short finishes what it
    /// began, reporting their problems again.
    Settled,
    /// They are tried again.
    Retried,
}

/// The undos earlier attempts of this rollback settled: applied (synced,
/// or in an attempt of this boot `boot`), and those an attempt of this
/// boot could not apply, with the problems it reported (unless `failed`
/// says to try them again).
pub(super) fn settled(
    records: &[Record],
    (boot, failed): (Option<&str>, Failed),
) -> (HashSet<u64>, Vec<Problem>) {
    let mut done = HashSet::new();
    let mut problems = Vec::new();
    let mut trusted = false;
    for record in records {
        match record {
            Record::RollbackStarted { boot: then } => trusted = boot.is_some() && then.as_deref() == boot,
            Record::Undone { seq } => {
                done.insert(*seq);
            }
            Record::Applied { seq } if trusted => {
                done.insert(*seq);
            }
            Record::NotApplied {
                seq,
                mount,
                path,
                reason,
            } if trusted && failed == Failed::Settled && done.insert(*seq) => problems.push(Problem {
                mount: mount.clone(),
                path: path.clone(),
                reason: reason.clone(),
                kept_at: None,
            }),
            _ => {}
        }
    }
    (done, problems)
}

/// Writes, unsynced, that undo `seq` was applied (`problem: None`) or not
/// (see the module docs). A marker that cannot be written costs only
/// precision: a resumed attempt then applies that undo again.
pub(super) fn note(writer: &mut JournalWriter, seq: u64, problem: Option<&Problem>) {
    let record = match problem {
        None => Record::Applied { seq },
        Some(p) => Record::NotApplied {
            seq,
            mount: p.mount.clone(),
            path: p.path.clone(),
            reason: p.reason.clone(),
        },
    };
    let _ = writer.append_deferred(&record);
}

/// The directories above `path` in its mount, nearest first, the mount's
/// root (`""`) last; none for the root itself.
pub(super) fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let parents = std::iter::successors(path.rsplit_once('/').map(|(a, _)| a), |p| {
        p.rsplit_once('/').map(|(a, _)| a)
    });
    parents.chain((!path.is_empty()).then_some(""))
}

/// Makes a restored file or directory durable. Never follows a symlink
/// (which could lead out of the mount) and never waits on a special file
/// (opening a FIFO blocks): those, and entries gone since, need no sync.
fn sync_entry(path: &Path) -> io::Result<()> {
    use rustix::fs::{FileType, Mode, OFlags, fstat, open};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    match FileType::from_raw_mode(fstat(&fd)?.st_mode) {
        FileType::RegularFile | FileType::Directory => Ok(rustix::fs::fsync(&fd)?),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_markers_count_only_in_the_boot_that_wrote_them() {
        let started = |boot: &str| Record::RollbackStarted {
            boot: Some(boot.into()),
        };
        let not_applied = |seq| Record::NotApplied {
            seq,
            mount: "m".into(),
            path: "p".into(),
            reason: "undo failed".into(),
        };
        let records = vec![
            started("one"),
            Record::Applied { seq: 9 },
            Record::Undone { seq: 9 },
            Record::Applied { seq: 8 },
            not_applied(7),
            started("two"),
            Record::Applied { seq: 6 },
            not_applied(5),
        ];
        // Resumed after a reboot: only what was synced, and what the
        // attempt of that boot wrote.
        let (done, problems) = settled(&records, (Some("two"), Failed::Settled));
        assert_eq!(done, HashSet::from([9, 6, 5]));
        assert_eq!(problems.len(), 1);
        assert_eq!(
            (problems[0].path.as_str(), problems[0].reason.as_str()),
            ("p", "undo failed")
        );
        // Resumed in the first boot (as if): its records count, the
        // second's do not.
        assert_eq!(
            settled(&records, (Some("one"), Failed::Settled)).0,
            HashSet::from([9, 8, 7])
        );
        // A kernel that does not say which boot it is: only `undone`.
        assert_eq!(settled(&records, (None, Failed::Settled)).0, HashSet::from([9]));
        // Retried: what could not be applied is pending again.
        let (done, problems) = settled(&records, (Some("two"), Failed::Retried));
        assert_eq!((done, problems.len()), (HashSet::from([9, 6]), 0));
    }

    #[test]
    fn ancestors_are_listed_nearest_first_down_to_the_root() {
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), ["a/b", "a", ""]);
        assert_eq!(ancestors("a").collect::<Vec<_>>(), [""]);
        assert!(ancestors("").next().is_none());
    }

    #[test]
    fn overlapping_footprints_are_told_apart_from_neighbours() {
        let s = |p| ("m", p, Touches::Subtree);
        let e = |p| ("m", p, Touches::Entry);
        let l = |p| ("m", p, Touches::Listing);
        assert!(overlaps(s("a"), e("a/b")) && overlaps(e("a/b"), s("a")));
        assert!(overlaps(e("a"), e("a")) && !overlaps(e("a"), e("ab")));
        assert!(!overlaps(l("a"), e("a")) && !overlaps(s("a"), e("ab")));
        assert!(!overlaps(s("a"), ("n", "a", Touches::Entry)));
    }
}
