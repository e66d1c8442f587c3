//! Where a command runs: private mount, PID, IPC and UTS namespaces (and a
//! network namespace of its own unless the step grants the network), in
//! which each read-write mount of the step is an overlay whose upper layer
//! catches every change, the rest of the filesystem is read-only, and
//! `/tmp` and `/run` are empty tmpfs of the command's own (the host's
//! sockets there out of reach but those the step grants).
//!
//! As root, the overlays and the tmpfs are made in the engine, before
//! anything forks, with the kernel's mount API (`fsopen`, `fsconfig`,
//! `fsmount`): what cannot be mounted fails there with an error worth
//! reading. The forked child then only enters new namespaces and attaches
//! them. Without root ([`Privilege::UserNamespace`]), the child first
//! enters a user namespace of its own, in which the engine's user is
//! itself and holds the capabilities to mount there, and makes them there
//! (unprivileged overlays, Linux 5.11, keep their bookkeeping in `user.`
//! extended attributes); the validation's probe has tried the same.
//!
//! Process tree, seen from the engine:
//!
//! ```text
//! engine ── C (enters the namespaces, attaches the mounts, waits)
//!            └── 1 (PID 1 of the new PID namespace: mounts /proc, waits)
//!                 └── the program (its own session, `KEPT_CAPS` at most, no new privileges)
//! ```
//!
//! When the program exits, PID 1 exits with its status, and the kernel
//! kills whatever else is left in the namespace before PID 1 is gone; C
//! then exits with the same status. Killing C (a timeout, a cancelled or
//! failed step, the engine's own death) kills PID 1 (its parent-death
//! signal), which takes the rest with it. The program cannot undo the
//! jail: with no capability but those of [`KEPT_CAPS`] (whatever the
//! engine's inheritable and ambient sets hold), it can neither unmount the
//! overlays nor remount anything writable, and set-id programs and file
//! capabilities give it nothing more (`no_new_privs`).
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
    /// The real directory, by its host path, where the overlay is
    /// attached over it.
    pub target: PathBuf,
    /// The directory as the run opened it, if it did: the overlay is made
    /// over that very directory (as root, through its `/proc/self/fd`
    /// link; in a user namespace, which cannot reach the engine's mounts
    /// that way, `target` is checked to still be it).
    pub pinned: Option<i32>,
    /// Where the command's changes go; on any local filesystem with
    /// trusted (as root) or user (without root) extended attributes.
    pub upper: PathBuf,
    /// The overlay's scratch directory, on `upper`'s filesystem.
    pub work: PathBuf,
}

/// Who makes the mounts a command runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// The engine, as root, before forking.
    Root,
    /// The forked child, in a user namespace of its own.
    UserNamespace,
}

impl Privilege {
    /// Root's way when this process may mount (`CAP_SYS_ADMIN`), the user
    /// namespace's otherwise: without root, or as root without it (in a
    /// container, say).
    pub fn of_this_process() -> Privilege {
        let may_mount = rustix::thread::capabilities(None)
            .is_ok_and(|caps| caps.effective.contains(CapabilitySet::SYS_ADMIN));
        match may_mount {
            true => Privilege::Root,
            false => Privilege::UserNamespace,
        }
    }

    /// Prefix of the extended attributes overlayfs keeps its bookkeeping
    /// in (whiteouts aside): `trusted.` needs root, `user.` does not.
    pub fn overlay_xattrs(self) -> &'static str {
        match self {
            Privilege::Root => "trusted.overlay.",
            Privilege::UserNamespace => "user.overlay.",
        }
    }
}

/// An overlay's paths, ready for a forked child (no allocation there).
#[derive(Clone)]
struct OverlaySpec {
    lower: CString,
    /// In a user namespace: the pinned directory `lower` must be.
    pinned: Option<i32>,
    upper: CString,
    work: CString,
    target: CString,
}

impl OverlaySpec {
    fn of(o: &Overlay, privilege: Privilege) -> io::Result<OverlaySpec> {
        let (lower, pinned) = match (privilege, o.pinned) {
            (Privilege::Root, Some(fd)) => (PathBuf::from(format!("/proc/self/fd/{fd}")), None),
            (_, pinned) => (o.target.clone(), pinned),
        };
        Ok(OverlaySpec {
            lower: cstring(&lower)?,
            pinned,
            upper: cstring(&o.upper)?,
            work: cstring(&o.work)?,
            target: cstring(&o.target)?,
        })
    }

