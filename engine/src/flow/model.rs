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
    #[serde(default)]
    /// What a failure of the step does to the flow.
    pub on_failure: OnFailure,
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
}

/// What a step's failure does to the flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum OnFailure {
    /// End the flow, reporting the failure.
    #[default]
    Stop,
    /// Ignore the failure and go on with the next step.
    Continue,
}

/// Per-step overrides of the sandbox limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsDecl {
    /// Wall time, e.g. "30s" or "5m".
    #[serde(default)]
    pub time: Option<String>,
    /// Linear memory, e.g. "64MiB".
    #[serde(default)]
    pub memory: Option<String>,
    /// Descriptors and directory listings held at once.
    #[serde(default)]
    pub descriptors: Option<i64>,
}
