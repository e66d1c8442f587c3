//! `stepback:plugin/exec`: commands a step runs natively, their file
//! changes captured by overlays ([`namespace`]) and applied through the
//! journal once they exit ([`apply`]).

mod apply;
mod cgroup;
mod links;
mod namespace;
mod output;
mod reserve;
mod seccomp;

use super::bindings::stepback::plugin::exec::{Command, Completion, ExecError, Host, Status};
use super::host::HostState;
use crate::events::LogLevel;
use crate::grant::{Access, Capture, Exec, Limits, Mount};
use crate::journal::{SharedRecorder, SpaceReserve};
use cap_std::fs::Dir;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::HasData;

/// A step's part of the exec capability.
pub struct ExecState {
    grant: Exec,
    /// Added to every command's environment before the plugin's own.
    env: Vec<(String, String)>,
    mounts: Vec<ExecMount>,
    recorder: Option<SharedRecorder>,
    /// Where the overlays' upper layers are made, one directory per
    /// command: in the run's backup area when the run is journaled, so that
    /// originals exchanged into them are backups where they land.
    scratch: PathBuf,
    /// When the step must end: no command runs past it.
    deadline: Instant,
    /// Where the search for a free scratch directory's name goes on.
    count: usize,
    /// What a command's whole tree may use.
    limits: cgroup::Limits,
    cpu: Option<Duration>,
    /// The run's free-space reserve, held while a command runs.
    room: Option<Arc<SpaceReserve>>,
    /// Whether what the step's commands reach, and which limits they
    /// escape, was said.
    announced: bool,
}

/// A mount as commands see it: at its host path.
pub struct ExecMount {
    /// The mount.
    pub mount: Mount,
    /// The directory as the run opened it, if it did.
    pub pinned: Option<Arc<std::fs::File>>,
}

impl ExecMount {
    /// Its directory: the one the run opened, or by path.
    fn root(&self) -> std::io::Result<Dir> {
        match &self.pinned {
            Some(f) => Ok(Dir::from_std_file(f.try_clone()?)),
            None => Dir::open_ambient_dir(&self.mount.host, cap_std::ambient_authority()),
        }
    }
}

impl ExecState {
    /// A step's exec state: `scratch` holds the overlays' layers.
    pub fn new(
        grant: Exec,
        env: Vec<(String, String)>,
        mounts: Vec<ExecMount>,
        (recorder, room): (Option<SharedRecorder>, Option<Arc<SpaceReserve>>),
        scratch: PathBuf,
        limits: Limits,
    ) -> ExecState {
        ExecState {
            grant,
            env,
            mounts,
            recorder,
            scratch,
            deadline: Instant::now() + limits.time,
            count: 0,
            limits: cgroup::Limits {
                memory: limits.memory,
                processes: limits.processes,
            },
            cpu: limits.cpu,
            room,
            announced: false,
        }
    }
}

impl ExecState {
    /// Where commands find guest path `guest`.
    fn host_path(&self, guest: &str) -> Option<PathBuf> {
        self.mounts.iter().find_map(|m| m.mount.host_path(guest))
    }
}

/// The exec interface's view of a step's store: its own state, and the
/// host interface's log that a command's output goes to.
pub struct ExecView<'a> {
    /// The exec state.
    pub exec: &'a mut ExecState,
    /// The step's log.
    pub host: &'a mut HostState,
}

/// Links `stepback:plugin/exec` to [`ExecView`].
pub struct ExecCapability;

impl HasData for ExecCapability {
    type Data<'a> = ExecView<'a>;
}

