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
//! | remove an empty directory | its mode and mtime | recreate it |
//! | remove or replace a symlink | its target and mtime | recreate it |
//! | any change inside a directory, `set-times` | the entry's mtime | set it back |
//! | rename | both names | rename back |
//!
//! A path is captured once per run: a file the run created, or whose
//! original is already saved, is changed again without a new capture.
//! Backups live in the run's directory under the state dir; when that is on
//! another filesystem than the mount, moves and links fall back to copies.

use super::fault::Fault;
use super::log::{Durability, JournalWriter};
use super::orphans;
use super::path_map::{PathMap, PathSet};
use super::record::{Change, EntryState, Meta, MountRecord, Record, Time, UndoOp};
use super::runs::RunDir;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, Metadata};
use cap_std::fs::{MetadataExt, PermissionsExt};
use std::collections::{BTreeSet, HashMap};
use std::io::{self, ErrorKind};
use std::path::{Component, Path, PathBuf};

/// A flow mount, opened as a capability: every path below is resolved
/// beneath its root, never following a symlink out of it.
pub struct MountFs {
    pub name: String,
    pub host: PathBuf,
    pub dir: Dir,
}

impl MountFs {
    pub fn open(name: &str, host: &Path) -> io::Result<MountFs> {
        Ok(MountFs {
            name: name.to_owned(),
            host: host.to_path_buf(),
            dir: Dir::open_ambient_dir(host, ambient_authority())?,
        })
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
    /// The original was moved aside: the open must create the file anew,
    /// and give it the original's mode.
    MovedAside {
        mode: u32,
    },
}

/// The state of a path the run has already touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Touch {
    /// Created or replaced by this run: its contents need no capture.
    Fresh,
    /// The original contents are saved in a copy.
    Preserved,
}

/// The journal of a running flow, shared by the steps' filesystem layers.
pub struct RunJournal {
    writer: JournalWriter,
    backup: Dir,
    mounts: HashMap<String, MountFs>,
    seq: u64,
    step: usize,
    touched: PathMap<Touch>,
    /// Directories the run created; see [`RunJournal::in_fresh_tree`].
    fresh_dirs: PathSet,
    /// Entries moved into those directories from elsewhere.
    foreign: PathSet,
    /// Symlinks the run made inside them, which paths may not pass
    /// through unresolved.
    fresh_symlinks: PathSet,
    times_saved: PathSet,
    /// Every path a record names, for the final states written at commit.
    paths: BTreeSet<(String, String)>,
    fault: Fault,
}

impl RunJournal {
    pub fn begin(
        run_dir: &RunDir,
        flow: &str,
        started: String,
        mounts: Vec<MountFs>,
        durability: Durability,
        fault: Fault,
    ) -> io::Result<RunJournal> {
        let mut writer = JournalWriter::create(&run_dir.journal())?.with_durability(durability);
        writer.append(&Record::Begin {
            run: run_dir.id.clone(),
            flow: flow.to_owned(),
            started,
            mounts: mounts
                .iter()
                .map(|m| MountRecord {
                    name: m.name.clone(),
                    host: m.host.clone(),
                })
                .collect(),
        })?;
        Ok(RunJournal {
            writer,
            backup: Dir::open_ambient_dir(run_dir.backup(), ambient_authority())?,
            mounts: mounts.into_iter().map(|m| (m.name.clone(), m)).collect(),
            seq: 0,
            step: 0,
            touched: PathMap::default(),
            fresh_dirs: PathSet::default(),
            foreign: PathSet::default(),
            fresh_symlinks: PathSet::default(),
            times_saved: PathSet::default(),
            paths: BTreeSet::new(),
            fault,
        })
    }

    pub fn start_step(&mut self, index: usize, name: &str) -> io::Result<()> {
        self.step = index;
        self.writer.append(&Record::Step {
            index,
            name: name.to_owned(),
        })
    }

