//! `builtin:remove`: deletes a file, a symlink or a directory tree.

use serde::Deserialize;
use std::fs;
use std::io::ErrorKind;
use stepback_sdk::{Context, Error, Info, Outcome, ResultExt, Step};

/// Deletes `path`; a directory is deleted with everything beneath it.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Config {
    /// Guest path to delete, beneath a read-write mount.
    path: String,
    /// Succeed when the path does not exist, instead of failing.
    #[serde(default)]
    missing_ok: bool,
}

struct Remove;

impl Step for Remove {
    type Config = Config;

    fn info() -> Info {
        Info::new(
            "remove",
            env!("CARGO_PKG_VERSION"),
            "Deletes a file, a symlink or a directory tree.",
        )
        .writes("target")
    }

    fn run(config: Config, cx: &Context) -> Result<Outcome, Error> {
        // Refused before anything goes: a mount's root cannot be removed,
        // and removing all it holds first would fail only at the end.
        if let Some(mount) = cx
            .mounts()
            .iter()
            .find(|m| lexical(&m.guest_path) == lexical(&config.path))
        {
            return Err(Error::new(format!(
                "{} is the root of mount '{}': a step cannot remove a mount (to empty it, remove what it holds)",
                config.path, mount.name
            )));
        }
        let meta = match fs::symlink_metadata(&config.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound && config.missing_ok => {
                cx.info(format!("{} does not exist; nothing to remove", config.path));
                return Ok(Outcome::summary(format!("{} was already absent", config.path)));
            }
            Err(e) => return Err(Error::new(format!("{}: {e}", config.path))),
        };
        if meta.is_dir() {
            fs::remove_dir_all(&config.path).context(format!("removing {}", config.path))?;
        } else {
            fs::remove_file(&config.path).context(format!("removing {}", config.path))?;
        }
        cx.info(format!("removed {}", config.path));
        Ok(Outcome::summary(format!("removed {}", config.path)))
    }
}

/// `path` with `.`, `..` and repeated or trailing slashes resolved
/// lexically, as the components a mount's guest path is compared by.
fn lexical(path: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts
}

stepback_sdk::export_step!(Remove);
