//! The flow file as written: plain serde types, checked for unknown keys
//! and wrong types while parsing; everything else is checked in
//! [`super::validate`].

use crate::grant::{Access, Capture};
use serde::Deserialize;
use std::collections::BTreeMap;

/// A flow file. Keys are kebab-case in both TOML and JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FlowFile {
    /// The flow's name, in messages and the run's record.
    pub name: String,
    #[serde(default)]
    /// What the flow is for, for people.
    pub description: Option<String>,
    /// Update parameters, referenced as `${name}` in step configs and mount
    /// host paths; `--param name=value` overrides a default.
    #[serde(default)]
    pub params: BTreeMap<String, ParamDecl>,
    /// Everything the flow may touch; a step sees only the mounts it names.
    #[serde(default)]
    pub mounts: Vec<MountDecl>,
    /// The steps, in the order they run.
    pub steps: Vec<StepDecl>,
    /// What a failed flow does (`[rollback]`).
    #[serde(default)]
    pub rollback: RollbackDecl,
    /// The application the flow deploys, and which version (`[app]`):
    /// `stepback status` says which version of each runs now.
    #[serde(default)]
    pub app: Option<AppDecl>,
}

/// `[app]`: the application a flow deploys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AppDecl {
    /// Its name, the same in every flow that deploys it.
    pub name: String,
    /// The version this run deploys, usually from a parameter
    /// (`version = "${release}"`).
    pub version: String,
}

/// `[rollback]`: the flow-level rollback, the journaled revert of every
/// change made so far and then an optional action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RollbackDecl {
    /// Off: a failed flow is left as it is unless a step says otherwise
    /// (`on-failure` then defaults to "stop").
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Run after the revert: a command that starts the previous version,
    /// say.
    #[serde(default)]
    pub action: Option<ActionDecl>,
}

fn enabled() -> bool {
    true
}

impl Default for RollbackDecl {
    fn default() -> Self {
        RollbackDecl {
            enabled: true,
            action: None,
        }
    }
}

/// An action a failure runs (`[[steps.actions]]`, `[rollback.action]`):
/// any step plugin, with its own grant and config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ActionDecl {
    /// For messages; by default the plugin and the step it belongs to.
    #[serde(default)]
    pub name: Option<String>,
    /// Which failures run it (steps' actions only).
    #[serde(default)]
    pub trigger: Option<Trigger>,
    /// `builtin:NAME`, or a path to a component `.wasm`.
    pub uses: String,
    /// Names of the flow mounts it sees.
    #[serde(default)]
    pub mounts: Vec<String>,
    /// Its configuration, checked against the plugin's JSON Schema.
    #[serde(default)]
    pub with: serde_json::Map<String, serde_json::Value>,
    /// Overrides of the sandbox limits.
    #[serde(default)]
    pub limits: LimitsDecl,
    /// Programs its commands may run.
    #[serde(default)]
    pub exec: Vec<String>,
    /// Environment variables that change what code a program loads or
    /// runs which its plugin may set nonetheless.
    #[serde(default)]
    pub exec_env: Vec<String>,
    /// Unix sockets outside its mounts its commands may connect to.
    #[serde(default)]
    pub sockets: Vec<String>,
    /// Whether its commands reach the network.
    #[serde(default)]
    pub network: bool,
    /// How its commands' file changes are captured.
    #[serde(default)]
    pub capture: Option<Capture>,
    /// With `capture = "snapshot"`: the paths copied first.
    #[serde(default)]
    pub snapshot: Vec<String>,
}

impl ActionDecl {
    /// The action as a step (named `name` unless it names itself), for
    /// the checks steps get.
    pub fn as_step(&self, name: String) -> StepDecl {
        StepDecl {
            name: self.name.clone().unwrap_or(name),
            uses: self.uses.clone(),
            mounts: self.mounts.clone(),
            on_failure: None,
            with: self.with.clone(),
            limits: self.limits.clone(),
            exec: self.exec.clone(),
            exec_env: self.exec_env.clone(),
            sockets: self.sockets.clone(),
            network: self.network,
            capture: self.capture,
            snapshot: self.snapshot.clone(),
            actions: Vec::new(),
            revert: true,
        }
    }
}

