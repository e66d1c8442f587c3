//! Applying a command's overlay upper layer to the real mount, each change
//! through the run's [`Recorder`] exactly as a component's would be, so
//! that the rollback reverses it and a crash mid-apply is recovered like
//! any other change.
//!
//! What the upper layer holds (overlayfs with no redirects and `metacopy`
//! off; as root, its index on: see [`links`]) and what it becomes:
//!
//! | in the upper layer | on the mount |
//! | --- | --- |
//! | a whiteout (character device 0:0) | whatever is there is removed (a directory with all it holds, moved whole into the backup area by one rename where it can be) |
//! | a directory marked opaque | what the mount has there is replaced: entries the upper one lacks are removed |
//! | another directory | moved in whole where missing (one rename, once overlayfs's attributes are removed from all it holds), made entry by entry where it cannot be; otherwise given its mode and owner where they changed, its entries applied, its time set |
//! | a regular file | swapped with the file it replaces by one `renameat2(RENAME_EXCHANGE)` (the upper layer is in the backup area, so the original lands where it is kept); moved in by rename where nothing was there or the original goes to the backup area otherwise; copied where the upper layer is on another filesystem, or written in place where the original must keep its inode |
//! | a file with several names, copied up from a file of the mount (the index says which) | that file, kept: written in place through the name it had, linked as the names it did not have (whatever was there removed) |
//! | a file made anew where the mount's file has several names | the mount's file removed from there (its other names keep it), the new one moved in |
//! | a symlink | moved in (made anew on another filesystem), over what was there |
//! | anything else (FIFO, socket, device) | refused: the apply fails |
//!
//! The swaps, and the moves where nothing was, of the whole layer are
//! recorded first and made durable by one sync ([`Apply::record_batch`]).
//! Overlayfs's own extended attributes are removed from what moves in.
//!
//! A directory's time: where the apply added or removed entries, the time
//! the command left it (the upper directory's); where it only replaced
//! files, the time it had (as if they were written in place).

use super::links::{self, Group, Origins, Role};
use crate::journal::{
    self, Call, Capture, Entry, FileId, NewEntry, Recorder, SharedRecorder, SpaceReserve, Synced, Xattr,
    fd_xattrs, keep_capabilities, lock, open_dir_readable, replace_xattrs, set_attributes,
    set_owner_and_mode, set_times,
};
use cap_fs_ext::{DirExt, OpenOptionsFollowExt};
use cap_std::fs::{Dir, Metadata, MetadataExt, OpenOptions, PermissionsExt};
use std::collections::{BTreeSet, HashMap};
use std::io::{self, ErrorKind};
use std::os::unix::fs::DirEntryExt;
use std::path::Path;

/// Applies one upper layer to one mount.
pub struct Apply<'a> {
    /// The mount's name, for records.
    mount: &'a str,
    /// The run's recorder; `None` for an unjournaled step.
    recorder: Option<&'a SharedRecorder>,
    /// Where the upper layer is: a replaced file is exchanged with its
    /// original there when the recorder can keep the original in place.
    upper_path: &'a Path,
    /// The upper root's extended attributes before the command.
    root_xattrs: &'a [Xattr],
    /// Prefix of the extended attributes overlayfs keeps its bookkeeping
    /// in (`trusted.overlay.`, or `user.overlay.` without root): read for
    /// opaque directories, never carried onto the mount.
    overlay_xattrs: &'a str,
    /// Whether the upper layer is on the mount's filesystem (files are
    /// then moved in, not copied).
    same_fs: bool,
    /// The run's free-space reserve, which a file written in (not moved)
    /// must leave free.
    room: Option<&'a SpaceReserve>,
    /// The renames recorded before the apply changes anything, by path.
    batch: Batched,
    /// Their records, durable: each rename is made through it.
    synced: Option<Synced>,
    /// The mount's files written in place so far, with what went in: a
    /// file with several names that the command changed through two of
    /// them is two files in the upper layer (overlayfs copies up each name
    /// on its own), which cannot both become the one file.
    written: HashMap<FileId, FileId>,
    /// What the upper layer's files are copies of (hard links).
    origins: Origins,
    /// Changes applied so far.
    pub changes: u64,
    /// Originals exchanged into the upper layer so far: it holds backups
    /// then, and stays until the run's backups are pruned.
    pub exchanged: u64,
}

/// What a new directory moved in whole holds.
#[derive(Default)]
struct Tree {
    /// Its directories.
    dirs: Vec<FileId>,
    /// Its other entries.
    others: Vec<FileId>,
    /// Its files that are new names of a file of the mount (by path in
    /// the mount), linked once it is in place.
    links: Vec<(String, std::rc::Rc<Group>)>,
}

/// A directory of the mount as the apply walks it.
struct Lower<'d> {
    dir: &'d Dir,
    id: FileId,
    rel: &'d str,
}

impl Lower<'_> {
    fn entry<'e>(&'e self, mount: &'e str, name: &'e str) -> Entry<'e> {
        Entry {
            mount,
            dir: self.dir,
            dir_id: self.id,
            dir_rel: self.rel,
            name,
        }
    }

    fn child(&self, name: &str) -> String {
        if self.rel.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.rel)
        }
    }
}

