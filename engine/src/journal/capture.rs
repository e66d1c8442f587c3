//! Capturing undo information before a change, the cheapest correct way
//! for each kind of change:
//!
//! | change | capture | undo |
//! | --- | --- | --- |
//! | create a file, directory, symlink or link | `created` record | remove it |
//! | truncate a file (`fs::write`) | move it aside: a rename, no copy | move it back |
//! | truncate a file with other hard links | copy | write the copy back in place |
//! | open an existing file for writing (append, positioned writes, set-size) | copy (a reflink clone where the filesystem can) | write the copy back in place |
//! | unlink a file, or rename over one | hard link it into the backup area | move it back |
//! | remove an empty directory | its mode, owner, times and extended attributes | recreate it |
//! | remove or replace a symlink | its target, owner and mtime | recreate it |
//! | any change inside a directory, `set-times` | the entry's mtime | set it back |
//! | rename | both names | rename back |
//!
//! What the run has already dealt with is known by identity (device and
//! inode), never by path: an inode the run created needs no capture
//! wherever it is moved, and one whose contents were copied needs no second
//! copy whatever name it is reached by. Paths go only into the records,
//! where they are valid at the time of the record (undo runs newest first).
//!
//! Each call is captured in two phases: the `before_*` methods write the
//! records (and move or link originals aside); then [`Recorder::finish`]
//! says whether the call succeeded. Only then does the bookkeeping change;
//! if the call failed, whatever the capture did to the disk is put back and
//! its records are voided, so that a rollback never acts on a change that
//! did not happen.
//!
//! Backups live in the run's directory under the state dir; for an entry on
//! another filesystem, moves and links fall back to copies.

use super::entry::{entry_state, entry_with_id, fd_xattrs, mtime, open_dir_readable, set_mtime};
use super::fault::Fault;
use super::log::{Durability, JournalWriter};
use super::orphans;
use super::record::{
    Change, EntryState, FailureAction, FileId, FileLeft, Meta, MountRecord, Owner, Record, Time, UndoOp,
    Xattr,
};
use super::room::Room;
use super::runs::RunDir;
use cap_fs_ext::DirExt;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, Metadata, MetadataExt, PermissionsExt};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{self, ErrorKind};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Room a record needs, checked against the reserve: more than any record
/// but one naming a path near `PATH_MAX`.
const RECORD_ROOM: u64 = 8 << 10;

/// A flow mount, opened as a capability: every path below is resolved
/// beneath its root, never following a symlink out of it.
pub struct MountFs {
    pub name: String,
    pub host: PathBuf,
    pub dir: Dir,
    /// The directory's identity when it was opened.
    pub id: FileId,
}

impl MountFs {
    /// Opens the mount's directory at `host` (canonical), following no
    /// symlink in any component.
    pub fn open(name: &str, host: &Path) -> io::Result<MountFs> {
        use rustix::fs::{Mode, OFlags, ResolveFlags, openat2};
        let fd = openat2(
            rustix::fs::CWD,
            host,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", host.display())))?;
        let dir = Dir::from_std_file(std::fs::File::from(fd));
        let id = FileId::of(&dir.dir_metadata()?);
        Ok(MountFs {
            name: name.to_owned(),
            host: host.to_path_buf(),
            dir,
            id,
        })
    }

    /// Like [`MountFs::open`], refusing a directory that is not the one a
    /// run recorded (`pinned`): the mount was replaced or moved since, and
    /// undoing the run's changes there would change something else.
    pub fn open_pinned(name: &str, host: &Path, pinned: Option<FileId>) -> io::Result<MountFs> {
        let fs = MountFs::open(name, host)?;
        match pinned {
            Some(id) if id != fs.id => Err(io::Error::other(format!(
                "{} is not the directory the run changed (inode {} on device {}, the run's was inode {} on device {}): it was replaced or moved, so it is left as it is",
                host.display(),
                fs.id.ino,
                fs.id.dev,
                id.ino,
                id.dev
            ))),
            _ => Ok(fs),
        }
    }
}

/// An entry about to change, as the caller resolved it on disk: the
/// directory that holds it (open), and its one-component name there.
pub struct Entry<'a> {
    pub mount: &'a str,
    pub dir: &'a Dir,
    pub dir_id: FileId,
    /// The directory's path in the mount (`""` for its root).
    pub dir_rel: &'a str,
    pub name: &'a str,
}

impl Entry<'_> {
    /// The entry's path in the mount.
    pub fn rel(&self) -> String {
        if self.dir_rel.is_empty() {
            self.name.to_owned()
        } else {
            format!("{}/{}", self.dir_rel, self.name)
        }
    }
}

/// What a create makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewEntry {
    File,
    Dir,
    Symlink,
}

/// What the caller must do after a truncation was captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    Nothing,
    /// The original was moved aside: the open must create the file anew;
    /// [`Recorder::finish`] gives the new file the original's mode, owner
    /// and extended attributes.
    MovedAside,
}

/// How a call that was captured ended.
pub enum Outcome<'a> {
    /// The call failed: nothing it was captured for happened.
    Failed,
    Succeeded {
        /// The entry the call created, if it created one.
        created: Option<FileId>,
        /// The file the call opened, if it opened one.
        opened: Option<&'a std::fs::File>,
    },
}

/// A recorder the step's capabilities share.
pub type SharedRecorder = std::sync::Arc<std::sync::Mutex<dyn Recorder>>;

