//! Batching of a rollback's `undone` markers, and the reasoning that makes
//! it safe to lose the last batch in a crash.

use super::capture::MountFs;
use super::log::JournalWriter;
use super::record::{Record, UndoOp};
use std::collections::{BTreeSet, HashMap};
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
        UndoOp::Created { path, tree: true, .. } => entry(path, Touches::Subtree),
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
    /// and as a listing), and the subtrees it touched, which are rare.
    touched: HashMap<(String, String), Vec<Touches>>,
    subtrees: Vec<(String, String, Touches)>,
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
            subtrees: Vec::new(),
            to_sync: BTreeSet::new(),
        }
    }

    /// Called before an undo with this footprint is applied.
    pub(super) fn before(&mut self, footprint: &Footprint, writer: &mut JournalWriter) -> io::Result<()> {
        let clash = footprint.iter().any(|(m, p, t)| {
            let f = (m.as_str(), p.as_str(), *t);
            let at_path = self.touched.get(&(m.clone(), p.clone())).into_iter().flatten();
            at_path.into_iter().any(|t| overlaps(f, (m, p, *t)))
                || self
                    .subtrees
                    .iter()
                    .any(|(sm, sp, st)| overlaps(f, (sm, sp, *st)))
                || (*t == Touches::Subtree
                    && self
                        .touched
                        .iter()
                        .any(|((tm, tp), ts)| ts.iter().any(|t| overlaps(f, (tm, tp, *t)))))
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
                | UndoOp::Times { path, .. } => {
                    self.to_sync.insert(fs.host.join(path));
                }
                UndoOp::Saved { .. } | UndoOp::Created { .. } => {
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
        Ok(())
    }
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
