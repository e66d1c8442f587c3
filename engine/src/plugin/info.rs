//! A plugin's self-description, as the host keeps it.

use crate::grant::Access;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct MountNeed {
    pub role: String,
    pub access: Access,
}

#[derive(Debug, Clone, Serialize)]
pub struct Needs {
    pub mounts: Vec<MountNeed>,
    pub exec: bool,
    pub network: bool,
}

/// What a plugin's `describe` returned.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    /// JSON Schema of the step's `with` table.
    pub config_schema: serde_json::Value,
    pub needs: Needs,
}
