//! What a step can be granted, one capability at a time, in the spirit of
//! Spin's factors: each capability says what it links into a step's
//! linker, what it requires of the flow's grant (checked at validation),
//! and prepares its part of a step's store. Adding a capability is one
//! more implementation here and its line in each of [`link`], [`check`]
//! and [`prepare`].

use super::bindings::stepback::plugin::{exec, host, types};
use super::exec::{ExecCapability, ExecMount, ExecState, ExecView};
use super::fs::{FsLayer, FsView, JournaledFs, LayerMount};
use super::host::HostState;
use super::limits::MemoryLimiter;
use super::output::CapturedOutput;
use super::state::{StepState, Wasi};
use crate::events::Emitter;
use crate::grant::{Access, Exec, Grant, Limits, Mount};
use crate::journal::{RunJournal, SharedRecorder, SpaceReserve};
use crate::plugin::Needs;
use anyhow::Context;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::bindings::filesystem;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

/// Everything a step's store is prepared from.
pub(super) struct Setup<'a> {
    pub step: &'a str,
    pub mounts: &'a [Mount],
    /// The commands it may run.
    pub exec: &'a Exec,
    /// Where its commands' overlay layers go.
    pub scratch: PathBuf,
    /// The mounts' directories as the run opened them (empty: by path).
    pub pinned: &'a [Arc<std::fs::File>],
    pub journal: Option<Arc<Mutex<RunJournal>>>,
    pub room: Option<Arc<SpaceReserve>>,
    pub params: Vec<(String, String)>,
    pub limits: Limits,
    pub events: Emitter,
    pub stdout: &'a CapturedOutput,
    pub stderr: &'a CapturedOutput,
}

/// Why a plugin cannot have what it needs from a step's grant, and which
/// part of the step says so.
#[non_exhaustive]
pub enum Refusal {
    /// The plugin needs something no grant gives.
    Plugin(String),
    /// The step's mounts do not give what the plugin needs.
    Mounts(String),
    /// The step's exec grant does not fit what the plugin does.
    Exec(String),
}

/// One capability.
trait Capability {
    /// Its part of a step's store.
    type State;
    /// Adds (or shadows) the host functions it provides.
    fn link(linker: &mut Linker<StepState>) -> wasmtime::Result<()>;
    /// What the plugin needs of it that the step is not granted.
    fn check(_needs: &Needs, _granted: &Grant) -> Option<Refusal> {
        None
    }
    /// Its state for one step.
    fn prepare(setup: &Setup) -> anyhow::Result<Self::State>;
}

/// WASI 0.2: clocks, random, stdio, and sockets that reach nothing.
/// Sockets are linked so that components importing them without using
/// them (componentize-py's) still instantiate; the context grants no
/// address, so every socket call fails: a plugin has no network of its
/// own (a step's commands may: [`Commands`]).
struct BaseWasi;

impl Capability for BaseWasi {
    type State = Wasi;

    fn link(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
        wasmtime_wasi::p2::add_to_linker_async(linker)
    }

    fn check(needs: &Needs, _granted: &Grant) -> Option<Refusal> {
        needs.network.then(|| {
            Refusal::Plugin(
                "needs network access for itself, which Stepback does not grant to plugins (a step's commands may have it: `network = true`)".to_owned(),
            )
        })
    }

    fn prepare(setup: &Setup) -> anyhow::Result<Wasi> {
        // Pinned mounts are served by the filesystem layer; others are
        // wasmtime-wasi's preopens.
        let mounts = if setup.pinned.is_empty() {
            setup.mounts
        } else {
            &[]
        };
        Ok(Wasi {
            ctx: wasi_ctx(mounts, setup.stdout, setup.stderr)?,
            table: ResourceTable::new(),
        })
    }
}

/// The WASI context of a step: the mounts not pinned by the run as
/// preopens (the layer serves pinned ones), captured stdio, and nothing
/// else: no environment, no arguments, no network.
fn wasi_ctx(mounts: &[Mount], stdout: &CapturedOutput, stderr: &CapturedOutput) -> anyhow::Result<WasiCtx> {
    let mut builder = WasiCtxBuilder::new();
    // File calls run on the step's own thread instead of hopping to
    // tokio's blocking pool for each one: a step is one guest thread doing
    // one call at a time, and the hop costs more than most file calls.
    builder
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_blocking_current_thread(true);
    for mount in mounts {
        let perms = match mount.access {
            Access::ReadOnly => FsPerms::ReadOnly,
            Access::ReadWrite => FsPerms::ReadWrite,
        };
        builder
            .preopened_dir(&mount.host, &mount.guest, perms)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("opening mount {} at {}", mount.name, mount.host.display()))?;
    }
    Ok(builder.build())
}

/// The journaled filesystem ([`super::fs`]): shadows `wasi:filesystem`.
struct Filesystem;

impl Capability for Filesystem {
    type State = FsLayer;

