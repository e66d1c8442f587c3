//! Hard-link groups through an indexed overlay: which file of the mount
//! an upper-layer file is a copy of, so that the apply leaves every link
//! group as a plain run of the command would.
//!
//! Without overlayfs's index, a name of a file with several names is
//! copied up on its own: the command's `ln a b` links `b` to a copy of
//! `a`, and nothing says which file of the mount the copy stands for.
//! With `index=on` (made as root; overlayfs refuses it with `userxattr`),
//! such a file is copied up once for all its names, and the work
//! directory's `index/` holds a link to the copy named by the handle of
//! the mount's file it came from. Reading that directory (one entry per
//! such file, not a walk of the layer) gives each copy's [`Group`]: the
//! mount's file keeps its inode, and every name the copy has in the upper
//! layer ends as a name of it ([`Role`]).
//!
//! A file with one name that the command linked elsewhere is not in the
//! index, and needs none: its copy replaces it, and moves in under every
//! name it has.
//!
//! A symlink with several names is indexed alike: its target cannot have
//! changed (that makes a new symlink), so what its copy brings is its time
//! (`touch -h`), and its new names.
//!
//! The mount's file is opened by its handle (`open_by_handle_at`, which
//! needs `CAP_DAC_READ_SEARCH`: the engine's as root) and linked by its
//! descriptor, so that a file whose every name the command removed or
//! renamed is still found.

use crate::journal::FileId;
use cap_std::fs::{Dir, Metadata, MetadataExt};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;

/// A file of the mount an upper file was copied up from.
pub struct Origin {
    /// The file, opened by its handle (for reading: only to compare).
    pub file: OwnedFd,
    /// Its identity on the mount.
    pub id: FileId,
}

/// A file of the mount with several names, copied up by the command.
pub struct Group {
    /// The mount's file.
    pub origin: Origin,
    /// The copy's identity in the upper layer.
    pub copy: FileId,
    /// The copy's name in the index directory, where its contents are
    /// read from whichever of its names the apply is at.
    pub entry: String,
    /// The file is a symlink.
    pub symlink: bool,
}

/// What an upper file's name becomes on the mount.
pub enum Role {
    /// As the apply treats any file: exchanged, moved in or written in
    /// place with what the mount has there.
    Plain,
    /// The mount's file there is the one the group's copy came from: it
    /// keeps its inode and takes the copy's contents, once.
    WriteInto(Rc<Group>),
    /// A new name of the group's file (a link the command made, or the
    /// file renamed): whatever the mount has there is replaced by a link.
    LinkTo(Rc<Group>),
    /// The file the mount has there is not what the upper file came from,
    /// or the upper file has other names: its name is replaced (its other
    /// names keep it as it was), never written into.
    Replace,
}

/// The groups of one overlay's upper layer.
pub struct Origins {
    /// The work directory's index, when the overlay was made with one
    /// (otherwise every role is [`Role::Plain`]).
    index: Option<Dir>,
    /// Each group by its copy's identity.
    groups: HashMap<FileId, Rc<Group>>,
    /// Each group's copy by the mount file's identity.
    copies: HashMap<FileId, FileId>,
}