impl<'a> Apply<'a> {
    /// An apply of the upper layer at `upper_path` (made with overlayfs
    /// bookkeeping in `overlay_xattrs`, its work directory at `work`) to
    /// mount `mount`, whose root is `root`, recorded by `recorder` if there
    /// is one.
    pub fn new(
        mount: &'a str,
        (recorder, room): (Option<&'a SharedRecorder>, Option<&'a SpaceReserve>),
        (upper_path, work, root_xattrs): (&'a Path, &Path, &'a [Xattr]),
        overlay_xattrs: &'a str,
        root: &Dir,
    ) -> io::Result<Apply<'a>> {
        let same_fs = std::os::unix::fs::MetadataExt::dev(&std::fs::symlink_metadata(upper_path)?)
            == root.dir_metadata()?.dev();
        Ok(Apply {
            mount,
            recorder,
            upper_path,
            root_xattrs,
            overlay_xattrs,
            same_fs,
            room,
            batch: Batched::new(),
            synced: None,
            written: HashMap::new(),
            origins: Origins::new(root, work)?,
            changes: 0,
            exchanged: 0,
        })
    }

    /// Applies `upper` (the layer's root) to `root` (the mount's).
    pub fn run(&mut self, root: &Dir) -> io::Result<()> {
        let before = root.dir_metadata()?;
        let lower = Lower {
            dir: root,
            id: FileId::of(&before),
            rel: "",
        };
        // The upper root started with the mount root's attributes (see
        // `Layer::make`): where they differ now, the command changed them.
        let (parent, name) = match (self.upper_path.parent(), self.upper_path.file_name()) {
            (Some(p), Some(n)) => (p, n.to_string_lossy()),
            _ => return Err(io::Error::other("an upper layer at the filesystem's root")),
        };
        let parent = Dir::open_ambient_dir(parent, cap_std::ambient_authority())?;
        let meta = parent.symlink_metadata(&*name)?;
        open_up(&parent, &name, &meta)?;
        let upper = parent.open_dir_nofollow(&*name)?;
        refuse_denied("", Some(&before), &meta, &upper)?;
        let applied = self
            .record_batch(&upper, &lower)
            .and_then(|()| self.directory(&upper, &lower, false))
            .and_then(|_| self.write_unnamed_groups(&lower));
        // Nothing is to expect the renames the apply did not make (it
        // stopped, or found something else there than recorded).
        self.batch.clear();
        let closed = self.synced.take().map_or(Ok(()), Synced::close);
        applied?;
        closed?;
        // Without root the upper root could not take the root's owner: the
        // owner is compared only as root.
        let owner =
            (before.uid(), before.gid()) != (meta.uid(), meta.gid()) && rustix::process::geteuid().is_root();
        let have = self.xattrs(root, ".")?;
        let want = changed(&have, self.root_xattrs, &self.xattrs(&parent, &name)?);
        if before.permissions().mode() != meta.permissions().mode() || owner || have != want {
            let call = self.capture(|rec| rec.before_set_attributes(self.mount, "", &before, have))?;
            let set = match rustix::process::geteuid().is_root() {
                true => set_owner_and_mode(root, ".", &meta),
                false => root.set_permissions(".", meta.permissions()),
            }
            .and_then(|()| self.set_xattrs(root, ".", &want));
            self.end(call, root, ".", set.is_ok(), false)?;
            set?;
            self.changes += 1;
        }
        // Its time: the command's (overlayfs keeps a directory's time as it
        // was when it copies an entry up into it).
        let now = root.dir_metadata()?;
        if (now.mtime(), now.mtime_nsec()) != (meta.mtime(), meta.mtime_nsec()) {
            let call = self.capture(|rec| rec.before_set_times(self.mount, "", &now))?;
            let set = set_times(root, ".", &meta);
            self.end(call, root, ".", set.is_ok(), false)?;
            set?;
        }
        Ok(())
    }

    /// The extended attributes of directory `name` in `dir` but overlayfs's
    /// own, in a stable order.
    fn xattrs(&self, dir: &Dir, name: &str) -> io::Result<Vec<Xattr>> {
        let mut all = fd_xattrs(&open_dir_readable(dir, name)?)?;
        all.retain(|x| !x.name.0.starts_with(self.overlay_xattrs.as_bytes()));
        all.sort_by(|a, b| a.name.0.cmp(&b.name.0));
        Ok(all)
    }

    /// Gives directory `name` in `dir` the extended attributes `want`
    /// (overlayfs's own, on an upper directory, stay).
    fn set_xattrs(&self, dir: &Dir, name: &str, want: &[Xattr]) -> io::Result<()> {
        let prefix = self.overlay_xattrs.as_bytes();
        replace_xattrs(&open_dir_readable(dir, name)?, want, |n| n.starts_with(prefix))
    }

    /// Applies the entries of upper directory `upper` to `lower`; with
    /// `opaque`, what `lower` holds is hidden from the command, so
    /// whatever `upper` lacks goes. Says whether entries were added or
    /// removed.
    fn directory(&mut self, upper: &Dir, lower: &Lower, opaque: bool) -> io::Result<bool> {
        let upper_names = names(upper)?;
        let mut reshaped = false;
        if opaque {
            for name in names(lower.dir)?.difference(&upper_names) {
                self.remove_tree(lower, name)?;
                reshaped = true;
            }
        }
        let entries = upper_names
            .iter()
            .map(|name| Ok((name, upper.symlink_metadata(name)?, lower_meta(lower.dir, name)?)))
            .collect::<io::Result<Vec<_>>>()?;
        for (name, meta, found) in entries {
            let batched = self.batch.get(&lower.child(name)).copied();
            let kind = meta.file_type();
            if is_whiteout(&meta) {
                if found.is_some() {
                    self.remove_tree(lower, name)?;
                    reshaped = true;
                }
            } else if kind.is_dir() && batched.is_some() {
                reshaped |= self.move_in_tree(upper, lower, name, &meta, found.as_ref(), batched)?;
            } else if kind.is_dir() {
                reshaped |= self.subdirectory(upper, lower, name, &meta, found, opaque)?;
            } else if kind.is_file() || kind.is_symlink() {
                let role = self.origins.role(&meta, found.as_ref());
                with_access(upper, name, &meta, || {
                    strip_overlay_xattrs(upper, name, &meta, self.overlay_xattrs)
                })?;
                reshaped |= match kind.is_file() {
                    true => self.file(upper, lower, name, (&meta, role), found, batched)?,
                    false => self.symlink(upper, lower, name, (&meta, role), found, batched)?,
                };
            } else {
                return Err(special_file(&lower.child(name)));
            }
        }
        Ok(reshaped)
    }

    /// Records, before anything changes, each file, symlink and new
    /// directory of the upper layer that one rename puts in place: swapped
    /// with the file it replaces, or moved in where nothing is. One sync makes them all
    /// durable ([`Recorder::sync_batch`]), where recording them one by one
    /// would take a sync each: most of an apply's time on a journaled
    /// filesystem, and more on a device's flash.
    fn record_batch(&mut self, upper: &Dir, lower: &Lower) -> io::Result<()> {
        let Some(rec) = self.recorder.filter(|_| self.same_fs) else {
            return Ok(());
        };
        // Dropped on an error, the batch voids what it recorded.
        let mut batch = journal::Batch::new(rec);
        let mut batched = Batched::new();
        self.record_renames(upper, lower, (&mut batch, &mut batched))?;
        self.synced = Some(batch.sync()?);
        self.batch = batched;
        Ok(())
    }

    /// Adds the renames of `upper`'s entries into `lower`, and of the
    /// directories beneath that both have, to `batch`, in the order the
    /// apply makes them. Directories the engine cannot search without root
    /// are left to the apply itself (see [`refuse_denied`]).
    fn record_renames(
        &self,
        upper: &Dir,
        lower: &Lower,
        (batch, batched): (&mut journal::Batch, &mut Batched),
    ) -> io::Result<()> {
        let searchable =
            |m: &Metadata| m.permissions().mode() & 0o700 == 0o700 || rustix::process::geteuid().is_root();
        let mut entries = upper
            .entries()?
            .map(|e| {
                let e = e?;
                Ok((utf8(e.file_name())?, e))
            })
            .collect::<io::Result<Vec<_>>>()?;
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (name, entry) in entries {
            let kind = entry.file_type()?;
            if (kind.is_file() || kind.is_symlink()) && self.origins.may_link(&entry.metadata()?) {
                // Its names may become links to a file of the mount: left
                // to the apply itself.
                continue;
            }
            let Some(found) = lower_meta(lower.dir, &name)? else {
                let kind = match kind {
                    k if k.is_file() => NewEntry::File,
                    k if k.is_symlink() => NewEntry::Symlink,
                    k if k.is_dir() => NewEntry::Dir,
                    _ => continue,
                };
                let (ino, at) = (entry.ino(), lower.entry(self.mount, &name));
                if let Some(seq) = batch.move_in(&at, ino, kind)? {
                    batched.insert(lower.child(&name), (seq, None));
                }
                continue;
            };
            if kind.is_file() && found.is_file() {
                let replacement = self.upper_path.join(lower.child(&name));
                let at = lower.entry(self.mount, &name);
                if let Some(seq) = batch.exchange(&at, &found, &replacement)? {
                    batched.insert(lower.child(&name), (seq, Some(FileId::of(&found))));
                }
            } else if kind.is_dir() && found.is_dir() && searchable(&found) && searchable(&entry.metadata()?)
            {
                let (up, dir) = (
                    upper.open_dir_nofollow(&name)?,
                    lower.dir.open_dir_nofollow(&name)?,
                );
                let rel = lower.child(&name);
                let child = Lower {
                    dir: &dir,
                    id: FileId::of(&found),
                    rel: &rel,
                };
                self.record_renames(&up, &child, (batch, batched))?;
            }
        }
        Ok(())
    }

    /// Moves new upper directory `name` (`meta`), recorded in the batch as
    /// `batched`, onto `lower` whole, once [`Apply::ready_tree`] has
    /// readied what it holds: one rename where making it anew would take
    /// one per entry. Fails if `lower` has something there now (`found`).
    fn move_in_tree(
        &mut self,
        upper: &Dir,
        lower: &Lower,
        name: &str,
        meta: &Metadata,
        found: Option<&Metadata>,
        batched: Option<(u64, Option<FileId>)>,
    ) -> io::Result<bool> {
        open_up(upper, name, meta)?;
        let up = upper.open_dir_nofollow(name)?;
        let rel = lower.child(name);
        refuse_denied(&rel, None, meta, &up)?;
        let mut tree = Tree::default();
        self.ready_tree(&up, &rel, &mut tree)?;
        strip_overlay_xattrs(upper, name, meta, self.overlay_xattrs)?;
        let moved = self.make_batched(upper, lower, name, meta, found, batched)? == Some(true);
        if moved && let Some(rec) = self.recorder {
            lock(rec).made_tree(&tree.dirs, &tree.others);
        }
        if moved {
            for (rel, group) in tree.links {
                self.relink(lower, &rel, &group)?;
            }
        }
        Ok(moved)
    }

    /// Makes `rel` (in a tree just moved into `lower`) a link to `group`'s
    /// file, in place of the upper file that moved in there (the run's
    /// own: its removal needs no record).
    fn relink(&mut self, lower: &Lower, rel: &str, group: &Group) -> io::Result<()> {
        let (parent, name) = rel
            .rsplit_once('/')
            .ok_or_else(|| io::Error::other(format!("{rel} is not in a tree")))?;
        let below = parent
            .strip_prefix(lower.rel)
            .unwrap_or(parent)
            .trim_start_matches('/');
        let dir = lower.dir.open_dir_nofollow(below)?;
        let child = Lower {
            dir: &dir,
            id: FileId::of(&dir.dir_metadata()?),
            rel: parent,
        };
        let meta = dir.symlink_metadata(name)?;
        let call = self.capture(|rec| rec.before_remove(&child.entry(self.mount, name), &meta))?;
        let removed = dir.remove_file(name);
        self.end(call, &dir, name, removed.is_ok(), false)?;
        removed?;
        self.link_to(&child, name, group)
    }

    /// Readies new upper directory `up` (at `rel` in the mount) to move
    /// onto the mount whole: overlayfs's attributes go
    /// from everything in it, and what the apply refuses elsewhere is
    /// refused here too (special files; without root, directories that
    /// deny their owner). Counts its entries as changes, and adds them to
    /// `tree`.
    fn ready_tree(&mut self, up: &Dir, rel: &str, tree: &mut Tree) -> io::Result<()> {
        for name in names(up)? {
            let meta = up.symlink_metadata(&name)?;
            let child = format!("{rel}/{name}");
            let kind = meta.file_type();
            if kind.is_dir() {
                open_up(up, &name, &meta)?;
                let sub = up.open_dir_nofollow(&name)?;
                refuse_denied(&child, None, &meta, &sub)?;
                self.ready_tree(&sub, &child, tree)?;
                tree.dirs.push(FileId::of(&meta));
            } else if kind.is_file() || kind.is_symlink() {
                tree.others.push(FileId::of(&meta));
                match self.origins.role(&meta, None) {
                    // Counted once linked.
                    Role::LinkTo(group) => tree.links.push((child.clone(), group)),
                    _ => self.changes += 1,
                }
            } else {
                return Err(special_file(&child));
            }
            with_access(up, &name, &meta, || {
                strip_overlay_xattrs(up, &name, &meta, self.overlay_xattrs)
            })?;
            self.changes += u64::from(kind.is_dir());
        }
        Ok(())
    }

    fn subdirectory(
        &mut self,
        upper: &Dir,
        lower: &Lower,
        name: &str,
        meta: &Metadata,
        found: Option<Metadata>,
        opaque: bool,
    ) -> io::Result<bool> {
        open_up(upper, name, meta)?;
        let up = upper.open_dir_nofollow(name)?;
        let rel = lower.child(name);
        let kept = match found {
            Some(f) if f.is_dir() => Some(f),
            other => {
                if other.is_some() {
                    self.remove_tree(lower, name)?;
                }
                self.create(lower, name, NewEntry::Dir, |dir| dir.create_dir(name))?;
                None
            }
        };
        let made = kept.is_none();
        refuse_denied(&rel, kept.as_ref(), meta, &up)?;
        let dir = lower.dir.open_dir_nofollow(name)?;
        let child = Lower {
            dir: &dir,
            id: FileId::of(&dir.dir_metadata()?),
            rel: &rel,
        };
        self.directory(
            &up,
            &child,
            opaque || made || is_opaque(upper, name, self.overlay_xattrs)?,
        )?;
        // Its mode, owner and extended attributes once its entries are
        // applied (a mode that denies its owner would refuse them without
        // root), its times last: the command's (see `run`).
        let want = self.xattrs(upper, name)?;
        match kept {
            None => set_owner_and_mode(lower.dir, name, meta)
                .and_then(|()| self.set_xattrs(lower.dir, name, &want))?,
            Some(f) => {
                let have = self.xattrs(lower.dir, name)?;
                if f.permissions().mode() != meta.permissions().mode()
                    || (f.uid(), f.gid()) != (meta.uid(), meta.gid())
                    || have != want
                {
                    let call = self.capture(|rec| rec.before_set_attributes(self.mount, &rel, &f, have))?;
                    let set = set_owner_and_mode(lower.dir, name, meta)
                        .and_then(|()| self.set_xattrs(lower.dir, name, &want));
                    self.end(call, lower.dir, name, set.is_ok(), false)?;
                    set?;
                    self.changes += 1;
                }
            }
        }
        self.set_time(lower, name, meta)?;
        Ok(made)
    }

    /// Applies upper file `name` (`meta`, in `role`) where `lower` has
    /// `found`; says whether it added an entry.
    fn file(
        &mut self,
        upper: &Dir,
        lower: &Lower,
        name: &str,
        (meta, role): (&Metadata, Role),
        found: Option<Metadata>,
        batched: Option<(u64, Option<FileId>)>,
    ) -> io::Result<bool> {
        if let Some(made) = self.make_batched(upper, lower, name, meta, found.as_ref(), batched)? {
            return Ok(made);
        }
        match (role, found) {
            (Role::WriteInto(group), Some(f)) => {
                self.write_group(lower, name, &f, &group)?;
                Ok(false)
            }
            (Role::LinkTo(group), found) => {
                if found.is_some() {
                    self.remove_tree(lower, name)?;
                }
                self.link_to(lower, name, &group)?;
                Ok(true)
            }
            (role, Some(f)) if f.is_file() && !matches!(role, Role::Replace) => {
                if !self.write_once(FileId::of(&f), FileId::of(meta), &lower.child(name))? {
                    return Ok(false);
                }
                let at = lower.entry(self.mount, name);
                let captured = match self.recorder {
                    Some(rec) => Some(Call::begin(rec, |r| r.before_truncate(&at, &f))?),
                    None => None,
                };
                match captured {
                    // Unjournaled, the file is simply replaced.
                    None | Some((_, Capture::MovedAside)) => {
                        let placed = place(upper, lower.dir, name, meta, (self.same_fs, self.room));
                        self.end(captured.map(|(c, _)| c), lower.dir, name, placed.is_ok(), true)?;
                        placed?;
                        self.changes += 1;
                    }
                    Some((call, Capture::Nothing)) => {
                        self.write_in_place(Some(call), (upper, name), lower, name, meta)?
                    }
                }
                Ok(false)
            }
            (_, other) => {
                if other.is_some() {
                    self.remove_tree(lower, name)?;
                }
                let placing = (self.same_fs, self.room);
                self.create(lower, name, NewEntry::File, |dir| {
                    place(upper, dir, name, meta, placing)
                })?;
                Ok(true)
            }
        }
    }

    fn symlink(
        &mut self,
        upper: &Dir,
        lower: &Lower,
        name: &str,
        (meta, role): (&Metadata, Role),
        found: Option<Metadata>,
        batched: Option<(u64, Option<FileId>)>,
    ) -> io::Result<bool> {
        if let Some(made) = self.make_batched(upper, lower, name, meta, found.as_ref(), batched)? {
            return Ok(made);
        }
        // A symlink of the mount with several names stays one inode.
        match (role, &found) {
            (Role::WriteInto(group), Some(f)) => {
                self.write_group(lower, name, f, &group)?;
                return Ok(false);
            }
            (Role::LinkTo(group), found) => {
                if found.is_some() {
                    self.remove_tree(lower, name)?;
                }
                self.link_to(lower, name, &group)?;
                return Ok(true);
            }
            _ => {}
        }
        let target = upper.read_link_contents(name)?;
        // A symlink the command also linked elsewhere must stay one inode.
        if let Some(f) = &found
            && f.is_symlink()
            && meta.nlink() == 1
            && lower.dir.read_link_contents(name)? == target
            && (f.mtime(), f.mtime_nsec()) == (meta.mtime(), meta.mtime_nsec())
            // Its owner too, as root (`chown -h`); without root the upper
            // copy is the user's whoever owned the original.
            && ((f.uid(), f.gid()) == (meta.uid(), meta.gid()) || !rustix::process::geteuid().is_root())
        {
            return Ok(false);
        }
        if found.is_some() {
            self.remove_tree(lower, name)?;
        }
        let same_fs = self.same_fs;
        self.create(lower, name, NewEntry::Symlink, |dir| match same_fs {
            true => upper.rename(name, dir, name),
            false => {
                dir.symlink_contents(&target, name)?;
                set_attributes(dir, name, meta)
            }
        })?;
        Ok(true)
    }

    /// Makes the rename recorded in the batch as `batched`, if there is
    /// one for upper entry `name` (`meta`; `found`: what `lower` has
    /// there): an exchange with the file it replaces, or a move where
    /// nothing is. Says whether it added an entry; `None` when the entry
    /// is not in the batch. Fails if `lower` no longer has what the
    /// record says (another process changed it since).
    fn make_batched(
        &mut self,
        upper: &Dir,
        lower: &Lower,
        name: &str,
        meta: &Metadata,
        found: Option<&Metadata>,
        batched: Option<(u64, Option<FileId>)>,
    ) -> io::Result<Option<bool>> {
        let (Some((seq, recorded)), Some(synced)) = (batched, self.synced.as_mut()) else {
            return Ok(None);
        };
        // Made or voided below: no longer the apply's to abandon.
        self.batch.remove(&lower.child(name));
        let added = found.is_none();
        let changed = || {
            io::Error::other(format!(
                "{} was changed by another process while the command's changes were applied",
                lower.child(name)
            ))
        };
        synced.make(seq, &mut || match found {
            _ if found.map(FileId::of) != recorded => Err(changed()),
            Some(original) => exchange_file(upper, lower.dir, name, (meta, original))?.ok_or_else(changed),
            None => move_in(upper, lower.dir, name, meta).map_err(|e| match e.kind() {
                ErrorKind::AlreadyExists => changed(),
                _ => e,
            }),
        })?;
        self.changes += 1;
        if !added {
            self.exchanged += 1;
        }
        Ok(Some(added))
    }

    /// Writes upper file `from` (`meta`) into the file `lower` has at
    /// `name`, captured already by `call`, keeping its inode.
    fn write_in_place(
        &mut self,
        call: Option<Call>,
        from: (&Dir, &str),
        lower: &Lower,
        name: &str,
        meta: &Metadata,
    ) -> io::Result<()> {
        let written = write_in_place(from, lower.dir, name, meta, (false, self.room));
        self.end(call, lower.dir, name, written.is_ok(), false)?;
        written?;
        // As the run leaves it through every name: its other names are not
        // another process's change.
        if let Some(rec) = self.recorder {
            lock(rec).left(&lower.dir.symlink_metadata(name)?);
        }
        self.changes += 1;
        Ok(())
    }

    /// Makes `name` in `lower`, where nothing is, a link to `group`'s
    /// file, recorded first; the file takes the copy's contents through it
    /// if no name did yet.
    fn link_to(&mut self, lower: &Lower, name: &str, group: &Group) -> io::Result<()> {
        let call = self.capture(|rec| rec.before_link(&lower.entry(self.mount, name)))?;
        let linked = links::link(&group.origin, lower.dir, name);
        self.end(call, lower.dir, name, linked.is_ok(), false)?;
        linked?;
        self.changes += 1;
        self.write_group(lower, name, &lower.dir.symlink_metadata(name)?, group)
    }

    /// Writes the copies of the groups whose file no name the apply met
    /// took them through (the command changed it, then removed the names
    /// it had in a directory it removed whole, leaving others untouched;
    /// or it changed nothing: overlayfs copies a file up to remove one of
    /// its names):
    /// through a name made for that, in the mount's root, and removed
    /// again. Each step is recorded, so a rollback puts the file back.
    fn write_unnamed_groups(&mut self, root: &Lower) -> io::Result<()> {
        let groups: Vec<_> = self
            .origins
            .groups()
            .filter(|g| self.written.get(&g.origin.id) != Some(&g.copy))
            .cloned()
            .collect();
        for group in groups {
            let Some(index) = self.origins.index() else { break };
            if links::unchanged(&group, index, self.overlay_xattrs)? {
                continue;
            }
            let name = format!(".stepback-apply-{}", group.copy.ino);
            self.link_to(root, &name, &group)?;
            self.remove_tree(root, &name)?;
            // The name was never the command's: only the write counts.
            self.changes -= 2;
        }
        Ok(())
    }

    /// Writes `group`'s copy into its file, at `name` in `lower`
    /// (`found`), unless it was written already through another name.
    fn write_group(&mut self, lower: &Lower, name: &str, found: &Metadata, group: &Group) -> io::Result<()> {
        if !self.write_once(FileId::of(found), group.copy, &lower.child(name))? {
            return Ok(());
        }
        let index = self
            .origins
            .index()
            .ok_or_else(|| io::Error::other("a group without an index"))?
            .try_clone()?;
        let copy = index.symlink_metadata(&group.entry)?;
        if group.symlink {
            return self.touch_symlink(lower, name, found, &copy);
        }
        strip_overlay_xattrs(&index, &group.entry, &copy, self.overlay_xattrs)?;
        let call = self.capture(|rec| rec.before_write_open(&lower.entry(self.mount, name), found))?;
        self.write_in_place(call, (&index, &group.entry), lower, name, &copy)
    }

    /// Gives the mount's symlink at `name` in `lower` (`found`, with other
    /// names) the time of its copy: all a command can change of a symlink
    /// and keep it. A new owner (`chown -h`) would need a record the
    /// journal does not have for a symlink that stays: refused.
    fn touch_symlink(
        &mut self,
        lower: &Lower,
        name: &str,
        found: &Metadata,
        copy: &Metadata,
    ) -> io::Result<()> {
        let rel = lower.child(name);
        if (found.uid(), found.gid()) != (copy.uid(), copy.gid()) {
            return Err(io::Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the command changed the owner of {rel}, a symlink with other names (hard links): that cannot be applied to it and rolled back"
                ),
            ));
        }
        if (found.mtime(), found.mtime_nsec()) == (copy.mtime(), copy.mtime_nsec()) {
            return Ok(());
        }
        let call = self.capture(|rec| rec.before_set_times(self.mount, &rel, found))?;
        let set = set_times(lower.dir, name, copy);
        self.end(call, lower.dir, name, set.is_ok(), false)?;
        set?;
        self.changes += 1;
        Ok(())
    }

    /// Whether upper file `meta` is still to be written into `found`, a
    /// file of the mount (not when it was, through another of its names).
    /// Refused where another upper file was written into it already
    /// (through another of its names, at `rel` now): the command made two
    /// files of one, and either would undo the other's change.
    fn write_once(&mut self, found: FileId, meta: FileId, rel: &str) -> io::Result<bool> {
        match self.written.insert(found, meta) {
            None => Ok(true),
            Some(other) if other == meta => Ok(false),
            Some(_) => Err(io::Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the command changed {rel} and another name of the same file (a hard link) apart: in its overlay they had become two files, which cannot be applied as one"
                ),
            )),
        }
    }

    /// Makes a new entry `name` in `lower` with `make`, recorded first.
    fn create(
        &mut self,
        lower: &Lower,
        name: &str,
        kind: NewEntry,
        make: impl FnOnce(&Dir) -> io::Result<()>,
    ) -> io::Result<()> {
        let call = self.capture(|rec| rec.before_create(&lower.entry(self.mount, name), kind))?;
        let made = make(lower.dir);
        self.end(call, lower.dir, name, made.is_ok(), true)?;
        made?;
        self.changes += 1;
        Ok(())
    }

    /// Removes `name` from `lower`, and all it holds: a directory moved
    /// whole into the backup area where the journal can keep it so
    /// ([`Recorder::remove_tree`]), otherwise each entry recorded before
    /// it goes.
    fn remove_tree(&mut self, lower: &Lower, name: &str) -> io::Result<()> {
        let Some(meta) = lower_meta(lower.dir, name)? else {
            return Ok(());
        };
        // A name of a file the command copied up and changed: the changes
        // go in through it first (the file's other names keep them).
        if let Some(group) = self.origins.of_file(&meta) {
            self.write_group(lower, name, &meta, &group)?;
        }
        if meta.is_dir()
            && let Some(rec) = self.recorder
            && lock(rec).remove_tree(&lower.entry(self.mount, name), &meta)?
        {
            self.changes += 1;
            return Ok(());
        }
        if meta.is_dir() {
            let dir = lower.dir.open_dir_nofollow(name)?;
            let rel = lower.child(name);
            let child = Lower {
                dir: &dir,
                id: FileId::of(&meta),
                rel: &rel,
            };
            for entry in names(&dir)? {
                self.remove_tree(&child, &entry)?;
            }
        }
        let call = self.capture(|rec| rec.before_remove(&lower.entry(self.mount, name), &meta))?;
        let removed = match meta.is_dir() {
            true => lower.dir.remove_dir(name),
            false => lower.dir.remove_file(name),
        };
        self.end(call, lower.dir, name, removed.is_ok(), false)?;
        removed?;
        self.changes += 1;
        Ok(())
    }

    /// Sets the times of directory `name` in `lower` to those of `meta`.
    fn set_time(&mut self, lower: &Lower, name: &str, meta: &Metadata) -> io::Result<()> {
        let now = lower.dir.symlink_metadata(name)?;
        if now.mtime() == meta.mtime() && now.mtime_nsec() == meta.mtime_nsec() {
            return Ok(());
        }
        let rel = lower.child(name);
        let call = self.capture(|rec| rec.before_set_times(self.mount, &rel, &now))?;
        let set = set_times(lower.dir, name, meta);
        self.end(call, lower.dir, name, set.is_ok(), false)?;
        set
    }

    /// Captures a change, if the step is journaled (`None` when it is
    /// not): the [`Call`] it returns ends it; a failed capture means the
    /// change must not be made.
    fn capture(&self, before: impl FnOnce(&mut dyn Recorder) -> io::Result<()>) -> io::Result<Option<Call>> {
        let Some(rec) = self.recorder else {
            return Ok(None);
        };
        Ok(Some(Call::begin(rec, before)?.0))
    }

    /// Ends the captured change to `name` in `dir` (if there was one) as
    /// `ok` says; `made`: it put a new inode there.
    fn end(&self, call: Option<Call>, dir: &Dir, name: &str, ok: bool, made: bool) -> io::Result<()> {
        let Some(call) = call else {
            return Ok(());
        };
        call.ended(ok, || match made {
            true => lower_meta(dir, name).ok().flatten().map(|m| FileId::of(&m)),
            false => None,
        })
    }
}

