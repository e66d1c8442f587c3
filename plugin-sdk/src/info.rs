//! A plugin's self-description and a step's result.

use crate::bindings::stepback::plugin::types as wit;

/// What `describe` returns: identity and needs. The config schema is
/// derived from [`crate::Step::Config`], so it cannot drift from the code.
#[derive(Debug, Clone)]
pub struct Info {
    name: String,
    version: String,
    description: String,
    mounts: Vec<wit::MountNeed>,
    exec: bool,
}

impl Info {
    /// A plugin called `name` at `version`, described in one sentence
    /// (`plugin inspect` shows all three).
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Info {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            mounts: Vec::new(),
            exec: false,
        }
    }

    /// Declares that the step runs programs ([`crate::exec`]): the flow
    /// must grant it the ones it runs (`exec = [...]`).
    pub fn runs_commands(mut self) -> Self {
        self.exec = true;
        self
    }

    /// Declares a mount role the step only reads.
    pub fn reads(mut self, role: &str) -> Self {
        self.mounts.push(wit::MountNeed {
            role: role.into(),
            access: wit::Access::ReadOnly,
        });
        self
    }

    /// Declares a mount role the step writes; the flow must grant it read-write.
    pub fn writes(mut self, role: &str) -> Self {
        self.mounts.push(wit::MountNeed {
            role: role.into(),
            access: wit::Access::ReadWrite,
        });
        self
    }

    pub(crate) fn into_wit<C: schemars::JsonSchema>(self) -> wit::PluginInfo {
        let schema = schemars::schema_for!(C);
        wit::PluginInfo {
            name: self.name,
            version: self.version,
            description: self.description,
            config_schema: serde_json::to_string(&schema).expect("a JSON Schema serializes"),
            needs: wit::Needs {
                mounts: self.mounts,
                exec: self.exec,
                network: false,
            },
        }
    }
}

/// A successful step's result.
#[derive(Debug, Default)]
pub struct Outcome {
    summary: Option<String>,
}

impl Outcome {
    /// Nothing to report beyond success.
    pub fn done() -> Self {
        Outcome::default()
    }

    /// One line shown next to the step's status, e.g. "3 files, 12 KiB".
    pub fn summary(text: impl Into<String>) -> Self {
        Outcome {
            summary: Some(text.into()),
        }
    }
}

impl From<Outcome> for wit::Outcome {
    fn from(o: Outcome) -> Self {
        wit::Outcome { summary: o.summary }
    }
}
