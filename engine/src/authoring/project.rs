//! A plugin project: its `plugin.toml` (name, build and test commands, as
//! `stepback plugin new` writes it), the build, which leaves `NAME.wasm`
//! beside the manifest, and the test, which runs the project's own tests
//! against what the build left.

use anyhow::{Context as _, bail};
use serde::Deserialize;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The manifest's name in a project's directory.
pub const MANIFEST: &str = "plugin.toml";

/// A project's `plugin.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: String,
    build: BuildSection,
    test: Option<TestSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildSection {
    /// Run by `sh -c` in the project's directory.
    command: String,
    /// What the command leaves, relative to the project's directory.
    output: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSection {
    command: String,
}

/// A project read from its manifest.
#[derive(Debug)]
pub struct Project {
    dir: PathBuf,
    manifest: Manifest,
}

/// What the build command made, where it made it: checked (by the
/// caller) before [`Made::install`] puts it where tests and flows take it.
#[derive(Debug)]
pub struct Made {
    /// The build's output, as `plugin.toml` names it.
    pub path: PathBuf,
    /// How long the language's tool took.
    pub took: Duration,
    wasm: PathBuf,
}

/// A component installed as `NAME.wasm` in the project's directory.
#[derive(Debug)]
pub struct Built {
    /// `NAME.wasm` in the project's directory.
    pub wasm: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// How long the language's tool took.
    pub took: Duration,
}

impl Made {
    /// Copies the component to `NAME.wasm`, through a temporary file: a
    /// test or flow reading the old one never sees half of the new one.
    pub fn install(self) -> anyhow::Result<Built> {
        let partial = self.wasm.with_extension("wasm.partial");
        let installed = std::fs::copy(&self.path, &partial)
            .with_context(|| format!("copying what the build made, {}", self.path.display()))
            .and_then(|bytes| {
                std::fs::rename(&partial, &self.wasm)
                    .map(|()| bytes)
                    .with_context(|| format!("writing {}", self.wasm.display()))
            });
        if installed.is_err() {
            // Nothing half-installed is left behind.
            let _ = std::fs::remove_file(&partial);
        }
        let bytes = installed?;
        Ok(Built {
            wasm: self.wasm,
            bytes,
            took: self.took,
        })
    }
}

impl Project {
    /// Reads `dir/plugin.toml`.
    pub fn open(dir: &Path) -> anyhow::Result<Project> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (every plugin project has one)", path.display()))?;
        let manifest: Manifest = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        // The component is installed as NAME.wasm beside the manifest: a
        // name such as `../x` would put it elsewhere.
        super::scaffold::check_name(&manifest.name)
            .with_context(|| format!("`name` in {}", path.display()))?;
        Ok(Project {
            // Absolute: the tests, run in `dir`, get paths beneath it.
            dir: std::path::absolute(dir).with_context(|| format!("finding {}", dir.display()))?,
            manifest,
        })
    }

    /// The plugin's name, as the manifest says it.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The project's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the build leaves the component.
    pub fn wasm(&self) -> PathBuf {
        self.dir.join(format!("{}.wasm", self.manifest.name))
    }

    /// Runs the build command (its output to `stdout`, its errors to
    /// ours) and finds what it made.
    pub fn build(&self, stdout: Stdio) -> anyhow::Result<Made> {
        let build = &self.manifest.build;
        let start = Instant::now();
        let status = self.shell(&build.command, stdout, &[])?;
        if !status.success() {
            bail!("the build command `{}` failed ({status})", build.command);
        }
        let path = self.dir.join(&build.output);
        if !path.is_file() {
            bail!(
                "the build command `{}` made no {} (the output plugin.toml names)",
                build.command,
                path.display()
            );
        }
        Ok(Made {
            path,
            took: start.elapsed(),
            wasm: self.wasm(),
        })
    }

    /// Runs the test command with `env` added (its output to `stdout`).
    pub fn test(&self, stdout: Stdio, env: &[(&str, &OsStr)]) -> anyhow::Result<ExitStatus> {
        let Some(test) = &self.manifest.test else {
            bail!("{} has no [test] command", self.dir.join(MANIFEST).display());
        };
        self.shell(&test.command, stdout, env)
    }

    fn shell(&self, command: &str, stdout: Stdio, env: &[(&str, &OsStr)]) -> anyhow::Result<ExitStatus> {
        Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&self.dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .status()
            .with_context(|| format!("starting `{command}` in {}", self.dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_whose_name_leaves_the_project_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let manifest =
            "name = \"../x\"\n[build]\ncommand = \"true\"\noutput = \"x.wasm\"\n[test]\ncommand = \"true\"\n";
        std::fs::write(dir.path().join(MANIFEST), manifest).unwrap();
        let error = format!("{:#}", Project::open(dir.path()).unwrap_err());
        assert!(
            error.contains("`name` in") && error.contains("is not a plugin name"),
            "{error}"
        );
    }
}
