//! A validated flow: every plugin loaded and described, every parameter
//! substituted, every mount resolved. The runner trusts it as it is.

use super::model::OnFailure;
use super::params::Params;
use crate::grant::{Limits, Mount};
use crate::plugin::PluginInfo;
use crate::sandbox::Plugin;
use std::path::PathBuf;
use std::sync::Arc;

pub struct PlannedStep {
    pub name: String,
    /// As written in the flow, for messages.
    pub uses: String,
    pub plugin: Arc<Plugin>,
    pub info: PluginInfo,
    /// The `with` table as JSON, parameters substituted, schema-checked.
    pub config: String,
    pub mounts: Vec<Mount>,
    pub on_failure: OnFailure,
    pub limits: Limits,
}

pub struct Plan {
    pub name: String,
    pub file: PathBuf,
    pub params: Params,
    pub mounts: Vec<Mount>,
    pub steps: Vec<PlannedStep>,
}
