//! Where Stepback keeps its state: run journals and records, and the
//! compiled-plugin cache. One directory per user by default, so that runs
//! by different users never share compiled code.

use std::path::PathBuf;

/// `/var/lib/stepback` for root; otherwise `$XDG_STATE_HOME/stepback`
/// (usually `~/.local/state/stepback`) on Linux, the local data directory
/// elsewhere.
pub fn default_state_dir() -> PathBuf {
    // Where operators look for a system service's state.
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/stepback");
    }
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .map(|d| d.join("stepback"))
        .unwrap_or_else(|| PathBuf::from(".stepback"))
}

/// The compiled-plugin cache inside a state directory.
pub fn cache_dir(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("cache")
}

/// Creates `dir` (and missing parents) readable and writable by this user
/// only, or checks that an existing one is owned by this user and not
/// writable by anyone else. Stepback trusts what it finds there (journals
/// it rolls back from, compiled code it runs), so a directory others can
/// write is refused, with what to do about it.
pub fn ensure_private(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let meta = std::fs::metadata(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    if meta.uid() != me {
        anyhow::bail!(
            "{} belongs to uid {}, not to this user (uid {me}); Stepback trusts the journals and compiled code in it, so it must be this user's own",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        anyhow::bail!(
            "{} can be written by others (mode {:o}); Stepback trusts the journals and compiled code in it: run `chmod go-w {}`",
            dir.display(),
            meta.mode() & 0o777,
            dir.display()
        );
    }
    Ok(())
}