    /// Makes the step's records durable (they already are, unless
    /// durability is relaxed).
    pub fn end_step(&mut self) -> io::Result<()> {
        self.writer.sync()
    }

    /// The number of undo records written so far.
    pub fn changes(&self) -> u64 {
        self.seq
    }

    /// Ends the journal of a successful run: the final state of every
    /// path it changed, then `committed`.
    pub fn commit(mut self) -> io::Result<()> {
        let mut finals = Vec::new();
        for (mount, path) in std::mem::take(&mut self.paths) {
            let dir = self.dir(&mount)?;
            let state = entry_state(dir, &path)?;
            if self.fresh_dirs.contains(&mount, &path) && state == Some(EntryState::Dir) {
                final_states_beneath(dir, &mount, &path, &mut finals)?;
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

    fn key(mount: &str, path: &str) -> (String, String) {
        (mount.to_owned(), path.to_owned())
    }

    /// Writes an undo record; the caller makes the change only after this.
    fn record(&mut self, mount: &str, change: Change, undo: UndoOp) -> io::Result<u64> {
        self.write_record(mount, change, undo, false)
    }

    /// Writes an undo record, synced unless `deferred` (its change leaves
    /// a durable trace of its own: see [`super::orphans`]).
    fn write_record(&mut self, mount: &str, change: Change, undo: UndoOp, deferred: bool) -> io::Result<u64> {
        let seq = self.seq + 1;
        self.fault.before_capture(seq)?;
        self.paths.insert(Self::key(mount, undo.path()));
        if let UndoOp::Renamed { from, .. } = &undo {
            self.paths.insert(Self::key(mount, from));
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
        Ok(seq)
    }

    /// The capture of operation `seq` is complete; the change may proceed.
    fn done(&self, seq: u64) {
        self.fault.after_record(seq, &self.writer);
    }

    fn backup_name(&self) -> String {
        format!("{}", self.seq + 1)
    }

    /// Saves the mtime of the directory holding `path`, once per run.
    fn touch_parent(&mut self, mount: &str, path: &str) -> io::Result<()> {
        let parent = Path::new(path)
            .parent()
            .and_then(Path::to_str)
            .unwrap_or("")
            .to_owned();
        self.save_times(mount, &parent)
    }

    fn save_times(&mut self, mount: &str, path: &str) -> io::Result<()> {
        if self.times_saved.contains(mount, path)
            || self.touched.get(mount, path) == Some(&Touch::Fresh)
            || self.in_fresh_tree(mount, path)
        {
            return Ok(());
        }
        let meta = self
            .dir(mount)?
            .symlink_metadata(if path.is_empty() { "." } else { path })?;
        let seq = self.record(
            mount,
            Change::Touched,
            UndoOp::Times {
                path: path.to_owned(),
                mtime: mtime(&meta),
            },
        )?;
        self.times_saved.add(mount, path);
        self.done(seq);
        Ok(())
    }

    fn is_kept(&self, mount: &str, path: &str) -> bool {
        self.touched.contains(mount, path) || self.in_fresh_tree(mount, path)
    }

    /// Whether `path` is a directory this run created, or beneath one.
    pub fn is_fresh(&self, mount: &str, path: &str) -> bool {
        self.fresh_dirs.contains(mount, path) || self.in_fresh_tree(mount, path)
    }

    /// Whether `path` is beneath a directory this run created: its undo
    /// removes everything beneath, so nothing there needs a record. Not so
    /// for an entry moved in from elsewhere ("foreign"), nor beneath one.
    fn in_fresh_tree(&self, mount: &str, path: &str) -> bool {
        if self.fresh_dirs.is_empty() {
            return false;
        }
        for a in Path::new(path).ancestors().filter_map(Path::to_str) {
            if self.foreign.contains(mount, a) {
                return false;
            }
            if a != path && self.fresh_dirs.contains(mount, a) {
                return true;
            }
        }
        false
    }

    /// Where `path` (lexically normal, relative to the mount, with a
    /// canonical prefix) lands, when that is inside a directory the run
    /// created and no symlink of the run's own lies on the way: then no
    /// resolution is needed. `None`: resolve it the slow way.
    pub fn fresh_resolution(&self, mount: &str, path: &Path, follow: bool) -> Option<String> {
        let rel = path.to_str()?;
        if self.fresh_dirs.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
            return None;
        }
        if follow && self.fresh_symlinks.contains(mount, rel) {
            return None;
        }
        for a in path.ancestors().skip(1).filter_map(Path::to_str) {
            if self.foreign.contains(mount, a) || self.fresh_symlinks.contains(mount, a) {
                return None;
            }
            if self.fresh_dirs.contains(mount, a) {
                return (!self.foreign.contains(mount, rel)).then(|| rel.to_owned());
            }
        }
        None
    }

    /// Before creating a file, directory, symlink or hard link at `path`,
    /// where nothing is.
    pub fn before_create(&mut self, mount: &str, path: &str, kind: NewEntry) -> io::Result<()> {
        if self.in_fresh_tree(mount, path) {
            if kind == NewEntry::Symlink {
                self.fresh_symlinks.add(mount, path);
            }
            return Ok(());
        }
        let is_dir = kind == NewEntry::Dir;
        self.touch_parent(mount, path)?;
        let seq = self.record(
            mount,
            Change::Created,
            UndoOp::Created {
                path: path.to_owned(),
                tree: is_dir,
            },
        )?;
        self.touched.insert(mount, path, Touch::Fresh);
        if is_dir {
            self.fresh_dirs.add(mount, path);
        }
        self.done(seq);
        Ok(())
    }

    /// Before opening the existing file at `path` with truncation.
    pub fn before_truncate(&mut self, mount: &str, path: &str, meta: &Metadata) -> io::Result<Capture> {
        if self.is_kept(mount, path) {
            return Ok(Capture::Nothing);
        }
        if meta.nlink() == 1 {
            self.touch_parent(mount, path)?;
            let (seq, backup) = self.record_saved(mount, path, meta, Change::Replaced)?;
            match self.dir(mount)?.rename(path, &self.backup, &backup) {
                Ok(()) => {
                    self.touched.insert(mount, path, Touch::Fresh);
                    self.done(seq);
                    return Ok(Capture::MovedAside {
                        mode: meta.permissions().mode(),
                    });
                }
                // Another filesystem: the record stays without a backup,
                // which undo skips; the copy below covers the change.
                Err(e) if e.kind() == ErrorKind::CrossesDevices => {}
                Err(e) => return Err(e),
            }
        }
        self.copy_aside(mount, path, meta, Change::Replaced)?;
        Ok(Capture::Nothing)
    }

    /// Records that the file at `path` is about to be moved or linked into
    /// the backup area; returns the record's number and the backup's name.
    /// The record is synced only when the name cannot say where the backup
    /// belongs (a path too long for a file name).
    fn record_saved(
        &mut self,
        mount: &str,
        path: &str,
        meta: &Metadata,
        change: Change,
    ) -> io::Result<(u64, String)> {
        let named = orphans::name(self.seq + 1, change, mount, path);
        let deferred = named.is_some();
        let backup = named.unwrap_or_else(|| self.backup_name());
        let saved = UndoOp::Saved {
            path: path.to_owned(),
            backup: backup.clone(),
            size: meta.len(),
            ino: meta.ino(),
        };
        Ok((self.write_record(mount, change, saved, deferred)?, backup))
    }

    /// Before opening the existing file at `path` for writing in place.
    pub fn before_write_open(&mut self, mount: &str, path: &str, meta: &Metadata) -> io::Result<()> {
        if self.is_kept(mount, path) {
            return Ok(());
        }
        self.copy_aside(mount, path, meta, Change::Modified)
    }

    /// Copies the file into the backup area and syncs it, then records it:
    /// a crash mid-copy leaves an unreferenced backup, never a record
    /// pointing at a partial one.
    fn copy_aside(&mut self, mount: &str, path: &str, meta: &Metadata, change: Change) -> io::Result<()> {
        let backup = self.backup_name();
        self.fault.before_capture(self.seq + 1)?;
        clone_or_copy(self.dir(mount)?, path, &self.backup, &backup)?;
        let seq = self.record(
            mount,
            change,
            UndoOp::Copied {
                path: path.to_owned(),
                backup,
                size: meta.len(),
                meta: Meta {
                    mode: meta.permissions().mode(),
                    mtime: mtime(meta),
                },
            },
        )?;
        self.touched.insert(mount, path, Touch::Preserved);
        self.done(seq);
        Ok(())
    }

    /// Before unlinking the file or symlink at `path`.
    pub fn before_unlink(&mut self, mount: &str, path: &str, meta: &Metadata) -> io::Result<()> {
        self.fresh_symlinks.remove(mount, path);
        if self.in_fresh_tree(mount, path) {
            return Ok(());
        }
        self.foreign.remove(mount, path);
        self.touch_parent(mount, path)?;
        if self.touched.remove(mount, path).is_some() {
            return Ok(());
        }
        self.save_entry(mount, path, meta, Change::Deleted)
    }

    /// Records how to bring back the entry at `path`, about to disappear.
    fn save_entry(&mut self, mount: &str, path: &str, meta: &Metadata, change: Change) -> io::Result<()> {
        if meta.is_symlink() {
            let target = self.dir(mount)?.read_link_contents(path)?;
            let seq = self.record(
                mount,
                change,
                UndoOp::RemovedSymlink {
                    path: path.to_owned(),
                    target: target.to_string_lossy().into_owned(),
                    mtime: mtime(meta),
                },
            )?;
            self.done(seq);
        } else if meta.is_dir() {
            let seq = self.record(
                mount,
                change,
                UndoOp::RemovedDir {
                    path: path.to_owned(),
                    meta: Meta {
                        mode: meta.permissions().mode(),
                        mtime: mtime(meta),
                    },
                },
            )?;
            self.done(seq);
        } else {
            let (seq, backup) = self.record_saved(mount, path, meta, change)?;
            match self.dir(mount)?.hard_link(path, &self.backup, &backup) {
                Ok(()) => self.done(seq),
                Err(e) if e.kind() == ErrorKind::CrossesDevices => {
                    self.copy_aside(mount, path, meta, change)?;
                    self.touched.remove(mount, path);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Before removing the (empty) directory at `path`.
    pub fn before_remove_dir(&mut self, mount: &str, path: &str, meta: &Metadata) -> io::Result<()> {
        if self.in_fresh_tree(mount, path) {
            return Ok(());
        }
        self.touch_parent(mount, path)?;
        self.fresh_dirs.remove(mount, path);
        self.foreign.remove(mount, path);
        if self.touched.remove(mount, path).is_some() {
            return Ok(());
        }
        self.save_entry(mount, path, meta, Change::Deleted)
    }

    /// Before changing the timestamps of the entry at `path`.
    pub fn before_set_times(&mut self, mount: &str, path: &str) -> io::Result<()> {
        self.save_times(mount, path)
    }

    /// Before renaming `from` to `to` within one mount; `to_meta` is what
    /// is at `to` now, if anything.
    pub fn before_rename(
        &mut self,
        mount: &str,
        from: &str,
        to: &str,
        from_is_dir: bool,
        to_meta: Option<&Metadata>,
    ) -> io::Result<()> {
        let (from_fresh, to_fresh) = (self.in_fresh_tree(mount, from), self.in_fresh_tree(mount, to));
        self.move_keys(mount, from, to);
        if from_fresh && to_fresh {
            return Ok(());
        }
        if to_fresh {
            // Not the run's own: what happens to it inside must be recorded.
            self.foreign.add(mount, to);
        }
        self.touch_parent(mount, from)?;
        self.touch_parent(mount, to)?;
        match to_meta {
            Some(meta) if !self.is_kept(mount, to) => self.save_entry(mount, to, meta, Change::Replaced)?,
            Some(_) => {}
            None => {
                let created = UndoOp::Created {
                    path: to.to_owned(),
                    tree: false,
                };
                let seq = self.record(mount, Change::Renamed, created)?;
                self.done(seq);
            }
        }
        let seq = self.record(
            mount,
            Change::Renamed,
            UndoOp::Renamed {
                from: from.to_owned(),
                to: to.to_owned(),
            },
        )?;
        if from_is_dir {
            // Paths beneath both names now mean other entries: forget what
            // is known of them, so they are captured again if changed.
            let under = |p: &str, dir: &str| p == dir || p.starts_with(&format!("{dir}/"));
            self.touched
                .retain_in(mount, |p| !(under(p, from) || under(p, to)));
            self.times_saved
                .retain_in(mount, |p| !(under(p, from) || under(p, to)));
        } else {
            match self.touched.remove(mount, from) {
                Some(state) => self.touched.insert(mount, to, state),
                None => self.touched.remove(mount, to),
            };
            self.times_saved.remove(mount, to);
        }
        self.done(seq);
        Ok(())
    }

    /// Moves what is known of `from` (and beneath it) to `to`: the run's
    /// directories and symlinks, and foreign entries, keep their status
    /// under their new names.
    fn move_keys(&mut self, mount: &str, from: &str, to: &str) {
        let renamed = |p: &str| {
            let rest = p.strip_prefix(from)?;
            (rest.is_empty() || rest.starts_with('/')).then(|| format!("{to}{rest}"))
        };
        for set in [&mut self.fresh_dirs, &mut self.foreign, &mut self.fresh_symlinks] {
            set.remove(mount, to);
            set.rename_in(mount, renamed);
        }
    }
}

/// Copies `path` into the backup area as `name`, durably: a reflink clone
/// (shared blocks, no data copied) where the filesystem supports one
/// (btrfs, XFS), else `copy_file_range`, else a plain copy.
fn clone_or_copy(dir: &Dir, path: &str, backup: &Dir, name: &str) -> io::Result<()> {
    let source = dir.open(path)?.into_std();
    let copy = backup.create(name)?.into_std();
    if rustix::fs::ioctl_ficlone(&copy, &source).is_err() {
        io::copy(&mut &source, &mut &copy)?;
    }
    copy.sync_all()
}

pub(super) fn mtime(meta: &Metadata) -> Time {
    Time(meta.mtime(), meta.mtime_nsec() as u32)
}

/// The state of `path` as `stepback undo` compares it; `None` if absent.
pub fn entry_state(dir: &Dir, path: &str) -> io::Result<Option<EntryState>> {
    let meta = match dir.symlink_metadata(if path.is_empty() { "." } else { path }) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(if meta.is_dir() {
        EntryState::Dir
    } else if meta.is_symlink() {
        EntryState::Symlink {
            target: dir.read_link_contents(path)?.to_string_lossy().into_owned(),
        }
    } else {
        EntryState::File {
            size: meta.len(),
            mtime: mtime(&meta),
        }
    }))
}

/// Final states of everything beneath a directory the run created (those
/// entries have no records of their own). Each directory is opened once and
/// its entries looked up by name: resolving every path from the mount's
/// root would cost a few system calls per entry of a large tree.
fn final_states_beneath(dir: &Dir, mount: &str, path: &str, out: &mut Vec<Record>) -> io::Result<()> {
    let here = dir.open_dir(path)?;
    for entry in here.entries()? {
        let name = entry?.file_name().to_string_lossy().into_owned();
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
