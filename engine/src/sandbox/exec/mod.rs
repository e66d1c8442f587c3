//! `stepback:plugin/exec`: commands a step runs natively, their file
//! changes captured by overlays ([`namespace`]) and applied through the
//! journal once they exit ([`apply`]).

mod apply;
mod namespace;
mod output;
mod seccomp;

use super::bindings::stepback::plugin::exec::{Command, Completion, ExecError, Host, Status};
use super::host::HostState;
use crate::events::LogLevel;
use crate::grant::{Access, Capture, Exec, Mount};
use crate::journal::Recorder;
use cap_std::fs::Dir;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::HasData;

/// A step's part of the exec capability.
pub struct ExecState {
    grant: Exec,
    /// Added to every command's environment before the plugin's own.
    env: Vec<(String, String)>,
    mounts: Vec<ExecMount>,
    recorder: Option<Arc<Mutex<dyn Recorder>>>,
    /// Where the overlays' upper layers are made, one directory per
    /// command: in the run's backup area when the run is journaled, so that
    /// originals exchanged into them are backups where they land.
    scratch: PathBuf,
    /// When the step must end: no command runs past it.
    deadline: Instant,
    /// Commands run so far, naming their scratch directories.
    count: usize,
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
        recorder: Option<Arc<Mutex<dyn Recorder>>>,
        scratch: PathBuf,
        time: Duration,
    ) -> ExecState {
        ExecState {
            grant,
            env,
            mounts,
            recorder,
            scratch,
            deadline: Instant::now() + time,
            count: 0,
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
}

impl Layer {
    /// Makes the layers in `dir` for mount `mount`; the upper one's root
    /// gets the attributes of the mount's root (`root`), which the command
    /// sees there, so that what it changes of them shows.
    fn make(dir: &Path, mount: &str, root: Option<&cap_std::fs::Metadata>) -> std::io::Result<Layer> {
        let base = dir.join(mount);
        let (upper, work) = (base.join("upper"), base.join("work"));
        std::fs::create_dir_all(&upper)?;
        std::fs::create_dir_all(&work)?;
        if let Some(meta) = root {
            let base = Dir::open_ambient_dir(&base, cap_std::ambient_authority())?;
            match rustix::process::geteuid().is_root() {
                true => crate::journal::set_attributes(&base, "upper", meta)?,
                // Without root, an owner other than itself is out of reach.
                false => {
                    base.set_permissions("upper", meta.permissions())?;
                    crate::journal::set_times(&base, "upper", meta)?;
                }
            }
        }
        Ok(Layer { upper, work })
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
            "program {:?} ({}) cannot be checked against what was validated: {e}",
            p.name,
            p.path.display()
        ))),
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
        self.exec.count += 1;
        let dir = self.exec.scratch.join(format!("command-{}", self.exec.count));
        let captured = self.exec.grant.capture == Capture::Overlay;
        let shown = format!("{} {}", command.program, shell_words(&command.args));
        if !captured {
            self.snapshot()?;
            self.uncaptured(&shown)?;
        }
        let writable: Vec<&ExecMount> = self
            .exec
            .mounts
            .iter()
            .filter(|m| captured && m.mount.access == Access::ReadWrite)
            .collect();
        let mut layers = Vec::new();
        let mut overlays = Vec::new();
        for m in &writable {
            let layer = m
                .root()
                .and_then(|root| Layer::make(&dir, &m.mount.name, Some(&root.dir_metadata()?)))
                .map_err(|e| spawn_failed("making the overlay's layers", e))?;
            let pinned = m.pinned.as_ref().map(|f| std::os::fd::AsRawFd::as_raw_fd(&**f));
            overlays.push(layer.overlay(&m.mount.host, pinned));
            layers.push(layer);
        }
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
        let jail = namespace::Jail::new(&overlays, (&visible, &grant.hidden), &cwd, grant.network)
            .map_err(|e| spawn_failed("preparing the namespace and its overlays", e))?;
        let privilege = jail.privilege();

        let mut cmd = std::process::Command::new(&program);
        cmd.args(&args)
            .env_clear()
            .envs(BASE_ENV.iter().copied())
            .envs(self.exec.env.iter().map(|(k, v)| (k, v)))
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .stdin(if command.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        jail.enter(&mut cmd);
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| spawn_failed(&format!("starting {}", program.display()), e))?;
        drop(jail);
        self.host.record_log(LogLevel::Info, format!("running {shown}"));

        let stdin = child.stdin.take();
        let input = command.stdin.unwrap_or_default();
        let feed = async move {
            if let Some(mut stdin) = stdin {
                use tokio::io::AsyncWriteExt;
                // A command that does not read its input just closes it.
                let _ = stdin.write_all(&input).await;
            }
        };
        let mut lines = output::Lines::new(child.stdout.take(), child.stderr.take());
        let mut tail = output::Tail::default();
        let waited = tokio::time::timeout(timeout, async {
            let ((), ()) = tokio::join!(feed, async {
                while let Some((level, line)) = lines.next().await {
                    tail.push(&line);
                    self.host.record_log(level, line);
                }
            });
            child.wait().await
        })
        .await;
        let status = match waited {
            Err(_) => {
                let _ = child.kill().await;
                let _ = crate::journal::remove_all(&dir);
                let _ = std::fs::remove_dir(&self.exec.scratch);
                let changes = match captured {
                    true => "its file changes were discarded",
                    false => "what it changed is as it left it (it ran uncaptured)",
                };
                self.host.record_log(
                    LogLevel::Warn,
                    format!(
                        "{} timed out after {}: killed with everything it started; {changes}",
                        command.program,
                        humantime::format_duration(timeout)
                    ),
                );
                return Ok(Completion {
                    status: Status::TimedOut,
                    output_tail: tail.into_string(),
                    changes: 0,
                });
            }
            Ok(Err(e)) => return Err(spawn_failed("waiting for the command", e)),
            Ok(Ok(status)) => status,
        };
        let code = status
            .code()
            .unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0));
        let applying = Instant::now();
        let (changes, exchanged) = self.apply(&writable_names(&writable), &layers, privilege);
        let applied_in = applying.elapsed();
        if exchanged == 0 {
            let _ = crate::journal::remove_all(&dir);
            let _ = std::fs::remove_dir(&self.exec.scratch);
        } else {
            // The upper layers hold originals now: backups, pruned with
            // the run's.
            for layer in &layers {
                let _ = crate::journal::remove_all(&layer.work);
            }
        }
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
        Ok(Completion {
            status: Status::Exited(code),
            output_tail: tail.into_string(),
            changes,
        })
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
                    self.exec.recorder.as_ref(),
                    &layer.upper,
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

fn writable_names(mounts: &[&ExecMount]) -> Vec<String> {
    mounts.iter().map(|m| m.mount.name.clone()).collect()
}

fn spawn_failed(what: &str, e: std::io::Error) -> ExecError {
    ExecError::SpawnFailed(format!("{what}: {e}"))
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
