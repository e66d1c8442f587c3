//! What the journal holds.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A modification time as seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Time(pub i64, pub u32);

impl Time {
    /// The time a `SystemTime` says, before 1970 too.
    pub fn from_system(t: SystemTime) -> Time {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Time(d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                Time(-(d.as_secs() as i64), d.subsec_nanos())
            }
        }
    }

    /// Back to a `SystemTime`.
    pub fn to_system(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::new(self.0 as u64, self.1)
        } else {
            UNIX_EPOCH - Duration::new(self.0.unsigned_abs(), 0) + Duration::new(0, self.1)
        }
    }
}

/// Bytes the filesystem holds that need not be text (symlink targets,
/// extended attribute values): written as a string when they are UTF-8,
/// else as an array of byte values, so that they round-trip exactly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsBytes(pub Vec<u8>);

impl From<&[u8]> for OsBytes {
    fn from(bytes: &[u8]) -> OsBytes {
        OsBytes(bytes.to_vec())
    }
}

impl OsBytes {
    /// As a path (Unix paths are bytes).
    pub fn as_path(&self) -> &std::path::Path {
        use std::os::unix::ffi::OsStrExt;
        std::path::Path::new(std::ffi::OsStr::from_bytes(&self.0))
    }
}

impl std::fmt::Display for OsBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl Serialize for OsBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => self.0.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for OsBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Bytes(Vec<u8>),
        }
        Ok(OsBytes(match Form::deserialize(d)? {
            Form::Text(t) => t.into_bytes(),
            Form::Bytes(b) => b,
        }))
    }
}

/// Owner and group of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// One extended attribute (ACLs and file capabilities are stored as such).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Bytes, like the value: the kernel allows any name after the
    /// namespace prefix.
    pub name: OsBytes,
    /// Its value, byte for byte.
    pub value: OsBytes,
}

/// What an entry is besides its contents, restored with it: mode bits,
/// modification time and (when recorded) owner and extended attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// `st_mode` as the filesystem gave it: permission bits and type.
    pub mode: u32,
    /// Modification time.
    pub mtime: Time,
    /// Owner and group, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Extended attributes, when recorded (directories).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
}

/// How to reverse one change. Paths are relative to the mount's root,
/// with symlinks in their parents resolved, `/`-separated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum UndoOp {
    /// Nothing was at `path`; undo removes what is there. `tree`: a
    /// directory the run made, so everything beneath it is the run's too
    /// (and has no records of its own); undo removes it all.
    Created {
        /// Where the run put it.
        path: String,
        /// Whether it is a directory the run made (everything beneath is the run's).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        tree: bool,
        /// The inode that was put there, when it was known before the
        /// change (an entry of the run's own moved here): undo removes
        /// only that inode, never another entry found at the path.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ino: Option<u64>,
    },
    /// The file at `path` was moved or hard-linked into the backup area
    /// (no copy); undo moves it back, with its inode, mode and times.
    Saved {
        /// Where the file was.
        path: String,
        /// Its name in the backup area.
        backup: String,
        /// Its size before the run.
        size: u64,
        /// The inode, which the restored file must have again.
        ino: u64,
        /// Whether it is a directory, moved with all it holds (removed
        /// whole): undo brings the whole tree back.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        tree: bool,
    },
    /// A copy of the file at `path`, for changes made in place (the inode
    /// is kept so that its other hard links see the change); undo writes
    /// the contents back in place.
    Copied {
        /// Where the file is.
        path: String,
        /// The copy's name in the backup area.
        backup: String,
        /// Its size before the change.
        size: u64,
        /// Its mode, times and owner before the change.
        meta: Meta,
        /// Its extended attributes before the change, all of them (a
        /// command's apply writes them in place with the contents; absent
        /// in journals of versions that did not record them: left as they
        /// are).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        xattrs: Option<Vec<Xattr>>,
    },
    /// An empty directory was removed; undo recreates it.
    RemovedDir {
        /// Where it was.
        path: String,
        /// What it was, to recreate it with.
        meta: Meta,
    },
    /// A symlink was removed or replaced; undo recreates it.
    RemovedSymlink {
        /// Where it was.
        path: String,
        /// Where it pointed, byte for byte.
        target: OsBytes,
        /// Its modification time.
        mtime: Time,
        /// Its owner and group, when recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<Owner>,
        /// The symlink itself, hard-linked into the backup area where it
        /// could be: undo moves it back, so that it is the same inode again
        /// (a later undo of the run that made it finds its own), and makes
        /// a new one from `target` only where it cannot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        aside: Option<Aside>,
    },
    /// The mode, owner and extended attributes of a directory about to
    /// change them (a command's `chmod`, `chown` or `setfattr`); undo sets
    /// them back.
    Attributes {
        /// The directory.
        path: String,
        /// Its mode before.
        mode: u32,
        /// Its owner before.
        owner: Owner,
        /// Its extended attributes before, all of them (absent in journals
        /// of versions that did not record them: left as they are).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        xattrs: Option<Vec<Xattr>>,
    },
    /// What was at `path` before a command that an overlay does not
    /// capture ran (`capture = "snapshot"`), copied whole into the backup
    /// area; undo replaces whatever is there by the copy, or removes it
    /// when nothing was there.
    Snapshot {
        /// The snapshotted path.
        path: String,
        /// The copy's name in the backup area; none when nothing was there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backup: Option<String>,
    },
    /// The modification time of an entry about to change: a directory
    /// gaining or losing entries, or a `set-times`.
    Times {
        /// The entry.
        path: String,
        /// Its modification time before the change.
        mtime: Time,
        /// Its access time, which a `set-times` changes too (none in
        /// journals of older engines).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        atime: Option<Time>,
    },
    /// `from` was renamed to `to`; undo renames it back.
    Renamed {
        /// The name before.
        from: String,
        /// The name after, where undo finds it.
        to: String,
    },
}