    fn link(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
        linker.allow_shadowing(true);
        filesystem::types::add_to_linker::<StepState, JournaledFs>(linker, fs_view)?;
        filesystem::preopens::add_to_linker::<StepState, JournaledFs>(linker, fs_view)?;
        linker.allow_shadowing(false);
        Ok(())
    }

    fn check(needs: &Needs, granted: &Grant) -> Option<Refusal> {
        let writes = needs.mounts.iter().find(|m| m.access == Access::ReadWrite)?;
        (!granted.mounts.iter().any(|m| m.access == Access::ReadWrite)).then(|| {
            Refusal::Mounts(format!(
                "writes its {:?} mount, but the step is granted no read-write mount",
                writes.role
            ))
        })
    }

    fn prepare(setup: &Setup) -> anyhow::Result<FsLayer> {
        let mounts = setup
            .mounts
            .iter()
            .enumerate()
            .map(|(i, m)| {
                Ok(LayerMount {
                    name: m.name.clone(),
                    guest: m.guest.clone(),
                    access: m.access,
                    root: std::fs::canonicalize(&m.host)
                        .with_context(|| format!("opening mount {} at {}", m.name, m.host.display()))?,
                    pinned: setup.pinned.get(i).cloned(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(FsLayer::new(
            setup.journal.clone().map(|j| j as SharedRecorder),
            setup.room.clone(),
            mounts,
            setup.limits.descriptors,
        ))
    }
}

/// The filesystem layer's view of a step's store.
pub(super) fn fs_view(state: &mut StepState) -> FsView<'_> {
    FsView {
        inner: state.wasi.filesystem(),
        layer: &mut state.fs,
    }
}

/// `stepback:plugin/host`: logs, progress and parameters, bounded.
struct Host;

impl Capability for Host {
    type State = HostState;

    fn link(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
        types::add_to_linker::<StepState, HasSelf<HostState>>(linker, |state| &mut state.host)?;
        host::add_to_linker::<StepState, HasSelf<HostState>>(linker, |state| &mut state.host)
    }

    fn prepare(setup: &Setup) -> anyhow::Result<HostState> {
        Ok(HostState::new(
            setup.step,
            setup.params.clone(),
            setup.events.clone(),
        ))
    }
}

/// `stepback:plugin/exec`: programs of the step's grant, run natively,
/// their file changes captured ([`super::exec`]).
struct Commands;

impl Capability for Commands {
    type State = ExecState;

    fn link(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
        exec::add_to_linker::<StepState, ExecCapability>(linker, exec_view)
    }

    fn check(needs: &Needs, granted: &Grant) -> Option<Refusal> {
        match (needs.exec, granted.exec.programs.is_empty()) {
            (true, true) => Some(Refusal::Plugin(
                "runs commands, but the step grants none: list the programs it may run, e.g. exec = [\"systemctl\"]".to_owned(),
            )),
            (false, false) => Some(Refusal::Exec(
                "grants programs, but the plugin runs no commands: remove `exec`".to_owned(),
            )),
            _ => None,
        }
    }

    fn prepare(setup: &Setup) -> anyhow::Result<ExecState> {
        let mounts = setup
            .mounts
            .iter()
            .enumerate()
            .map(|(i, m)| ExecMount {
                mount: m.clone(),
                pinned: setup.pinned.get(i).cloned(),
            })
            .collect();
        // An action's failure context (`stepback.failed-step`, ...) reaches
        // its commands as STEPBACK_FAILED_STEP, ...
        let env = setup
            .params
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("stepback.")?;
                Some((
                    format!("STEPBACK_{}", name.to_uppercase().replace('-', "_")),
                    v.clone(),
                ))
            })
            .collect();
        Ok(ExecState::new(
            setup.exec.clone(),
            env,
            mounts,
            (
                setup.journal.clone().map(|j| j as SharedRecorder),
                setup.room.clone(),
            ),
            setup.scratch.clone(),
            setup.limits,
        ))
    }
}

/// The exec interface's view of a step's store.
fn exec_view(state: &mut StepState) -> ExecView<'_> {
    ExecView {
        exec: &mut state.exec,
        host: &mut state.host,
    }
}

/// Links every capability.
pub(super) fn link(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
    BaseWasi::link(linker)?;
    Filesystem::link(linker)?;
    Host::link(linker)?;
    Commands::link(linker)
}

/// What a plugin needs that a step's grant does not give.
pub fn check(needs: &Needs, granted: &Grant) -> Vec<Refusal> {
    [
        BaseWasi::check(needs, granted),
        Filesystem::check(needs, granted),
        Host::check(needs, granted),
        Commands::check(needs, granted),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A step's store data, every capability's part prepared.
pub(super) fn prepare(setup: &Setup) -> anyhow::Result<StepState> {
    Ok(StepState {
        wasi: BaseWasi::prepare(setup)?,
        fs: Filesystem::prepare(setup)?,
        host: Host::prepare(setup)?,
        exec: Commands::prepare(setup)?,
        limiter: MemoryLimiter::new(setup.limits.memory),
    })
}
