//! Where Stepback keeps its state: the compiled-plugin cache now, run
//! journals later. One directory per user by default, so that runs by
//! different users never share compiled code.

use std::path::PathBuf;

/// `$XDG_STATE_HOME/stepback` (usually `~/.local/state/stepback`) on
/// Linux, the local data directory elsewhere.
pub fn default_state_dir() -> PathBuf {
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .map(|d| d.join("stepback"))
        .unwrap_or_else(|| PathBuf::from(".stepback"))
}

/// The compiled-plugin cache inside a state directory.
pub fn cache_dir(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("cache")
}
