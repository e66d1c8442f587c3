//! Where a command runs: private mount, PID and IPC namespaces (and a
//! network namespace of its own unless the step grants the network), in
//! which each read-write mount of the step is an overlay whose upper layer
//! catches every change, the rest of the filesystem is read-only, and
//! `/tmp` is an empty tmpfs.
//!
//! The overlays and the tmpfs are made in the engine, before anything
//! forks, with the kernel's mount API (`fsopen`, `fsconfig`, `fsmount`):
//! what cannot be mounted fails there with an error worth reading. The
//! forked child then only enters new namespaces and attaches them.
//!
//! Process tree, seen from the engine:
//!
//! ```text
//! engine ── C (enters the namespaces, attaches the mounts, waits)
//!            └── 1 (PID 1 of the new PID namespace: mounts /proc, waits)
//!                 └── the program (its own session, CAP_SYS_ADMIN dropped)
//! ```
//!
//! When the program exits, PID 1 exits with its status, and the kernel
//! kills whatever else is left in the namespace before PID 1 is gone; C
//! then exits with the same status. Killing C (a timeout, a cancelled or
//! failed step, the engine's own death) kills PID 1 (its parent-death
//! signal), which takes the rest with it. The program cannot undo the
//! jail: without `CAP_SYS_ADMIN` it can neither unmount the overlays nor
//! remount anything writable.
//!
//! Between `fork` and `exec` only async-signal-safe system calls run:
//! every path is a `CString` made before, no allocation happens.

#![allow(unsafe_code)]

use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags,
};
use rustix::thread::CapabilitySet;
use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// One read-write mount as the command sees it: an overlay of the real
/// directory (`lower`) with its changes in `upper`.
pub struct Overlay {
    /// Where it is attached: the mount's host path.
    pub target: PathBuf,
    /// The real directory, by path (a pinned directory's `/proc/self/fd`
    /// link, so that it is the very directory the run opened).
    pub lower: PathBuf,
    /// Where the command's changes go; on any local filesystem with
    /// trusted extended attributes.
    pub upper: PathBuf,
    /// The overlay's scratch directory, on `upper`'s filesystem.
    pub work: PathBuf,
}

/// An overlay superblock, made but not attached anywhere yet.
pub struct DetachedOverlay {
    fd: OwnedFd,
    target: CString,
}

/// Makes the overlay: the options keep the upper layer made of plain
/// entries (no redirects, no metadata-only copies, no index), which the
/// apply reads as they are.
pub fn overlay(o: &Overlay) -> io::Result<DetachedOverlay> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("this kernel has no overlayfs ({e})"),
        )
    })?;
    let set = |key: &str, value: &Path| {
        rustix::mount::fsconfig_set_string(&fs, key, value.as_os_str()).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("overlay {key}={}: {e}", value.display()),
            )
        })
    };
    // `lowerdir+` (Linux 6.8) takes one path as it is: no escaping of
    // `:` or `,`.
    set("lowerdir+", &o.lower)?;
    set("upperdir", &o.upper)?;
    set("workdir", &o.work)?;
    for (key, value) in [
        ("redirect_dir", "off"),
        ("metacopy", "off"),
        ("index", "off"),
        ("xino", "off"),
    ] {
        rustix::mount::fsconfig_set_string(&fs, key, value)
            .map_err(|e| io::Error::other(format!("overlay option {key}={value}: {e}")))?;
    }
    // No sync of the upper layer (a copy-up is a quarter cheaper): it is
    // thrown away after a crash anyway, and once applied its files are
    // as durable as a plain command's.
    rustix::mount::fsconfig_set_flag(&fs, "volatile")
        .map_err(|e| io::Error::other(format!("overlay option volatile: {e}")))?;
    rustix::mount::fsconfig_create(&fs).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!(
                "overlay of {} with its changes in {}: {e} (the kernel log says more)",
                o.target.display(),
                o.upper.display()
            ),
        )
    })?;
    let fd = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
    Ok(DetachedOverlay {
        fd,
        target: cstring(&o.target)?,
    })
}

/// Everything the child needs, made before it forks.
pub struct Jail {
    overlays: Vec<DetachedOverlay>,
    /// The private `/tmp`, unless a mount is `/tmp` or holds it.
    tmp: Option<OwnedFd>,
    /// Mounts cloned before everything turns read-only and attached again
    /// afterwards: those beneath `/tmp` (which the private one hides), and
    /// read-write ones that no overlay captures. Each with whether it
    /// stays writable.
    kept: Vec<(CString, bool)>,
    /// Directories to make in the private `/tmp` for the mounts beneath
    /// it, parents first; the first level of them is then made read-only,
    /// so that only the mounts themselves can be written there.
    tmp_dirs: Vec<CString>,
    tmp_tops: Vec<CString>,
    cwd: CString,
    network: bool,
}

