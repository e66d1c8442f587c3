//! What a running step knows about its surroundings, and how it talks back.

use crate::bindings::stepback::plugin::host::{self, Level};
use crate::bindings::stepback::plugin::types as wit;

/// How a mount is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Writes fail with an error code (the step decides whether that fails it).
    ReadOnly,
    /// Every change is journaled by the host and undone if the flow fails.
    ReadWrite,
}

/// A directory the flow grants this step, as seen inside the sandbox.
#[derive(Debug, Clone)]
pub struct Mount {
    /// The mount's name in the flow (`[[mounts]] name`).
    pub name: String,
    /// Absolute path inside the sandbox; open files beneath it with `std::fs`.
    pub guest_path: String,
    /// What the flow lets this step do there.
    pub access: Access,
}

/// The step's view of its run: names, mounts, parameters, and the channel
/// for logs and progress, which the operator sees live and on failure.
#[derive(Debug)]
pub struct Context {
    flow: String,
    step: String,
    run_id: String,
    mounts: Vec<Mount>,
}

impl Context {
    pub(crate) fn from_wit(cx: wit::StepContext) -> Self {
        Context {
            flow: cx.flow,
            step: cx.step,
            run_id: cx.run_id,
            mounts: cx
                .mounts
                .into_iter()
                .map(|m| Mount {
                    name: m.name,
                    guest_path: m.guest_path,
                    access: match m.access {
                        wit::Access::ReadOnly => Access::ReadOnly,
                        wit::Access::ReadWrite => Access::ReadWrite,
                    },
                })
                .collect(),
        }
    }

    /// The flow's name, for messages.
    pub fn flow(&self) -> &str {
        &self.flow
    }

    /// This step's name in the flow, for messages.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// Unique per run of the flow: a key for anything a step must not repeat.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The mounts the flow grants this step, and nothing else: the step
    /// can reach no other directory.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The flow's parameters after `--param` overrides, sorted by name.
    pub fn params(&self) -> Vec<(String, String)> {
        host::params()
    }

    /// One parameter's value, if the flow declares it.
    pub fn param(&self, name: &str) -> Option<String> {
        self.params().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Logs a line shown only with `--verbose`.
    pub fn debug(&self, message: impl AsRef<str>) {
        host::log(Level::Debug, message.as_ref());
    }

    /// Logs a line: shown live with `--verbose`, and with the step's report
    /// when it fails.
    pub fn info(&self, message: impl AsRef<str>) {
        host::log(Level::Info, message.as_ref());
    }

    /// Logs a warning: something the operator should know even if the
    /// step succeeds.
    pub fn warn(&self, message: impl AsRef<str>) {
        host::log(Level::Warn, message.as_ref());
    }

    /// Logs an error line; the step still decides whether it fails (by
    /// returning [`crate::Error`]).
    pub fn error(&self, message: impl AsRef<str>) {
        host::log(Level::Error, message.as_ref());
    }

    /// Reports progress in `unit` ("bytes", "files", ...); cheap enough to
    /// call per file, but not per byte.
    pub fn progress(&self, done: u64, total: Option<u64>, unit: &str) {
        host::progress(done, total, unit);
    }
}