/// What the filesystem layer (or any other caller that changes a mount on
/// a step's behalf) tells the journal: each `before_*` call before the
/// change, then [`Recorder::finish`] once the change was tried. A `before_*`
/// that fails means the change must not be made (and `finish` still
/// follows, with [`Outcome::Failed`]).
pub trait Recorder: Send {
    /// Before creating a file, directory, symlink at `at`, where nothing is.
    fn before_create(&mut self, at: &Entry, kind: NewEntry) -> io::Result<()>;
    /// Before giving the existing inode a new name at `at` (a hard link).
    fn before_link(&mut self, at: &Entry) -> io::Result<()>;
    /// Before opening the existing file at `at` with truncation.
    fn before_truncate(&mut self, at: &Entry, meta: &Metadata) -> io::Result<Capture>;
    /// Before opening the existing file at `at` for writing in place.
    fn before_write_open(&mut self, at: &Entry, meta: &Metadata) -> io::Result<()>;
    /// Before removing the file, symlink or (empty) directory at `at`.
    fn before_remove(&mut self, at: &Entry, meta: &Metadata) -> io::Result<()>;
    /// Removes the directory at `at` (`meta`), with all it holds, by one
    /// rename into the backup area, recorded first like a removed file
    /// (the backup's name says where it belongs): a rollback moves it back
    /// as it was, every inode in it untouched, and a removal of thousands
    /// of entries costs one rename. `false` when it cannot be moved so (the
    /// run's own, on another filesystem or mount, or without root a
    /// directory its owner may not write): the caller then removes it
    /// entry by entry. No `finish` follows.
    fn remove_tree(&mut self, at: &Entry, meta: &Metadata) -> io::Result<bool>;
    /// Before renaming `from` to `to`, within one mount.
    fn before_rename(
        &mut self,
        from: &Entry,
        from_meta: &Metadata,
        to: &Entry,
        to_meta: Option<&Metadata>,
    ) -> io::Result<()>;
    /// Before swapping the file at `at` (`meta`: the original) with the
    /// step's own file at `replacement`, by one
    /// `renameat2(RENAME_EXCHANGE)`: when `replacement` is in the backup
    /// area, the original lands where it is kept, one rename instead of two.
    /// Records it in the current batch (see [`Recorder::sync_batch`]).
    /// `None` when the original cannot be kept that way; the caller then
    /// goes through [`Recorder::before_truncate`]. No `finish` follows: see
    /// [`Recorder::make_recorded`].
    fn before_exchange(&mut self, at: &Entry, meta: &Metadata, replacement: &Path)
    -> io::Result<Option<u64>>;
    /// Before moving the step's own file, symlink or directory (`kind`;
    /// a directory with all it holds, all the step's own), inode `ino`,
    /// by one rename to `at`, where nothing is. Records it in the current
    /// batch, naming the inode, so that a rollback removes only that inode.
    /// `None` when it needs no record (the directory is the run's own);
    /// the caller then goes through [`Recorder::before_create`]. No
    /// `finish` follows: see [`Recorder::make_recorded`].
    fn before_move_in(&mut self, at: &Entry, ino: u64, kind: NewEntry) -> io::Result<Option<u64>>;
    /// Makes the records of the batch so far durable, with one sync: the
    /// caller makes none of their changes before. A batch's records, and
    /// the directory times saved for them, are written without a sync,
    /// since a record whose change never happened (a crash before it) is
    /// harmless: the rollback moves back or removes only the inodes they
    /// name.
    fn sync_batch(&mut self) -> io::Result<()>;
    /// Makes the change recorded in a batch as `seq` by calling `change`,
    /// which returns the inode it put in place. A failed change voids its
    /// record.
    fn make_recorded(&mut self, seq: u64, change: &mut dyn FnMut() -> io::Result<FileId>) -> io::Result<()>;
    /// The changes recorded in a batch as `seqs` will not be made (the
    /// caller stopped before them): their records are voided, so that
    /// nothing expects them, neither the rollback nor its checks.
    fn abandon(&mut self, seqs: Vec<u64>) -> io::Result<()>;
    /// Before changing the timestamps of the entry at `rel` (`meta`: what
    /// is there).
    fn before_set_times(&mut self, mount: &str, rel: &str, meta: &Metadata) -> io::Result<()>;
    /// Before changing the mode, owner or extended attributes of the
    /// directory at `rel` (`meta` and `xattrs`: what it has now).
    fn before_set_attributes(
        &mut self,
        mount: &str,
        rel: &str,
        meta: &Metadata,
        xattrs: Vec<Xattr>,
    ) -> io::Result<()>;
    /// Whether changing the timestamps of the entry `meta` describes needs
    /// no capture (the run made it, or saved its times already): a caller
    /// can then skip finding out where it is.
    fn times_kept(&self, meta: &Metadata) -> bool;
    /// Whether everything in directory `dir` is the run's own (the run
    /// made it and moved or linked nothing into it): a change to any entry
    /// there needs no capture, and a caller need not even look at it.
    fn owns_all_in(&self, dir: FileId) -> bool;
    /// The call captured since the last `finish` has returned.
    fn finish(&mut self, outcome: Outcome) -> io::Result<()>;
    /// The step put entry `id` where it is without a capture (a file it
    /// opened in a directory that is all its own, a hard link it made).
    fn made(&mut self, id: FileId);
    /// The step moved in whole a directory it made
    /// ([`Recorder::before_move_in`]): `dirs`, the directories beneath it,
    /// and `others`, its other entries, are the run's own, as they would be
    /// had it made them one by one (and nothing is taken for another
    /// process's on rollback).
    fn made_tree(&mut self, dirs: &[FileId], others: &[FileId]);
    /// A command of the step is about to change the mounts without a
    /// capture (`command`, for the record): said before it starts.
    fn uncaptured(&mut self, command: &str) -> io::Result<()>;
    /// The step's commands run without some of its limits (`what`, with
    /// why): said once, before the first runs.
    fn unenforced(&mut self, what: &str) -> io::Result<()>;
    /// The step's commands reach beyond its mounts (`what`: the network,
    /// sockets, variables granted): said once, before the first runs.
    fn reach(&mut self, what: &str) -> io::Result<()>;
    /// Before a command that changes the mount without a capture
    /// (`capture = "snapshot"`): copies what is at `rel` whole, so that a
    /// rollback puts it back (once per path and run: an older snapshot
    /// already covers a later command).
    fn snapshot(&mut self, mount: &str, rel: &str) -> io::Result<()>;
    /// The step is done changing the file `meta` describes, for now (it
    /// closed a descriptor it could write through, set its times, or
    /// ended): what another process does to it later is not the run's.
    fn left(&mut self, meta: &Metadata);
}

/// What the rest of the run already knows of an inode.
#[derive(Default)]
struct Known {
    /// Inodes the run created: they need no capture, wherever they are.
    fresh: HashSet<FileId>,
    /// Inodes whose original contents are saved in a copy, with their
    /// size then: what a later record of the same inode must say it was.
    preserved: HashMap<FileId, u64>,
    /// Entries whose original mtime is recorded.
    times_saved: HashSet<FileId>,
    /// Directories whose original mode and owner are recorded.
    attributes_saved: HashSet<FileId>,
    /// Directories the run made that nothing was moved or linked into:
    /// every entry in them is the run's own, whatever its inode.
    whole: HashSet<FileId>,
    /// Files the run changed (wrote, resized, set the times of), with
    /// their size and time just after its last change.
    written: HashMap<FileId, (u64, Time)>,
    /// Directories the run made that hold, or once held, something not
    /// the run's (an original moved or linked into them or beneath them):
    /// records name paths through them, so they are not the run's own
    /// to move or remove unrecorded. Moving or removing one is recorded
    /// like an original's, so that a rollback finds every path its older
    /// records name.
    mixed: HashSet<FileId>,
}

