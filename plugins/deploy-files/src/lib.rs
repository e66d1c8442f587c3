//! `builtin:deploy-files`: copies a file or a directory tree, or extracts a
//! `.tar`, `.tar.gz` or `.zip` archive, into a destination.
//!
//! Archives are read twice: a first pass checks every entry (no `..`, no
//! absolute names, no symlink pointing out of the destination, no entry
//! written through a symlink of the archive) and counts the work, so a bad
//! archive is refused before anything is written.

mod archive;
mod checksum;
mod io;
mod progress;
mod safe_path;
mod tree;

use serde::Deserialize;
use std::fs;
use std::path::Path;
use stepback_sdk::{Context, Error, Info, Outcome, ResultExt, Step};

use progress::Progress;

/// How the source is deployed.
#[derive(Deserialize, schemars::JsonSchema, Default, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
enum Format {
    /// By the source: a directory is copied, `.tar`, `.tar.gz`/`.tgz` and
    /// `.zip` files are extracted, any other file is copied.
    #[default]
    Auto,
    /// Copy the file or directory as it is.
    Copy,
    Tar,
    TarGz,
    Zip,
}

/// Deploys `from` to `to`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Config {
    /// Guest path of the source file, directory or archive.
    from: String,
    /// Guest path of the destination: the file to write when copying a
    /// file, else the directory to copy or extract into (created if missing).
    to: String,
    /// Expected SHA-256 of the source file, in hex; checked before anything is written.
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    sha256: Option<String>,
    #[serde(default)]
    format: Format,
}

struct DeployFiles;

impl Step for DeployFiles {
    type Config = Config;

    fn info() -> Info {
        Info::new(
            "deploy-files",
            env!("CARGO_PKG_VERSION"),
            "Copies a file or directory tree, or extracts a .tar, .tar.gz or .zip archive, \
             with an optional SHA-256 check of the source.",
        )
        .reads("source")
        .writes("destination")
    }

    fn run(config: Config, cx: &Context) -> Result<Outcome, Error> {
        let from = Path::new(&config.from);
        let to = Path::new(&config.to);
        let meta = fs::metadata(from).context(format!("source {}", config.from))?;
        if let Some(expected) = &config.sha256 {
            if meta.is_dir() {
                return Err(Error::new(format!(
                    "sha256 is set but the source {} is a directory",
                    config.from
                )));
            }
            checksum::verify(from, expected)?;
            cx.info(format!("sha256 of {} verified", config.from));
        }
        let format = match config.format {
            Format::Auto if meta.is_dir() => Format::Copy,
            Format::Auto => by_extension(&config.from),
            other => other,
        };
        let mut progress = Progress::new(cx);
        match format {
            Format::Copy if meta.is_dir() => tree::copy_dir(from, to, &mut progress)?,
            Format::Copy => tree::copy_file(from, to, &mut progress)?,
            Format::Tar => archive::extract_tar(from, to, false, &mut progress)?,
            Format::TarGz => archive::extract_tar(from, to, true, &mut progress)?,
            Format::Zip => archive::extract_zip(from, to, &mut progress)?,
            Format::Auto => unreachable!("resolved above"),
        }
        let summary = format!(
            "{} files, {} bytes to {}",
            progress.files(),
            progress.bytes(),
            config.to
        );
        cx.info(&summary);
        Ok(Outcome::summary(summary))
    }
}

fn by_extension(name: &str) -> Format {
    let name = name.to_ascii_lowercase();
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Format::TarGz
    } else if name.ends_with(".tar") {
        Format::Tar
    } else if name.ends_with(".zip") {
        Format::Zip
    } else {
        Format::Copy
    }
}

stepback_sdk::export_step!(DeployFiles);
