//! What a flow grants a step: directories and how it may use them, and the
//! resources it may spend. A leaf that both [`crate::flow`] (which reads
//! grants from the flow file) and [`crate::sandbox`] (which enforces them)
//! depend on, so that neither depends on the other for them.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How a mount is granted. A read-only mount cannot be written by any
/// step: the guest gets an error code, and the flow goes on as the step decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Access {
    /// Steps may read, not change, anything there.
    ReadOnly,
    /// Steps may change it; every change is journaled and undone if the flow fails.
    ReadWrite,
}

/// A host directory granted to steps, as validation resolved it.
#[derive(Debug, Clone)]
pub struct Mount {
    /// The mount's name in the flow.
    pub name: String,
    /// Canonical host directory.
    pub host: PathBuf,
    /// Where guests see it.
    pub guest: String,
    /// What steps may do there.
    pub access: Access,
}

/// What one step may use. Defaults suit deploy-sized work; a step
/// overrides them with `[steps.limits]` in the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall time of the whole step, host calls included.
    pub time: Duration,
    /// Bytes of linear memory, per memory of the component.
    pub memory: u64,
    /// Descriptors and directory listings the step may hold at once: each
    /// costs the host a file descriptor or memory, which the memory limit
    /// does not cover; past it, opens fail with `insufficient-memory`.
    pub descriptors: usize,
}

impl Limits {
    /// Time a step may take unless the flow says otherwise.
    pub const DEFAULT_TIME: Duration = Duration::from_secs(300);
    /// Linear memory a step may use unless the flow says otherwise.
    pub const DEFAULT_MEMORY: u64 = 512 << 20;
    /// Descriptors and listings a step may hold unless the flow says otherwise.
    pub const DEFAULT_DESCRIPTORS: usize = 256;
    /// Far below the engine's own descriptor limit, which it raises to
    /// the system's hard limit when it starts.
    pub const MAX_DESCRIPTORS: usize = 4096;
    /// Below this a Rust component cannot even start.
    pub const MIN_MEMORY: u64 = 2 << 20;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time: Self::DEFAULT_TIME,
            memory: Self::DEFAULT_MEMORY,
            descriptors: Self::DEFAULT_DESCRIPTORS,
        }
    }
}

/// The commands a step may run (`exec = [...]` in the flow) and what
/// else they get.
#[derive(Debug, Clone, Default)]
pub struct Exec {
    /// The programs, as the flow names them and as validation resolved
    /// them (absolute paths).
    pub programs: Vec<Program>,
    /// Whether commands reach the network (otherwise they get a network
    /// namespace of their own with nothing in it).
    pub network: bool,
    /// How their file changes are captured.
    pub capture: Capture,
}

/// A program a step may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// As the flow writes it.
    pub name: String,
    /// The file that runs.
    pub path: PathBuf,
}

/// How the file changes of a step's commands are captured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Capture {
    /// Each read-write mount is an overlay while the command runs; its
    /// upper layer is applied through the journal afterwards.
    #[default]
    Overlay,
    /// Not captured: the command writes the mounts directly, and the run
    /// is marked as not wholly reversible.
    None,
}

/// Everything a flow grants one step.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// The directories it sees.
    pub mounts: Vec<Mount>,
    /// The commands it may run.
    pub exec: Exec,
}
