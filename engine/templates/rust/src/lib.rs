//! `{{name}}`: a Stepback step plugin. It writes one file; make it yours.
//!
//! The step does ordinary file I/O (`std::fs`) on the guest paths of the
//! mounts the flow grants it: the host journals every change, and reverses
//! them all when the flow fails. Failing is returning `Err`.

use serde::Deserialize;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use stepback_sdk::{Context, Error, Info, Outcome, ResultExt, Step};

/// The step's `with` table. Its JSON Schema, which `stepback validate`
/// checks a flow against, is generated from this type (doc comments
/// become descriptions).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Config {
    /// Guest path of the file to write, beneath a read-write mount.
    path: String,
    /// What to write.
    text: String,
    /// Replace the file if it exists.
    #[serde(default)]
    overwrite: bool,
}

struct Plugin;

impl Step for Plugin {
    type Config = Config;

    fn info() -> Info {
        Info::new("{{name}}", env!("CARGO_PKG_VERSION"), "Writes a file.").writes("target")
    }

    fn run(config: Config, cx: &Context) -> Result<Outcome, Error> {
        let mut options = OpenOptions::new();
        match config.overwrite {
            true => options.create(true).truncate(true),
            false => options.create_new(true),
        };
        let mut file = match options.write(true).open(&config.path) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(Error::new(format!(
                    "{} already exists (set overwrite = true to replace it)",
                    config.path
                )));
            }
            opened => opened.context(format!("opening {}", config.path))?,
        };
        file.write_all(config.text.as_bytes())
            .context(format!("writing {}", config.path))?;
        cx.info(format!("wrote {} bytes to {}", config.text.len(), config.path));
        cx.progress(1, Some(1), "files");
        Ok(Outcome::summary(format!(
            "wrote {} ({} bytes)",
            config.path,
            config.text.len()
        )))
    }
}

stepback_sdk::export_step!(Plugin);