/// Whether commands can be captured by overlays of `mounts` (read-write
/// ones), with layers made in `scratch`: tried for real, nothing attached;
/// without `CAP_SYS_ADMIN`, in a user namespace, as commands will be.
pub fn probe(mounts: &[Mount], scratch: &Path) -> Result<(), String> {
    use namespace::Privilege;
    let dir = scratch.join(format!("probe-{}", std::process::id()));
    let privilege = Privilege::of_this_process();
    let result = (|| {
        let mut overlays = Vec::new();
        for mount in mounts.iter().filter(|m| m.access == Access::ReadWrite) {
            let layer = Layer::make(&dir, &mount.name, None)?;
            overlays.push(layer.overlay(&mount.host, None));
        }
        match privilege {
            Privilege::Root => overlays.iter().try_for_each(|o| namespace::overlay(o).map(drop)),
            Privilege::UserNamespace => namespace::probe_user_namespace(&overlays),
        }
    })();
    let _ = crate::journal::remove_all(&dir);
    result.map_err(|e| match (privilege, e.raw_os_error()) {
        (Privilege::Root, Some(libc::EPERM)) => format!("making an overlay needs CAP_SYS_ADMIN: {e}"),
        (Privilege::UserNamespace, Some(libc::EPERM | libc::ENOSPC | libc::EACCES)) => format!(
            "without CAP_SYS_ADMIN (not root, or root in a container), commands are captured in a user namespace of their own, which this system does not allow (see user.max_user_namespaces, kernel.unprivileged_userns_clone, or an AppArmor or SELinux policy): {e}"
        ),
        (Privilege::UserNamespace, Some(libc::EINVAL)) => format!(
            "without CAP_SYS_ADMIN, an overlay needs Linux 5.11 and, for its upper layer in the state directory, a filesystem with user extended attributes: {e}"
        ),
        _ => e.to_string(),
    })
}

/// A command's upper and work directories for one mount.
struct Layer {
    upper: PathBuf,
    work: PathBuf,
    /// The upper root's extended attributes before the command (the
    /// mount root's, where they could be copied): what differs from them
    /// after, the command changed.
    root_xattrs: Vec<crate::journal::Xattr>,
}

impl Layer {
    /// Makes the layers in `dir` for mount `mount`; the upper one's root
    /// gets the attributes and extended attributes of the mount's root
    /// (`root`), which the command sees there, so that what it changes of
    /// them shows.
    fn make(dir: &Path, mount: &str, root: Option<&Dir>) -> std::io::Result<Layer> {
        let base = dir.join(mount);
        let (upper, work) = (base.join("upper"), base.join("work"));
        std::fs::create_dir_all(&upper)?;
        std::fs::create_dir_all(&work)?;
        let mut root_xattrs = Vec::new();
        if let Some(root) = root {
            let meta = root.dir_metadata()?;
            let base = Dir::open_ambient_dir(&base, cap_std::ambient_authority())?;
            match rustix::process::geteuid().is_root() {
                true => crate::journal::set_attributes(&base, "upper", &meta)?,
                // Without root, an owner other than itself is out of reach.
                false => {
                    base.set_permissions("upper", meta.permissions())?;
                    crate::journal::set_times(&base, "upper", &meta)?;
                }
            }
            let upper_root = crate::journal::open_dir_readable(&base, "upper")?;
            for x in crate::journal::fd_xattrs(&crate::journal::open_dir_readable(root, ".")?)? {
                // Those it may not set (another security module's, without
                // root) the command does not see, nor can it change them.
                let _ = rustix::fs::fsetxattr(
                    &upper_root,
                    &x.name.0[..],
                    &x.value.0,
                    rustix::fs::XattrFlags::empty(),
                );
            }
            root_xattrs = crate::journal::fd_xattrs(&upper_root)?;
            // Setting them changed the time just given.
            crate::journal::set_times(&base, "upper", &meta)?;
        }
        Ok(Layer {
            upper,
            work,
            root_xattrs,
        })
    }

    fn overlay(&self, target: &Path, pinned: Option<i32>) -> namespace::Overlay {
        namespace::Overlay {
            target: target.to_path_buf(),
            pinned,
            upper: self.upper.clone(),
            work: self.work.clone(),
        }
    }
}

/// The file of granted program `p`, unless it changed since the flow was
/// validated (one in a mount a step can write is pinned by its digest).
fn unchanged(p: &crate::grant::Program) -> Result<PathBuf, ExecError> {
    match p.unchanged() {
        Ok(true) => Ok(p.path.clone()),
        Ok(false) => Err(ExecError::NotGranted(format!(
            "program {:?} ({}) changed since the flow was validated: it is in a mount a step can write, and only the file validated runs",
            p.name,
            p.path.display()
        ))),
        Err(e) => Err(ExecError::NotGranted(format!(
            "program {:?} ({}) cannot be checked against what was validated: {}",
            p.name,
            p.path.display(),
            host_error(&e)
        ))),
    }
}