/// The records of a batch ([`Apply::record_batch`]) by path in the mount:
/// each record's number and the original its rename replaces (none for a
/// move where nothing was).
type Batched = HashMap<String, (u64, Option<FileId>)>;

/// The names in `dir`, sorted (so that an apply is repeatable).
fn names(dir: &Dir) -> io::Result<BTreeSet<String>> {
    dir.entries()?.map(|e| utf8(e?.file_name())).collect()
}

fn utf8(name: std::ffi::OsString) -> io::Result<String> {
    name.into_string()
        .map_err(|n| io::Error::new(ErrorKind::InvalidData, format!("a name that is not UTF-8: {n:?}")))
}

fn lower_meta(dir: &Dir, name: &str) -> io::Result<Option<Metadata>> {
    match dir.symlink_metadata(name) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether overlayfs marks this entry as deleted.
fn is_whiteout(meta: &Metadata) -> bool {
    use cap_std::fs::FileTypeExt;
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether overlayfs marks the upper directory `name` in `upper` as
/// hiding the lower one's entries (a directory made where one was
/// removed). Read through a descriptor that can read attributes: the
/// directories cap-std opens cannot.
fn is_opaque(upper: &Dir, name: &str, overlay_xattrs: &str) -> io::Result<bool> {
    let dir = open_dir_readable(upper, name)?;
    let mut value = [0u8; 4];
    let opaque = format!("{overlay_xattrs}opaque");
    Ok(matches!(rustix::fs::fgetxattr(&dir, opaque.as_str(), &mut value), Ok(1) if value[0] == b'y'))
}

/// The apply's refusal of a special file the command made at `rel`.
fn special_file(rel: &str) -> io::Error {
    io::Error::new(
        ErrorKind::Unsupported,
        format!(
            "the command made a special file (FIFO, socket or device) at {rel}, which Stepback does not journal"
        ),
    )
}

/// Removes overlayfs's own extended attributes from upper entry `name`
/// (`meta`) before it moves onto the mount (a symlink has them too once
/// the command changed its time or owner, a directory once it holds
/// entries copied up).
fn strip_overlay_xattrs(upper: &Dir, name: &str, meta: &Metadata, overlay_xattrs: &str) -> io::Result<()> {
    if meta.is_symlink() {
        // A symlink cannot be opened for its own: by name under the
        // directory's descriptor (slower, and rare).
        use std::os::fd::{AsFd, AsRawFd};
        let path = format!("/proc/self/fd/{}/{name}", upper.as_fd().as_raw_fd());
        return strip(
            overlay_xattrs,
            |list| rustix::fs::llistxattr(&path, list),
            |attr| rustix::fs::lremovexattr(&path, attr),
        );
    }
    let file: std::os::fd::OwnedFd = match meta.is_dir() {
        true => open_dir_readable(upper, name)?,
        false => upper.open(name)?.into_std().into(),
    };
    strip(
        overlay_xattrs,
        |list| rustix::fs::flistxattr(&file, list),
        |attr| rustix::fs::fremovexattr(&file, attr),
    )
}

/// Extended attributes `have` with the changes from `before` to `after`:
/// those `after` no longer has removed, those it set or changed set.
/// Sorted by name.
fn changed(have: &[Xattr], before: &[Xattr], after: &[Xattr]) -> Vec<Xattr> {
    let mut want: Vec<Xattr> = have
        .iter()
        .filter(|h| !before.iter().any(|b| b.name == h.name) || after.iter().any(|a| a.name == h.name))
        .filter(|h| !after.iter().any(|a| a.name == h.name && !before.contains(a)))
        .cloned()
        .collect();
    want.extend(after.iter().filter(|a| !before.contains(a)).cloned());
    want.sort_by(|a, b| a.name.0.cmp(&b.name.0));
    want
}

/// Removes the extended attributes whose names start with `prefix`, of
/// those `list` lists, with `remove`.
fn strip(
    prefix: &str,
    list: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    remove: impl Fn(&[u8]) -> rustix::io::Result<()>,
) -> io::Result<()> {
    let mut names = vec![0u8; 4096];
    let n = match list(&mut names) {
        Ok(n) => n,
        Err(rustix::io::Errno::RANGE) => {
            names.resize(list(&mut [])?, 0);
            list(&mut names)?
        }
        Err(e) => return Err(e.into()),
    };
    for attr in names[..n]
        .split(|b| *b == 0)
        .filter(|a| a.starts_with(prefix.as_bytes()))
    {
        remove(attr)?;
    }
    Ok(())
}

/// Without root, the engine can neither work in a directory that denies
/// its owner reading, writing or searching (as root can) nor, later, roll
/// back what is in it or check it: the apply fails (and the step with it)
/// where the command left directory `rel` (`meta`: its mode then) denying
/// its owner, or changed entries of it (`upper` holds some) while it
/// denied its owner before (`lower`, as it was).
fn refuse_denied(rel: &str, lower: Option<&Metadata>, meta: &Metadata, upper: &Dir) -> io::Result<()> {
    let denies = |m: &Metadata| m.permissions().mode() & 0o700 != 0o700;
    let mode = |m: &Metadata| m.permissions().mode() & 0o7777;
    let shown = if rel.is_empty() { "the mount's root" } else { rel };
    let why = if !denies(meta) && !lower.is_some_and(denies) || rustix::process::geteuid().is_root() {
        return Ok(());
    } else if denies(meta) {
        format!(
            "the command left {shown} a directory that denies its owner (mode {:o})",
            mode(meta)
        )
    } else if upper.entries()?.next().is_some() {
        format!(
            "the command changed entries of {shown}, a directory that denies its owner (mode {:o})",
            lower.map_or(0, mode)
        )
    } else {
        return Ok(());
    };
    Err(io::Error::new(
        ErrorKind::PermissionDenied,
        format!("{why}: without root, Stepback can neither apply nor roll back what is in such a directory"),
    ))
}

/// Without root, a directory the command made unsearchable or
/// unreadable in the upper layer would refuse the apply (root is not
/// refused): its owner, the engine's user, gets them back. The apply has
/// read the mode it carries over already (`meta`).
fn open_up(upper: &Dir, name: &str, meta: &Metadata) -> io::Result<()> {
    let mode = meta.permissions().mode();
    if mode & 0o700 == 0o700 || rustix::process::geteuid().is_root() {
        return Ok(());
    }
    upper.set_permissions(name, cap_std::fs::Permissions::from_mode(mode | 0o700))
}

/// Runs `f`, which opens upper file `name` (`meta`: as the command left
/// it) or removes its overlay attributes, with read and write access for
/// its owner, the engine's user, where it lacked them (without root they
/// would be refused); its mode is put back after. (A symlink's mode
/// grants everything: it is never changed.)
fn with_access<T>(
    upper: &Dir,
    name: &str,
    meta: &Metadata,
    f: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o600 == 0o600 || rustix::process::geteuid().is_root() {
        return f();
    }
    upper.set_permissions(name, cap_std::fs::Permissions::from_mode(mode | 0o600))?;
    let done = f();
    upper.set_permissions(name, cap_std::fs::Permissions::from_mode(mode))?;
    done
}

/// Swaps upper file `name` (`new`) with `original`, the file of the same
/// name in `lower`; the inode now in `lower`. Should another process have
/// put something else there meanwhile, the swap is undone (`None`): only
/// the recorded original may go to the backup area.
fn exchange_file(
    upper: &Dir,
    lower: &Dir,
    name: &str,
    (new, original): (&Metadata, &Metadata),
) -> io::Result<Option<FileId>> {
    let swap = || rustix::fs::renameat_with(upper, name, lower, name, rustix::fs::RenameFlags::EXCHANGE);
    swap()?;
    let kept = upper.symlink_metadata(name)?;
    if FileId::of(&kept) != FileId::of(original) {
        swap()?;
        return Ok(None);
    }
    Ok(Some(FileId::of(new)))
}

/// Moves upper entry `name` (`meta`) to the same name in `lower`, where
/// nothing may be: should another process have put something there
/// meanwhile, it stays and the move fails.
fn move_in(upper: &Dir, lower: &Dir, name: &str, meta: &Metadata) -> io::Result<FileId> {
    rustix::fs::renameat_with(upper, name, lower, name, rustix::fs::RenameFlags::NOREPLACE)?;
    Ok(FileId::of(meta))
}

/// Moves the upper file `name` to the same name in `lower`, or copies it
/// there (replacing what is there) when they are not on the same
/// filesystem, leaving `room`'s reserve free.
fn place(
    upper: &Dir,
    lower: &Dir,
    name: &str,
    meta: &Metadata,
    (same_fs, room): (bool, Option<&SpaceReserve>),
) -> io::Result<()> {
    if same_fs {
        return upper.rename(name, lower, name);
    }
    write_in_place((upper, name), lower, name, meta, (true, room))
}

/// Writes upper file `from`'s (`meta`) contents, mode, owner and times
/// into the file at `name` in `lower`, keeping its inode (its other names
/// see the change). With `create`, the file is made where missing;
/// `room`'s reserve stays free (the write fails with "no space" before it
/// starts otherwise).
fn write_in_place(
    (upper, from): (&Dir, &str),
    lower: &Dir,
    name: &str,
    meta: &Metadata,
    (create, room): (bool, Option<&SpaceReserve>),
) -> io::Result<()> {
    let from = with_access(upper, from, meta, || upper.open(from))?.into_std();
    let to = lower
        .open_with(
            name,
            OpenOptions::new()
                .write(true)
                .truncate(true)
                .create(create)
                .follow(cap_fs_ext::FollowSymlinks::No),
        )?
        .into_std();
    if let Some(room) = room {
        // What it takes on disk: its data, not its holes.
        room.check(&to, meta.blocks() * 512)?;
    }
    // Holes stay holes, as a plain run leaves them.
    crate::journal::copy_contents(&from, &to)?;
    // Its extended attributes with the contents (overlayfs's are gone from
    // the upper file by now): its other names see them, as they would.
    let xattrs = fd_xattrs(&from)?;
    replace_xattrs(&to, &xattrs, |_| false)?;
    set_attributes(lower, name, meta)?;
    keep_capabilities(&to, &xattrs)?;
    to.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(path: &Path) -> Dir {
        std::fs::create_dir_all(path).unwrap();
        Dir::open_ambient_dir(path, cap_std::ambient_authority()).unwrap()
    }

    #[test]
    fn an_exchange_swaps_only_the_recorded_original() {
        let tmp = tempfile::tempdir().unwrap();
        let (upper, lower) = (dir(&tmp.path().join("upper")), dir(&tmp.path().join("lower")));
        upper.write("f", "new").unwrap();
        lower.write("f", "original").unwrap();
        let (new, original) = (upper.metadata("f").unwrap(), lower.metadata("f").unwrap());
        // Another process put a file of its own there after the record.
        lower.write("g", "someone else's").unwrap();
        lower.rename("g", &lower, "f").unwrap();
        let refused = exchange_file(&upper, &lower, "f", (&new, &original)).unwrap();
        assert_eq!(refused, None);
        assert_eq!(lower.read_to_string("f").unwrap(), "someone else's");
        assert_eq!(upper.read_to_string("f").unwrap(), "new");

        let original = lower.metadata("f").unwrap();
        let placed = exchange_file(&upper, &lower, "f", (&new, &original)).unwrap();
        assert_eq!(placed, Some(FileId::of(&new)));
        assert_eq!(lower.read_to_string("f").unwrap(), "new");
        assert_eq!(upper.read_to_string("f").unwrap(), "someone else's");
    }

    #[test]
    fn only_what_the_command_changed_of_the_roots_attributes_is_applied() {
        let x = |name: &str, value: &str| Xattr {
            name: crate::journal::OsBytes(name.as_bytes().to_vec()),
            value: crate::journal::OsBytes(value.as_bytes().to_vec()),
        };
        // The mount root has a, b, c and s (which the upper root could not take).
        let have = [
            x("user.a", "1"),
            x("user.b", "2"),
            x("user.c", "3"),
            x("security.s", "4"),
        ];
        let before = [x("user.a", "1"), x("user.b", "2"), x("user.c", "3")];
        // The command removed a, changed b, added d.
        let after = [x("user.b", "9"), x("user.c", "3"), x("user.d", "5")];
        let want = changed(&have, &before, &after);
        assert_eq!(
            want,
            vec![
                x("security.s", "4"),
                x("user.b", "9"),
                x("user.c", "3"),
                x("user.d", "5")
            ]
        );
        assert_eq!(changed(&have, &before, &before), {
            let mut all = have.to_vec();
            all.sort_by(|a, b| a.name.0.cmp(&b.name.0));
            all
        });
    }
}
