//! What a flow grants a step: directories and how it may use them, and the
//! resources it may spend. A leaf that both [`crate::flow`] (which reads
//! grants from the flow file) and [`crate::sandbox`] (which enforces them)
//! depend on, so that neither depends on the other for them.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How a mount is granted. A read-only mount cannot be written by any
/// step: the guest gets an error code, and the flow goes on as the step decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Access {
    /// Steps may read, not change, anything there.
    ReadOnly,
    /// Steps may change it; every change is journaled and undone if the flow fails.
    ReadWrite,
}

/// A host directory granted to steps, as validation resolved it.
#[derive(Debug, Clone)]
pub struct Mount {
    /// The mount's name in the flow.
    pub name: String,
    /// Canonical host directory.
    pub host: PathBuf,
    /// Where guests see it.
    pub guest: String,
    /// What steps may do there.
    pub access: Access,
}

/// What one step may use. Defaults suit deploy-sized work; a step
/// overrides them with `[steps.limits]` in the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall time of the whole step, host calls included.
    pub time: Duration,
    /// Bytes of linear memory, per memory of the component.
    pub memory: u64,
    /// Descriptors and directory listings the step may hold at once: each
    /// costs the host a file descriptor or memory, which the memory limit
    /// does not cover; past it, opens fail with `insufficient-memory`.
    pub descriptors: usize,
    /// Processes (and threads) a command's whole tree may have at once:
    /// past it, `fork` and `clone` fail, and the command is stopped.
    pub processes: u32,
    /// CPU time a command's whole tree may spend; `None`: only the wall
    /// time bounds it.
    pub cpu: Option<Duration>,
}

impl Limits {
    /// Time a step may take unless the flow says otherwise.
    pub const DEFAULT_TIME: Duration = Duration::from_secs(300);
    /// Linear memory a step may use unless the flow says otherwise.
    pub const DEFAULT_MEMORY: u64 = 512 << 20;
    /// Descriptors and listings a step may hold unless the flow says otherwise.
    pub const DEFAULT_DESCRIPTORS: usize = 256;
    /// Far below the engine's own descriptor limit, which it raises to
    /// the system's hard limit when it starts.
    pub const MAX_DESCRIPTORS: usize = 4096;
    /// Below this a Rust component cannot even start.
    pub const MIN_MEMORY: u64 = 2 << 20;
    /// Processes a command's tree may have unless the flow says otherwise:
    /// plenty for a package manager or a build, far from a fork bomb's.
    pub const DEFAULT_PROCESSES: u32 = 256;
    /// The kernel's own limit on process IDs is far above; past this a
    /// limit limits nothing.
    pub const MAX_PROCESSES: u32 = 32_768;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time: Self::DEFAULT_TIME,
            memory: Self::DEFAULT_MEMORY,
            descriptors: Self::DEFAULT_DESCRIPTORS,
            processes: Self::DEFAULT_PROCESSES,
            cpu: None,
        }
    }
}

/// The commands a step may run (`exec = [...]` in the flow) and what
/// else they get.
#[derive(Debug, Clone, Default)]
pub struct Exec {
    /// The programs, as the flow names them and as validation resolved
    /// them (absolute paths).
    pub programs: Vec<Program>,
    /// Variables of [`changes_code`] the plugin may set nonetheless
    /// (`exec-env = [...]`).
    pub env: Vec<String>,
    /// Unix sockets outside the mounts commands may connect to (canonical
    /// host paths): in `/run` or `/tmp`, which commands get private, they
    /// are bound into the command's own.
    pub sockets: Vec<PathBuf>,
    /// Whether commands reach the network (otherwise they get a network
    /// namespace of their own with nothing in it).
    pub network: bool,
    /// How their file changes are captured.
    pub capture: Capture,
    /// With [`Capture::Snapshot`], the paths copied before each command.
    pub snapshot: Vec<SnapshotPath>,
    /// Directories no command sees (each behind an empty read-only
    /// tmpfs): Stepback's own state and cache, which hold other runs'
    /// journals and backups and the compiled code it trusts.
    pub hidden: Vec<PathBuf>,
}

impl Exec {
    /// What its commands reach beyond their mounts, as a flow grants it
    /// (empty: nothing).
    pub fn reach(&self) -> String {
        let mut reach = Vec::new();
        if self.network {
            reach.push("network = true".to_owned());
        }
        if !self.sockets.is_empty() {
            let sockets: Vec<String> = self
                .sockets
                .iter()
                .map(|s| format!("{:?}", s.display().to_string()))
                .collect();
            reach.push(format!("sockets = [{}]", sockets.join(", ")));
        }
        if !self.env.is_empty() {
            let env: Vec<String> = self.env.iter().map(|v| format!("{v:?}")).collect();
            reach.push(format!("exec-env = [{}]", env.join(", ")));
        }
        reach.join(", ")
    }
}

