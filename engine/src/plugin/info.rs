//! A plugin's self-description, as the host keeps it.

use crate::grant::Access;
use serde::Serialize;

/// A mount a plugin says it uses, by role.
#[derive(Debug, Clone, Serialize)]
pub struct MountNeed {
    /// What the plugin calls it (its `with` keys name paths inside it).
    pub role: String,
    /// Whether it reads or writes there.
    pub access: Access,
}

/// What a plugin says it needs, checked against a step's grant at validation.
#[derive(Debug, Clone, Serialize)]
pub struct Needs {
    /// The mounts it uses.
    pub mounts: Vec<MountNeed>,
    /// Whether it runs commands.
    pub exec: bool,
    /// Whether it reaches the network.
    pub network: bool,
}

/// What a plugin's `describe` returned.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    /// The plugin's own name.
    pub name: String,
    /// Its version, as its author numbers it.
    pub version: String,
    /// One sentence for `plugin inspect`.
    pub description: String,
    /// JSON Schema of the step's `with` table.
    pub config_schema: serde_json::Value,
    /// What it needs of a step's grant.
    pub needs: Needs,
}