impl UndoOp {
    /// The path the record is about (for a rename, the new name).
    pub fn path(&self) -> &str {
        match self {
            UndoOp::Created { path, .. }
            | UndoOp::Saved { path, .. }
            | UndoOp::Copied { path, .. }
            | UndoOp::RemovedDir { path, .. }
            | UndoOp::RemovedSymlink { path, .. }
            | UndoOp::Snapshot { path, .. }
            | UndoOp::Attributes { path, .. }
            | UndoOp::Times { path, .. } => path,
            UndoOp::Renamed { to, .. } => to,
        }
    }
}

/// What a step did, as `stepback show` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Change {
    /// Made by the run.
    Created,
    /// Truncated or replaced as a whole.
    Replaced,
    /// Opened for writing in place (appended, written at an offset, resized).
    Modified,
    /// Removed.
    Deleted,
    /// Moved to another name.
    Renamed,
    /// Timestamps changed, or a directory gained or lost entries.
    Touched,
}

/// An entry as `stepback undo` compares it: type, and for files size and
/// modification time, for symlinks the target. Directories compare by type
/// only, since any change inside them moves their time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EntryState {
    /// A file.
    File {
        /// Bytes.
        size: u64,
        /// Modification time.
        mtime: Time,
    },
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink {
        /// Where it points, byte for byte.
        target: OsBytes,
    },
}

impl EntryState {
    /// Whether an entry found in state `now` is what was recorded as
    /// `then` (directories by type only).
    pub fn same(then: &Option<EntryState>, now: &Option<EntryState>) -> bool {
        match (then, now) {
            (Some(EntryState::Dir), Some(EntryState::Dir)) => true,
            (a, b) => a == b,
        }
    }

    /// A state in words, for messages.
    pub fn describe(state: &Option<EntryState>) -> String {
        match state {
            None => "absent".into(),
            Some(EntryState::Dir) => "a directory".into(),
            Some(EntryState::Symlink { target }) => format!("a symlink to {target}"),
            Some(EntryState::File { size, mtime }) => {
                format!(
                    "a file of {size} bytes modified {}",
                    humantime::format_rfc3339_nanos(mtime.to_system())
                )
            }
        }
    }
}

/// A mount as a run recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// Its name in the flow.
    pub name: String,
    /// The host directory (canonical).
    pub host: PathBuf,
    /// The directory's identity when the run began: rollback, recovery and
    /// undo act only on that directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<FileId>,
}