/// A path of a read-write mount that commands' snapshots cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPath {
    /// The mount's name.
    pub mount: String,
    /// The path in the mount (`""`: all of it).
    pub rel: String,
}

impl Mount {
    /// Where guest path `guest` is on the host, if it is in this mount
    /// (absolute, without `.` or `..`): commands see mounts there.
    pub fn host_path(&self, guest: &str) -> Option<PathBuf> {
        let path = std::path::Path::new(guest);
        let clean = path.is_absolute()
            && path
                .components()
                .all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)));
        clean.then_some(())?;
        Some(self.host.join(path.strip_prefix(&self.guest).ok()?))
    }
}

impl Exec {
    /// The granted program `name` names: by the name the flow gives it,
    /// or by a path to the same file (`/bin/sh` for `sh` found as
    /// `/usr/bin/sh`, where `/bin` links to `/usr/bin`).
    pub fn find(&self, name: &str) -> Option<&Program> {
        let path = std::path::Path::new(name);
        let canonical = || std::fs::canonicalize(path).ok();
        self.programs.iter().find(|p| {
            p.name == name
                || p.path == path
                || (path.is_absolute()
                    && canonical().is_some_and(|c| std::fs::canonicalize(&p.path).ok() == Some(c)))
        })
    }

    /// The names of the granted programs, for messages.
    pub fn listed(&self) -> String {
        match self.programs.is_empty() {
            true => "the step grants none".to_owned(),
            false => self
                .programs
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Environment variables that make a program load or run other code than
/// the file the grant names: the dynamic loader's, shells' start-up files
/// and exported functions, interpreters' module paths and options, the
/// search path of the programs a script runs, the home and configuration
/// directories programs read start-up code and settings from (Python's
/// user site, Git's and OpenSSL's configuration), the helper programs they
/// start (pagers, editors, `ssh`), and toolchains' wrappers and plugin
/// paths. A plugin setting one of these would run code of its choosing
/// inside a granted program, so it must be granted by name (`exec-env`).
/// Names, and prefixes ending `*`.
///
/// A list of what is known, not a proof: a granted program's own
/// arguments can do as much (`python3 -c`, `git -c core.pager=...`), so a
/// grant is a program whose arguments and settings the step's plugin may
/// choose. Grant an interpreter only to a plugin you would let run code.
pub const CODE_ENV: &[&str] = &[
    // The dynamic loader and the C library.
    "LD_*",
    "GLIBC_TUNABLES",
    "GCONV_PATH",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "RESOLV_HOST_CONF",
    // Where programs and their start-up files are found.
    "PATH",
    "HOME",
    "XDG_*",
    // Shells.
    "BASH_ENV",
    "ENV",
    "BASH_FUNC_*",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "SHELL",
    // Helper programs that programs start.
    "PAGER",
    "MANPAGER",
    "SYSTEMD_PAGER",
    "LESSOPEN",
    "LESSCLOSE",
    "EDITOR",
    "VISUAL",
    "BROWSER",
    "SSH_ASKPASS",
    "SUDO_ASKPASS",
    "GIT_*",
    "SSH_*",
    // Libraries that load modules named by their configuration.
    "OPENSSL_*",
    "KRB5*",
    "GTK_*",
    "QT_*",
    "GST_*",
    "GIO_*",
    "PKCS11_*",
    // Interpreters and their package managers.
    "PYTHON*",
    "PERL*",
    "RUBY*",
    "GEM_*",
    "BUNDLE_*",
    "NODE_*",
    "NPM_*",
    "npm_*",
    "LUA_*",
    "PHPRC",
    "PHP_INI_SCAN_DIR",
    "TCLLIBPATH",
    "GUILE_*",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "DOTNET_*",
    "CORECLR_*",
    "COMPlus_*",
    // Toolchains' wrappers and plugins.
    "CARGO_*",
    "RUSTC*",
    "RUSTFLAGS",
    "GOFLAGS",
    "CC",
    "CXX",
    "MAKEFLAGS",
    "MFLAGS",
];

/// [`CODE_ENV`] as messages show it.
pub fn code_env_shown() -> String {
    CODE_ENV.join(", ")
}

/// Whether environment variable `name` changes what code a program loads
/// or runs ([`CODE_ENV`]).
pub fn changes_code(name: &str) -> bool {
    CODE_ENV.iter().any(|pattern| match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *pattern,
    })
}

/// A program a step may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// As the flow writes it.
    pub name: String,
    /// The file that runs.
    pub path: PathBuf,
    /// For a program in a mount some step may write: the SHA-256 of its
    /// contents when the flow was validated, which it must still have
    /// when it runs (a plugin could rewrite it, `#!` line and all).
    pub pinned: Option<[u8; 32]>,
}

impl Program {
    /// Whether the file still holds what it held when validated (always,
    /// for one no step can write).
    pub fn unchanged(&self) -> std::io::Result<bool> {
        match self.pinned {
            None => Ok(true),
            Some(digest) => Ok(file_digest(&self.path)? == digest),
        }
    }
}

/// The SHA-256 of the contents of the file at `path`.
pub fn file_digest(path: &std::path::Path) -> std::io::Result<[u8; 32]> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hasher.finalize().into())
}