/// Which failures run a step's action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Trigger {
    /// The step itself fails.
    #[default]
    ThisStep,
    /// The step or any later one fails (not one whose failure is ignored).
    AnyStep,
}

/// A parameter a flow declares (`[params.NAME]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ParamDecl {
    /// Without a default, the parameter must be given with `--param`.
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    /// What it is for, for people.
    pub description: Option<String>,
}

/// A `[[mounts]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MountDecl {
    /// What steps list it by.
    pub name: String,
    /// A directory on the machine; relative paths are relative to the flow file.
    pub host: String,
    /// The absolute path the directory appears at inside the sandbox.
    pub guest: String,
    /// What steps may do there.
    pub access: Access,
}

/// A `[[steps]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StepDecl {
    /// Unique in the flow.
    pub name: String,
    /// `builtin:NAME`, or a path to a component `.wasm` (relative to the flow file).
    pub uses: String,
    /// Names of the flow mounts this step sees.
    #[serde(default)]
    pub mounts: Vec<String>,
    /// What a failure of the step does to the flow; by default "rollback",
    /// or "stop" when the flow's rollback is off.
    #[serde(default)]
    pub on_failure: Option<OnFailure>,
    /// The step's configuration, checked against the plugin's JSON Schema.
    #[serde(default)]
    pub with: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    /// Overrides of the sandbox limits.
    pub limits: LimitsDecl,
    /// Programs the step's commands may run: names looked up in `PATH`, or
    /// absolute paths.
    #[serde(default)]
    pub exec: Vec<String>,
    /// Environment variables that change what code a program loads or
    /// runs (see [`crate::grant::changes_code`]) which the step's plugin
    /// may set nonetheless.
    #[serde(default)]
    pub exec_env: Vec<String>,
    /// Unix sockets outside the mounts (in `/run`, say) the step's
    /// commands may connect to: host paths.
    #[serde(default)]
    pub sockets: Vec<String>,
    /// Whether its commands reach the network.
    #[serde(default)]
    pub network: bool,
    /// How its commands' file changes are captured.
    #[serde(default)]
    pub capture: Option<Capture>,
    /// With `capture = "snapshot"`: guest paths in its read-write mounts
    /// copied before each command and put back whole on rollback.
    #[serde(default)]
    pub snapshot: Vec<String>,
    /// Customized actions: run when this step, or (`trigger =
    /// "any-step"`) it or a later one, fails.
    #[serde(default)]
    pub actions: Vec<ActionDecl>,
    /// Off: the step's file changes stay when the flow is rolled back
    /// (they are journaled, and `show` lists them, but never reverted).
    #[serde(default = "enabled")]
    pub revert: bool,
}

/// What a step's failure does to the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum OnFailure {
    /// End the flow: run the actions the failure triggers, revert every
    /// change the flow made, then the flow's rollback action.
    Rollback,
    /// Ignore the failure and go on with the next step.
    Continue,
    /// End the flow: run the actions the failure triggers, and leave the
    /// changes as they are (the run can be undone later).
    Stop,
}

/// Per-step overrides of the sandbox limits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsDecl {
    /// Wall time, e.g. "30s" or "5m".
    #[serde(default)]
    pub time: Option<String>,
    /// Linear memory, e.g. "64MiB"; for a command, its whole tree's.
    #[serde(default)]
    pub memory: Option<String>,
    /// Descriptors and directory listings held at once.
    #[serde(default)]
    pub descriptors: Option<i64>,
    /// Processes a command's tree may have at once.
    #[serde(default)]
    pub processes: Option<i64>,
    /// CPU time a command's tree may spend, e.g. "10s".
    #[serde(default)]
    pub cpu: Option<String>,
}
