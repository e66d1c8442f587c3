//! A validated flow: every plugin loaded and described, every parameter
//! substituted, every mount resolved. The runner trusts it as it is.

use super::model::{OnFailure, Trigger};
use super::params::Params;
use crate::grant::{Exec, Limits, Mount};
use crate::plugin::PluginInfo;
use crate::sandbox::Plugin;
use std::path::PathBuf;
use std::sync::Arc;

/// A step as the runner runs it.
pub struct PlannedStep {
    /// Unique in the flow.
    pub name: String,
    /// As written in the flow, for messages.
    pub uses: String,
    /// The compiled plugin.
    pub plugin: Arc<Plugin>,
    /// What the plugin said about itself.
    pub info: PluginInfo,
    /// The `with` table as JSON, parameters substituted, schema-checked.
    pub config: String,
    /// The mounts granted to it.
    pub mounts: Vec<Mount>,
    /// The commands it may run.
    pub exec: Exec,
    /// What its failure does to the flow.
    pub on_failure: OnFailure,
    /// What it may spend.
    pub limits: Limits,
    /// Its customized actions.
    pub actions: Vec<PlannedAction>,
    /// Whether a rollback reverts its changes.
    pub revert: bool,
}

/// A step's customized action.
pub struct PlannedAction {
    /// The action, checked like a step.
    pub action: PlannedStep,
    /// Which failures run it.
    pub trigger: Trigger,
}

/// What a failed flow does beyond its steps' own policies.
pub struct RollbackPlan {
    /// Whether the flow-level rollback is on (the default policy is then
    /// "rollback", else "stop").
    pub enabled: bool,
    /// Run after the revert.
    pub action: Option<Box<PlannedStep>>,
}

/// A flow validated and ready to run.
pub struct Plan {
    /// The flow's name.
    pub name: String,
    /// The flow file.
    pub file: PathBuf,
    /// Its parameters, overrides applied.
    pub params: Params,
    /// Every mount it declares, resolved.
    pub mounts: Vec<Mount>,
    /// Its steps, in order.
    pub steps: Vec<PlannedStep>,
    /// Its flow-level rollback.
    pub rollback: RollbackPlan,
    /// The application it deploys, parameters substituted.
    pub app: Option<crate::journal::App>,
}