impl Origins {
    /// The groups of the overlay on the mount whose root is `root`, with
    /// its work directory at `work`.
    pub fn new(root: &Dir, work: &std::path::Path) -> io::Result<Origins> {
        let mut origins = Origins {
            index: None,
            groups: HashMap::new(),
            copies: HashMap::new(),
        };
        let index = match Dir::open_ambient_dir(work.join("index"), cap_std::ambient_authority()) {
            Ok(index) => index,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(origins),
            Err(e) => return Err(e),
        };
        for entry in index.entries()? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let name = entry.file_name().into_string().ok();
            let fh = name.as_deref().and_then(unhex);
            let (Some(name), Some((kind, fid))) = (name, fh.as_deref().and_then(handle)) else {
                continue;
            };
            if !meta.is_file() && !meta.is_symlink() {
                continue;
            }
            let origin = open(root, (kind, fid), meta.is_symlink()).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("opening the file of the mount a copy in the overlay's index came from: {e}"),
                )
            })?;
            origins.copies.insert(origin.id, FileId::of(&meta));
            let group = Group {
                origin,
                copy: FileId::of(&meta),
                entry: name,
                symlink: meta.is_symlink(),
            };
            origins.groups.insert(group.copy, Rc::new(group));
        }
        origins.index = Some(index);
        Ok(origins)
    }

    /// Whether the overlay was made with its index.
    pub fn indexed(&self) -> bool {
        self.index.is_some()
    }

    /// The index directory (the groups' copies are there).
    pub fn index(&self) -> Option<&Dir> {
        self.index.as_ref()
    }

    /// Whether the apply must see upper file or symlink `meta` before it
    /// batches a rename of it: one with several names may become links.
    pub fn may_link(&self, meta: &Metadata) -> bool {
        self.indexed() && (meta.is_file() || meta.is_symlink()) && meta.nlink() > 1
    }

    /// The role of upper file `meta` where the mount has `found`.
    pub fn role(&self, meta: &Metadata, found: Option<&Metadata>) -> Role {
        if let Some(group) = self.groups.get(&FileId::of(meta)) {
            return match found.is_some_and(|f| FileId::of(f) == group.origin.id) {
                true => Role::WriteInto(group.clone()),
                false => Role::LinkTo(group.clone()),
            };
        }
        match found {
            Some(f) if self.indexed() && f.is_file() && (meta.nlink() > 1 || f.nlink() > 1) => Role::Replace,
            _ => Role::Plain,
        }
    }

    /// The group whose mount file `meta` is, if the command copied it up.
    pub fn of_file(&self, meta: &Metadata) -> Option<Rc<Group>> {
        let copy = self.copies.get(&FileId::of(meta))?;
        self.groups.get(copy).cloned()
    }

    /// Every group.
    pub fn groups(&self) -> impl Iterator<Item = &Rc<Group>> {
        self.groups.values()
    }
}

