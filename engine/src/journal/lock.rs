//! One lock per mount, so that two flows never change the same directory
//! at once. Locks are `flock`s on files under `STATE/locks`, released by
//! the kernel when the process exits, however it exits.

use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

pub struct MountLocks {
    _files: Vec<File>,
}

impl MountLocks {
    /// Locks every `(name, host path)`; `holder` says who holds the locks,
    /// for the message another process shows when it finds them taken.
    pub fn acquire(
        state_dir: &Path,
        mounts: &[(String, PathBuf)],
        holder: &str,
    ) -> anyhow::Result<MountLocks> {
        let dir = state_dir.join("locks");
        fs::create_dir_all(&dir)?;
        let mut files = Vec::new();
        for (name, host) in mounts {
            let digest = Sha256::digest(host.as_os_str().as_encoded_bytes());
            let key: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            let path = dir.join(format!("{key}.lock"));
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            match file.try_lock() {
                Ok(()) => {
                    file.set_len(0)?;
                    file.rewind()?;
                    writeln!(file, "{holder}")?;
                    files.push(file);
                }
                Err(TryLockError::WouldBlock) => {
                    let mut who = String::new();
                    file.read_to_string(&mut who)?;
                    anyhow::bail!(
                        "mount '{name}' ({}) is in use by another flow: {}",
                        host.display(),
                        who.trim()
                    );
                }
                Err(TryLockError::Error(e)) => return Err(e.into()),
            }
        }
        Ok(MountLocks { _files: files })
    }
}