/// A mount the command sees, by host path.
pub struct Visible {
    /// Where it is.
    pub path: PathBuf,
    /// Whether the command writes it directly (read-write, not captured).
    pub writable: bool,
}

impl Jail {
    /// Prepares a jail in which the step's mounts (`visible`) appear, with
    /// `overlays` attached over the captured ones, and the command starts
    /// in `cwd`.
    pub fn new(
        overlays: Vec<DetachedOverlay>,
        visible: &[Visible],
        cwd: &Path,
        network: bool,
    ) -> io::Result<Jail> {
        let tmp_root = Path::new("/tmp");
        let private_tmp = !visible.iter().any(|m| tmp_root.starts_with(&m.path));
        let under_tmp = |p: &Path| private_tmp && p.starts_with(tmp_root);
        let kept = visible
            .iter()
            .filter(|m| m.writable || under_tmp(&m.path))
            .map(|m| Ok((cstring(&m.path)?, m.writable)))
            .collect::<io::Result<_>>()?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for m in visible.iter().filter(|m| under_tmp(&m.path)) {
            dirs.extend(
                m.path
                    .ancestors()
                    .filter(|a| a.starts_with(tmp_root) && *a != tmp_root)
                    .map(Path::to_path_buf),
            );
        }
        dirs.sort_by_key(|d| (d.components().count(), d.clone()));
        dirs.dedup();
        let tops: Vec<&PathBuf> = dirs.iter().filter(|d| d.parent() == Some(tmp_root)).collect();
        let tmp = match private_tmp {
            true => {
                let fs = rustix::mount::fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)?;
                rustix::mount::fsconfig_set_string(&fs, "size", "25%")?;
                rustix::mount::fsconfig_set_string(&fs, "mode", "1777")?;
                rustix::mount::fsconfig_create(&fs)?;
                Some(rustix::mount::fsmount(
                    &fs,
                    FsMountFlags::FSMOUNT_CLOEXEC,
                    MountAttrFlags::empty(),
                )?)
            }
            false => None,
        };
        Ok(Jail {
            overlays,
            tmp,
            kept,
            tmp_dirs: dirs.iter().map(|d| cstring(d)).collect::<io::Result<_>>()?,
            tmp_tops: tops.iter().map(|d| cstring(d)).collect::<io::Result<_>>()?,
            cwd: cstring(cwd)?,
            network,
        })
    }

    /// Makes `command` start in the jail. The jail's descriptors stay open
    /// in the engine until the command has started; drop it then.
    pub fn enter(&self, command: &mut std::process::Command) {
        let child = Child {
            overlays: self
                .overlays
                .iter()
                .map(|o| (o.fd.as_raw_fd(), o.target.clone()))
                .collect(),
            tmp: self.tmp.as_ref().map(AsRawFd::as_raw_fd),
            clones: Vec::with_capacity(self.kept.len()),
            kept: self.kept.clone(),
            tmp_dirs: self.tmp_dirs.clone(),
            tmp_tops: self.tmp_tops.clone(),
            cwd: self.cwd.clone(),
            network: self.network,
        };
        let mut child = child;
        // SAFETY: the closure runs in the forked child before `exec`, and
        // makes only system calls (no allocation: `clones` has its
        // capacity already, every path is a CString made above, errors are
        // plain `io::Error`s from error numbers).
        unsafe {
            command.pre_exec(move || {
                child.clones.clear();
                child.enter()
            });
        }
    }
}

/// What the forked child works with: the jail's descriptors by number.
struct Child {
    overlays: Vec<(i32, CString)>,
    tmp: Option<i32>,
    kept: Vec<(CString, bool)>,
    clones: Vec<i32>,
    tmp_dirs: Vec<CString>,
    tmp_tops: Vec<CString>,
    cwd: CString,
    network: bool,
}