/// How the file changes of a step's commands are captured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Capture {
    /// Each read-write mount is an overlay while the command runs; its
    /// upper layer is applied through the journal afterwards.
    #[default]
    Overlay,
    /// The paths the step lists (`snapshot = [...]`) are copied before
    /// each command, which then writes the mounts directly; a rollback
    /// puts those paths back whole. Changes elsewhere are not reversible.
    Snapshot,
    /// Not captured: the command writes the mounts directly, and the run
    /// is marked as not wholly reversible.
    None,
}

/// Everything a flow grants one step.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// The directories it sees.
    pub mounts: Vec<Mount>,
    /// The commands it may run.
    pub exec: Exec,
}

/// What a script's `#!` line runs: the program, and the one argument
/// the line may give it (`/usr/bin/env NAME` runs NAME, with none).
pub fn shebang(script: &[u8]) -> Option<(String, Option<String>)> {
    let line = script.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line.strip_prefix(b"#!")?).ok()?.trim();
    let (program, arg) = match line.split_once(char::is_whitespace) {
        Some((program, arg)) => (program, Some(arg.trim().to_owned())),
        None => (line, None),
    };
    match (program.rsplit('/').next(), &arg) {
        (Some("env"), Some(name)) if !name.starts_with('-') && !name.contains(char::is_whitespace) => {
            Some((name.clone(), None))
        }
        _ if program.is_empty() => None,
        _ => Some((program.to_owned(), arg)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shebang_names_its_program_and_argument() {
        let line = |s: &str| shebang(s.as_bytes());
        assert_eq!(line("#!/bin/sh\necho"), Some(("/bin/sh".into(), None)));
        assert_eq!(
            line("#! /bin/bash -e\n"),
            Some(("/bin/bash".into(), Some("-e".into())))
        );
        assert_eq!(line("#!/usr/bin/env python3\n"), Some(("python3".into(), None)));
        // env with a flag runs env itself, which must then be granted.
        assert_eq!(
            line("#!/usr/bin/env -S a b\n"),
            Some(("/usr/bin/env".into(), Some("-S a b".into())))
        );
        assert_eq!(line("echo no shebang"), None);
        assert_eq!(line("#!\n"), None);
    }

    #[test]
    fn variables_that_change_what_runs_are_told_apart() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "BASH_ENV",
            "BASH_FUNC_ls%%",
            "PYTHONPATH",
            "PATH",
            "HOME",
            "GIT_CONFIG_COUNT",
            "XDG_CONFIG_HOME",
        ] {
            assert!(changes_code(name), "{name}");
        }
        for name in ["LANG", "GREETING", "MYPATH", "XLD_PRELOAD", "TZ"] {
            assert!(!changes_code(name), "{name}");
        }
    }

    #[test]
    fn a_program_is_found_by_name_or_by_a_path_to_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("tool");
        std::fs::write(&real, "#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("alias")).unwrap();
        let exec = Exec {
            programs: vec![Program {
                name: "tool".into(),
                path: real.clone(),
                pinned: None,
            }],
            ..Exec::default()
        };
        assert!(exec.find("tool").is_some());
        assert!(exec.find(real.to_str().unwrap()).is_some());
        assert!(exec.find(dir.path().join("alias").to_str().unwrap()).is_some());
        assert!(
            exec.find("alias").is_none(),
            "a bare name is matched by name only"
        );
        assert!(exec.find("/bin/true").is_none());
        assert_eq!(exec.listed(), "tool");
        assert_eq!(Exec::default().listed(), "the step grants none");
    }

    #[test]
    fn a_guest_path_maps_into_its_mount_only() {
        let m = Mount {
            name: "app".into(),
            host: PathBuf::from("/srv/app"),
            guest: "/app".into(),
            access: Access::ReadWrite,
        };
        assert_eq!(
            m.host_path("/app/bin/run"),
            Some(PathBuf::from("/srv/app/bin/run"))
        );
        assert_eq!(m.host_path("/app"), Some(PathBuf::from("/srv/app/")));
        assert_eq!(m.host_path("/apple"), None);
        assert_eq!(m.host_path("/app/../etc"), None);
        assert_eq!(m.host_path("app/x"), None);
    }
}