/// How a command ended.
enum Ended {
    /// With this status (128 + N for signal N, as a shell shows it).
    Exited(i32),
    TimedOut,
    /// At one of the step's limits: why.
    Stopped(String),
}

/// What a running command is held to beyond its time: limits the kernel
/// enforces and the engine notices ([`cgroup::Group::hit`]), its CPU time,
/// and the reserves it must leave free.
struct Watch<'a> {
    group: &'a cgroup::Group,
    limits: cgroup::Limits,
    cpu: Option<Duration>,
    holds: &'a [reserve::Held],
}

impl Watch<'_> {
    /// How often a running command is checked against its limits.
    const EVERY: Duration = Duration::from_millis(50);

    /// The limit the command went past, if it did.
    fn broken(&self) -> Option<String> {
        if let Some(limit) = self.group.hit() {
            return Some(match limit {
                cgroup::Hit::Memory => format!(
                    "it went over the step's limits.memory ({}, its whole tree's, its private /tmp's files included)",
                    bytesize::ByteSize(self.limits.memory)
                ),
                cgroup::Hit::Processes => format!(
                    "it tried to have more than the step's limits.processes ({}) processes at once",
                    self.limits.processes
                ),
            });
        }
        if let (Some(cpu), Some(used)) = (self.cpu, self.group.cpu_used())
            && used > cpu
        {
            return Some(format!(
                "it used more CPU time than the step's limits.cpu ({})",
                humantime::format_duration(cpu)
            ));
        }
        self.holds.iter().any(reserve::Held::filled).then(|| {
            "it filled the filesystem it writes up to the run's free-space reserve (the room a rollback needs)".to_owned()
        })
    }

    /// Returns once the command went past a limit.
    async fn until_broken(&self) -> String {
        loop {
            tokio::time::sleep(Self::EVERY).await;
            if let Some(why) = self.broken() {
                return why;
            }
        }
    }
}

/// A command's scratch directory and the layers made in it: removed when
/// dropped, unless it `kept` originals the apply exchanged into it (then
/// backups, pruned with the run's; only the overlays' work directories go).
struct Scratch {
    dir: PathBuf,
    /// The step's scratch directory, removed too when empty.
    parent: PathBuf,
    layers: Vec<Layer>,
    kept: bool,
}

impl Scratch {
    /// A new directory in `parent` (the run's, shared by its steps), the
    /// first `command-N` from `count` on that does not exist: another
    /// step's command, or one interrupted, may have left its own there,
    /// holding backups.
    fn make(parent: &Path, count: &mut usize) -> std::io::Result<Scratch> {
        std::fs::create_dir_all(parent)?;
        loop {
            *count += 1;
            let dir = parent.join(format!("command-{count}"));
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    return Ok(Scratch {
                        dir,
                        parent: parent.to_path_buf(),
                        layers: Vec::new(),
                        kept: false,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.kept {
            for layer in &self.layers {
                let _ = crate::journal::remove_all(&layer.work);
            }
            return;
        }
        let _ = crate::journal::remove_all(&self.dir);
        let _ = std::fs::remove_dir(&self.parent);
    }
}

/// What became of the changes of a command that did not finish.
fn discarded(captured: bool) -> &'static str {
    match captured {
        true => "its file changes were discarded",
        false => "what it changed is as it left it (it ran uncaptured)",
    }
}

/// The environment every command starts from; the plugin's adds to it.
const BASE_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/tmp"),
    ("LANG", "C.UTF-8"),
];

impl ExecView<'_> {
    /// What runs for program `name` with `args`: a granted program, or a
    /// script in one of the step's mounts (by host path) whose `#!` line
    /// names one, run by it.
    fn program(&self, name: &str, args: Vec<String>) -> Result<(PathBuf, Vec<String>), ExecError> {
        let grant = &self.exec.grant;
        if let Some(p) = grant.find(name) {
            return Ok((unchanged(p)?, args));
        }
        // A script of the step's mounts: read beneath the mount's root,
        // so that neither `..` nor a symlink leads out of it.
        let script = Path::new(name);
        let line = self
            .exec
            .mounts
            .iter()
            .find_map(|m| {
                let rel = script.strip_prefix(&m.mount.host).ok()?;
                let root = Dir::open_ambient_dir(&m.mount.host, cap_std::ambient_authority()).ok()?;
                root.read(rel).ok()
            })
            .and_then(|text| crate::grant::shebang(&text));
        match line {
            Some((interpreter, arg)) => {
                let p = grant.find(&interpreter).ok_or_else(|| {
                    ExecError::NotGranted(format!(
                        "the #! line of {name} runs {interpreter:?}, which is not in the step's exec grant ({})",
                        grant.listed()
                    ))
                })?;
                let args = arg.into_iter().chain([name.to_owned()]).chain(args).collect();
                Ok((unchanged(p)?, args))
            }
            None => Err(ExecError::NotGranted(format!(
                "program {name:?} is not in the step's exec grant ({})",
                grant.listed()
            ))),
        }
    }