/// Bookkeeping to apply once the call succeeded.
enum Mark {
    /// The call creates a new inode (identified by [`Outcome`]).
    Fresh,
    /// The call creates a new directory, with nothing in it but the run's.
    FreshDir,
    Preserved(FileId, u64),
    /// Directories the run made that now hold something not the run's.
    Mixed(Vec<FileId>),
    TimesSaved(FileId),
    AttributesSaved(FileId),
    /// The file created by the call replaces `backup`, moved aside: it
    /// takes over its mode, owner and extended attributes.
    Replaces(String),
}

/// What to put back on disk if the call fails.
enum Compensation {
    /// An original moved into the backup area goes back to its name, and
    /// its directory gets back the time the move changed.
    MoveBack {
        backup: String,
        dir: Dir,
        name: String,
        dir_mtime: Time,
    },
    /// A hard link made into the backup area is removed again.
    Unlink(String),
}

/// The capture of the call in progress.
#[derive(Default)]
struct Call {
    seqs: Vec<u64>,
    compensations: Vec<Compensation>,
    marks: Vec<Mark>,
}

/// The journal of a running flow, shared by the steps' filesystem layers.
pub struct RunJournal {
    writer: JournalWriter,
    backup: Dir,
    /// Where `backup` is, to name the backups a caller puts there itself.
    backup_path: PathBuf,
    backup_dev: u64,
    mounts: HashMap<String, MountFs>,
    seq: u64,
    step: usize,
    known: Known,
    call: Call,
    /// Directories recorded as created by the run, for the final states
    /// written at commit (what is beneath them has no records).
    created_trees: BTreeSet<(String, String)>,
    /// Records of a batch that move in a directory the step made whole:
    /// once moved, everything in it is the run's own.
    batched_trees: HashSet<u64>,
    /// Every path a record names, for the final states written at commit.
    paths: BTreeSet<(String, String)>,
    /// The paths of `paths` the current step touched (with or without a
    /// record), for its `left` records.
    step_paths: BTreeSet<(String, String)>,
    /// Entries the current step made, for its `made` record.
    step_made: Vec<FileId>,
    /// Files the current step wrote, for its `wrote` record.
    step_wrote: HashSet<FileId>,
    /// Paths snapshotted whole (`capture = "snapshot"`), by mount.
    snapshots: HashSet<(String, String)>,
    /// Whether the current step's (or action's) records are reverted by
    /// a rollback, and how many records are not.
    reverted: bool,
    unreverted: u64,
    fault: Fault,
    room: Arc<Room>,
}

impl RunJournal {
    /// Starts the journal of run `run_dir`; `room` is the free-space
    /// reserve its records and copies must leave.
    pub fn begin(
        run_dir: &RunDir,
        (flow, app): (&str, Option<super::App>),
        started: String,
        mounts: Vec<MountFs>,
        durability: Durability,
        fault: Fault,
        room: Arc<Room>,
    ) -> io::Result<RunJournal> {
        let mut writer = JournalWriter::create(&run_dir.journal())?.with_durability(durability);
        writer.append(&Record::Begin {
            run: run_dir.id.clone(),
            flow: flow.to_owned(),
            app,
            started,
            mounts: mounts
                .iter()
                .map(|m| MountRecord {
                    name: m.name.clone(),
                    host: m.host.clone(),
                    id: Some(m.id),
                })
                .collect(),
        })?;
        Self::with_writer(writer, run_dir, mounts, fault, room)
    }

    /// Goes on with the journal of run `run_dir` after its rollback, for
    /// the flow's rollback action: its records follow the rollback's,
    /// numbered on from `seq` (the run's last undo record).
    pub fn resume(
        writer: JournalWriter,
        run_dir: &RunDir,
        mounts: Vec<MountFs>,
        (seq, fault, room): (u64, Fault, Arc<Room>),
    ) -> io::Result<RunJournal> {
        let mut journal = Self::with_writer(writer, run_dir, mounts, fault, room)?;
        journal.seq = seq;
        Ok(journal)
    }

    fn with_writer(
        writer: JournalWriter,
        run_dir: &RunDir,
        mounts: Vec<MountFs>,
        fault: Fault,
        room: Arc<Room>,
    ) -> io::Result<RunJournal> {
        let backup = Dir::open_ambient_dir(run_dir.backup(), ambient_authority())?;
        Ok(RunJournal {
            writer,
            backup_dev: backup.dir_metadata()?.dev(),
            backup,
            backup_path: run_dir.backup(),
            mounts: mounts.into_iter().map(|m| (m.name.clone(), m)).collect(),
            seq: 0,
            step: 0,
            known: Known::default(),
            call: Call::default(),
            created_trees: BTreeSet::new(),
            batched_trees: HashSet::new(),
            paths: BTreeSet::new(),
            step_paths: BTreeSet::new(),
            step_made: Vec::new(),
            step_wrote: HashSet::new(),
            snapshots: HashSet::new(),
            reverted: true,
            unreverted: 0,
            fault,
            room,
        })
    }

    /// Starts step `index`; `if_stopped`: the actions an interrupt
    /// during it would run, for `recover` to name.
    pub fn start_step(&mut self, index: usize, name: &str, if_stopped: &[FailureAction]) -> io::Result<()> {
        self.step = index;
        self.reverted = true;
        self.writer.append(&Record::Step {
            index,
            name: name.to_owned(),
            if_stopped: if_stopped.to_vec(),
        })
    }

    /// Starts an action a failure runs (`index` after the steps'): its
    /// changes are recorded like a step's, and never reverted.
    pub fn start_action(&mut self, index: usize, name: &str) -> io::Result<()> {
        self.step = index;
        self.reverted = false;
        self.writer.append(&Record::Action {
            index,
            name: name.to_owned(),
        })
    }

    /// Marks the step just started as one whose changes no rollback
    /// reverts (`revert = false`).
    pub fn keep_step(&mut self, index: usize) -> io::Result<()> {
        self.reverted = false;
        self.writer.append(&Record::NotReverted { index })
    }

    /// Records that a failure ended the flow (see [`Record::Failed`]).
    pub fn failed(
        &mut self,
        (step, policy): (&str, &str),
        interrupted: bool,
        actions: Vec<super::FailureAction>,
    ) -> io::Result<()> {
        self.writer.append(&Record::Failed {
            step: step.to_owned(),
            policy: policy.to_owned(),
            interrupted,
            actions,
        })
    }