/// Opens the mount's file with handle `fid` of type `kind` (`root`: any
/// directory on its filesystem); a `symlink` only as a place (`O_PATH`: it
/// is compared by its status and linked, never read). By libc: neither
/// rustix nor the standard library has `open_by_handle_at`.
#[allow(unsafe_code)]
fn open(root: &Dir, (kind, fid): (i32, &[u8]), symlink: bool) -> io::Result<Origin> {
    // `struct file_handle`: its length, its type, then the bytes, the
    // whole aligned as its `u32` fields need.
    let mut raw = vec![0u32; 2 + fid.len().div_ceil(4)];
    raw[0] = fid.len() as u32;
    raw[1] = kind as u32;
    // SAFETY: the words after the two fields have room for `fid`, and
    // `fid` is not in `raw`.
    unsafe { std::ptr::copy_nonoverlapping(fid.as_ptr(), raw.as_mut_ptr().add(2).cast::<u8>(), fid.len()) };
    // SAFETY: `raw` is a valid `struct file_handle` of `fid.len()` bytes,
    // alive for the call; the kernel only reads it.
    let fd = unsafe {
        libc::open_by_handle_at(
            root.as_fd().as_raw_fd(),
            raw.as_mut_ptr().cast(),
            match symlink {
                true => libc::O_PATH | libc::O_CLOEXEC,
                false => libc::O_RDONLY | libc::O_CLOEXEC,
            },
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just gave, owned by nobody else.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    let stat = rustix::fs::fstat(&file)?;
    Ok(Origin {
        file,
        id: FileId {
            dev: stat.st_dev,
            ino: stat.st_ino,
        },
    })
}

/// The bytes an index entry's name spells in hexadecimal.
fn unhex(name: &str) -> Option<Vec<u8>> {
    if !name.len().is_multiple_of(2) {
        return None;
    }
    (0..name.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(name.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Overlayfs's `struct ovl_fb`: version 0, magic `0xfb`, its length,
/// flags, the handle's type, the filesystem's UUID (16 bytes), then the
/// handle. `None` for another layout, or a handle of an upper file.
fn handle(origin: &[u8]) -> Option<(i32, &[u8])> {
    const HEADER: usize = 21;
    const PATH_UPPER: u8 = 1 << 2;
    match *origin {
        [0, 0xfb, len, flags, kind, ..]
            if usize::from(len) == origin.len() && origin.len() > HEADER && flags & PATH_UPPER == 0 =>
        {
            Some((i32::from(kind), &origin[HEADER..]))
        }
        _ => None,
    }
}

/// Whether `group`'s copy (in `index`) is still its file as it was: the
/// same contents, mode, owner, time and extended attributes (but
/// overlayfs's own, under `overlay_xattrs`); a symlink's time and owner.
/// Overlayfs copies up a file with several names when the command removes
/// one of them, changing nothing else.
pub fn unchanged(group: &Group, index: &Dir, overlay_xattrs: &str) -> io::Result<bool> {
    if group.symlink {
        let (a, b) = (
            index.symlink_metadata(&group.entry)?,
            rustix::fs::fstat(&group.origin.file)?,
        );
        return Ok((a.mtime(), a.mtime_nsec() as u64, a.uid(), a.gid())
            == (b.st_mtime, b.st_mtime_nsec, b.st_uid, b.st_gid));
    }
    let copy = &index.open(&group.entry)?;
    let (a, b) = (copy.metadata()?, rustix::fs::fstat(&group.origin.file)?);
    let same = a.len() == b.st_size as u64
        && (a.mtime(), a.mtime_nsec() as u64) == (b.st_mtime, b.st_mtime_nsec)
        && (a.mode(), a.uid(), a.gid()) == (b.st_mode, b.st_uid, b.st_gid);
    let xattrs = |fd: std::os::fd::BorrowedFd| -> io::Result<Vec<_>> {
        let mut all = crate::journal::fd_xattrs(&fd)?;
        all.retain(|x| !x.name.0.starts_with(overlay_xattrs.as_bytes()));
        all.sort_by(|x, y| x.name.0.cmp(&y.name.0));
        Ok(all)
    };
    if !same || xattrs(copy.as_fd())? != xattrs(group.origin.file.as_fd())? {
        return Ok(false);
    }
    let (mut x, mut y) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let mut offset = 0;
    loop {
        let n = rustix::io::pread(copy, &mut x, offset)?;
        let m = rustix::io::pread(&group.origin.file, &mut y[..n.max(1)], offset)?;
        if n != m || x[..n] != y[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
        offset += n as u64;
    }
}

/// Links `origin`'s file as `name` in `dir`, by its descriptor.
pub fn link(origin: &Origin, dir: &Dir, name: &str) -> io::Result<()> {
    rustix::fs::linkat(&origin.file, "", dir, name, rustix::fs::AtFlags::EMPTY_PATH)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_read_as_overlayfs_writes_it() {
        // As read off an upper file on ext4: type 1, an 8-byte handle.
        let origin = [
            0x00, 0xfb, 0x1d, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x1d, 0xc0, 0x98,
            0x00, 0xcd, 0x6f, 0xae, 0x54,
        ];
        let (kind, fid) = handle(&origin).unwrap();
        assert_eq!((kind, fid), (1, &origin[21..]));
        // A wrong length, magic or an upper handle is not one.
        assert!(handle(&origin[..28]).is_none());
        let mut other = origin;
        other[1] = 0xfa;
        assert!(handle(&other).is_none());
        other = origin;
        other[3] = 1 << 2;
        assert!(handle(&other).is_none());
    }

    #[test]
    fn an_index_entry_is_named_by_the_handle_in_hexadecimal() {
        let name = "00fb1d0001000000000000000000000000000000001dc09800cd6fae54";
        let bytes = unhex(name).unwrap();
        assert_eq!(
            handle(&bytes).map(|(kind, fid)| (kind, fid.to_vec())),
            Some((1, vec![0x1d, 0xc0, 0x98, 0x00, 0xcd, 0x6f, 0xae, 0x54]))
        );
        assert!(unhex("0fb").is_none());
        assert!(unhex("zz").is_none());
    }
}
