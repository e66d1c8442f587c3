//! `builtin:write-file`: writes a file from inline content.

use serde::Deserialize;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use stepback_sdk::{Context, Error, Info, Outcome, ResultExt, Step};

/// Writes `content` to `path`, creating missing parent directories.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Config {
    /// Guest path of the file to write, beneath a read-write mount.
    path: String,
    /// The text to write; `${param}` references are already substituted.
    content: String,
    /// Append to the file instead of replacing it.
    #[serde(default)]
    append: bool,
}

struct WriteFile;

impl Step for WriteFile {
    type Config = Config;

    fn info() -> Info {
        Info::new(
            "write-file",
            env!("CARGO_PKG_VERSION"),
            "Writes a file from inline content, creating parent directories.",
        )
        .writes("target")
    }

    fn run(config: Config, cx: &Context) -> Result<Outcome, Error> {
        let path = Path::new(&config.path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).context(format!("creating {}", parent.display()))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(config.append)
            .truncate(!config.append)
            .open(path)
            .context(format!("opening {}", config.path))?;
        file.write_all(config.content.as_bytes())
            .context(format!("writing {}", config.path))?;
        let verb = if config.append { "appended" } else { "wrote" };
        cx.info(format!(
            "{verb} {} bytes to {}",
            config.content.len(),
            config.path
        ));
        Ok(Outcome::summary(format!(
            "{verb} {} ({} bytes)",
            config.path,
            config.content.len()
        )))
    }
}

stepback_sdk::export_step!(WriteFile);