    /// Records how an action ended.
    pub fn action_ended(&mut self, index: usize, error: Option<String>) -> io::Result<()> {
        self.writer.append(&Record::ActionEnded { index, error })
    }

    /// Writes what the step left at every path it touched, and makes the
    /// step's records durable.
    pub fn end_step(&mut self) -> io::Result<()> {
        let touched = std::mem::take(&mut self.step_paths);
        let made = std::mem::take(&mut self.step_made);
        if !made.is_empty() {
            let ids = made.into_iter().map(|id| (id.dev, id.ino)).collect();
            self.writer.append_deferred(&Record::Made { ids })?;
        }
        let wrote = std::mem::take(&mut self.step_wrote);
        if !wrote.is_empty() {
            let files = wrote
                .into_iter()
                .filter_map(|id| {
                    let &(size, mtime) = self.known.written.get(&id)?;
                    Some(FileLeft { id, size, mtime })
                })
                .collect();
            self.writer.append_deferred(&Record::Wrote { files })?;
        }
        let mut left: Vec<Record> = self
            .states_of(touched)?
            .into_iter()
            .map(|(mount, path, state)| Record::Left { mount, path, state })
            .collect();
        left.push(Record::StepEnded { index: self.step });
        self.writer.append_all(left)?;
        self.writer.sync()
    }

    /// A file the step wrote is described as the step left it: a change
    /// another process made since shows as a difference (see
    /// [`super::foreign`]).
    fn as_left(&self, found: Option<(EntryState, FileId)>) -> Option<EntryState> {
        let (state, id) = found?;
        Some(match (state, self.known.written.get(&id)) {
            (EntryState::File { .. }, Some(&(size, mtime))) => EntryState::File { size, mtime },
            (state, _) => state,
        })
    }

    /// What the run left at each of `paths`.
    fn states_of(
        &self,
        paths: BTreeSet<(String, String)>,
    ) -> io::Result<Vec<(String, String, Option<EntryState>)>> {
        let mut out = Vec::with_capacity(paths.len());
        let mut states: Option<(String, States)> = None;
        for (mount, path) in paths {
            if states.as_ref().is_none_or(|(m, _)| *m != mount) {
                states = Some((mount.clone(), States::new(self.dir(&mount)?.try_clone()?)));
            }
            let found = states.as_mut().map_or(Ok(None), |(_, s)| s.of(&path))?;
            out.push((mount, path, self.as_left(found)));
        }
        Ok(out)
    }

    /// Notes that the step touches `path` (a record of an earlier call
    /// names it): what it leaves there is the run's own.
    fn touch(&mut self, mount: &str, path: String) {
        let key = (mount.to_owned(), path);
        if self.paths.contains(&key) {
            self.step_paths.insert(key);
        }
    }

    /// Writes `left` records for the paths the step touched beneath
    /// `dir`, about to be renamed: after that, those paths name other
    /// entries (or nothing), and what the step left under them is what the
    /// rollback finds once it has renamed `dir` back.
    fn leave_beneath(&mut self, mount: &str, dir: &str) -> io::Result<()> {
        let prefix = format!("{dir}/");
        let start = (mount.to_owned(), prefix.clone());
        let beneath: Vec<(String, String)> = self
            .step_paths
            .range(start..)
            .take_while(|(m, p)| m == mount && p.starts_with(&prefix))
            .cloned()
            .collect();
        if beneath.is_empty() {
            return Ok(());
        }
        let mut states = States::new(self.dir(mount)?.try_clone()?);
        let mut left = Vec::with_capacity(beneath.len());
        for key in beneath {
            self.step_paths.remove(&key);
            let state = self.as_left(states.of(&key.1)?);
            left.push(Record::Left {
                mount: key.0,
                path: key.1,
                state,
            });
        }
        self.writer.append_all(left)
    }

    /// The number of undo records written so far.
    pub fn changes(&self) -> u64 {
        self.seq
    }

    /// The number of undo records a rollback applies: not the actions'
    /// or the `revert = false` steps'.
    pub fn changes_to_revert(&self) -> u64 {
        self.seq - self.unreverted
    }

    /// Ends the journal of a successful run: the final state of every
    /// path it changed, then `committed`.
    pub fn commit(&mut self) -> io::Result<()> {
        self.fault.before_commit()?;
        let mut finals = Vec::new();
        let paths = std::mem::take(&mut self.paths);
        for (mount, path, state) in self.states_of(paths)? {
            if self.created_trees.contains(&(mount.clone(), path.clone())) && state == Some(EntryState::Dir) {
                final_states_beneath(self.dir(&mount)?, &mount, &path, &mut finals)?;
            }
            finals.push(Record::Final { mount, path, state });
        }
        self.writer.append_all(finals)?;
        self.writer.append(&Record::Committed)
    }

    /// Hands the writer over to a rollback.
    pub fn into_writer(self) -> JournalWriter {
        self.writer
    }

    pub fn mount(&self, name: &str) -> Option<&Dir> {
        self.mounts.get(name).map(|m| &m.dir)
    }

    fn dir(&self, mount: &str) -> io::Result<&Dir> {
        self.mount(mount)
            .ok_or_else(|| io::Error::new(ErrorKind::NotFound, format!("unknown mount {mount}")))
    }

    fn is_fresh(&self, id: FileId) -> bool {
        self.known.fresh.contains(&id)
    }

    /// Whether directory `id` is the run's own, with nothing beneath it
    /// that is not: what is made in it needs no record.
    fn owns_dir(&self, id: FileId) -> bool {
        self.is_fresh(id) && !self.known.mixed.contains(&id)
    }

    /// Whether the entry at `at`, of inode `id`, is the run's own: made
    /// by it, and no directory with something else beneath it.
    fn owned(&self, at: &Entry, id: FileId) -> bool {
        (self.is_fresh(id) || self.known.whole.contains(&at.dir_id)) && !self.known.mixed.contains(&id)
    }

    /// Notes (once the call succeeds) that directory `at.dir` is about to
    /// hold something not the run's: it, and every directory above it
    /// that the run made, are then mixed. (Above the first directory the
    /// run did not make, any the run made is mixed already.)
    fn mix(&mut self, at: &Entry) -> io::Result<()> {
        let mut ids = Vec::new();
        let (mut id, mut rel) = (at.dir_id, at.dir_rel.to_owned());
        while self.owns_dir(id) {
            ids.push(id);
            let Some((parent, _)) = rel.rsplit_once('/') else {
                break;
            };
            rel = parent.to_owned();
            id = FileId::of(&self.dir(at.mount)?.symlink_metadata(&rel)?);
        }
        if !ids.is_empty() {
            self.call.marks.push(Mark::Mixed(ids));
        }
        Ok(())
    }

