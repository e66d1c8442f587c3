//! One step to run: its component, config, mounts and programs.

use crate::run::{Refused, Run};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A step to run alone in the engine, built up as a flow's step is written.
#[derive(Debug, Clone)]
pub struct Step {
    component: PathBuf,
    with: serde_json::Value,
    mounts: Vec<String>,
    execs: Vec<String>,
    rollback: bool,
}

impl Step {
    /// The component of the project under test (see the [crate] docs).
    pub fn built() -> Step {
        Step::at(crate::built::component())
    }

    /// The component in `component` (a `.wasm` file, or `builtin:NAME`).
    pub fn at(component: impl Into<PathBuf>) -> Step {
        Step {
            component: component.into(),
            with: serde_json::json!({}),
            mounts: Vec::new(),
            execs: Vec::new(),
            rollback: false,
        }
    }

    /// The step's config, its `with` table (anything that serializes to a
    /// JSON object: `serde_json::json!`, or the plugin's own config type).
    pub fn with(mut self, config: impl serde::Serialize) -> Step {
        self.with = serde_json::to_value(config).expect("the config serializes to JSON");
        self
    }

    /// Grants `host` to the step as mount `name`, read-write, seen at `guest`.
    pub fn mount(self, name: &str, host: impl AsRef<Path>, guest: &str) -> Step {
        self.grant(name, host.as_ref(), guest, "")
    }

    /// Grants `host` to the step as mount `name`, read-only, seen at `guest`.
    pub fn mount_read_only(self, name: &str, host: impl AsRef<Path>, guest: &str) -> Step {
        self.grant(name, host.as_ref(), guest, ":ro")
    }

    fn grant(mut self, name: &str, host: &Path, guest: &str, access: &str) -> Step {
        self.mounts
            .push(format!("{name}={}:{guest}{access}", host.display()));
        self
    }

    /// Lets the step run `program`, as a flow's `exec` grants it.
    pub fn exec(mut self, program: &str) -> Step {
        self.execs.push(program.to_owned());
        self
    }

    /// Reverses every change of the step once it has run, as `stepback
    /// undo` would; [`Run::rollback`] says what was undone.
    pub fn rollback(mut self) -> Step {
        self.rollback = true;
        self
    }

    /// Runs the step and waits for it. `Err` when the engine refused to
    /// run it at all (a config its schema rejects, a missing mount...); a
    /// step that runs and fails is an `Ok` run with its [`Run::outcome`].
    pub fn run(&self) -> Result<Run, Refused> {
        let state = tempfile::tempdir().expect("a temporary state directory");
        let engine = crate::built::engine();
        let mut command = Command::new(&engine);
        command
            .env("STEPBACK_STATE_DIR", state.path())
            .args(["--output", "json", "plugin", "run"])
            .arg(&self.component)
            .arg("--with")
            .arg(self.with.to_string());
        for mount in &self.mounts {
            command.arg("--mount").arg(mount);
        }
        for program in &self.execs {
            command.arg("--exec").arg(program);
        }
        if self.rollback {
            command.arg("--rollback");
        }
        let out = command.output().unwrap_or_else(|e| {
            panic!(
                "running {} (set $STEPBACK or put stepback on PATH): {e}",
                engine.display()
            )
        });
        Run::parse(
            out.status.code().unwrap_or(-1),
            &String::from_utf8_lossy(&out.stdout),
            &String::from_utf8_lossy(&out.stderr),
        )
    }
}