    /// Makes the overlay superblock and a detached mount of it; on failure,
    /// which option the kernel refused. Only system calls: safe in a
    /// forked child.
    fn make(&self, privilege: Privilege) -> Result<OwnedFd, (&'static CStr, rustix::io::Errno)> {
        use rustix::mount::{fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen};
        if let Some(fd) = self.pinned {
            // SAFETY: the run keeps the pinned directory open while its
            // steps run.
            let pinned = rustix::fs::fstat(unsafe { BorrowedFd::borrow_raw(fd) });
            let now = rustix::fs::stat(self.lower.as_c_str());
            match (pinned, now) {
                (Ok(p), Ok(n)) if (p.st_dev, p.st_ino) == (n.st_dev, n.st_ino) => {}
                (Err(e), _) | (_, Err(e)) => return Err((c"lowerdir+", e)),
                _ => return Err((c"lowerdir+", rustix::io::Errno::STALE)),
            }
        }
        let fs = fsopen(c"overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| (c"fsopen", e))?;
        // The index copies a file with several names up once for all of
        // them, and says what the copy was copied from (see `links`);
        // overlayfs refuses it with `userxattr`.
        let index = match privilege {
            Privilege::Root => c"on",
            Privilege::UserNamespace => c"off",
        };
        // `lowerdir+` (Linux 6.8) takes one path as it is: no escaping of
        // `:` or `,`.
        for (key, value) in [
            (c"lowerdir+", self.lower.as_c_str()),
            (c"upperdir", &self.upper),
            (c"workdir", &self.work),
            // Plain entries in the upper layer: no redirects, no
            // metadata-only copies.
            (c"redirect_dir", c"nofollow"),
            (c"metacopy", c"off"),
            (c"index", index),
            (c"xino", c"off"),
        ] {
            fsconfig_set_string(&fs, key, value).map_err(|e| (key, e))?;
        }
        if privilege == Privilege::UserNamespace {
            fsconfig_set_flag(&fs, c"userxattr").map_err(|e| (c"userxattr", e))?;
        }
        // No sync of the upper layer (a copy-up is a quarter cheaper): it
        // is thrown away after a crash anyway, and once applied its files
        // are as durable as a plain command's.
        fsconfig_set_flag(&fs, c"volatile").map_err(|e| (c"volatile", e))?;
        fsconfig_create(&fs).map_err(|e| (c"create", e))?;
        fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, WRITABLE).map_err(|e| (c"fsmount", e))
    }
}

/// An overlay superblock, made but not attached anywhere yet.
pub struct DetachedOverlay {
    fd: OwnedFd,
    target: CString,
}

/// Makes the overlay as root, in the engine.
pub fn overlay(o: &Overlay) -> io::Result<DetachedOverlay> {
    let spec = OverlaySpec::of(o, Privilege::Root)?;
    let fd = spec
        .make(Privilege::Root)
        .map_err(|(step, e)| overlay_error(o, step, e))?;
    Ok(DetachedOverlay {
        fd,
        target: spec.target,
    })
}

/// What the kernel's refusal of `step` of making overlay `o` means.
fn overlay_error(o: &Overlay, step: &CStr, e: rustix::io::Errno) -> io::Error {
    let kind = io::Error::from(e).kind();
    let why = match step.to_str().unwrap_or_default() {
        "fsopen" => format!("this kernel has no overlayfs ({e})"),
        "lowerdir+" => format!("overlay lowerdir+={}: {e}", o.target.display()),
        "upperdir" => format!("overlay upperdir={}: {e}", o.upper.display()),
        "workdir" => format!("overlay workdir={}: {e}", o.work.display()),
        "create" => format!(
            "overlay of {} with its changes in {}: {e} (the kernel log says more)",
            o.target.display(),
            o.upper.display()
        ),
        option => format!("overlay option {option}: {e}"),
    };
    io::Error::new(kind, why)
}

/// Makes a private `/tmp` or `/run` of at most `size`. Only system calls:
/// safe in a forked child.
fn tmpfs(size: &CStr, mode: &CStr) -> rustix::io::Result<OwnedFd> {
    let fs = rustix::mount::fsopen(c"tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)?;
    rustix::mount::fsconfig_set_string(&fs, c"size", size)?;
    rustix::mount::fsconfig_set_string(&fs, c"mode", mode)?;
    rustix::mount::fsconfig_create(&fs)?;
    rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, WRITABLE)
}