    /// Writes an undo record, synced unless `deferred` (its change leaves
    /// a durable trace of its own: see [`super::orphans`]); the caller
    /// makes the change only after this.
    fn record(&mut self, mount: &str, change: Change, undo: UndoOp, deferred: bool) -> io::Result<u64> {
        let seq = self.seq + 1;
        self.fault.before_capture(seq)?;
        self.room.check(self.writer.file(), RECORD_ROOM)?;
        for path in std::iter::once(undo.path()).chain(match &undo {
            UndoOp::Renamed { from, .. } => Some(from.as_str()),
            _ => None,
        }) {
            let key = (mount.to_owned(), path.to_owned());
            self.paths.insert(key.clone());
            self.step_paths.insert(key);
        }
        let record = Record::Undo {
            seq,
            step: self.step,
            mount: mount.to_owned(),
            change,
            undo,
        };
        if deferred {
            self.writer.append_deferred(&record)?;
        } else {
            self.writer.append(&record)?;
        }
        self.seq = seq;
        if !self.reverted {
            self.unreverted += 1;
        }
        self.call.seqs.push(seq);
        Ok(seq)
    }

    /// The capture of operation `seq` is complete; the change may proceed.
    fn done(&self, seq: u64) {
        self.fault.after_record(seq, &self.writer);
    }

    /// Saves the mtime of the directory holding `at`, once per run;
    /// `deferred`: in a batch (synced with it, see [`Recorder::sync_batch`]).
    fn touch_parent(&mut self, at: &Entry, deferred: bool) -> io::Result<()> {
        let pending = |m: &Mark| matches!(m, Mark::TimesSaved(id) if *id == at.dir_id);
        if self.is_fresh(at.dir_id)
            || self.known.times_saved.contains(&at.dir_id)
            || self.call.marks.iter().any(pending)
        {
            return Ok(());
        }
        let meta = at.dir.dir_metadata()?;
        self.save_times(at.mount, at.dir_rel, &meta, deferred)
    }

    fn save_times(&mut self, mount: &str, rel: &str, meta: &Metadata, deferred: bool) -> io::Result<()> {
        let id = FileId::of(meta);
        let undo = UndoOp::Times {
            path: rel.to_owned(),
            mtime: mtime(meta),
        };
        let seq = self.record(mount, Change::Touched, undo, deferred)?;
        self.call.marks.push(Mark::TimesSaved(id));
        self.done(seq);
        Ok(())
    }

    /// Records that the file at `at` is about to be moved or linked into
    /// the backup area; returns the record's number and the backup's name.
    /// The record is synced only when the name cannot say where the backup
    /// belongs (a path too long for a file name).
    fn record_saved(&mut self, at: &Entry, meta: &Metadata, change: Change) -> io::Result<(u64, String)> {
        let path = at.rel();
        let named = orphans::name(self.seq + 1, change, at.mount, &path);
        let deferred = named.is_some();
        let backup = named.unwrap_or_else(|| format!("{}", self.seq + 1));
        // Its size when the run started: its contents may have changed
        // since they were copied, and the copy's undo puts them back.
        let size = self
            .known
            .preserved
            .get(&FileId::of(meta))
            .copied()
            .unwrap_or(meta.len());
        let saved = UndoOp::Saved {
            path,
            backup: backup.clone(),
            size,
            ino: meta.ino(),
            tree: meta.is_dir(),
        };
        Ok((self.record(at.mount, change, saved, deferred)?, backup))
    }

    /// Records a change of a batch ([`Recorder::sync_batch`]): the
    /// parent's times and the record itself written without a sync.
    fn record_in_batch(&mut self, at: &Entry, change: Change, undo: UndoOp) -> io::Result<u64> {
        self.touch(at.mount, at.rel());
        self.touch_parent(at, true)?;
        let seq = self.record(at.mount, change, undo, true)?;
        // What the parent's capture marked holds now; the change itself
        // is finished by `make_recorded`.
        self.finish(Outcome::Succeeded {
            created: None,
            opened: None,
        })?;
        Ok(seq)
    }

    /// Whether an original can be moved or linked into the backup area:
    /// only on the backup area's filesystem (elsewhere it is copied).
    fn can_move_aside(&self, meta: &Metadata) -> bool {
        meta.dev() == self.backup_dev
    }

    /// Copies the file into the backup area and syncs it, then records it:
    /// a crash mid-copy leaves an unreferenced backup, never a record
    /// pointing at a partial one.
    fn copy_aside(&mut self, at: &Entry, meta: &Metadata, change: Change) -> io::Result<()> {
        let backup = format!("{}", self.seq + 1);
        self.fault.before_capture(self.seq + 1)?;
        // The copy is sparse, and so is its restore: what it costs is the
        // file's allocation, not its apparent size.
        let cost = allocated(meta);
        self.room.check(&self.backup, cost)?;
        let xattrs = clone_or_copy(at.dir, at.name, &self.backup, &backup)?;
        self.room.add_copy(cost);
        let undo = UndoOp::Copied {
            path: at.rel(),
            backup,
            size: meta.len(),
            meta: meta_of(meta, Vec::new()),
            xattrs: Some(xattrs),
        };
        let seq = self.record(at.mount, change, undo, false)?;
        self.call
            .marks
            .push(Mark::Preserved(FileId::of(meta), meta.len()));
        self.done(seq);
        Ok(())
    }

    /// Records how to bring back the entry at `at`, about to disappear.
    fn save_entry(&mut self, at: &Entry, meta: &Metadata, change: Change) -> io::Result<()> {
        let path = at.rel();
        if meta.is_symlink() {
            let target = at.dir.read_link_contents(at.name)?;
            let aside = self.can_move_aside(meta).then(|| super::record::Aside {
                backup: format!("symlink-{}", self.seq + 1),
                ino: meta.ino(),
            });
            let undo = UndoOp::RemovedSymlink {
                path,
                target: target.as_os_str().as_bytes().into(),
                mtime: mtime(meta),
                owner: Some(owner(meta)),
                aside: aside.clone(),
            };
            let seq = self.record(at.mount, change, undo, false)?;
            if let Some(aside) = aside {
                // A link to the symlink itself: linkat does not follow it.
                at.dir.hard_link(at.name, &self.backup, &aside.backup)?;
                self.call.compensations.push(Compensation::Unlink(aside.backup));
            }
            self.done(seq);
        } else if meta.is_dir() {
            let xattrs = dir_xattrs(at.dir, at.name)?;
            let undo = UndoOp::RemovedDir {
                path,
                meta: meta_of(meta, xattrs),
            };
            let seq = self.record(at.mount, change, undo, false)?;
            self.done(seq);
        } else if self.can_move_aside(meta) {
            let (seq, backup) = self.record_saved(at, meta, change)?;
            at.dir.hard_link(at.name, &self.backup, &backup)?;
            self.call.compensations.push(Compensation::Unlink(backup));
            self.done(seq);
        } else {
            self.copy_aside(at, meta, change)?;
        }
        Ok(())
    }

