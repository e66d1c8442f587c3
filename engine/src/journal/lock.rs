//! Locks that keep two flows from changing the same directories at once.
//!
//! A mount locks its own directory exclusively and every directory above
//! it shared (intention locks): two flows mounting `/srv/a` and `/srv/b`
//! both hold `/srv` shared and go on together; a flow mounting `/srv`
//! wants `/srv` exclusive and is refused while either runs, and a flow
//! mounting `/srv/a/x` wants `/srv/a` shared and is refused while the
//! first runs. Locks are `flock`s on files under `STATE/locks`, one per
//! directory path, released by the kernel when the process exits, however
//! it exits. The holder of an exclusive lock writes who it is into the
//! file, for the message another process shows.

use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

pub struct MountLocks {
    _files: Vec<File>,
}

/// How a lock is held.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// A directory above a mount.
    Shared,
    /// The mount's own directory.
    Exclusive,
}

/// A mount another flow holds (the error taking a run's mount locks gives
/// then, with who holds it): worth waiting for, unlike the others. `run`,
/// `undo` and `recover` all say it with this one type.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InUse {
    /// The mount's name in the flow.
    pub mount: String,
    /// Its host directory.
    pub host: PathBuf,
    /// Who holds it, as the holder said (`run 2026... of flow 'x' (pid
    /// 123)`), or what holds a directory above it.
    pub holder: String,
}

impl InUse {
    /// Whether `e` (from taking a mount's lock) is a mount in use, and which.
    pub fn of(e: &anyhow::Error) -> Option<InUse> {
        e.downcast_ref::<InUse>().cloned()
    }
}

impl std::fmt::Display for InUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mount '{}' ({}) is in use by another flow: {}",
            self.mount,
            self.host.display(),
            self.holder
        )
    }
}

impl std::error::Error for InUse {}

impl MountLocks {
    /// Locks every `(name, host path)` (host paths canonical); `holder`
    /// says who holds the locks. Checks first that the state directory is
    /// private ([`crate::state::ensure_private`]).
    pub fn acquire(
        state_dir: &Path,
        mounts: &[(String, PathBuf)],
        holder: &str,
    ) -> anyhow::Result<MountLocks> {
        crate::state::ensure_private(state_dir)?;
        let dir = state_dir.join("locks");
        fs::create_dir_all(&dir)?;
        // Every path once, with the strongest hold asked for it.
        let mut wanted: Vec<(&Path, Hold, &str, &Path)> = Vec::new();
        for (name, host) in mounts {
            let above = host.ancestors().skip(1).map(|p| (p, Hold::Shared));
            for (path, hold) in std::iter::once((host.as_path(), Hold::Exclusive)).chain(above) {
                let want = (path, hold, name.as_str(), host.as_path());
                match wanted.iter_mut().find(|(p, ..)| *p == path) {
                    Some(w) if hold == Hold::Exclusive => *w = want,
                    Some(_) => {}
                    None => wanted.push(want),
                }
            }
        }
        let mut files = Vec::new();
        for (path, hold, name, host) in wanted {
            files.push(lock(&dir, path, hold, (name, host), holder)?);
        }
        Ok(MountLocks { _files: files })
    }
}

/// Takes the lock of `path`, for `mount` (its name and host directory).
fn lock(dir: &Path, path: &Path, hold: Hold, mount: (&str, &Path), holder: &str) -> anyhow::Result<File> {
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    let key: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(format!("{key}.lock")))?;
    let taken = match hold {
        Hold::Shared => file.try_lock_shared(),
        Hold::Exclusive => file.try_lock(),
    };
    match taken {
        Ok(()) => {
            if hold == Hold::Exclusive {
                file.set_len(0)?;
                file.rewind()?;
                writeln!(file, "{holder}")?;
            }
            Ok(file)
        }
        Err(TryLockError::WouldBlock) => {
            // Held shared only (a shared probe gets it): by flows whose
            // mounts lie beneath; the name in the file is a past holder's.
            let shared_only = hold == Hold::Exclusive && file.try_lock_shared().is_ok();
            let mut who = String::new();
            file.read_to_string(&mut who)?;
            let who = match shared_only {
                true => "a flow with a mount inside it".to_owned(),
                false => who.trim().to_owned(),
            };
            let held = match hold {
                Hold::Exclusive => String::new(),
                Hold::Shared => format!(", which mounts {} above it", path.display()),
            };
            Err(InUse {
                mount: mount.0.to_owned(),
                host: mount.1.to_path_buf(),
                holder: format!("{who}{held}"),
            }
            .into())
        }
        Err(TryLockError::Error(e)) => Err(e.into()),
    }
}