/// A host directory a command gets an empty tmpfs of its own over: the
/// host's entries there (sockets of local services, other programs'
/// files) out of reach. Each with the tmpfs's size and mode.
const PRIVATE: [(&CStr, &CStr, &CStr); 3] = [
    (c"/tmp", c"25%", c"1777"),
    (c"/run", c"64m", c"0755"),
    (c"/dev/shm", c"64m", c"1777"),
];

/// A private directory of [`PRIVATE`], and what is put back in it: the
/// step's mounts beneath it and granted sockets.
#[derive(Clone)]
struct Private {
    path: &'static CStr,
    size: &'static CStr,
    mode: &'static CStr,
    /// Directories to make in it for those, parents first; the first
    /// level of them is then made read-only, so that only what was put
    /// back can be written there.
    dirs: Vec<CString>,
    tops: Vec<CString>,
    /// Empty files to make, on which granted sockets are bound.
    files: Vec<CString>,
}

impl Private {
    /// The private directories a command gets: those of [`PRIVATE`] that
    /// no mount of the step is or holds, each with the mounts (`mounts`)
    /// and sockets beneath it.
    fn all(mounts: &[&Path], sockets: &[PathBuf]) -> io::Result<Vec<Private>> {
        let mut all = Vec::new();
        for (path, size, mode) in PRIVATE {
            let root = Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
            if mounts.iter().any(|m| root.starts_with(m)) {
                continue;
            }
            let beneath = |p: &&Path| p.starts_with(root);
            let sockets: Vec<&Path> = sockets.iter().map(PathBuf::as_path).filter(beneath).collect();
            let mut dirs: Vec<&Path> = Vec::new();
            for p in mounts.iter().copied().filter(beneath) {
                dirs.extend(p.ancestors().filter(|a| a.starts_with(root) && *a != root));
            }
            for p in &sockets {
                dirs.extend(
                    p.ancestors()
                        .skip(1)
                        .filter(|a| a.starts_with(root) && *a != root),
                );
            }
            dirs.sort_by_key(|d| (d.components().count(), d.to_path_buf()));
            dirs.dedup();
            let tops = dirs.iter().filter(|d| d.parent() == Some(root));
            all.push(Private {
                path,
                size,
                mode,
                tops: tops.map(|d| cstring(d)).collect::<io::Result<_>>()?,
                dirs: dirs.iter().map(|d| cstring(d)).collect::<io::Result<_>>()?,
                files: sockets.iter().map(|d| cstring(d)).collect::<io::Result<_>>()?,
            });
        }
        Ok(all)
    }

    /// Whether `path` is beneath it (so hidden by it).
    fn holds(&self, path: &Path) -> bool {
        path.starts_with(std::ffi::OsStr::from_bytes(self.path.to_bytes()))
    }