    /// Puts back what the capture of a failed call did, newest first, and
    /// voids its records. A compensation that fails leaves its record
    /// standing, so that the rollback still undoes the capture.
    fn compensate(&mut self, call: Call) -> io::Result<()> {
        let mut clean = true;
        for c in call.compensations.into_iter().rev() {
            let undone = match c {
                Compensation::MoveBack {
                    backup,
                    dir,
                    name,
                    dir_mtime,
                } => self
                    .backup
                    .rename(&backup, &dir, &name)
                    .and_then(|()| set_mtime(&dir, "", dir_mtime)),
                Compensation::Unlink(backup) => self.backup.remove_file(&backup),
            };
            clean &= undone.is_ok();
        }
        if clean && !call.seqs.is_empty() {
            self.writer.append(&Record::Void { seqs: call.seqs })?;
        }
        Ok(())
    }
}

impl Recorder for RunJournal {
    fn before_create(&mut self, at: &Entry, kind: NewEntry) -> io::Result<()> {
        self.touch(at.mount, at.rel());
        self.call.marks.push(match kind {
            NewEntry::Dir => Mark::FreshDir,
            _ => Mark::Fresh,
        });
        if self.owns_dir(at.dir_id) {
            return Ok(());
        }
        self.touch_parent(at, false)?;
        let tree = kind == NewEntry::Dir;
        let path = at.rel();
        if tree {
            self.created_trees.insert((at.mount.to_owned(), path.clone()));
        }
        let undo = UndoOp::Created {
            path,
            tree,
            ino: None,
        };
        let seq = self.record(at.mount, Change::Created, undo, false)?;
        self.done(seq);
        Ok(())
    }

    fn before_link(&mut self, at: &Entry) -> io::Result<()> {
        self.touch(at.mount, at.rel());
        // The linked inode may not be the run's own: recorded even in a
        // directory of the run's, so that the rollback removes this name
        // before the directory goes (and no name of an original stays in
        // the backup area with it).
        self.known.whole.remove(&at.dir_id);
        self.mix(at)?;
        self.touch_parent(at, false)?;
        let undo = UndoOp::Created {
            path: at.rel(),
            tree: false,
            ino: None,
        };
        let seq = self.record(at.mount, Change::Created, undo, false)?;
        self.done(seq);
        Ok(())
    }

    fn before_truncate(&mut self, at: &Entry, meta: &Metadata) -> io::Result<Capture> {
        self.touch(at.mount, at.rel());
        let id = FileId::of(meta);
        if self.owned(at, id) || self.known.preserved.contains_key(&id) {
            return Ok(Capture::Nothing);
        }
        if meta.nlink() == 1 && self.can_move_aside(meta) && may_own(meta) {
            self.touch_parent(at, false)?;
            let dir_mtime = mtime(&at.dir.dir_metadata()?);
            let (seq, backup) = self.record_saved(at, meta, Change::Replaced)?;
            at.dir.rename(at.name, &self.backup, &backup)?;
            self.call.compensations.push(Compensation::MoveBack {
                backup: backup.clone(),
                dir: at.dir.try_clone()?,
                name: at.name.to_owned(),
                dir_mtime,
            });
            self.call.marks.push(Mark::Fresh);
            self.call.marks.push(Mark::Replaces(backup));
            self.done(seq);
            return Ok(Capture::MovedAside);
        }
        self.copy_aside(at, meta, Change::Replaced)?;
        Ok(Capture::Nothing)
    }

    fn before_exchange(
        &mut self,
        at: &Entry,
        meta: &Metadata,
        replacement: &Path,
    ) -> io::Result<Option<u64>> {
        let id = FileId::of(meta);
        let Some(backup) = replacement
            .strip_prefix(&self.backup_path)
            .ok()
            .and_then(Path::to_str)
        else {
            return Ok(None);
        };
        if self.owned(at, id)
            || self.known.preserved.contains_key(&id)
            || meta.nlink() != 1
            || !self.can_move_aside(meta)
        {
            return Ok(None);
        }
        let saved = UndoOp::Saved {
            path: at.rel(),
            backup: backup.to_owned(),
            size: meta.len(),
            ino: meta.ino(),
            tree: false,
        };
        self.record_in_batch(at, Change::Replaced, saved).map(Some)
    }

    fn before_move_in(&mut self, at: &Entry, ino: u64, kind: NewEntry) -> io::Result<Option<u64>> {
        if self.owns_dir(at.dir_id) {
            return Ok(None);
        }
        let tree = kind == NewEntry::Dir;
        let undo = UndoOp::Created {
            path: at.rel(),
            tree,
            ino: Some(ino),
        };
        let seq = self.record_in_batch(at, Change::Created, undo)?;
        if tree {
            self.created_trees.insert((at.mount.to_owned(), at.rel()));
            self.batched_trees.insert(seq);
        }
        Ok(Some(seq))
    }

    fn sync_batch(&mut self) -> io::Result<()> {
        self.writer.sync_batch()
    }

    fn make_recorded(&mut self, seq: u64, change: &mut dyn FnMut() -> io::Result<FileId>) -> io::Result<()> {
        self.done(seq);
        match change() {
            Ok(id) => {
                self.known.fresh.insert(id);
                if self.batched_trees.remove(&seq) {
                    self.known.whole.insert(id);
                }
                self.step_made.push(id);
                Ok(())
            }
            Err(e) => {
                self.writer.append(&Record::Void { seqs: vec![seq] })?;
                Err(e)
            }
        }
    }

    fn abandon(&mut self, seqs: Vec<u64>) -> io::Result<()> {
        match seqs.is_empty() {
            true => Ok(()),
            false => self.writer.append(&Record::Void { seqs }),
        }
    }

    fn before_write_open(&mut self, at: &Entry, meta: &Metadata) -> io::Result<()> {
        self.touch(at.mount, at.rel());
        let id = FileId::of(meta);
        if self.owned(at, id) || self.known.preserved.contains_key(&id) {
            return Ok(());
        }
        self.copy_aside(at, meta, Change::Modified)
    }