/// One line of a run's journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Record {
    /// The first record of every run.
    Begin {
        /// The run's id.
        run: String,
        /// The flow's name.
        flow: String,
        /// RFC 3339, UTC.
        started: String,
        /// The read-write mounts the run journals.
        mounts: Vec<MountRecord>,
        /// The application and version the flow deploys (its `[app]`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        app: Option<App>,
    },
    /// A step is about to run a command whose changes are not captured
    /// (`capture = "none"`): what it changes in the mounts has no undo
    /// records, and a rollback does not reverse it.
    Uncaptured {
        /// The step, by position in the flow.
        step: usize,
        /// The command, as its log shows it.
        command: String,
    },
    /// A step's commands ran without some of its limits (no cgroup
    /// controller for them, no room to hold the reserve in): which, and why.
    Unenforced {
        /// The step, by position in the flow.
        step: usize,
        /// The limits, each with why.
        what: String,
    },
    /// A step's commands were granted more than its mounts: the network,
    /// sockets, variables that change what code runs.
    Reach {
        /// The step, by position in the flow.
        step: usize,
        /// What, as the flow grants it.
        what: String,
    },
    /// A step's failure (or an interruption) ended the flow: what follows
    /// is what the failure model runs, and the run's final state says how
    /// it ended.
    Failed {
        /// The failed step (or the last that ran, when interrupted between steps).
        step: String,
        /// Its `on-failure` policy, as the flow writes it.
        policy: String,
        /// Whether an interruption (Ctrl-C, SIGTERM) caused it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        interrupted: bool,
        /// The actions the failure runs, in order: each ends with a
        /// [`Record::ActionEnded`], so that one the engine never got to
        /// (stopped, or crashed) is known.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        actions: Vec<FailureAction>,
    },
    /// The revert of a failed run ended, as [`Record::RolledBack`] would
    /// say, and the flow's rollback action follows: the run ends with the
    /// `rolled-back` record its action's records close with, so that a run
    /// stopped before or during the action is unfinished, and `recover`
    /// says the action did not run.
    Reverted {
        /// Paths that could not be restored, with why.
        problems: Vec<String>,
        /// Entries of other processes kept aside.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        kept: Vec<String>,
    },
    /// A failure's action starts; undo records after it belong to it and
    /// are the rollback's own: no rollback reverses them.
    Action {
        /// Its index in the journal, after the steps'.
        index: usize,
        /// Its name.
        name: String,
    },
    /// The step just started keeps its changes when the flow is rolled
    /// back (`revert = false`): its undo records are never applied.
    NotReverted {
        /// The step's index.
        index: usize,
    },
    /// An action ended.
    ActionEnded {
        /// Its index.
        index: usize,
        /// Why it failed; none when it succeeded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A step starts; undo records after it belong to it.
    Step {
        /// Position in the flow, from 0.
        index: usize,
        /// The step's name.
        name: String,
        /// The actions an interrupt during this step would run: what
        /// `recover` names, not run, when the engine stopped during it
        /// (before a `failed` record said what the failure runs).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        if_stopped: Vec<FailureAction>,
    },
    /// How to reverse one change, written before the change.
    Undo {
        /// Its number in the run, from 1.
        seq: u64,
        /// The step that made the change.
        step: usize,
        /// The mount it is in.
        mount: String,
        /// What the change was, for `show`.
        change: Change,
        /// How to reverse it.
        undo: UndoOp,
    },
    /// A rollback (of a failed run, or `stepback undo` of a committed one)
    /// begins: until `rolled-back`, the run is unfinished, and `recover`
    /// completes it. Every attempt writes one (a rollback resumed by
    /// `recover` too).
    RollbackStarted {
        /// The boot the attempt runs in (`/proc/sys/kernel/random/boot_id`):
        /// its `applied` and `not-applied` records can be trusted by an
        /// attempt in the same boot only (see [`Record::Applied`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        boot: Option<String>,
    },
    /// The undo record `seq` has been applied during a rollback, and its
    /// effect is on disk: written once a batch of undos is synced.
    Undone {
        /// The undo record applied.
        seq: u64,
    },
    /// The undo record `seq` has been applied by this attempt, written
    /// right after it without a sync. A process killed keeps what it wrote
    /// in the kernel's cache, so an attempt resumed in the same boot skips
    /// exactly the undos done and re-applies only the one in flight; after
    /// a reboot only `undone` counts.
    Applied {
        /// The undo record applied.
        seq: u64,
    },
    /// The undo record `seq` could not be applied, or was left alone (it
    /// would have overwritten another process's entry), by this attempt;
    /// written like `applied`. A resumed attempt does not try it again out
    /// of order, and reports it as this one did.
    NotApplied {
        /// The undo record.
        seq: u64,
        /// The mount.
        mount: String,
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The calls that undo records `seqs` were written for failed, and
    /// whatever their capture did to the disk was put back: they describe
    /// changes that never happened, and nothing acts on them.
    Void {
        /// The undo records voided.
        seqs: Vec<u64>,
    },
    /// What a path the run changed looked like when the run ended (`None`:
    /// absent); written before `committed`, checked by `stepback undo` to
    /// find paths changed since.
    Final {
        /// The mount.
        mount: String,
        /// The path.
        path: String,
        /// What was there (`None`: nothing).
        state: Option<EntryState>,
    },
    /// What the run left at `path` when it last touched it: written at the
    /// end of each step for the paths the step touched, and just before a
    /// rename moves one of their ancestors (after which the path names
    /// something else). A rollback that finds something else there knows
    /// that another process changed it, and keeps that aside.
    Left {
        /// The mount.
        mount: String,
        /// The path.
        path: String,
        /// What the run left (`None`: nothing).
        state: Option<EntryState>,
    },
    /// Entries the step made (files, directories, links it created) that
    /// have no records of their own, for telling other processes' entries
    /// apart in the directories the run created.
    Made {
        /// Device and inode of each.
        ids: Vec<(u64, u64)>,
    },
    /// Files the step wrote (contents, size or times), each as the step
    /// left it (when it closed the file, set its times, or ended), known
    /// by inode: what the rollback must find in them under whatever name
    /// they have then. A `left` record describes a path when it was
    /// written; a file written later through a descriptor, after its
    /// directory was renamed, is under none of its `left` paths.
    Wrote {
        /// Each file, as the step left it.
        files: Vec<FileLeft>,
    },
    /// Step `index` ended and its `left` records are written: without
    /// this, the step may have touched paths it has no records for.
    StepEnded {
        /// Position in the flow, from 0.
        index: usize,
    },
    /// The flow succeeded; its changes stay.
    Committed,
    /// The run's backups were deleted to bound disk use; it can no longer
    /// be undone. `keep`: how many newer committed runs kept theirs then.
    Pruned {
        /// How many newer committed runs kept their backups then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keep: Option<usize>,
    },
    /// A rollback finished; `problems` lists paths it could not restore,
    /// `kept` what other processes had put in the way, moved aside.
    RolledBack {
        /// Paths it could not restore, with the reason.
        problems: Vec<String>,
        /// What other processes had put in the way, moved aside.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        kept: Vec<String>,
    },
}

/// An application a flow deploys, and the version a run of it deploys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// As the flow's `[app]` names it.
    pub name: String,
    /// As the run deploys it.
    pub version: String,
}