    /// The host directory the guest path `cwd` names, inside a mount.
    fn cwd(&self, cwd: Option<&str>) -> Result<PathBuf, ExecError> {
        let Some(cwd) = cwd else {
            return Ok(self
                .exec
                .mounts
                .first()
                .map_or_else(|| PathBuf::from("/"), |m| m.mount.host.clone()));
        };
        self.exec.host_path(cwd).ok_or_else(|| {
            ExecError::Invalid(format!(
                "working directory {cwd:?} is not an absolute guest path (without `.` or `..`) inside one of the step's mounts"
            ))
        })
    }

    /// Refuses an environment variable of the plugin's that would make the
    /// program load or run other code than the grant's, unless the step
    /// grants it by name.
    fn check_env(&self, command: &Command) -> Result<(), ExecError> {
        let grant = &self.exec.grant;
        match command
            .env
            .iter()
            .find(|(name, _)| crate::grant::changes_code(name) && !grant.env.contains(name))
        {
            Some((name, _)) => Err(ExecError::NotGranted(format!(
                "environment variable {name} changes what code {:?} loads or runs; the step grants it by name with `exec-env = [{name:?}]` if it must",
                command.program
            ))),
            None => Ok(()),
        }
    }

    async fn run_command(&mut self, command: Command) -> Result<Completion, ExecError> {
        self.check_env(&command)?;
        let (program, args) = self.program(&command.program, command.args.clone())?;
        let cwd = self.cwd(command.cwd.as_deref())?;
        let left = self.exec.deadline.saturating_duration_since(Instant::now());
        let timeout = command
            .timeout_ms
            .map_or(left, |ms| Duration::from_millis(ms).min(left));
        let mut scratch = Scratch::make(&self.exec.scratch, &mut self.exec.count)
            .map_err(|e| spawn_failed("making the command's scratch directory", e))?;
        let captured = self.exec.grant.capture == Capture::Overlay;
        let shown = format!("{} {}", command.program, shell_words(&command.args));
        if !captured {
            self.snapshot()?;
            self.uncaptured(&shown)?;
        }
        let (group, unenforced) = cgroup::Group::make(self.exec.limits, self.exec.cpu.is_some());
        let joining = group
            .joining()
            .map_err(|e| spawn_failed("preparing the command's cgroups", e))?;
        let (writable, overlays) = self.layers(&mut scratch, captured)?;
        let jail = self.jail(&overlays, &cwd, captured)?;
        let privilege = jail.privilege();
        let (holds, unheld) = self.hold(&scratch.dir, (captured, group.tmpfs_bound()))?;
        self.first_command(unenforced.into_iter().chain(unheld).collect())?;

        let mut cmd = self.std_command(&program, &args, &command);
        jail.enter(&mut cmd, joining.as_ref());
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let spawned = cmd.spawn();
        // A child that failed before it joined says why itself.
        let _ = joining.map(cgroup::Joining::finish);
        let child = spawned.map_err(|e| spawn_failed(&format!("starting {}", program.display()), e))?;
        drop(jail);
        self.host.record_log(LogLevel::Info, format!("running {shown}"));
        let watch = Watch {
            group: &group,
            limits: self.exec.limits,
            cpu: self.exec.cpu,
            holds: &holds,
        };
        let (ended, tail) = self.wait(child, command.stdin, timeout, watch).await?;
        drop((holds, group));
        let code = match ended {
            Ended::Exited(code) => code,
            Ended::TimedOut => {
                self.host.record_log(
                    LogLevel::Warn,
                    format!(
                        "{} timed out after {}: killed with everything it started; {}",
                        command.program,
                        humantime::format_duration(timeout),
                        discarded(captured)
                    ),
                );
                return Ok(Completion {
                    status: Status::TimedOut,
                    output_tail: tail,
                    changes: 0,
                });
            }
            Ended::Stopped(why) => {
                let message = format!(
                    "stopped: {why}; it and everything it started were killed, and {}",
                    discarded(captured)
                );
                self.host
                    .record_log(LogLevel::Error, format!("{}: {message}", command.program));
                return Err(ExecError::ApplyFailed(message));
            }
        };
        let changes = self.apply_changes(&writable, scratch, privilege)?;
        Ok(Completion {
            status: Status::Exited(code),
            output_tail: tail,
            changes,
        })
    }