    fn remove_tree(&mut self, at: &Entry, meta: &Metadata) -> io::Result<bool> {
        // Moving a directory to another parent rewrites its `..`.
        let writable = meta.permissions().mode() & 0o200 != 0 || rustix::process::geteuid().is_root();
        if self.owned(at, FileId::of(meta)) || !self.can_move_aside(meta) || !writable {
            return Ok(false);
        }
        self.touch(at.mount, at.rel());
        self.touch_parent(at, false)?;
        let (seq, backup) = self.record_saved(at, meta, Change::Deleted)?;
        self.done(seq);
        match at.dir.rename(at.name, &self.backup, &backup) {
            Ok(()) => {
                self.finish(Outcome::Succeeded {
                    created: None,
                    opened: None,
                })?;
                Ok(true)
            }
            Err(e) => {
                self.finish(Outcome::Failed)?;
                match e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) {
                    true => Ok(false),
                    false => Err(e),
                }
            }
        }
    }

    fn before_remove(&mut self, at: &Entry, meta: &Metadata) -> io::Result<()> {
        self.touch(at.mount, at.rel());
        self.touch_parent(at, false)?;
        if self.owned(at, FileId::of(meta)) {
            return Ok(());
        }
        self.save_entry(at, meta, Change::Deleted)
    }

    fn before_rename(
        &mut self,
        from: &Entry,
        from_meta: &Metadata,
        to: &Entry,
        to_meta: Option<&Metadata>,
    ) -> io::Result<()> {
        let id = FileId::of(from_meta);
        // Renaming a name onto another name of the same inode changes nothing.
        if to_meta.is_some_and(|t| FileId::of(t) == id) {
            return Ok(());
        }
        let (from_path, to_path) = (from.rel(), to.rel());
        self.touch(from.mount, from_path.clone());
        self.touch(to.mount, to_path.clone());
        if from_meta.is_dir() {
            self.leave_beneath(from.mount, &from_path)?;
        }
        if to_meta.is_some_and(Metadata::is_dir) {
            self.leave_beneath(to.mount, &to_path)?;
        }
        let own = self.owned(from, id);
        if !own {
            self.known.whole.remove(&to.dir_id);
            self.mix(to)?;
        }
        self.touch_parent(from, false)?;
        self.touch_parent(to, false)?;
        if let Some(t) = to_meta
            && !self.owned(to, FileId::of(t))
        {
            self.save_entry(to, t, Change::Replaced)?;
        }
        if own {
            // The run's own entry: undo removes it from where it lands,
            // unless that is inside something the run created anyway.
            if !self.owns_dir(to.dir_id) {
                let tree = from_meta.is_dir();
                if tree {
                    self.created_trees.insert((to.mount.to_owned(), to_path.clone()));
                }
                let undo = UndoOp::Created {
                    path: to_path,
                    tree,
                    ino: Some(id.ino),
                };
                let seq = self.record(to.mount, Change::Renamed, undo, false)?;
                self.done(seq);
            }
            return Ok(());
        }
        // (Where nothing was at `to`, the rename is that path's first
        // record, which tells verification it must be absent again.)
        let undo = UndoOp::Renamed {
            from: from_path,
            to: to_path,
        };
        let seq = self.record(from.mount, Change::Renamed, undo, false)?;
        self.done(seq);
        Ok(())
    }

    fn before_set_times(&mut self, mount: &str, rel: &str, meta: &Metadata) -> io::Result<()> {
        self.touch(mount, rel.to_owned());
        if self.times_kept(meta) {
            return Ok(());
        }
        self.save_times(mount, rel, meta, false)
    }

    fn before_set_attributes(
        &mut self,
        mount: &str,
        rel: &str,
        meta: &Metadata,
        xattrs: Vec<Xattr>,
    ) -> io::Result<()> {
        self.touch(mount, rel.to_owned());
        let id = FileId::of(meta);
        if self.is_fresh(id) || self.known.attributes_saved.contains(&id) {
            return Ok(());
        }
        let undo = UndoOp::Attributes {
            path: rel.to_owned(),
            mode: meta.permissions().mode(),
            owner: owner(meta),
            xattrs: Some(xattrs),
        };
        let seq = self.record(mount, Change::Modified, undo, false)?;
        self.call.marks.push(Mark::AttributesSaved(id));
        self.done(seq);
        Ok(())
    }

    fn times_kept(&self, meta: &Metadata) -> bool {
        let id = FileId::of(meta);
        self.is_fresh(id) || self.known.times_saved.contains(&id)
    }

    fn owns_all_in(&self, dir: FileId) -> bool {
        self.known.whole.contains(&dir)
    }

    fn made(&mut self, id: FileId) {
        self.step_made.push(id);
    }

    fn made_tree(&mut self, dirs: &[FileId], others: &[FileId]) {
        self.known.whole.extend(dirs);
        for &id in dirs.iter().chain(others) {
            self.known.fresh.insert(id);
            self.step_made.push(id);
        }
    }

    fn snapshot(&mut self, mount: &str, rel: &str) -> io::Result<()> {
        if !self.snapshots.insert((mount.to_owned(), rel.to_owned())) {
            return Ok(());
        }
        let root = self.dir(mount)?.try_clone()?;
        let (parent_rel, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let parent = match parent_rel {
            "" => root,
            p => root.open_dir_nofollow(p)?,
        };
        let parent_meta = parent.dir_metadata()?;
        let taken = (|| {
            if !self.times_kept(&parent_meta) {
                self.save_times(mount, parent_rel, &parent_meta, false)?;
            }
            let backup = match parent.symlink_metadata(name) {
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => return Err(e),
                Ok(meta) => {
                    let copy = format!("snapshot-{}", self.seq + 1);
                    self.fault.before_capture(self.seq + 1)?;
                    self.room.check(&self.backup, allocated(&meta))?;
                    super::tree::copy(&parent, name, &self.backup, &copy)?;
                    if meta.is_dir() {
                        self.created_trees.insert((mount.to_owned(), rel.to_owned()));
                    }
                    Some(copy)
                }
            };
            let undo = UndoOp::Snapshot {
                path: rel.to_owned(),
                backup,
            };
            let seq = self.record(mount, Change::Replaced, undo, false)?;
            self.done(seq);
            Ok(())
        })();
        let outcome = match &taken {
            Ok(()) => Outcome::Succeeded {
                created: None,
                opened: None,
            },
            Err(_) => Outcome::Failed,
        };
        self.finish(outcome)?;
        taken
    }

    fn uncaptured(&mut self, command: &str) -> io::Result<()> {
        self.writer.append(&Record::Uncaptured {
            step: self.step,
            command: command.to_owned(),
        })
    }

    fn unenforced(&mut self, what: &str) -> io::Result<()> {
        self.writer.append(&Record::Unenforced {
            step: self.step,
            what: what.to_owned(),
        })
    }

    fn reach(&mut self, what: &str) -> io::Result<()> {
        self.writer.append(&Record::Reach {
            step: self.step,
            what: what.to_owned(),
        })
    }

    fn left(&mut self, meta: &Metadata) {
        if meta.is_file() {
            let id = FileId::of(meta);
            self.known.written.insert(id, (meta.len(), mtime(meta)));
            self.step_wrote.insert(id);
        }
    }

    fn finish(&mut self, outcome: Outcome) -> io::Result<()> {
        let call = std::mem::take(&mut self.call);
        let Outcome::Succeeded { created, opened } = outcome else {
            return self.compensate(call);
        };
        for mark in call.marks {
            match mark {
                Mark::Fresh => {
                    if let Some(id) = created {
                        self.known.fresh.insert(id);
                        self.step_made.push(id);
                    }
                }
                Mark::FreshDir => {
                    if let Some(id) = created {
                        self.known.fresh.insert(id);
                        self.known.whole.insert(id);
                        self.step_made.push(id);
                    }
                }
                Mark::Preserved(id, size) => {
                    self.known.preserved.insert(id, size);
                }
                Mark::Mixed(ids) => {
                    for id in ids {
                        self.known.whole.remove(&id);
                        self.known.mixed.insert(id);
                    }
                }
                Mark::TimesSaved(id) => {
                    self.known.times_saved.insert(id);
                }
                Mark::AttributesSaved(id) => {
                    self.known.attributes_saved.insert(id);
                }
                Mark::Replaces(backup) => {
                    if let Some(file) = opened {
                        take_over_attributes(&self.backup.open(&backup)?.into_std(), file)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether this process can give a new file the owner of `meta`: a new
/// file replacing a moved-aside original must look like it.
fn may_own(meta: &Metadata) -> bool {
    let euid = rustix::process::geteuid();
    euid.is_root() || (meta.uid() == euid.as_raw() && meta.gid() == rustix::process::getegid().as_raw())
}

/// Gives `new` the mode, owner and extended attributes of `original`.
fn take_over_attributes(original: &std::fs::File, new: &std::fs::File) -> io::Result<()> {
    use rustix::fs::{Gid, Mode, Uid, fchmod, fchown, fstat};
    let st = fstat(original)?;
    let new_st = fstat(new)?;
    if (st.st_uid, st.st_gid) != (new_st.st_uid, new_st.st_gid) {
        fchown(
            new,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        )?;
    }
    for x in fd_xattrs(original)? {
        rustix::fs::fsetxattr(new, &x.name.0[..], &x.value.0, rustix::fs::XattrFlags::empty())?;
    }
    // After the owner: chown clears set-id bits.
    fchmod(new, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    Ok(())
}

fn dir_xattrs(parent: &Dir, name: &str) -> io::Result<Vec<Xattr>> {
    fd_xattrs(&open_dir_readable(parent, name)?)
}

/// The bytes a file's data takes on disk (holes take none).
fn allocated(meta: &Metadata) -> u64 {
    meta.blocks().saturating_mul(512)
}

fn owner(meta: &Metadata) -> Owner {
    Owner {
        uid: meta.uid(),
        gid: meta.gid(),
    }
}

fn meta_of(meta: &Metadata, xattrs: Vec<Xattr>) -> Meta {
    Meta {
        mode: meta.permissions().mode(),
        mtime: mtime(meta),
        owner: Some(owner(meta)),
        xattrs,
    }
}

/// Copies `path` into the backup area as `name`, durably: a reflink clone
/// (shared blocks, no data copied) where the filesystem supports one
/// (btrfs, XFS), else its data extents only (holes stay holes).
fn clone_or_copy(dir: &Dir, path: &str, backup: &Dir, name: &str) -> io::Result<Vec<Xattr>> {
    let source = dir.open(path)?.into_std();
    let copy = backup.create(name)?.into_std();
    if rustix::fs::ioctl_ficlone(&copy, &source).is_err() {
        super::sparse::copy_contents(&source, &copy)?;
    }
    copy.sync_all()?;
    fd_xattrs(&source)
}

/// Looks up the states of many paths of one mount, sorted, each directory
/// opened once for its entries: resolving every path from the mount's
/// root costs a few system calls per path of a large step.
struct States {
    root: Dir,
    /// The directory of the last path looked up (`None`: it is gone).
    parent: Option<(String, Option<Dir>)>,
}

impl States {
    fn new(root: Dir) -> States {
        States { root, parent: None }
    }

    fn of(&mut self, path: &str) -> io::Result<Option<(EntryState, FileId)>> {
        let Some((dir, name)) = path.rsplit_once('/') else {
            return entry_with_id(&self.root, path);
        };
        if self.parent.as_ref().is_none_or(|(d, _)| d != dir) {
            // Gone, or no longer a directory: a file, or a symlink that
            // loops (`d -> d`), is there now; the path names nothing.
            let opened = match self.root.open_dir(dir) {
                Ok(d) => Some(d),
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => None,
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => None,
                Err(e) => return Err(e),
            };
            self.parent = Some((dir.to_owned(), opened));
        }
        match self.parent.as_ref().and_then(|(_, d)| d.as_ref()) {
            Some(d) => entry_with_id(d, name),
            None => Ok(None),
        }
    }
}

/// Final states of everything beneath a directory the run created (those
/// entries have no records of their own). Each directory is opened once and
/// its entries looked up by name: resolving every path from the mount's
/// root would cost a few system calls per entry of a large tree.
fn final_states_beneath(dir: &Dir, mount: &str, path: &str, out: &mut Vec<Record>) -> io::Result<()> {
    let here = dir.open_dir(path)?;
    for entry in here.entries()? {
        // A name that is not UTF-8 is not the run's (a plugin's paths are
        // strings): `undo` finds it, unrecorded, and refuses.
        let Ok(name) = entry?.file_name().into_string() else {
            continue;
        };
        let child = format!("{path}/{name}");
        let state = entry_state(&here, &name)?;
        if state == Some(EntryState::Dir) {
            final_states_beneath(dir, mount, &child, out)?;
        }
        out.push(Record::Final {
            mount: mount.to_owned(),
            path: child,
            state,
        });
    }
    Ok(())
}
