//! A validated flow: every plugin loaded and described, every parameter
//! substituted, every mount resolved. The runner trusts it as it is.

use super::model::OnFailure;
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
}