    /// The process of `program` with `args`, before the jail: only the
    /// base, the step's and the command's environment; its standard
    /// streams piped (stdin only when the command gives one).
    fn std_command(&self, program: &Path, args: &[String], command: &Command) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(BASE_ENV.iter().copied())
            .envs(self.exec.env.iter().map(|(k, v)| (k, v)))
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .stdin(match command.stdin.is_some() {
                true => Stdio::piped(),
                false => Stdio::null(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Applies the command's upper layers (in `scratch`) to `writable`,
    /// through the journal; the scratch directory goes with this, unless
    /// its layers now hold originals (backups, pruned with the run's).
    fn apply_changes(
        &mut self,
        writable: &[String],
        mut scratch: Scratch,
        privilege: namespace::Privilege,
    ) -> Result<u64, ExecError> {
        let applying = Instant::now();
        let (changes, exchanged) = self.apply(writable, &scratch.layers, privilege);
        let applied_in = applying.elapsed();
        scratch.kept = exchanged > 0;
        drop(scratch);
        let changes = changes.map_err(ExecError::ApplyFailed)?;
        if changes > 0 {
            self.host.record_log(
                LogLevel::Info,
                format!(
                    "applied {changes} change(s) the command made to the step's mounts in {} ms",
                    applied_in.as_millis()
                ),
            );
        }
        Ok(changes)
    }

    /// The layers of the overlays over the step's read-write mounts (when
    /// `captured`), made in `scratch`: the mounts' names and the overlays.
    fn layers(
        &self,
        scratch: &mut Scratch,
        captured: bool,
    ) -> Result<(Vec<String>, Vec<namespace::Overlay>), ExecError> {
        let mut names = Vec::new();
        let mut overlays = Vec::new();
        for m in self
            .exec
            .mounts
            .iter()
            .filter(|m| captured && m.mount.access == Access::ReadWrite)
        {
            let layer = m
                .root()
                .and_then(|root| Layer::make(&scratch.dir, &m.mount.name, Some(&root)))
                .map_err(|e| spawn_failed("making the overlay's layers", e))?;
            let pinned = m.pinned.as_ref().map(|f| std::os::fd::AsRawFd::as_raw_fd(&**f));
            overlays.push(layer.overlay(&m.mount.host, pinned));
            scratch.layers.push(layer);
            names.push(m.mount.name.clone());
        }
        Ok((names, overlays))
    }

    /// The jail a command runs in: the step's mounts visible (written
    /// directly when not `captured`), `overlays` over the captured ones.
    fn jail(
        &self,
        overlays: &[namespace::Overlay],
        cwd: &Path,
        captured: bool,
    ) -> Result<namespace::Jail, ExecError> {
        let visible: Vec<namespace::Visible> = self
            .exec
            .mounts
            .iter()
            .map(|m| namespace::Visible {
                path: m.mount.host.clone(),
                writable: !captured && m.mount.access == Access::ReadWrite,
            })
            .collect();
        let grant = &self.exec.grant;
        namespace::Jail::new(
            overlays,
            (&visible, &grant.hidden, &grant.sockets),
            cwd,
            grant.network,
        )
        .map_err(|e| spawn_failed("preparing the namespace and its overlays", e))
    }

    /// Holds the run's reserve on every filesystem the command writes:
    /// its layers' (`scratch`), or its mounts' when not `captured`. With
    /// the reserves held, why one could not be, if one could not.
    fn hold(
        &self,
        scratch: &Path,
        (captured, bound): (bool, Option<u64>),
    ) -> Result<(Vec<reserve::Held>, Option<String>), ExecError> {
        let Some(room) = &self.exec.room else {
            return Ok((Vec::new(), None));
        };
        let dirs: Vec<(String, std::io::Result<Dir>)> = match captured {
            true => vec![(
                scratch.display().to_string(),
                Dir::open_ambient_dir(scratch, cap_std::ambient_authority()),
            )],
            false => self
                .exec
                .mounts
                .iter()
                .filter(|m| m.mount.access == Access::ReadWrite)
                .map(|m| (format!("mount {}", m.mount.name), m.root()))
                .collect(),
        };
        let mut held = Vec::new();
        for (what, dir) in dirs {
            match dir.and_then(|d| reserve::Held::take(&d, room.kept(), bound)) {
                Ok(h) => held.push(h),
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    return Err(ExecError::SpawnFailed(format!(
                        "the filesystem of {what} has less than the reserve ({}) free: a command could leave the rollback no room",
                        bytesize::ByteSize(room.kept())
                    )));
                }
                Err(e) => {
                    return Ok((
                        held,
                        Some(format!("the free-space reserve on the filesystem of {what}: {e}")),
                    ));
                }
            }
        }
        Ok((held, None))
    }

    /// Says, once per step, what its commands reach beyond its mounts and
    /// which of its limits they are not held to (`unenforced`), and
    /// records both in the run's journal for `show`.
    fn first_command(&mut self, unenforced: Vec<String>) -> Result<(), ExecError> {
        if self.exec.announced {
            return Ok(());
        }
        self.exec.announced = true;
        let reach = self.exec.grant.reach();
        let unenforced = unenforced.join("; ");
        if let Some(rec) = &self.exec.recorder {
            let mut rec = rec.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let recorded = (|| {
                if !reach.is_empty() {
                    rec.reach(&reach)?;
                }
                match unenforced.is_empty() {
                    true => Ok(()),
                    false => rec.unenforced(&unenforced),
                }
            })();
            recorded
                .map_err(|e| spawn_failed("recording what the step's commands reach in the journal", e))?;
        }
        if !unenforced.is_empty() {
            self.host.events.emit(crate::events::Event::Warning {
                message: format!(
                    "step '{}' runs its commands without these limits: {unenforced}",
                    self.host.step
                ),
            });
        }
        Ok(())
    }

    /// Feeds `child` its input, logs its output, and waits for it to end,
    /// stopping it at its timeout or a limit (`watch`); how it ended and
    /// the tail of its output.
    async fn wait(
        &mut self,
        mut child: tokio::process::Child,
        input: Option<Vec<u8>>,
        timeout: Duration,
        watch: Watch<'_>,
    ) -> Result<(Ended, String), ExecError> {
        let stdin = child.stdin.take();
        let feed = async move {
            if let Some(mut stdin) = stdin {
                use tokio::io::AsyncWriteExt;
                // A command that does not read its input just closes it.
                let _ = stdin.write_all(&input.unwrap_or_default()).await;
            }
        };
        let mut lines = output::Lines::new(child.stdout.take(), child.stderr.take());
        let mut tail = output::Tail::default();
        let host = &mut *self.host;
        let run = async {
            let ((), ()) = tokio::join!(feed, async {
                while let Some((level, line)) = lines.next().await {
                    tail.push(&line);
                    host.record_log(level, line);
                }
            });
            child.wait().await
        };
        let ended = tokio::select! {
            waited = tokio::time::timeout(timeout, run) => match waited {
                Err(_) => Ended::TimedOut,
                Ok(Err(e)) => return Err(spawn_failed("waiting for the command", e)),
                Ok(Ok(status)) => match watch.broken() {
                    Some(why) => Ended::Stopped(why),
                    None => Ended::Exited(status.code().unwrap_or_else(|| {
                        128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
                    })),
                },
            },
            why = watch.until_broken() => Ended::Stopped(why),
        };
        if !matches!(ended, Ended::Exited(_)) {
            let _ = child.kill().await;
        }
        Ok((ended, tail.into_string()))
    }

    /// Copies the paths the step's snapshots cover, before a command
    /// that changes its mounts directly.
    fn snapshot(&mut self) -> Result<(), ExecError> {
        let Some(rec) = &self.exec.recorder else {
            return Ok(());
        };
        for path in &self.exec.grant.snapshot {
            rec.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .snapshot(&path.mount, &path.rel)
                .map_err(|e| {
                    spawn_failed(&format!("taking the snapshot of {}:/{}", path.mount, path.rel), e)
                })?;
        }
        Ok(())
    }

    /// Records, before it starts, that a command will change the step's
    /// mounts without a capture, and warns the operator.
    fn uncaptured(&mut self, shown: &str) -> Result<(), ExecError> {
        let grant = &self.exec.grant;
        let (what, record) = match grant.capture {
            Capture::Snapshot => {
                let covered: Vec<String> = grant
                    .snapshot
                    .iter()
                    .map(|p| format!("{}:/{}", p.mount, p.rel))
                    .collect();
                let covered = covered.join(", ");
                (
                    format!(
                        "with snapshots of {covered} only: a rollback puts those back, and does not reverse what it changes elsewhere"
                    ),
                    format!("{shown} (capture = \"snapshot\": changes outside {covered})"),
                )
            }
            _ => (
                "uncaptured (capture = \"none\"): a rollback will not reverse what it changes".to_owned(),
                format!("{shown} (capture = \"none\")"),
            ),
        };
        if let Some(rec) = &self.exec.recorder {
            rec.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .uncaptured(&record)
                .map_err(|e| spawn_failed("recording the uncaptured command in the journal", e))?;
        }
        self.host.events.emit(crate::events::Event::Warning {
            message: format!("step '{}' runs `{shown}` {what}", self.host.step),
        });
        Ok(())
    }

    /// Applies each layer to its mount; the number of changes applied, and
    /// of originals exchanged into the layers (even when the apply failed
    /// part way).
    fn apply(
        &self,
        names: &[String],
        layers: &[Layer],
        privilege: namespace::Privilege,
    ) -> (Result<u64, String>, u64) {
        let (mut total, mut exchanged) = (0, 0);
        for (name, layer) in names.iter().zip(layers) {
            let m = self
                .exec
                .mounts
                .iter()
                .find(|m| &m.mount.name == name)
                .expect("layers are made for the step's mounts");
            let result = (|| {
                let root = m.root()?;
                let mut apply = apply::Apply::new(
                    &m.mount.name,
                    (self.exec.recorder.as_ref(), self.exec.room.as_deref()),
                    (&layer.upper, &layer.work, &layer.root_xattrs),
                    privilege.overlay_xattrs(),
                    &root,
                )?;
                let done = apply.run(&root);
                total += apply.changes;
                exchanged += apply.exchanged;
                done
            })();
            if let Err(e) = result {
                return (
                    Err(format!("applying the command's changes to mount {name}: {e}")),
                    exchanged,
                );
            }
        }
        (Ok(total), exchanged)
    }
}

fn spawn_failed(what: &str, e: std::io::Error) -> ExecError {
    ExecError::SpawnFailed(format!("{what}: {}", host_error(&e)))
}

/// A host I/O error as a guest is told it: its text without "(os error
/// N)", whose N is the host's number and would be read as WASI's (the
/// host's 2, ENOENT, is WASI's EACCES).
fn host_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    text.split(" (os error ").next().unwrap_or(&text).to_owned()
}

/// Arguments as a shell would need them written, for the log.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Host for ExecView<'_> {
    async fn run(&mut self, command: Command) -> Result<Completion, ExecError> {
        self.run_command(command).await
    }

    fn host_path(&mut self, guest: String) -> Option<String> {
        self.exec
            .host_path(&guest)
            .map(|p| p.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod host_error_tests {
    #[test]
    fn host_errors_carry_no_number_a_guest_would_misread() {
        let text = super::host_error(&std::io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(text, "No such file or directory");
        // Which the guest-side mapping then leaves alone.
        assert_eq!(crate::sandbox::errno::in_host_terms(&text), text);
    }
}