impl Child {
    /// Runs in C, the forked child: see the module's documentation. Returns
    /// only in the program's process, which then `exec`s.
    fn enter(&mut self) -> io::Result<()> {
        use rustix::thread::UnshareFlags;
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
        let mut flags = UnshareFlags::NEWNS | UnshareFlags::NEWPID | UnshareFlags::NEWIPC;
        if !self.network {
            flags |= UnshareFlags::NEWNET;
        }
        // SAFETY: the process is single-threaded (a child of fork).
        unsafe { rustix::thread::unshare_unsafe(flags)? };
        rustix::mount::mount_change(c"/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)?;
        for (path, writable) in &self.kept {
            let fd = clone_tree(path)?;
            if !writable {
                read_only(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH)?;
            }
            self.clones.push(into_raw(fd));
        }
        read_only(libc::AT_FDCWD, c"/", 0)?;
        if let Some(tmp) = self.tmp {
            attach(tmp, c"/tmp")?;
            for dir in &self.tmp_dirs {
                match rustix::fs::mkdir(dir.as_c_str(), rustix::fs::Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            for top in &self.tmp_tops {
                let fd = clone_tree(top)?;
                read_only(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH)?;
                attach(fd.as_raw_fd(), top)?;
            }
        }
        for (fd, (path, _)) in self.clones.iter().zip(&self.kept) {
            attach(*fd, path)?;
        }
        for (fd, target) in &self.overlays {
            attach(*fd, target)?;
        }
        let cwd = &self.cwd;
        rustix::process::chdir(cwd.as_c_str())?;

        let alive = pipe()?;
        match fork()? {
            0 => {}
            init => {
                // C: wait for PID 1, exit as it did.
                close_from(3, Some(alive.1));
                exit_as(init);
            }
        }
        // PID 1.
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
        close_fd(alive.1);
        if parent_gone(alive.0) {
            exit(1);
        }
        close_fd(alive.0);
        rustix::mount::mount(
            c"proc",
            c"/proc",
            c"proc",
            rustix::mount::MountFlags::NOSUID
                | rustix::mount::MountFlags::NODEV
                | rustix::mount::MountFlags::NOEXEC,
            None,
        )?;
        match fork()? {
            0 => {}
            program => {
                close_from(0, None);
                exit_as(program);
            }
        }
        // The program.
        rustix::process::setsid()?;
        for cap in DROPPED_CAPS {
            rustix::thread::remove_capability_from_bounding_set(*cap)?;
        }
        Ok(())
    }
}

/// A detached copy of the mount tree at `path`.
fn clone_tree(path: &CStr) -> io::Result<OwnedFd> {
    Ok(rustix::mount::open_tree(
        rustix::fs::CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_RECURSIVE,
    )?)
}

/// Capabilities the program loses: with them it could undo the jail
/// (mount admin), or reach around it (modules, raw devices, tracing,
/// rebooting).
const DROPPED_CAPS: &[CapabilitySet] = &[
    CapabilitySet::SYS_ADMIN,
    CapabilitySet::SYS_MODULE,
    CapabilitySet::SYS_RAWIO,
    CapabilitySet::SYS_PTRACE,
    CapabilitySet::SYS_BOOT,
];

/// Makes the mount tree at `path` (from `dirfd`) read-only, every mount
/// of it, in one call (`mount_setattr`, Linux 5.12).
fn read_only(dirfd: i32, path: &CStr, flags: i32) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: MountAttrFlags::MOUNT_ATTR_RDONLY.bits() as u64,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a system call with a valid path and attribute struct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            (flags | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches the detached mount `fd` at `target`.
fn attach(fd: i32, target: &CStr) -> io::Result<()> {
    // SAFETY: `fd` is open (the jail owns it in the engine; the child has
    // its copy until exec).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::mount::move_mount(
        fd,
        c"",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

fn into_raw(fd: OwnedFd) -> i32 {
    rustix::fd::IntoRawFd::into_raw_fd(fd)
}

fn pipe() -> io::Result<(i32, i32)> {
    let (r, w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK)?;
    Ok((into_raw(r), into_raw(w)))
}

/// Whether the process that holds the write end of the pipe `read` (C)
/// is gone: it died before PID 1 set its parent-death signal, which then
/// never comes.
fn parent_gone(read: i32) -> bool {
    let mut byte = 0u8;
    // SAFETY: a read into a valid one-byte buffer.
    let n = unsafe { libc::read(read, (&raw mut byte).cast(), 1) };
    n == 0
}

fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the caller is single-threaded (a child of fork) and does only
    // system calls afterwards.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// Closes every descriptor from `first` up, but `keep`.
fn close_from(first: u32, keep: Option<i32>) {
    // SAFETY: closing descriptors this process no longer uses.
    unsafe {
        match keep {
            Some(k) if k as u32 >= first => {
                libc::close_range(first, k as u32 - 1, 0);
                libc::close_range(k as u32 + 1, u32::MAX, 0);
            }
            _ => {
                libc::close_range(first, u32::MAX, 0);
            }
        }
    }
}

fn close_fd(fd: i32) {
    // SAFETY: closing a descriptor this process owns.
    unsafe { libc::close(fd) };
}

/// Waits for child `pid` and exits with its status: its code, or 128 + the
/// signal that killed it.
fn exit_as(pid: libc::pid_t) -> ! {
    let mut status = 0;
    loop {
        // SAFETY: waiting for any child; a valid status pointer. Other
        // children (PID 1 inherits orphans) are reaped on the way.
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            exit(127);
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    exit(code)
}

fn exit(code: i32) -> ! {
    // SAFETY: ends the process without running the engine's exit handlers
    // (which belong to the engine, not to this forked copy).
    unsafe { libc::_exit(code) }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} holds a NUL byte", path.display()),
        )
    })
}