    /// Attaches tmpfs `fd` over the host's directory and makes what goes
    /// back in it. Only system calls.
    fn attach(&self, fd: i32) -> io::Result<()> {
        attach(fd, self.path)?;
        for dir in &self.dirs {
            match rustix::fs::mkdir(dir.as_c_str(), rustix::fs::Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for file in &self.files {
            let flags = rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC;
            drop(rustix::fs::open(
                file.as_c_str(),
                flags,
                rustix::fs::Mode::from_raw_mode(0o600),
            )?);
        }
        for top in &self.tops {
            let fd = clone_with(top, WRITABLE.union(MountAttrFlags::MOUNT_ATTR_RDONLY))?;
            attach(fd.as_raw_fd(), top)?;
        }
        Ok(())
    }
}

/// The attributes of every mount the command can write (its overlays, its
/// `/tmp`): device nodes there open nothing (a node the command made, or
/// one of the mount's own), and set-id bits give nothing.
const WRITABLE: MountAttrFlags = MountAttrFlags::MOUNT_ATTR_NODEV.union(MountAttrFlags::MOUNT_ATTR_NOSUID);

/// What a child writes to enter a user namespace of its own in which the
/// engine's user and group are themselves: `setgroups` denied (required
/// for an unprivileged group map), then the two maps.
fn identity_maps() -> [(&'static CStr, Vec<u8>); 3] {
    let (uid, gid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    [
        (c"/proc/self/setgroups", b"deny".to_vec()),
        (c"/proc/self/uid_map", format!("{uid} {uid} 1\n").into_bytes()),
        (c"/proc/self/gid_map", format!("{gid} {gid} 1\n").into_bytes()),
    ]
}

/// Enters a new user namespace, owner of the new namespaces of `flags`,
/// and maps the engine's user and group there to themselves (in a forked
/// child: only system calls).
fn enter_user_namespace(
    maps: &[(&'static CStr, Vec<u8>); 3],
    flags: rustix::thread::UnshareFlags,
) -> io::Result<()> {
    // SAFETY: the process is single-threaded (a child of fork).
    unsafe { rustix::thread::unshare_unsafe(flags | rustix::thread::UnshareFlags::NEWUSER)? };
    for (path, content) in maps {
        let fd = rustix::fs::open(
            *path,
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        rustix::io::write(&fd, content)?;
    }
    Ok(())
}

/// Whether overlays of `overlays` can be made without root: tried in a
/// throwaway child, in a user namespace of its own, nothing attached.
pub fn probe_user_namespace(overlays: &[Overlay]) -> io::Result<()> {
    let specs = overlays
        .iter()
        .map(|o| OverlaySpec::of(o, Privilege::UserNamespace))
        .collect::<io::Result<Vec<_>>>()?;
    let maps = identity_maps();
    // Never executed: the child exits from the closure.
    let mut command = std::process::Command::new("/");
    // SAFETY: the closure runs in the forked child before `exec`, and
    // makes only system calls (errors are plain error numbers).
    unsafe {
        command.pre_exec(move || {
            enter_user_namespace(&maps, rustix::thread::UnshareFlags::NEWNS)?;
            for spec in &specs {
                spec.make(Privilege::UserNamespace)
                    .map_err(|(_, e)| io::Error::from(e))?;
            }
            exit(0)
        });
    }
    let status = command.status()?;
    match status.success() {
        true => Ok(()),
        false => Err(io::Error::other(format!("the probe exited with {status}"))),
    }
}

/// Everything the child needs, made before it forks.
pub struct Jail {
    privilege: Privilege,
    /// As root: the overlays, made.
    overlays: Vec<DetachedOverlay>,
    /// Without root: the overlays the child makes.
    pending: Vec<OverlaySpec>,
    /// The private directories, and as root their tmpfs, made.
    privates: Vec<Private>,
    private_fds: Vec<OwnedFd>,
    /// Mounts cloned before everything turns read-only and attached again
    /// afterwards: those beneath a private directory (which hides them),
    /// and read-write ones that no overlay captures. Each with whether it
    /// stays writable.
    kept: Vec<(CString, bool)>,
    /// Granted sockets beneath a private directory: bound back in it.
    sockets: Vec<CString>,
    /// Whether the command may make Unix sockets: the step grants some.
    unix_sockets: bool,
    /// Directories masked by an empty read-only tmpfs, outermost only.
    hidden: Vec<CString>,
    cwd: CString,
    network: bool,
    seccomp: Option<&'static super::seccomp::Filters>,
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
        overlays: &[Overlay],
        (visible, hidden, sockets): (&[Visible], &[PathBuf], &[PathBuf]),
        cwd: &Path,
        network: bool,
    ) -> io::Result<Jail> {
        let privilege = Privilege::of_this_process();
        let paths: Vec<&Path> = visible.iter().map(|m| m.path.as_path()).collect();
        let privates = Private::all(&paths, sockets)?;
        let hidden_by_private = |p: &Path| privates.iter().any(|private| private.holds(p));
        let kept = visible
            .iter()
            .filter(|m| m.writable || hidden_by_private(&m.path))
            .map(|m| Ok((cstring(&m.path)?, m.writable)))
            .collect::<io::Result<_>>()?;
        let hidden = hidden
            .iter()
            // Beneath a private directory or `/dev` (the command's own) it
            // is out of sight already, and its path is not there.
            .filter(|h| !hidden_by_private(h) && !h.starts_with("/dev"))
            .filter(|h| h.is_dir() && !hidden.iter().any(|o| o != *h && h.starts_with(o)))
            .map(|h| cstring(h))
            .collect::<io::Result<_>>()?;
        let root = privilege == Privilege::Root;
        Ok(Jail {
            privilege,
            overlays: match root {
                true => overlays.iter().map(overlay).collect::<io::Result<_>>()?,
                false => Vec::new(),
            },
            pending: match root {
                true => Vec::new(),
                false => overlays
                    .iter()
                    .map(|o| OverlaySpec::of(o, privilege))
                    .collect::<io::Result<_>>()?,
            },
            private_fds: match root {
                true => privates
                    .iter()
                    .map(|p| tmpfs(p.size, p.mode))
                    .collect::<rustix::io::Result<_>>()?,
                false => Vec::new(),
            },
            sockets: sockets
                .iter()
                .filter(|s| hidden_by_private(s))
                .map(|s| cstring(s))
                .collect::<io::Result<_>>()?,
            unix_sockets: !sockets.is_empty(),
            privates,
            kept,
            hidden,
            cwd: cstring(cwd)?,
            network,
            seccomp: super::seccomp::filters()?,
        })
    }

    /// Who makes the mounts: what the upper layers' bookkeeping is then.
    pub fn privilege(&self) -> Privilege {
        self.privilege
    }

    /// Makes `command` start in the jail, in the cgroups `joining` puts it
    /// in before it starts anything. The jail's descriptors (and those)
    /// stay open in the engine until the command has started; drop it then.
    pub fn enter(&self, command: &mut std::process::Command, joining: Option<&super::cgroup::Joining>) {
        let targets = match self.privilege {
            Privilege::Root => self.overlays.iter().map(|o| o.target.clone()).collect(),
            Privilege::UserNamespace => self.pending.iter().map(|o| o.target.clone()).collect(),
        };
        let mut child = Child {
            engine: rustix::process::getpid(),
            joining: joining.map(super::cgroup::Joining::child_ends),
            user_namespace: (self.privilege == Privilege::UserNamespace).then(identity_maps),
            pending: self.pending.clone(),
            overlays: self.overlays.iter().map(|o| o.fd.as_raw_fd()).collect(),
            targets,
            privates: self.privates.clone(),
            private_fds: self.private_fds.iter().map(AsRawFd::as_raw_fd).collect(),
            clones: Vec::with_capacity(self.kept.len() + self.sockets.len()),
            devices: Vec::with_capacity(DEVICES.len()),
            kept: self.kept.clone(),
            sockets: self.sockets.clone(),
            unix_sockets: self.unix_sockets,
            hidden: self.hidden.clone(),
            cwd: self.cwd.clone(),
            network: self.network,
            seccomp: self.seccomp,
        };
        child.overlays.reserve(self.pending.len());
        child.private_fds.reserve(self.privates.len());
        // SAFETY: the closure runs in the forked child before `exec`, and
        // makes only system calls (no allocation: `clones` and `overlays`
        // have their capacity already, every path is a CString made above,
        // errors are plain `io::Error`s from error numbers).
        unsafe {
            command.pre_exec(move || {
                child.clones.clear();
                child.devices.clear();
                child.enter()
            });
        }
    }
}

/// What the forked child works with: the jail's descriptors by number.
struct Child {
    /// The engine, whose death must take the child with it.
    engine: rustix::process::Pid,
    /// With limits: how it joins its cgroups (see [`super::cgroup::Joining`]).
    joining: Option<super::cgroup::JoinEnds>,
    /// Without root: the maps that make the user namespace.
    user_namespace: Option<[(&'static CStr, Vec<u8>); 3]>,
    pending: Vec<OverlaySpec>,
    /// The overlays' mounts (made in the engine, or here from `pending`),
    /// and where each goes.
    overlays: Vec<i32>,
    targets: Vec<CString>,
    privates: Vec<Private>,
    /// Their tmpfs (made in the engine, or here).
    private_fds: Vec<i32>,
    kept: Vec<(CString, bool)>,
    sockets: Vec<CString>,
    unix_sockets: bool,
    /// The clones of `kept`, then of `sockets`.
    clones: Vec<i32>,
    /// The host's device nodes of `DEVICES`, cloned (capacity reserved).
    devices: Vec<i32>,
    hidden: Vec<CString>,
    cwd: CString,
    network: bool,
    seccomp: Option<&'static super::seccomp::Filters>,
}

impl Child {
    /// Runs in C, the forked child: see the module's documentation. Returns
    /// only in the program's process, which then `exec`s. In the order the
    /// jail is built: namespaces, the world of mounts, the cgroups joined,
    /// PID 1 and its `/proc`, the program's own limits.
    fn enter(&mut self) -> io::Result<()> {
        self.join_cgroups()?;
        self.unshare()?;
        // After the user namespace, whose new credentials clear it; then
        // make sure the engine did not die before.
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
        if rustix::process::getppid() != Some(self.engine) {
            exit(1);
        }
        self.build_world()?;
        if let Some((_, joined)) = self.joining.as_ref().and_then(|j| j.mover) {
            let mut answer = [0u8; 1];
            // SAFETY: the descriptor is open for the whole pre-exec.
            let joined = unsafe { BorrowedFd::borrow_raw(joined) };
            // The engine says why (an error number is all a child can
            // hand back, and this one allocates nothing).
            if rustix::io::read(joined, &mut answer)? != 1 || answer != *b"1" {
                return Err(rustix::io::Errno::PERM.into());
            }
        }
        self.become_pid_1()?;
        match fork()? {
            0 => {}
            program => {
                close_from(0, None);
                exit_as(program);
            }
        }
        become_program(self.seccomp.map(|f| (f, self.unix_sockets)))
    }

    /// Joins the command's v1 cgroups (this process has one thread: moving
    /// it moves the process), and asks the engine to move it into its v2
    /// ones while it makes its namespaces (waited for before it forks).
    fn join_cgroups(&self) -> io::Result<()> {
        let Some(joining) = &self.joining else {
            return Ok(());
        };
        for &tasks in &joining.tasks {
            // SAFETY: the descriptor is open for the whole pre-exec.
            let tasks = unsafe { BorrowedFd::borrow_raw(tasks) };
            rustix::io::write(tasks, b"0")?;
        }
        if let Some((tell, _)) = joining.mover {
            // SAFETY: the descriptor is open for the whole pre-exec.
            let tell = unsafe { BorrowedFd::borrow_raw(tell) };
            rustix::io::write(
                tell,
                &rustix::process::getpid().as_raw_nonzero().get().to_ne_bytes(),
            )?;
        }
        Ok(())
    }

    /// New namespaces: mounts, PIDs, IPC, host name and (unless granted)
    /// the network; without root, a user namespace first, in which the
    /// overlays and private tmpfs are then made.
    fn unshare(&mut self) -> io::Result<()> {
        use rustix::thread::UnshareFlags;
        let mut flags =
            UnshareFlags::NEWNS | UnshareFlags::NEWPID | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
        if !self.network {
            flags |= UnshareFlags::NEWNET;
        }
        match &self.user_namespace {
            // SAFETY: the process is single-threaded (a child of fork).
            None => unsafe { rustix::thread::unshare_unsafe(flags)? },
            Some(maps) => {
                enter_user_namespace(maps, flags)?;
                self.overlays.clear();
                for spec in &self.pending {
                    let fd = spec
                        .make(Privilege::UserNamespace)
                        .map_err(|(_, e)| io::Error::from(e))?;
                    self.overlays.push(into_raw(fd));
                }
                self.private_fds.clear();
                for p in &self.privates {
                    self.private_fds.push(into_raw(tmpfs(p.size, p.mode)?));
                }
            }
        }
        Ok(())
    }

    /// The command's world, built from its grant: every mount private and
    /// read-only, its own `/dev`, Stepback's directories hidden, the kept
    /// paths, sockets and overlays attached, the working directory entered.
    fn build_world(&mut self) -> io::Result<()> {
        rustix::mount::mount_change(c"/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)?;
        for (path, writable) in &self.kept {
            let attrs = match writable {
                true => WRITABLE,
                false => WRITABLE.union(MountAttrFlags::MOUNT_ATTR_RDONLY),
            };
            self.clones.push(into_raw(clone_with(path, attrs)?));
        }
        // Read-only: connecting to a socket does not write its filesystem.
        for socket in &self.sockets {
            let attrs = WRITABLE.union(MountAttrFlags::MOUNT_ATTR_RDONLY);
            self.clones.push(into_raw(clone_with(socket, attrs)?));
        }
        // Read-only: the host's own nodes' modes, owners and times are
        // out of reach (writing to a device still works).
        let nodes = MountAttrFlags::MOUNT_ATTR_RDONLY.union(MountAttrFlags::MOUNT_ATTR_NOSUID);
        for node in DEVICES {
            self.devices.push(into_raw(clone_with(node, nodes)?));
        }
        // Read-only, and no device node anywhere opens anything (a
        // read-only mount does not stop writes to a device): the command's
        // own `/dev` holds the few it may use.
        let everything = MountAttrFlags::MOUNT_ATTR_RDONLY.union(WRITABLE);
        set_attributes(libc::AT_FDCWD, c"/", libc::AT_RECURSIVE, everything)?;
        self.make_dev()?;
        // Stepback's own directories (other runs' journals and backups,
        // the compiled code it trusts): an empty read-only tmpfs over each.
        for dir in &self.hidden {
            let mask = small_tmpfs(c"0755")?;
            set_attributes(
                mask.as_raw_fd(),
                c"",
                libc::AT_EMPTY_PATH,
                MountAttrFlags::MOUNT_ATTR_RDONLY,
            )?;
            attach(mask.as_raw_fd(), dir)?;
        }
        for (private, fd) in self.privates.iter().zip(&self.private_fds) {
            private.attach(*fd)?;
        }
        let kept = self.kept.iter().map(|(path, _)| path);
        for (fd, path) in self.clones.iter().zip(kept.chain(&self.sockets)) {
            attach(*fd, path)?;
        }
        for (fd, target) in self.overlays.iter().zip(&self.targets) {
            attach(*fd, target)?;
        }
        let cwd = &self.cwd;
        rustix::process::chdir(cwd.as_c_str())?;

        Ok(())
    }

    /// Forks PID 1 of the namespace: C waits for it and exits as it does;
    /// PID 1 mounts the namespace's `/proc`, read-only.
    fn become_pid_1(&self) -> io::Result<()> {
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
            // Read-only: its files reach the kernel's settings.
            rustix::mount::MountFlags::NOSUID
                | rustix::mount::MountFlags::NODEV
                | rustix::mount::MountFlags::NOEXEC
                | rustix::mount::MountFlags::RDONLY,
            None,
        )?;
        Ok(())
    }
}

/// The program's own limits, last before `exec`: a session of its own, no
/// core dumps, root's privileges dropped, inherited descriptors closed,
/// and the seccomp filter (with whether Unix sockets are granted).
fn become_program(seccomp: Option<(&'static super::seccomp::Filters, bool)>) -> io::Result<()> {
    rustix::process::setsid()?;
    // No core dumps: with a `|program` core pattern, the kernel would
    // run that program as root on the host for a crash of the
    // command's (a limit of 1 is the one that refuses pipes too), and
    // without `CAP_SYS_RESOURCE` the command cannot raise it.
    let core = rustix::process::Rlimit {
        current: Some(1),
        maximum: Some(1),
    };
    rustix::process::setrlimit(rustix::process::Resource::Core, core)?;
    drop_privileges()?;
    // Nothing the engine inherited (a service manager's sockets, a
    // shell's redirections, a directory) reaches the program: every
    // descriptor but its standard ones closes at exec (marked, not
    // closed, so that a failed exec is still reported).
    // SAFETY: a system call on descriptors only.
    unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    match seccomp {
        Some((filters, unix_sockets)) => super::seccomp::install(filters, unix_sockets),
        None => Ok(()),
    }
}

/// What the program keeps of root's capabilities: what changing the
/// mounts' files as root takes (owners, modes, permission checks, set-id
/// bits kept on a chown), and switching to another user (`su`,
/// `runuser`), signalling its own processes and binding a low port.
/// Nothing that reaches past the files: mounts, devices, the kernel, the
/// clock, other processes, the network's settings, file handles
/// (`CAP_DAC_READ_SEARCH` opens any file of a filesystem by handle).
pub const KEPT_CAPS: CapabilitySet = CapabilitySet::CHOWN
    .union(CapabilitySet::DAC_OVERRIDE)
    .union(CapabilitySet::FOWNER)
    .union(CapabilitySet::FSETID)
    .union(CapabilitySet::SETUID)
    .union(CapabilitySet::SETGID)
    .union(CapabilitySet::KILL)
    .union(CapabilitySet::NET_BIND_SERVICE);

/// Leaves the program `KEPT_CAPS` at most, whatever the engine was started
/// with: every other capability out of the bounding set, the inheritable
/// and ambient sets empty (for root, `execve` grants the bounding set plus
/// the inheritable one), and no new privileges (set-id bits and file
/// capabilities give nothing). Only system calls.
fn drop_privileges() -> io::Result<()> {
    use rustix::thread::{CapabilitySets, capabilities, set_capabilities};
    for cap in CapabilitySet::all().difference(KEPT_CAPS).iter() {
        match rustix::thread::remove_capability_from_bounding_set(cap) {
            // One this kernel does not know.
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(e.into()),
        }
    }
    rustix::thread::clear_ambient_capability_set()?;
    let now = capabilities(None)?;
    let kept = now.permitted.intersection(KEPT_CAPS);
    set_capabilities(
        None,
        CapabilitySets {
            effective: kept,
            permitted: kept,
            inheritable: CapabilitySet::empty(),
        },
    )?;
    rustix::thread::set_no_new_privs(true)?;
    Ok(())
}

/// The device nodes a command's `/dev` holds, bound from the host's at the
/// same paths.
const DEVICES: [&CStr; 6] = [
    c"/dev/null",
    c"/dev/zero",
    c"/dev/full",
    c"/dev/random",
    c"/dev/urandom",
    c"/dev/tty",
];

/// The links of a command's `/dev`: target, link.
const DEV_LINKS: [(&CStr, &CStr); 5] = [
    (c"/proc/self/fd", c"/dev/fd"),
    (c"/proc/self/fd/0", c"/dev/stdin"),
    (c"/proc/self/fd/1", c"/dev/stdout"),
    (c"/proc/self/fd/2", c"/dev/stderr"),
    (c"pts/ptmx", c"/dev/ptmx"),
];

impl Child {
    /// Builds the command's `/dev` from `DEVICES` and `DEV_LINKS`, a
    /// private devpts and a `shm` of its own, instead of the host's (block
    /// devices, `kmsg`, anything else there), then makes it read-only, as
    /// bubblewrap does. Only system calls.
    fn make_dev(&self) -> io::Result<()> {
        use rustix::fs::{Mode, OFlags};
        let dev = small_tmpfs(c"0755")?;
        attach(dev.as_raw_fd(), c"/dev")?;
        for (path, node) in DEVICES.iter().zip(&self.devices) {
            drop(rustix::fs::open(
                *path,
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            )?);
            attach(*node, path)?;
        }
        for dir in [c"/dev/pts", c"/dev/shm"] {
            rustix::fs::mkdir(dir, Mode::from_raw_mode(0o755))?;
        }
        let pts = rustix::mount::fsopen(c"devpts", FsOpenFlags::FSOPEN_CLOEXEC)?;
        rustix::mount::fsconfig_set_string(&pts, c"ptmxmode", c"0666")?;
        rustix::mount::fsconfig_set_string(&pts, c"mode", c"0620")?;
        rustix::mount::fsconfig_create(&pts)?;
        // Its nodes are the terminals it makes: devices, but no set-id bits.
        let pts = rustix::mount::fsmount(
            &pts,
            FsMountFlags::FSMOUNT_CLOEXEC,
            MountAttrFlags::MOUNT_ATTR_NOSUID,
        )?;
        attach(pts.as_raw_fd(), c"/dev/pts")?;
        // `/dev/shm` is one of the private directories (see `PRIVATE`),
        // attached with the others: mounts of the step's beneath it show.
        for (target, link) in DEV_LINKS {
            rustix::fs::symlink(target, link)?;
        }
        // Only the tmpfs itself: the nodes, `pts` and `shm` stay as they are.
        set_attributes(libc::AT_FDCWD, c"/dev", 0, MountAttrFlags::MOUNT_ATTR_RDONLY)?;
        Ok(())
    }
}

/// A tmpfs of at most 64 MiB with a root of `mode`, detached, with the
/// attributes of every writable mount.
fn small_tmpfs(mode: &CStr) -> rustix::io::Result<OwnedFd> {
    let fs = rustix::mount::fsopen(c"tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)?;
    rustix::mount::fsconfig_set_string(&fs, c"size", c"64m")?;
    rustix::mount::fsconfig_set_string(&fs, c"mode", mode)?;
    rustix::mount::fsconfig_create(&fs)?;
    rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, WRITABLE)
}

/// A detached copy of the mount tree at `path`, every mount of it with
/// `attrs` set.
fn clone_with(path: &CStr, attrs: MountAttrFlags) -> io::Result<OwnedFd> {
    let fd = clone_tree(path)?;
    set_attributes(
        fd.as_raw_fd(),
        c"",
        libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
        attrs,
    )?;
    Ok(fd)
}

/// A detached copy of the mount tree at `path`.
fn clone_tree(path: &CStr) -> io::Result<OwnedFd> {
    Ok(rustix::mount::open_tree(
        rustix::fs::CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_RECURSIVE,
    )?)
}

/// Sets `attrs` on the mount at `path` (from `dirfd`), and with
/// `AT_RECURSIVE` in `flags` on every mount beneath it, in one call
/// (`mount_setattr`, Linux 5.12).
fn set_attributes(dirfd: i32, path: &CStr, flags: i32, attrs: MountAttrFlags) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: attrs.bits() as u64,
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
            flags as libc::c_uint,
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
