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
//! Each call is captured in two phases (see [`super::recorder`]): the
//! `before_*` methods write the records (and move or link originals
//! aside); then the call's guard says whether it succeeded. Only then does the bookkeeping change;
//! if the call failed, whatever the capture did to the disk is put back and
//! its records are voided, so that a rollback never acts on a change that
//! did not happen.
//!
//! Backups live in the run's directory under the state dir; for an entry on
//! another filesystem, moves and links fall back to copies.
//!
//! | file | its job |
//! | --- | --- |
//! | `mod.rs` | the run journal's state, and opening it |
//! | `lifecycle.rs` | steps, actions, failure and commit as records |
//! | `calls.rs` | the recorder contract, call by call |
//! | `strategies.rs` | how an original is kept: record, move, link or copy |
//! | `known.rs` | what the run knows of inodes; the call in progress |
//! | `finals.rs` | what the run left at each path it touched |

mod calls;
mod finals;
mod known;
mod lifecycle;
mod strategies;
#[cfg(test)]
mod tests;

use known::Known;

use super::fault::Fault;
use super::log::{Durability, JournalWriter};
use super::mount::MountFs;
use super::record::{FileId, MountRecord, Record};
use super::runs::RunDir;
use super::space_reserve::SpaceReserve;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, MetadataExt};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{self, ErrorKind};
use std::path::PathBuf;
use std::sync::Arc;

/// The journal of a running flow, shared by the steps' filesystem layers.
pub struct RunJournal {
    writer: JournalWriter,
    backup: Dir,
    /// Where `backup` is, to name the backups a caller puts there itself.
    backup_path: PathBuf,
    backup_dev: u64,
    mounts: HashMap<String, MountFs>,
    /// The last undo record's number: records are numbered on across the
    /// run, the rollback and the flow's rollback action.
    seq: u64,
    tracked: Tracked,
    fault: Fault,
    room: Arc<SpaceReserve>,
}

/// What the journal tracks of the run's changes: started afresh for the
/// flow's rollback action, after the rollback (what the run made may be
/// gone, its inodes reused).
#[derive(Default)]
struct Tracked {
    /// The current step's (or action's) index.
    step: usize,
    known: Known,
    call: known::PendingCall,
    /// Directories recorded as created by the run, for the final states
    /// written at commit (what is beneath them has no records).
    created_trees: BTreeSet<(String, String)>,
    /// Records of a batch that move in a directory the step made whole:
    /// once moved, everything in it is the run's own.
    batched_trees: HashSet<u64>,
    /// Every path a record names, for the final states written at commit.
    paths: BTreeSet<(String, String)>,
    /// Where paths of `paths` (or of this) went with a directory the run
    /// renamed: what the run left there is what an undo moves back, so
    /// their final states are written too, and a change made there after
    /// the commit is one `undo` sees.
    moved: BTreeSet<(String, String)>,
    /// The paths of `paths` the current step touched (with or without a
    /// record), for its `left` records.
    step_paths: BTreeSet<(String, String)>,
    /// Entries the current step made, for its `made` record.
    step_made: Vec<FileId>,
    /// Files the current step wrote, for its `wrote` record.
    step_wrote: HashSet<FileId>,
    /// Paths snapshotted whole (`capture = "snapshot"`), by mount.
    snapshots: HashSet<(String, String)>,
    /// What the current step's failed calls could not put back (an
    /// original moved aside stays in the backup area, its record
    /// standing): the step must fail, so that the rollback restores it.
    unrestored: Vec<String>,
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
        room: Arc<SpaceReserve>,
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

    /// Goes on after the run's rollback, for the flow's rollback action,
    /// on `mounts` opened again: its records follow the rollback's, numbered
    /// on, and nothing the run knew of its changes holds any more.
    pub fn resume(&mut self, mounts: Vec<MountFs>) {
        self.mounts = mounts.into_iter().map(|m| (m.name.clone(), m)).collect();
        self.tracked = Tracked::default();
    }

    /// The journal's writer, for the rollback (which writes its records
    /// on) and the end of the run.
    pub fn writer(&mut self) -> &mut JournalWriter {
        &mut self.writer
    }

    fn with_writer(
        writer: JournalWriter,
        run_dir: &RunDir,
        mounts: Vec<MountFs>,
        fault: Fault,
        room: Arc<SpaceReserve>,
    ) -> io::Result<RunJournal> {
        let backup = Dir::open_ambient_dir(run_dir.backup(), ambient_authority())?;
        Ok(RunJournal {
            writer,
            backup_dev: backup.dir_metadata()?.dev(),
            backup,
            backup_path: run_dir.backup(),
            mounts: mounts.into_iter().map(|m| (m.name.clone(), m)).collect(),
            seq: 0,
            tracked: Tracked::default(),
            fault,
            room,
        })
    }

    /// The number of undo records written so far.
    pub fn changes(&self) -> u64 {
        self.seq
    }

    pub fn mount(&self, name: &str) -> Option<&Dir> {
        self.mounts.get(name).map(|m| &m.dir)
    }

    fn dir(&self, mount: &str) -> io::Result<&Dir> {
        self.mount(mount)
            .ok_or_else(|| io::Error::new(ErrorKind::NotFound, format!("unknown mount {mount}")))
    }
}