/// An entry kept in the backup area under `backup`, which is the original
/// while it is inode `ino`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aside {
    /// Its name in the backup area.
    pub backup: String,
    /// Its inode.
    pub ino: u64,
}

/// An action a failure runs (see [`Record::Failed`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureAction {
    /// Its index in the journal (its [`Record::Action`]'s).
    pub index: usize,
    /// Its name.
    pub name: String,
}

/// A file as a step left it (see [`Record::Wrote`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLeft {
    /// Which file.
    pub id: FileId,
    /// Its size.
    pub size: u64,
    /// Its modification time.
    pub mtime: Time,
}

/// The undo records that a `void` record cancels.
pub fn voided(records: &[Record]) -> std::collections::HashSet<u64> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Void { seqs } => Some(seqs.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Which file an entry is, whatever its name: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FileId {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
}

impl FileId {
    /// The identity `meta` describes.
    pub fn of(meta: &cap_std::fs::Metadata) -> FileId {
        use cap_std::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// An undo record of step 0 in mount `m`, for the journal's unit tests.
#[cfg(test)]
pub(super) fn undo_in_m(seq: u64, change: Change, undo: UndoOp) -> Record {
    Record::Undo {
        seq,
        step: 0,
        mount: "m".into(),
        change,
        undo,
    }
}
